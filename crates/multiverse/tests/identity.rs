//! `multiverse identity …` driven through the real binary, against the real tools that own each
//! format: ssh-keygen, sshd + ssh, gpg, tor and cryptsetup. Each test uses a fresh temporary tree
//! and cheap Argon2 parameters (`--kdf-memory 1024 --kdf-iterations 1`): the default 256 MiB costs
//! are tested by mv-seal, not here.
#![allow(clippy::unwrap_used)]

mod common;

use common::{mv, ok, output, usage_error, FAST, SPEC_WORDS};
use mv_testkit::sshd::Sshd;
use mv_testkit::{require_tool, run_ok};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const SPEC_NAME: &str = "universe.router.multiverse";

fn restore_spec(root: &Path) {
    ok(
        mv(root).args(["identity", "restore"]).args(FAST),
        Some(SPEC_WORDS),
    );
}

fn show_json(root: &Path, name: &str) -> serde_json::Value {
    let out = ok(mv(root).args(["--json", "identity", "show", name]), None);
    serde_json::from_str(&out).unwrap()
}

fn sealed(root: &Path) -> PathBuf {
    root.join("identity/root.sealed")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// One value of the spec vector file (`key = "value"` lines; the file has one name).
/// multiverse has no TOML dependency, and the vector file is simple enough to read line by line.
fn vector(key: &str) -> String {
    let p = mv_testkit::workspace_root().join("docs/spec/scramble-v1.vectors.toml");
    let text = std::fs::read_to_string(p).unwrap();
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(" = ")?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("no `{key}` in the vector file"))
}

#[test]
fn spec_vectors_through_the_cli() {
    let t = tempfile::tempdir().unwrap();
    restore_spec(t.path());
    assert_eq!(vector("mnemonic"), SPEC_WORDS);
    let name = vector("name");
    let shown = show_json(t.path(), &name);
    let fields: Vec<&String> = shown.as_object().unwrap().keys().collect();
    assert_eq!(
        fields,
        [
            "epoch",
            "name",
            "onion",
            "openpgp_fingerprint",
            "ssh_ecdsa_p256",
            "ssh_ed25519",
            "ssh_host_ecdsa_p256",
            "ssh_host_ed25519"
        ]
    );
    for key in ["name", "ssh_ed25519", "onion", "openpgp_fingerprint"] {
        assert_eq!(shown[key].as_str().unwrap(), vector(key), "{key}");
    }
    let out = t.path().join("out");
    ok(
        mv(t.path())
            .args([
                "identity", "export", &name, "--kind", "password", "--kind", "luks", "--out",
            ])
            .arg(&out),
        None,
    );
    let pw = std::fs::read_to_string(out.join("password")).unwrap();
    assert_eq!(pw.trim_end(), vector("password"));
    let sha = run_ok(Command::new("sha256sum").arg(out.join("luks.key")));
    assert_eq!(&sha[..64], vector("luks_sha256"));
    assert_eq!(mode(&out.join("password")), 0o600);
    assert_eq!(mode(&out.join("luks.key")), 0o600);
    // `show` recorded the public identity for readers without the passphrase.
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(t.path().join("identity/public.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["identities"][SPEC_NAME]["onion"], vector("onion"));
}

#[test]
fn new_prints_words_once_and_restore_gives_the_same_keys() {
    let a = tempfile::tempdir().unwrap();
    let out = ok(mv(a.path()).args(["identity", "new"]).args(FAST), None);
    let words = out.lines().nth(1).unwrap().to_string();
    assert_eq!(words.split(' ').count(), 24);
    assert_eq!(mode(&sealed(a.path())), 0o600);
    assert!(!std::fs::read_to_string(sealed(a.path()))
        .unwrap_or_default()
        .contains(&words));

    // The words restore the same identity elsewhere.
    let b = tempfile::tempdir().unwrap();
    let words_file = b.path().join("words");
    std::fs::write(&words_file, format!("{words}\n")).unwrap();
    ok(
        mv(b.path())
            .args(["identity", "restore", "--words-file"])
            .arg(&words_file)
            .args(FAST),
        None,
    );
    assert_eq!(show_json(a.path(), "@user"), show_json(b.path(), "@user"));
    assert_eq!(
        show_json(a.path(), "star.router.multiverse"),
        show_json(b.path(), "star.router.multiverse")
    );

    // Restoring the same words again changes nothing and says so.
    let before = std::fs::read(sealed(b.path())).unwrap();
    let again = ok(
        mv(b.path())
            .args(["identity", "restore", "--words-file"])
            .arg(&words_file)
            .args(FAST),
        None,
    );
    assert!(again.contains("unchanged"), "{again}");
    assert_eq!(std::fs::read(sealed(b.path())).unwrap(), before);

    // `new` refuses to replace; `--dry-run --force` plans without writing.
    let err = usage_error(mv(b.path()).args(["identity", "new"]).args(FAST), None);
    assert!(err.contains("--force"), "{err}");
    let plan = ok(
        mv(b.path())
            .args(["--dry-run", "identity", "new", "--force"])
            .args(FAST),
        None,
    );
    assert!(plan.contains("would create"), "{plan}");
    assert!(!plan.contains(&words));
    assert_eq!(std::fs::read(sealed(b.path())).unwrap(), before);
}

#[test]
fn bad_input_gives_one_clear_error_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    restore_spec(t.path());
    let out = t.path().join("out");
    let export = |root: &Path, name: &str| {
        let mut c = mv(root);
        c.args(["identity", "export", name, "--kind", "all", "--out"])
            .arg(&out);
        c
    };

    // Wrong passphrase.
    let err = usage_error(
        export(t.path(), SPEC_NAME).env("MULTIVERSE_PASSPHRASE", "wrong"),
        None,
    );
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(!out.exists());

    // A flipped byte in the sealed file.
    let mut bytes = std::fs::read(sealed(t.path())).unwrap();
    let original = bytes.clone();
    bytes[70] ^= 0x04;
    std::fs::write(sealed(t.path()), &bytes).unwrap();
    let err = usage_error(&mut export(t.path(), SPEC_NAME), None);
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!out.exists());
    std::fs::write(sealed(t.path()), &original).unwrap();

    // Upper case and no dot.
    let err = usage_error(&mut export(t.path(), "Universe.router.multiverse"), None);
    assert!(err.contains("upper-case"), "{err}");
    let err = usage_error(&mut export(t.path(), "universe"), None);
    assert!(err.contains("no dot"), "{err}");
    assert!(!out.exists());

    // A wrong checksum word (two words swapped) and an unknown word, into a fresh tree.
    let fresh = tempfile::tempdir().unwrap();
    let mut words: Vec<&str> = SPEC_WORDS.split(' ').collect();
    words.swap(1, 2);
    let err = usage_error(
        mv(fresh.path()).args(["identity", "restore"]).args(FAST),
        Some(&words.join(" ")),
    );
    assert!(err.contains("checksum"), "{err}");
    let typo = SPEC_WORDS.replacen("liar", "lair", 1);
    let err = usage_error(
        mv(fresh.path()).args(["identity", "restore"]).args(FAST),
        Some(&typo),
    );
    assert!(err.contains("word 3 `lair`"), "{err}");
    assert!(!fresh.path().join("identity").exists());

    // An empty passphrase is refused before anything is written.
    let err = usage_error(
        mv(fresh.path())
            .env("MULTIVERSE_PASSPHRASE", "")
            .args(["identity", "new"])
            .args(FAST),
        None,
    );
    assert!(err.contains("passphrase is empty"), "{err}");
    assert!(!fresh.path().join("identity").exists());

    // No identity at all: a failure with a hint, not a usage error.
    let o = output(mv(fresh.path()).args(["identity", "show", SPEC_NAME]), None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("identity new"));
}

