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
    HostAddress, IdentityError, IdentitySource, Interface, MachineSpec, MachineType, OnionPublish,
    OnionService, Role, SshKeyPair, VpnKind, VpnOptions,
};
use mv_core::secret::SecretString;
use mv_core::{IdentityName, MachineName};
use mv_identity::ssh_key::LineEnding;
use mv_machines::{Machine, Topology};
use std::path::{Path, PathBuf};

/// Why a machine could not be turned into a spec.
#[derive(Debug, thiserror::Error)]
pub enum AdaptError {
    /// No such machine in the topology.
    #[error("no machine {0} in multiverse.toml")]
    Unknown(String),
    /// The VPN settings file is unreadable or malformed, or sets a field of the other VPN kind.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Vpn {
        /// The file.
        path: PathBuf,
        /// The line at fault, when one is.
        line: Option<usize>,
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

/// `vpn.toml` as written. The fields of one VPN kind keep their place in the file, so a field of
/// the other kind is refused as `FILE:LINE`. File paths are relative to the folder of `vpn.toml`,
/// or absolute.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VpnFile {
    endpoint: std::net::Ipv4Addr,
    port: u16,
    address: String,
    dns: std::net::Ipv4Addr,
    /// WireGuard.
    #[serde(default)]
    peer_public_key: Option<toml::Spanned<String>>,
    /// WireGuard.
    #[serde(default)]
    private_key_file: Option<toml::Spanned<PathBuf>>,
    /// OpenVPN.
    #[serde(default)]
    ca_file: Option<toml::Spanned<PathBuf>>,
    /// OpenVPN.
    #[serde(default)]
    credentials_file: Option<toml::Spanned<PathBuf>>,
    /// OpenVPN, optional.
    #[serde(default)]
    tls_crypt_file: Option<toml::Spanned<PathBuf>>,
}

