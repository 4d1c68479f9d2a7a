//! Security tests: provision (see main.rs and docs/security.md).
//!
//! Finding 1: `provision apply --target` followed the guest's absolute symlinks on the host. A
//! guest root whose `/etc/ssh`, `/root/.ssh` and `/home/user` were links to host folders got the
//! host's sshd_config overwritten, SSH host keys and authorized_keys written into host folders and
//! a host folder chowned to uid 1000; its `/etc/shadow` linked to a host file was read and merged
//! into the guest's. Every path now resolves inside the target (`mv_core::confined::RootDir`).
//! The tests drive the real binary on a fake Debian root (the OS marker, account files, a dpkg
//! database that already lists the recipe's packages and unit files for its services, so no
//! package manager runs) beside a folder standing for the host.
//!
//! Finding 3: `provision --ssh` kept the login key in `/tmp/multiverse-ssh.<pid>`, removed with
//! errors ignored and then accepted when it existed: a racer who made it first read the key. The
//! scratch folder is now a fresh `mkdtemp` folder, 0700 from creation. The test watches it from a
//! fake `ssh` put first in `PATH`.

use super::common::{self, output, FAST, SPEC_WORDS};
use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const MACHINE: &str = "browser.app.multiverse";

/// A tree made by `init` with the spec identity.
fn tree(dir: &Path) -> PathBuf {
    let t = dir.join("tree");
    common::ok(common::mv(&t).arg("init"), None);
    common::ok(
        common::mv(&t).args(["identity", "restore"]).args(FAST),
        Some(SPEC_WORDS),
    );
    t
}

/// Every entry under `dir`, links not followed: path → (mode, uid, gid, contents or link text).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let data = if m.file_type().is_symlink() {
            std::fs::read_link(&p)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if m.is_file() {
            std::fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        out.insert(p.clone(), (m.mode(), m.uid(), m.gid(), data));
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
    }
    out
}

/// The paths whose entry differs between two snapshots (made, removed, or changed).
fn changed(
    a: &BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)>,
    b: &BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)>,
) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = a
        .keys()
        .chain(b.keys())
        .filter(|p| a.get(*p) != b.get(*p))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A fake Debian root at `dir/guest` the recipe of [`MACHINE`] applies to without a package
