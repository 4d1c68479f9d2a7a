//! The collectors and the stats they produce.
//!
//! A *collector* reads one source (a procfs file, libvirt, the init system...) and returns a raw
//! [`Reading`]. The [`Sampler`] runs every collector on each tick on the blocking pool, each with
//! its own timeout; one that fails or does not finish in time keeps its last good data, marked
//! `stale` with the error, and is not started again while its previous run is still stuck (so a
//! hung NFS mount or libvirtd costs one thread, not one per tick). Rates (bytes/s) are computed here
//! from two consecutive readings.
//!
//! Main types: [`Stats`] (what `/v1/stats` returns), [`Section`], [`CollectorId`].
//!
//! The types and parsers come with either the `server` or the `client` feature (a client
//! deserializes what the server collected); the collectors and the sampler (which read the
//! machine, and need `nix`, tokio and the config) only with `server`.

#![cfg_attr(not(feature = "server"), allow(unused_imports, dead_code))]

pub mod host;
pub mod openvpn;
pub mod procfs;
pub mod router;
pub mod services;

#[cfg(feature = "server")]
use crate::config::{Resolved, Role};
#[cfg(feature = "server")]
use crate::util::now_ms;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use procfs::Memory;

/// One section of [`Stats`], with its freshness.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Section<T> {
    /// True when the last run of this collector failed or timed out; `data` is then older.
    pub stale: bool,
    /// When `data` was collected (ms since the epoch; 0 never).
    pub updated_ms: u64,
    /// Why the section is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The last good data.
    pub data: Option<T>,
}

impl<T> Default for Section<T> {
    fn default() -> Self {
        Section {
            stale: true,
            updated_ms: 0,
            error: None,
            data: None,
        }
    }
}

#[cfg(feature = "server")]
impl<T> Section<T> {
    fn set(&mut self, data: T) {
        self.data = Some(data);
        self.stale = false;
        self.error = None;
        self.updated_ms = now_ms();
    }
    fn fail(&mut self, error: String) {
        self.stale = true;
        self.error = Some(error);
    }
}

/// CPU time and usage of one core (or of all, for the total).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Core {
    /// Core number; `None` for the aggregate.
    pub id: Option<u32>,
    /// Busy fraction (0..1) since the previous sample.
    pub usage: f64,
    /// Seconds spent per mode since boot: user, nice, system, idle, iowait, irq, softirq, steal.
    pub seconds: [f64; 8],
}

/// `cpu` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cpu {
    /// All cores together.
    pub total: Core,
    /// One per core.
    pub cores: Vec<Core>,
}

/// `system` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct System {
    /// 1, 5 and 15 minute load averages.
    pub load: [f64; 3],
    /// Seconds since boot.
    pub uptime_s: f64,
    /// Processes (numeric entries of /proc).
    pub processes: u64,
    /// Threads (scheduling entities, from loadavg).
    pub threads: u64,
}

/// One block device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Disk {
    /// Device name.
    pub name: String,
    /// Reads completed since boot.
    pub reads: u64,
    /// Bytes read since boot.
    pub read_bytes: u64,
    /// Writes completed since boot.
    pub writes: u64,
    /// Bytes written since boot.
    pub written_bytes: u64,
    /// Time spent doing I/O (ms).
    pub io_ms: u64,
    /// Bytes/s read since the previous sample.
    pub read_rate: f64,
    /// Bytes/s written since the previous sample.
    pub write_rate: f64,
}

/// One mounted filesystem.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Filesystem {
    /// Mount point.
    pub mountpoint: String,
    /// Source device.
    pub device: String,
    /// Type.
    pub fstype: String,
    /// Size in bytes.
    pub size: u64,
    /// Free bytes (root's view).
    pub free: u64,
    /// Bytes available to unprivileged users.
    pub avail: u64,
}

/// `disks` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Disks {
    /// Whole block devices.
    pub devices: Vec<Disk>,
    /// Mounted filesystems.
    pub filesystems: Vec<Filesystem>,
}

