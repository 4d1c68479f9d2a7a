//! `multiverse identity rotate` through the real binary, against the real tools: ssh-keygen reads
//! the rotated keys, sshd refuses the old login key and takes the new, ssh refuses the old host key
//! as revoked, gpg imports the revocation and lists the old key revoked, tor writes the new onion
//! hostname, cryptsetup opens with the new LUKS key and not the old; pass entries are re-encrypted
//! first; a `kill -9` in the middle and a rerun end where an uninterrupted run ends.
#![allow(clippy::unwrap_used)]

mod common;

use common::{mv, ok, output, usage_error, wait_for, FAST, SPEC_WORDS};
use mv_testkit::sshd::Sshd;
use mv_testkit::{require_tool, run_ok};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const TOPOLOGY: &str = r#"# my machines (this comment must survive a rotation)
[host]
name = "host.multiverse"

[[machines]]
name = "work.service.multiverse"
type = "service"

# the epochs of rotated names
[identity.epochs]
"app.multiverse" = 3

[[machines]]
name = "app.multiverse"
type = "application"
"#;

const HOST: &str = "host.multiverse";

/// `multiverse --root ROOT` with the pass session cache of this tree only (its own agent folder,
/// entries kept 30 s), so tests running side by side never share cached keys.
fn mvr(root: &Path) -> Command {
    let mut c = mv(root);
    c.env("MULTIVERSE_PASS_AGENT_DIR", root.join(".pass-agent"))
        .env("MULTIVERSE_PASS_CACHE_TTL", "30");
    c
}

/// A tree with the spec's words, TOPOLOGY and a fleet folder written by `identity fleet`.
fn tree() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("multiverse.toml"), TOPOLOGY).unwrap();
    ok(
        mvr(t.path()).args(["identity", "restore"]).args(FAST),
        Some(SPEC_WORDS),
    );
    let fleet = t.path().join("fleet");
    ok(
        mvr(t.path())
            .args(["identity", "fleet", "--out"])
            .arg(&fleet),
        None,
    );
    (t, fleet)
}

fn show(root: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&ok(
        mvr(root).args(["--json", "identity", "show", name]),
        None,
    ))
    .unwrap()
}

fn rotate(root: &Path, name: &str, extra: &[&str]) -> String {
    ok(
        mvr(root)
            .args(["identity", "rotate", name])
            .args(extra)
            .arg("--fleet")
            .arg(root.join("fleet")),
        None,
    )
}

