//! `agent.toml`: what the agent is ([`Role`]), where it listens, what it samples and which
//! maintenance tasks it runs.
//!
//! Every field but `role` has a default, so the smallest config is
//!
//! ```toml
//! role = "service"
//! [api]
//! socket = "/run/multiverse/agent.sock"
//! ```
//!
//! Unknown keys are errors (a typo must not silently disable a task), reported with the file and
//! line. Durations are written as `500ms`, `30s`, `5m`, `2h`, `1d`.

use mv_core::duration::parse as parse_duration;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The machine role: decides the extra collectors and the `/v1/<role>/...` routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The bare-metal host: libvirt domains, and the guests' agents over virtio-serial.
    Host,
    /// The controller VM: the state of its configured services.
    Controller,
    /// A router VM: DHCP leases, nftables counters, conntrack, VPN/Tor.
    Router,
    /// A service VM: the state of its configured services.
    Service,
}

impl Role {
    /// The lowercase name used in URLs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Controller => "controller",
            Role::Router => "router",
            Role::Service => "service",
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The machine role.
    pub role: Role,
    /// The name shown in `/v1/info` and `multiverse top` (default: the kernel hostname).
    #[serde(default)]
    pub name: Option<String>,
    /// Listeners and their limits.
    #[serde(default)]
    pub api: ApiConfig,
    /// Sampling.
    #[serde(default)]
    pub stats: StatsConfig,
    /// Host role extras.
    #[serde(default)]
    pub host: HostConfig,
    /// Router role extras.
    #[serde(default)]
    pub router: RouterConfig,
    /// Controller and service role extras.
    #[serde(default)]
    pub services: ServicesConfig,
    /// Maintenance tasks.
    #[serde(default)]
    pub tasks: Vec<TaskConfig>,
}

/// `[api]`: the transports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The unix socket (mode 0660). Empty string: no unix socket.
    pub socket: PathBuf,
    /// The group owning the unix socket (default: the agent's own group).
    pub group: Option<String>,
    /// A TCP address (`127.0.0.1:7700`); requires `token_file`.
    pub tcp: Option<SocketAddr>,
    /// The bearer token for TCP, in a file (mode 0600; surrounding whitespace is ignored).
    pub token_file: Option<PathBuf>,
    /// Guest side of the virtio-serial channel (`/dev/virtio-ports/org.multiverse.agent.0`); a
    /// unix socket path also works (it is connected to, as a stand-in for the device).
    pub virtio_port: Option<PathBuf>,
    /// At most this many connections at once on each transport (the unix socket and TCP have
    /// separate slots); further clients wait in the kernel backlog.
    pub max_connections: usize,
    /// TCP: at most this many connections at once from one address; more are answered 503 and
    /// closed.
    pub max_connections_per_peer: usize,
    /// TCP: a client must send its request headers (which carry the token) within this time.
    pub tcp_header_timeout: String,
    /// At most this many `/v1/events` streams at once per transport (further subscribers get
    /// 503); always fewer than `max_connections`, so streams never hold every slot.
    pub max_event_streams: usize,
    /// A client must send its request headers within this time (slow clients are dropped).
    pub header_timeout: String,
    /// Largest request body accepted (bytes).
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            socket: PathBuf::from(mv_core::layout::AGENT_API_SOCKET),
            group: None,
            tcp: None,
            token_file: None,
            virtio_port: None,
            max_connections: 64,
            max_connections_per_peer: 8,
            tcp_header_timeout: "2s".into(),
            max_event_streams: 8,
            header_timeout: "5s".into(),
            max_body_bytes: 4096,
        }
    }
}

/// `[stats]`: sampling.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Sampling interval.
    pub interval: String,
    /// Samples kept in the history ring buffer.
    pub history: usize,
    /// Time limit for one collector run; past it the collector's stats are marked stale.
    pub collector_timeout: String,
    /// Where procfs is mounted (tests point this at a fixture).
    pub proc: PathBuf,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            interval: "5s".into(),
            history: 720,
            collector_timeout: "2s".into(),
            proc: PathBuf::from("/proc"),
        }
    }
}

/// `[host]`: libvirt and the guests' channels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// The libvirt URI.
    pub uri: String,
    /// Folder of the guests' virtio-serial channel sockets, one `<fqdn>.sock` per machine (the
    /// path the machines' rendered domain XML uses: `mv_core::layout::agent_socket`).
    pub channel_dir: PathBuf,
    /// Time limit for one proxied request to a guest.
    pub guest_timeout: String,
    /// The libvirt helper binary (default: `multiverse-agent-libvirt` beside the agent).
    pub helper: Option<PathBuf>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            uri: "qemu:///system".into(),
            channel_dir: PathBuf::from("/run/multiverse/agent"),
            guest_timeout: "5s".into(),
            helper: None,
        }
    }
}

