//! `up`, `down` and `status`: the rendered tree made real through libvirt, and back.
//!
//! The caller (the CLI, which knows `mv-machines`) describes the wanted state as an [`UpSpec`]:
//! the rendered pool and network files, and every machine with its rendered `domain.xml` and disk
//! overlays, in start order. This module never reads `multiverse.toml`, so it is tested on its own.
//!
//! `up` (see [`up`]):
//! 1. reads every rendered file and checks, before any change: the XML names an object, no
//!    object of that name exists on the host with another UUID (a name collision), every disk to
//!    create has its base image;
//! 2. creates missing disks (qcow2 overlays), defines/updates the pool (and starts and refreshes
//!    it), the networks, the domains. A domain carries a marker in its `<metadata>` with the
//!    SHA-256 of the rendered file it came from, which is how `status` tells "changed since
//!    render" and how a second `up` knows there is nothing to do. Networks and pools are compared
//!    with [`crate::xml::is_subset`];
//! 3. if any step fails, undoes what this run did (undefines what it defined, redefines what it
//!    updated, deletes the disks it created);
//! 4. with `start`, starts the machines in order, each after its networks, waiting until libvirt
//!    reports it running. Application VMs get a fresh overlay before each start (throw-away).
//!
//! `down` stops machines in reverse order with an ACPI shutdown; only with `force` does it power
//! off a machine that is still running after the timeout.

use crate::conn::{Connection, DomainState, ObjectKind};
use crate::error::LibvirtError;
use crate::images::{self, ImageError, OverlaySpec};
use crate::xml::{self, XmlError, UP_NS};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One machine as `up` wants it.
#[derive(Debug, Clone)]
pub struct MachineSpec {
    /// FQDN: the libvirt domain name.
    pub name: String,
    /// The rendered `machines/<fqdn>/domain.xml`.
    pub domain_xml: PathBuf,
    /// Its disks.
    pub disks: Vec<OverlaySpec>,
    /// Application VM: a fresh overlay at every start.
    pub throwaway: bool,
    /// Host folders the running machine needs (the agent socket's), created before a start.
    pub runtime_dirs: Vec<PathBuf>,
    /// The machine's seed disk (`machines/<fqdn>/seed.img`), attached read-only as `vdz`: the
    /// provisioning the guest applies to itself at first boot (`mv_provision::ensure_seed`).
    pub seed: Option<PathBuf>,
    /// Where libvirt keeps the serial console (`machines/<fqdn>/console.log`).
    pub console_log: Option<PathBuf>,
    /// The host side of the machine's SSH channel (`org.multiverse.ssh.0`), if it has one.
    pub ssh_socket: Option<PathBuf>,
    /// The libvirt secret keying the machine's encrypted disks, if they are.
    pub luks_secret: Option<LuksSecret>,
    /// The name of the virtio channel its agent answers on (`org.multiverse.agent.0`). While
    /// libvirt reports it closed by the guest, the readiness probe is not sent (see
    /// the readiness wait of `up`).
    pub agent_channel: Option<String>,
}

/// The libvirt secret of an encrypted machine's disks: its rendered definition
/// (`machines/<fqdn>/luks-secret.xml`: ephemeral, private) and the passphrase `up` sets as its
/// value through the API (never a file, never argv). The disks' [`OverlaySpec::luks`] is the same
/// passphrase.
#[derive(Debug, Clone)]
pub struct LuksSecret {
    /// The rendered secret XML.
    pub xml: PathBuf,
    /// Its value ([`crate::images::disk_passphrase`] of the machine's key).
    pub passphrase: mv_core::secret::SecretBytes,
}

