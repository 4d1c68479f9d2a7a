//! `multiverse.toml`: the machine model, how it is read, validated and written back.
//!
//! [`Topology`] is the whole file after validation and with every default filled in: the
//! [`HostConfig`], the [`Network`]s and the [`Machine`]s. [`Topology::load`] reads a file and
//! refuses bad input with a [`ConfigError`] whose text is `FILE:LINE: what` (the line of the value
//! concerned), so the CLI can print one line and exit 2. Nothing here writes files.
//!
//! Reading happens in two steps: serde reads the text into private `File*` structs (unknown fields,
//! unknown enum values and malformed names/addresses are refused there, with the span toml gives
//! us), then [`validate`](Topology::parse) checks what serde cannot see (duplicates, dangling
//! network names, PCI devices claimed twice...) using the spans kept in `toml::Spanned` fields.
//!
//! The host is described once in `[host]`; it also appears first in [`Topology::machines`] as a
//! machine of type [`MachineType::Host`] (so keys, provisioning and agents treat it like any other
//! machine), but it never gets a libvirt domain and is never written to `[[machines]]`.

mod addr;

/// The shared model types, defined once in `mv_core::model` (the crate root re-exports those a
/// caller names); imported for the crate so `crate::config::Arch` and the like keep working.
pub(crate) use mv_core::model::{
    Arch, CpuVendor, Ipv4Net, MacAddress, MachineType, Os, PciAddress, UsbId,
};

use mv_core::MachineName;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The text `multiverse init` writes: docs/design.md's default topology, with comments for the person.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The text `multiverse init --lab` writes: the default topology for tests and hosts without
/// passthrough (every machine Debian, the universe router's NIC a virtio NIC on the `uplink`
/// network, no GPU or USB, small memory). [`lab_toml`] sets its accelerator.
pub const LAB_TOML: &str = include_str!("lab.toml");

/// [`LAB_TOML`] for a host of `arch` running guests with `accel`.
pub fn lab_toml(arch: Arch, accel: Accel) -> String {
    let text = LAB_TOML
        .replacen("arch = \"x86_64\"", &format!("arch = \"{arch}\""), 1)
        .replacen("accel = \"kvm\"", &format!("accel = \"{accel}\""), 1);
    match arch {
        // aarch64 boots through UEFI only: its controller keeps the default.
        Arch::Aarch64 => text.replacen("firmware = \"bios\"\n", "", 1),
        Arch::X86_64 => text,
    }
}

/// How a machine boots: legacy BIOS (SeaBIOS) or UEFI (OVMF/AAVMF).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// SeaBIOS: what the Debian base image boots (GRUB i386-pc in the MBR).
    Bios,
    /// UEFI: the default of the controller (GPU passthrough wants it) and of aarch64.
    Uefi,
}

/// How a machine's disks are stored on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskEncryption {
    /// Plain qcow2 overlays.
    None,
    /// QEMU LUKS inside the qcow2 overlay, keyed by the machine's identity `luks` key through a
    /// libvirt secret that `multiverse up` sets and the kill switch undefines. The controller's
    /// default.
    Luks,
}

/// How QEMU runs the guests: hardware virtualisation (KVM) or QEMU's own emulator (TCG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM: libvirt `<domain type='kvm'>` with the host's CPU passed through. The default.
    #[default]
    Kvm,
    /// TCG: `<domain type='qemu'>` with QEMU's `max` CPU model. Slow (a Debian guest boots in
    /// about 30 s), but runs on a host whose KVM cannot boot a stock guest (`multiverse host check`
    /// says so) or has no KVM at all.
    Tcg,
}

/// The environment variable that overrides `[host] accel` when rendering (tests, lab hosts).
pub(crate) const ACCEL_ENV: &str = "MULTIVERSE_ACCEL";

impl Accel {
    /// The lower-case name (`kvm`, `tcg`).
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// The value of `MULTIVERSE_ACCEL` (`ACCEL_ENV`), if set: `Err` names the bad value.
    pub fn from_env() -> Result<Option<Accel>, String> {
        match std::env::var(ACCEL_ENV) {
            Err(std::env::VarError::NotPresent) => Ok(None),
            Ok(v) if v.is_empty() => Ok(None),
            Ok(v) => v
                .parse()
                .map(Some)
                .map_err(|e| format!("{ACCEL_ENV}={v:?}: {e}")),
            Err(std::env::VarError::NotUnicode(v)) => {
                Err(format!("{ACCEL_ENV}={v:?}: expected kvm or tcg"))
            }
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            _ => Err(format!("unknown accel `{s}` (expected kvm or tcg)")),
        }
    }
}

/// Default (memory MiB, vCPUs, OS) of a machine of type `kind`.
fn type_defaults(kind: MachineType) -> (u64, u32, Os) {
    match kind {
        MachineType::Host => (0, 0, Os::Alpine),
        MachineType::Controller => (4096, 2, Os::Debian),
        MachineType::Router => (256, 1, Os::Alpine),
        MachineType::Service => (512, 1, Os::Alpine),
        MachineType::Application => (2048, 2, Os::Debian),
    }
}