#[test]
fn export_is_idempotent_and_dry_run_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    restore_spec(t.path());
    let out = t.path().join("keys");
    let export = |extra: &[&str]| {
        let mut c = mv(t.path());
        c.args(extra)
            .args(["identity", "export", "@user", "--kind", "all", "--out"])
            .arg(&out);
        c
    };
    let plan = ok(&mut export(&["--dry-run"]), None);
    assert!(plan.contains("would write"), "{plan}");
    assert!(!out.exists());
    let first = ok(&mut export(&[]), None);
    assert!(first.contains("15 file(s) written"), "{first}");
    assert_eq!(mode(&out), 0o700);
    for secret in [
        "id_ed25519",
        "id_ecdsa",
        "ssh_host_ed25519_key",
        "ssh_host_ecdsa_key",
        "hs_ed25519_secret_key",
        "openpgp-secret.asc",
        "password",
        "luks.key",
    ] {
        assert_eq!(mode(&out.join(secret)), 0o600, "{secret}");
    }
    assert_eq!(mode(&out.join("id_ed25519.pub")), 0o644);
    let second = ok(&mut export(&[]), None);
    assert!(second.contains("nothing to do"), "{second}");

    // Encrypted SSH keys: different bytes each encryption, yet a second run is still a no-op.
    let kp = t.path().join("kp");
    std::fs::write(&kp, "key secret\n").unwrap();
    let enc = t.path().join("enc");
    let run = || {
        ok(
            mv(t.path())
                .args(["identity", "export", "@user", "--kind", "ssh", "--out"])
                .arg(&enc)
                .arg("--key-passphrase-file")
                .arg(&kp),
            None,
        )
    };
    assert!(run().contains("4 file(s) written"));
    assert!(run().contains("nothing to do"));
}

