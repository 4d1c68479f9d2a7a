//! Rendering: a machine, its recipe and the identity in, the machine's desired state out.
//!
//! [`render`] builds the template context from a [`MachineSpec`], resolves the machine's recipe,
//! renders every file (templates, sysctl, modules, SSH host keys, authorized_keys) and collects
//! packages, services and users into a [`Desired`]. Nothing here touches a target: comparing the
//! desired state with a machine is [`crate::plan`], changing it is [`crate::apply()`].
//!
//! Secrets (host private keys, passwords) stay in `mv_core::Secret` from the identity to the
//! moment they are written into the target; `Desired`'s `Debug` never shows them.
//!
//! The agent: every machine gets `multiverse-agent` from this build (a [`Contents::Binary`] read
//! from [`agent_binary`]: `MULTIVERSE_AGENT_BIN`, else beside the running executable), its
//! service file (`contrib/systemd` on Debian, `contrib/openrc` on Alpine, embedded here so the
//! shipped files are the installed ones) and `/etc/multiverse/agent.toml` in the agent's schema.

use crate::model::{
    HostAddress, IdentityError, IdentitySource, Interface, MachineSpec, MachineType, Os, Role,
    VpnKind, VpnOptions,
};
use crate::recipe::{self, FileSource, PasswordSource, RecipeError, Resolved, ServiceSpec};
use crate::template::{Engine, TemplateError};
use mv_core::secret::{SecretBytes, SecretString};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variable naming the `multiverse-agent` binary to install on machines.
pub const AGENT_BIN_ENV: &str = "MULTIVERSE_AGENT_BIN";
/// Where provisioning installs the agent (the path the shipped service files start).
pub(crate) const AGENT_PATH: &str = "/usr/bin/multiverse-agent";
/// The guest side of the host's virtio-serial channel, as the agent opens it.
pub const AGENT_VIRTIO_PORT: &str = "/dev/virtio-ports/org.multiverse.agent.0";
/// The systemd unit installed on Debian machines (the shipped file, embedded).
pub(crate) const AGENT_SYSTEMD_UNIT: &str =
    include_str!("../../../contrib/systemd/multiverse-agent.service");
/// The OpenRC script installed on Alpine machines (the shipped file, embedded).
pub(crate) const AGENT_OPENRC_SCRIPT: &str =
    include_str!("../../../contrib/openrc/multiverse-agent");

/// Tor's ports on the star router.
pub(crate) const TOR_TRANS_PORT: u16 = 9040;
/// Tor's DNS port on the star router.
pub(crate) const TOR_DNS_PORT: u16 = 5353;
/// Tor's data folder on the star router; each published service's `HiddenServiceDir` is
/// `<TOR_DIR>/<service fqdn>` (the router's own is `<TOR_DIR>/multiverse`).
pub(crate) const TOR_DIR: &str = "/var/lib/tor";
/// The OpenVPN client's management socket (galaxy on OpenVPN), which the router agent asks for
/// the tunnel's state. Directly in /run, the same on Debian and Alpine: Debian's
/// `openvpn-client@.service` has no RuntimeDirectory (only `openvpn-server@` does), and /run is
/// root's (0755), writable under the unit's ProtectSystem=true.
pub const OPENVPN_MANAGEMENT_SOCKET: &str = "/run/openvpn-galaxy.sock";

/// Why a machine could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The recipe could not be resolved.
    #[error("cannot resolve the recipe of {machine}")]
    Recipe {
        /// The machine.
        machine: String,
        /// Cause.
        #[source]
        source: Box<RecipeError>,
    },
    /// A template failed.
    #[error("cannot render {path} of {machine}")]
    Template {
        /// The machine.
        machine: String,
        /// The file being rendered.
        path: String,
        /// Cause (names template, line, variable).
        #[source]
        source: Box<TemplateError>,
    },
    /// The identity could not provide a key or password.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The machine lacks an option its recipe needs.
    #[error("{machine}: {what}")]
    MissingOption {
        /// The machine.
        machine: String,
        /// What is missing and where to set it.
        what: String,
    },
    /// The agent binary to install is missing or unreadable.
    #[error("cannot read {what} to install on {machine} ({})", path.display())]
    AgentBinary {
        /// The machine.
        machine: String,
        /// Which binary.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A recipe names a generated source that does not exist.
    #[error("recipe file {path} has unknown source `{source_name}`")]
    UnknownSource {
        /// The file.
        path: String,
        /// The source name.
        source_name: String,
    },
}

/// A file's contents: public text or a secret.
#[derive(Clone)]
pub enum Contents {
    /// Ordinary text.
    Public(String),
    /// Secret bytes (private keys); never printed or diffed.
    Secret(SecretBytes),
    /// A binary file (the agent), read from `from` on this machine; never diffed.
    Binary {
        /// The bytes.
        bytes: Arc<[u8]>,
        /// The file they were read from.
        from: PathBuf,
    },
}

