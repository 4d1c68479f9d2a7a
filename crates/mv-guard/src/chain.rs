//! The kill chain: what happens, in order, when the token leaves.
//!
//! A [`Chain`] is a list of [`Step`]s from the configuration. At fire time each step is expanded
//! into primitive [`Op`]s (the open LUKS devices and the active domains are listed then, not at
//! arm time) and run in its own thread; the caller waits at most the step's timeout, then kills
//! what the step spawned, runs its fallback (if any) and goes on: a hung `cryptsetup` or a `sync`
//! stuck in the kernel never blocks the power-off at the end. In dry-run, every op is recorded as
//! the exact command line it would run, and nothing is executed but the read-only listings.
//!
//! The memory fill (`clear-memory` without `init_on_free=1`, `wipe-memory`) runs in a child
//! process, the OOM killer's first choice, when [`Env::filler`] names one: see
//! [`fill_free_memory`].
//!
//! What this module is not: the trigger (see [`crate::watch`]).

mod fill;

pub use fill::{fill_free_memory, FillError, FillReport};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One configured action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// `virsh -c URI secret-undefine UUID` for every libvirt secret (disk keys first of all: a
    /// domain whose LUKS secret is gone cannot be started again).
    UndefineSecrets {
        /// Libvirt connection URI.
        uri: String,
    },
    /// `keyctl clear KEYRING` for each keyring (the kernel keys of the user running the chain).
    ClearKeyring {
        /// Keyrings as keyctl names them (`@u`, `@us`) or by id.
        #[serde(default = "default_keyrings")]
        keyrings: Vec<String>,
    },
    /// Overwrite with zeros and delete the unsealed secrets under these paths, after killing
    /// the processes that hold a secret in memory.
    DropSecrets {
        /// Files or folders.
        paths: Vec<PathBuf>,
        /// Executable file names (`/proc/PID/exe`'s last component) of processes holding a
        /// secret in memory, killed with SIGKILL (the default chain: `multiverse-agent`, which
        /// keeps its TCP token). Absent from a configuration (a `guard.toml` armed before this
        /// field existed): the default list (`multiverse-agent`); `processes = []`:
        /// none. Always written, so an empty list stays empty.
        #[serde(default = "default_secret_processes")]
        processes: Vec<String>,
    },
    /// `cryptsetup luksSuspend` every open LUKS device (found under /sys/block/dm-*/dm).
    LuksSuspend,
    /// `virsh destroy` every active domain (running, paused, ...) of this libvirt URI.
    DestroyDomains {
        /// Libvirt connection URI.
        uri: String,
    },
    /// Flush file system buffers.
    Sync,
    /// `echo 3 > /proc/sys/vm/drop_caches`.
    DropCaches,
    /// Fill free memory with a pattern so freed pages keep no secrets (in a child process when
    /// [`Env::filler`] names one, down to the kernel's reserve: see [`fill_free_memory`]).
    WipeMemory {
        /// MiB the fill leaves free on top of the kernel's reserve (the zones' `high`
        /// watermarks).
        reserve_mib: u64,
    },
    /// Wipe free memory: drop the page cache and compact memory (with `init_on_free=1` on the
    /// kernel command line the kernel zeroes every page it frees), and fill free memory with a
    /// pattern when the command line lacks `init_on_free=1` (as [`Action::WipeMemory`]).
    ClearMemory {
        /// MiB the fill leaves free on top of the kernel's reserve (default 0; files armed
        /// before the child filler hold 256, the old in-process margin, and keep it).
        #[serde(default = "default_reserve_mib")]
        reserve_mib: u64,
    },
    /// Power off at once through sysrq `o`.
    PowerOff,
    /// A custom command (argv, no shell).
    Command {
        /// Program and arguments.
        argv: Vec<String>,
    },
}

impl Action {
    /// The kebab-case name used in the configuration and in records.
    pub fn name(&self) -> &'static str {
        match self {
            Action::UndefineSecrets { .. } => "undefine-secrets",
            Action::ClearKeyring { .. } => "clear-keyring",
            Action::DropSecrets { .. } => "drop-secrets",
            Action::LuksSuspend => "luks-suspend",
            Action::DestroyDomains { .. } => "destroy-domains",
            Action::Sync => "sync",
            Action::DropCaches => "drop-caches",
            Action::WipeMemory { .. } => "wipe-memory",
            Action::ClearMemory { .. } => "clear-memory",
            Action::PowerOff => "power-off",
            Action::Command { .. } => "command",
        }
    }
}

/// A step: an action, its timeout and an optional fallback command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
    /// Milliseconds before the step is abandoned.
    pub timeout_ms: u64,
    /// Run when the step fails or times out (argv, no shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Vec<String>>,
}

fn default_keyrings() -> Vec<String> {
    vec!["@u".into(), "@us".into()]
}

/// The fill runs in a child the OOM killer picks first: no margin beyond the kernel's reserve.
fn default_reserve_mib() -> u64 {
    0
}

/// The libvirt URI the default chain acts on.
pub const DEFAULT_URI: &str = "qemu:///system";

/// The unsealed secrets the host holds as files: the secret folder and the agent's TCP token.
pub(crate) const DEFAULT_SECRET_PATHS: [&str; 2] =
    ["/run/multiverse/secrets", "/etc/multiverse/agent.token"];

