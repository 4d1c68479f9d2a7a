//! Rendering a [`Topology`] into the tree: domain, network and pool XML, per-machine
//! `machine.toml`, and the `storage/` symlinks of the libvirt pool.
//!
//! Two phases, so that bad input never leaves a half-written tree:
//! 1. [`plan`] renders every file in memory and checks every spot a symlink will take
//!    (a real file in `storage/` is never replaced). Any template error stops here.
//! 2. [`render_tree`] writes the plan with atomic writes ([`mv_core::fsutil`]), comparing with
//!    what is on disk, and returns a [`RenderReport`] of created / changed / unchanged paths.
//!    With `dry_run` it only compares.
//!
//! Contexts given to templates are built here (see [`domain_context`]); their field names are part
//! of the template contract documented in docs/machines.md.

use crate::config::{Accel, Arch, CpuVendor, Machine, MachineType, Network, Topology};
use crate::templates::{Engine, TemplateError, BUILTIN};
use mv_core::fsutil::{self, FsError};
use mv_core::layout::{self, Tree, POOL_NAME};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Why rendering failed. Nothing has been written when [`RenderError::Template`],
/// [`RenderError::Serialize`] or [`RenderError::StorageOccupied`] is returned.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A template failed for the file `target`.
    #[error("cannot render {}", target.display())]
    Template {
        /// The file being rendered.
        target: PathBuf,
        /// The template error (names template, line and variable).
        #[source]
        source: TemplateError,
    },
    /// A machine could not be written as TOML.
    #[error("cannot write machine `{machine}` as TOML")]
    Serialize {
        /// The machine.
        machine: String,
        /// Why.
        #[source]
        source: toml::ser::Error,
    },
    /// A storage symlink's place holds a real file (maybe a disk of an old layout).
    #[error("{} exists and is not a symlink; refusing to replace it", path.display())]
    StorageOccupied {
        /// The path.
        path: PathBuf,
    },
    /// Writing a file failed.
    #[error(transparent)]
    Write(#[from] FsError),
}

/// What rendering did (or, in a dry run, would do) to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// The path did not exist.
    Created,
    /// The path existed with other contents.
    Changed,
    /// The path already held exactly this.
    Unchanged,
}

/// One output of rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A text file.
    File {
        /// Where.
        path: PathBuf,
        /// Its full contents.
        contents: String,
    },
    /// A symlink (storage/ entries).
    Symlink {
        /// Where.
        path: PathBuf,
        /// What it points to (relative).
        target: PathBuf,
    },
}

impl Output {
    /// The path written.
    pub fn path(&self) -> &Path {
        match self {
            Output::File { path, .. } | Output::Symlink { path, .. } => path,
        }
    }
}

/// What [`render_tree`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RenderReport {
    /// Every path with what happened to it, in plan order.
    pub entries: Vec<(PathBuf, Change)>,
    /// Folders under machines/ and symlinks in storage/ with no machine in the topology (left
    /// alone: they may hold or point to disks).
    pub stale: Vec<PathBuf>,
    /// True when nothing was written because of `dry_run`.
    pub dry_run: bool,
}

impl RenderReport {
    /// Paths created.
    pub fn created(&self) -> impl Iterator<Item = &Path> {
        self.with(Change::Created)
    }
    /// Paths changed.
    pub fn changed(&self) -> impl Iterator<Item = &Path> {
        self.with(Change::Changed)
    }
    /// Paths already up to date.
    pub fn unchanged(&self) -> impl Iterator<Item = &Path> {
        self.with(Change::Unchanged)
    }
    /// True when every path was already up to date.
    pub fn nothing_changed(&self) -> bool {
        self.entries.iter().all(|(_, c)| *c == Change::Unchanged)
    }
    fn with(&self, c: Change) -> impl Iterator<Item = &Path> {
        self.entries
            .iter()
            .filter(move |(_, x)| *x == c)
            .map(|(p, _)| p.as_path())
    }
}