/// Every file below `dir` with its bytes, sorted by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push((
                    p.strip_prefix(base).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn pub_key_part(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn login(port: u16, key: &Path, known_hosts: &Path, alias: &str) -> std::process::Output {
    let ssh = require_tool("ssh");
    let user = run_ok(Command::new("id").arg("-un")).trim().to_string();
    Command::new(&ssh)
        .args(["-F", "/dev/null", "-p", &port.to_string(), "-i"])
        .arg(key)
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg(format!("-oUserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "GlobalKnownHostsFile=/dev/null"])
        .arg(format!("-oHostKeyAlias={alias}"))
        .arg(format!("{user}@127.0.0.1"))
        .arg("echo rotated-login-ok")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Copies a folder (flat) so the old keys can be used after the rotation replaced them.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        std::fs::copy(&p, &dst).unwrap();
    }
}

#[test]
fn rotating_a_machine_replaces_every_key_and_real_tools_agree() {
    let keygen = require_tool("ssh-keygen");
    let cryptsetup = require_tool("cryptsetup");
    let (t, fleet) = tree();
    let root = t.path();
    let before = show(root, HOST);
    assert_eq!(before["epoch"], 0);
    // app.multiverse was rotated three times already: its epoch comes from the file.
    assert_eq!(show(root, "app.multiverse")["epoch"], 3);
    let old_host = t.path().join("old-host");
    copy_dir(&fleet.join(HOST), &old_host);
    let old_known = std::fs::read_to_string(fleet.join("known_hosts")).unwrap();

    // A LUKS image formatted with the old key.
    let img = root.join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(20 * 1024 * 1024)
        .unwrap();
    run_ok(
        Command::new(&cryptsetup)
            .args(["luksFormat", "--batch-mode", "--type", "luks2"])
            .args(["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"])
            .arg("--key-file")
            .arg(old_host.join("luks.key"))
            .arg(&img),
    );

    // --dry-run changes nothing.
    let config_before = std::fs::read_to_string(root.join("multiverse.toml")).unwrap();
    let fleet_before = snapshot(&fleet);
    let plan = ok(
        mvr(root)
            .args(["--dry-run", "identity", "rotate", HOST, "--luks-device"])
            .arg(&img),
        None,
    );
    assert!(plan.contains("from epoch 0 to 1"), "{plan}");
    assert_eq!(
        std::fs::read_to_string(root.join("multiverse.toml")).unwrap(),
        config_before
    );
    assert_eq!(snapshot(&fleet), fleet_before);
    assert!(!root.join("identity/rotate.json").exists());

    let out = rotate(root, HOST, &["--luks-device", img.to_str().unwrap()]);
    assert!(
        out.contains("rotated host.multiverse from epoch 0 to 1"),
        "{out}"
    );
    assert!(
        !root.join("identity/rotate.json").exists(),
        "journal removed"
    );

    // multiverse.toml: the new epoch, every comment kept, the other epoch untouched.
    let config = std::fs::read_to_string(root.join("multiverse.toml")).unwrap();
    assert!(config.contains("\"host.multiverse\" = 1"), "{config}");
    assert!(config.contains("\"app.multiverse\" = 3"), "{config}");
    for c in ["# my machines", "# the epochs of rotated names"] {
        assert!(config.contains(c), "comment `{c}` lost: {config}");
    }
    let after = show(root, HOST);
    assert_eq!(after["epoch"], 1);
    for k in [
        "ssh_ed25519",
        "ssh_host_ed25519",
        "onion",
        "openpgp_fingerprint",
    ] {
        assert_ne!(after[k], before[k], "{k} changed");
    }
    // Other names keep their keys.
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("identity/public.json")).unwrap())
            .unwrap();
    assert_eq!(record["identities"][HOST], after);

    // ssh-keygen -y reads every rotated key and prints the recorded public key.
    let hostdir = fleet.join(HOST);
    for (file, field) in [
        ("id_ed25519", "ssh_ed25519"),
        ("id_ecdsa", "ssh_ecdsa_p256"),
        ("ssh_host_ed25519_key", "ssh_host_ed25519"),
        ("ssh_host_ecdsa_key", "ssh_host_ecdsa_p256"),
    ] {
        let derived = run_ok(
            Command::new(&keygen)
                .arg("-y")
                .arg("-f")
                .arg(hostdir.join(file)),
        );
        assert_eq!(
            pub_key_part(&derived),
            after[field].as_str().unwrap(),
            "{file}"
        );
    }

    // known_hosts: the new host keys, the old ones @revoked.
    let known = std::fs::read_to_string(fleet.join("known_hosts")).unwrap();
    let old_host_key = before["ssh_host_ed25519"].as_str().unwrap();
    assert!(
        known.contains(&format!(
            "@revoked host.multiverse,{} {old_host_key}",
            before["onion"].as_str().unwrap()
        )),
        "{known}"
    );
    assert!(known.contains(after["ssh_host_ed25519"].as_str().unwrap()));
    assert_ne!(known, old_known);
    // ssh with the updated known_hosts: the new host key is accepted, the old one refused as
    // revoked (sshd started on the old host keys).
    let new_sshd = Sshd::start(root, &hostdir, &fleet.join("authorized_keys"));
    let new_port = new_sshd.port();
    let o = login(
        new_port,
        &fleet.join("@user/id_ed25519"),
        &fleet.join("known_hosts"),
        HOST,
    );
    assert!(
        o.status.success(),
        "new host key: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        new_sshd.log_text()
    );
    let old_sshd = Sshd::start(root, &old_host, &fleet.join("authorized_keys"));
    let old_port = old_sshd.port();
    let o = login(
        old_port,
        &fleet.join("@user/id_ed25519"),
        &fleet.join("known_hosts"),
        HOST,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("REVOKED HOST KEY"), "{err}");

    // tor writes the new onion hostname from the rotated key.
    assert_eq!(
        mv_testkit::tornet::onion_hostname_from_tor(&hostdir, root).trim(),
        after["onion"].as_str().unwrap()
    );

    // gpg: the revocation imports and the old key is listed revoked; the new key is valid and
    // newer (created one second later).
    // gpg's agent for this home is stopped when `home` drops.
    let home = mv_testkit::gnupg::Home::new(&root.join("gnupg"));
    let g = || home.gpg();
    run_ok(g().arg("--import").arg(old_host.join("openpgp-public.asc")));
    run_ok(g().arg("--import").arg(hostdir.join("openpgp-revoked.asc")));
    run_ok(g().arg("--import").arg(hostdir.join("openpgp-public.asc")));
    let listing = run_ok(g().args(["--with-colons", "--list-keys"]));
    let old_fpr = before["openpgp_fingerprint"].as_str().unwrap();
    let new_fpr = after["openpgp_fingerprint"].as_str().unwrap();
    let pub_line_before = |fpr: &str| {
        let lines: Vec<&str> = listing.lines().collect();
        let i = lines
            .iter()
            .position(|l| l.starts_with("fpr:") && l.contains(fpr))
            .unwrap();
        lines[i - 1].to_string()
    };
    assert!(pub_line_before(old_fpr).starts_with("pub:r:"), "{listing}");
    assert!(!pub_line_before(new_fpr).starts_with("pub:r:"), "{listing}");
    assert!(
        pub_line_before(new_fpr).contains(":1551398401:"),
        "{listing}"
    );

    // cryptsetup: the new key opens, the old keyslot is gone.
    let opens = |key: &Path| {
        Command::new(&cryptsetup)
            .args(["open", "--test-passphrase", "--key-file"])
            .arg(key)
            .arg(&img)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(opens(&hostdir.join("luks.key")));
    assert!(!opens(&old_host.join("luks.key")));
    assert_ne!(
        std::fs::read(hostdir.join("luks.key")).unwrap(),
        std::fs::read(old_host.join("luks.key")).unwrap()
    );
}

/// The pass CLI of the tree (store `<root>/pass`, keys `<root>/pass-keys`).
fn pass(root: &Path) -> Command {
    let mut c = mvr(root);
    c.env_remove("PASSWORD_STORE_DIR")
        .env_remove("MULTIVERSE_PASS_KEYS")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .arg("pass");
    c
}

#[test]
fn rotating_the_person_reencrypts_pass_first_and_sshd_takes_only_the_new_login_key() {
    let (t, fleet) = tree();
    let root = t.path();
    ok(pass(root).arg("init"), None);
    for (name, body) in [("web/mail", "hunter2\nuser: me\n"), ("bank", "s3cret\n")] {
        ok(pass(root).args(["insert", "-m", name]), Some(body));
    }
    let before = show(root, "@user");
    let old_user = root.join("old-user");
    copy_dir(&fleet.join("@user"), &old_user);
    let gpg_id = std::fs::read_to_string(root.join("pass/.gpg-id")).unwrap();
    assert_eq!(
        gpg_id.trim(),
        before["openpgp_fingerprint"].as_str().unwrap()
    );

    let out = rotate(root, "@user", &[]);
    assert!(out.contains("2 entries re-encrypted"), "{out}");
    let after = show(root, "@user");
    assert_eq!(after["epoch"], 1);
    // .gpg-id names the new key; every entry decrypts with the key derived at the new epoch.
    let gpg_id = std::fs::read_to_string(root.join("pass/.gpg-id")).unwrap();
    assert_eq!(
        gpg_id.trim(),
        after["openpgp_fingerprint"].as_str().unwrap()
    );
    assert_eq!(
        ok(pass(root).args(["show", "web/mail"]), None),
        "hunter2\nuser: me\n"
    );
    assert_eq!(ok(pass(root).args(["show", "bank"]), None), "s3cret\n");

    // authorized_keys holds the new login key only: sshd takes it and refuses the old one.
    let auth = std::fs::read_to_string(fleet.join("authorized_keys")).unwrap();
    assert!(auth.contains(after["ssh_ed25519"].as_str().unwrap()));
    assert!(!auth.contains(before["ssh_ed25519"].as_str().unwrap()));
    let sshd = Sshd::start(root, &fleet.join(HOST), &fleet.join("authorized_keys"));
    let port = sshd.port();
    let new = login(
        port,
        &fleet.join("@user/id_ed25519"),
        &fleet.join("known_hosts"),
        HOST,
    );
    assert!(
        new.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&new.stderr),
        sshd.log_text()
    );
    assert_eq!(
        String::from_utf8_lossy(&new.stdout).trim(),
        "rotated-login-ok"
    );
    let old = login(
        port,
        &old_user.join("id_ed25519"),
        &fleet.join("known_hosts"),
        HOST,
    );
    assert!(!old.status.success());
    assert!(
        String::from_utf8_lossy(&old.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&old.stderr)
    );
}