/// `[router]`: what a router reports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// dnsmasq's lease file.
    pub leases: PathBuf,
    /// Read nftables counters (`nft --json list counters`).
    pub nft: bool,
    /// The VPN interface whose presence means "VPN up" (e.g. `wg0`).
    pub vpn_interface: Option<String>,
    /// A port Tor listens on (SOCKS or TransPort); "Tor up" means a socket listens there (read
    /// from /proc/net/tcp: no connection is made, which a TransPort would take for a loop).
    pub tor_socks: Option<SocketAddr>,
    /// Tor's control socket (`/run/tor/control` on Debian), for its bootstrap progress; the
    /// cookie is read from `control.authcookie` beside it.
    pub tor_control: Option<PathBuf>,
    /// The OpenVPN client's management socket (a unix socket: `management PATH unix` in its
    /// config), for the tunnel's state, how long it has been up, its address and bytes.
    pub openvpn_management: Option<PathBuf>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            leases: PathBuf::from("/var/lib/misc/dnsmasq.leases"),
            nft: true,
            vpn_interface: None,
            tor_socks: None,
            tor_control: None,
            openvpn_management: None,
        }
    }
}

/// The init system asked about service states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceManager {
    /// `rc-service NAME status` (Alpine).
    Openrc,
    /// `systemctl is-active NAME` (Debian).
    Systemd,
}

/// `[services]`: the services whose state a controller or service agent reports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServicesConfig {
    /// Which init system to ask.
    pub manager: ServiceManager,
    /// Service names.
    pub names: Vec<String>,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            manager: ServiceManager::Openrc,
            names: Vec::new(),
        }
    }
}

/// One `[[tasks]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TaskConfig {
    /// Unique name, used in `POST /v1/tasks/{name}/run`.
    pub name: String,
    /// How often to run it; absent: on demand only.
    #[serde(default)]
    pub every: Option<String>,
    /// Time limit of one run (default 10m).
    #[serde(default)]
    pub timeout: Option<String>,
    /// What it does.
    #[serde(flatten)]
    pub kind: TaskKind,
}

/// What a task does. Only these typed kinds exist: the API never runs arbitrary commands.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TaskKind {
    /// `fstrim` on the listed mount points (all mounted filesystems that support it if empty).
    Fstrim {
        /// Mount points.
        #[serde(default)]
        mountpoints: Vec<PathBuf>,
    },
    /// Delete the files (or folders) directly in `dir` older than `older_than`, always keeping the
    /// `keep` newest: throw-away overlays, old snapshots.
    Prune {
        /// The folder.
        dir: PathBuf,
        /// Age limit.
        older_than: String,
        /// How many of the newest entries survive regardless of age.
        #[serde(default)]
        keep: usize,
    },
    /// Rotate each file larger than `max_bytes`: `f` -> `f.1` -> ... -> `f.<keep>`.
    RotateLogs {
        /// The log files.
        files: Vec<PathBuf>,
        /// Size threshold.
        max_bytes: u64,
        /// Rotated copies kept.
        #[serde(default = "default_keep")]
        keep: usize,
    },
    /// Count pending package updates (`apt-get -s upgrade` or `apk version -l '<'`).
    CheckUpdates {
        /// `apt` or `apk`.
        manager: PackageManager,
    },
}

fn default_keep() -> usize {
    5
}

/// Package managers `check-updates` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    /// Debian.
    Apt,
    /// Alpine.
    Apk,
}

/// Errors loading `agent.toml`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax or an unknown/mistyped key.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl mv_core::Classify for ConfigError {
    /// A config that does not parse or validate is the person's to fix; an unreadable one is not.
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            ConfigError::Read { .. } => mv_core::ErrorClass::Failure,
            ConfigError::Parse { .. } | ConfigError::Invalid { .. } => mv_core::ErrorClass::Usage,
        }
    }
}