impl VpnFile {
    /// The first field set that belongs to the other VPN kind: its name and byte offset.
    fn foreign_field(&self, kind: VpnKind) -> Option<(&'static str, usize)> {
        let wireguard = [
            (
                "peer_public_key",
                self.peer_public_key.as_ref().map(|v| v.span().start),
            ),
            (
                "private_key_file",
                self.private_key_file.as_ref().map(|v| v.span().start),
            ),
        ];
        let openvpn = [
            ("ca_file", self.ca_file.as_ref().map(|v| v.span().start)),
            (
                "credentials_file",
                self.credentials_file.as_ref().map(|v| v.span().start),
            ),
            (
                "tls_crypt_file",
                self.tls_crypt_file.as_ref().map(|v| v.span().start),
            ),
        ];
        let foreign: &[(&'static str, Option<usize>)] = match kind {
            VpnKind::Wireguard => &openvpn,
            VpnKind::Openvpn => &wireguard,
        };
        foreign
            .iter()
            .filter_map(|(name, at)| at.map(|at| (*name, at)))
            .min_by_key(|(_, at)| *at)
    }
}

/// Parses `text`, the `vpn.toml` at `path` of a galaxy whose VPN is `kind`, into its options;
/// file names are resolved against the folder of `path`.
fn parse_vpn_file(path: &Path, text: &str, kind: VpnKind) -> Result<VpnOptions, AdaptError> {
    let f: VpnFile = toml::from_str(text).map_err(|e| AdaptError::Vpn {
        path: path.to_path_buf(),
        line: e.span().map(|s| mv_core::line_at(text, s.start)),
        message: e.message().to_string(),
    })?;
    if let Some((field, at)) = f.foreign_field(kind) {
        let (other, this) = match kind {
            VpnKind::Wireguard => ("an OpenVPN", "wireguard"),
            VpnKind::Openvpn => ("a WireGuard", "openvpn"),
        };
        return Err(AdaptError::Vpn {
            path: path.to_path_buf(),
            line: Some(mv_core::line_at(text, at)),
            message: format!(
                "`{field}` is {other} setting, but this galaxy's vpn is \"{this}\" in multiverse.toml: remove it or change the vpn there"
            ),
        });
    }
    let beside = |k: toml::Spanned<PathBuf>| {
        let k = k.into_inner();
        path.parent().map_or_else(|| k.clone(), |dir| dir.join(&k))
    };
    Ok(VpnOptions {
        kind,
        endpoint: f.endpoint,
        port: f.port,
        address: f.address,
        dns: f.dns,
        peer_public_key: f.peer_public_key.map(toml::Spanned::into_inner),
        private_key_file: f.private_key_file.map(beside),
        ca_file: f.ca_file.map(beside),
        credentials_file: f.credentials_file.map(beside),
        tls_crypt_file: f.tls_crypt_file.map(beside),
    })
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
    let kind = m.kind;
    let role: Option<Role> = m.router.as_ref().map(|r| r.role);
    let mut interfaces = Vec::new();
    for (i, att) in m.networks.iter().enumerate() {
        let net = topology.network(&att.network);
        let serves = net.is_some_and(|n| n.served_by.as_ref() == Some(name));
        let address = match (att.address, net) {
            // Not `HostAddress::new`: the topology already checked the address against its
            // network, and the spec carries what the person wrote.
            (Some(a), Some(n)) => Some(HostAddress {
                addr: a,
                subnet: n.subnet,
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
                line: None,
                message: format!(
                    "cannot read the VPN provider settings ({e}); write endpoint, port, address, dns{} there",
                    match kind {
                        VpnKind::Wireguard => ", peer_public_key and private_key_file",
                        VpnKind::Openvpn => ", ca_file and credentials_file",
                    }
                ),
            })?;
            Some(parse_vpn_file(&path, &text, kind)?)
        }
    };
    Ok(MachineSpec {
        name: name.clone(),
        kind,
        role,
        os: m.os,
        arch: m.arch,
        interfaces,
        vpn,
        cpu_vendor: (kind == MachineType::Host).then_some(topology.host.cpu_vendor),
        iommu: kind == MachineType::Host && topology.host.iommu.enabled,
        iommu_passthrough: kind == MachineType::Host && topology.host.iommu.passthrough,
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
            public_file: key.public_file,
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

// An unknown machine or a wrong `vpn.toml`: the person's input.
impl mv_core::Classify for AdaptError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "endpoint = \"198.51.100.7\"\nport = 1194\naddress = \"10.64.0.2/24\"\ndns = \"10.64.0.1\"\n";

    fn parse(text: &str, kind: VpnKind) -> Result<VpnOptions, String> {
        parse_vpn_file(Path::new("/tree/provision/vpn.toml"), text, kind).map_err(|e| e.to_string())
    }

    /// OpenVPN's files are resolved beside vpn.toml (or kept when absolute).
    #[test]
    fn openvpn_files_resolve_beside_vpn_toml() {
        let text = format!(
            "{BASE}ca_file = \"ca.crt\"\ncredentials_file = \"/secrets/creds\"\ntls_crypt_file = \"tc.key\"\n"
        );
        let v = parse(&text, VpnKind::Openvpn).unwrap();
        assert_eq!(v.ca_file, Some(PathBuf::from("/tree/provision/ca.crt")));
        assert_eq!(v.credentials_file, Some(PathBuf::from("/secrets/creds")));
        assert_eq!(
            v.tls_crypt_file,
            Some(PathBuf::from("/tree/provision/tc.key"))
        );
        assert_eq!(v.private_key_file, None);
        // Without tls_crypt_file: optional.
        let text = format!("{BASE}ca_file = \"ca.crt\"\ncredentials_file = \"creds\"\n");
        assert_eq!(parse(&text, VpnKind::Openvpn).unwrap().tls_crypt_file, None);
    }

    /// A field of the other VPN kind is refused as FILE:LINE, naming the field and both kinds.
    #[test]
    fn fields_of_the_other_kind_are_refused_with_their_line() {
        let text = format!("{BASE}credentials_file = \"creds\"\nca_file = \"ca.crt\"\n");
        let e = parse(&text, VpnKind::Wireguard).unwrap_err();
        assert!(
            e.starts_with("/tree/provision/vpn.toml:5: `credentials_file` is an OpenVPN setting"),
            "{e}"
        );
        assert!(e.contains("vpn is \"wireguard\""), "{e}");
        let text = format!(
            "{BASE}ca_file = \"ca.crt\"\ncredentials_file = \"c\"\nprivate_key_file = \"wg0.key\"\n"
        );
        let e = parse(&text, VpnKind::Openvpn).unwrap_err();
        assert!(
            e.starts_with("/tree/provision/vpn.toml:7: `private_key_file` is a WireGuard setting"),
            "{e}"
        );
        let text = format!("{BASE}peer_public_key = \"x\"\n");
        let e = parse(&text, VpnKind::Openvpn).unwrap_err();
        assert!(
            e.starts_with("/tree/provision/vpn.toml:5: `peer_public_key`"),
            "{e}"
        );
    }

    /// Malformed files name their line: an unknown field (a typo), a wrong type.
    #[test]
    fn malformed_vpn_toml_names_the_line() {
        let e = parse(&format!("{BASE}ca_flie = \"ca.crt\"\n"), VpnKind::Openvpn).unwrap_err();
        assert!(e.starts_with("/tree/provision/vpn.toml:5: "), "{e}");
        assert!(e.contains("ca_flie"), "{e}");
        let e = parse(&BASE.replace("1194", "\"udp\""), VpnKind::Openvpn).unwrap_err();
        assert!(e.starts_with("/tree/provision/vpn.toml:2: "), "{e}");
    }
}
