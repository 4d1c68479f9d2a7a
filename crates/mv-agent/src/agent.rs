//! [`Agent`]: the state every transport serves: the latest [`Stats`], the history ring, the
//! rendered metrics, the tasks and the event channel; plus the two background loops (sampling and
//! task scheduling).
//!
//! Readers never wait on a collector: the sampler builds the next snapshot on the side and swaps
//! an `Arc` in, so `/v1/stats` and `/metrics` cost a lock of a few nanoseconds.

use crate::config::Resolved;
use crate::history::{History, Sample};
use crate::stats::{host::LibvirtHelper, CollectCtx, Sampler, Stats};
use crate::tasks::Tasks;
use hyper::body::Bytes;
use mv_core::Secret;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::broadcast;

/// Events kept for slow SSE subscribers before they start missing some.
const EVENT_BACKLOG: usize = 32;

/// Why the agent cannot start. The messages say what is wrong; what to do about it is the
/// binary's hint (`multiverse-agent`'s `start_hint`).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The token file is unreadable.
    #[error("cannot read the token file {path}")]
    Token {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The token file is empty.
    #[error("the token file {0} is empty")]
    EmptyToken(PathBuf),
    /// The token file is readable by others.
    #[error("the token file {0} is readable by group or others")]
    TokenMode(PathBuf),
    /// The token file is owned by a user other than the agent's and root.
    #[error("the token file {0} is owned by another user")]
    TokenOwner(PathBuf),
    /// The token is too short to resist guessing.
    #[error("the token in {path} is {len} bytes; it must be at least {MIN_TOKEN_BYTES}")]
    ShortToken {
        /// The file.
        path: PathBuf,
        /// The token's length (after trimming whitespace).
        len: usize,
    },
    /// The token file is not a regular file, or is absurdly large.
    #[error("the token file {path} {problem}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: &'static str,
    },
}

impl mv_core::Classify for StartError {
    /// A token file that is empty, short or too open is the person's to fix.
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            StartError::Token { .. } => mv_core::ErrorClass::Failure,
            _ => mv_core::ErrorClass::Usage,
        }
    }
}

/// The shortest bearer token accepted, in bytes after trimming: 32 hex digits are 16 bytes of
/// entropy, the least that stands up to guessing over the network.
pub(crate) const MIN_TOKEN_BYTES: usize = 32;

/// The largest token file read.
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// Reads and checks the TCP bearer token: a regular file owned by the agent's user or root,
/// mode 0600 or stricter (no group or other bits), holding at least [`MIN_TOKEN_BYTES`] after
/// surrounding whitespace is trimmed. The checks run on the opened file, so the file read is the
/// file checked. The daemon ([`Agent::new`]) and `multiverse-agent --check` both come here.
pub(crate) fn read_token(path: &Path) -> Result<Secret<Vec<u8>>, StartError> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let io = |source| StartError::Token {
        path: path.to_path_buf(),
        source,
    };
    let bad = |problem| StartError::TokenFile {
        path: path.to_path_buf(),
        problem,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let md = f.metadata().map_err(io)?;
    if !md.is_file() {
        return Err(bad("is not a regular file"));
    }
    if md.uid() != 0 && md.uid() != nix::unistd::geteuid().as_raw() {
        return Err(StartError::TokenOwner(path.to_path_buf()));
    }
    if md.permissions().mode() & 0o077 != 0 {
        return Err(StartError::TokenMode(path.to_path_buf()));
    }
    if md.len() > MAX_TOKEN_FILE_BYTES {
        return Err(bad("is over 4 KiB: not a token"));
    }
    // Capacity for the whole read up front: no reallocation leaves a copy behind.
    let mut raw = Secret::new(Vec::with_capacity(MAX_TOKEN_FILE_BYTES as usize + 1));
    f.take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_end(raw.expose_mut())
        .map_err(io)?;
    if raw.expose().len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(bad("is over 4 KiB: not a token"));
    }
    let t = raw.expose().trim_ascii();
    if t.is_empty() {
        return Err(StartError::EmptyToken(path.to_path_buf()));
    }
    if t.len() < MIN_TOKEN_BYTES {
        return Err(StartError::ShortToken {
            path: path.to_path_buf(),
            len: t.len(),
        });
    }
    Ok(Secret::new(t.to_vec()))
}

