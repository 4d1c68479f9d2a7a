//! Test support: a deterministic identity (NOT the Scramble Suit derivation, only stable values
//! for golden files), machine specs of every type, and the cached Debian root.
#![allow(dead_code, clippy::unwrap_used)]

use mv_core::secret::SecretString;
use mv_core::MachineName;
use mv_provision::{
    IdentityError, IdentitySource, MachineSpec, MachineType, OnionService, Os, Role, SshKeyPair,
    VpnKind, VpnOptions,
};
use rand::SeedableRng;
use sha2::{Digest, Sha256};
use ssh_key::{private::Ed25519Keypair, Algorithm, EcdsaCurve, LineEnding, PrivateKey};
use std::path::{Path, PathBuf};
use std::process::Command;

fn seed(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

fn pair(key: PrivateKey, comment: &str) -> SshKeyPair {
    let mut key = key;
    key.set_comment(comment);
    SshKeyPair {
        private_openssh: SecretString::new(key.to_openssh(LineEnding::LF).unwrap().to_string()),
        public_line: key.public_key().to_openssh().unwrap(),
    }
}

/// Stable keys and passwords from the machine name.
pub struct Fixture;

impl IdentitySource for Fixture {
    fn machine_password(&self, m: &MachineName) -> Result<SecretString, IdentityError> {
        Ok(SecretString::new(format!(
            "pw-{}",
            &hex::encode(seed(&["password", m.as_str()]))[..20]
        )))
    }
    fn ssh_host_ed25519(&self, m: &MachineName) -> Result<SshKeyPair, IdentityError> {
        let kp = Ed25519Keypair::from_seed(&seed(&["ssh-host-ed25519", m.as_str()]));
        Ok(pair(PrivateKey::from(kp), &format!("root@{m}")))
    }
    fn ssh_host_ecdsa_p256(&self, m: &MachineName) -> Result<SshKeyPair, IdentityError> {
        let mut rng = rand::rngs::StdRng::from_seed(seed(&["ssh-host-ecdsa", m.as_str()]));
        let k = PrivateKey::random(
            &mut rng,
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
        )
        .unwrap();
        Ok(pair(k, &format!("root@{m}")))
    }
    fn onion_service(&self, m: &MachineName) -> Result<OnionService, IdentityError> {
        let k = mv_identity::onion_from_seed(&seed(&["onion-v3", m.as_str()]));
        Ok(OnionService {
            secret_file: k.secret_file,
            public_file: k.public_file,
            hostname: k.hostname,
        })
    }
    fn authorized_keys(&self, _m: &MachineName) -> Result<Vec<String>, IdentityError> {
        Ok(vec![self.user_key().1])
    }
}

impl Fixture {
    /// The person's login key: (private OpenSSH text, public line).
    pub fn user_key(&self) -> (String, String) {
        let kp = Ed25519Keypair::from_seed(&seed(&["ssh-ed25519", "@user"]));
        let p = pair(PrivateKey::from(kp), "@user");
        (p.private_openssh.expose().clone(), p.public_line)
    }
}

pub fn name(s: &str) -> MachineName {
    MachineName::parse(s).unwrap()
}

/// Points `MULTIVERSE_AGENT_BIN` at a stand-in agent (a small script, with the libvirt helper
/// beside it), so rendering does not depend on whether `multiverse-agent` was built. The real
/// binary is checked against the rendered configs in `crates/multiverse-agent/tests/provisioned.rs`.
pub fn stand_in_agent() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stand-in-agent");
        std::fs::create_dir_all(&dir).unwrap();
        for bin in ["multiverse-agent", "multiverse-agent-libvirt"] {
            let p = dir.join(bin);
            std::fs::write(
                &p,
                format!("#!/bin/sh\n# stand-in {bin} for tests\nexit 0\n"),
            )
            .unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let agent = dir.join("multiverse-agent");
        std::env::set_var(mv_provision::AGENT_BIN_ENV, &agent);
        agent
    })
    .clone()
}

/// Every machine of the default topology on `os`, with a WireGuard galaxy.
pub fn topology(os: Os) -> Vec<MachineSpec> {
    stand_in_agent();
    let mut v = vec![
        MachineSpec::default_for(name("host.multiverse"), MachineType::Host, None, os),
        MachineSpec::default_for(
            name("universe.router.multiverse"),
            MachineType::Router,
            Some(Role::Universe),
            os,
        ),
        galaxy(os, VpnKind::Wireguard),
        MachineSpec::default_for(
            name("star.router.multiverse"),
            MachineType::Router,
            Some(Role::Star),
            os,
        ),
        MachineSpec::default_for(
            name("controller.multiverse"),
            MachineType::Controller,
            None,
            os,
        ),
        MachineSpec::default_for(
            name("mail.service.multiverse"),
            MachineType::Service,
            None,
            os,
        ),
        MachineSpec::default_for(
            name("browser.app.multiverse"),
            MachineType::Application,
            None,
            os,
        ),
    ];
    v[0].vfio_ids = vec!["10de:1b80".into(), "10de:10f0".into()];
    // The star publishes the mail service's web and SMTP ports as an onion service.
    v[3].onion_services = vec![mv_provision::OnionPublish {
        machine: name("mail.service.multiverse"),
        address: "10.2.2.20".parse().unwrap(),
        ports: vec![80, 25],
    }];
    v
}

