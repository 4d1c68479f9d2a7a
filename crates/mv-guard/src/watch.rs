//! The watcher: kernel uevents in, the kill chain out. Event-driven, no polling.
//!
//! [`Source::netlink`] binds a `NETLINK_KOBJECT_UEVENT` socket to the kernel's multicast group
//! and accepts only datagrams whose sender port is 0 (the kernel); [`Source::unix`] reads the same
//! bytes from a unix datagram socket (fixtures, machines where the test cannot create a
//! namespace). One `poll(2)` waits on the source and on a signalfd: termination signals are blocked
//! and handled per [`SignalPolicy`] (a watcher is hard to stop quietly), `SIGUSR1` re-reads the
//! configuration and stops the watcher when it has been disarmed. Re-reads go through
//! [`GuardConfig::load`], so a watcher running as root refuses a file another user could have
//! written ([`WatchEvent::ConfigRefused`]) and stays armed with the chain it started with.
//!
//! `send_to_kernel` asks the kernel to re-broadcast a uevent in the caller's network namespace
//! (the kernel's `uevent_net_rcv` path, root only): the tests and the benchmark use it, inside a
//! namespace of their own, to drive the real netlink path end to end.
//!
//! What this module is not: the decision (see [`crate::token`]) or the actions ([`crate::chain`]).

use crate::chain::{Chain, Record};
use crate::config::{GuardConfig, SignalPolicy};
pub use crate::pidfile::{Liveness, Pidfile, PidfileError};
use crate::token::{scan, Decision, TokenSpec, Tracker, Trigger, UsbDevice};
use crate::uevent::{Uevent, MAX_LEN};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// Where uevents come from.
#[derive(Debug)]
pub enum Source {
    /// The kernel's uevent multicast group.
    Netlink(netlink_sys::Socket),
    /// A unix datagram socket carrying the same bytes.
    Unix(UnixDatagram, PathBuf),
}