/// manager: the packages the plan asks for are listed as installed, its services have units.
fn fake_debian(tree: &Path, dir: &Path) -> PathBuf {
    let g = dir.join("guest");
    for d in [
        "etc",
        "var/lib/dpkg",
        "lib/systemd/system",
        "root",
        "home",
        "srv",
    ] {
        std::fs::create_dir_all(g.join(d)).unwrap();
    }
    std::fs::write(g.join("etc/debian_version"), "12.8\n").unwrap();
    std::fs::write(
        g.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(
        g.join("etc/group"),
        "root:x:0:\nshadow:x:42:\nusers:x:100:\nnogroup:x:65534:\n",
    )
    .unwrap();
    std::fs::write(g.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    std::fs::write(g.join("var/lib/dpkg/status"), "").unwrap();
    let json = common::ok(
        common::mv(tree)
            .args(["--json", "provision", "plan", MACHINE, "--target"])
            .arg(&g),
        None,
    );
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut status = String::new();
    for c in plan["changes"].as_array().unwrap() {
        match c["kind"].as_str().unwrap() {
            "packages" => {
                for p in c["packages"].as_array().unwrap() {
                    status.push_str(&format!(
                        "Package: {}\nStatus: install ok installed\n\n",
                        p.as_str().unwrap()
                    ));
                }
            }
            "service_after_install" => {
                let name = c["name"].as_str().unwrap();
                let unit = if name.contains('.') {
                    name.to_string()
                } else {
                    format!("{name}.service")
                };
                std::fs::write(
                    g.join("lib/systemd/system").join(unit),
                    "[Unit]\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
                )
                .unwrap();
            }
            _ => {}
        }
    }
    std::fs::write(g.join("var/lib/dpkg/status"), status).unwrap();
    g
}

/// The folder standing for the host: an sshd_config, root's and a user's folders, a shadow file.
fn host(dir: &Path) -> PathBuf {
    let h = dir.join("host");
    for (d, mode) in [
        ("etc-ssh", 0o755),
        ("root-ssh", 0o700),
        ("home-user", 0o755),
    ] {
        std::fs::create_dir_all(h.join(d)).unwrap();
        std::fs::set_permissions(h.join(d), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::write(
        h.join("etc-ssh/sshd_config"),
        "# the host's own sshd_config\n",
    )
    .unwrap();
    std::fs::write(
        h.join("shadow"),
        "root:$6$hostsalt$HOSTHASHNEVERINAGUEST:19000:0:99999:7:::\n",
    )
    .unwrap();
    std::fs::set_permissions(h.join("shadow"), std::fs::Permissions::from_mode(0o600)).unwrap();
    h
}

fn apply(tree: &Path, guest: &Path) -> std::process::Output {
    output(
        common::mv(tree)
            .args(["provision", "apply", MACHINE, "--target"])
            .arg(guest),
        None,
    )
}

/// The writes: absolute and relative links from the guest's managed folders to host folders.
/// Nothing outside the guest changes; apply refuses with one line naming a guest path.
#[test]
fn apply_target_never_writes_through_guest_links_to_the_host() {
    let t = tempfile::tempdir().unwrap();
    let tree = tree(t.path());
    let guest = fake_debian(&tree, t.path());
    let host = host(t.path());
    // Absolute links, as the original finding planted them, and a relative one climbing out.
    symlink(host.join("etc-ssh"), guest.join("etc/ssh")).unwrap();
    symlink(host.join("home-user"), guest.join("home/user")).unwrap();
    let up = "../".repeat(guest.components().count() + 2);
    let rel = format!("{up}{}", host.join("root-ssh").display());
    symlink(&rel, guest.join("root/.ssh")).unwrap();
    let before = snapshot(&host);
    let names = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let top = names(t.path());

    let out = apply(&tree, &guest);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();

    let host_changes = changed(&before, &snapshot(&host));
    assert!(
        host_changes.is_empty(),
        "written, chmodded or chowned on the host: {host_changes:?}\n{err}"
    );
    assert_eq!(top, names(t.path()), "something was made beside the guest");
    if out.status.success() {
        // Written inside the guest, where its links lead when resolved in its root.
        return;
    }
    let first = err.lines().next().unwrap_or_default();
    eprintln!("apply refused: {err}");
    assert!(
        first.contains(&guest.display().to_string())
            && ["etc/ssh", "home/user", "root/.ssh"]
                .iter()
                .any(|p| first.contains(p)),
        "one clear line naming the guest path expected: {err}"
    );
}

/// The reads, and writes that land inside the guest: `/etc/shadow` linked to a host file by its
/// absolute host path reads as missing (not the host's hashes), `/root/.ssh` climbing past `/`
/// lands in the guest's own `/srv/keys`; apply succeeds and the host is untouched.
#[test]
fn apply_target_reads_and_writes_inside_the_guest_root() {
    let t = tempfile::tempdir().unwrap();
    let tree = tree(t.path());
    let guest = fake_debian(&tree, t.path());
    let host = host(t.path());
    std::fs::remove_file(guest.join("etc/shadow")).unwrap();
    symlink(host.join("shadow"), guest.join("etc/shadow")).unwrap();
    std::fs::create_dir_all(guest.join("srv/keys")).unwrap();
    let up = "../".repeat(guest.components().count() + 2);
    symlink(format!("{up}srv/keys"), guest.join("root/.ssh")).unwrap();
    // Folders the recipe writes into, linked inside the guest by absolute guest paths.
    std::fs::create_dir_all(guest.join("srv/home-user")).unwrap();
    symlink("/srv/home-user", guest.join("home/user")).unwrap();
    let before = snapshot(&host);

    let out = apply(&tree, &guest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let host_changes = changed(&before, &snapshot(&host));
    assert!(
        host_changes.is_empty(),
        "written, chmodded or chowned on the host: {host_changes:?}"
    );
    let shadow = std::fs::read_to_string(guest.join("etc/shadow")).unwrap();
    assert!(
        !shadow.contains("HOSTHASH"),
        "the host's shadow was read into the guest's: {shadow}"
    );
    assert!(shadow.contains("user:$6$"), "{shadow}");
    // /home/user is the guest's /srv/home-user, given to the user.
    let home = std::fs::metadata(guest.join("srv/home-user")).unwrap();
    assert_eq!(home.uid(), 1000);
    assert!(guest.join("srv/home-user/.ssh/authorized_keys").is_file());
    // A second apply sees everything in place.
    let again = common::ok(
        common::mv(&tree)
            .args(["provision", "apply", MACHINE, "--target"])
            .arg(&guest),
        None,
    );
    assert!(again.trim().ends_with("no changes"), "{again}");
}

/// Removals: a guest's provision state is the guest's own bytes. One listing files, a folder and
/// a service link under guest links to host folders (absolute, and relative climbing past `/`),
/// with the SHA-256 of the host files' real contents, removes nothing outside the guest.
#[test]
fn apply_target_never_removes_through_guest_links_to_the_host() {
    let t = tempfile::tempdir().unwrap();
    let tree = tree(t.path());
    let guest = fake_debian(&tree, t.path());
    let host = host(t.path());
    let sha = |p: &Path| mv_provision::sha256_hex(&std::fs::read(p).unwrap());
    symlink(host.join("etc-ssh"), guest.join("etc/hostssh")).unwrap();
    let up = "../".repeat(guest.components().count() + 2);
    let climb = format!("{up}{}", host.display());
    symlink(&climb, guest.join("srv/up")).unwrap();
    symlink(host.join("root-ssh"), guest.join("srv/hostdir")).unwrap();
    let state = serde_json::json!({
        "version": 1,
        "files": [
            { "path": "/etc/hostssh/sshd_config", "sha256": sha(&host.join("etc-ssh/sshd_config")) },
            { "path": "/srv/up/shadow", "sha256": sha(&host.join("shadow")) },
        ],
        "dirs": ["/srv/hostdir", "/srv/up/home-user"],
        "services": [{ "name": "evil", "links": [
            { "link": "/srv/up/etc-ssh/sshd_config", "to": "/lib/systemd/system/evil.service" },
        ]}],
    });
    std::fs::create_dir_all(guest.join("var/lib/multiverse")).unwrap();
    std::fs::write(
        guest.join("var/lib/multiverse/provision-state.json"),
        serde_json::to_vec(&state).unwrap(),
    )
    .unwrap();
    let before = snapshot(&host);

    let out = apply(&tree, &guest);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let host_changes = changed(&before, &snapshot(&host));
    assert!(
        host_changes.is_empty(),
        "removed or changed on the host: {host_changes:?}\n{err}"
    );
    assert!(out.status.success(), "{err}");
    // The guest's own links are left: a link where a folder was recorded is not a folder.
    assert!(guest.join("srv/hostdir").is_symlink());
    assert!(
        err.contains("left in place: /srv/hostdir: no longer a folder"),
        "{err}"
    );
}

/// Finding 3: the scratch folder holding the `@user` login key. A fake `ssh` first in `PATH`
/// reports the folder of the key it is given (`-i`); the folder must not be the predictable
/// `multiverse-ssh.<pid>`, must be a new folder of ours, 0700, gone afterwards; and a temporary
/// folder that cannot hold it is an error before any ssh runs.
#[test]
fn ssh_scratch_folder_is_fresh_private_and_unpredictable() {
    let t = tempfile::tempdir().unwrap();
    let tree = tree(t.path());
    let bin = t.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(
        bin.join("ssh"),
        "#!/bin/sh\nprev=; key=\nfor a in \"$@\"; do [ \"$prev\" = -i ] && key=$a; prev=$a; done\n\
         d=$(dirname \"$key\")\nstat -c '%a %u %n' \"$d\" >> \"$MV_FAKE_SSH_REPORT\"\n\
         echo 'ssh: connect to host 127.0.0.1 port 22: Connection refused' >&2\nexit 255\n",
    )
    .unwrap();
    std::fs::set_permissions(bin.join("ssh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A sticky, world-writable temporary folder like /tmp, where an attacker could pre-create.
    let tmp = t.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let report = t.path().join("report");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |tmpdir: &Path| {
        common::mv(&tree)
            .args(["provision", "plan", MACHINE, "--ssh", "root@127.0.0.1"])
            .env("PATH", &path)
            .env("TMPDIR", tmpdir)
            .env("MV_FAKE_SSH_REPORT", &report)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut seen = Vec::new();
    for _ in 0..3 {
        let child = run(&tmp);
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success());
        let text = std::fs::read_to_string(&report).unwrap_or_default();
        std::fs::remove_file(&report).unwrap();
        let line = text
            .lines()
            .next()
            .unwrap_or_else(|| panic!("ssh never ran: {}", String::from_utf8_lossy(&out.stderr)));
        let mut parts = line.splitn(3, ' ');
        let (mode, uid, dir) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            PathBuf::from(parts.next().unwrap()),
        );
        assert_eq!(dir.parent(), Some(tmp.as_path()), "{line}");
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert_ne!(
            name,
            format!("multiverse-ssh.{pid}"),
            "the scratch folder is named after the pid"
        );
        assert!(name.starts_with("multiverse-ssh."), "{name}");
        assert_eq!(mode, "700", "{line}");
        assert_eq!(uid, euid().to_string(), "{line}");
        assert!(!dir.exists(), "the scratch folder outlived the run");
        seen.push(name);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "scratch names repeat: {seen:?}");

    // No usable temporary folder: fatal, and no ssh ran.
    let out = run(&t.path().join("missing")).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cannot make a private folder"), "{err}");
    assert!(!report.exists(), "ssh ran without a private folder");
    assert!(!t.path().join("missing").exists());
}

/// This process's effective uid (from /proc, no unsafe).
fn euid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}