impl std::fmt::Debug for Contents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Contents::Public(s) => f.debug_tuple("Public").field(&s.len()).finish(),
            Contents::Secret(_) => f.write_str("Secret([REDACTED])"),
            Contents::Binary { bytes, from } => f
                .debug_struct("Binary")
                .field("len", &bytes.len())
                .field("from", from)
                .finish(),
        }
    }
}

impl Contents {
    /// The bytes to write.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Contents::Public(s) => s.as_bytes(),
            Contents::Secret(b) => b.expose(),
            Contents::Binary { bytes, .. } => bytes,
        }
    }
    /// Whether the contents are secret.
    pub fn is_secret(&self) -> bool {
        matches!(self, Contents::Secret(_))
    }
}

/// A file the machine must have.
#[derive(Debug, Clone)]
pub struct DesiredFile {
    /// Absolute path on the machine.
    pub path: String,
    /// Contents.
    pub contents: Contents,
    /// Permission bits.
    pub mode: u32,
    /// Owner (user name; the group is the user's primary group).
    pub owner: String,
    /// Where it came from (template name or generated source), for plans and goldens.
    pub origin: String,
    /// The machine's services that read it, reloaded on a running system when it changes
    /// (the recipe entry's `reload`).
    pub reload: Vec<String>,
}

/// A folder the machine must have (home folders and `~/.ssh`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredDir {
    /// Absolute path.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Owner user name.
    pub owner: String,
}

/// A user account the machine must have.
#[derive(Debug, Clone)]
pub struct DesiredUser {
    /// Login name.
    pub name: String,
    /// Login shell, if the recipe sets one.
    pub shell: Option<String>,
    /// Home folder.
    pub home: String,
    /// Supplementary groups.
    pub groups: Vec<String>,
    /// The password (from the identity) or `None` for a locked account.
    pub password: Option<SecretString>,
}

/// Everything one machine must have.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The machine.
    pub machine: String,
    /// Its OS.
    pub os: Os,
    /// The recipes used, in include order.
    pub recipes: Vec<String>,
    /// Packages.
    pub packages: Vec<String>,
    /// Services to enable at boot.
    pub services: Vec<ServiceSpec>,
    /// Folders.
    pub dirs: Vec<DesiredDir>,
    /// Files.
    pub files: Vec<DesiredFile>,
    /// Users.
    pub users: Vec<DesiredUser>,
}

/// Host number `n` of `a`'s subnet, `n` taken modulo the subnet's size (the DHCP range of a
/// router's downstream side: hosts 100-200).
fn nth_host(a: &HostAddress, n: u32) -> std::net::Ipv4Addr {
    let mask = u32::from(a.subnet.netmask());
    std::net::Ipv4Addr::from((u32::from(a.subnet.addr) & mask) | (n & !mask))
}

fn iface_json(i: &Interface) -> Value {
    let addr: Option<HostAddress> = i.address;
    json!({
        "name": i.name,
        "network": i.network,
        "address": addr.map(|a| a.to_string()),
        "ip": addr.map(|a| a.addr.to_string()),
        "prefix": addr.map(|a| a.subnet.prefix),
        "netmask": addr.map(|a| a.subnet.netmask().to_string()),
        "network_cidr": addr.map(|a| a.subnet.to_string()),
        "gateway": i.gateway.map(|g| g.to_string()),
        "serves": i.serves,
        "dhcp_start": addr.map(|a| nth_host(&a, 100).to_string()),
        "dhcp_end": addr.map(|a| nth_host(&a, 200).to_string()),
    })
}