/// The place of a router in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterRole {
    /// Owns the physical NIC (passed through): NAT, firewall, DHCP/DNS.
    Universe,
    /// The VPN hop.
    Galaxy,
    /// The Tor transparent proxy.
    Star,
}

/// The VPN a galaxy router runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VpnKind {
    /// WireGuard.
    Wireguard,
    /// OpenVPN.
    Openvpn,
}

/// Router options of a machine of type router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterOptions {
    /// universe, galaxy or star.
    pub role: RouterRole,
    /// The VPN it runs, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn: Option<VpnKind>,
    /// The network its traffic leaves through (none for universe: that is the physical NIC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The networks it serves (filled from the networks' `served_by`; if written, must agree).
    #[serde(default)]
    pub serves: Vec<String>,
}

/// IOMMU options of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IommuConfig {
    /// Turn the IOMMU on (`intel_iommu=on` / `amd_iommu=on`). Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `iommu=pt`: only passed-through devices are translated. Default true.
    #[serde(default = "yes")]
    pub passthrough: bool,
}

fn yes() -> bool {
    true
}

impl Default for IommuConfig {
    fn default() -> Self {
        IommuConfig {
            enabled: true,
            passthrough: true,
        }
    }
}

/// The bare-metal host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The host's FQDN. Default `host.multiverse`.
    pub name: MachineName,
    /// CPU architecture. Default x86_64.
    pub arch: Arch,
    /// CPU vendor. Default intel.
    pub cpu_vendor: CpuVendor,
    /// Installed memory in MiB. Default 16384.
    pub memory_mib: u64,
    /// The host's OS. Default alpine.
    pub os: Os,
    /// How guests run: `kvm` (default) or `tcg`. `MULTIVERSE_ACCEL` overrides it when rendering.
    #[serde(default)]
    pub accel: Accel,
    /// IOMMU options.
    #[serde(default)]
    pub iommu: IommuConfig,
}

/// A host-side network: an isolated libvirt bridge served by one router VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// libvirt network name (`net0`).
    pub name: String,
    /// Bridge device name on the host (`mvbr0`, at most 15 characters).
    pub bridge: String,
    /// The subnet the serving router hands out.
    pub subnet: Ipv4Net,
    /// The serving router's address on it (default: the first host address).
    pub gateway: Ipv4Addr,
    /// The router VM that routes, firewalls and runs DHCP/DNS for it; `None` for a network no
    /// machine serves (the lab's `uplink`, standing in for the physical network: a router's
    /// upstream, with no DHCP on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<MachineName>,
}

/// One NIC of a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkAttachment {
    /// The network's name.
    pub network: String,
    /// A static address (else DHCP from the serving router).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    /// The MAC address (default: derived from the machine and network names, stable).
    pub mac: MacAddress,
}

/// One disk of a machine: a qcow2 overlay on a base image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Base image name (`images/<base>.qcow2`); default the machine's OS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Virtual size in GiB.
    pub size_gib: u32,
}

/// One virtual machine (or the host), defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// FQDN: names its folder, its libvirt domain and its keys.
    pub name: MachineName,
    /// Type.
    #[serde(rename = "type")]
    pub kind: MachineType,
    /// CPU architecture (default: the host's).
    pub arch: Arch,
    /// OS it is provisioned with.
    pub os: Os,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Start order among machines of the same rank (lower first); none = not started at boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostart: Option<u32>,
    /// A GPU is among its passed-through PCI devices (no emulated display).
    #[serde(default)]
    pub gpu: bool,
    /// PCI devices passed through (vfio).
    #[serde(default)]
    pub pci: Vec<PciAddress>,
    /// USB devices passed through by vendor:product.
    #[serde(default)]
    pub usb: Vec<UsbId>,
    /// Router options (routers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<RouterOptions>,
    /// NICs, in order.
    #[serde(default)]
    pub networks: Vec<NetworkAttachment>,
    /// Disks, in order (the first is `disk.qcow2`).
    #[serde(default)]
    pub disks: Vec<Disk>,
    /// Firmware, when the file sets it (else UEFI for the controller and aarch64, BIOS for the
    /// rest: see [`Machine::uefi`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<Firmware>,
    /// Service machines only: the ports published as an onion service on the star router (whose
    /// tor forwards port P of the machine's onion address to its static address on the star's
    /// network, port P). The address comes from the identity (the machine's `onion-v3` key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub onion: Vec<u16>,
    /// Disk encryption, when the file sets it (else LUKS for the controller, none for the rest:
    /// see [`Machine::disk_encrypted`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_encryption: Option<DiskEncryption>,
}

impl Machine {
    /// Whether the machine's disks are LUKS-encrypted qcow2 overlays.
    pub fn disk_encrypted(&self) -> bool {
        match self.disk_encryption {
            Some(e) => e == DiskEncryption::Luks,
            None => self.kind == MachineType::Controller,
        }
    }

    /// Whether the machine boots through UEFI.
    pub fn uefi(&self) -> bool {
        match self.firmware {
            Some(f) => f == Firmware::Uefi,
            None => self.arch == Arch::Aarch64 || self.kind == MachineType::Controller,
        }
    }

