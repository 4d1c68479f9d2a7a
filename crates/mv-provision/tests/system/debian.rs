//! A real Debian target: a minimal bookworm made by debootstrap (cached outside git, copied per
//! test), provisioned as the star router and as a service machine, then checked from inside the
//! chroot: packages (`dpkg -s`), files, users (the identity's password verifies against
//! /etc/shadow, checked by Python's crypt, not by our code), services enabled (systemd links),
//! sysctl; the configs pass `sshd -t` and `nft -c` inside the chroot; a second apply changes
//! nothing. A package that does not exist fails cleanly and leaves the target as it was.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::{debian_root, name, topology, Fixture};
use mv_provision::{
    apply, plan, render, ApplyError, Change, Engine, IdentitySource, Os, SystemRunner, Target,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn spec(machine: &str) -> mv_provision::MachineSpec {
    topology(Os::Debian)
        .into_iter()
        .find(|m| m.name.as_str() == machine)
        .unwrap()
}

fn in_chroot(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new("chroot")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

/// Checks `password` against `user`'s hash in the target's /etc/shadow with Python's crypt(3)
/// binding (glibc), the password on stdin.
fn shadow_verifies(root: &Path, user: &str, password: &str) -> bool {
    let shadow = std::fs::read_to_string(root.join("etc/shadow")).unwrap();
    let hash = shadow
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{user}:")))
        .and_then(|rest| rest.split(':').next())
        .unwrap()
        .to_string();
    assert!(hash.starts_with("$6$"), "{user}: not sha512-crypt: {hash}");
    let mut child = Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt,sys; pw=sys.stdin.read(); h=sys.argv[1]; sys.exit(0 if crypt.crypt(pw,h)==h else 1)",
            &hash,
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

fn link(root: &Path, p: &str) -> String {
    std::fs::read_link(root.join(p))
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .display()
        .to_string()
}

fn provision_twice(machine: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = debian_root(tmp.path());
    let desired = render(&spec(machine), &Engine::embedded(), &Fixture).unwrap();
    let target = Target::open(&root, Os::Debian).unwrap();

    let before = plan(&desired, &target).unwrap();
    assert!(
        matches!(&before.changes[0], Change::Packages { packages, .. } if packages.contains(&"openssh-server".to_string())),
        "{:?}",
        before.changes[0]
    );
    let applied = apply(&desired, &target, &SystemRunner).unwrap();
    assert!(!applied.changes.is_empty());

    let again = apply(&desired, &target, &SystemRunner).unwrap();
    assert!(
        again.changes.is_empty(),
        "second apply changed: {:#?}",
        again.changes
    );
    assert!(plan(&desired, &target).unwrap().is_empty());
    (tmp, root)
}

#[test]
fn star_router_on_real_debian() {
    let (_tmp, root) = provision_twice("star.router.multiverse");
    for pkg in ["tor", "nftables", "dnsmasq", "openssh-server", "ifupdown"] {
        let out = in_chroot(&root, &["dpkg", "-s", pkg]);
        assert!(out.status.success(), "{pkg} not installed");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Status: install ok installed"));
    }
    // Files: ours, with our modes; host keys are the identity's.
    let torrc = std::fs::read_to_string(root.join("etc/tor/torrc")).unwrap();
    assert!(torrc.contains("TransPort 10.2.2.1:9040 IsolateClientAddr"));
    assert!(torrc.contains("DNSPort 10.2.2.1:5353"));
    assert_eq!(
        std::fs::metadata(root.join("etc/nftables.conf"))
            .unwrap()
            .mode()
            & 0o777,
        0o755
    );
    // The onion service folder is tor's own (debian-tor, 0700: tor refuses anything looser),
    // made after the tor package created its user; the key inside is the identity's.
    let tor_uid = std::fs::read_to_string(root.join("etc/passwd"))
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == "debian-tor").then(|| f[2].parse::<u32>().unwrap())
        })
        .expect("debian-tor user");
    let hs = std::fs::metadata(root.join("var/lib/tor/multiverse")).unwrap();
    assert_eq!((hs.mode() & 0o7777, hs.uid()), (0o700, tor_uid));
    let hs_key = root.join("var/lib/tor/multiverse/hs_ed25519_secret_key");
    let meta = std::fs::metadata(&hs_key).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o600, tor_uid));
    assert_eq!(
        std::fs::read(&hs_key).unwrap(),
        Fixture
            .onion_service(&name("star.router.multiverse"))
            .unwrap()
            .secret_file
            .expose()
            .to_vec()
    );
    let key = root.join("etc/ssh/ssh_host_ed25519_key");
    assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
    let m = name("star.router.multiverse");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/ssh/ssh_host_ed25519_key.pub"))
            .unwrap()
            .trim(),
        Fixture.ssh_host_ed25519(&m).unwrap().public_line
    );
    let keygen = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&keygen.stdout)
            .split_whitespace()
            .nth(1),
        Fixture
            .ssh_host_ed25519(&m)
            .unwrap()
            .public_line
            .split_whitespace()
            .nth(1)
    );
    // Users: root's password is the identity's machine password.
    let pw = Fixture.machine_password(&m).unwrap();
    assert!(shadow_verifies(&root, "root", pw.expose()));
    assert!(!shadow_verifies(&root, "root", "wrong"));
    let ak = std::fs::read_to_string(root.join("root/.ssh/authorized_keys")).unwrap();
    assert!(ak.contains(&Fixture.user_key().1));
    // Services: enabled the way systemctl does, including nftables which Debian leaves off.
    for (unit, wanted_by) in [
        ("tor", "multi-user"),
        ("nftables", "sysinit"),
        ("dnsmasq", "multi-user"),
        ("ssh", "multi-user"),
        ("networking", "network-online"),
    ] {
        assert_eq!(
            link(
                &root,
                &format!("etc/systemd/system/{wanted_by}.target.wants/{unit}.service")
            ),
            format!("/lib/systemd/system/{unit}.service")
        );
    }
    assert_eq!(
        link(&root, "etc/systemd/system/sshd.service"),
        "/lib/systemd/system/ssh.service"
    );
    // sysctl and modules.
    let sysctl = std::fs::read_to_string(root.join("etc/sysctl.d/90-multiverse.conf")).unwrap();
    assert!(sysctl.contains("net.ipv4.ip_forward = 1\n"));
    // No daemon was left running and no policy-rc.d was left behind.
    assert!(!root.join("usr/sbin/policy-rc.d").exists());
    // The installed configs pass the tools inside the machine (its own users, its own sshd).
    std::fs::create_dir_all(root.join("run/sshd")).unwrap();
    let t = in_chroot(&root, &["/usr/sbin/sshd", "-t"]);
    assert!(
        t.status.success(),
        "sshd -t: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    let n = Command::new("unshare")
        .args(["-n", "chroot"])
        .arg(&root)
        .args(["/usr/sbin/nft", "-c", "-f", "/etc/nftables.conf"])
        .output()
        .unwrap();
    assert!(
        n.status.success(),
        "nft -c: {}",
        String::from_utf8_lossy(&n.stderr)
    );
    // A later apply that needs a new package still reaches the mirror, although the router's
    // resolv.conf now points at its own dnsmasq: the build machine's resolver is borrowed for the
    // install and the router's put back.
    let ours = std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap();
    assert!(ours.contains("nameserver 127.0.0.1"));
    let mut more = spec("star.router.multiverse");
    more.extra_packages = vec!["less".into()];
    let desired = render(&more, &Engine::embedded(), &Fixture).unwrap();
    let target = Target::open(&root, Os::Debian).unwrap();
    apply(&desired, &target, &SystemRunner).unwrap();
    assert!(in_chroot(&root, &["dpkg", "-s", "less"]).status.success());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap(),
        ours
    );
    assert!(!root.join("etc/.resolv.conf.multiverse-saved").exists());
}