/// The template context of a machine: what every template may use.
pub(crate) fn context(spec: &MachineSpec) -> Result<Value, RenderError> {
    let name = spec.name.as_str();
    let missing = |what: &str| RenderError::MissingOption {
        machine: name.to_string(),
        what: what.to_string(),
    };
    let domain = name.split_once('.').map(|(_, d)| d).unwrap_or(name);
    let upstream = spec.interfaces.iter().find(|i| !i.serves);
    let downstream = spec.interfaces.iter().find(|i| i.serves);
    if spec.kind == MachineType::Router {
        match downstream {
            Some(d) if d.address.is_some() => {}
            _ => {
                return Err(missing(
                    "a router needs a downstream interface with a static address (serves = true)",
                ))
            }
        }
        if upstream.is_none() {
            return Err(missing("a router needs an upstream interface"));
        }
    }
    let vpn = match (&spec.vpn, spec.role) {
        (None, Some(Role::Galaxy)) => {
            return Err(missing(
                "the galaxy router needs VPN options (kind, endpoint, port, address, dns) in multiverse.toml",
            ))
        }
        (Some(v), _) => {
            if v.kind == VpnKind::Wireguard && v.peer_public_key.is_none() {
                return Err(missing("a WireGuard VPN needs the provider's peer_public_key"));
            }
            if v.kind == VpnKind::Wireguard && v.private_key_file.is_none() {
                return Err(missing(
                    "a WireGuard VPN needs private_key_file in vpn.toml: a 0600 file with this end's private key (`wg genkey` writes one)",
                ));
            }
            if v.kind == VpnKind::Openvpn {
                openvpn_files_named(spec, v)?;
            }
            let mut j = serde_json::to_value(v).unwrap_or(Value::Null);
            j["proto"] = json!("udp");
            j["tls_crypt"] = json!(v.tls_crypt_file.is_some());
            if v.kind == VpnKind::Openvpn {
                j["management_socket"] = json!(OPENVPN_MANAGEMENT_SOCKET);
            }
            j
        }
        (None, _) => Value::Null,
    };
    let vpn_iface = match spec.vpn.as_ref().map(|v| v.kind) {
        Some(VpnKind::Wireguard) => json!("wg0"),
        Some(VpnKind::Openvpn) => json!("tun0"),
        None => Value::Null,
    };
    let dns_upstream: Vec<String> = match spec.role {
        Some(Role::Universe) => vec!["9.9.9.9".into(), "149.112.112.112".into()],
        Some(Role::Galaxy) => spec.vpn.iter().map(|v| v.dns.to_string()).collect(),
        Some(Role::Star) => vec![format!("127.0.0.1#{TOR_DNS_PORT}")],
        None => vec![],
    };
    let mut cmdline: Vec<&str> = Vec::new();
    if spec.iommu {
        let vendor = spec.cpu_vendor.ok_or_else(|| {
            missing("the IOMMU is on, so the host needs its cpu_vendor (intel or amd)")
        })?;
        cmdline.push(vendor.iommu_option());
    }
    if spec.iommu_passthrough {
        cmdline.push("iommu=pt");
    }
    let description = match (spec.kind, spec.role) {
        (MachineType::Router, Some(Role::Universe)) => "universe router (NAT, firewall, DHCP/DNS)",
        (MachineType::Router, Some(Role::Galaxy)) => "galaxy router (VPN hop)",
        (MachineType::Router, Some(Role::Star)) => "star router (Tor transparent proxy)",
        (MachineType::Router, None) => "router",
        (MachineType::Host, _) => "host",
        (MachineType::Controller, _) => "controller",
        (MachineType::Service, _) => "service machine",
        (MachineType::Application, _) => "application machine",
    };
    let agent_role = match spec.kind {
        MachineType::Host => "host",
        MachineType::Controller => "controller",
        MachineType::Router => "router",
        MachineType::Service | MachineType::Application => "service",
    };
    let channel_dir = mv_core::layout::agent_socket(&spec.name)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Ok(json!({
        "machine": {
            "name": name,
            "short": spec.name.short(),
            "domain": domain,
            "kind": spec.kind,
            "role": spec.role,
            "os": spec.os,
            "arch": spec.arch,
            "description": description,
        },
        "interfaces": spec.interfaces.iter().map(iface_json).collect::<Vec<_>>(),
        "upstream": upstream.map(iface_json),
        "downstream": downstream.map(iface_json),
        "vpn": vpn,
        "vpn_iface": vpn_iface,
        "dns_upstream": dns_upstream,
        "tor": {
            "user": match spec.os { Os::Debian => "debian-tor", Os::Alpine => "tor" },
            "trans_port": TOR_TRANS_PORT,
            "dns_port": TOR_DNS_PORT,
            "virtual_network": "10.192.0.0/10",
            "onion_services": spec.onion_services.iter().map(|o| json!({
                "machine": o.machine.as_str(),
                "dir": format!("{TOR_DIR}/{}", o.machine),
                "address": o.address.to_string(),
                "ports": o.ports,
            })).collect::<Vec<_>>(),
        },
        "host": {
            "cmdline": cmdline,
            "vfio_ids": spec.vfio_ids,
        },
        "agent": {
            "role": agent_role,
            "path": AGENT_PATH,
            "channel": mv_core::layout::AGENT_CHANNEL,
            "virtio_port": (spec.kind != MachineType::Host).then_some(AGENT_VIRTIO_PORT),
            "channel_dir": channel_dir,
            "service_manager": match spec.os { Os::Debian => "systemd", Os::Alpine => "openrc" },
            "services": [],
        },
    }))
}