/// An SSH_ASKPASS script that prints the passphrase stored in a file, so no passphrase is put on
/// any command line.
fn askpass(dir: &Path, secret_file: &Path) -> PathBuf {
    let script = dir.join("askpass.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ncat '{}'\n", secret_file.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    script
}

fn pub_key_part(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn ssh_keygen_reads_every_exported_key() {
    let keygen = require_tool("ssh-keygen");
    let t = tempfile::tempdir().unwrap();
    restore_spec(t.path());
    let plain = t.path().join("plain");
    ok(
        mv(t.path())
            .args([
                "identity", "export", SPEC_NAME, "--kind", "ssh", "--kind", "ssh-host", "--out",
            ])
            .arg(&plain),
        None,
    );
    let secret = t.path().join("keypass");
    std::fs::write(&secret, "open sesame\n").unwrap();
    let enc = t.path().join("enc");
    ok(
        mv(t.path())
            .args(["identity", "export", "@user", "--kind", "ssh", "--out"])
            .arg(&enc)
            .arg("--key-passphrase-file")
            .arg(&secret),
        None,
    );
    let mut checked = 0;
    for (dir, keys, encrypted) in [
        (
            &plain,
            vec![
                "id_ed25519",
                "id_ecdsa",
                "ssh_host_ed25519_key",
                "ssh_host_ecdsa_key",
            ],
            false,
        ),
        (&enc, vec!["id_ed25519", "id_ecdsa"], true),
    ] {
        for k in keys {
            let key = dir.join(k);
            let text = std::fs::read_to_string(&key).unwrap();
            assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
            let mut c = Command::new(&keygen);
            c.arg("-y").arg("-f").arg(&key).stdin(Stdio::null());
            if encrypted {
                c.env("SSH_ASKPASS", askpass(t.path(), &secret))
                    .env("SSH_ASKPASS_REQUIRE", "force")
                    .env("DISPLAY", ":0");
            } else {
                // Without a passphrase prompt possible, an encrypted key would fail here.
                c.env_remove("SSH_ASKPASS")
                    .env("SSH_ASKPASS_REQUIRE", "never");
            }
            let derived = run_ok(&mut c);
            let exported = std::fs::read_to_string(dir.join(format!("{k}.pub"))).unwrap();
            assert_eq!(pub_key_part(&derived), pub_key_part(&exported), "{k}");
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
    // The spec's vector, through ssh-keygen itself.
    let derived = run_ok(
        Command::new(&keygen)
            .arg("-y")
            .arg("-f")
            .arg(plain.join("id_ed25519")),
    );
    assert_eq!(
        pub_key_part(&derived),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE4tTsP+ZvyuFVs9OokKqptyebL60d0JGfF0XUIXJdyW"
    );
}

const TOPOLOGY: &str = r#"
[host]
name = "host.multiverse"

[[machines]]
name = "work.service.multiverse"
type = "service"

[[machines]]
name = "app.multiverse"
type = "application"
"#;

#[test]
fn fleet_writes_every_machine_and_sshd_accepts_a_derived_login() {
    require_tool("sshd");
    let ssh = require_tool("ssh");
    let t = tempfile::tempdir().unwrap();
    restore_spec(t.path());
    std::fs::write(t.path().join("multiverse.toml"), TOPOLOGY).unwrap();
    let fleet = t.path().join("fleet");
    // `restore` recorded @user only (no multiverse.toml then); a dry-run fleet must not add to it.
    let record = t.path().join("identity/public.json");
    let recorded = std::fs::read_to_string(&record).unwrap();
    let plan = ok(
        mv(t.path())
            .args(["--dry-run", "identity", "fleet", "--out"])
            .arg(&fleet),
        None,
    );
    assert!(plan.contains("51 file(s) would be written"), "{plan}");
    assert!(!fleet.exists());
    assert_eq!(std::fs::read_to_string(&record).unwrap(), recorded);
    let first = ok(
        mv(t.path())
            .args(["identity", "fleet", "--out"])
            .arg(&fleet),
        None,
    );
    // 3 machines × 15 files + @user's 4 + known_hosts + authorized_keys.
    assert!(first.contains("51 file(s) written"), "{first}");
    let second = ok(
        mv(t.path())
            .args(["identity", "fleet", "--out"])
            .arg(&fleet),
        None,
    );
    assert!(second.contains("nothing to do"), "{second}");
    let known = std::fs::read_to_string(fleet.join("known_hosts")).unwrap();
    assert_eq!(known.lines().count(), 6);
    let host_onion = std::fs::read_to_string(fleet.join("host.multiverse/hostname")).unwrap();
    assert!(known.contains(&format!(
        "host.multiverse,{} ssh-ed25519 ",
        host_onion.trim()
    )));
    // machine show's source: every machine is in the public record.
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(t.path().join("identity/public.json")).unwrap(),
    )
    .unwrap();
    for n in [
        "host.multiverse",
        "work.service.multiverse",
        "app.multiverse",
        "@user",
    ] {
        assert!(rec["identities"][n].is_object(), "{n} recorded");
    }

    // sshd with the derived host keys of host.multiverse and @user's derived authorized_keys.
    let server = Sshd::start(
        t.path(),
        &fleet.join("host.multiverse"),
        &fleet.join("authorized_keys"),
    );
    let port = server.port();
    let user = run_ok(Command::new("id").arg("-un")).trim().to_string();
    let login = |alias: &str, key: &str| {
        Command::new(&ssh)
            .args(["-F", "/dev/null", "-p", &port.to_string(), "-i"])
            .arg(fleet.join("@user").join(key))
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg(format!(
                "-oUserKnownHostsFile={}",
                fleet.join("known_hosts").display()
            ))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .arg(format!("-oHostKeyAlias={alias}"))
            .arg(format!("{user}@127.0.0.1"))
            .arg("echo derived-login-ok")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    for key in ["id_ed25519", "id_ecdsa"] {
        let o = login("host.multiverse", key);
        assert!(
            o.status.success(),
            "login with {key}: {}\nsshd log: {}",
            String::from_utf8_lossy(&o.stderr),
            server.log_text()
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "derived-login-ok"
        );
    }
    // The client really checks: another machine's host key does not match.
    let o = login("app.multiverse", "id_ed25519");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn gpg_imports_the_exported_key_with_the_spec_fingerprint_and_decrypts() {
    let t = tempfile::tempdir().unwrap();
    restore_spec(t.path());
    let out = t.path().join("pgp");
    ok(
        mv(t.path())
            .args([
                "identity", "export", SPEC_NAME, "--kind", "openpgp", "--out",
            ])
            .arg(&out),
        None,
    );
    // gpg's agent for this home is stopped when `home` drops.
    let home = mv_testkit::gnupg::Home::new(&t.path().join("gnupg"));
    let g = || home.gpg();
    run_ok(g().arg("--import").arg(out.join("openpgp-secret.asc")));
    let listing = run_ok(g().args(["--with-colons", "--list-secret-keys"]));
    let fpr = listing
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .and_then(|l| l.split(':').nth(9))
        .unwrap();
    let want = vector("openpgp_fingerprint");
    assert_eq!(fpr, want);
    assert!(listing.contains(SPEC_NAME), "user id: {listing}");
    assert!(listing.contains(":1551398400:"), "creation time: {listing}");

    let msg = t.path().join("msg.txt");
    std::fs::write(&msg, "to the derived key\n").unwrap();
    let ct = t.path().join("msg.asc");
    run_ok(
        g().args([
            "--trust-model",
            "always",
            "--armor",
            "--recipient",
            &want,
            "--output",
        ])
        .arg(&ct)
        .arg("--encrypt")
        .arg(&msg),
    );
    let plain = run_ok(g().arg("--decrypt").arg(&ct));
    assert_eq!(plain, "to the derived key\n");
}

#[test]
fn tor_writes_the_same_hostname() {
    let t = tempfile::tempdir().unwrap();
    restore_spec(t.path());
    let hs = t.path().join("hs");
    ok(
        mv(t.path())
            .args(["identity", "export", SPEC_NAME, "--kind", "onion", "--out"])
            .arg(&hs),
        None,
    );
    assert_eq!(mode(&hs), 0o700);
    let ours = std::fs::read_to_string(hs.join("hostname")).unwrap();
    assert_eq!(ours.trim(), vector("onion"));
    // tor reads the exported key and writes its own hostname file (ours is removed first).
    assert_eq!(
        mv_testkit::tornet::onion_hostname_from_tor(&hs, t.path()),
        ours
    );
}

#[test]
fn cryptsetup_formats_and_opens_with_the_derived_key_file() {
    let cryptsetup = require_tool("cryptsetup");
    let t = tempfile::tempdir().unwrap();
    restore_spec(t.path());
    let out = t.path().join("luks");
    ok(
        mv(t.path())
            .args([
                "identity", "export", SPEC_NAME, "--kind", "luks", "--kind", "password", "--out",
            ])
            .arg(&out),
        None,
    );
    let key = out.join("luks.key");
    assert_eq!(std::fs::metadata(&key).unwrap().len(), 64);
    let img = t.path().join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(20 * 1024 * 1024)
        .unwrap();
    run_ok(
        Command::new(&cryptsetup)
            .args(["luksFormat", "--batch-mode", "--type", "luks2"])
            .args(["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"])
            .arg("--key-file")
            .arg(&key)
            .arg(&img),
    );
    run_ok(
        Command::new(&cryptsetup)
            .args(["open", "--test-passphrase", "--key-file"])
            .arg(&key)
            .arg(&img),
    );
    // Another derived secret is not the key.
    let wrong = Command::new(&cryptsetup)
        .args(["open", "--test-passphrase", "--key-file"])
        .arg(out.join("password"))
        .arg(&img)
        .output()
        .unwrap();
    assert!(!wrong.status.success());
}

#[test]
fn same_words_give_the_same_files_byte_for_byte() {
    // Two trees, two passphrases, one set of words: every exported file is identical, and equal to
    // the golden files mv-identity pins for the spec root.
    let golden = mv_testkit::workspace_root()
        .join("crates/mv-identity/tests/golden")
        .join(SPEC_NAME);
    let mut outs = Vec::new();
    for pass in ["first passphrase", "second passphrase"] {
        let t = tempfile::tempdir().unwrap();
        ok(
            mv(t.path())
                .env("MULTIVERSE_PASSPHRASE", pass)
                .args(["identity", "restore"])
                .args(FAST),
            Some(SPEC_WORDS),
        );
        let out = t.path().join("all");
        ok(
            mv(t.path())
                .env("MULTIVERSE_PASSPHRASE", pass)
                .args(["identity", "export", SPEC_NAME, "--kind", "all", "--out"])
                .arg(&out),
            None,
        );
        outs.push((t, out));
    }
    let mut compared = 0;
    for entry in std::fs::read_dir(&golden).unwrap() {
        let g = entry.unwrap().path();
        let file = g.file_name().unwrap();
        let a = std::fs::read(outs[0].1.join(file)).unwrap();
        let b = std::fs::read(outs[1].1.join(file)).unwrap();
        assert_eq!(a, b, "{file:?} differs between two restores");
        let want = std::fs::read_to_string(&g).unwrap();
        let got = match String::from_utf8(a.clone()) {
            Ok(s) => s,
            Err(_) => format!(
                "{}\n",
                a.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
        };
        assert_eq!(got, want, "{file:?} differs from the golden file");
        compared += 1;
    }
    assert_eq!(compared, 15);
}

fn machine_show_identity(root: &Path, name: &str) -> serde_json::Value {
    let out = ok(mv(root).args(["--json", "machine", "show", name]), None);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["identity"].clone()
}

#[test]
fn new_and_restore_record_every_machine_for_machine_show() {
    let t = tempfile::tempdir().unwrap();
    ok(mv(t.path()).arg("init"), None);
    restore_spec(t.path());
    // Recorded at restore, read without a passphrase: the spec's vector, for a machine never shown.
    let shown = machine_show_identity(t.path(), SPEC_NAME);
    assert_eq!(shown["onion"], vector("onion"));
    assert_eq!(shown["ssh_ed25519"], vector("ssh_ed25519"));

    // A replaced identity starts a fresh record: no key of the old root is left behind.
    ok(
        mv(t.path()).args(["identity", "new", "--force"]).args(FAST),
        None,
    );
    let replaced = machine_show_identity(t.path(), SPEC_NAME);
    assert_ne!(replaced["onion"], vector("onion"));
    assert_eq!(replaced, show_json(t.path(), SPEC_NAME));
    let record = std::fs::read_to_string(t.path().join("identity/public.json")).unwrap();
    assert!(!record.contains(&vector("onion")), "stale key in {record}");
}

/// One value of the epochs spec's vector file for the name `name` (`key = value` lines).
fn epoch_vector(name: &str, key: &str) -> String {
    let p = mv_testkit::workspace_root().join("docs/spec/scramble-v1-epochs.vectors.toml");
    let text = std::fs::read_to_string(p).unwrap();
    let block = text
        .split("[[names]]")
        .find(|b| b.contains(&format!("name = \"{name}\"")) && !b.contains("epoch = 0"))
        .unwrap();
    block
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(" = ")?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("no `{key}` for {name}"))
}

#[test]
fn epochs_in_multiverse_toml_move_every_key_of_that_name_only() {
    let t = tempfile::tempdir().unwrap();
    ok(mv(t.path()).arg("init"), None);
    restore_spec(t.path());
    let config = t.path().join("multiverse.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{original}\n[identity.epochs]\n\"{SPEC_NAME}\" = 1\n\"@user\" = 2\n"),
    )
    .unwrap();
    let shown = show_json(t.path(), SPEC_NAME);
    assert_eq!(shown["epoch"], 1);
    for key in [
        "ssh_ed25519",
        "ssh_host_ed25519",
        "onion",
        "openpgp_fingerprint",
    ] {
        assert_eq!(
            shown[key].as_str().unwrap(),
            epoch_vector(SPEC_NAME, key),
            "{key}"
        );
    }
    let user = show_json(t.path(), "@user");
    assert_eq!(user["epoch"], 2);
    assert_eq!(user["onion"], epoch_vector("@user", "onion"));
    let text = ok(mv(t.path()).args(["identity", "show", SPEC_NAME]), None);
    assert!(text.contains("\nepoch                1\n"), "{text}");
    // Another name stays at epoch 0, and the exported password and LUKS key follow the epoch.
    assert_eq!(show_json(t.path(), "star.router.multiverse")["epoch"], 0);
    let out = t.path().join("out");
    ok(
        mv(t.path())
            .args([
                "identity", "export", SPEC_NAME, "--kind", "password", "--out",
            ])
            .arg(&out),
        None,
    );
    assert_eq!(
        std::fs::read_to_string(out.join("password"))
            .unwrap()
            .trim(),
        epoch_vector(SPEC_NAME, "password")
    );

    // Bad epochs: FILE:LINE, exit 2, before any key is derived.
    let line = original.lines().count() + 3;
    for bad in [
        format!("\"{SPEC_NAME}\" = 4294967296"),
        format!("\"{SPEC_NAME}\" = -1"),
        "\"nobody.multiverse\" = 1".to_string(),
    ] {
        std::fs::write(&config, format!("{original}\n[identity.epochs]\n{bad}\n")).unwrap();
        let err = usage_error(mv(t.path()).args(["identity", "show", SPEC_NAME]), None);
        assert!(
            err.contains(&format!("multiverse.toml:{line}: ")),
            "{bad}: {err}"
        );
    }
}

/// A SOCKS5 server (RFC 1928, no authentication, CONNECT by name) standing in for Tor's SOCKS
/// port: it records each requested `host:port` and joins the client to `target` instead, or
/// answers every request with `refuse` (a reply code) when given.
fn socks_server(
    target: std::net::SocketAddr,
    refuse: Option<u8>,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut c) = client else { return };
            let mut hello = [0u8; 3];
            if c.read_exact(&mut hello).is_err() || c.write_all(&[5, 0]).is_err() {
                continue;
            }
            let mut head = [0u8; 5];
            c.read_exact(&mut head).unwrap();
            let mut name = vec![0u8; usize::from(head[4])];
            c.read_exact(&mut name).unwrap();
            let mut port = [0u8; 2];
            c.read_exact(&mut port).unwrap();
            seen.lock().unwrap().push(format!(
                "{}:{}",
                String::from_utf8_lossy(&name),
                u16::from_be_bytes(port)
            ));
            if let Some(code) = refuse {
                let _ = c.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
                continue;
            }
            let up = std::net::TcpStream::connect(target).unwrap();
            c.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).unwrap();
            let (mut c2, mut up2) = (c.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut up2);
                let _ = up2.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let (mut up, mut c) = (up, c);
                let _ = std::io::copy(&mut up, &mut c);
                let _ = c.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr, asked)
}

/// `multiverse ssh --onion`: the session goes through a SOCKS5 proxy (Tor's, here a stand-in
/// joined to an sshd with the mail service's derived host keys), asking it for exactly the onion
/// address `identity show` prints, port 22, and logs in with the derived keys both ways. The
/// booted version, through a real private Tor network to a star router, is in tests/chain.rs.
#[test]
fn ssh_onion_asks_tor_for_the_derived_address_and_checks_the_derived_host_key() {
    require_tool("sshd");
    require_tool("ssh");
    const MAIL: &str = "mail.service.multiverse";
    const MAIL_NIC: &str = "networks = [{ network = \"net2\", address = \"10.2.2.20\" }]";
    let t = tempfile::tempdir().unwrap();
    let published =
        mv_machines::LAB_TOML.replacen(MAIL_NIC, &format!("{MAIL_NIC}\nonion = [22]"), 1);
    assert_ne!(published, mv_machines::LAB_TOML);
    std::fs::write(t.path().join("multiverse.toml"), published).unwrap();
    restore_spec(t.path());
    let fleet = t.path().join("fleet");
    ok(
        mv(t.path())
            .args(["identity", "fleet", "--out"])
            .arg(&fleet),
        None,
    );
    // sshd with mail's derived host keys and @user's derived authorized_keys.
    let server = Sshd::start(t.path(), &fleet.join(MAIL), &fleet.join("authorized_keys"));
    let port = server.port();
    let user = run_ok(Command::new("id").arg("-un")).trim().to_string();
    let onion = show_json(t.path(), MAIL)["onion"]
        .as_str()
        .unwrap()
        .to_string();
    let sshd_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (socks, asked) = socks_server(sshd_addr, None);
    let login = |machine: &str, socks: std::net::SocketAddr| {
        output(
            mv(t.path()).args([
                "ssh",
                "--onion",
                "--socks",
                &socks.to_string(),
                "-l",
                &user,
                machine,
                "--",
                "echo onion-login-ok",
            ]),
            None,
        )
    };
    // Several sessions: the first bytes of each (sshd's version line) must reach ssh at once.
    for _ in 0..3 {
        let out = login(MAIL, socks);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "onion-login-ok"
        );
    }
    assert_eq!(
        asked.lock().unwrap().clone(),
        vec![format!("{onion}:22"); 3],
        "the proxy must be asked for the derived onion address"
    );

    // Another machine's host keys behind the same address: refused as not the derived key.
    let wrong = t.path().join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    for k in ["ssh_host_ed25519_key", "ssh_host_ecdsa_key"] {
        std::fs::copy(
            fleet.join("universe.router.multiverse").join(k),
            wrong.join(k),
        )
        .unwrap();
        std::fs::set_permissions(wrong.join(k), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let impostor = Sshd::start(t.path(), &wrong, &fleet.join("authorized_keys"));
    let port2 = impostor.port();
    let (socks2, _) = socks_server(format!("127.0.0.1:{port2}").parse().unwrap(), None);
    let out = login(MAIL, socks2);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Host key verification failed"),
        "{out:?}"
    );

    // Tor's answer for an onion service it cannot find reaches the person in words.
    let (refusing, _) = socks_server(sshd_addr, Some(0xF0));
    let out = login(MAIL, refusing);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("descriptor not found"),
        "{out:?}"
    );
    // A machine that publishes no onion service for its sshd: one usage error, no proxy asked.
    let out = login("browser.app.multiverse", socks);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("browser.app.multiverse publishes no onion service"),
        "{err}"
    );
    assert_eq!(asked.lock().unwrap().len(), 3);
}