    /// True for every machine that gets a libvirt domain (all but the host).
    pub fn is_vm(&self) -> bool {
        self.kind != MachineType::Host
    }
}

/// The whole `multiverse.toml`, validated, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The host.
    pub host: HostConfig,
    /// Host-side networks.
    pub networks: Vec<Network>,
    /// Every machine; the host first (type host), then the file's `[[machines]]` in order.
    pub machines: Vec<Machine>,
    /// libvirt connection URI, if set (`qemu:///system` in the default).
    pub libvirt_uri: Option<String>,
    /// `[identity.epochs]`: the key epoch of each rotated name (`docs/spec/scramble-v1-epochs.md`);
    /// every name absent is at epoch 0. Each machine name is a machine of this file.
    pub epochs: mv_core::epochs::Epochs,
}

/// What kind of problem a [`ConfigError::Invalid`] is (for callers and tests; the text says more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Not TOML, or a value of the wrong shape.
    Syntax,
    /// A field the format does not have.
    UnknownField,
    /// An unknown machine type, arch, OS, role...
    UnknownValue,
    /// A malformed machine name (FQDN).
    BadName,
    /// A malformed PCI address, USB id, subnet or MAC.
    BadAddress,
    /// Two machines, networks or bridges with one name.
    Duplicate,
    /// A network whose `served_by` is not a router of this file.
    UnservedNetwork,
    /// A reference to a network that is not defined.
    UnknownNetwork,
    /// A PCI device listed by two machines (or twice by one).
    PciClaimedTwice,
    /// Any other inconsistency (router options, addresses, sizes).
    Inconsistent,
}

/// Why `multiverse.toml` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: cannot read", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is read but refused.
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the value concerned.
        line: usize,
        /// The kind of problem.
        problem: Problem,
        /// What is wrong, for people.
        message: String,
    },
}

impl ConfigError {
    /// The problem kind, if the file was read.
    pub fn problem(&self) -> Option<Problem> {
        match self {
            ConfigError::Invalid { problem, .. } => Some(*problem),
            ConfigError::Read { .. } => None,
        }
    }
}

