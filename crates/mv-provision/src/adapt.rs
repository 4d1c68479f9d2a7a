//! Adapters from the rest of Multiverse: the machine model (`mv-machines`) to a [`MachineSpec`],
//! and the unsealed identity (`mv-identity`) to an [`IdentitySource`].
//!
//! Interface naming: a VM's virtio NICs appear in the order of its `networks` list as eth0,
//! eth1...; the universe router's passed-through physical NIC comes after them (the `wan`
//! interface, DHCP). The VPN provider's settings are not part of `multiverse.toml` (they are the
//! provider's, and change with it): they live in `machines/<fqdn>/provision/vpn.toml`.
//!
//! What this is not: a second reader of `multiverse.toml`; all of that is `mv_machines::Topology`.

use crate::model::{
    Cidr, IdentityError, IdentitySource, Interface, Kind, MachineSpec, OnionPublish, OnionService,
    Os, Role, SshKeyPair, VpnKind, VpnOptions,
};
use mv_core::secret::SecretString;
use mv_core::{IdentityName, MachineName};
use mv_identity::ssh_key::LineEnding;
use mv_machines::config::{self as mc, Machine, MachineType, Topology};
use std::path::{Path, PathBuf};

/// Why a machine could not be turned into a spec.
#[derive(Debug, thiserror::Error)]
pub enum AdaptError {
    /// No such machine in the topology.
    #[error("no machine {0} in multiverse.toml")]
    Unknown(String),
    /// The VPN settings file is unreadable or malformed.
    #[error("{}: {message}", path.display())]
    Vpn {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The file holding the galaxy router's VPN provider settings.
pub fn vpn_file(tree_root: &Path, name: &MachineName) -> PathBuf {
    mv_machines::Tree::new(tree_root)
        .provision_dir(name)
        .join("vpn.toml")
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VpnFile {
    endpoint: std::net::Ipv4Addr,
    port: u16,
    address: String,
    dns: std::net::Ipv4Addr,
    #[serde(default)]
    peer_public_key: Option<String>,
    /// Relative to the folder of `vpn.toml`, or absolute.
    #[serde(default)]
    private_key_file: Option<PathBuf>,
}

/// Writes a new WireGuard private key (32 bytes from the OS's CSPRNG, base64 as `wg genkey`
/// prints it; WireGuard clamps it) into `path`, 0600, unless a file is already there. Returns
/// whether it wrote one. For `init --lab`, whose placeholder provider needs a key of this end.
pub fn new_wireguard_key_file(path: &Path) -> Result<bool, mv_core::fsutil::FsError> {
    use base64::Engine as _;
    use rand::RngCore as _;
    if path.exists() {
        return Ok(false);
    }
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(raw.as_mut());
    // 44 characters and a newline, written into one wiped buffer (no reallocation, no copy).
    let mut line = zeroize::Zeroizing::new(String::with_capacity(45));
    base64::engine::general_purpose::STANDARD.encode_string(raw.as_ref(), &mut line);
    line.push('\n');
    mv_core::fsutil::write_secret(path, line.as_bytes())
}

/// The provisioning view of machine `name` of `topology`; `tree_root` is where `vpn.toml` is.
pub fn spec_for(
    topology: &Topology,
    name: &MachineName,
    tree_root: &Path,
) -> Result<MachineSpec, AdaptError> {
    let m: &Machine = topology
        .machine(name)
        .ok_or_else(|| AdaptError::Unknown(name.to_string()))?;
    let kind = match m.kind {
        MachineType::Host => Kind::Host,
        MachineType::Controller => Kind::Controller,
        MachineType::Router => Kind::Router,
        MachineType::Service => Kind::Service,
        MachineType::Application => Kind::Application,
    };
    let role: Option<Role> = m.router.as_ref().map(|r| r.role);
    let os = match m.os {
        mc::Os::Alpine => Os::Alpine,
        mc::Os::Debian => Os::Debian,
    };
    let mut interfaces = Vec::new();
    for (i, att) in m.networks.iter().enumerate() {
        let net = topology.network(&att.network);
        let serves = net.is_some_and(|n| n.served_by.as_ref() == Some(name));
        let address = match (att.address, net) {
            (Some(a), Some(n)) => Some(Cidr {
                addr: a,
                prefix: n.subnet.prefix,
            }),
            _ => None,
        };
        let gateway = match (serves, att.address, net) {
            (false, Some(_), Some(n)) => Some(n.gateway),
            _ => None,
        };
        interfaces.push(Interface {
            name: format!("eth{i}"),
            network: att.network.clone(),
            address,
            gateway,
            serves,
        });
    }
    // The physical NIC, unless the router has a virtio upstream instead (the lab's `uplink`).
    let virtio_upstream = m.router.as_ref().is_some_and(|r| r.upstream.is_some());
    if role == Some(Role::Universe) && !virtio_upstream {
        interfaces.push(Interface {
            name: format!("eth{}", interfaces.len()),
            network: "wan".to_string(),
            address: None,
            gateway: None,
            serves: false,
        });
    }
    let vpn = match m.router.as_ref().and_then(|r| r.vpn) {
        None => None,
        Some(kind) => {
            let path = vpn_file(tree_root, name);
            let text = std::fs::read_to_string(&path).map_err(|e| AdaptError::Vpn {
                path: path.clone(),
                message: format!(
                    "cannot read the VPN provider settings ({e}); write endpoint, port, address, dns{} there",
                    if VpnKind::Wireguard == kind { ", peer_public_key and private_key_file" } else { "" }
                ),
            })?;
            let f: VpnFile = toml::from_str(&text).map_err(|e| AdaptError::Vpn {
                path: path.clone(),
                message: e.message().to_string(),
            })?;
            Some(VpnOptions {
                kind,
                endpoint: f.endpoint,
                port: f.port,
                address: f.address,
                dns: f.dns,
                peer_public_key: f.peer_public_key,
                private_key_file: f
                    .private_key_file
                    .map(|k| path.parent().map_or_else(|| k.clone(), |dir| dir.join(&k))),
            })
        }
    };
    Ok(MachineSpec {
        name: name.clone(),
        kind,
        role,
        os,
        arch: m.arch.as_str().to_string(),
        interfaces,
        vpn,
        cpu_vendor: (kind == Kind::Host).then(|| match topology.host.cpu_vendor {
            mc::CpuVendor::Intel => "intel".to_string(),
            mc::CpuVendor::Amd => "amd".to_string(),
        }),
        iommu: kind == Kind::Host && topology.host.iommu.enabled,
        iommu_passthrough: kind == Kind::Host && topology.host.iommu.passthrough,
        vfio_ids: vec![],
        extra_packages: vec![],
        onion_services: topology
            .onion_services(name)
            .into_iter()
            .map(|s| OnionPublish {
                machine: s.machine,
                address: s.address,
                ports: s.ports,
            })
            .collect(),
    })
}

/// The unsealed Scramble Suit root as an [`IdentitySource`]. Login keys allowed in are the
/// person's (`@user`) Ed25519 key.
pub struct RootIdentity<'a> {
    root: &'a mv_identity::Root,
    person: IdentityName,
}

impl std::fmt::Debug for RootIdentity<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootIdentity")
            .field("person", &self.person)
            .finish_non_exhaustive()
    }
}