/// Why the watcher stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The netlink socket could not be opened or bound.
    #[error("cannot listen for kernel uevents (NETLINK_KOBJECT_UEVENT); the watcher needs root")]
    Netlink(#[source] std::io::Error),
    /// The unix socket could not be bound.
    #[error("cannot bind the unix datagram socket {0}")]
    Unix(PathBuf, #[source] std::io::Error),
    /// Reading from the source failed.
    #[error("reading uevents failed")]
    Recv(#[source] std::io::Error),
    /// Signals could not be set up.
    #[error("cannot set up signal handling")]
    Signals(#[source] nix::Error),
    /// The configuration has no token.
    #[error("the guard is not armed (no token in its configuration)")]
    NotArmed,
    /// The token in the configuration is invalid.
    #[error("invalid token in the configuration")]
    Token(#[source] crate::token::TokenError),
}

impl Source {
    /// Binds to the kernel's uevent group 1.
    pub fn netlink() -> Result<Source, WatchError> {
        let mut s = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_KOBJECT_UEVENT)
            .map_err(WatchError::Netlink)?;
        s.bind(&netlink_sys::SocketAddr::new(0, 1))
            .map_err(WatchError::Netlink)?;
        // A burst of events (a hub with many devices) must not be dropped.
        let _ = s.set_rx_buf_sz(1024 * 1024);
        Ok(Source::Netlink(s))
    }

    /// Binds a unix datagram socket at `path` (mode 0600: only root may feed it).
    pub fn unix(path: &Path) -> Result<Source, WatchError> {
        let _ = std::fs::remove_file(path);
        let s = UnixDatagram::bind(path).map_err(|e| WatchError::Unix(path.into(), e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| WatchError::Unix(path.into(), e))?;
        Ok(Source::Unix(s, path.into()))
    }

    /// A short description for logs.
    pub fn describe(&self) -> String {
        match self {
            Source::Netlink(_) => "netlink".into(),
            Source::Unix(_, p) => format!("unix:{}", p.display()),
        }
    }

    /// Receives one datagram; `None` when it did not come from the kernel.
    fn recv(&self, buf: &mut Vec<u8>) -> Result<Option<()>, WatchError> {
        buf.clear();
        match self {
            Source::Netlink(s) => {
                buf.reserve(MAX_LEN + 1);
                let (_, from) = s.recv_from(buf, 0).map_err(WatchError::Recv)?;
                Ok((from.port_number() == 0).then_some(()))
            }
            Source::Unix(s, _) => {
                buf.resize(MAX_LEN + 1, 0);
                let n = s.recv(buf).map_err(WatchError::Recv)?;
                buf.truncate(n);
                Ok(Some(()))
            }
        }
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Source::Netlink(s) => s.as_fd(),
            Source::Unix(s, _) => s.as_fd(),
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Source::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Sends `payload` (a uevent in kernel format) to the kernel, which re-broadcasts it with a
/// sequence number to every uevent listener of this network namespace, as from the kernel.
/// Returns the time just before the send (the benchmark's start).
pub(crate) fn send_to_kernel(payload: &[u8]) -> std::io::Result<std::time::SystemTime> {
    let s = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_KOBJECT_UEVENT)?;
    let len = u32::try_from(16 + payload.len())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut msg = Vec::with_capacity(16 + payload.len());
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&0x10u16.to_ne_bytes()); // NLMSG_MIN_TYPE: below it the kernel skips
    msg.extend_from_slice(&1u16.to_ne_bytes()); // NLM_F_REQUEST
    msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port (the kernel fills it)
    msg.extend_from_slice(payload);
    let at = std::time::SystemTime::now();
    s.send_to(&msg, &netlink_sys::SocketAddr::new(0, 0), 0)?;
    Ok(at)
}

/// Why a uevent could not be sent into another network namespace.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The namespace is the caller's own (or cannot be told apart from it): there the event would
    /// reach udevd and every other listener.
    #[error("{}: not another network namespace; refusing to emit where udevd would act on it", .0.display())]
    SameNamespace(PathBuf),
    /// Opening the namespace, entering it or sending failed (root only).
    #[error("cannot send the uevent")]
    Io(#[from] std::io::Error),
}

impl mv_core::Classify for SendError {
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            SendError::SameNamespace(_) => mv_core::ErrorClass::Usage,
            SendError::Io(_) => mv_core::ErrorClass::Failure,
        }
    }
}

/// `send_to_kernel` from inside the network namespace `ns` (e.g. `/proc/PID/ns/net` of a
/// watcher started with `unshare -n`), on a short-lived thread so the caller's namespace is
/// untouched. For tests and the benchmark; root only. Returns the time just before the send.
/// Refuses the caller's own namespace ([`SendError::SameNamespace`]).
pub fn send_in_netns(ns: &Path, payload: &[u8]) -> Result<std::time::SystemTime, SendError> {
    let target = std::fs::read_link(ns).ok();
    if target.is_none() || target == std::fs::read_link("/proc/self/ns/net").ok() {
        return Err(SendError::SameNamespace(ns.into()));
    }
    let ns = std::fs::File::open(ns)?;
    let payload = payload.to_vec();
    Ok(std::thread::spawn(move || {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        send_to_kernel(&payload)
    })
    .join()
    .map_err(|_| std::io::Error::other("sender thread panicked"))??)
}

/// Locks the watcher's memory (mlockall): a swapped-out kill switch would answer late, and its
/// pages never reach the swap device. Root only; the caller decides whether failure matters.
pub fn lock_memory() -> Result<(), nix::Error> {
    use nix::sys::mman::{mlockall, MlockAllFlags};
    mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE)
}

/// Tells a running watcher to re-read its configuration (SIGUSR1): a disarmed watcher stops.
pub fn notify_watcher(pid: i32) -> Result<(), nix::Error> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGUSR1)
}

/// Everything the watcher reports.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum WatchEvent {
    /// Listening.
    Ready {
        /// The token.
        token: String,
        /// Which token event fires (`remove`, `insert`, `any`).
        trigger: Trigger,
        /// Token devices present at start (their removal fires; their presence never does).
        present: Vec<UsbDevice>,
        /// The source.
        source: String,
    },
    /// A USB uevent and what was decided.
    Uevent {
        /// Kernel sequence number.
        seqnum: Option<u64>,
        /// Action.
        action: String,
        /// Device path.
        devpath: String,
        /// Decision.
        #[serde(flatten)]
        decision: Decision,
    },
    /// A datagram that is not a kernel uevent.
    Rejected {
        /// Why.
        why: String,
    },
    /// The chain starts.
    Fire {
        /// Why: `token-removed`, `token-inserted` or `signal`.
        cause: String,
    },
    /// One action of the chain.
    Action(Record),
    /// A signal arrived.
    Signal {
        /// Its name.
        name: String,
        /// What was done.
        handled: String,
    },
    /// The token left (or arrived) but the configuration says disarmed or paused.
    DisarmedIgnore,
    /// A re-read configuration was refused (broken, or as root writable by another user): the
    /// watcher keeps the chain it started with and stays armed.
    ConfigRefused {
        /// Why, with its causes.
        why: String,
    },
}

/// How a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The chain ran (in dry-run, or power-off failed).
    Fired,
    /// Disarmed through `SIGUSR1`.
    Disarmed,
}

/// Options of one watch.
#[derive(Debug)]
pub struct Watch {
    /// The configuration file, re-read before firing and on SIGUSR1 for `armed` and
    /// `paused_until` only; the chain and signal policy are the ones given at start. A re-read
    /// that fails (see [`WatchEvent::ConfigRefused`]) counts as armed.
    pub config_path: PathBuf,
    /// The chain.
    pub chain: Chain,
    /// Record instead of running.
    pub dry_run: bool,
}