/// Renders `spec` with the templates of `engine` and the keys of `identity`.
pub fn render(
    spec: &MachineSpec,
    engine: &Engine,
    identity: &dyn IdentitySource,
) -> Result<Desired, RenderError> {
    let machine = spec.name.to_string();
    let mut ctx = context(spec)?;
    let mut resolved: Resolved = recipe::resolve(spec.recipe_name(), spec.os, engine, &ctx)
        .map_err(|source| RenderError::Recipe {
            machine: machine.clone(),
            source: Box::new(source),
        })?;
    for p in &spec.extra_packages {
        if !resolved.packages.contains(p) {
            resolved.packages.push(p.clone());
        }
    }
    // The services the agent reports on: the recipe's, not the agent itself.
    ctx["agent"]["services"] = resolved
        .services
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| *n != "multiverse-agent")
        .collect::<Vec<_>>()
        .into();

    let mut files = Vec::new();
    for f in &resolved.files {
        let (contents, origin) = match &f.source {
            FileSource::Template(t) => {
                let text = engine
                    .render(t, &ctx)
                    .map_err(|source| RenderError::Template {
                        machine: machine.clone(),
                        path: f.path.clone(),
                        source: Box::new(source),
                    })?;
                (Contents::Public(text), t.clone())
            }
            FileSource::Generated(g) => (
                generated(g, f, spec, &resolved, identity)?,
                match &f.machine {
                    Some(m) => format!("{g} of {m}"),
                    None => g.clone(),
                },
            ),
        };
        files.push(DesiredFile {
            path: f.path.clone(),
            contents,
            mode: f.mode,
            owner: f.owner.clone(),
            origin,
            reload: f.reload.clone(),
        });
    }

    let mut users = Vec::new();
    let mut dirs: Vec<DesiredDir> = resolved
        .dirs
        .iter()
        .map(|d| DesiredDir {
            path: d.path.clone(),
            mode: d.mode,
            owner: d.owner.clone(),
        })
        .collect();
    for u in &resolved.users {
        let home = if u.name == "root" {
            "/root".to_string()
        } else {
            format!("/home/{}", u.name)
        };
        let password = match u.password {
            PasswordSource::Machine => Some(identity.machine_password(&spec.name)?),
            PasswordSource::Locked => None,
        };
        if u.name != "root" {
            dirs.push(DesiredDir {
                path: home.clone(),
                mode: 0o750,
                owner: u.name.clone(),
            });
        }
        if u.authorized_keys {
            dirs.push(DesiredDir {
                path: format!("{home}/.ssh"),
                mode: 0o700,
                owner: u.name.clone(),
            });
            let mut text = format!(
                "# Managed by multiverse provision ({machine}): the identity's login keys.\n"
            );
            for k in identity.authorized_keys(&spec.name)? {
                text.push_str(k.trim_end());
                text.push('\n');
            }
            files.push(DesiredFile {
                path: format!("{home}/.ssh/authorized_keys"),
                contents: Contents::Public(text),
                mode: 0o600,
                owner: u.name.clone(),
                origin: "authorized_keys".to_string(),
                // sshd reads it at each login.
                reload: vec![],
            });
        }
        users.push(DesiredUser {
            name: u.name.clone(),
            shell: u.shell.clone(),
            home,
            groups: u.groups.clone(),
            password,
        });
    }

    Ok(Desired {
        machine,
        os: spec.os,
        recipes: resolved.recipes,
        packages: resolved.packages,
        services: resolved.services,
        dirs,
        files,
        users,
    })
}

fn generated(
    source: &str,
    file: &recipe::FileSpec,
    spec: &MachineSpec,
    resolved: &Resolved,
    identity: &dyn IdentitySource,
) -> Result<Contents, RenderError> {
    let path = file.path.as_str();
    // Whose keys: another machine's for an `each` entry naming one (a published service's onion
    // key on the star router), else this machine's.
    let owner = match &file.machine {
        Some(m) => mv_core::MachineName::parse(m).map_err(|e| RenderError::MissingOption {
            machine: spec.name.to_string(),
            what: format!("file {path}: `{m}` is not a machine name ({e})"),
        })?,
        None => spec.name.clone(),
    };
    let header = format!("# Managed by multiverse provision ({}).\n", spec.name);
    let secret =
        |s: SecretString| Contents::Secret(SecretBytes::new(s.expose().as_bytes().to_vec()));
    let line = |s: String| Contents::Public(format!("{}\n", s.trim_end()));
    Ok(match source {
        "sysctl" => {
            let mut t = header;
            for (k, v) in &resolved.sysctl {
                t.push_str(&format!("{k} = {v}\n"));
            }
            Contents::Public(t)
        }
        "modules" => {
            let mut t = header;
            for m in &resolved.modules {
                t.push_str(m);
                t.push('\n');
            }
            Contents::Public(t)
        }
        "ssh_host_ed25519" => secret(identity.ssh_host_ed25519(&spec.name)?.private_openssh),
        "ssh_host_ed25519.pub" => line(identity.ssh_host_ed25519(&spec.name)?.public_line),
        "ssh_host_ecdsa" => secret(identity.ssh_host_ecdsa_p256(&spec.name)?.private_openssh),
        "ssh_host_ecdsa.pub" => line(identity.ssh_host_ecdsa_p256(&spec.name)?.public_line),
        // The key pair; tor writes `hostname` from it at start, so the address a guest publishes
        // is tor's own reading of the derived key. The public half is written too: one left
        // from an earlier key (a rotation) makes tor refuse the new secret key. Binary, so it is
        // kept out of diffs like a secret, though it is public.
        "onion_secret_key" => Contents::Secret(identity.onion_service(&owner)?.secret_file),
        "onion_public_key" => Contents::Secret(mv_core::secret::SecretBytes::new(
            identity.onion_service(&owner)?.public_file,
        )),
        "wireguard_private_key" => wireguard_private_key(spec)?,
        "openvpn_ca" => openvpn_ca(spec)?,
        "openvpn_credentials" => openvpn_credentials(spec)?,
        "openvpn_tls_crypt" => openvpn_tls_crypt(spec)?,
        "multiverse-agent.service" => Contents::Public(AGENT_SYSTEMD_UNIT.to_string()),
        "multiverse-agent.openrc" => Contents::Public(AGENT_OPENRC_SCRIPT.to_string()),
        "multiverse-agent" => binary(&agent_binary(), spec, "multiverse-agent")?,
        "multiverse-agent-libvirt" => binary(
            &agent_binary().with_file_name("multiverse-agent-libvirt"),
            spec,
            "multiverse-agent-libvirt",
        )?,
        other => {
            return Err(RenderError::UnknownSource {
                path: path.to_string(),
                source_name: other.to_string(),
            })
        }
    })
}