impl MachineSpec {
    /// The domain XML defined for this machine: the rendered file plus the run-time devices that
    /// live in the tree rather than in `multiverse.toml` (the seed disk, the console log). Both
    /// paths are fixed per machine; the marker hash is over the rendered file alone, so `status`
    /// compares a definition with `domain.xml` whatever was attached.
    fn with_runtime_devices(&self, rendered: &str) -> String {
        let mut xml = rendered.to_string();
        if let Some(log) = &self.console_log {
            let tag = "<serial type=\"pty\">";
            if let Some(at) = xml.find(tag) {
                let log = format!(
                    "\n      <log file=\"{}\" append=\"on\"/>",
                    mv_core::xml::escape(&log.display().to_string())
                );
                xml.insert_str(at + tag.len(), &log);
            }
        }
        if let Some(sock) = &self.ssh_socket {
            if let Some(at) = xml.rfind("</devices>") {
                let channel = format!(
                    "  <channel type=\"unix\">\n      <source mode=\"bind\" path=\"{}\"/>\n      <target type=\"virtio\" name=\"{SSH_CHANNEL}\"/>\n    </channel>\n  ",
                    mv_core::xml::escape(&sock.display().to_string())
                );
                xml.insert_str(at, &channel);
            }
        }
        if let Some(seed) = &self.seed {
            if let Some(at) = xml.rfind("</devices>") {
                let disk = format!(
                    "  <disk type=\"file\" device=\"disk\">\n      <driver name=\"qemu\" type=\"raw\"/>\n      <source file=\"{}\"/>\n      <target dev=\"vdz\" bus=\"virtio\"/>\n      <serial>MVSEED</serial>\n      <readonly/>\n    </disk>\n  ",
                    mv_core::xml::escape(&seed.display().to_string())
                );
                xml.insert_str(at, &disk);
            }
        }
        xml
    }
}

/// The virtio-serial port name of a machine's SSH channel.
pub(crate) const SSH_CHANNEL: &str = "org.multiverse.ssh.0";

/// Whether a live definition has the seed disk (`vdz`), in libvirt's quoting or ours.
fn has_seed_disk(live: &str) -> bool {
    live.contains("dev='vdz'") || live.contains("dev=\"vdz\"")
}

/// The wanted state.
#[derive(Debug, Clone, Default)]
pub struct UpSpec {
    /// The rendered pool file (`libvirt/pool.xml`) and the folder it points at (`storage/`).
    pub pool: Option<(PathBuf, PathBuf)>,
    /// The rendered network files.
    pub networks: Vec<PathBuf>,
    /// Machines in start order.
    pub machines: Vec<MachineSpec>,
}

/// Options of `up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Start the machines (in order) after defining.
    pub start: bool,
    /// Report only.
    pub dry_run: bool,
    /// How long to wait for each machine to run.
    pub timeout: Duration,
}

/// What happened to one thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Done {
    /// Created (disk) or defined (object).
    Created,
    /// Redefined from a changed rendered file.
    Updated,
    /// Already as rendered.
    Unchanged,
    /// Started.
    Started,
    /// Was already running.
    AlreadyRunning,
    /// Disk replaced by a fresh overlay.
    Refreshed,
    /// Stopped by ACPI shutdown.
    ShutDown,
    /// Powered off after the shutdown timeout.
    Destroyed,
    /// Was not running.
    AlreadyStopped,
}

impl Done {
    /// True for everything but "nothing to do".
    pub fn is_change(self) -> bool {
        !matches!(
            self,
            Done::Unchanged | Done::AlreadyRunning | Done::AlreadyStopped
        )
    }

    /// The words for people: "created", "already running", "powered off"...
    pub fn as_str(self) -> &'static str {
        match self {
            Done::Created => "created",
            Done::Updated => "updated",
            Done::Unchanged => "unchanged",
            Done::Started => "started",
            Done::AlreadyRunning => "already running",
            Done::Refreshed => "refreshed",
            Done::ShutDown => "shut down",
            Done::Destroyed => "powered off",
            Done::AlreadyStopped => "already stopped",
        }
    }
}

impl std::fmt::Display for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One line of a report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Item {
    /// `disk`, `pool`, `network`, `domain`.
    pub what: &'static str,
    /// Its name (a path for disks).
    pub name: String,
    /// What happened (or would, in a dry run).
    pub done: Done,
}

