//! Golden files: every machine type rendered for Alpine and Debian, file by file (with the
//! services each file reloads), so a change to a recipe or template shows up as a reviewable
//! diff. `UPDATE_GOLDEN=1` rewrites them.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{topology, Fixture};
use mv_provision::{render, Contents, Engine, Os};

fn bundle(os: Os) -> Vec<(String, String)> {
    let engine = Engine::embedded();
    let mut out = Vec::new();
    for spec in topology(os) {
        let d = render(&spec, &engine, &Fixture).unwrap();
        let mut text = format!(
            "# {} ({os}), recipes: {}\n",
            d.machine,
            d.recipes.join(" + ")
        );
        text.push_str(&format!("packages: {}\n", d.packages.join(" ")));
        let svcs: Vec<String> = d
            .services
            .iter()
            .map(|s| match os {
                Os::Alpine => format!("{}@{}", s.name, s.runlevel),
                Os::Debian => s.name.clone(),
            })
            .collect();
        text.push_str(&format!("services: {}\n", svcs.join(" ")));
        for u in &d.users {
            text.push_str(&format!(
                "user: {} home={} shell={} groups={} password={}\n",
                u.name,
                u.home,
                u.shell.as_deref().unwrap_or("-"),
                u.groups.join(","),
                if u.password.is_some() {
                    "machine"
                } else {
                    "locked"
                }
            ));
        }
        for dir in &d.dirs {
            text.push_str(&format!(
                "dir: {} {:04o} {}\n",
                dir.path, dir.mode, dir.owner
            ));
        }
        for f in &d.files {
            let reload = if f.reload.is_empty() {
                String::new()
            } else {
                format!(", reload {}", f.reload.join(" "))
            };
            text.push_str(&format!(
                "\n=== {} ({:04o} {}, from {}{reload})\n",
                f.path, f.mode, f.owner, f.origin
            ));
            match &f.contents {
                Contents::Public(s) => text.push_str(s),
                Contents::Secret(_) => text.push_str("<secret: not in golden files>\n"),
                Contents::Binary { .. } => text.push_str("<binary: from this build>\n"),
            }
        }
        out.push((d.machine.clone(), text));
    }
    out
}

#[test]
fn alpine_every_machine_type() {
    for (machine, text) in bundle(Os::Alpine) {
        mv_testkit::golden(
            format!("crates/mv-provision/tests/golden/alpine/{machine}.txt"),
            &text,
        );
    }
}

#[test]
fn debian_every_machine_type() {
    for (machine, text) in bundle(Os::Debian) {
        mv_testkit::golden(
            format!("crates/mv-provision/tests/golden/debian/{machine}.txt"),
            &text,
        );
    }
}

/// The OpenVPN galaxy: its config pinned per OS, and every file the config names (`ca`,
/// `auth-user-pass`, `tls-crypt`) is one the same render writes, with the host files' bytes:
/// the CA public (0644), the credentials and the tls-crypt key secret (0600).
#[test]
fn openvpn_galaxy() {
    let engine = Engine::embedded();
    let files = common::openvpn_files_dir();
    for (os, conf_path) in [
        (Os::Alpine, "/etc/openvpn/openvpn.conf"),
        (Os::Debian, "/etc/openvpn/client/galaxy.conf"),
    ] {
        let d = render(
            &common::galaxy(os, mv_provision::VpnKind::Openvpn),
            &engine,
            &Fixture,
        )
        .unwrap();
        let conf = d.files.iter().find(|f| f.path == conf_path).unwrap();
        let text = String::from_utf8_lossy(conf.contents.bytes()).into_owned();
        mv_testkit::golden(
            format!("crates/mv-provision/tests/golden/{os}/galaxy-openvpn.conf"),
            &text,
        );
        // DNS survives the VPN: the server may not push DNS and no script may run.
        assert!(text.contains("pull-filter ignore \"dhcp-option\""));
        assert!(!text.contains("update-resolv-conf"));
        assert!(d.packages.contains(&"openvpn".to_string()));
        let named = |option: &str| {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{option} ")))
                .unwrap_or_else(|| panic!("{os}: no {option} line"));
            let path = line.split_whitespace().nth(1).unwrap().to_string();
            d.files
                .iter()
                .find(|f| f.path == path)
                .unwrap_or_else(|| panic!("{os}: {option} names {path}, which is not rendered"))
                .clone()
        };
        let ca = named("ca");
        assert_eq!(ca.mode, 0o644);
        assert!(matches!(ca.contents, Contents::Public(_)));
        assert_eq!(
            ca.contents.bytes(),
            std::fs::read(files.join("ca.crt")).unwrap()
        );
        for (option, host) in [
            ("auth-user-pass", "credentials"),
            ("tls-crypt", "tls-crypt.key"),
        ] {
            let f = named(option);
            assert_eq!(f.mode, 0o600, "{os}: {option}");
            assert!(matches!(f.contents, Contents::Secret(_)), "{os}: {option}");
            assert_eq!(f.contents.bytes(), std::fs::read(files.join(host)).unwrap());
        }
        assert!(
            !text.contains("not-a-real-password"),
            "no secret in the config"
        );
        // The agent asks the management socket the config opens, which only root may use.
        let socket = mv_provision::OPENVPN_MANAGEMENT_SOCKET;
        assert!(
            text.lines()
                .any(|l| l == format!("management {socket} unix")),
            "{os}: {text}"
        );
        assert!(text.lines().any(|l| l == "management-client-user root"));
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("management-client-auth")),
            "no password: the peer's uid is the check"
        );
        let agent = d
            .files
            .iter()
            .find(|f| f.path == "/etc/multiverse/agent.toml")
            .unwrap();
        let agent = String::from_utf8_lossy(agent.contents.bytes());
        assert!(
            agent
                .lines()
                .any(|l| l == format!("openvpn_management = \"{socket}\"")),
            "{os}: {agent}"
        );
        assert!(agent.contains("vpn_interface = \"tun0\""), "{agent}");
    }
}

#[test]
fn host_kernel_command_line_follows_the_options() {
    let engine = Engine::embedded();
    let mut host = topology(Os::Debian).remove(0);
    host.cpu_vendor = Some(mv_core::model::CpuVendor::Amd);
    host.iommu_passthrough = false;
    let d = render(&host, &engine, &Fixture).unwrap();
    let grub = d
        .files
        .iter()
        .find(|f| f.path == "/etc/default/grub.d/multiverse.cfg")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(grub.contents.bytes())
            .lines()
            .nth(1),
        Some("GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT amd_iommu=on\"")
    );
    let udev = d
        .files
        .iter()
        .find(|f| f.path == "/etc/udev/rules.d/90-multiverse-vfio.rules")
        .unwrap();
    assert!(String::from_utf8_lossy(udev.contents.bytes()).contains("SUBSYSTEM==\"vfio\""));
}
