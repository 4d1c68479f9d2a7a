//! The agent against what provisioning installs: every machine of the default topology and of
//! the lab topology is rendered by `mv-provision` (the CLI's own adapter from `multiverse.toml`),
//! and the real `multiverse-agent --check` accepts each rendered `/etc/multiverse/agent.toml`.
//! The installed binary is this build's agent (`MULTIVERSE_AGENT_BIN`), byte for byte; guests
//! get the virtio port and the udev rule that starts the agent, the host the channel folder the
//! domain XML binds and the libvirt helper.
#![allow(clippy::unwrap_used)]

use mv_core::secret::SecretString;
use mv_core::MachineName;
use mv_machines::{lab_toml, Accel, Arch, Topology, DEFAULT_TOML};
use mv_provision::{
    render, Contents, Engine, IdentityError, IdentitySource, OnionService, SshKeyPair,
    AGENT_VIRTIO_PORT,
};
use std::path::Path;
use std::process::Command;

const AGENT: &str = env!("CARGO_BIN_EXE_multiverse-agent");

/// Placeholder keys: only the agent's files matter here.
struct Keys;

impl IdentitySource for Keys {
    fn machine_password(&self, _: &MachineName) -> Result<SecretString, IdentityError> {
        Ok(SecretString::new("pw".into()))
    }
    fn ssh_host_ed25519(&self, m: &MachineName) -> Result<SshKeyPair, IdentityError> {
        Ok(SshKeyPair {
            private_openssh: SecretString::new("private".into()),
            public_line: format!("ssh-ed25519 AAAA root@{m}"),
        })
    }
    fn ssh_host_ecdsa_p256(&self, m: &MachineName) -> Result<SshKeyPair, IdentityError> {
        self.ssh_host_ed25519(m)
    }
    fn onion_service(&self, _: &MachineName) -> Result<OnionService, IdentityError> {
        Ok(OnionService {
            secret_file: mv_core::secret::SecretBytes::new(vec![0; 96]),
            public_file: vec![0; 64],
            hostname: "placeholder.onion".into(),
        })
    }
    fn authorized_keys(&self, _: &MachineName) -> Result<Vec<String>, IdentityError> {
        Ok(vec!["ssh-ed25519 AAAA @user".into()])
    }
}

fn check_every_agent_toml(text: &str) -> usize {
    std::env::set_var(mv_provision::AGENT_BIN_ENV, AGENT);
    let real = std::fs::read(AGENT).unwrap();
    let d = tempfile::tempdir().unwrap();
    let topology = Topology::parse(text, Path::new("multiverse.toml")).unwrap();
    let engine = Engine::embedded();
    let mut checked = 0;
    for m in &topology.machines {
        if m.router.as_ref().and_then(|r| r.vpn).is_some() {
            let vpn = mv_provision::vpn_file(d.path(), &m.name);
            mv_testkit::write_vpn_settings(
                &vpn,
                "192.0.2.1",
                "10.64.0.2/32",
                "bGFiIHBsYWNlaG9sZGVyIHBlZXIga2V5IDMyIGJ5dGU=",
                mv_testkit::TEST_WIREGUARD_KEY,
            );
        }
        let spec = mv_provision::spec_for(&topology, &m.name, d.path()).unwrap();
        let desired = render(&spec, &engine, &Keys).unwrap();
        let file = |p: &str| desired.files.iter().find(|f| f.path == p);
        let conf = file("/etc/multiverse/agent.toml")
            .unwrap_or_else(|| panic!("{}: no agent.toml", m.name));
        let Contents::Public(toml) = &conf.contents else {
            panic!("agent.toml is public")
        };
        let path = d.path().join(format!("{}.agent.toml", m.name));
        std::fs::write(&path, toml).unwrap();
        let out = Command::new(AGENT)
            .arg("--config")
            .arg(&path)
            .arg("--check")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: multiverse-agent --check refused:\n{}\n{toml}",
            m.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let host = m.kind == mv_machines::MachineType::Host;
        let cfg = mv_agent::config::Config::parse(toml, &path).unwrap().config;
        assert_eq!(cfg.name.as_deref(), Some(m.name.as_str()));
        if host {
            assert_eq!(cfg.role, mv_agent::config::Role::Host);
            assert_eq!(
                cfg.host.channel_dir,
                mv_core::layout::agent_socket(&m.name).parent().unwrap()
            );
            assert!(cfg.api.virtio_port.is_none());
            assert!(file("/usr/bin/multiverse-agent-libvirt").is_some());
        } else {
            assert_eq!(
                cfg.api.virtio_port.as_deref(),
                Some(Path::new(AGENT_VIRTIO_PORT))
            );
            // Same channel name as the domain XML.
            assert!(AGENT_VIRTIO_PORT.ends_with(mv_core::layout::AGENT_CHANNEL));
        }
        let bin = file("/usr/bin/multiverse-agent").unwrap();
        assert_eq!(bin.mode, 0o755);
        assert!(
            bin.contents.bytes() == real.as_slice(),
            "{}: not this build's agent",
            m.name
        );
        match spec.os {
            mv_provision::Os::Debian => {
                let unit = file("/etc/systemd/system/multiverse-agent.service").unwrap();
                let Contents::Public(u) = &unit.contents else {
                    panic!()
                };
                assert!(u.contains(
                    "ExecStart=/usr/bin/multiverse-agent --config /etc/multiverse/agent.toml"
                ));
                // Started early: no network or libvirtd ordering, no default dependencies.
                let deps: Vec<&str> = u
                    .lines()
                    .filter(|l| {
                        l.starts_with("After=")
                            || l.starts_with("Wants=")
                            || l.starts_with("Requires=")
                    })
                    .collect();
                assert!(
                    deps.iter()
                        .all(|l| !l.contains("network") && !l.contains("libvirtd")),
                    "{deps:?}"
                );
                assert!(u.contains("\nDefaultDependencies=no\n"), "{u}");
                assert_eq!(
                    file("/etc/udev/rules.d/60-multiverse-agent.rules").is_some(),
                    !host
                );
            }
            mv_provision::Os::Alpine => {
                let script = file("/etc/init.d/multiverse-agent").unwrap();
                assert_eq!(script.mode, 0o755);
                let Contents::Public(s) = &script.contents else {
                    panic!()
                };
                assert!(s.contains("command=\"/usr/bin/multiverse-agent\""));
                assert!(s.contains("/etc/multiverse/agent.toml"));
            }
        }
        checked += 1;
    }
    checked
}

#[test]
fn every_rendered_agent_toml_passes_agent_check() {
    assert_eq!(check_every_agent_toml(DEFAULT_TOML), 7);
    assert_eq!(
        check_every_agent_toml(&lab_toml(Arch::X86_64, Accel::Tcg)),
        7
    );
}