/// One network interface.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Interface {
    /// Name.
    pub name: String,
    /// Bytes received since boot.
    pub rx_bytes: u64,
    /// Bytes sent since boot.
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Sent packets dropped.
    pub tx_dropped: u64,
    /// Bytes/s received since the previous sample.
    pub rx_rate: f64,
    /// Bytes/s sent since the previous sample.
    pub tx_rate: f64,
}

/// Everything `/v1/stats` returns. Role sections are present only on their role.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    /// When the last sample finished (ms since the epoch).
    pub time_ms: u64,
    /// Samples taken since start.
    pub samples: u64,
    /// CPU.
    pub cpu: Section<Cpu>,
    /// Memory and swap.
    pub memory: Section<Memory>,
    /// Load, uptime, processes.
    pub system: Section<System>,
    /// Block devices and filesystems.
    pub disks: Section<Disks>,
    /// Network interfaces.
    pub network: Section<Vec<Interface>>,
    /// Host role: libvirt domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Section<host::HostStats>>,
    /// Router role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<Section<router::RouterStats>>,
    /// Controller and service roles: service states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Section<Vec<services::ServiceState>>>,
}

impl Stats {
    /// Name and staleness of every section present, for `/v1/health` and metrics.
    pub fn freshness(&self) -> Vec<(&'static str, bool, Option<&str>)> {
        let mut v = vec![
            ("cpu", self.cpu.stale, self.cpu.error.as_deref()),
            ("memory", self.memory.stale, self.memory.error.as_deref()),
            ("system", self.system.stale, self.system.error.as_deref()),
            ("disks", self.disks.stale, self.disks.error.as_deref()),
            ("network", self.network.stale, self.network.error.as_deref()),
        ];
        if let Some(s) = &self.host {
            v.push(("host", s.stale, s.error.as_deref()));
        }
        if let Some(s) = &self.router {
            v.push(("router", s.stale, s.error.as_deref()));
        }
        if let Some(s) = &self.services {
            v.push(("services", s.stale, s.error.as_deref()));
        }
        v
    }
}

/// The collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CollectorId {
    /// `/proc/stat`.
    Cpu,
    /// `/proc/meminfo`.
    Memory,
    /// `/proc/loadavg`, `/proc/uptime`, `/proc/[pid]`.
    System,
    /// `/proc/diskstats`, `/proc/mounts` + statvfs.
    Disks,
    /// `/proc/net/dev`.
    Network,
    /// libvirt (host role).
    Host,
    /// dnsmasq, nftables, conntrack, VPN, Tor (router role).
    Router,
    /// OpenRC or systemd (controller and service roles).
    Services,
}

impl CollectorId {
    /// The section name.
    pub fn name(self) -> &'static str {
        match self {
            CollectorId::Cpu => "cpu",
            CollectorId::Memory => "memory",
            CollectorId::System => "system",
            CollectorId::Disks => "disks",
            CollectorId::Network => "network",
            CollectorId::Host => "host",
            CollectorId::Router => "router",
            CollectorId::Services => "services",
        }
    }

    /// The collectors a role runs.
    #[cfg(feature = "server")]
    pub fn for_role(role: Role) -> Vec<CollectorId> {
        use CollectorId::*;
        let mut v = vec![Cpu, Memory, System, Disks, Network];
        match role {
            Role::Host => v.push(Host),
            Role::Router => v.push(Router),
            Role::Controller | Role::Service => v.push(Services),
        }
        v
    }
}