/// A stable UUID (version 8, RFC 9562 "custom") from a name, so re-rendering never changes a
/// libvirt object's identity.
pub fn stable_uuid(kind: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("multiverse-uuid-v1:{kind}:{name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

#[derive(Debug, Serialize)]
struct PciCtx {
    domain: String,
    bus: String,
    slot: String,
    function: String,
    address: String,
}

#[derive(Debug, Serialize)]
struct UsbCtx {
    vendor: String,
    product: String,
}

#[derive(Debug, Serialize)]
struct NicCtx {
    network: String,
    bridge: String,
    mac: String,
    address: Option<String>,
}

#[derive(Debug, Serialize)]
struct DiskCtx {
    volume: String,
    dev: String,
    base: Option<String>,
    size_gib: u32,
}

#[derive(Debug, Serialize)]
struct FirmwareCtx {
    uefi: bool,
    loader: String,
    vars_template: String,
    nvram: String,
}

#[derive(Debug, Serialize)]
struct MachineCtx {
    name: String,
    short: String,
    kind: &'static str,
    arch: &'static str,
    os: &'static str,
    role: Option<String>,
    vpn: Option<String>,
    memory_mib: u64,
    vcpus: u32,
    autostart: Option<u32>,
    gpu: bool,
    uuid: String,
    domain_type: &'static str,
    graphics: &'static str,
    viommu: Option<&'static str>,
    firmware: FirmwareCtx,
    agent_socket: String,
    pci: Vec<PciCtx>,
    usb: Vec<UsbCtx>,
    nics: Vec<NicCtx>,
    disks: Vec<DiskCtx>,
    /// The UUID of the libvirt secret keying its disks (LUKS), if they are encrypted.
    luks_secret: Option<String>,
}

#[derive(Debug, Serialize)]
struct HostCtx {
    name: String,
    arch: &'static str,
    cpu_vendor: &'static str,
    iommu: bool,
}

/// The context of `domain*.xml.j2`: `machine`, `host`, `pool`, `agent_channel`.
#[derive(Debug, Serialize)]
pub(crate) struct DomainContext {
    machine: MachineCtx,
    host: HostCtx,
    pool: &'static str,
    agent_channel: &'static str,
}

fn disk_dev(n: usize) -> String {
    // vda..vdz, then vdaa.. (more than 26 disks is not a real case, but stay well-defined).
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    if n < 26 {
        format!("vd{}", letters[n] as char)
    } else {
        format!(
            "vd{}{}",
            letters[(n / 26 - 1) % 26] as char,
            letters[n % 26] as char
        )
    }
}

/// Builds the template context of machine `m` (a VM) in `t`.
pub(crate) fn domain_context(t: &Topology, m: &Machine) -> DomainContext {
    // KVM only runs guests of the host's own architecture, and only when `[host] accel` asks for
    // it; everything else is TCG (`<domain type="qemu">`, QEMU's `max` CPU).
    let kvm = m.arch == t.host.arch && t.host.accel == Accel::Kvm;
    let uefi = m.uefi();
    let firmware = match m.arch {
        Arch::X86_64 => FirmwareCtx {
            uefi,
            loader: "/usr/share/OVMF/OVMF_CODE.fd".into(),
            vars_template: "/usr/share/OVMF/OVMF_VARS.fd".into(),
            nvram: format!("/var/lib/libvirt/qemu/nvram/{}_VARS.fd", m.name),
        },
        Arch::Aarch64 => FirmwareCtx {
            uefi,
            loader: "/usr/share/AAVMF/AAVMF_CODE.fd".into(),
            vars_template: "/usr/share/AAVMF/AAVMF_VARS.fd".into(),
            nvram: format!("/var/lib/libvirt/qemu/nvram/{}_VARS.fd", m.name),
        },
    };
    // A vIOMMU for machines holding passed-through devices that the guest should isolate: the
    // controller. QEMU's intel-iommu works on AMD hosts too; aarch64 uses the SMMUv3.
    let viommu = (m.kind == MachineType::Controller).then_some(match m.arch {
        Arch::X86_64 => "intel",
        Arch::Aarch64 => "smmuv3",
    });
    let machine = MachineCtx {
        luks_secret: luks_secret_uuid(m),
        name: m.name.to_string(),
        short: m.name.short().to_string(),
        kind: m.kind.as_str(),
        arch: m.arch.as_str(),
        os: m.os.as_str(),
        role: m
            .router
            .as_ref()
            .map(|r| format!("{:?}", r.role).to_lowercase()),
        vpn: m
            .router
            .as_ref()
            .and_then(|r| r.vpn)
            .map(|v| format!("{v:?}").to_lowercase()),
        memory_mib: m.memory_mib,
        vcpus: m.vcpus,
        autostart: m.autostart,
        gpu: m.gpu,
        uuid: stable_uuid("domain", m.name.as_str()),
        domain_type: if kvm { "kvm" } else { "qemu" },
        // VNC with no listener (local clients through libvirt only): Debian's QEMU has no spice.
        graphics: "vnc",
        viommu,
        firmware,
        agent_socket: layout::agent_socket(&m.name).display().to_string(),
        pci: m
            .pci
            .iter()
            .map(|p| PciCtx {
                domain: format!("0x{:04x}", p.domain),
                bus: format!("0x{:02x}", p.bus),
                slot: format!("0x{:02x}", p.slot),
                function: format!("0x{:x}", p.function),
                address: p.to_string(),
            })
            .collect(),
        usb: m
            .usb
            .iter()
            .map(|u| UsbCtx {
                vendor: format!("0x{:04x}", u.vendor),
                product: format!("0x{:04x}", u.product),
            })
            .collect(),
        nics: m
            .networks
            .iter()
            .map(|a| NicCtx {
                network: a.network.clone(),
                bridge: t
                    .network(&a.network)
                    .map(|n| n.bridge.clone())
                    .unwrap_or_default(),
                mac: a.mac.to_string(),
                address: a.address.map(|x| x.to_string()),
            })
            .collect(),
        disks: m
            .disks
            .iter()
            .enumerate()
            .map(|(i, d)| DiskCtx {
                volume: Tree::volume_name(&m.name, i),
                dev: disk_dev(i),
                base: d.base.clone(),
                size_gib: d.size_gib,
            })
            .collect(),
    };
    DomainContext {
        machine,
        host: HostCtx {
            name: t.host.name.to_string(),
            arch: t.host.arch.as_str(),
            cpu_vendor: match t.host.cpu_vendor {
                CpuVendor::Intel => "intel",
                CpuVendor::Amd => "amd",
            },
            iommu: t.host.iommu.enabled,
        },
        pool: POOL_NAME,
        agent_channel: layout::AGENT_CHANNEL,
    }
}

/// The UUID of the libvirt secret that keys machine `m`'s disks, when they are encrypted (and it
/// has any): derived from its name, so every render and every host agree.
pub fn luks_secret_uuid(m: &Machine) -> Option<String> {
    (m.is_vm() && m.disk_encrypted() && !m.disks.is_empty())
        .then(|| stable_uuid("luks-secret", m.name.as_str()))
}

/// The template a machine's domain is rendered from: `domain-<type>-<arch>.xml.j2` if one exists
/// (only as an override, for a person's own variant), else `domain-<type>.xml.j2`.
pub(crate) fn domain_template(engine: &Engine, m: &Machine) -> String {
    let specific = format!("domain-{}-{}.xml.j2", m.kind, m.arch);
    if engine.has(&specific) {
        specific
    } else {
        format!("domain-{}.xml.j2", m.kind)
    }
}

#[derive(Serialize)]
struct NetworkCtx<'a> {
    name: &'a str,
    bridge: &'a str,
    subnet: String,
    gateway: String,
    served_by: Option<String>,
    uuid: String,
}

fn network_context(n: &Network) -> NetworkCtx<'_> {
    NetworkCtx {
        name: &n.name,
        bridge: &n.bridge,
        subnet: n.subnet.to_string(),
        gateway: n.gateway.to_string(),
        served_by: n.served_by.as_ref().map(|b| b.to_string()),
        uuid: stable_uuid("network", &n.name),
    }
}