/// The programs holding a secret in memory that the default chain's `drop-secrets` kills: the
/// agent keeps its TCP token (read from [`DEFAULT_SECRET_PATHS`]'s `agent.token`) for as long
/// as it runs, and copies of it sit in its request buffers.
///
/// Killed rather than asked to forget: a zeroize-on-signal in the agent would clear the token
/// it holds, but not the copies in buffers it already freed to its allocator (freed heap keeps
/// its bytes inside the process); SIGKILL returns every page of the process to the kernel, which
/// zeroes them with `init_on_free=1` (or `clear-memory` overwrites them), and it cannot be
/// delayed or ignored by the process. The agent is of no use once the chain runs (the power-off
/// follows).
pub(crate) const DEFAULT_SECRET_PROCESSES: [&str; 1] = ["multiverse-agent"];

fn default_secret_processes() -> Vec<String> {
    DEFAULT_SECRET_PROCESSES
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// The default chain, in the order of issue #16: every secret the host holds (libvirt secrets
/// first, so no encrypted disk can be opened again; then the secret files and the agent's token,
/// then the kernel keyring), the machines, the disks, free memory, power.
///
/// No `sync`: after `luks-suspend` a `sync` touching a suspended device hangs until its timeout,
/// and the power-off needs no disk.
pub fn default_steps() -> Vec<Step> {
    let s = |action, timeout_ms| Step {
        action,
        timeout_ms,
        fallback: None,
    };
    vec![
        s(
            Action::UndefineSecrets {
                uri: DEFAULT_URI.into(),
            },
            5_000,
        ),
        s(
            Action::DropSecrets {
                paths: DEFAULT_SECRET_PATHS.iter().map(PathBuf::from).collect(),
                processes: default_secret_processes(),
            },
            2_000,
        ),
        s(
            Action::ClearKeyring {
                keyrings: default_keyrings(),
            },
            2_000,
        ),
        s(
            Action::DestroyDomains {
                uri: DEFAULT_URI.into(),
            },
            10_000,
        ),
        s(Action::LuksSuspend, 5_000),
        s(
            Action::ClearMemory {
                reserve_mib: default_reserve_mib(),
            },
            10_000,
        ),
        Step {
            action: Action::PowerOff,
            timeout_ms: 3_000,
            fallback: Some(vec!["poweroff".into(), "-f".into()]),
        },
    ]
}

/// Whether the kernel command line (`<proc>/cmdline`) turns `init_on_free` on: the last
/// `init_on_free=` wins, with the kernel's boolean spellings. `None` when the file is unreadable.
pub fn init_on_free(proc_root: &Path) -> Option<bool> {
    let cmdline = std::fs::read_to_string(proc_root.join("cmdline")).ok()?;
    Some(mv_core::cmdline::init_on_free(&cmdline))
}

/// Where the system files are (tests point these at fixtures) and which tools to run.
#[derive(Debug, Clone)]
pub struct Env {
    /// sysfs root (`/sys`).
    pub sys: PathBuf,
    /// procfs root (`/proc`).
    pub proc_root: PathBuf,
    /// The memory filler's command line (argv, no shell): a program that runs
    /// [`fill_free_memory`] with the arguments `--proc DIR --reserve-mib N --lower-watermarks`
    /// appended (the CLI's
    /// `/proc/self/exe guard __fill-memory`). `None`: the fill runs in the chain's own process
    /// and leaves at least 256 MiB free, so the OOM killer has no reason to pick the watcher.
    pub filler: Option<Vec<String>>,
}

impl Default for Env {
    fn default() -> Self {
        Env {
            sys: PathBuf::from("/sys"),
            proc_root: PathBuf::from("/proc"),
            filler: None,
        }
    }
}

/// A primitive operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Run a program.
    Exec(Vec<String>),
    /// Write a short string to a (proc) file.
    Write {
        /// The file.
        path: PathBuf,
        /// What to write.
        data: String,
    },
    /// sync(2).
    Sync,
    /// Overwrite and delete a file or folder tree.
    WipeTree(PathBuf),
    /// SIGKILL to every process whose executable (`/proc/PID/exe`) has this file name.
    KillExe(String),
    /// Fill free memory.
    WipeMemory {
        /// MiB to leave.
        reserve_mib: u64,
    },
}

fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

impl std::fmt::Display for Op {
    /// The exact command line (shell syntax) the op amounts to.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Exec(argv) => {
                let q: Vec<String> = argv.iter().map(|a| quote(a)).collect();
                f.write_str(&q.join(" "))
            }
            Op::Write { path, data } => {
                write!(
                    f,
                    "echo {} > {}",
                    quote(data),
                    quote(&path.display().to_string())
                )
            }
            Op::Sync => f.write_str("sync"),
            Op::WipeTree(p) => write!(f, "wipe-and-remove {}", quote(&p.display().to_string())),
            Op::KillExe(name) => write!(f, "kill-processes -KILL --exe {}", quote(name)),
            Op::WipeMemory { reserve_mib } => {
                write!(f, "wipe-free-memory --reserve-mib {reserve_mib}")
            }
        }
    }
}

/// The open LUKS devices: `<sys>/block/*/dm/uuid` starting with `CRYPT-LUKS`, by dm name.
pub(crate) fn open_luks_devices(sys: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(sys.join("block")) {
        for e in entries.flatten() {
            let dm = e.path().join("dm");
            let uuid = std::fs::read_to_string(dm.join("uuid")).unwrap_or_default();
            if uuid.starts_with("CRYPT-LUKS") {
                if let Ok(name) = std::fs::read_to_string(dm.join("name")) {
                    out.push(name.trim().to_string());
                }
            }
        }
    }
    out.sort();
    out
}

