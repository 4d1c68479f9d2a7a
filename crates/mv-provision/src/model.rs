//! What provisioning needs to know about a machine, and where its secrets come from.
//!
//! [`MachineSpec`] is the provisioning view of a machine: its name, type and router role, target
//! OS, architecture, network interfaces and options (VPN, IOMMU vendor, vfio ids). It is built from
//! the machine model (`mv-machines`) by [`crate::adapt::spec_for`]; tests build fixtures with
//! `MachineSpec::default_for` (feature `test-hooks`). [`IdentitySource`] hands out the secrets (machine password, SSH
//! host keys) and the public login keys; the CLI implements it on top of `mv-identity`.
//!
//! What this is not: the machine model itself. Nothing here reads `multiverse.toml`.

use mv_core::secret::{SecretBytes, SecretString};
use mv_core::MachineName;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// The machine model's shared types (`mv_core::model`), under the names provisioning uses:
/// the target OS (package manager, init, file layout), the machine's type, its architecture and
/// the host's CPU vendor.
pub(crate) use mv_core::model::{Arch, CpuVendor, HostAddress};
pub use mv_core::model::{MachineType, Os};

/// A router's place in the chain (universe, galaxy, star) and the VPN a galaxy router runs: the
/// machine model's own types, so provisioning and `multiverse.toml` cannot disagree. `Role` keeps
/// the name provisioning has always used.
pub use mv_machines::{RouterRole as Role, VpnKind};

/// The galaxy router's VPN provider settings (public values only; the private key is a file the
/// person supplies or the identity derives).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnOptions {
    /// WireGuard or OpenVPN.
    pub kind: VpnKind,
    /// Provider endpoint host (an IPv4 address, so the firewall can pin it without DNS).
    pub endpoint: Ipv4Addr,
    /// Provider endpoint port.
    pub port: u16,
    /// The tunnel address given by the provider, with prefix (`10.64.0.2/32`).
    pub address: String,
    /// The provider's DNS server, reached through the tunnel.
    pub dns: Ipv4Addr,
    /// WireGuard: the provider's public key (base64).
    #[serde(default)]
    pub peer_public_key: Option<String>,
    /// WireGuard: the file on the host holding this end's private key (base64, as `wg genkey`
    /// writes it; 0600). Its bytes become the guest's `/etc/wireguard/wg0.key` and never enter a
    /// rendered config.
    #[serde(default)]
    pub private_key_file: Option<std::path::PathBuf>,
    /// OpenVPN: the file on the host holding the provider's CA certificate (PEM). Its bytes
    /// become the guest's `/etc/openvpn/client/ca.crt` (0644).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// OpenVPN: the file on the host holding the account's user name and password, one a line
    /// (0600, as `auth-user-pass` reads them). Its bytes become the guest's
    /// `/etc/openvpn/client/credentials` (0600) and never enter a rendered config.
    #[serde(default)]
    pub credentials_file: Option<std::path::PathBuf>,
    /// OpenVPN, optional: the provider's `tls-crypt` key (an OpenVPN static key, 0600), for
    /// providers that wrap the TLS handshake with one. Its bytes become the guest's
    /// `/etc/openvpn/client/tls-crypt.key` (0600).
    #[serde(default)]
    pub tls_crypt_file: Option<std::path::PathBuf>,
}

/// One network interface of a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Name inside the machine (`eth0`).
    pub name: String,
    /// The network it is on (`net0`, or `wan` for the universe router's physical NIC).
    pub network: String,
    /// Static address on its subnet, or `None` for DHCP.
    pub address: Option<HostAddress>,
    /// Default gateway through this interface, if any.
    pub gateway: Option<Ipv4Addr>,
    /// This machine serves DHCP and DNS on this interface (a router's downstream side).
    pub serves: bool,
}

/// The provisioning view of one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    /// The machine's FQDN.
    pub name: MachineName,
    /// Its type.
    pub kind: MachineType,
    /// For routers, the role in the chain.
    pub role: Option<Role>,
    /// Target OS.
    pub os: Os,
    /// CPU architecture.
    pub arch: Arch,
    /// Network interfaces, upstream first.
    pub interfaces: Vec<Interface>,
    /// Galaxy only: the VPN.
    pub vpn: Option<VpnOptions>,
    /// Host only: the CPU vendor, which decides `intel_iommu=on` or `amd_iommu=on`.
    pub cpu_vendor: Option<CpuVendor>,
    /// Host only: IOMMU on the kernel command line (`intel_iommu=on`/`amd_iommu=on`).
    pub iommu: bool,
    /// Host only: `iommu=pt` (only passed-through devices go through the IOMMU).
    pub iommu_passthrough: bool,
    /// Host only: PCI `vendor:device` ids bound to vfio-pci.
    pub vfio_ids: Vec<String>,
    /// Extra packages the person asked for.
    pub extra_packages: Vec<String>,
    /// Star router only: the onion services it publishes for service machines (`onion = [..]`
    /// in `multiverse.toml`), each keyed by that machine's identity.
    pub onion_services: Vec<OnionPublish>,
}

/// One onion service a star router publishes for a service machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnionPublish {
    /// The service machine: its identity's `onion-v3` key is the service's key.
    pub machine: MachineName,
    /// Where tor forwards connections: the machine's static address on the star's network.
    pub address: Ipv4Addr,
    /// The published ports (`HiddenServicePort P address:P`).
    pub ports: Vec<u16>,
}

