//! Alpine targets, which cannot be built for real here (no apk, no Alpine packages offline): a
//! fake Alpine root (release file, apk database, account files, OpenRC scripts) is provisioned
//! with a recording runner, which asserts the exact `apk` command lines and plays apk's part
//! (database entries, init scripts). Everything else (files, accounts, OpenRC runlevel links) is
//! the real code path.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::{name, topology, Fixture};
use mv_provision::{
    apply, plan, render, Accounts, ApplyError, Engine, IdentitySource, Os, RunOutput, Runner,
    Target,
};
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// Records command lines and acts like apk on the fake root.
struct FakeApk {
    root: PathBuf,
    calls: RefCell<Vec<Vec<String>>>,
}

impl Runner for FakeApk {
    fn run(&self, argv: &[String], _env: &[(&str, &str)]) -> Result<RunOutput, std::io::Error> {
        self.calls.borrow_mut().push(argv.to_vec());
        let pkgs: Vec<&String> = argv
            .iter()
            .skip(4)
            .filter(|a| !a.starts_with("--"))
            .collect();
        if let Some(bad) = pkgs.iter().find(|p| p.starts_with("no-such")) {
            return Ok(RunOutput {
                success: false,
                stdout: String::new(),
                stderr: format!("ERROR: unable to select packages:\n  {bad} (no such package):\n    required by: world[{bad}]\n"),
            });
        }
        if !argv.iter().any(|a| a == "--simulate") {
            let db = self.root.join("lib/apk/db/installed");
            let mut text = std::fs::read_to_string(&db).unwrap();
            for p in &pkgs {
                text.push_str(&format!("C:Q1fake\nP:{p}\nV:1.0-r0\n\n"));
                let script = match p.as_str() {
                    "openssh" => "sshd",
                    other => other,
                };
                std::fs::write(
                    self.root.join("etc/init.d").join(script),
                    "#!/sbin/openrc-run\n",
                )
                .unwrap();
                // Alpine's tor package adds its user in its pre-install script.
                if p.as_str() == "tor" {
                    let add = |file: &str, line: &str| {
                        let path = self.root.join(file);
                        let mut t = std::fs::read_to_string(&path).unwrap();
                        t.push_str(line);
                        std::fs::write(&path, t).unwrap();
                    };
                    add(
                        "etc/passwd",
                        "tor:x:100:101:tor:/var/lib/tor:/sbin/nologin\n",
                    );
                    add("etc/group", "tor:x:101:tor\n");
                    add("etc/shadow", "tor:!::0:::::\n");
                }
            }
            std::fs::write(&db, text).unwrap();
        }
        Ok(RunOutput {
            success: true,
            ..Default::default()
        })
    }
}

fn alpine_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for d in [
        "etc/init.d",
        "etc/runlevels/boot",
        "etc/runlevels/default",
        "lib/apk/db",
        "root",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("etc/alpine-release"), "3.20.3\n").unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/ash\nbin:x:1:1:bin:/bin:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:root\nbin:x:1:root,bin\nshadow:x:42:\nusers:x:100:games\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/shadow"),
        "root:*::0:::::\nbin:!::0:::::\nnobody:!::0:::::\n",
    )
    .unwrap();
    std::fs::write(
        root.join("lib/apk/db/installed"),
        "C:Q1x\nP:alpine-base\nV:3.20\n\nC:Q1y\nP:openrc\nV:0.54\n\n",
    )
    .unwrap();
    for s in ["networking", "hostname", "sysctl", "modules", "local"] {
        std::fs::write(root.join("etc/init.d").join(s), "#!/sbin/openrc-run\n").unwrap();
    }
    root
}

fn spec(machine: &str) -> mv_provision::MachineSpec {
    topology(Os::Alpine)
        .into_iter()
        .find(|m| m.name.as_str() == machine)
        .unwrap()
}