impl<'a> RootIdentity<'a> {
    /// Wraps `root`; `person` (`@user`) is whose login key goes into authorized_keys.
    pub fn new(root: &'a mv_identity::Root, person: IdentityName) -> Self {
        RootIdentity { root, person }
    }
}

fn err(
    what: &'static str,
    name: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> IdentityError {
    IdentityError {
        what,
        name: name.to_string(),
        source: Box::new(e),
    }
}

fn pair(
    key: Result<mv_identity::ssh_key::PrivateKey, mv_identity::KeyError>,
    what: &'static str,
    name: &MachineName,
) -> Result<SshKeyPair, IdentityError> {
    let key = key.map_err(|e| err(what, name.as_str(), e))?;
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| err(what, name.as_str(), e))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| err(what, name.as_str(), e))?;
    Ok(SshKeyPair {
        private_openssh: SecretString::new(private.to_string()),
        public_line: public,
    })
}

impl IdentitySource for RootIdentity<'_> {
    fn machine_password(&self, machine: &MachineName) -> Result<SecretString, IdentityError> {
        Ok(self.root.password(&IdentityName::Machine(machine.clone())))
    }
    fn ssh_host_ed25519(&self, machine: &MachineName) -> Result<SshKeyPair, IdentityError> {
        let n = IdentityName::Machine(machine.clone());
        pair(self.root.ssh_host_ed25519(&n), "ssh host key", machine)
    }
    fn ssh_host_ecdsa_p256(&self, machine: &MachineName) -> Result<SshKeyPair, IdentityError> {
        let n = IdentityName::Machine(machine.clone());
        pair(self.root.ssh_host_ecdsa_p256(&n), "ssh host key", machine)
    }
    fn onion_service(&self, machine: &MachineName) -> Result<OnionService, IdentityError> {
        let key = self.root.onion_v3(&IdentityName::Machine(machine.clone()));
        Ok(OnionService {
            secret_file: key.secret_file,
            hostname: key.hostname,
        })
    }
    fn authorized_keys(&self, machine: &MachineName) -> Result<Vec<String>, IdentityError> {
        let key = self
            .root
            .ssh_ed25519(&self.person)
            .map_err(|e| err("login key", machine.as_str(), e))?;
        let line = key
            .public_key()
            .to_openssh()
            .map_err(|e| err("login key", machine.as_str(), e))?;
        Ok(vec![line])
    }
}