/// Why a collector produced nothing.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A source file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A source file had an unexpected shape.
    #[error(transparent)]
    Parse(#[from] procfs::ParseError),
    /// libvirt refused or is gone (as reported by the libvirt helper).
    #[error("libvirt ({uri}): {message}")]
    Libvirt {
        /// The URI.
        uri: String,
        /// libvirt's error.
        message: String,
    },
    /// The libvirt helper process could not be run or talked to.
    #[error("libvirt helper {path}")]
    Helper {
        /// The helper binary.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A helper program failed.
    #[error("`{program}` failed: {detail}")]
    Command {
        /// The program.
        program: String,
        /// Exit status or spawn error.
        detail: String,
    },
}

impl mv_core::Classify for CollectError {
    /// A source the agent could not read: never the person's input.
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

/// A raw reading, before rates are computed.
#[derive(Debug)]
pub enum Reading {
    /// Aggregate and per-core ticks.
    Cpu(procfs::CpuTicks, Vec<(u32, procfs::CpuTicks)>),
    /// Memory.
    Memory(Memory),
    /// Load etc.
    System(System),
    /// Disks and filesystems.
    Disks(Vec<procfs::DiskCounters>, Vec<Filesystem>),
    /// Interfaces.
    Network(Vec<procfs::IfaceCounters>),
    /// Domains.
    Host(host::HostStats),
    /// Router state.
    Router(router::RouterStats),
    /// Service states.
    Services(Vec<services::ServiceState>),
}

/// What collectors need; shared with the blocking threads.
#[derive(Debug)]
#[cfg(feature = "server")]
pub struct CollectCtx {
    /// The resolved config.
    pub cfg: Resolved,
    /// The libvirt helper process (host role), started on first use.
    pub libvirt: host::LibvirtHelper,
}

#[cfg(feature = "server")]
pub(crate) fn read(proc_root: &Path, rel: &str) -> Result<String, CollectError> {
    let path = proc_root.join(rel);
    std::fs::read_to_string(&path).map_err(|source| CollectError::Read { path, source })
}

/// Runs one collector (blocking).
#[cfg(feature = "server")]
pub fn collect(id: CollectorId, ctx: &CollectCtx) -> Result<Reading, CollectError> {
    let p = ctx.cfg.config.stats.proc.as_path();
    Ok(match id {
        CollectorId::Cpu => {
            let (t, c) = procfs::parse_stat(&read(p, "stat")?)?;
            Reading::Cpu(t, c)
        }
        CollectorId::Memory => Reading::Memory(procfs::parse_meminfo(&read(p, "meminfo")?)?),
        CollectorId::System => {
            let (load, threads) = procfs::parse_loadavg(&read(p, "loadavg")?)?;
            let uptime_s = procfs::parse_uptime(&read(p, "uptime")?)?;
            let processes = std::fs::read_dir(p)
                .map_err(|source| CollectError::Read {
                    path: p.to_path_buf(),
                    source,
                })?
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .as_encoded_bytes()
                        .iter()
                        .all(u8::is_ascii_digit)
                })
                .count() as u64;
            Reading::System(System {
                load,
                uptime_s,
                processes,
                threads,
            })
        }
        CollectorId::Disks => {
            let devs = procfs::parse_diskstats(&read(p, "diskstats")?)?;
            let mounts = procfs::parse_mounts(&read(p, "mounts")?);
            let mut fss = Vec::with_capacity(mounts.len());
            for m in mounts {
                // statvfs counts are u64 on the 64-bit targets Multiverse runs on.
                // statvfs can block on a dead network mount: that is what the timeout is for.
                if let Ok(s) = nix::sys::statvfs::statvfs(m.mountpoint.as_str()) {
                    let frag = s.fragment_size();
                    let size = s.blocks().saturating_mul(frag);
                    if size == 0 {
                        continue;
                    }
                    fss.push(Filesystem {
                        mountpoint: m.mountpoint,
                        device: m.device,
                        fstype: m.fstype,
                        size,
                        free: s.blocks_free().saturating_mul(frag),
                        avail: s.blocks_available().saturating_mul(frag),
                    });
                }
            }
            Reading::Disks(devs, fss)
        }
        CollectorId::Network => Reading::Network(procfs::parse_net_dev(&read(p, "net/dev")?)?),
        CollectorId::Host => Reading::Host(host::collect(ctx)?),
        CollectorId::Router => Reading::Router(router::collect(&ctx.cfg.config.router, p)?),
        CollectorId::Services => Reading::Services(services::collect(&ctx.cfg.config.services)),
    })
}

#[cfg(feature = "server")]
fn ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(v)) if v > 0 => v as f64,
        _ => 100.0,
    }
}