/// A 0600 WireGuard key file for the galaxy fixture, written once per test process.
pub fn wireguard_key_file() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let vpn = dir.path().join("vpn.toml");
    if !vpn.exists() {
        mv_testkit::write_vpn_settings(
            &vpn,
            "198.51.100.7",
            "10.64.12.34/32",
            "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",
            mv_testkit::TEST_WIREGUARD_KEY,
        );
    }
    dir.path().join("wg0.key")
}

/// The OpenVPN provider's files for the galaxy fixture (CA, 0600 credentials, 0600 tls-crypt
/// key), written once per test process; the folder holding them and vpn.toml.
pub fn openvpn_files_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let vpn = dir.path().join("vpn.toml");
    if !vpn.exists() {
        mv_testkit::openvpn::write_openvpn_settings(
            &vpn,
            &mv_testkit::openvpn::Settings {
                endpoint: "198.51.100.7",
                port: 1194,
                address: "10.64.12.34/24",
                ca_pem: mv_testkit::openvpn::TEST_CA_PEM,
                user: "galaxy-user",
                password: "not-a-real-password",
                tls_crypt: Some(
                    "-----BEGIN OpenVPN Static key V1-----\n00\n-----END OpenVPN Static key V1-----\n",
                ),
            },
        );
    }
    dir.path().to_path_buf()
}

pub fn galaxy(os: Os, kind: VpnKind) -> MachineSpec {
    stand_in_agent();
    let mut g = MachineSpec::default_for(
        name("galaxy.router.multiverse"),
        MachineType::Router,
        Some(Role::Galaxy),
        os,
    );
    g.vpn = Some(VpnOptions {
        kind,
        endpoint: "198.51.100.7".parse().unwrap(),
        port: if kind == VpnKind::Wireguard {
            51820
        } else {
            1194
        },
        address: "10.64.12.34/32".into(),
        dns: "10.64.0.1".parse().unwrap(),
        peer_public_key: None,
        private_key_file: None,
        ca_file: None,
        credentials_file: None,
        tls_crypt_file: None,
    });
    let v = g.vpn.as_mut().unwrap();
    match kind {
        VpnKind::Wireguard => {
            v.peer_public_key = Some("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".into());
            v.private_key_file = Some(wireguard_key_file());
        }
        VpnKind::Openvpn => {
            let dir = openvpn_files_dir();
            v.ca_file = Some(dir.join("ca.crt"));
            v.credentials_file = Some(dir.join("credentials"));
            v.tls_crypt_file = Some(dir.join("tls-crypt.key"));
        }
    }
    g
}

/// A minimal Debian bookworm root with package lists, built once with debootstrap into a cache
/// outside git and copied (`cp -a`) per test into `dest`.
pub fn debian_root(dest: &Path) -> PathBuf {
    mv_testkit::require_tool("debootstrap");
    mv_testkit::require_tool("chroot");
    let cache_dir = PathBuf::from(
        std::env::var("MULTIVERSE_TEST_CACHE")
            .unwrap_or_else(|_| "/var/cache/multiverse-tests".into()),
    );
    let cache = cache_dir.join("debootstrap-bookworm");
    std::fs::create_dir_all(&cache_dir).unwrap();
    // One builder at a time across test processes: a lock file held with flock(1).
    if !cache.join("etc/debian_version").is_file() || !has_lists(&cache) {
        let building = cache_dir.join(format!(
            "debootstrap-bookworm.building.{}",
            std::process::id()
        ));
        let script = format!(
            "set -e; if [ -f {c}/etc/debian_version ] && ls {c}/var/lib/apt/lists/*_Packages >/dev/null 2>&1; then exit 0; fi; \
             rm -rf {b}; debootstrap --variant=minbase bookworm {b} http://deb.debian.org/debian; \
             chroot {b} apt-get update -q; rm -rf {c}; mv {b} {c}",
            c = cache.display(),
            b = building.display()
        );
        mv_testkit::run_ok(
            Command::new("flock")
                .arg(cache_dir.join(".lock"))
                .args(["sh", "-c", &script]),
        );
    }
    let root = dest.join("root");
    mv_testkit::run_ok(Command::new("cp").arg("-a").arg(&cache).arg(&root));
    root
}

fn has_lists(root: &Path) -> bool {
    std::fs::read_dir(root.join("var/lib/apt/lists"))
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
        })
        .unwrap_or(false)
}