/// The report of `up` or `down`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// In the order done.
    pub items: Vec<Item>,
}

impl Report {
    /// True when nothing changed.
    pub fn nothing_changed(&self) -> bool {
        !self.items.iter().any(|i| i.done.is_change())
    }
    fn push(&mut self, what: &'static str, name: impl Into<String>, done: Done) {
        self.items.push(Item {
            what,
            name: name.into(),
            done,
        });
    }
}

/// Why `up` or `down` failed.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// A rendered file cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A rendered file is not a libvirt definition.
    #[error("{path} is not a libvirt definition")]
    Xml {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: XmlError,
    },
    /// A rendered file defines something else than expected.
    #[error("{path} defines {found}, expected {expected}")]
    Unexpected {
        /// The file.
        path: PathBuf,
        /// What it defines.
        found: String,
        /// What it should define.
        expected: String,
    },
    /// The host has another object of that name.
    #[error("{path}: {kind} {name} already exists on the host with UUID {host_uuid}, not {ours} (another machine of that name? undefine it or rename ours)")]
    Collision {
        /// The rendered file.
        path: PathBuf,
        /// Kind.
        kind: ObjectKind,
        /// Name.
        name: String,
        /// The host's UUID.
        host_uuid: String,
        /// The rendered UUID.
        ours: String,
    },
    /// A disk cannot be made (missing base image, qemu-img failure).
    #[error("disk of {machine}")]
    Disk {
        /// The machine.
        machine: String,
        /// Why.
        #[source]
        source: ImageError,
    },
    /// Libvirt refused something. `undone` says how many earlier steps of this run were undone.
    #[error("{path}: {}", undo_note(*undone, undo_failures))]
    Define {
        /// The rendered file concerned.
        path: PathBuf,
        /// Steps undone.
        undone: usize,
        /// Undo steps that failed.
        undo_failures: Vec<String>,
        /// Libvirt's refusal.
        #[source]
        source: Box<LibvirtError>,
    },
    /// Starting, stopping or reading state failed.
    #[error("libvirt")]
    Libvirt(#[from] LibvirtError),
    /// A host folder a machine needs at run time cannot be created.
    #[error("cannot create {path} for {machine}")]
    RuntimeDir {
        /// The machine.
        machine: String,
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A machine runs, but its agent did not answer in time. The machine was powered off again
    /// (its definition and disks stay); `console` holds the last lines of its serial console.
    #[error("{machine} started, but its agent did not answer within {secs} s ({why}); it was powered off again{}", console_note(console))]
    NotReady {
        /// The machine.
        machine: String,
        /// Seconds waited.
        secs: u64,
        /// The last reason the probe gave.
        why: String,
        /// The last lines of `console.log`, if any.
        console: String,
    },
    /// A machine did not reach the wanted state in time.
    #[error("{name} is still {state} after {secs} s")]
    Timeout {
        /// Machine.
        name: String,
        /// Its state.
        state: &'static str,
        /// Seconds waited.
        secs: u64,
    },
}

fn console_note(console: &str) -> String {
    if console.trim().is_empty() {
        String::new()
    } else {
        format!("; its console ended with:\n{console}")
    }
}

/// The last `n` lines of a console log, control characters removed (a guest writes what it
/// likes there).
pub fn console_tail(path: &Path, n: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(64 * 1024);
    let text = String::from_utf8_lossy(&bytes[start..]);
    mv_core::text::last_lines(&text, n)
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn undo_note(undone: usize, fails: &[String]) -> String {
    let mut s = format!("up stopped, {undone} earlier step(s) of this run undone");
    if !fails.is_empty() {
        s.push_str(&format!(
            "; {} could NOT be undone: {}",
            fails.len(),
            fails.join("; ")
        ));
    }
    s
}

struct Rendered {
    path: PathBuf,
    kind: ObjectKind,
    name: String,
    uuid: Option<String>,
    xml: String,
    /// For domains: whether the definition carries the seed disk, and how to add run-time
    /// devices to the rendered file at define time (see [`MachineSpec::with_runtime_devices`]).
    machine: Option<MachineSpec>,
}

fn read_rendered(path: &Path, kind: ObjectKind, name: Option<&str>) -> Result<Rendered, UpError> {
    let xml = std::fs::read_to_string(path).map_err(|source| UpError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let id = xml::identify(&xml).map_err(|source| UpError::Xml {
        path: path.to_path_buf(),
        source,
    })?;
    let found = format!("{} {}", id.kind, id.name.as_deref().unwrap_or("(no name)"));
    let ok =
        id.kind == kind && id.name.is_some() && name.is_none_or(|n| id.name.as_deref() == Some(n));
    let Some(got) = id.name.filter(|_| ok) else {
        return Err(UpError::Unexpected {
            path: path.to_path_buf(),
            found,
            expected: format!("{kind} {}", name.unwrap_or("with a name")),
        });
    };
    Ok(Rendered {
        path: path.to_path_buf(),
        kind,
        name: got,
        uuid: id.uuid,
        xml,
        machine: None,
    })
}

/// The domain XML `up` defines: the rendered file plus the marker with the file's SHA-256.
pub(crate) fn marked_domain_xml(rendered: &str) -> Result<String, XmlError> {
    let hash = hex::encode(sha2::Sha256::digest(rendered.as_bytes()));
    xml::inject_metadata(
        rendered,
        &format!("<mvup:rendered xmlns:mvup=\"{UP_NS}\" sha256=\"{hash}\"/>"),
    )
}

/// Whether the host's definition of a rendered object differs from the rendered file.
fn differs(r: &Rendered, live: &str) -> Result<bool, XmlError> {
    if r.kind == ObjectKind::Domain {
        let want = hex::encode(sha2::Sha256::digest(r.xml.as_bytes()));
        let seed_wanted = r.machine.as_ref().is_some_and(|m| m.seed.is_some());
        return Ok(xml::rendered_hash(live).as_deref() != Some(want.as_str())
            || has_seed_disk(live) != seed_wanted);
    }
    xml::is_subset(&r.xml, live).map(|sub| !sub)
}

enum Undo {
    Undefine(ObjectKind, String),
    Redefine(ObjectKind, String, String),
    RemoveDisk(PathBuf),
    StopPool(String),
}

/// Whether a started machine is ready (its agent answers); `Err` carries the reason it is not
/// yet. Called repeatedly until it succeeds or the machine's timeout passes, with the instant
/// the machine was started (or, for one found running, the wait began): the first call may come
/// well after it (see the readiness wait of `up`).
pub type ReadyProbe<'a> = &'a dyn Fn(&MachineSpec, Instant) -> Result<(), String>;

/// Brings the host to the wanted state. See the module documentation.
pub fn up(conn: &Connection, spec: &UpSpec, opts: &UpOptions) -> Result<Report, UpError> {
    up_with(conn, spec, opts, None)
}

/// [`up`], and with `ready`, each started machine must also pass the probe (its agent answers)
/// before the next one starts: routers come up before what depends on them.
pub fn up_with(
    conn: &Connection,
    spec: &UpSpec,
    opts: &UpOptions,
    ready: Option<ReadyProbe<'_>>,
) -> Result<Report, UpError> {
    // 1. Read and check everything before the first change.
    let mut objects: Vec<Rendered> = Vec::new();
    if let Some((pool, _)) = &spec.pool {
        objects.push(read_rendered(pool, ObjectKind::Pool, None)?);
    }
    for n in &spec.networks {
        objects.push(read_rendered(n, ObjectKind::Network, None)?);
    }
    for m in &spec.machines {
        let mut r = read_rendered(&m.domain_xml, ObjectKind::Domain, Some(&m.name))?;
        r.machine = Some(m.clone());
        objects.push(r);
    }
    // Secrets first (libvirt's own order): a domain's disks name them.
    let mut secrets: Vec<(Rendered, Option<String>, &LuksSecret)> = Vec::new();
    for m in &spec.machines {
        if let Some(ls) = &m.luks_secret {
            let r = read_rendered(&ls.xml, ObjectKind::Secret, None)?;
            let live = match conn.xml(ObjectKind::Secret, &r.name, true) {
                Ok(x) => Some(x),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            };
            secrets.push((r, live, ls));
        }
    }
    let mut current: Vec<Option<String>> = Vec::with_capacity(objects.len());
    for r in &objects {
        let live = match conn.xml(r.kind, &r.name, true) {
            Ok(x) => Some(x),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(live) = &live {
            let host_uuid = xml::identify(live).ok().and_then(|i| i.uuid);
            if let (Some(h), Some(o)) = (host_uuid, &r.uuid) {
                if !h.eq_ignore_ascii_case(o) {
                    return Err(UpError::Collision {
                        path: r.path.clone(),
                        kind: r.kind,
                        name: r.name.clone(),
                        host_uuid: h,
                        ours: o.clone(),
                    });
                }
            }
        }
        current.push(live);
    }
    for m in &spec.machines {
        for d in &m.disks {
            if !d.path.exists() && !d.base.is_file() {
                return Err(UpError::Disk {
                    machine: m.name.clone(),
                    source: ImageError::MissingBase {
                        name: d.base_name.clone(),
                        path: d.base.clone(),
                    },
                });
            }
        }
    }

    // 2. Apply, journalling for undo.
    let mut report = Report::default();
    let mut journal: Vec<Undo> = Vec::new();
    let result = set_secrets(conn, opts, &secrets, &mut report, &mut journal).and_then(|()| {
        apply(
            conn,
            spec,
            opts,
            &objects,
            &current,
            &mut report,
            &mut journal,
        )
    });
    if let Err((path, source)) = result {
        let undone = journal.len();
        let undo_failures = rollback(conn, journal);
        return Err(match source {
            Failure::Libvirt(source) => UpError::Define {
                path,
                undone,
                undo_failures,
                source: Box::new(source),
            },
            // Disks come first, so a disk failure only ever has other new disks to undo.
            Failure::Image(machine, source) => UpError::Disk { machine, source },
            // Checked in step 1 already; kept so a file changed under our feet is still reported.
            Failure::Xml(source) => UpError::Xml { path, source },
        });
    }

    // 4. Start in order.
    if opts.start {
        let pool = objects
            .iter()
            .find(|r| r.kind == ObjectKind::Pool)
            .map(|r| r.name.as_str());
        for m in &spec.machines {
            start_machine(conn, m, pool, opts, ready, &mut report)?;
        }
    }
    Ok(report)
}

enum Failure {
    Libvirt(LibvirtError),
    Image(String, ImageError),
    Xml(XmlError),
}

/// Defines each disk secret that is missing or changed and sets its value (every run: an
/// ephemeral secret is gone after libvirtd restarts or the kill switch fired).
fn set_secrets(
    conn: &Connection,
    opts: &UpOptions,
    secrets: &[(Rendered, Option<String>, &LuksSecret)],
    report: &mut Report,
    journal: &mut Vec<Undo>,
) -> Result<(), (PathBuf, Failure)> {
    for (r, live, ls) in secrets {
        let done = match live {
            None => Done::Created,
            Some(l) if differs(r, l).map_err(|e| (r.path.clone(), Failure::Xml(e)))? => {
                Done::Updated
            }
            Some(_) => Done::Unchanged,
        };
        if !opts.dry_run {
            if done != Done::Unchanged {
                conn.define(ObjectKind::Secret, &r.xml)
                    .map_err(|e| (r.path.clone(), Failure::Libvirt(e)))?;
                journal.push(match live {
                    None => Undo::Undefine(ObjectKind::Secret, r.name.clone()),
                    Some(old) => Undo::Redefine(ObjectKind::Secret, r.name.clone(), old.clone()),
                });
            }
            conn.set_secret_value(&r.name, ls.passphrase.expose())
                .map_err(|e| (r.path.clone(), Failure::Libvirt(e)))?;
        }
        report.push("secret", r.name.clone(), done);
    }
    Ok(())
}

fn apply(
    conn: &Connection,
    spec: &UpSpec,
    opts: &UpOptions,
    objects: &[Rendered],
    current: &[Option<String>],
    report: &mut Report,
    journal: &mut Vec<Undo>,
) -> Result<(), (PathBuf, Failure)> {
    for m in &spec.machines {
        for d in &m.disks {
            let done = images::ensure_overlay(d, opts.dry_run)
                .map_err(|e| (d.path.clone(), Failure::Image(m.name.clone(), e)))?;
            if done == images::Outcome::Created {
                if !opts.dry_run {
                    journal.push(Undo::RemoveDisk(d.path.clone()));
                }
                report.push("disk", d.path.display().to_string(), Done::Created);
            }
        }
    }
    for (r, live) in objects.iter().zip(current) {
        let done = match live {
            None => Done::Created,
            Some(l) => {
                if differs(r, l).map_err(|e| (r.path.clone(), Failure::Xml(e)))? {
                    Done::Updated
                } else {
                    Done::Unchanged
                }
            }
        };
        if done != Done::Unchanged && !opts.dry_run {
            let text = if r.kind == ObjectKind::Domain {
                let marked =
                    marked_domain_xml(&r.xml).map_err(|e| (r.path.clone(), Failure::Xml(e)))?;
                match &r.machine {
                    Some(m) => m.with_runtime_devices(&marked),
                    None => marked,
                }
            } else {
                r.xml.clone()
            };
            // No <uuid> in the rendered file: keep the host's, or libvirt sees a new object.
            let host_uuid = live
                .as_deref()
                .and_then(|l| xml::identify(l).ok())
                .and_then(|i| i.uuid);
            let text = match (&r.uuid, host_uuid) {
                (None, Some(u)) => xml::with_uuid(&text, &u).unwrap_or(text),
                _ => text,
            };
            conn.define(r.kind, &text)
                .map_err(|e| (r.path.clone(), Failure::Libvirt(e)))?;
            journal.push(match live {
                None => Undo::Undefine(r.kind, r.name.clone()),
                Some(old) => Undo::Redefine(r.kind, r.name.clone(), old.clone()),
            });
        }
        report.push(r.kind.as_str(), r.name.clone(), done);
        // The pool must be running (and see the disks) before domains that use it.
        if r.kind == ObjectKind::Pool && !opts.dry_run {
            let dir = spec.pool.as_ref().map(|(_, d)| d.clone());
            if let Some(dir) = dir {
                let _ = std::fs::create_dir_all(&dir);
            }
            let active = conn
                .is_active(ObjectKind::Pool, &r.name)
                .map_err(|e| (r.path.clone(), Failure::Libvirt(e)))?;
            if !active {
                conn.start_pool(&r.name)
                    .map_err(|e| (r.path.clone(), Failure::Libvirt(e)))?;
                journal.push(Undo::StopPool(r.name.clone()));
            }
            conn.pool_volumes(&r.name)
                .map_err(|e| (r.path.clone(), Failure::Libvirt(e)))?;
        }
    }
    Ok(())
}

fn rollback(conn: &Connection, journal: Vec<Undo>) -> Vec<String> {
    let mut fails = Vec::new();
    for u in journal.into_iter().rev() {
        let res = match &u {
            Undo::Undefine(k, n) => conn.undefine(*k, n).map_err(|e| e.to_string()),
            Undo::Redefine(k, n, x) => conn
                .define(*k, x)
                .map(drop)
                .map_err(|e| format!("{k} {n}: {e}")),
            Undo::StopPool(n) => conn.stop_pool(n).map_err(|e| e.to_string()),
            Undo::RemoveDisk(p) => {
                std::fs::remove_file(p).map_err(|e| format!("{}: {e}", p.display()))
            }
        };
        if let Err(e) = res {
            fails.push(e);
        }
    }
    fails
}

fn start_machine(
    conn: &Connection,
    m: &MachineSpec,
    pool: Option<&str>,
    opts: &UpOptions,
    ready: Option<ReadyProbe<'_>>,
    report: &mut Report,
) -> Result<(), UpError> {
    if conn.exists(ObjectKind::Domain, &m.name)? && conn.domain_is_active(&m.name)? {
        report.push("domain", m.name.clone(), Done::AlreadyRunning);
        if let (Some(probe), false) = (ready, opts.dry_run) {
            wait_ready(conn, m, Instant::now(), opts.timeout, probe)?;
        }
        return Ok(());
    }
    let rendered = std::fs::read_to_string(&m.domain_xml).map_err(|source| UpError::Read {
        path: m.domain_xml.clone(),
        source,
    })?;
    for net in xml::referenced_networks(&rendered) {
        let active = !opts.dry_run && conn.is_active(ObjectKind::Network, &net)?;
        if !active {
            if !opts.dry_run {
                conn.start_network(&net)?;
            }
            report.push("network", net, Done::Started);
        }
    }
    if m.throwaway {
        for d in &m.disks {
            images::fresh_overlay(d, opts.dry_run).map_err(|source| UpError::Disk {
                machine: m.name.clone(),
                source,
            })?;
            report.push("disk", d.path.display().to_string(), Done::Refreshed);
        }
        if let (Some(pool), false) = (pool, opts.dry_run) {
            // The pool caches each volume's size and format: let it see the new files.
            conn.pool_volumes(pool)?;
        }
    }
    if !opts.dry_run {
        for dir in &m.runtime_dirs {
            std::fs::create_dir_all(dir).map_err(|source| UpError::RuntimeDir {
                machine: m.name.clone(),
                path: dir.clone(),
                source,
            })?;
        }
        if let Some(log) = &m.console_log {
            // One boot per log: the file then holds exactly this start's console.
            let _ = std::fs::remove_file(log);
        }
        let started = Instant::now();
        conn.start_domain(&m.name)?;
        wait_for(conn, &m.name, opts.timeout, |s| s == DomainState::Running)?;
        if let Some(probe) = ready {
            let left = opts.timeout.saturating_sub(started.elapsed());
            wait_ready(conn, m, started, left, probe)?;
        }
    }
    report.push("domain", m.name.clone(), Done::Started);
    Ok(())
}

/// Polls `probe` every 250 ms until it passes; past `timeout` the machine is powered off (it
/// never became usable) and the error carries its console's last lines.
fn wait_ready(
    conn: &Connection,
    m: &MachineSpec,
    since: Instant,
    timeout: Duration,
    probe: ReadyProbe<'_>,
) -> Result<(), UpError> {
    let start = Instant::now();
    loop {
        // A probe sent before the guest opened its end of the channel waits out its whole
        // timeout (QEMU holds it unread), so a boot was seen up to one timeout late (10 s of
        // 25 under TCG). libvirt tracks whether the guest holds each virtio channel open; until
        // it does, only that is polled. A libvirt that does not say is probed as before.
        let closed = match &m.agent_channel {
            Some(channel) => {
                conn.domain_xml(&m.name, false)
                    .ok()
                    .and_then(|live| xml::channel_connected(&live, channel))
                    == Some(false)
            }
            None => false,
        };
        let why = if closed {
            format!(
                "the guest has not opened its agent channel ({}) yet",
                m.agent_channel.as_deref().unwrap_or_default()
            )
        } else {
            match probe(m, since) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            }
        };
        let gone = !conn.domain_is_active(&m.name)?;
        if gone || start.elapsed() >= timeout {
            if !gone {
                let _ = conn.destroy_domain(&m.name);
            }
            let console = m
                .console_log
                .as_deref()
                .map(|p| console_tail(p, 15))
                .unwrap_or_default();
            return Err(UpError::NotReady {
                machine: m.name.clone(),
                secs: start.elapsed().as_secs(),
                why: if gone {
                    format!("the machine stopped; last probe: {why}")
                } else {
                    why
                },
                console,
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// How often `down` repeats its ACPI shutdown request while a guest keeps running.
const ACPI_REPEAT: Duration = Duration::from_secs(15);

/// Polls a domain's state every 50 ms until `want` holds or `timeout` passes.
pub(crate) fn wait_for(
    conn: &Connection,
    name: &str,
    timeout: Duration,
    want: impl Fn(DomainState) -> bool,
) -> Result<(), UpError> {
    let start = Instant::now();
    loop {
        let s = conn.domain_state(name)?;
        if want(s) {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(UpError::Timeout {
                name: name.to_string(),
                state: s.as_str(),
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops `names` in the order given (callers pass reverse start order): ACPI shutdown, then
/// destroy once `timeout` has passed. Undefined machines are skipped.
pub fn down(
    conn: &Connection,
    names: &[String],
    timeout: Duration,
    dry_run: bool,
    force: bool,
) -> Result<Report, UpError> {
    let mut report = Report::default();
    for name in names {
        if !conn.exists(ObjectKind::Domain, name)? || !conn.domain_is_active(name)? {
            report.push("domain", name.clone(), Done::AlreadyStopped);
            continue;
        }
        if dry_run {
            report.push("domain", name.clone(), Done::ShutDown);
            continue;
        }
        // A guest without ACPI support (or still booting) may ignore the request. Pulling the
        // plug can corrupt its filesystem, so that takes `force`; without it, stop and say so.
        // The request is repeated every ACPI_REPEAT: a power-button press that arrives before the
        // guest's logind listens (an agent answers early in boot, so `down` can come that soon)
        // is lost, and one press would then wait out the whole timeout.
        let start = Instant::now();
        let mut asked = false;
        let mut stopped = false;
        while !stopped && start.elapsed() < timeout {
            asked |= conn.shutdown_domain(name).is_ok();
            let slice = ACPI_REPEAT.min(timeout.saturating_sub(start.elapsed()));
            stopped = asked && wait_for(conn, name, slice, |s| !s.is_active()).is_ok();
            if !asked {
                break;
            }
        }
        if stopped {
            report.push("domain", name.clone(), Done::ShutDown);
        } else if !force {
            return Err(UpError::Timeout {
                name: name.clone(),
                state: "running after an ACPI shutdown request",
                secs: timeout.as_secs(),
            });
        } else {
            match conn.destroy_domain(name) {
                Ok(()) => {}
                // It stopped between the last poll and the destroy.
                Err(_) if !conn.domain_is_active(name)? => {}
                Err(e) => return Err(e.into()),
            }
            report.push("domain", name.clone(), Done::Destroyed);
        }
    }
    Ok(report)
}

/// One machine in `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MachineStatus {
    /// FQDN.
    pub name: String,
    /// Defined in libvirt.
    pub defined: bool,
    /// Run state (`shut_off` when not defined).
    pub state: DomainState,
    /// The definition differs from the rendered domain.xml (`null` when not defined or not
    /// rendered).
    pub changed_since_render: Option<bool>,
}

/// The status of each machine.
pub fn status(conn: &Connection, machines: &[MachineSpec]) -> Result<Vec<MachineStatus>, UpError> {
    let mut out = Vec::new();
    for m in machines {
        let defined = conn.exists(ObjectKind::Domain, &m.name)?;
        if !defined {
            out.push(MachineStatus {
                name: m.name.clone(),
                defined,
                state: DomainState::ShutOff,
                changed_since_render: None,
            });
            continue;
        }
        let state = conn.domain_state(&m.name)?;
        let live = conn.domain_xml(&m.name, true)?;
        let changed = match std::fs::read_to_string(&m.domain_xml) {
            Ok(rendered) => {
                let want = hex::encode(sha2::Sha256::digest(rendered.as_bytes()));
                Some(xml::rendered_hash(&live).as_deref() != Some(want.as_str()))
            }
            Err(_) => None,
        };
        out.push(MachineStatus {
            name: m.name.clone(),
            defined,
            state,
            changed_since_render: changed,
        });
    }
    Ok(out)
}