/// Why a step could not be expanded or an op failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A program could not start.
    #[error("cannot run {0}")]
    Spawn(String, #[source] std::io::Error),
    /// A program exited with an error.
    #[error("{0} exited with {1}")]
    Status(String, std::process::ExitStatus),
    /// A file operation failed.
    #[error("cannot write {0}")]
    Io(String, #[source] std::io::Error),
    /// A listing program failed (its last line of stderr).
    #[error("{0} failed: {1}")]
    Listing(String, String),
}

/// Runs a program, publishing its PID so a timed-out step can kill it.
/// Runs `argv` with stdin from /dev/null and the given stdout and stderr, its PID published in
/// the step's `pid_slot` while it runs (so a timed-out step kills it); returns the printed
/// command line and what `wait` returned. The one way the chain starts a child.
fn run_published(
    argv: &[String],
    stdout: Stdio,
    stderr: Stdio,
    pid_slot: &Mutex<Option<u32>>,
) -> Result<(String, std::process::Output), OpError> {
    let line = Op::Exec(argv.to_vec()).to_string();
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| OpError::Spawn(line.clone(), std::io::ErrorKind::InvalidInput.into()))?;
    let child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| OpError::Spawn(line.clone(), e))?;
    if let Ok(mut slot) = pid_slot.lock() {
        *slot = Some(child.id());
    }
    let out = child.wait_with_output();
    if let Ok(mut slot) = pid_slot.lock() {
        *slot = None;
    }
    match out {
        Ok(out) => Ok((line, out)),
        Err(e) => Err(OpError::Spawn(line, e)),
    }
}