/// A host file that `vpn.toml`'s `field` names (`path`), read as it is: a regular file (no
/// link followed); a `secret` one readable by its owner only. Errors name the file and the field.
fn vpn_host_file(
    spec: &MachineSpec,
    path: Option<&PathBuf>,
    field: &str,
    what: &str,
    secret: bool,
) -> Result<(PathBuf, zeroize::Zeroizing<Vec<u8>>), RenderError> {
    let missing = |what: String| RenderError::MissingOption {
        machine: spec.name.to_string(),
        what,
    };
    let Some(path) = path else {
        return Err(missing(format!(
            "{what} is needed: name it with {field} in vpn.toml"
        )));
    };
    let (meta, bytes) = mv_core::fsutil::read_regular(path).map_err(|e| {
        missing(format!(
            "cannot read {what} {} (vpn.toml's {field}): {e}",
            path.display()
        ))
    })?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
    if secret && mode & 0o077 != 0 {
        return Err(missing(format!(
            "{what} {} (vpn.toml's {field}) is readable by others (mode {mode:04o}): chmod 600 it",
            path.display()
        )));
    }
    Ok((path.clone(), bytes))
}

/// The galaxy's WireGuard private key, read from the host file `vpn.toml` names: a regular
/// file (no link followed) that only its owner can read, holding one base64 X25519 key.
fn wireguard_private_key(spec: &MachineSpec) -> Result<Contents, RenderError> {
    let (path, bytes) = vpn_host_file(
        spec,
        spec.vpn.as_ref().and_then(|v| v.private_key_file.as_ref()),
        "private_key_file",
        "the WireGuard private key",
        true,
    )?;
    let text = std::str::from_utf8(&bytes).unwrap_or("").trim();
    // base64 of 32 bytes: 43 characters of the standard alphabet, then one `=`.
    let well_formed = text.len() == 44
        && text.ends_with('=')
        && text[..43]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !well_formed {
        return Err(RenderError::MissingOption {
            machine: spec.name.to_string(),
            what: format!(
                "{} (vpn.toml's private_key_file) is not a WireGuard private key (one line of base64, as `wg genkey` writes)",
                path.display()
            ),
        });
    }
    // Built in place: no intermediate copy of the key is left unwiped.
    let mut line = Vec::with_capacity(text.len() + 1);
    line.extend_from_slice(text.as_bytes());
    line.push(b'\n');
    Ok(Contents::Secret(SecretBytes::new(line)))
}