#[cfg(any(test, feature = "test-hooks"))]
impl MachineSpec {
    /// A fixture for tests: the machine as docs/design.md's early default topology had it, on `os`
    /// (the universe router's WAN first, no static addresses on leaf machines). The golden files
    /// of this crate are rendered from these specs, so they stay fixed even when
    /// `mv_machines::DEFAULT_TOML` moves on; the product builds specs from
    /// `multiverse.toml` only ([`crate::adapt::spec_for`]).
    pub fn default_for(name: MachineName, kind: MachineType, role: Option<Role>, os: Os) -> Self {
        let iface =
            |n: &str, net: &str, addr: Option<&str>, gw: Option<&str>, serves: bool| Interface {
                name: n.to_string(),
                network: net.to_string(),
                address: addr.and_then(|a| a.parse().ok()),
                gateway: gw.and_then(|g| g.parse().ok()),
                serves,
            };
        let interfaces = match (kind, role) {
            (MachineType::Router, Some(Role::Universe)) => vec![
                iface("eth0", "wan", None, None, false),
                iface("eth1", "net0", Some("10.0.0.1/24"), None, true),
            ],
            (MachineType::Router, Some(Role::Galaxy)) => vec![
                iface("eth0", "net0", Some("10.0.0.2/24"), Some("10.0.0.1"), false),
                iface("eth1", "net1", Some("10.1.1.1/24"), None, true),
            ],
            (MachineType::Router, Some(Role::Star)) => vec![
                iface("eth0", "net1", Some("10.1.1.2/24"), Some("10.1.1.1"), false),
                iface("eth1", "net2", Some("10.2.2.1/24"), None, true),
            ],
            (MachineType::Host, _) => vec![],
            _ => vec![iface("eth0", "net2", None, None, false)],
        };
        MachineSpec {
            name,
            kind,
            role,
            os,
            arch: Arch::X86_64,
            interfaces,
            vpn: None,
            cpu_vendor: (kind == MachineType::Host).then_some(CpuVendor::Intel),
            iommu: kind == MachineType::Host,
            iommu_passthrough: kind == MachineType::Host,
            vfio_ids: vec![],
            extra_packages: vec![],
            onion_services: vec![],
        }
    }
}

impl MachineSpec {
    /// The recipe this machine uses (`router-star`, `service`...).
    pub fn recipe_name(&self) -> &'static str {
        match (self.kind, self.role) {
            (MachineType::Host, _) => "host",
            (MachineType::Controller, _) => "controller",
            (MachineType::Service, _) => "service",
            (MachineType::Application, _) => "application",
            (MachineType::Router, Some(Role::Universe)) => "router-universe",
            (MachineType::Router, Some(Role::Galaxy)) => "router-galaxy",
            (MachineType::Router, Some(Role::Star)) => "router-star",
            (MachineType::Router, None) => "router",
        }
    }
}

/// An SSH key pair as files: the private key in OpenSSH format and the public line.
#[derive(Debug, Clone)]
pub struct SshKeyPair {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----...`, unencrypted (sshd reads it at boot).
    pub private_openssh: SecretString,
    /// `ssh-ed25519 AAAA... comment`.
    pub public_line: String,
}

/// Why the identity could not provide something.
#[derive(Debug, thiserror::Error)]
#[error("identity cannot provide {what} for {name}")]
pub struct IdentityError {
    /// What was asked (`machine password`, `ssh host key`...).
    pub what: &'static str,
    /// For whom.
    pub name: String,
    /// The cause.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// A machine's onion service key as tor stores it.
pub struct OnionService {
    /// `hs_ed25519_secret_key`: tor's header and the expanded secret key.
    pub secret_file: SecretBytes,
    /// `hs_ed25519_public_key`: tor's header and the public key.
    pub public_file: Vec<u8>,
    /// The address, `<56 chars>.onion`.
    pub hostname: String,
}

impl std::fmt::Debug for OnionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnionService")
            .field("secret_file", &"[REDACTED]")
            .field("hostname", &self.hostname)
            .finish()
    }
}

/// Where secrets and public keys come from (the unsealed Scramble Suit identity in the CLI).
pub trait IdentitySource {
    /// The machine's password (spec scramble-v1 `password`), for root and the machine's user.
    fn machine_password(&self, machine: &MachineName) -> Result<SecretString, IdentityError>;
    /// The machine's sshd Ed25519 host key.
    fn ssh_host_ed25519(&self, machine: &MachineName) -> Result<SshKeyPair, IdentityError>;
    /// The machine's sshd ECDSA P-256 host key.
    fn ssh_host_ecdsa_p256(&self, machine: &MachineName) -> Result<SshKeyPair, IdentityError>;
    /// The machine's onion service (spec scramble-v1 `onion-v3`): tor's key file and address.
    fn onion_service(&self, machine: &MachineName) -> Result<OnionService, IdentityError>;
    /// The public login keys allowed into the machine (the person's `@user` key), one line each.
    fn authorized_keys(&self, machine: &MachineName) -> Result<Vec<String>, IdentityError>;
}

// Deriving a key failed.
impl mv_core::Classify for IdentityError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fixture_addresses_parse() {
        let n: MachineName = "galaxy.router.multiverse".parse().unwrap();
        let g = MachineSpec::default_for(n, MachineType::Router, Some(Role::Galaxy), Os::Debian);
        let a: Vec<String> = g
            .interfaces
            .iter()
            .map(|i| i.address.unwrap().to_string())
            .collect();
        assert_eq!(a, ["10.0.0.2/24", "10.1.1.1/24"]);
    }
}