/// A tree with the spec's identity whose commands share a private session cache: their own
/// agent folder, no passphrase in the environment, the default lifetimes; the agent is locked
/// (and ends) when the test ends, whatever happened.
struct Session {
    dir: tempfile::TempDir,
}

impl Session {
    fn new() -> Session {
        let s = Session {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(s.passphrase_file(), format!("{}\n", common::PASS)).unwrap();
        ok(
            mv(&s.root()).args(["identity", "restore"]).args(FAST),
            Some(SPEC_WORDS),
        );
        s
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("tree")
    }
    fn agent(&self) -> PathBuf {
        self.dir.path().join("agent")
    }
    fn passphrase_file(&self) -> PathBuf {
        self.dir.path().join("passphrase")
    }
    /// `multiverse --root TREE` with this session's agent and no passphrase source at all.
    fn mv(&self) -> Command {
        let mut c = mv(&self.root());
        c.env("MULTIVERSE_PASS_AGENT_DIR", self.agent())
            .env_remove("MULTIVERSE_PASS_CACHE_TTL")
            .env_remove("MULTIVERSE_PASSPHRASE");
        c
    }
    /// `identity show SPEC_NAME` with the passphrase file (`Some`) or nothing to ask with.
    fn show(&self, file: bool) -> std::process::Output {
        let mut c = self.mv();
        c.args(["identity", "show", SPEC_NAME]);
        if file {
            c.arg("--passphrase-file").arg(self.passphrase_file());
        }
        output(&mut c, None)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.mv().args(["identity", "lock"]).output();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A command that needed the passphrase and had none: exit 2, "no passphrase given".
fn asks_for_the_passphrase(o: &std::process::Output) -> bool {
    o.status.code() == Some(2) && text(&o.stderr).contains("no passphrase given")
}

#[test]
fn one_unlock_serves_later_commands_without_a_passphrase_until_lock() {
    let s = Session::new();
    let first = s.show(true);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let said = text(&first.stderr);
    assert!(
        said.contains("identity unlocked for this session"),
        "{said}"
    );
    assert!(said.contains("multiverse identity lock"), "{said}");
    // No passphrase file, no environment, stdin closed: the same keys, and nothing said.
    let second = s.show(false);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(text(&second.stdout), text(&first.stdout));
    assert!(text(&first.stdout).contains(&vector("ssh_ed25519")));
    assert!(!text(&second.stderr).contains("unlocked"));
    // The other commands that need the root too (export, here).
    let out = s.dir.path().join("out");
    ok(
        s.mv()
            .args([
                "identity", "export", SPEC_NAME, "--kind", "password", "--out",
            ])
            .arg(&out),
        None,
    );
    assert!(out.join("password").is_file());
    // Nothing secret on disk: the agent folder holds the socket and an empty lock file.
    assert_eq!(mode(&s.agent()), 0o700);
    for e in std::fs::read_dir(s.agent()).unwrap() {
        let m = e.unwrap().metadata().unwrap();
        assert_eq!(m.permissions().mode() & 0o077, 0);
        assert_eq!(m.len(), 0);
    }
    // `identity lock` forgets: the same call now has to ask, and cannot.
    let locked = ok(s.mv().args(["identity", "lock"]), None);
    assert!(locked.contains("locked"), "{locked}");
    assert!(asks_for_the_passphrase(&s.show(false)));
    // `pass lock` forgets the root as well.
    assert!(s.show(true).status.success());
    assert!(s.show(false).status.success());
    ok(s.mv().args(["pass", "lock"]), None);
    assert!(asks_for_the_passphrase(&s.show(false)));
    // Locking with nothing unlocked says so and succeeds.
    let again = ok(s.mv().args(["identity", "lock"]), None);
    assert!(again.contains("nothing to forget"), "{again}");
}

#[test]
fn a_wrong_passphrase_caches_nothing() {
    let s = Session::new();
    let wrong = s.dir.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase\n").unwrap();
    let o = output(
        s.mv()
            .args(["identity", "show", SPEC_NAME, "--passphrase-file"])
            .arg(&wrong),
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(!text(&o.stderr).contains("unlocked"));
    assert!(asks_for_the_passphrase(&s.show(false)));
    assert!(!s.agent().join("pass-agent.sock").exists(), "no agent");
}

#[test]
fn ttl_zero_disables_the_cache() {
    let s = Session::new();
    for var in ["MULTIVERSE_PASS_CACHE_TTL", "MULTIVERSE_PASS_CACHE_MAX_TTL"] {
        let mut c = s.mv();
        c.args(["identity", "show", SPEC_NAME, "--passphrase-file"])
            .arg(s.passphrase_file())
            .env(var, "0");
        let o = output(&mut c, None);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(!text(&o.stderr).contains("unlocked"), "{var}");
        assert!(asks_for_the_passphrase(&s.show(false)), "{var}");
    }
    assert!(!s.agent().join("pass-agent.sock").exists(), "no agent");
}

#[test]
fn a_re_restored_root_is_not_served_the_old_one() {
    let s = Session::new();
    // --quiet: the unlock is not announced.
    let o = output(
        s.mv()
            .args([
                "--quiet",
                "identity",
                "show",
                SPEC_NAME,
                "--passphrase-file",
            ])
            .arg(s.passphrase_file()),
        None,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stderr), "");
    let old = text(&o.stdout);
    // Other words, restored over the tree (a new sealed file) while the old root is cached.
    let other = tempfile::tempdir().unwrap();
    let out = ok(mv(other.path()).args(["identity", "new"]).args(FAST), None);
    let words = out.lines().nth(1).unwrap().to_string();
    assert_eq!(words.split(' ').count(), 24);
    let words_file = s.dir.path().join("words");
    std::fs::write(&words_file, format!("{words}\n")).unwrap();
    ok(
        s.mv()
            .args(["identity", "restore", "--force", "--words-file"])
            .arg(&words_file)
            .arg("--passphrase-file")
            .arg(s.passphrase_file())
            .args(FAST),
        None,
    );
    assert!(
        asks_for_the_passphrase(&s.show(false)),
        "the old root served"
    );
    let new = s.show(true);
    assert!(new.status.success(), "{}", text(&new.stderr));
    assert_ne!(text(&new.stdout), old);
    assert_eq!(text(&s.show(false).stdout), text(&new.stdout));
}

#[test]
fn the_idle_timeout_expires_the_root() {
    let s = Session::new();
    let mut c = s.mv();
    c.args(["identity", "show", SPEC_NAME, "--passphrase-file"])
        .arg(s.passphrase_file())
        .env("MULTIVERSE_PASS_CACHE_TTL", "2");
    let o = output(&mut c, None);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("2 s after last use"));
    assert!(s.show(false).status.success(), "within the 2 s");
    std::thread::sleep(Duration::from_secs(3));
    assert!(asks_for_the_passphrase(&s.show(false)), "expired");
}

#[test]
fn pass_takes_the_cached_root_too() {
    let s = Session::new();
    assert!(s.show(true).status.success());
    let pass = || {
        let mut c = s.mv();
        c.arg("pass")
            .env("PASSWORD_STORE_DIR", s.dir.path().join("store"))
            .env_remove("MULTIVERSE_PASS_KEYS")
            .env_remove("PASSWORD_STORE_KEY")
            .env("GNUPGHOME", s.dir.path().join("gnupg"));
        c
    };
    // The identity's @user key, derived from the cached root: no passphrase for any of these.
    ok(pass().arg("init"), None);
    ok(pass().args(["insert", "-e", "e"]), Some("v\n"));
    let o = output(pass().args(["show", "e"]), None);
    assert_eq!(text(&o.stdout), "v\n", "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("pass keys unlocked for this session"));
    assert_eq!(ok(pass().args(["show", "e"]), None), "v\n");
    // Locked: pass has to ask again.
    ok(s.mv().args(["identity", "lock"]), None);
    assert!(asks_for_the_passphrase(&output(
        pass().args(["show", "e"]),
        None
    )));
}