/// The agent's shared state.
#[derive(Debug)]
pub struct Agent {
    /// The resolved config.
    pub cfg: Resolved,
    /// The machine name shown in `/v1/info`.
    pub name: String,
    /// Start time (ms since the epoch).
    pub started_ms: u64,
    /// The configured tasks.
    pub(crate) tasks: Tasks,
    /// The host's virtio-serial channels to the guests' agents.
    pub(crate) channels: crate::proxy::Channels,
    /// The TCP bearer token.
    pub(crate) token: Option<Secret<Vec<u8>>>,
    stats: RwLock<Arc<Stats>>,
    history: Mutex<History>,
    metrics: RwLock<Bytes>,
    events: broadcast::Sender<Bytes>,
    ctx: Arc<CollectCtx>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The agent's own resident memory, from `/proc/self/statm`.
pub(crate) fn self_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    Some(pages * page)
}

impl Agent {
    /// Builds the state (reads the token file); nothing runs until the loops are spawned, so
    /// `multiverse-agent --check` calls this too and refuses exactly what the daemon refuses.
    pub fn new(cfg: Resolved) -> Result<Arc<Agent>, StartError> {
        let token = match &cfg.config.api.token_file {
            None => None,
            Some(p) => Some(read_token(p)?),
        };
        let name = cfg.config.name.clone().unwrap_or_else(hostname);
        let ctx = Arc::new(CollectCtx {
            cfg: cfg.clone(),
            libvirt: LibvirtHelper::default(),
        });
        let empty = Sampler::new(ctx.clone()).empty_stats();
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        Ok(Arc::new(Agent {
            tasks: Tasks::new(&cfg.config.tasks),
            channels: crate::proxy::Channels::new(
                cfg.config.host.channel_dir.clone(),
                cfg.guest_timeout,
            ),
            history: Mutex::new(History::new(cfg.config.stats.history)),
            stats: RwLock::new(Arc::new(empty)),
            metrics: RwLock::new(Bytes::new()),
            started_ms: crate::util::now_ms(),
            cfg,
            name,
            token,
            events,
            ctx,
        }))
    }

    /// The latest snapshot.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// History samples at or after `since_ms`.
    pub fn history_since(&self, since_ms: u64) -> Vec<Sample> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .since(since_ms)
    }

    /// (samples held, capacity).
    pub fn history_len(&self) -> (usize, usize) {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        (h.len(), h.capacity())
    }

    /// The rendered `/metrics` text.
    pub fn metrics(&self) -> Bytes {
        self.metrics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A new subscriber to the server-sent events.
    pub fn subscribe(&self) -> broadcast::Receiver<Bytes> {
        self.events.subscribe()
    }

    /// Sends one server-sent event (`event: kind`, `data: json`) to every subscriber.
    pub fn emit(&self, kind: &str, data: &impl serde::Serialize) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let json = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
        let frame = format!("event: {kind}\ndata: {json}\n\n");
        let _ = self.events.send(Bytes::from(frame));
    }

    fn render_metrics(&self, stats: &Stats, buf: &mut String) {
        let role = self.cfg.config.role.as_str();
        let meta = crate::metrics::Meta {
            role,
            name: &self.name,
            rss_bytes: self_rss(),
        };
        crate::metrics::render(buf, &meta, stats, &self.tasks.list());
        *self.metrics.write().unwrap_or_else(|p| p.into_inner()) =
            Bytes::copy_from_slice(buf.as_bytes());
    }

    /// Samples forever on the configured interval (the first sample is taken at once).
    pub async fn run_sampler(self: Arc<Self>) {
        let mut sampler = Sampler::new(self.ctx.clone());
        let mut working = sampler.empty_stats();
        let mut buf = String::with_capacity(16 * 1024);
        let mut tick = tokio::time::interval(self.cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut fresh_before: Vec<(&'static str, bool)> = Vec::new();
        loop {
            tick.tick().await;
            sampler.tick(&mut working).await;
            let snapshot = Arc::new(working.clone());
            *self.stats.write().unwrap_or_else(|p| p.into_inner()) = snapshot.clone();
            let sample = Sample::from_stats(&snapshot);
            self.history
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sample);
            self.render_metrics(&snapshot, &mut buf);
            let fresh: Vec<(&'static str, bool)> = snapshot
                .freshness()
                .into_iter()
                .map(|(n, stale, _)| (n, stale))
                .collect();
            if fresh != fresh_before {
                for (n, stale, err) in snapshot.freshness() {
                    if fresh_before.iter().all(|(m, s)| *m != n || *s != stale) {
                        self.emit(
                            "collector",
                            &serde_json::json!({"collector": n, "stale": stale, "error": err}),
                        );
                    }
                }
                fresh_before = fresh;
            }
            self.emit("sample", &sample);
        }
    }

    /// Runs due tasks forever (checked once a second).
    pub async fn run_scheduler(self: Arc<Self>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            for name in self.tasks.due() {
                let me = self.clone();
                tokio::spawn(async move {
                    if let Ok(r) = me.tasks.run(&name, false, "schedule").await {
                        me.emit("task", &r);
                    }
                });
            }
        }
    }
}