/// Runs the collectors on each tick and folds their readings into [`Stats`].
#[derive(Debug)]
#[cfg(feature = "server")]
pub struct Sampler {
    ctx: Arc<CollectCtx>,
    ids: Vec<CollectorId>,
    stuck: HashMap<CollectorId, tokio::task::JoinHandle<Result<Reading, CollectError>>>,
    prev_cpu: Option<(procfs::CpuTicks, Vec<(u32, procfs::CpuTicks)>)>,
    prev_disk: HashMap<String, (u64, u64)>,
    prev_net: HashMap<String, (u64, u64)>,
    prev_disk_t: Option<Instant>,
    prev_net_t: Option<Instant>,
    hz: f64,
}

#[cfg(feature = "server")]
impl Sampler {
    /// A sampler for the configured role.
    pub fn new(ctx: Arc<CollectCtx>) -> Self {
        let ids = CollectorId::for_role(ctx.cfg.config.role);
        Sampler {
            ctx,
            ids,
            stuck: HashMap::new(),
            prev_cpu: None,
            prev_disk: HashMap::new(),
            prev_net: HashMap::new(),
            prev_disk_t: None,
            prev_net_t: None,
            hz: ticks_per_second(),
        }
    }

    /// An empty [`Stats`] with the role's sections present (all stale until the first sample).
    pub fn empty_stats(&self) -> Stats {
        let mut s = Stats::default();
        match self.ctx.cfg.config.role {
            Role::Host => s.host = Some(Section::default()),
            Role::Router => s.router = Some(Section::default()),
            Role::Controller | Role::Service => s.services = Some(Section::default()),
        }
        s
    }

    /// Runs every collector once (in parallel, each bounded by the collector timeout) and
    /// updates `stats` in place. Returns the names of the collectors that failed.
    pub async fn tick(&mut self, stats: &mut Stats) {
        let timeout = self.ctx.cfg.collector_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut running = Vec::with_capacity(self.ids.len());
        for &id in &self.ids {
            if let Some(h) = self.stuck.remove(&id) {
                if !h.is_finished() {
                    self.stuck.insert(id, h);
                    let msg = format!(
                        "previous run still blocked after the {}ms timeout",
                        timeout.as_millis()
                    );
                    self.fail(stats, id, msg);
                    continue;
                }
            }
            let ctx = self.ctx.clone();
            running.push((id, tokio::task::spawn_blocking(move || collect(id, &ctx))));
        }
        for (id, mut h) in running {
            match tokio::time::timeout_at(deadline, &mut h).await {
                Ok(Ok(Ok(r))) => self.apply(stats, r),
                Ok(Ok(Err(e))) => self.fail(stats, id, error_chain(&e)),
                Ok(Err(join)) => self.fail(stats, id, format!("collector crashed: {join}")),
                Err(_) => {
                    self.fail(
                        stats,
                        id,
                        format!("timed out after {}ms", timeout.as_millis()),
                    );
                    self.stuck.insert(id, h);
                }
            }
        }
        stats.samples += 1;
        stats.time_ms = now_ms();
    }

    fn fail(&self, stats: &mut Stats, id: CollectorId, msg: String) {
        tracing::debug!(collector = id.name(), error = %msg, "collector failed");
        match id {
            CollectorId::Cpu => stats.cpu.fail(msg),
            CollectorId::Memory => stats.memory.fail(msg),
            CollectorId::System => stats.system.fail(msg),
            CollectorId::Disks => stats.disks.fail(msg),
            CollectorId::Network => stats.network.fail(msg),
            CollectorId::Host => {
                if let Some(s) = &mut stats.host {
                    s.fail(msg)
                }
            }
            CollectorId::Router => {
                if let Some(s) = &mut stats.router {
                    s.fail(msg)
                }
            }
            CollectorId::Services => {
                if let Some(s) = &mut stats.services {
                    s.fail(msg)
                }
            }
        }
    }