/// An OpenVPN galaxy's host files: `ca_file` and `credentials_file` named in `vpn.toml`, and
/// every named file (`tls_crypt_file` too) there. Checked when the context is built, before any
/// file is rendered, so what is missing is one error listing all of it.
fn openvpn_files_named(spec: &MachineSpec, v: &VpnOptions) -> Result<(), RenderError> {
    let mut problems = Vec::new();
    let files = [
        (
            "ca_file",
            "the provider's CA certificate",
            v.ca_file.as_ref(),
            true,
        ),
        (
            "credentials_file",
            "a 0600 file with the account's user name and password, one a line",
            v.credentials_file.as_ref(),
            true,
        ),
        ("tls_crypt_file", "", v.tls_crypt_file.as_ref(), false),
    ];
    for (field, what, path, required) in files {
        match path {
            None if required => problems.push(format!("{field} ({what}) is not set")),
            None => {}
            Some(p) => {
                if let Err(e) = std::fs::symlink_metadata(p) {
                    problems.push(format!("{field} {}: {e}", p.display()));
                }
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(RenderError::MissingOption {
        machine: spec.name.to_string(),
        what: format!(
            "an OpenVPN VPN needs its provider's files named in vpn.toml: {}",
            problems.join("; ")
        ),
    })
}

/// A host file's bytes as text, or an error naming the file, its field and the format expected.
fn vpn_text<'a>(
    spec: &MachineSpec,
    path: &Path,
    field: &str,
    bytes: &'a [u8],
    expected: &str,
) -> Result<&'a str, RenderError> {
    std::str::from_utf8(bytes).map_err(|_| RenderError::MissingOption {
        machine: spec.name.to_string(),
        what: format!("{} (vpn.toml's {field}) is not {expected}", path.display()),
    })
}

/// The provider's CA certificate (PEM), from the host file `vpn.toml`'s `ca_file` names: public,
/// the guest's `/etc/openvpn/client/ca.crt`.
fn openvpn_ca(spec: &MachineSpec) -> Result<Contents, RenderError> {
    let v = spec.vpn.as_ref();
    let (path, bytes) = vpn_host_file(
        spec,
        v.and_then(|v| v.ca_file.as_ref()),
        "ca_file",
        "the OpenVPN provider's CA certificate",
        false,
    )?;
    let expected = "a PEM certificate (-----BEGIN CERTIFICATE-----)";
    let text = vpn_text(spec, &path, "ca_file", &bytes, expected)?;
    if !text.contains("-----BEGIN CERTIFICATE-----") || !text.contains("-----END CERTIFICATE-----")
    {
        return Err(RenderError::MissingOption {
            machine: spec.name.to_string(),
            what: format!("{} (vpn.toml's ca_file) is not {expected}", path.display()),
        });
    }
    Ok(Contents::Public(format!("{}\n", text.trim_end())))
}

/// The account's user name and password, from the 0600 host file `vpn.toml`'s
/// `credentials_file` names: two non-empty lines, as `auth-user-pass` reads them. Written as
/// exactly those two lines into one wiped buffer.
fn openvpn_credentials(spec: &MachineSpec) -> Result<Contents, RenderError> {
    let v = spec.vpn.as_ref();
    let (path, bytes) = vpn_host_file(
        spec,
        v.and_then(|v| v.credentials_file.as_ref()),
        "credentials_file",
        "the OpenVPN credentials",
        true,
    )?;
    let expected = "two lines: the user name, then the password";
    let text = vpn_text(spec, &path, "credentials_file", &bytes, expected)?;
    let mut lines = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l));
    let (user, password) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    if user.is_empty() || password.is_empty() || lines.any(|l| !l.trim().is_empty()) {
        return Err(RenderError::MissingOption {
            machine: spec.name.to_string(),
            what: format!(
                "{} (vpn.toml's credentials_file) is not {expected}",
                path.display()
            ),
        });
    }
    let mut out = Vec::with_capacity(user.len() + password.len() + 2);
    out.extend_from_slice(user.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(password.as_bytes());
    out.push(b'\n');
    Ok(Contents::Secret(SecretBytes::new(out)))
}

/// The provider's `tls-crypt` key, from the 0600 host file `vpn.toml`'s `tls_crypt_file` names:
/// an OpenVPN static key, the guest's `/etc/openvpn/client/tls-crypt.key`.
fn openvpn_tls_crypt(spec: &MachineSpec) -> Result<Contents, RenderError> {
    let v = spec.vpn.as_ref();
    let (path, bytes) = vpn_host_file(
        spec,
        v.and_then(|v| v.tls_crypt_file.as_ref()),
        "tls_crypt_file",
        "the OpenVPN tls-crypt key",
        true,
    )?;
    let expected = "an OpenVPN static key (-----BEGIN OpenVPN Static key V1-----)";
    let text = vpn_text(spec, &path, "tls_crypt_file", &bytes, expected)?;
    if !text.contains("-----BEGIN OpenVPN Static key V1-----")
        || !text.contains("-----END OpenVPN Static key V1-----")
    {
        return Err(RenderError::MissingOption {
            machine: spec.name.to_string(),
            what: format!(
                "{} (vpn.toml's tls_crypt_file) is not {expected}",
                path.display()
            ),
        });
    }
    let mut out = Vec::with_capacity(text.trim_end().len() + 1);
    out.extend_from_slice(text.trim_end().as_bytes());
    out.push(b'\n');
    Ok(Contents::Secret(SecretBytes::new(out)))
}

/// The packages machine `spec`'s recipes ask for (before its `extra_packages`), resolved as
/// [`render`] resolves them. Compiled only for tests (feature `test-hooks`): the CLI's image test
/// checks every one is in the Debian image.
#[cfg(any(test, feature = "test-hooks"))]
pub fn recipe_packages(spec: &MachineSpec, engine: &Engine) -> Result<Vec<String>, RenderError> {
    let ctx = context(spec)?;
    recipe::resolve(spec.recipe_name(), spec.os, engine, &ctx)
        .map(|r| r.packages)
        .map_err(|source| RenderError::Recipe {
            machine: spec.name.to_string(),
            source: Box::new(source),
        })
}