/// The resolved `machine.toml` of one machine.
pub(crate) fn machine_toml(m: &Machine) -> Result<String, RenderError> {
    let body = toml::to_string(m).map_err(|source| RenderError::Serialize {
        machine: m.name.to_string(),
        source,
    })?;
    Ok(format!(
        "# Resolved definition of {} rendered by `multiverse render` from multiverse.toml.\n\
         # Every default is filled in. Do not edit: edit multiverse.toml instead.\n\n{body}",
        m.name
    ))
}

/// Renders everything in memory, with the built-in templates and `tree`'s overrides.
pub fn plan(tree: &Tree, topology: &Topology) -> Result<Vec<Output>, RenderError> {
    let engine = Engine::new(BUILTIN, Some(&tree.templates_dir()));
    plan_with(&engine, tree, topology)
}

/// Like [`plan`] with a given engine.
pub(crate) fn plan_with(
    engine: &Engine,
    tree: &Tree,
    topology: &Topology,
) -> Result<Vec<Output>, RenderError> {
    let mut out = Vec::new();
    for m in &topology.machines {
        out.push(Output::File {
            path: tree.machine_toml(&m.name),
            contents: machine_toml(m)?,
        });
        if !m.is_vm() {
            continue;
        }
        let target = tree.domain_xml(&m.name);
        let ctx = domain_context(topology, m);
        out.push(render_file(
            engine,
            &domain_template(engine, m),
            &ctx,
            target,
        )?);
        if let Some(uuid) = luks_secret_uuid(m) {
            let ctx = serde_json::json!({ "secret": { "uuid": uuid, "machine": m.name.as_str() } });
            out.push(render_file(
                engine,
                "luks-secret.xml.j2",
                &ctx,
                tree.luks_secret_xml(&m.name),
            )?);
        }
        for i in 0..m.disks.len() {
            out.push(Output::Symlink {
                path: tree.storage_link_n(&m.name, i),
                target: Tree::storage_link_target(&m.name, i),
            });
        }
    }
    for n in &topology.networks {
        let target = tree.network_xml(&n.name);
        let ctx = serde_json::json!({ "network": network_context(n) });
        out.push(render_file(engine, "network.xml.j2", &ctx, target)?);
    }
    let target = tree.pool_xml();
    let pool = serde_json::json!({ "pool": {
        "name": POOL_NAME,
        "uuid": stable_uuid("pool", POOL_NAME),
        "path": tree.storage_dir().display().to_string(),
    }});
    out.push(render_file(engine, "pool.xml.j2", &pool, target)?);
    Ok(out)
}