/// What a re-read of the configuration says, failing closed: a missing file, a broken one, or
/// (as root) one another user could have written counts as armed and not paused. A refused file
/// is reported through `emit`; the chain is always the one the watcher started with.
fn reread(path: &Path, emit: &mut dyn FnMut(&WatchEvent)) -> Option<GuardConfig> {
    match GuardConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            emit(&WatchEvent::ConfigRefused {
                why: error_chain(&e),
            });
            None
        }
    }
}

/// `e` and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn armed_now(path: &Path, emit: &mut dyn FnMut(&WatchEvent)) -> bool {
    reread(path, emit).is_none_or(|c| c.armed)
}

/// Armed and not paused (fails closed like [`armed_now`]).
fn fires_now(path: &Path, emit: &mut dyn FnMut(&WatchEvent)) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(u64::MAX);
    reread(path, emit).is_none_or(|c| c.fires_at(now))
}

impl Watch {
    /// Watches until the token leaves (then runs the chain) or the guard is disarmed.
    pub fn run(
        &self,
        cfg: &GuardConfig,
        source: Source,
        emit: &mut dyn FnMut(&WatchEvent),
    ) -> Result<Outcome, WatchError> {
        let spec: TokenSpec = cfg
            .token_spec()
            .map_err(WatchError::Token)?
            .ok_or(WatchError::NotArmed)?;
        let mut mask = SigSet::empty();
        for s in [
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGUSR1,
        ] {
            mask.add(s);
        }
        mask.thread_block().map_err(WatchError::Signals)?;
        let sfd =
            SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).map_err(WatchError::Signals)?;