fn exec(argv: &[String], pid_slot: &Mutex<Option<u32>>, capture: bool) -> Result<String, OpError> {
    let stdout = if capture {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let (line, out) = run_published(argv, stdout, Stdio::null(), pid_slot)?;
    if !out.status.success() {
        return Err(OpError::Status(line, out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a listing program, publishing its PID; returns (success, stdout, stderr).
fn exec_listing(
    argv: &[String],
    pid_slot: &Mutex<Option<u32>>,
) -> Result<(bool, String, String), OpError> {
    let (_, out) = run_published(argv, Stdio::piped(), Stdio::piped(), pid_slot)?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The UUIDs in `virsh secret-list` output (a header, a rule of dashes, then `UUID  USAGE` rows).
pub fn parse_secret_list(out: &str) -> Vec<String> {
    let is_uuid = |t: &str| {
        t.len() == 36
            && t.char_indices().all(|(i, c)| {
                if [8, 13, 18, 23].contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            })
    };
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|t| is_uuid(t))
        .map(str::to_string)
        .collect()
}

/// The libvirt secrets of `uri`. A driver without secrets (`test:///`, `qemu:///embed`) holds
/// none: that is an empty list, not a failure.
fn list_secrets(uri: &str, pid_slot: &Mutex<Option<u32>>) -> Result<Vec<String>, OpError> {
    let argv: Vec<String> = vec![
        "virsh".into(),
        "-c".into(),
        uri.into(),
        "secret-list".into(),
    ];
    let (ok, out, err) = exec_listing(&argv, pid_slot)?;
    if ok {
        Ok(parse_secret_list(&out))
    } else if err.contains("not supported by the connection driver") {
        Ok(Vec::new())
    } else {
        Err(OpError::Listing(
            Op::Exec(argv).to_string(),
            err.lines().last().unwrap_or("").trim().to_string(),
        ))
    }
}

/// `multiverse pass lock --all`: this binary when it is `multiverse`, else the one on PATH.
fn pass_lock_argv() -> Vec<String> {
    let exe = std::env::current_exe()
        .ok()
        .filter(|p| p.file_name().is_some_and(|n| n == "multiverse"))
        .map_or_else(|| "multiverse".to_string(), |p| p.display().to_string());
    vec![exe, "pass".into(), "lock".into(), "--all".into()]
}

/// Expands a step into ops. Listings (LUKS devices, active domains) are read-only and run even
/// in dry-run, so the record shows the real targets.
fn expand(action: &Action, env: &Env, pid_slot: &Mutex<Option<u32>>) -> Result<Vec<Op>, OpError> {
    Ok(match action {
        Action::UndefineSecrets { uri } => list_secrets(uri, pid_slot)?
            .into_iter()
            .map(|uuid| {
                Op::Exec(vec![
                    "virsh".into(),
                    "-c".into(),
                    uri.clone(),
                    "secret-undefine".into(),
                    uuid,
                ])
            })
            .collect(),
        Action::ClearKeyring { keyrings } => keyrings
            .iter()
            .map(|k| Op::Exec(vec!["keyctl".into(), "clear".into(), k.clone()]))
            .collect(),
        Action::ClearMemory { reserve_mib } => {
            let vm = env.proc_root.join("sys/vm");
            let mut ops = vec![
                Op::Write {
                    path: vm.join("drop_caches"),
                    data: "3".into(),
                },
                Op::Write {
                    path: vm.join("compact_memory"),
                    data: "1".into(),
                },
            ];
            // Without init_on_free the freed pages keep their bytes until reused: overwrite them.
            if init_on_free(&env.proc_root) != Some(true) {
                ops.push(Op::WipeMemory {
                    reserve_mib: *reserve_mib,
                });
            }
            ops
        }
        Action::DropSecrets { paths, processes } => {
            // First of all, the pass keys unlocked for the session (every user's cache agent),
            // then the processes holding a secret in memory (the agent's token), then the files.
            let mut ops = vec![Op::Exec(pass_lock_argv())];
            ops.extend(processes.iter().cloned().map(Op::KillExe));
            ops.extend(paths.iter().cloned().map(Op::WipeTree));
            ops
        }
        Action::LuksSuspend => open_luks_devices(&env.sys)
            .into_iter()
            .map(|n| Op::Exec(vec!["cryptsetup".into(), "luksSuspend".into(), n]))
            .collect(),
        Action::DestroyDomains { uri } => {
            let list = exec(
                &[
                    "virsh".into(),
                    "-c".into(),
                    uri.clone(),
                    // Every active domain: a paused one holds its memory (and its disk
                    // keys) as a running one does, and `--state-running` would miss it.
                    "list".into(),
                    "--name".into(),
                ],
                pid_slot,
                true,
            )?;
            list.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|name| {
                    Op::Exec(vec![
                        "virsh".into(),
                        "-c".into(),
                        uri.clone(),
                        "destroy".into(),
                        name.to_string(),
                    ])
                })
                .collect()
        }
        Action::Sync => vec![Op::Sync],
        Action::DropCaches => vec![Op::Write {
            path: env.proc_root.join("sys/vm/drop_caches"),
            data: "3".into(),
        }],
        Action::WipeMemory { reserve_mib } => vec![Op::WipeMemory {
            reserve_mib: *reserve_mib,
        }],
        Action::PowerOff => vec![
            Op::Write {
                path: env.proc_root.join("sys/kernel/sysrq"),
                data: "1".into(),
            },
            Op::Write {
                path: env.proc_root.join("sysrq-trigger"),
                data: "o".into(),
            },
        ],
        Action::Command { argv } => vec![Op::Exec(argv.clone())],
    })
}

/// Sends SIGKILL to every process (but this one) whose executable, `<proc>/PID/exe`, has the file
/// name `name` (also when the file was replaced since: `NAME (deleted)`). Kernel threads and
/// processes gone meanwhile are skipped. Returns how many were signalled.
fn kill_exe(proc_root: &Path, name: &str) -> std::io::Result<usize> {
    use nix::sys::signal::{kill, Signal};
    let me = std::process::id();
    let deleted = format!("{name} (deleted)");
    let mut n = 0;
    for e in std::fs::read_dir(proc_root)?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid <= 0 || pid.unsigned_abs() == me {
            continue;
        }
        let Ok(exe) = std::fs::read_link(e.path().join("exe")) else {
            continue;
        };
        let Some(file) = exe.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        if file != name && file != deleted {
            continue;
        }
        match kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) => n += 1,
            Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

fn wipe_tree(p: &Path) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        for e in std::fs::read_dir(p)? {
            wipe_tree(&e?.path())?;
        }
        std::fs::remove_dir(p)
    } else {
        if meta.is_file() {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).open(p)?;
            let zeros = vec![0u8; 64 * 1024];
            let mut left = meta.len();
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            f.sync_all()?;
        }
        std::fs::remove_file(p)
    }
}

/// The fill, in the child [`Env::filler`] names (its pid published so a timed-out step kills
/// it; its stderr, the [`FillReport`] line, goes to the chain's stderr), else in this process
/// leaving at least [`fill::IN_PROCESS_FLOOR_MIB`].
fn wipe_memory(env: &Env, reserve_mib: u64, pid_slot: &Mutex<Option<u32>>) -> Result<(), OpError> {
    let Some(filler) = &env.filler else {
        let reserve_kib = (fill::kernel_reserve_kib(&env.proc_root) + reserve_mib * 1024)
            .max(fill::IN_PROCESS_FLOOR_MIB * 1024);
        fill::fill(&env.proc_root, reserve_kib, None);
        return Ok(());
    };
    let mut argv = filler.clone();
    argv.extend([
        "--proc".to_string(),
        env.proc_root.display().to_string(),
        "--reserve-mib".to_string(),
        reserve_mib.to_string(),
        "--lower-watermarks".to_string(),
    ]);
    let (line, out) = run_published(&argv, Stdio::null(), Stdio::inherit(), pid_slot)?;
    let status = out.status;
    if status.success() {
        Ok(())
    } else {
        // Killed by SIGKILL outside a timeout: the OOM killer took the filler, as designed.
        Err(OpError::Status(line, status))
    }
}

fn run_op(op: &Op, env: &Env, pid_slot: &Mutex<Option<u32>>) -> Result<(), OpError> {
    match op {
        Op::Exec(argv) => exec(argv, pid_slot, false).map(|_| ()),
        Op::Write { path, data } => {
            std::fs::write(path, data).map_err(|e| OpError::Io(path.display().to_string(), e))
        }
        Op::Sync => {
            nix::unistd::sync();
            Ok(())
        }
        Op::WipeTree(p) => wipe_tree(p).map_err(|e| OpError::Io(p.display().to_string(), e)),
        Op::KillExe(name) => kill_exe(&env.proc_root, name)
            .map(|_| ())
            .map_err(|e| OpError::Io(op.to_string(), e)),
        Op::WipeMemory { reserve_mib } => wipe_memory(env, *reserve_mib, pid_slot),
    }
}

/// What happened to one op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Recorded, not run.
    DryRun,
    /// Ran and succeeded.
    Ok,
    /// Ran and failed.
    Failed(String),
    /// The step ran out of time.
    Timeout,
}