#[test]
fn star_router_apk_command_lines_and_openrc_links() {
    let tmp = tempfile::tempdir().unwrap();
    let root = alpine_root(tmp.path());
    let desired = render(
        &spec("star.router.multiverse"),
        &Engine::embedded(),
        &Fixture,
    )
    .unwrap();
    let target = Target::open(&root, Os::Alpine).unwrap();
    let runner = FakeApk {
        root: root.clone(),
        calls: RefCell::new(vec![]),
    };
    apply(&desired, &target, &runner).unwrap();
    let r = root.display().to_string();
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        *runner.calls.borrow(),
        vec![
            words(&[
                "chroot",
                &r,
                "apk",
                "add",
                "--simulate",
                "--update-cache",
                "--no-progress",
                "openssh",
                "nftables",
                "dnsmasq",
                "tor"
            ]),
            words(&[
                "chroot",
                &r,
                "apk",
                "add",
                "--no-progress",
                "openssh",
                "nftables",
                "dnsmasq",
                "tor"
            ]),
        ]
    );
    for (lvl, svc) in [
        ("default", "tor"),
        ("boot", "nftables"),
        ("default", "dnsmasq"),
        ("default", "sshd"),
        ("boot", "sysctl"),
        ("boot", "modules"),
        ("boot", "networking"),
        ("boot", "hostname"),
    ] {
        let l = std::fs::read_link(root.join(format!("etc/runlevels/{lvl}/{svc}"))).unwrap();
        assert_eq!(l, Path::new(&format!("/etc/init.d/{svc}")));
    }
    // The firewall is in the boot runlevel with networking, never in default after it.
    assert!(!root.join("etc/runlevels/default/nftables").exists());
    assert!(std::fs::read_to_string(root.join("etc/nftables.nft"))
        .unwrap()
        .contains("meta skuid \"tor\""));
    assert!(std::fs::read_to_string(root.join("etc/tor/torrc"))
        .unwrap()
        .contains("User tor\n"));
    let a = Accounts::parse(
        &std::fs::read_to_string(root.join("etc/passwd")).unwrap(),
        &std::fs::read_to_string(root.join("etc/group")).unwrap(),
        &std::fs::read_to_string(root.join("etc/shadow")).unwrap(),
    );
    let pw = Fixture
        .machine_password(&name("star.router.multiverse"))
        .unwrap();
    assert!(a.password_verifies("root", pw.expose()));
    // Untouched lines stay byte for byte.
    assert!(std::fs::read_to_string(root.join("etc/group"))
        .unwrap()
        .contains("users:x:100:games\n"));

    // Second run: nothing to do, no command run.
    runner.calls.borrow_mut().clear();
    let again = apply(&desired, &target, &runner).unwrap();
    assert!(again.changes.is_empty(), "{:#?}", again.changes);
    assert!(runner.calls.borrow().is_empty());
}

#[test]
fn every_alpine_machine_applies_and_settles() {
    for spec in topology(Os::Alpine) {
        let tmp = tempfile::tempdir().unwrap();
        let root = alpine_root(tmp.path());
        // libvirtd and the VPN's scripts come with packages the fake apk knows by name.
        let desired = render(&spec, &Engine::embedded(), &Fixture).unwrap();
        let target = Target::open(&root, Os::Alpine).unwrap();
        let runner = FakeApk {
            root: root.clone(),
            calls: RefCell::new(vec![]),
        };
        for svc in ["libvirtd", "openvpn"] {
            std::fs::write(root.join("etc/init.d").join(svc), "#!/sbin/openrc-run\n").unwrap();
        }
        apply(&desired, &target, &runner).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        assert!(
            plan(&desired, &target).unwrap().is_empty(),
            "{} does not settle",
            spec.name
        );
    }
}

#[test]
fn unknown_alpine_package_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = alpine_root(tmp.path());
    let mut s = spec("mail.service.multiverse");
    s.extra_packages = vec!["no-such-pkg".into()];
    let desired = render(&s, &Engine::embedded(), &Fixture).unwrap();
    let target = Target::open(&root, Os::Alpine).unwrap();
    let runner = FakeApk {
        root: root.clone(),
        calls: RefCell::new(vec![]),
    };
    let passwd_before = std::fs::read(root.join("etc/passwd")).unwrap();
    let err = apply(&desired, &target, &runner).unwrap_err();
    assert!(matches!(err, ApplyError::Packages { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the package manager refused to install openssh no-such-pkg: \
         ERROR: unable to select packages:; no-such-pkg (no such package):"
    );
    assert_eq!(runner.calls.borrow().len(), 1, "only the simulation ran");
    assert_eq!(
        std::fs::read(root.join("etc/passwd")).unwrap(),
        passwd_before
    );
    assert!(!root.join("etc/ssh").exists());
    assert!(!root.join("home").exists());
}