#[test]
fn service_machine_on_real_debian() {
    let (_tmp, root) = provision_twice("mail.service.multiverse");
    let m = name("mail.service.multiverse");
    let pw = Fixture.machine_password(&m).unwrap();
    assert!(shadow_verifies(&root, "user", pw.expose()));
    assert!(shadow_verifies(&root, "root", pw.expose()));
    // The account as the system sees it (getent inside the chroot, not our parser).
    let out = in_chroot(&root, &["getent", "passwd", "user"]);
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        line.starts_with("user:x:1000:1000::/home/user:/bin/sh"),
        "{line}"
    );
    let groups = in_chroot(&root, &["id", "-nG", "user"]);
    assert!(String::from_utf8_lossy(&groups.stdout)
        .split_whitespace()
        .any(|g| g == "users"));
    let home = std::fs::metadata(root.join("home/user")).unwrap();
    assert_eq!((home.uid(), home.mode() & 0o777), (1000, 0o750));
    let ssh = std::fs::metadata(root.join("home/user/.ssh/authorized_keys")).unwrap();
    assert_eq!((ssh.uid(), ssh.mode() & 0o777), (1000, 0o600));
    assert!(in_chroot(&root, &["dpkg", "-s", "openssh-server"])
        .status
        .success());
    assert!(!in_chroot(&root, &["dpkg", "-s", "tor"]).status.success());
    assert_eq!(
        link(
            &root,
            "etc/systemd/system/multi-user.target.wants/ssh.service"
        ),
        "/lib/systemd/system/ssh.service"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "mail\n"
    );
    let interfaces = std::fs::read_to_string(root.join("etc/network/interfaces")).unwrap();
    assert!(interfaces.contains("iface eth0 inet dhcp"));
}