/// The config with its durations resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The parsed file.
    pub config: Config,
    /// `stats.interval`.
    pub interval: Duration,
    /// `stats.collector_timeout`.
    pub collector_timeout: Duration,
    /// `api.header_timeout`.
    pub header_timeout: Duration,
    /// `api.tcp_header_timeout` (never longer than `header_timeout`).
    pub tcp_header_timeout: Duration,
    /// `host.guest_timeout`.
    pub guest_timeout: Duration,
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Resolved, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Resolved, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                message: e.message().to_string(),
            }
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let dur = |what: &str, v: &str| {
            parse_duration(v).map_err(|_| {
                invalid(format!(
                    "{what} = {v:?} is not a duration (like 500ms, 30s, 5m, 2h, 1d)"
                ))
            })
        };
        let interval = dur("stats.interval", &config.stats.interval)?;
        if interval < Duration::from_millis(100) {
            return Err(invalid("stats.interval must be at least 100ms".into()));
        }
        let collector_timeout = dur("stats.collector_timeout", &config.stats.collector_timeout)?;
        let header_timeout = dur("api.header_timeout", &config.api.header_timeout)?;
        let tcp_header_timeout =
            dur("api.tcp_header_timeout", &config.api.tcp_header_timeout)?.min(header_timeout);
        let guest_timeout = dur("host.guest_timeout", &config.host.guest_timeout)?;
        if config.stats.history == 0 || config.stats.history > 100_000 {
            return Err(invalid("stats.history must be between 1 and 100000".into()));
        }
        if config.api.max_connections == 0 {
            return Err(invalid("api.max_connections must be at least 1".into()));
        }
        if config.api.max_connections_per_peer == 0 {
            return Err(invalid(
                "api.max_connections_per_peer must be at least 1".into(),
            ));
        }
        if config.api.tcp.is_some() && config.api.token_file.is_none() {
            return Err(invalid(
                "api.tcp needs api.token_file: the TCP listener never runs without a token".into(),
            ));
        }
        if config.api.socket.as_os_str().is_empty()
            && config.api.tcp.is_none()
            && config.api.virtio_port.is_none()
        {
            return Err(invalid(
                "no transport: set api.socket, api.tcp or api.virtio_port".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &config.tasks {
            if t.name.is_empty()
                || !t
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(format!(
                    "task name {:?}: use letters, digits, - and _",
                    t.name
                )));
            }
            if !seen.insert(t.name.clone()) {
                return Err(invalid(format!("task name {:?} is used twice", t.name)));
            }
            if let Some(e) = &t.every {
                dur(&format!("tasks.{}.every", t.name), e)?;
            }
            if let Some(e) = &t.timeout {
                dur(&format!("tasks.{}.timeout", t.name), e)?;
            }
            if let TaskKind::Prune { older_than, .. } = &t.kind {
                dur(&format!("tasks.{}.older_than", t.name), older_than)?;
            }
        }
        Ok(Resolved {
            config,
            interval,
            collector_timeout,
            header_timeout,
            tcp_header_timeout,
            guest_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Resolved, ConfigError> {
        Config::parse(s, Path::new("agent.toml"))
    }

    #[test]
    fn smallest_config() {
        let r = parse("role = \"service\"\n[api]\nsocket = \"/tmp/a.sock\"\n").unwrap();
        assert_eq!(r.config.role, Role::Service);
        assert_eq!(r.interval, Duration::from_secs(5));
        assert_eq!(r.config.stats.history, 720);
        assert!(r.config.tasks.is_empty());
    }

    #[test]
    fn unknown_key_names_line() {
        let e = parse("role = \"host\"\n[api]\nsockett = \"x\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("agent.toml:3:"), "{msg}");
        assert!(msg.contains("sockett"), "{msg}");
    }

    #[test]
    fn tcp_needs_token() {
        let e = parse("role = \"host\"\n[api]\ntcp = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(e.to_string().contains("token_file"));
    }

    #[test]
    fn tasks_parse() {
        let r = parse(
            r#"role = "router"
[[tasks]]
name = "prune-snap"
kind = "prune"
dir = "/x"
older_than = "7d"
keep = 2
every = "1h"
[[tasks]]
name = "updates"
kind = "check-updates"
manager = "apk"
"#,
        )
        .unwrap();
        assert_eq!(r.config.tasks.len(), 2);
        assert_eq!(
            r.config.tasks[1].kind,
            TaskKind::CheckUpdates {
                manager: PackageManager::Apk
            }
        );
    }

    #[test]
    fn bad_duration_and_duplicate_task() {
        let e = parse("role = \"host\"\n[stats]\ninterval = \"soon\"\n").unwrap_err();
        assert!(e.to_string().contains("stats.interval"));
        let e = parse(
            "role = \"host\"\n[[tasks]]\nname = \"a\"\nkind = \"fstrim\"\n[[tasks]]\nname = \"a\"\nkind = \"fstrim\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("twice"));
    }
}