/// One line of the chain's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// The step's action name.
    pub step: String,
    /// The command line (or a description for a step with nothing to do).
    pub command: String,
    /// Outcome.
    pub status: Status,
    /// Whether this is the step's fallback.
    pub fallback: bool,
    /// Wall-clock time, nanoseconds since the epoch (for latency measurements).
    pub at_ns: u128,
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

enum Msg {
    Record(Record),
    Done(bool),
}

/// The configured chain with its environment.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Where system files are.
    pub env: Env,
}

impl Chain {
    /// Whether the chain ends the machine ([`Action::PowerOff`]). sysrq `o` only queues the
    /// power-off: a watcher that fired such a chain is still up for a moment (~50 ms in the lab)
    /// and should wait before calling the power-off failed.
    pub fn powers_off(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.action, Action::PowerOff))
    }

    /// Runs (or in dry-run records) every step in order; `emit` sees each record as it happens.
    pub fn run(&self, dry_run: bool, mut emit: impl FnMut(&Record)) -> Vec<Record> {
        let mut all = Vec::new();
        for step in &self.steps {
            let ok = self.run_step(step, dry_run, &mut |r| {
                emit(&r);
                all.push(r);
            });
            if let Some(fb) = &step.fallback {
                if dry_run {
                    let r = Record {
                        step: step.action.name().into(),
                        command: Op::Exec(fb.clone()).to_string(),
                        status: Status::DryRun,
                        fallback: true,
                        at_ns: now_ns(),
                    };
                    emit(&r);
                    all.push(r);
                } else if !ok {
                    let fb_step = Step {
                        action: Action::Command { argv: fb.clone() },
                        timeout_ms: step.timeout_ms,
                        fallback: None,
                    };
                    let name = step.action.name();
                    self.run_step(&fb_step, false, &mut |mut r| {
                        r.step = name.into();
                        r.fallback = true;
                        emit(&r);
                        all.push(r);
                    });
                }
            }
        }
        all
    }

    /// One step in its own thread, waited for at most its timeout. Returns success.
    fn run_step(&self, step: &Step, dry_run: bool, sink: &mut dyn FnMut(Record)) -> bool {
        let (tx, rx) = mpsc::channel::<Msg>();
        let pid_slot = Arc::new(Mutex::new(None::<u32>));
        let (action, env, slot) = (step.action.clone(), self.env.clone(), pid_slot.clone());
        let name = step.action.name().to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("guard-{name}"))
            .spawn(move || {
                let record = |command: String, status| {
                    Msg::Record(Record {
                        step: action.name().into(),
                        command,
                        status,
                        fallback: false,
                        at_ns: now_ns(),
                    })
                };
                let ops = match expand(&action, &env, &slot) {
                    Ok(ops) => ops,
                    Err(e) => {
                        let _ = tx.send(record(
                            format!("({})", action.name()),
                            Status::Failed(e.to_string()),
                        ));
                        let _ = tx.send(Msg::Done(false));
                        return;
                    }
                };
                if ops.is_empty() {
                    let _ = tx.send(record(
                        "(nothing to do)".into(),
                        if dry_run { Status::DryRun } else { Status::Ok },
                    ));
                }
                let mut ok = true;
                for op in &ops {
                    let status = if dry_run {
                        Status::DryRun
                    } else {
                        match run_op(op, &env, &slot) {
                            Ok(()) => Status::Ok,
                            Err(e) => {
                                ok = false;
                                Status::Failed(e.to_string())
                            }
                        }
                    };
                    let _ = tx.send(record(op.to_string(), status));
                }
                let _ = tx.send(Msg::Done(ok));
            });
        if spawned.is_err() {
            sink(Record {
                step: name,
                command: "(cannot start a thread)".into(),
                status: Status::Failed("thread spawn failed".into()),
                fallback: false,
                at_ns: now_ns(),
            });
            return false;
        }
        let deadline = Instant::now() + Duration::from_millis(step.timeout_ms);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Msg::Record(r)) => sink(r),
                Ok(Msg::Done(ok)) => return ok,
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Kill what the step is waiting on; the thread itself is abandoned.
                    if let Some(pid) = pid_slot.lock().ok().and_then(|s| *s) {
                        if let Ok(pid) = i32::try_from(pid) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                    sink(Record {
                        step: name,
                        command: format!("(gave up after {} ms)", step.timeout_ms),
                        status: Status::Timeout,
                        fallback: false,
                        at_ns: now_ns(),
                    });
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_sys() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (dm, uuid, name) in [
            ("dm-0", "CRYPT-LUKS2-abc-cr_root", "cr_root"),
            ("dm-1", "LVM-xyz", "vg-swap"),
            ("dm-2", "CRYPT-LUKS1-def-cr_home", "cr_home"),
        ] {
            let p = d.path().join("block").join(dm).join("dm");
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("uuid"), format!("{uuid}\n")).unwrap();
            std::fs::write(p.join("name"), format!("{name}\n")).unwrap();
        }
        d
    }

    #[test]
    fn lists_only_luks_mappings() {
        let d = fixture_sys();
        assert_eq!(open_luks_devices(d.path()), vec!["cr_home", "cr_root"]);
    }

    /// A fixture procfs holding only a kernel command line.
    fn fixture_proc(cmdline: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cmdline"), format!("{cmdline}\n")).unwrap();
        d
    }

    #[cfg(feature = "system-tests")]
    /// The default chain on libvirt's test driver (no secrets, one running domain `test`).
    fn default_on_test_driver() -> Vec<Step> {
        let mut steps = default_steps();
        for s in &mut steps {
            if let Action::UndefineSecrets { uri } | Action::DestroyDomains { uri } = &mut s.action
            {
                *uri = "test:///default".into();
            }
        }
        steps
    }

    #[cfg(feature = "system-tests")] // runs a real tool
    #[test]
    fn dry_run_records_the_default_chain_in_the_issues_order() {
        mv_testkit::require_tool("virsh");
        let sys = fixture_sys();
        for (cmdline, fill) in [
            ("ro quiet init_on_free=1", false),
            ("ro init_on_free=1 init_on_free=0", true),
            ("ro quiet -- init_on_free=1", true),
        ] {
            let proc_root = fixture_proc(cmdline);
            let p = proc_root.path().display().to_string();
            let chain = Chain {
                steps: default_on_test_driver(),
                env: Env {
                    sys: sys.path().to_path_buf(),
                    proc_root: proc_root.path().to_path_buf(),
                    filler: None,
                },
            };
            let rec = chain.run(true, |_| {});
            let got: Vec<(String, String)> = rec
                .iter()
                .map(|r| (r.step.clone(), r.command.clone()))
                .collect();
            let mut want: Vec<(&str, String)> = vec![
                ("undefine-secrets", "(nothing to do)".into()),
                ("drop-secrets", "multiverse pass lock --all".into()),
                (
                    "drop-secrets",
                    "kill-processes -KILL --exe multiverse-agent".into(),
                ),
                (
                    "drop-secrets",
                    "wipe-and-remove /run/multiverse/secrets".into(),
                ),
                (
                    "drop-secrets",
                    "wipe-and-remove /etc/multiverse/agent.token".into(),
                ),
                ("clear-keyring", "keyctl clear @u".into()),
                ("clear-keyring", "keyctl clear @us".into()),
                (
                    "destroy-domains",
                    "virsh -c test:///default destroy test".into(),
                ),
                ("luks-suspend", "cryptsetup luksSuspend cr_home".into()),
                ("luks-suspend", "cryptsetup luksSuspend cr_root".into()),
                ("clear-memory", format!("echo 3 > {p}/sys/vm/drop_caches")),
                (
                    "clear-memory",
                    format!("echo 1 > {p}/sys/vm/compact_memory"),
                ),
            ];
            if fill {
                want.push(("clear-memory", "wipe-free-memory --reserve-mib 0".into()));
            }
            want.extend([
                ("power-off", format!("echo 1 > {p}/sys/kernel/sysrq")),
                ("power-off", format!("echo o > {p}/sysrq-trigger")),
                ("power-off", "poweroff -f".into()),
            ]);
            let want: Vec<(String, String)> =
                want.into_iter().map(|(a, b)| (a.to_string(), b)).collect();
            assert_eq!(got, want, "{cmdline}");
            assert!(rec.iter().all(|r| r.status == Status::DryRun), "{rec:?}");
            assert!(rec.last().unwrap().fallback);
            assert_eq!(rec.iter().filter(|r| r.fallback).count(), 1);
        }
    }

    #[test]
    fn init_on_free_is_read_from_procfs() {
        assert_eq!(
            init_on_free(fixture_proc("ro init_on_free=1").path()),
            Some(true)
        );
        assert_eq!(init_on_free(fixture_proc("ro").path()), Some(false));
        assert_eq!(init_on_free(Path::new("/nonexistent-proc")), None);
    }

    #[test]
    fn secret_list_output_is_parsed_to_uuids() {
        let out = " UUID                                   Usage\n\
                   --------------------------------------------------------------------\n \
                   0b1e6c4c-1f7e-4b1a-9a7c-3c2f6f0e9a11   volume /var/multiverse/storage/c.qcow2\n \
                   9f86d081-884c-4d63-a5a1-2b2b2b2b2b2b   ceph client.admin\n\n";
        assert_eq!(
            parse_secret_list(out),
            vec![
                "0b1e6c4c-1f7e-4b1a-9a7c-3c2f6f0e9a11",
                "9f86d081-884c-4d63-a5a1-2b2b2b2b2b2b"
            ]
        );
        assert!(parse_secret_list(" UUID   Usage\n-----\n\n").is_empty());
    }

    /// The default power-off step for real against a fixture procfs where sysrq cannot be
    /// written: its fallback runs (here a marker instead of `poweroff -f`). A failed step (not
    /// only a timed-out one) runs its fallback; a step that succeeds does not.
    #[cfg(feature = "system-tests")] // runs a real tool
    #[test]
    fn a_failed_step_runs_its_fallback_and_a_good_one_does_not() {
        let proc_root = fixture_proc("ro");
        // `sysrq-trigger` is a folder: the write fails, as on a kernel without sysrq.
        std::fs::create_dir_all(proc_root.path().join("sysrq-trigger")).unwrap();
        std::fs::create_dir_all(proc_root.path().join("sys/kernel")).unwrap();
        let marker = proc_root.path().join("fallback-ran");
        let unused = proc_root.path().join("fallback-not-run");
        let mut power_off = default_steps().pop().unwrap();
        assert_eq!(power_off.action, Action::PowerOff);
        power_off.fallback = Some(vec!["touch".into(), marker.display().to_string()]);
        let chain = Chain {
            steps: vec![
                Step {
                    action: Action::Command {
                        argv: vec!["true".into()],
                    },
                    timeout_ms: 2_000,
                    fallback: Some(vec!["touch".into(), unused.display().to_string()]),
                },
                power_off,
            ],
            env: Env {
                sys: "/nonexistent-sys".into(),
                proc_root: proc_root.path().to_path_buf(),
                filler: None,
            },
        };
        let rec = chain.run(false, |_| {});
        let got: Vec<(String, bool, bool)> = rec
            .iter()
            .map(|r| (r.step.clone(), r.fallback, matches!(r.status, Status::Ok)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("command".into(), false, true),
                ("power-off".into(), false, true),
                ("power-off".into(), false, false),
                ("power-off".into(), true, true),
            ],
            "{rec:?}"
        );
        assert!(marker.exists() && !unused.exists());
    }

    /// `clear-keyring` with the real keyctl on a keyring of our own (not root's @u, which other
    /// processes on this machine may use): the key is unlinked and unreadable through it.
    #[cfg(feature = "system-tests")] // runs a real tool
    #[test]
    fn clear_keyring_runs_keyctl_for_real() {
        let keyctl = mv_testkit::require_tool("keyctl");
        let run = |args: &[&str]| {
            let out = Command::new(&keyctl).args(args).output().unwrap();
            assert!(out.status.success(), "keyctl {args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let ring = run(&[
            "newring",
            &format!("mv-guard-test-{}", std::process::id()),
            "@u",
        ]);
        let key = run(&["add", "user", "mv-guard-marker", "s3cret-marker", &ring]);
        assert_eq!(run(&["print", &key]), "s3cret-marker");
        assert!(run(&["list", &ring]).contains(&key));
        let chain = Chain {
            steps: vec![Step {
                action: Action::ClearKeyring {
                    keyrings: vec![ring.clone()],
                },
                timeout_ms: 2_000,
                fallback: None,
            }],
            env: Env::default(),
        };
        let rec = chain.run(false, |_| {});
        assert_eq!(rec.len(), 1, "{rec:?}");
        assert_eq!(rec[0].command, format!("keyctl clear {ring}"));
        assert_eq!(rec[0].status, Status::Ok);
        assert_eq!(run(&["list", &ring]), "keyring is empty");
        run(&["unlink", &ring, "@u"]);
    }

    #[cfg(feature = "system-tests")] // runs a real tool
    #[test]
    fn a_hung_step_times_out_and_its_fallback_runs() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("fallback-ran");
        let chain = Chain {
            steps: vec![
                Step {
                    action: Action::Command {
                        argv: vec!["sleep".into(), "30".into()],
                    },
                    timeout_ms: 200,
                    fallback: Some(vec!["touch".into(), marker.display().to_string()]),
                },
                Step {
                    action: Action::Command {
                        argv: vec!["true".into()],
                    },
                    timeout_ms: 2000,
                    fallback: None,
                },
            ],
            env: Env::default(),
        };
        let started = Instant::now();
        let rec = chain.run(false, |_| {});
        assert!(started.elapsed() < Duration::from_secs(10));
        let statuses: Vec<(String, Status, bool)> = rec
            .iter()
            .map(|r| (r.command.clone(), r.status.clone(), r.fallback))
            .collect();
        assert_eq!(
            statuses,
            vec![
                ("(gave up after 200 ms)".into(), Status::Timeout, false),
                (format!("touch {}", marker.display()), Status::Ok, true),
                ("true".into(), Status::Ok, false),
            ]
        );
        assert!(marker.exists());
    }

    #[test]
    fn drop_secrets_wipes_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("secrets");
        std::fs::create_dir_all(s.join("sub")).unwrap();
        std::fs::write(s.join("sub/key"), b"topsecret").unwrap();
        let chain = Chain {
            steps: vec![Step {
                action: Action::DropSecrets {
                    paths: vec![s.clone(), d.path().join("absent")],
                    processes: Vec::new(),
                },
                timeout_ms: 2000,
                fallback: None,
            }],
            env: Env::default(),
        };
        let rec = chain.run(false, |_| {});
        // (`multiverse pass lock --all` may be absent where unit tests run: its record may fail.)
        assert!(
            rec.iter()
                .filter(|r| !r.command.ends_with("pass lock --all"))
                .all(|r| r.status == Status::Ok),
            "{rec:?}"
        );
        assert!(rec[0].command.ends_with("pass lock --all"), "{rec:?}");
        assert!(!s.exists());
    }

    #[test]
    fn drop_secrets_kills_the_named_programs_only() {
        use std::os::unix::process::ExitStatusExt;
        // A fixture procfs naming three children of this test: two "agents" (one whose binary
        // was replaced since it started) and one other program. Only the agents get SIGKILL.
        let proc_root = tempfile::tempdir().unwrap();
        let spawn = || Command::new("sleep").arg("30").spawn().unwrap();
        let (mut agent, mut replaced, mut other) = (spawn(), spawn(), spawn());
        for (child, exe) in [
            (&agent, "/usr/local/bin/multiverse-agent"),
            (&replaced, "/usr/local/bin/multiverse-agent (deleted)"),
            (&other, "/usr/local/bin/multiverse-agent-libvirt"),
        ] {
            let d = proc_root.path().join(child.id().to_string());
            std::fs::create_dir(&d).unwrap();
            std::os::unix::fs::symlink(exe, d.join("exe")).unwrap();
        }
        // Not a process, and a process without an executable (a kernel thread): skipped.
        std::fs::create_dir(proc_root.path().join("sys")).unwrap();
        std::fs::create_dir(proc_root.path().join("2")).unwrap();
        let chain = Chain {
            steps: vec![Step {
                action: Action::DropSecrets {
                    paths: Vec::new(),
                    processes: vec!["multiverse-agent".into()],
                },
                timeout_ms: 2000,
                fallback: None,
            }],
            env: Env {
                sys: PathBuf::from("/sys"),
                proc_root: proc_root.path().to_path_buf(),
                filler: None,
            },
        };
        let rec = chain.run(false, |_| {});
        assert_eq!(
            rec[1].command,
            "kill-processes -KILL --exe multiverse-agent"
        );
        assert_eq!(rec[1].status, Status::Ok, "{rec:?}");
        assert_eq!(agent.wait().unwrap().signal(), Some(9));
        assert_eq!(replaced.wait().unwrap().signal(), Some(9));
        assert!(
            other.try_wait().unwrap().is_none(),
            "another program was killed"
        );
        other.kill().unwrap();
        other.wait().unwrap();
        // Dry-run records the same line and signals nothing.
        let mut again = spawn();
        let d = proc_root.path().join(again.id().to_string());
        std::fs::create_dir(&d).unwrap();
        std::os::unix::fs::symlink("/x/multiverse-agent", d.join("exe")).unwrap();
        let rec = chain.run(true, |_| {});
        assert_eq!(rec[1].status, Status::DryRun);
        assert!(again.try_wait().unwrap().is_none());
        again.kill().unwrap();
        again.wait().unwrap();
    }

    /// `clear-memory` without `init_on_free=1` fills through the filler child: the chain
    /// appends `--proc DIR --reserve-mib N` and waits for it; a failing filler fails the step;
    /// a filler still running when the step's timeout ends is killed.
    #[test]
    fn the_fill_runs_in_the_filler_child_and_dies_with_its_step() {
        let proc_root = fixture_proc("ro quiet");
        let p = proc_root.path();
        std::fs::create_dir_all(p.join("sys/vm")).unwrap();
        let args = p.join("filler-args");
        let pid = p.join("filler-pid");
        let sh = |script: String| {
            Some(vec![
                "sh".to_string(),
                "-c".to_string(),
                script,
                "filler".to_string(),
            ])
        };
        let chain = |filler, timeout_ms| Chain {
            steps: vec![Step {
                action: Action::ClearMemory { reserve_mib: 7 },
                timeout_ms,
                fallback: None,
            }],
            env: Env {
                sys: "/nonexistent-sys".into(),
                proc_root: p.to_path_buf(),
                filler,
            },
        };
        let statuses = |rec: &[Record]| -> Vec<(String, Status)> {
            rec.iter()
                .map(|r| (r.command.clone(), r.status.clone()))
                .collect()
        };
        let rec = chain(sh(format!("echo \"$@\" >{}", args.display())), 5_000).run(false, |_| {});
        let got = statuses(&rec);
        assert_eq!(got.len(), 3, "{rec:?}");
        assert_eq!(
            got[2],
            ("wipe-free-memory --reserve-mib 7".into(), Status::Ok),
            "{rec:?}"
        );
        assert_eq!(
            std::fs::read_to_string(&args).unwrap().trim(),
            format!("--proc {} --reserve-mib 7 --lower-watermarks", p.display())
        );
        let rec = chain(sh("exit 3".into()), 5_000).run(false, |_| {});
        assert!(
            matches!(&rec[2].status, Status::Failed(m) if m.contains("exited with")),
            "{rec:?}"
        );
        let started = Instant::now();
        let rec = chain(
            sh(format!("echo $$ >{}; exec sleep 30", pid.display())),
            500,
        )
        .run(false, |_| {});
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            statuses(&rec).last().unwrap(),
            &("(gave up after 500 ms)".to_string(), Status::Timeout),
            "{rec:?}"
        );
        let filler = std::fs::read_to_string(&pid).unwrap();
        let alive = Path::new("/proc").join(filler.trim());
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive.exists(), "the filler {} still runs", filler.trim());
    }

    /// `processes` absent (a `guard.toml` armed before the field existed) is the default list;
    /// `processes = []` is none, and stays none through a save and a load.
    #[test]
    fn drop_secrets_processes_absent_means_the_default_and_empty_means_none() {
        #[derive(Serialize, Deserialize)]
        struct W {
            step: Vec<Step>,
        }
        let parse = |text: &str| -> Vec<Step> { toml::from_str::<W>(text).unwrap().step };
        let processes = |steps: &[Step]| match &steps[0].action {
            Action::DropSecrets { processes, .. } => processes.clone(),
            a => panic!("{a:?}"),
        };
        let old = "[[step]]\naction = \"drop-secrets\"\npaths = [\"/run/multiverse/secrets\"]\n\
                   timeout_ms = 2000\n";
        let steps = parse(old);
        assert_eq!(processes(&steps), vec!["multiverse-agent"]);
        let none = old.replace("timeout_ms", "processes = []\ntimeout_ms");
        let steps = parse(&none);
        assert!(processes(&steps).is_empty());
        // Round trips: each is written explicitly and read back the same.
        for steps in [parse(old), parse(&none)] {
            let text = toml::to_string(&W {
                step: steps.clone(),
            })
            .unwrap();
            assert!(text.contains("processes = ["), "{text}");
            assert_eq!(parse(&text), steps, "{text}");
        }
    }

    #[test]
    fn steps_round_trip_through_toml() {
        #[derive(Serialize, Deserialize)]
        struct W {
            step: Vec<Step>,
        }
        let w = W {
            step: default_steps(),
        };
        let text = toml::to_string(&w).unwrap();
        let back: W = toml::from_str(&text).unwrap();
        assert_eq!(back.step, default_steps());
        assert!(text.contains("action = \"luks-suspend\""), "{text}");
    }
}