#[test]
fn bad_input_exits_2_and_changes_nothing() {
    let (t, _fleet) = tree();
    let root = t.path();
    let config = std::fs::read_to_string(root.join("multiverse.toml")).unwrap();
    let err = usage_error(
        mvr(root).args(["identity", "rotate", "nobody.multiverse"]),
        None,
    );
    assert!(err.contains("not a machine"), "{err}");
    usage_error(mvr(root).args(["identity", "rotate", "NotAName"]), None);
    // The last epoch cannot be raised.
    std::fs::write(
        root.join("multiverse.toml"),
        config.replace("\"app.multiverse\" = 3", "\"app.multiverse\" = 4294967295"),
    )
    .unwrap();
    let err = usage_error(
        mvr(root).args(["identity", "rotate", "app.multiverse"]),
        None,
    );
    assert!(err.contains("cannot be rotated again"), "{err}");
    assert!(!root.join("identity/rotate.json").exists());
}

#[test]
fn kill_9_during_a_rotation_then_a_rerun_finishes_it() {
    // Two trees from the same words: one rotated without interruption, one killed with SIGKILL
    // after each step in turn and rerun. Every file must end byte-identical.
    let (reference, _) = tree();
    ok(pass(reference.path()).arg("init"), None);
    ok(
        pass(reference.path()).args(["insert", "-m", "web/mail"]),
        Some("hunter2\n"),
    );
    rotate(reference.path(), "@user", &[]);
    for step in ["start", "pass", "config", "record", "fleet"] {
        let (t, _) = tree();
        let root = t.path();
        ok(pass(root).arg("init"), None);
        ok(
            pass(root).args(["insert", "-m", "web/mail"]),
            Some("hunter2\n"),
        );
        let mut child = mvr(root)
            .env("MV_ROTATE_PAUSE_AFTER", step)
            .args(["identity", "rotate", "@user", "--fleet"])
            .arg(root.join("fleet"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let journal = root.join("identity/rotate.json");
        wait_for(
            &format!("the journal after {step}"),
            Duration::from_secs(30),
            || {
                let Ok(text) = std::fs::read_to_string(&journal) else {
                    return false;
                };
                let j: serde_json::Value = match serde_json::from_str(&text) {
                    Ok(j) => j,
                    Err(_) => return false,
                };
                step == "start"
                    || j["done"]
                        .as_array()
                        .is_some_and(|d| d.iter().any(|s| s == step))
            },
        );
        // The step is journaled: give the process a moment to reach its pause, then SIGKILL.
        std::thread::sleep(Duration::from_millis(200));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "{step}: killed");
        assert!(journal.exists(), "{step}: journal left behind");
        // Another rotation cannot start over it.
        let err = usage_error(mvr(root).args(["identity", "rotate", HOST]), None);
        assert!(err.contains("unfinished"), "{err}");
        // What a writer killed half-way through the fleet step leaves: temporary files beside the
        // targets, which the rerun's fleet step removes (a step already done left none).
        let stale_files: &[&str] = if step == "fleet" {
            &[]
        } else {
            &[
                ".known_hosts.tmp0123456789abcdef",
                "host.multiverse/.luks.key.tmpabcdef0123456789",
            ]
        };
        for stale in stale_files {
            let p = root.join("fleet").join(stale);
            std::fs::write(&p, "half").unwrap();
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
                .unwrap();
        }
        // Reading keys meanwhile warns that they may not all agree yet.
        let o = output(mvr(root).args(["identity", "show", "@user"]), None);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("is unfinished"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        // The rerun finishes it (the fleet folder comes from the journal).
        let out = ok(mvr(root).args(["identity", "rotate", "@user"]), None);
        assert!(out.contains("resuming the rotation of @user"), "{out}");
        assert!(!journal.exists());
        for part in [
            "multiverse.toml",
            "identity/public.json",
            "fleet",
            "pass-keys",
        ] {
            let (a, b) = (reference.path().join(part), root.join(part));
            if a.is_dir() {
                let (x, y) = (snapshot(&a), snapshot(&b));
                let names =
                    |v: &[(PathBuf, Vec<u8>)]| v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
                assert_eq!(names(&x), names(&y), "{step}: {part}");
                for ((p, u), (_, v)) in x.iter().zip(&y) {
                    assert!(u == v, "{step}: {part}/{} differs", p.display());
                }
            } else {
                assert_eq!(
                    std::fs::read(&a).unwrap(),
                    std::fs::read(&b).unwrap(),
                    "{step}: {part}"
                );
            }
        }
        assert_eq!(
            std::fs::read(reference.path().join("pass/.gpg-id")).unwrap(),
            std::fs::read(root.join("pass/.gpg-id")).unwrap()
        );
        assert_eq!(ok(pass(root).args(["show", "web/mail"]), None), "hunter2\n");
        let o = output(mvr(root).args(["identity", "show", "@user"]), None);
        assert!(String::from_utf8_lossy(&o.stdout).contains("epoch                1"));
    }
}

/// Every file below `dir` as text (non-UTF-8 files skipped).
fn texts(dir: &Path) -> String {
    snapshot(dir)
        .into_iter()
        .filter_map(|(_, b)| String::from_utf8(b).ok())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_next_provisioning_installs_the_new_host_key_and_login_key() {
    // The provisioning files derive with the tree's epochs: after a rotation, the machine's sshd
    // host key and every authorized_keys are the new ones, with no change to provisioning.
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    ok(mvr(root).arg("init"), None);
    ok(
        mvr(root).args(["identity", "restore"]).args(FAST),
        Some(SPEC_WORDS),
    );
    let star = "star.router.multiverse";
    let files = root.join("machines").join(star).join("provision/files");
    let render = || ok(mvr(root).args(["provision", "render", star]), None);
    render();
    let before = texts(&files);
    let (host_old, user_old) = (show(root, star), show(root, "@user"));
    let key = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap().to_string();
    assert!(
        before.contains(&key(&host_old, "ssh_host_ed25519")),
        "host key rendered"
    );
    assert!(
        before.contains(&key(&user_old, "ssh_ed25519")),
        "login key rendered"
    );
    // The machine's password in the pass store follows too.
    ok(mvr(root).arg("render"), None);
    ok(pass(root).arg("init"), None);
    ok(pass(root).arg("machines"), None);
    let entry = format!("machines/{star}/root");
    let old_pw = ok(pass(root).args(["show", &entry]), None);
    ok(mvr(root).args(["identity", "rotate", star]), None);
    ok(mvr(root).args(["identity", "rotate", "@user"]), None);
    let pw_dir = root.join("pw");
    ok(
        mvr(root)
            .args(["identity", "export", star, "--kind", "password", "--out"])
            .arg(&pw_dir),
        None,
    );
    let new_pw = std::fs::read_to_string(pw_dir.join("password")).unwrap();
    let shown = ok(pass(root).args(["show", &entry]), None);
    assert_eq!(shown.lines().next(), new_pw.lines().next(), "{shown}");
    assert_ne!(shown.lines().next(), old_pw.lines().next());
    render();
    let after = texts(&files);
    let (host_new, user_new) = (show(root, star), show(root, "@user"));
    assert!(after.contains(&key(&host_new, "ssh_host_ed25519")));
    assert!(!after.contains(&key(&host_old, "ssh_host_ed25519")));
    assert!(after.contains(&key(&user_new, "ssh_ed25519")));
    assert!(!after.contains(&key(&user_old, "ssh_ed25519")));
}

/// An encrypted machine (the controller, LUKS inside its qcow2 overlay): the rotation re-keys its
/// disk with `qemu-img amend`, so the new epoch's key opens it and the old one no longer does.
#[test]
fn rotating_an_encrypted_machine_rekeys_its_qcow2_disk() {
    let qemu_img = require_tool("qemu-img");
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let ctl = "controller.multiverse";
    std::fs::write(
        root.join("multiverse.toml"),
        format!("[host]\nname = \"host.multiverse\"\n\n[[machines]]\nname = \"{ctl}\"\ntype = \"controller\"\ngpu = false\n"),
    )
    .unwrap();
    ok(
        mvr(root).args(["identity", "restore"]).args(FAST),
        Some(SPEC_WORDS),
    );
    // The passphrase of the disk: the hex of the machine's exported luks key.
    let pass_of = |dir: &str| {
        let out = root.join(dir);
        ok(
            mvr(root)
                .args(["identity", "export", ctl, "--kind", "luks", "--out"])
                .arg(&out),
            None,
        );
        let hex: String = std::fs::read(out.join("luks.key"))
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let f = root.join(format!("{dir}.pass"));
        std::fs::write(&f, hex).unwrap();
        f
    };
    let old = pass_of("old");
    let disk = root.join("machines").join(ctl).join("disk.qcow2");
    std::fs::create_dir_all(disk.parent().unwrap()).unwrap();
    run_ok(
        Command::new(&qemu_img)
            .args(["create", "-q", "--object"])
            .arg(format!("secret,id=k,format=raw,file={}", old.display()))
            .args([
                "-o",
                "encrypt.format=luks,encrypt.key-secret=k,encrypt.iter-time=10",
                "-f",
                "qcow2",
            ])
            .arg(&disk)
            .arg("16M"),
    );
    let opens = |pass: &Path| {
        Command::new(&qemu_img)
            .arg("check")
            .arg("--object")
            .arg(format!("secret,id=k,format=raw,file={}", pass.display()))
            .arg("--image-opts")
            .arg(format!(
                "driver=qcow2,file.filename={},encrypt.key-secret=k",
                disk.display()
            ))
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(opens(&old));
    let plan = ok(
        mvr(root).args(["--dry-run", "identity", "rotate", ctl]),
        None,
    );
    assert!(
        plan.contains(&format!("re-key 1 encrypted disk(s) of {ctl}")),
        "{plan}"
    );
    assert!(opens(&old), "a dry run changes nothing");
    let out = ok(mvr(root).args(["identity", "rotate", ctl]), None);
    assert!(out.contains("new LUKS key added"), "{out}");
    assert!(out.contains("old LUKS keyslot removed"), "{out}");
    assert!(out.contains(&format!("multiverse up {ctl}")), "{out}");
    let new = pass_of("new");
    assert_ne!(std::fs::read(&old).unwrap(), std::fs::read(&new).unwrap());
    assert!(opens(&new), "the new epoch's key opens the disk");
    assert!(!opens(&old), "the old key no longer does");
}