/// Renders `template` with `ctx` into the file output for `target`; a template error names the
/// file it was rendering.
fn render_file<C: Serialize>(
    engine: &Engine,
    template: &str,
    ctx: &C,
    target: PathBuf,
) -> Result<Output, RenderError> {
    match engine.render(template, ctx) {
        Ok(contents) => Ok(Output::File {
            path: target,
            contents,
        }),
        Err(source) => Err(RenderError::Template { target, source }),
    }
}

fn status(o: &Output) -> Result<Change, RenderError> {
    match o {
        Output::File { path, contents } => Ok(match std::fs::read(path) {
            Ok(b) if b == contents.as_bytes() => Change::Unchanged,
            Ok(_) => Change::Changed,
            Err(_) => Change::Created,
        }),
        Output::Symlink { path, target } => match std::fs::symlink_metadata(path) {
            Err(_) => Ok(Change::Created),
            Ok(md) if md.file_type().is_symlink() => Ok(
                if std::fs::read_link(path).ok().as_deref() == Some(target.as_path()) {
                    Change::Unchanged
                } else {
                    Change::Changed
                },
            ),
            Ok(_) => Err(RenderError::StorageOccupied { path: path.clone() }),
        },
    }
}

fn write_symlink(path: &Path, target: &Path) -> Result<(), FsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| FsError::new("cannot create folder", dir, e))?;
    // Atomic replace: make the link under a temporary name, then rename it over.
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .map_err(|e| FsError::new("cannot create symlink", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        FsError::new("cannot create symlink", path, e)
    })?;
    fsutil::sync_dir(dir).map_err(|e| FsError::new("cannot sync folder", dir, e))
}