/// Why the topology could not be written as TOML (a bug, not bad input).
#[derive(Debug, thiserror::Error)]
#[error("cannot write the topology as TOML")]
pub struct SerializeError(#[from] toml::ser::Error);

// ---- the file as written (private; spans kept for error lines) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTopology {
    libvirt_uri: Option<String>,
    #[serde(default)]
    host: Option<FileHost>,
    #[serde(default)]
    networks: Vec<FileNetwork>,
    #[serde(default)]
    machines: Vec<FileMachine>,
    /// Read by `mv_core::epochs` (with its own lines); only its presence is seen here.
    #[serde(default, rename = "identity")]
    _identity: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHost {
    name: Option<Spanned<MachineName>>,
    arch: Option<Arch>,
    cpu_vendor: Option<CpuVendor>,
    memory_mib: Option<u64>,
    os: Option<Os>,
    accel: Option<Accel>,
    #[serde(default)]
    iommu: IommuConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNetwork {
    name: Spanned<String>,
    bridge: Spanned<String>,
    subnet: Ipv4Net,
    gateway: Option<Spanned<Ipv4Addr>>,
    served_by: Option<Spanned<MachineName>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAttachment {
    network: Spanned<String>,
    address: Option<Spanned<Ipv4Addr>>,
    mac: Option<MacAddress>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMachine {
    name: Spanned<MachineName>,
    #[serde(rename = "type")]
    kind: Spanned<MachineType>,
    arch: Option<Arch>,
    os: Option<Os>,
    memory_mib: Option<Spanned<u64>>,
    vcpus: Option<Spanned<u32>>,
    autostart: Option<u32>,
    #[serde(default)]
    gpu: bool,
    #[serde(default)]
    pci: Vec<Spanned<PciAddress>>,
    #[serde(default)]
    usb: Vec<UsbId>,
    router: Option<Spanned<RouterOptions>>,
    #[serde(default)]
    networks: Vec<FileAttachment>,
    disks: Option<Spanned<Vec<Disk>>>,
    firmware: Option<Spanned<Firmware>>,
    /// Read as integers so a bad port gets our message and its own line.
    onion: Option<Spanned<Vec<Spanned<i64>>>>,
    disk_encryption: Option<DiskEncryption>,
}

/// Names of networks and bridges: what libvirt and the kernel accept, kept simple.
fn valid_ident(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes, NUL included).
const SUN_PATH_MAX: usize = 107;
/// The longest file name (NAME_MAX of Linux filesystems).
const NAME_MAX: usize = 255;
/// What an atomic write adds around a file name for its temp file (`mv_core::fsutil`:
/// `.<name>.tmp<pid>`, a pid having at most 7 digits).
const TEMP_OVERHEAD: usize = ".".len() + ".tmp".len() + 7;

/// Why a valid machine name cannot be used: a path derived from it would not fit (the agent
/// socket in `sun_path`, or a file name, with its temp-file affixes, in NAME_MAX). Checked while
/// validating, so that no render ever fails half-way on ENAMETOOLONG. `disks`: how many disks the
/// machine has (the storage link of disk n is `<name>-<n>.qcow2`).
fn derived_paths_problem(name: &MachineName, disks: usize) -> Option<String> {
    let socket = mv_core::layout::agent_socket(name);
    let socket_len = socket.as_os_str().len();
    if socket_len > SUN_PATH_MAX {
        let max = SUN_PATH_MAX - (socket_len - name.as_str().len());
        return Some(format!(
            "machine name `{name}` is {} characters; at most {max} fit the agent socket path {} \
             (a Unix socket path holds {SUN_PATH_MAX} bytes)",
            name.as_str().len(),
            socket.display()
        ));
    }
    let last_disk = disks.saturating_sub(1);
    let files = [
        name.as_str().to_string(),
        mv_core::layout::Tree::volume_name(name, last_disk),
        format!("{name}_VARS.fd"),
    ];
    files
        .iter()
        .find(|f| f.len() + TEMP_OVERHEAD > NAME_MAX)
        .map(|f| {
            format!(
                "machine name `{name}` is too long: the file name `{f}` derived from it (with its \
                 temp-file affixes) exceeds {NAME_MAX} bytes"
            )
        })
}

/// Base image names become file names under images/: no separators, no leading dot.
pub(crate) fn valid_image_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: std::ops::Range<usize>, problem: Problem, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line(span.start),
            problem,
            message,
        }
    }
}

fn classify_serde(message: &str) -> Problem {
    if message.contains("unknown field") {
        Problem::UnknownField
    } else if message.contains("unknown variant") {
        Problem::UnknownValue
    } else if message.contains("machine name") {
        Problem::BadName
    } else if message.contains("malformed") {
        Problem::BadAddress
    } else {
        Problem::Syntax
    }
}

impl Topology {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Topology, ConfigError> {
        let text = Topology::read_text(path)?;
        Topology::parse(&text, path)
    }

    /// Reads the text of a `multiverse.toml`. Bytes that are not UTF-8 are the file's content,
    /// not an I/O failure: [`ConfigError::Invalid`] naming the line of the first bad byte.
    pub fn read_text(path: &Path) -> Result<String, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                problem: Problem::Syntax,
                message: format!("not UTF-8 text (invalid byte at offset {at})"),
            }
        })
    }

    /// Validates `text`; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Topology, ConfigError> {
        let cx = Ctx { path, text };
        let file: FileTopology = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim_end_matches('.').replace('\n', " ");
            cx.err(span, classify_serde(&message), message)
        })?;
        let mut topology = resolve(&cx, file)?;
        topology.epochs = epochs(&cx, &topology)?;
        Ok(topology)
    }

    /// docs/design.md's default topology (the text of [`DEFAULT_TOML`]); for this crate's tests.
    #[cfg(test)]
    pub(crate) fn default_topology() -> Topology {
        #[allow(clippy::expect_used)] // a constant checked by the tests
        Topology::parse(DEFAULT_TOML, Path::new("<default>"))
            .expect("the built-in default topology is valid")
    }

    /// The default topology for another host architecture (every machine follows the host); for
    /// this crate's tests.
    #[cfg(test)]
    pub(crate) fn default_for_arch(arch: Arch) -> Topology {
        let text = DEFAULT_TOML.replacen("arch = \"x86_64\"", &format!("arch = \"{arch}\""), 1);
        #[allow(clippy::expect_used)] // a constant checked by the tests
        Topology::parse(&text, Path::new("<default>"))
            .expect("the built-in default topology is valid")
    }

    /// The whole topology as TOML, every default written out. `parse(to_toml())` gives it back.
    pub fn to_toml(&self) -> Result<String, SerializeError> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            libvirt_uri: &'a Option<String>,
            host: &'a HostConfig,
            networks: &'a [Network],
            machines: Vec<&'a Machine>,
            #[serde(skip_serializing_if = "Option::is_none")]
            identity: Option<OutIdentity>,
        }
        #[derive(Serialize)]
        struct OutIdentity {
            epochs: BTreeMap<String, u32>,
        }
        let out = Out {
            libvirt_uri: &self.libvirt_uri,
            host: &self.host,
            networks: &self.networks,
            machines: self.machines.iter().filter(|m| m.is_vm()).collect(),
            identity: (!self.epochs.is_empty()).then(|| OutIdentity {
                epochs: self
                    .epochs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            }),
        };
        Ok(toml::to_string(&out)?)
    }

    /// The machine (or host) called `name`.
    pub fn machine(&self, name: &MachineName) -> Option<&Machine> {
        self.machines.iter().find(|m| &m.name == name)
    }

    /// The network called `name`.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// The virtual machines (every machine but the host), in file order.
    pub fn vms(&self) -> impl Iterator<Item = &Machine> {
        self.machines.iter().filter(|m| m.is_vm())
    }

    /// The order to start VMs in: universe, galaxy, star routers first (by role), then every other
    /// VM by `autostart` (lower first; machines without it last), ties by name. The host is not in it.
    pub fn start_order(&self) -> Vec<&Machine> {
        let mut v: Vec<&Machine> = self.vms().collect();
        v.sort_by_key(|m| {
            let rank = match m.router.as_ref().map(|r| r.role) {
                Some(RouterRole::Universe) => 0,
                Some(RouterRole::Galaxy) => 1,
                Some(RouterRole::Star) => 2,
                None => 3,
            };
            (rank, m.autostart.is_none(), m.autostart, m.name.clone())
        });
        v
    }
}