/// The `multiverse-agent` binary machines get: `$MULTIVERSE_AGENT_BIN` if set, else the one beside
/// the running executable (for a test binary in cargo's `target/<profile>/deps/`, the one in
/// `target/<profile>/`). The libvirt helper is looked for beside it.
pub(crate) fn agent_binary() -> PathBuf {
    if let Some(p) = std::env::var_os(AGENT_BIN_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    let beside = dir.join("multiverse-agent");
    if !beside.exists() && dir.file_name().is_some_and(|n| n == "deps") {
        if let Some(up) = dir.parent() {
            return up.join("multiverse-agent");
        }
    }
    beside
}

fn binary(path: &Path, spec: &MachineSpec, what: &'static str) -> Result<Contents, RenderError> {
    let err = |source| RenderError::AgentBinary {
        machine: spec.name.to_string(),
        what,
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    if !meta.is_file() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let bytes = std::fs::read(path).map_err(err)?;
    Ok(Contents::Binary {
        bytes: bytes.into(),
        from: path.to_path_buf(),
    })
}

// What rendering needs is missing or wrong in the person's files (topology, templates,
// recipes, vpn.toml, the agent binary's place): the CLI has always answered exit 2.
impl mv_core::Classify for RenderError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mv_core::MachineName;

    /// A missing agent binary is one error naming the machine and the path (the way out,
    /// `MULTIVERSE_AGENT_BIN`, is the CLI's hint: `multiverse::error::library_hint`).
    #[test]
    fn missing_agent_binary_is_a_clear_error() {
        let name = MachineName::parse("mail.service.multiverse").unwrap();
        let spec = MachineSpec::default_for(name, MachineType::Service, None, Os::Debian);
        let d = std::env::temp_dir().join(format!("mv-no-agent-{}", std::process::id()));
        let e = binary(&d.join("multiverse-agent"), &spec, "multiverse-agent").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("cannot read multiverse-agent to install on mail.service.multiverse"),
            "{msg}"
        );
        assert!(msg.contains(&d.display().to_string()), "{msg}");
        // A folder is not a binary either.
        assert!(binary(&std::env::temp_dir(), &spec, "multiverse-agent").is_err());
    }

    /// The WireGuard key file: read as it is (0600, one base64 key), refused with a line naming
    /// the file when it is readable by others, malformed, a link or missing.
    #[test]
    fn wireguard_private_key_file_is_checked() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("wg0.key");
        let mut spec = MachineSpec::default_for(
            MachineName::parse("galaxy.router.multiverse").unwrap(),
            MachineType::Router,
            Some(Role::Galaxy),
            Os::Debian,
        );
        spec.vpn = Some(crate::model::VpnOptions {
            kind: VpnKind::Wireguard,
            endpoint: "192.0.2.1".parse().unwrap(),
            port: 51820,
            address: "10.64.0.2/32".into(),
            dns: "10.64.0.1".parse().unwrap(),
            peer_public_key: Some("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".into()),
            private_key_file: Some(key.clone()),
            ca_file: None,
            credentials_file: None,
            tls_crypt_file: None,
        });
        let good = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
        let write = |text: &str, mode: u32| {
            std::fs::write(&key, text).unwrap();
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let err = |spec: &MachineSpec| match wireguard_private_key(spec) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        };
        assert!(err(&spec).contains("cannot read the WireGuard private key"));
        write(&format!("{good}\n"), 0o600);
        let Ok(Contents::Secret(bytes)) = wireguard_private_key(&spec) else {
            panic!("a good key is a secret")
        };
        assert_eq!(bytes.expose(), format!("{good}\n").as_bytes());
        write(good, 0o644);
        assert!(err(&spec).contains("readable by others"), "{}", err(&spec));
        write("not a key\n", 0o600);
        assert!(err(&spec).contains("is not a WireGuard private key"));
        write(&good.replace('=', "A"), 0o600);
        assert!(err(&spec).contains("is not a WireGuard private key"));
        std::fs::remove_file(&key).unwrap();
        let other = d.path().join("other.key");
        std::fs::write(&other, good).unwrap();
        std::os::unix::fs::symlink(&other, &key).unwrap();
        assert!(err(&spec).contains("cannot read"), "a link is not followed");
        spec.vpn.as_mut().unwrap().private_key_file = None;
        assert!(err(&spec).contains("private_key_file"));
    }

    /// An OpenVPN galaxy with its provider's files in `dir` (none written yet).
    fn openvpn_galaxy(dir: &Path) -> MachineSpec {
        let mut spec = MachineSpec::default_for(
            MachineName::parse("galaxy.router.multiverse").unwrap(),
            MachineType::Router,
            Some(Role::Galaxy),
            Os::Debian,
        );
        spec.vpn = Some(VpnOptions {
            kind: VpnKind::Openvpn,
            endpoint: "192.0.2.1".parse().unwrap(),
            port: 1194,
            address: "10.64.0.2/24".into(),
            dns: "10.64.0.1".parse().unwrap(),
            peer_public_key: None,
            private_key_file: None,
            ca_file: Some(dir.join("ca.crt")),
            credentials_file: Some(dir.join("credentials")),
            tls_crypt_file: None,
        });
        spec
    }

    fn write(path: &Path, text: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const TLS_CRYPT: &str =
        "-----BEGIN OpenVPN Static key V1-----\n00\n-----END OpenVPN Static key V1-----\n";

    /// Missing OpenVPN files are one error at render naming every field and file at fault,
    /// before any file is rendered.
    #[test]
    fn openvpn_missing_files_are_one_error() {
        let d = tempfile::tempdir().unwrap();
        let mut spec = openvpn_galaxy(d.path());
        let e = context(&spec).unwrap_err().to_string();
        assert!(
            e.contains("ca_file ") && e.contains("credentials_file "),
            "{e}"
        );
        assert!(
            e.contains(&d.path().join("ca.crt").display().to_string()),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        let v = spec.vpn.as_mut().unwrap();
        v.ca_file = None;
        v.credentials_file = None;
        let e = context(&spec).unwrap_err().to_string();
        assert!(
            e.contains("ca_file (the provider's CA certificate) is not set")
                && e.contains("credentials_file (a 0600 file"),
            "{e}"
        );
        let mut spec = openvpn_galaxy(d.path());
        write(&d.path().join("ca.crt"), CA, 0o644);
        write(&d.path().join("credentials"), "u\np\n", 0o600);
        let v = spec.vpn.as_mut().unwrap();
        v.tls_crypt_file = Some(d.path().join("tc.key"));
        let e = context(&spec).unwrap_err().to_string();
        assert!(
            e.contains("tls_crypt_file ") && !e.contains("ca_file"),
            "{e}"
        );
        write(&d.path().join("tc.key"), TLS_CRYPT, 0o600);
        let ctx = context(&spec).unwrap();
        assert_eq!(ctx["vpn"]["tls_crypt"], json!(true));
    }

    /// The credentials: two lines, 0600, written as exactly those lines; refused with the file
    /// and field named when readable by others, malformed or a link.
    #[test]
    fn openvpn_credentials_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let spec = openvpn_galaxy(d.path());
        let creds = d.path().join("credentials");
        let err = |spec: &MachineSpec| match openvpn_credentials(spec) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        };
        write(&creds, "user\r\npass word\n\n", 0o600);
        let Ok(Contents::Secret(b)) = openvpn_credentials(&spec) else {
            panic!("credentials are a secret")
        };
        assert_eq!(b.expose(), b"user\npass word\n");
        write(&creds, "user\npassword\n", 0o640);
        let e = err(&spec);
        assert!(
            e.contains("readable by others (mode 0640): chmod 600 it"),
            "{e}"
        );
        assert!(
            e.contains(&creds.display().to_string()) && e.contains("credentials_file"),
            "{e}"
        );
        for bad in ["user\n", "\npassword\n", "user\npassword\nextra\n", ""] {
            write(&creds, bad, 0o600);
            assert!(
                err(&spec).contains("is not two lines"),
                "{bad:?}: {}",
                err(&spec)
            );
        }
        std::fs::remove_file(&creds).unwrap();
        let other = d.path().join("other");
        write(&other, "user\npassword\n", 0o600);
        std::os::unix::fs::symlink(&other, &creds).unwrap();
        assert!(
            err(&spec).contains("cannot read the OpenVPN credentials"),
            "{}",
            err(&spec)
        );
    }

    /// The CA is public and must be PEM; the tls-crypt key is a 0600 OpenVPN static key.
    #[test]
    fn openvpn_ca_and_tls_crypt_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let mut spec = openvpn_galaxy(d.path());
        let ca = d.path().join("ca.crt");
        write(&ca, CA, 0o644);
        let Ok(Contents::Public(text)) = openvpn_ca(&spec) else {
            panic!("the CA is public")
        };
        assert_eq!(text, CA);
        write(&ca, "not a certificate\n", 0o644);
        let e = openvpn_ca(&spec).unwrap_err().to_string();
        assert!(
            e.contains("(vpn.toml's ca_file) is not a PEM certificate"),
            "{e}"
        );
        let key = d.path().join("tc.key");
        spec.vpn.as_mut().unwrap().tls_crypt_file = Some(key.clone());
        write(&key, TLS_CRYPT, 0o644);
        let e = openvpn_tls_crypt(&spec).unwrap_err().to_string();
        assert!(
            e.contains("tls_crypt_file") && e.contains("chmod 600"),
            "{e}"
        );
        write(&key, TLS_CRYPT, 0o600);
        let Ok(Contents::Secret(b)) = openvpn_tls_crypt(&spec) else {
            panic!("the tls-crypt key is a secret")
        };
        assert_eq!(b.expose(), TLS_CRYPT.as_bytes());
        write(&key, "garbage\n", 0o600);
        let e = openvpn_tls_crypt(&spec).unwrap_err().to_string();
        assert!(e.contains("is not an OpenVPN static key"), "{e}");
    }
}