    fn apply(&mut self, stats: &mut Stats, r: Reading) {
        match r {
            Reading::Cpu(total, cores) => {
                let hz = self.hz;
                let core = |id, t: &procfs::CpuTicks, prev: Option<&procfs::CpuTicks>| {
                    let usage = match prev {
                        Some(p) => {
                            let dt = t.total().saturating_sub(p.total());
                            let di = t.idle().saturating_sub(p.idle());
                            if dt == 0 {
                                0.0
                            } else {
                                (dt.saturating_sub(di)) as f64 / dt as f64
                            }
                        }
                        None => {
                            let tt = t.total();
                            if tt == 0 {
                                0.0
                            } else {
                                tt.saturating_sub(t.idle()) as f64 / tt as f64
                            }
                        }
                    };
                    let mut seconds = [0.0; 8];
                    for (s, v) in seconds.iter_mut().zip(t.modes) {
                        *s = v as f64 / hz;
                    }
                    Core { id, usage, seconds }
                };
                let prev = self.prev_cpu.as_ref();
                let total_c = core(None, &total, prev.map(|p| &p.0));
                let cores_c = cores
                    .iter()
                    .map(|(id, t)| {
                        let p = prev.and_then(|p| p.1.iter().find(|(i, _)| i == id).map(|x| &x.1));
                        core(Some(*id), t, p)
                    })
                    .collect();
                stats.cpu.set(Cpu {
                    total: total_c,
                    cores: cores_c,
                });
                self.prev_cpu = Some((total, cores));
            }
            Reading::Memory(m) => stats.memory.set(m),
            Reading::System(s) => stats.system.set(s),
            Reading::Disks(devs, filesystems) => {
                let now = Instant::now();
                let dt = self
                    .prev_disk_t
                    .map(|t| now.duration_since(t).as_secs_f64());
                let devices = devs
                    .into_iter()
                    .map(|d| {
                        let (rr, wr) = rates(
                            dt,
                            self.prev_disk.get(&d.name),
                            (d.read_bytes, d.written_bytes),
                        );
                        self.prev_disk
                            .insert(d.name.clone(), (d.read_bytes, d.written_bytes));
                        Disk {
                            name: d.name,
                            reads: d.reads,
                            read_bytes: d.read_bytes,
                            writes: d.writes,
                            written_bytes: d.written_bytes,
                            io_ms: d.io_ms,
                            read_rate: rr,
                            write_rate: wr,
                        }
                    })
                    .collect::<Vec<_>>();
                self.prev_disk
                    .retain(|k, _| devices.iter().any(|d: &Disk| &d.name == k));
                self.prev_disk_t = Some(now);
                stats.disks.set(Disks {
                    devices,
                    filesystems,
                });
            }
            Reading::Network(ifs) => {
                let now = Instant::now();
                let dt = self.prev_net_t.map(|t| now.duration_since(t).as_secs_f64());
                let list = ifs
                    .into_iter()
                    .map(|i| {
                        let (rx, tx) = rates(dt, self.prev_net.get(&i.name), (i.c[0], i.c[4]));
                        self.prev_net.insert(i.name.clone(), (i.c[0], i.c[4]));
                        Interface {
                            name: i.name,
                            rx_bytes: i.c[0],
                            rx_packets: i.c[1],
                            rx_errors: i.c[2],
                            rx_dropped: i.c[3],
                            tx_bytes: i.c[4],
                            tx_packets: i.c[5],
                            tx_errors: i.c[6],
                            tx_dropped: i.c[7],
                            rx_rate: rx,
                            tx_rate: tx,
                        }
                    })
                    .collect::<Vec<_>>();
                self.prev_net
                    .retain(|k, _| list.iter().any(|i: &Interface| &i.name == k));
                self.prev_net_t = Some(now);
                stats.network.set(list);
            }
            Reading::Host(h) => {
                if let Some(s) = &mut stats.host {
                    s.set(h)
                }
            }
            Reading::Router(r) => {
                if let Some(s) = &mut stats.router {
                    s.set(r)
                }
            }
            Reading::Services(v) => {
                if let Some(s) = &mut stats.services {
                    s.set(v)
                }
            }
        }
    }
}

#[cfg(feature = "server")]
fn rates(dt: Option<f64>, prev: Option<&(u64, u64)>, now: (u64, u64)) -> (f64, f64) {
    match (dt, prev) {
        (Some(dt), Some(p)) if dt > 0.0 => (
            now.0.saturating_sub(p.0) as f64 / dt,
            now.1.saturating_sub(p.1) as f64 / dt,
        ),
        _ => (0.0, 0.0),
    }
}

/// An error and its causes on one line (`a: b: c`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