fn resolve(cx: &Ctx<'_>, file: FileTopology) -> Result<Topology, ConfigError> {
    let fh = file.host.unwrap_or(FileHost {
        name: None,
        arch: None,
        cpu_vendor: None,
        memory_mib: None,
        os: None,
        accel: None,
        iommu: IommuConfig::default(),
    });
    #[allow(clippy::expect_used)] // a constant
    let default_host = MachineName::parse("host.multiverse").expect("valid constant");
    let host_span = fh.name.as_ref().map(|n| n.span()).unwrap_or(0..0);
    let host = HostConfig {
        name: fh.name.map(Spanned::into_inner).unwrap_or(default_host),
        arch: fh.arch.unwrap_or(Arch::X86_64),
        cpu_vendor: fh.cpu_vendor.unwrap_or(CpuVendor::Intel),
        memory_mib: fh.memory_mib.unwrap_or(16384),
        os: fh.os.unwrap_or(Os::Alpine),
        accel: fh.accel.unwrap_or_default(),
        iommu: fh.iommu,
    };

    // Machine names first: everything else refers to them.
    let mut names: HashMap<MachineName, (MachineType, usize)> = HashMap::new();
    if let Some(why) = derived_paths_problem(&host.name, 0) {
        return Err(cx.err(host_span.clone(), Problem::BadName, why));
    }
    names.insert(host.name.clone(), (MachineType::Host, host_span.start));
    for m in &file.machines {
        let kind = *m.kind.get_ref();
        let disks = m.disks.as_ref().map_or(1, |d| d.get_ref().len());
        if let Some(why) = derived_paths_problem(m.name.get_ref(), disks) {
            return Err(cx.err(m.name.span(), Problem::BadName, why));
        }
        if kind == MachineType::Host {
            return Err(cx.err(
                m.kind.span(),
                Problem::UnknownValue,
                format!("machine `{}` has type host: the host is described in [host], not in [[machines]]", m.name.get_ref()),
            ));
        }
        if names
            .insert(m.name.get_ref().clone(), (kind, m.name.span().start))
            .is_some()
        {
            return Err(cx.err(
                m.name.span(),
                Problem::Duplicate,
                format!("duplicate machine name `{}`", m.name.get_ref()),
            ));
        }
    }

    // Networks.
    let mut networks = Vec::new();
    let mut net_names = BTreeSet::new();
    let mut bridges = BTreeSet::new();
    let mut serves: BTreeMap<MachineName, Vec<String>> = BTreeMap::new();
    for n in &file.networks {
        let name = n.name.get_ref();
        if !valid_ident(name, 32) {
            return Err(cx.err(n.name.span(), Problem::Syntax, format!("network name `{name}` must be 1-32 of a-z, 0-9, '-', '_', starting with a letter")));
        }
        if !net_names.insert(name.clone()) {
            return Err(cx.err(
                n.name.span(),
                Problem::Duplicate,
                format!("duplicate network name `{name}`"),
            ));
        }
        let bridge = n.bridge.get_ref();
        if !valid_ident(bridge, 15) {
            return Err(cx.err(n.bridge.span(), Problem::Syntax, format!("bridge name `{bridge}` must be 1-15 of a-z, 0-9, '-', '_', starting with a letter")));
        }
        if !bridges.insert(bridge.clone()) {
            return Err(cx.err(
                n.bridge.span(),
                Problem::Duplicate,
                format!("bridge `{bridge}` is used by two networks"),
            ));
        }
        if let Some(served_by) = &n.served_by {
            let by = served_by.get_ref();
            match names.get(by) {
                Some((MachineType::Router, _)) => {}
                Some((kind, _)) => {
                    return Err(cx.err(served_by.span(), Problem::UnservedNetwork, format!("network `{name}` is served by `{by}`, which is a {kind}, not a router: no router serves it")));
                }
                None => {
                    return Err(cx.err(served_by.span(), Problem::UnservedNetwork, format!("network `{name}` is served by `{by}`, which is not a machine of this file: no router serves it")));
                }
            }
        }
        let by = n.served_by.as_ref().map(|b| b.get_ref().clone());
        let gateway = match &n.gateway {
            Some(g) => {
                if !n.subnet.contains_host(*g.get_ref()) {
                    return Err(cx.err(
                        g.span(),
                        Problem::Inconsistent,
                        format!(
                            "gateway {} is not a host address of {}",
                            g.get_ref(),
                            n.subnet
                        ),
                    ));
                }
                *g.get_ref()
            }
            None => n.subnet.host(1).ok_or_else(|| {
                cx.err(
                    n.name.span(),
                    Problem::Inconsistent,
                    format!("subnet {} has no host address", n.subnet),
                )
            })?,
        };
        if let Some(by) = &by {
            serves.entry(by.clone()).or_default().push(name.clone());
        }
        networks.push(Network {
            name: name.clone(),
            bridge: bridge.clone(),
            subnet: n.subnet,
            gateway,
            served_by: by,
        });
    }

    // Machines.
    let mut machines = vec![Machine {
        name: host.name.clone(),
        kind: MachineType::Host,
        arch: host.arch,
        os: host.os,
        memory_mib: host.memory_mib,
        vcpus: 0,
        autostart: None,
        gpu: false,
        pci: Vec::new(),
        usb: Vec::new(),
        router: None,
        networks: Vec::new(),
        disks: Vec::new(),
        firmware: None,
        onion: Vec::new(),
        disk_encryption: None,
    }];
    let mut pci_owner: HashMap<PciAddress, MachineName> = HashMap::new();
    let mut addresses: HashMap<(String, Ipv4Addr), MachineName> = HashMap::new();
    let mut onion_spans = Vec::new();
    for m in file.machines {
        let name = m.name.get_ref().clone();
        let kind = *m.kind.get_ref();
        let (def_mem, def_cpu, def_os) = type_defaults(kind);
        let memory_mib = m
            .memory_mib
            .as_ref()
            .map(|s| *s.get_ref())
            .unwrap_or(def_mem);
        if memory_mib < 64 {
            let span = m
                .memory_mib
                .as_ref()
                .map(|s| s.span())
                .unwrap_or(m.name.span());
            return Err(cx.err(
                span,
                Problem::Inconsistent,
                format!("machine `{name}`: memory_mib {memory_mib} is below 64"),
            ));
        }
        let vcpus = m.vcpus.as_ref().map(|s| *s.get_ref()).unwrap_or(def_cpu);
        if vcpus == 0 || vcpus > 512 {
            let span = m.vcpus.as_ref().map(|s| s.span()).unwrap_or(m.name.span());
            return Err(cx.err(
                span,
                Problem::Inconsistent,
                format!("machine `{name}`: vcpus must be 1-512"),
            ));
        }
        let os = m.os.unwrap_or(def_os);
        let arch = m.arch.unwrap_or(host.arch);
        if let Some(f) = &m.firmware {
            if *f.get_ref() == Firmware::Bios && arch == Arch::Aarch64 {
                return Err(cx.err(
                    f.span(),
                    Problem::Inconsistent,
                    format!(
                        "machine `{name}`: firmware \"bios\" does not exist on aarch64 (UEFI only)"
                    ),
                ));
            }
        }

        for p in &m.pci {
            if let Some(prev) = pci_owner.insert(*p.get_ref(), name.clone()) {
                return Err(cx.err(p.span(), Problem::PciClaimedTwice, format!("PCI device {} is claimed by `{prev}` and by `{name}`; a device can be passed through to one machine only", p.get_ref())));
            }
        }

        let mut router = None;
        match (&m.router, kind) {
            (Some(r), MachineType::Router) => {
                let mut opts = r.get_ref().clone();
                let served = serves.get(&name).cloned().unwrap_or_default();
                if !opts.serves.is_empty() {
                    let mut a = opts.serves.clone();
                    let mut b = served.clone();
                    a.sort();
                    b.sort();
                    if a != b {
                        return Err(cx.err(r.span(), Problem::Inconsistent, format!("router `{name}` lists serves = {:?} but the networks served by it are {:?}", opts.serves, served)));
                    }
                }
                opts.serves = served;
                if let Some(up) = &opts.upstream {
                    if !net_names.contains(up) {
                        return Err(cx.err(r.span(), Problem::UnknownNetwork, format!("router `{name}` has upstream `{up}`, which is not a network of this file")));
                    }
                    if opts.serves.contains(up) {
                        return Err(cx.err(
                            r.span(),
                            Problem::Inconsistent,
                            format!("router `{name}` cannot both serve and use `{up}` as upstream"),
                        ));
                    }
                    if !m.networks.iter().any(|a| a.network.get_ref() == up) {
                        return Err(cx.err(r.span(), Problem::Inconsistent, format!("router `{name}` has upstream `{up}` but no NIC on it (add {{ network = \"{up}\" }} to its networks)")));
                    }
                }
                if opts.vpn.is_some() && opts.role != RouterRole::Galaxy {
                    return Err(cx.err(r.span(), Problem::Inconsistent, format!("router `{name}`: a VPN is run by the galaxy router, not by a {:?} router", opts.role).to_lowercase()));
                }
                router = Some(opts);
            }
            (None, MachineType::Router) => {
                return Err(cx.err(m.kind.span(), Problem::Inconsistent, format!("router `{name}` has no role: add router = {{ role = \"universe\" | \"galaxy\" | \"star\" }}")));
            }
            (Some(r), _) => {
                return Err(cx.err(
                    r.span(),
                    Problem::Inconsistent,
                    format!("machine `{name}` is a {kind}; only routers take router options"),
                ));
            }
            (None, _) => {}
        }

        let mut atts = Vec::new();
        for a in &m.networks {
            let net_name = a.network.get_ref();
            let Some(net) = networks.iter().find(|n| &n.name == net_name) else {
                return Err(cx.err(a.network.span(), Problem::UnknownNetwork, format!("machine `{name}` is attached to `{net_name}`, which is not a network of this file")));
            };
            if atts
                .iter()
                .any(|x: &NetworkAttachment| &x.network == net_name)
            {
                return Err(cx.err(
                    a.network.span(),
                    Problem::Duplicate,
                    format!("machine `{name}` is attached to `{net_name}` twice"),
                ));
            }
            let mut address = a.address.as_ref().map(|s| *s.get_ref());
            let serving = net.served_by.as_ref() == Some(&name);
            if let Some(addr) = address {
                let span = a
                    .address
                    .as_ref()
                    .map(|s| s.span())
                    .unwrap_or(a.network.span());
                if !net.subnet.contains_host(addr) {
                    return Err(cx.err(
                        span,
                        Problem::Inconsistent,
                        format!(
                            "address {addr} of `{name}` is not a host address of {net_name} ({})",
                            net.subnet
                        ),
                    ));
                }
                if serving && addr != net.gateway {
                    return Err(cx.err(span, Problem::Inconsistent, format!("`{name}` serves {net_name}, so its address there must be the gateway {}", net.gateway)));
                }
                if !serving && addr == net.gateway {
                    return Err(cx.err(
                        span,
                        Problem::Duplicate,
                        format!("address {addr} of `{name}` is the gateway of {net_name}"),
                    ));
                }
            } else if serving {
                address = Some(net.gateway);
            }
            if let Some(addr) = address {
                if let Some(prev) = addresses.insert((net_name.clone(), addr), name.clone()) {
                    return Err(cx.err(
                        a.network.span(),
                        Problem::Duplicate,
                        format!("address {addr} on {net_name} is used by `{prev}` and `{name}`"),
                    ));
                }
            }
            atts.push(NetworkAttachment {
                network: net_name.clone(),
                address,
                mac: a
                    .mac
                    .unwrap_or_else(|| addr::derived_mac(&format!("{name}/{net_name}"))),
            });
        }
        if let Some(opts) = &router {
            for s in &opts.serves {
                if !atts.iter().any(|a| &a.network == s) {
                    return Err(cx.err(m.name.span(), Problem::Inconsistent, format!("router `{name}` serves `{s}` but has no NIC on it (add {{ network = \"{s}\" }} to its networks)")));
                }
            }
        }

        let disks = match m.disks {
            Some(d) => {
                if d.get_ref().iter().any(|x| x.size_gib == 0) {
                    return Err(cx.err(
                        d.span(),
                        Problem::Inconsistent,
                        format!("machine `{name}`: a disk of size 0"),
                    ));
                }
                if let Some(bad) = d
                    .get_ref()
                    .iter()
                    .filter_map(|x| x.base.as_deref())
                    .find(|b| !valid_image_name(b))
                {
                    return Err(cx.err(d.span(), Problem::Syntax, format!("machine `{name}`: base image name `{bad}` must be letters, digits, '.', '_' and '-'")));
                }
                d.into_inner()
            }
            None => vec![Disk {
                base: Some(os.as_str().to_string()),
                size_gib: match kind {
                    MachineType::Router => 2,
                    MachineType::Service => 8,
                    _ => 16,
                },
            }],
        };

        let onion = onion_ports(cx, &name, kind, m.onion.as_ref())?;
        if let Some(span) = m.onion.as_ref().map(|o| o.span()) {
            onion_spans.push((machines.len(), span));
        }

        machines.push(Machine {
            name,
            kind,
            arch: m.arch.unwrap_or(host.arch),
            os,
            memory_mib,
            vcpus,
            autostart: m.autostart,
            gpu: m.gpu,
            pci: m.pci.into_iter().map(Spanned::into_inner).collect(),
            usb: m.usb,
            router,
            networks: atts,
            disks,
            firmware: m.firmware.map(Spanned::into_inner),
            onion,
            disk_encryption: m.disk_encryption,
        });
    }
    for (i, span) in onion_spans {
        onion_reachable(cx, &machines, &networks, &machines[i], span)?;
    }

    Ok(Topology {
        host,
        networks,
        machines,
        libvirt_uri: file.libvirt_uri,
        epochs: mv_core::epochs::Epochs::new(),
    })
}