/// Every path with its size, mode, owner and contents hash, except caches apt may refresh.
fn snapshot(root: &Path) -> BTreeMap<String, (u64, u32, u32, i64, Option<String>)> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).into_iter().flatten() {
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        if rel.starts_with("var/cache") || rel.starts_with("proc") {
            continue;
        }
        let m = e.path().symlink_metadata().unwrap();
        let target = std::fs::read_link(e.path())
            .ok()
            .map(|p| p.display().to_string());
        out.insert(rel, (m.len(), m.mode(), m.uid(), m.mtime(), target));
    }
    out
}

#[test]
fn unknown_package_leaves_target_as_before() {
    let tmp = tempfile::tempdir().unwrap();
    let root = debian_root(tmp.path());
    let mut s = spec("mail.service.multiverse");
    s.extra_packages = vec!["multiverse-no-such-package".into()];
    let desired = render(&s, &Engine::embedded(), &Fixture).unwrap();
    let target = Target::open(&root, Os::Debian).unwrap();
    let before = snapshot(&root);
    let err = apply(&desired, &target, &SystemRunner).unwrap_err();
    match &err {
        ApplyError::Packages { packages, message } => {
            assert!(packages.contains("multiverse-no-such-package"));
            assert!(
                message.contains("Unable to locate package multiverse-no-such-package"),
                "{message}"
            );
        }
        other => panic!("expected a package error, got {other:?}"),
    }
    let after = snapshot(&root);
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(before.keys().filter(|k| !after.contains_key(*k)).cloned())
        .collect();
    assert!(changed.is_empty(), "target changed: {changed:?}");
}

#[test]
fn wrong_os_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
    std::fs::write(tmp.path().join("etc/alpine-release"), "3.20.0\n").unwrap();
    let err = Target::open(tmp.path(), Os::Debian).unwrap_err();
    assert!(
        err.to_string()
            .contains("is not a debian root filesystem (no etc/debian_version)"),
        "{err}"
    );
}