        let sys = self.chain.env.sys.clone();
        let mut tracker = Tracker::new(spec.clone(), scan(&sys)).with_trigger(cfg.trigger);
        emit(&WatchEvent::Ready {
            token: spec.to_string(),
            trigger: cfg.trigger,
            present: tracker.tokens_present().into_iter().cloned().collect(),
            source: source.describe(),
        });
        let mut buf = Vec::with_capacity(MAX_LEN + 1);
        loop {
            let (src_ready, sig_ready) = {
                let mut fds = [
                    PollFd::new(source.fd(), PollFlags::POLLIN),
                    PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(WatchError::Recv(e.into())),
                }
                let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                (ready(&fds[0]), ready(&fds[1]))
            };
            if src_ready {
                if source.recv(&mut buf)?.is_none() {
                    emit(&WatchEvent::Rejected {
                        why: "sender is not the kernel".into(),
                    });
                } else {
                    match Uevent::parse(&buf) {
                        Err(e) => emit(&WatchEvent::Rejected { why: e.to_string() }),
                        Ok(ev) if ev.is_usb_device() => {
                            let decision = tracker.on_event(&ev, &sys);
                            let fire = matches!(decision, Decision::Fire { .. });
                            emit(&WatchEvent::Uevent {
                                seqnum: ev.seqnum(),
                                action: ev.action.clone(),
                                devpath: ev.devpath.clone(),
                                decision,
                            });
                            if fire {
                                if fires_now(&self.config_path, emit) {
                                    let cause = if ev.action == "add" {
                                        "token-inserted"
                                    } else {
                                        "token-removed"
                                    };
                                    self.fire(cause, emit);
                                    return Ok(Outcome::Fired);
                                }
                                emit(&WatchEvent::DisarmedIgnore);
                            }
                        }
                        // Every other subsystem: not ours, not worth a line.
                        Ok(_) => {}
                    }
                }
            }
            if sig_ready {
                if let Ok(Some(info)) = sfd.read_signal() {
                    let sig = Signal::try_from(info.ssi_signo as i32).ok();
                    let name = sig.map(|s| s.as_str().to_string()).unwrap_or_default();
                    if sig == Some(Signal::SIGUSR1) {
                        if !armed_now(&self.config_path, emit) {
                            emit(&WatchEvent::Signal {
                                name,
                                handled: "disarmed: stopping".into(),
                            });
                            return Ok(Outcome::Disarmed);
                        }
                        emit(&WatchEvent::Signal {
                            name,
                            handled: "still armed: watching".into(),
                        });
                    } else if cfg.on_signal == SignalPolicy::Fire {
                        emit(&WatchEvent::Signal {
                            name,
                            handled: "on_signal = fire".into(),
                        });
                        self.fire("signal", emit);
                        return Ok(Outcome::Fired);
                    } else {
                        emit(&WatchEvent::Signal {
                            name,
                            handled: "ignored (use `multiverse guard disarm`)".into(),
                        });
                    }
                }
            }
        }
    }

    fn fire(&self, cause: &str, emit: &mut dyn FnMut(&WatchEvent)) {
        emit(&WatchEvent::Fire {
            cause: cause.into(),
        });
        self.chain
            .run(self.dry_run, |r| emit(&WatchEvent::Action(r.clone())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{Action, Env, Step};

    #[test]
    fn uevents_are_never_sent_into_our_own_namespace() {
        for ns in ["/proc/self/ns/net", "/nonexistent/ns/net"] {
            let e = send_in_netns(Path::new(ns), b"remove@/devices/none\0").unwrap_err();
            assert!(matches!(e, SendError::SameNamespace(_)), "{e}");
            assert!(e.to_string().contains("not another network namespace"));
            assert_eq!(mv_core::Classify::class(&e), mv_core::ErrorClass::Usage);
        }
    }

    /// The watcher on a unix source: decoys do nothing, the token's removal runs the chain.
    #[test]
    fn unix_source_fires_only_on_the_token() {
        let d = tempfile::tempdir().unwrap();
        let sys = d.path().join("sys");
        for (port, serial) in [("1-1", "TOKEN"), ("1-2", "OTHER")] {
            let dev = sys.join("devices/usb1").join(port);
            std::fs::create_dir_all(&dev).unwrap();
            std::fs::write(dev.join("idVendor"), "1050\n").unwrap();
            std::fs::write(dev.join("idProduct"), "0407\n").unwrap();
            std::fs::write(dev.join("serial"), format!("{serial}\n")).unwrap();
            std::fs::create_dir_all(sys.join("bus/usb/devices")).unwrap();
            std::os::unix::fs::symlink(
                format!("../../../devices/usb1/{port}"),
                sys.join("bus/usb/devices").join(port),
            )
            .unwrap();
        }
        let sock = d.path().join("uevents.sock");
        let cfg = GuardConfig {
            armed: true,
            token: Some("1050:0407:TOKEN".into()),
            ..GuardConfig::default()
        };
        let cfg_path = d.path().join("guard.toml");
        cfg.save(&cfg_path).unwrap();
        let watch = Watch {
            config_path: cfg_path,
            chain: Chain {
                steps: vec![Step {
                    action: Action::Sync,
                    timeout_ms: 1000,
                    fallback: None,
                }],
                env: Env {
                    sys: sys.clone(),
                    proc_root: "/proc".into(),
                    filler: None,
                },
            },
            dry_run: true,
        };
        let source = Source::unix(&sock).unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        let msgs = [
            Uevent::usb("remove", "/devices/usb1/1-2", 0x1050, 0x407, 1).encode(),
            Uevent::usb("add", "/devices/usb1/1-9", 0x1050, 0x407, 2).encode(),
            b"garbage".to_vec(),
            Uevent::usb("remove", "/devices/usb1/1-1", 0x1050, 0x407, 3).encode(),
        ];
        for m in &msgs {
            sender.send_to(m, &sock).unwrap();
        }
        let mut events = Vec::new();
        let out = watch
            .run(&cfg, source, &mut |e| {
                events.push(serde_json::to_value(e).unwrap())
            })
            .unwrap();
        assert_eq!(out, Outcome::Fired);
        let kinds: Vec<String> = events
            .iter()
            .map(|e| {
                format!(
                    "{}:{}:{}",
                    e["event"].as_str().unwrap(),
                    e["seqnum"],
                    e["decision"]
                        .as_str()
                        .or(e["command"].as_str())
                        .unwrap_or("")
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                "ready:null:",
                "uevent:1:ignore",
                "uevent:2:ignore",
                "rejected:null:",
                "uevent:3:fire",
                "fire:null:",
                "action:null:sync",
            ]
        );
    }

    /// The real netlink path: in a private network namespace (so no other listener on the
    /// machine sees it), a uevent sent to the kernel comes back from port 0 and is parsed.
    #[test]
    fn netlink_round_trip_in_a_private_namespace() {
        let got = std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET) needs root");
            let source = Source::netlink().unwrap();
            let ev = Uevent::usb("remove", "/devices/usb9/9-1", 0x1050, 0x407, 0);
            let mut payload = ev.encode();
            // The kernel appends its own SEQNUM.
            payload = payload
                .split(|b| *b == 0)
                .filter(|f| !f.is_empty() && !f.starts_with(b"SEQNUM="))
                .flat_map(|f| f.iter().copied().chain([0]))
                .collect();
            send_to_kernel(&payload).unwrap();
            let mut buf = Vec::new();
            loop {
                source.recv(&mut buf).unwrap().expect("from the kernel");
                let ev = Uevent::parse(&buf).unwrap();
                if ev.is_usb_device() {
                    return ev;
                }
            }
        })
        .join()
        .unwrap();
        assert_eq!(got.devpath, "/devices/usb9/9-1");
        assert_eq!(got.product(), Some((0x1050, 0x407)));
        assert!(got.seqnum().is_some());
    }
}