/// The `onion` ports of machine `name`: a service machine's, each 1-65535 and listed once.
fn onion_ports(
    cx: &Ctx<'_>,
    name: &MachineName,
    kind: MachineType,
    onion: Option<&Spanned<Vec<Spanned<i64>>>>,
) -> Result<Vec<u16>, ConfigError> {
    let Some(list) = onion else {
        return Ok(Vec::new());
    };
    if kind != MachineType::Service && !list.get_ref().is_empty() {
        return Err(cx.err(
            list.span(),
            Problem::Inconsistent,
            format!(
                "machine `{name}` is of type {kind}; only service machines publish onion services"
            ),
        ));
    }
    let mut ports = Vec::new();
    for p in list.get_ref() {
        let port = u16::try_from(*p.get_ref())
            .ok()
            .filter(|&v| v != 0)
            .ok_or_else(|| {
                cx.err(
                    p.span(),
                    Problem::Inconsistent,
                    format!(
                        "machine `{name}`: onion port {} is not a port (1-65535)",
                        p.get_ref()
                    ),
                )
            })?;
        if ports.contains(&port) {
            return Err(cx.err(
                p.span(),
                Problem::Duplicate,
                format!("machine `{name}`: onion port {port} is listed twice"),
            ));
        }
        ports.push(port);
    }
    Ok(ports)
}