/// Renders `topology` into `tree`; with `dry_run`, only reports what would change.
///
/// Everything is rendered and checked before the first write; a second run with the same input
/// reports every path [`Change::Unchanged`] and writes nothing.
pub fn render_tree(
    tree: &Tree,
    topology: &Topology,
    dry_run: bool,
) -> Result<RenderReport, RenderError> {
    let outputs = plan(tree, topology)?;
    let mut report = RenderReport {
        dry_run,
        ..RenderReport::default()
    };
    for o in &outputs {
        report.entries.push((o.path().to_path_buf(), status(o)?));
    }
    if let Ok(rd) = std::fs::read_dir(tree.machines_dir()) {
        let mut stale: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter(|e| {
                !topology
                    .machines
                    .iter()
                    .any(|m| e.file_name() == m.name.as_str())
            })
            .map(|e| e.path())
            .collect();
        stale.sort();
        report.stale = stale;
    }
    // Links in storage/ that no machine's disk accounts for (a removed machine's, say).
    if let Ok(rd) = std::fs::read_dir(tree.storage_dir()) {
        let wanted: std::collections::HashSet<&Path> = outputs.iter().map(Output::path).collect();
        let mut stale: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| t.is_symlink()).unwrap_or(false))
            .map(|e| e.path())
            .filter(|p| !wanted.contains(p.as_path()))
            .collect();
        stale.sort();
        report.stale.extend(stale);
    }
    if dry_run {
        return Ok(report);
    }
    let todo: Vec<&Output> = outputs
        .iter()
        .zip(&report.entries)
        .filter(|(_, (_, c))| *c != Change::Unchanged)
        .map(|(o, _)| o)
        .collect();
    if todo.len() <= SMALL_BATCH {
        for o in todo {
            match o {
                Output::File { path, contents } => {
                    fsutil::write_public(path, contents.as_bytes())?;
                }
                Output::Symlink { path, target } => write_symlink(path, target)?,
            }
        }
    } else {
        write_batch(tree.root(), &todo)?;
    }
    Ok(report)
}

/// Up to this many files are written one by one (fsync each); more go through [`write_batch`].
const SMALL_BATCH: usize = 16;

fn tmp_path(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".tmp{}", std::process::id()));
    dir.join(name)
}

fn sync_fs(dir: &Path) -> Result<(), FsError> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir).map_err(|e| FsError::new("cannot open", dir, e))?;
    nix::unistd::syncfs(f.as_raw_fd())
        .map_err(|e| FsError::new("cannot sync the file system of", dir, e.into()))
}

/// Writes many files with the same crash safety as [`fsutil::write_public`] but two file-system
/// syncs instead of two fsyncs per file (a first render of 1,000 machines writes ~3,000 paths):
/// every temporary file is written, one `syncfs` makes them durable, all are renamed into place,
/// and a second `syncfs` makes the renames durable. A crash leaves each path old or new, never
/// truncated; temporary files are removed on error.
fn write_batch(root: &Path, outputs: &[&Output]) -> Result<(), FsError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut staged: Vec<(PathBuf, &Path)> = Vec::with_capacity(outputs.len());
    let result = (|| {
        for o in outputs {
            let path = o.path();
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)
                .map_err(|e| FsError::new("cannot create folder", dir, e))?;
            let tmp = tmp_path(path);
            let _ = std::fs::remove_file(&tmp);
            match o {
                Output::File { contents, .. } => {
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(fsutil::PUBLIC_MODE)
                        .open(&tmp)
                        .map_err(|e| FsError::new("cannot write", &tmp, e))?;
                    staged.push((tmp.clone(), path));
                    f.set_permissions(std::fs::Permissions::from_mode(fsutil::PUBLIC_MODE))
                        .and_then(|()| f.write_all(contents.as_bytes()))
                        .map_err(|e| FsError::new("cannot write", &tmp, e))?;
                }
                Output::Symlink { target, .. } => {
                    std::os::unix::fs::symlink(target, &tmp)
                        .map_err(|e| FsError::new("cannot create symlink", &tmp, e))?;
                    staged.push((tmp.clone(), path));
                }
            }
        }
        sync_fs(root)?;
        while let Some((tmp, path)) = staged.pop() {
            if let Err(e) = std::fs::rename(&tmp, path) {
                staged.push((tmp, path));
                return Err(FsError::new("cannot write", path, e));
            }
        }
        sync_fs(root)
    })();
    if result.is_err() {
        for (tmp, _) in &staged {
            let _ = std::fs::remove_file(tmp);
        }
    }
    result
}

// A failing template override or an occupied storage spot is for the person to fix; writing
// is a failure.
impl mv_core::Classify for RenderError {
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            RenderError::Template { .. } | RenderError::StorageOccupied { .. } => {
                mv_core::ErrorClass::Usage
            }
            _ => mv_core::ErrorClass::Failure,
        }
    }
}

#[cfg(test)]
mod tests;