/// A machine publishing onion ports needs a static address on a network the star router serves:
/// that is where the star's tor forwards the onion service's connections.
fn onion_reachable(
    cx: &Ctx<'_>,
    machines: &[Machine],
    networks: &[Network],
    m: &Machine,
    span: std::ops::Range<usize>,
) -> Result<(), ConfigError> {
    if m.onion.is_empty() || onion_target(machines, networks, m).is_some() {
        return Ok(());
    }
    Err(cx.err(
        span,
        Problem::Inconsistent,
        format!(
            "machine `{}` publishes onion ports but has no static address on a network served by \
             the star router (give it {{ network = \"...\", address = \"...\" }} there)",
            m.name
        ),
    ))
}

/// Where the star router forwards `m`'s onion service: (the star router, `m`'s static address on
/// a network that router serves). `None` when `m` has no such address.
fn onion_target<'a>(
    machines: &'a [Machine],
    networks: &[Network],
    m: &Machine,
) -> Option<(&'a Machine, Ipv4Addr)> {
    m.networks.iter().find_map(|a| {
        let addr = a.address?;
        let by = networks
            .iter()
            .find(|n| n.name == a.network)?
            .served_by
            .as_ref()?;
        let router = machines.iter().find(|r| &r.name == by)?;
        let star = router.router.as_ref()?.role == RouterRole::Star;
        star.then_some((router, addr))
    })
}

/// One onion service published on a star router: the service machine, the address tor forwards
/// to, and its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionService {
    /// The service machine (its name is the identity name of the onion key).
    pub machine: MachineName,
    /// Its static address on the network the star router serves.
    pub address: Ipv4Addr,
    /// The published ports (tor's `HiddenServicePort P address:P`).
    pub ports: Vec<u16>,
}

impl Topology {
    /// The onion services the star router `router` publishes, in file order (empty for any other
    /// machine).
    pub fn onion_services(&self, router: &MachineName) -> Vec<OnionService> {
        self.machines
            .iter()
            .filter(|m| !m.onion.is_empty())
            .filter_map(|m| {
                let (star, address) = onion_target(&self.machines, &self.networks, m)?;
                (&star.name == router).then(|| OnionService {
                    machine: m.name.clone(),
                    address,
                    ports: m.onion.clone(),
                })
            })
            .collect()
    }
}

/// `[identity.epochs]`: values checked by `mv_core::epochs`, machine names against the machines.
fn epochs(cx: &Ctx<'_>, t: &Topology) -> Result<mv_core::epochs::Epochs, ConfigError> {
    use mv_core::epochs::EpochsProblem;
    let entries = mv_core::epochs::parse(cx.text).map_err(|e| {
        let problem = match e.problem {
            EpochsProblem::BadName => Problem::BadName,
            EpochsProblem::BadEpoch => Problem::Inconsistent,
            _ => Problem::Syntax,
        };
        cx.err(e.offset..e.offset, problem, e.message)
    })?;
    let mut table = mv_core::epochs::Epochs::new();
    for e in entries {
        if let mv_core::IdentityName::Machine(m) = &e.name {
            if t.machine(m).is_none() {
                return Err(cx.err(
                    e.span,
                    Problem::Inconsistent,
                    format!("[identity.epochs] `{m}` is not a machine of this file"),
                ));
            }
        }
        table.set(&e.name, e.epoch);
    }
    Ok(table)
}

// Invalid contents are the person's input; an unreadable file is a failure.
impl mv_core::Classify for ConfigError {
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            ConfigError::Invalid { .. } => mv_core::ErrorClass::Usage,
            ConfigError::Read { .. } => mv_core::ErrorClass::Failure,
        }
    }
}

// A validated topology that cannot be written back: a bug or a failure, not input.
impl mv_core::Classify for SerializeError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

/// The entry point of the fuzz target (crates/mv-machines/fuzz) and of its proptest twin: parse
/// arbitrary bytes; when accepted, the topology must round-trip through [`Topology::to_toml`] and
/// render in memory. Panics only on a broken invariant. Compiled only for tests and fuzzing
/// (feature `test-hooks`, which `fuzz/` turns on).
#[cfg(any(test, feature = "test-hooks"))]
#[doc(hidden)]
pub fn fuzz_entry(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = Topology::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    #[allow(clippy::expect_used)] // the invariants under test
    {
        let out = t.to_toml().expect("an accepted topology serialises");
        let back = Topology::parse(&out, Path::new("fuzz.toml")).expect("to_toml output parses");
        assert_eq!(back, t, "to_toml round trip");
        crate::render::plan(&mv_core::layout::Tree::new("/nonexistent/fuzz"), &t)
            .expect("an accepted topology renders with the built-in templates");
    }
}

#[cfg(test)]
mod tests;
