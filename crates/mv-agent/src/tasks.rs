//! Maintenance tasks: named, typed ([`TaskKind`]), run on their interval and on demand
//! (`POST /v1/tasks/{name}/run`, with `?dry_run=true` to see the plan), the last results kept.
//!
//! Only the kinds in the config exist; the API can run a configured task by name and nothing
//! else. A task never runs twice at once; every run has a time limit (helper programs are killed
//! when it passes). Tasks are idempotent: a second prune or rotation with nothing to do says so.
//! A dry run changes nothing: it is not recorded, does not mark the task running and is not
//! refused while a real run is in progress.

#![cfg_attr(not(feature = "server"), allow(unused_imports, dead_code))]

#[cfg(feature = "server")]
use crate::config::{PackageManager, TaskConfig, TaskKind};
#[cfg(feature = "server")]
use crate::util::now_ms;
#[cfg(feature = "server")]
use mv_core::duration::parse as parse_duration;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Results kept per task.
pub(crate) const KEEP_RESULTS: usize = 10;

/// The outcome of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    /// Task name.
    pub task: String,
    /// Start (ms since the epoch).
    pub started_ms: u64,
    /// Duration.
    pub duration_ms: u64,
    /// Success.
    pub ok: bool,
    /// `schedule` or `api`.
    pub trigger: String,
    /// A plan only; nothing was changed.
    pub dry_run: bool,
    /// One line for people.
    pub summary: String,
    /// One line per thing done (or, with dry_run, that would be done).
    pub details: Vec<String>,
}

/// What `/v1/tasks` lists per task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Name.
    pub name: String,
    /// The task's config (`kind` and its fields).
    pub config: serde_json::Value,
    /// Interval, if scheduled.
    pub every: Option<String>,
    /// Running now.
    pub running: bool,
    /// Next scheduled run (ms since the epoch).
    pub next_run_ms: Option<u64>,
    /// Newest first.
    pub last: Vec<TaskResult>,
}

/// Why a run did not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// No task of that name in the config.
    #[error("no task named {0:?} in the agent's config")]
    Unknown(String),
    /// The previous run has not finished.
    #[error("task {0:?} is already running")]
    AlreadyRunning(String),
}

/// Why a task failed (kept as the result's summary).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TaskError {
    /// A file operation failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A helper program failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// Its command line.
        command: String,
        /// Status and stderr.
        detail: String,
    },
    /// The run exceeded its time limit.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

#[derive(Debug)]
#[cfg(feature = "server")]
struct State {
    running: bool,
    next_due: Option<Instant>,
    last: VecDeque<TaskResult>,
}

#[derive(Debug)]
#[cfg(feature = "server")]
struct Entry {
    cfg: TaskConfig,
    every: Option<Duration>,
    timeout: Duration,
    state: Mutex<State>,
}

/// Every configured task and its state.
#[derive(Debug)]
#[cfg(feature = "server")]
pub(crate) struct Tasks {
    entries: Vec<Entry>,
}

#[cfg(feature = "server")]
impl Tasks {
    /// From the (already validated) config.
    pub(crate) fn new(cfgs: &[TaskConfig]) -> Self {
        let now = Instant::now();
        let entries = cfgs
            .iter()
            .map(|c| {
                let every = c.every.as_deref().and_then(|v| parse_duration(v).ok());
                Entry {
                    cfg: c.clone(),
                    every,
                    timeout: c
                        .timeout
                        .as_deref()
                        .and_then(|v| parse_duration(v).ok())
                        .unwrap_or(Duration::from_secs(600)),
                    state: Mutex::new(State {
                        running: false,
                        next_due: every.map(|e| now + e),
                        last: VecDeque::with_capacity(KEEP_RESULTS),
                    }),
                }
            })
            .collect();
        Tasks { entries }
    }

    fn lock(e: &Entry) -> std::sync::MutexGuard<'_, State> {
        e.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The list for `/v1/tasks`.
    pub(crate) fn list(&self) -> Vec<TaskInfo> {
        let now_i = Instant::now();
        let now = now_ms();
        self.entries
            .iter()
            .map(|e| {
                let st = Self::lock(e);
                TaskInfo {
                    name: e.cfg.name.clone(),
                    config: serde_json::to_value(&e.cfg.kind).unwrap_or_default(),
                    every: e.cfg.every.clone(),
                    running: st.running,
                    next_run_ms: st
                        .next_due
                        .map(|d| now + d.saturating_duration_since(now_i).as_millis() as u64),
                    last: st.last.iter().rev().cloned().collect(),
                }
            })
            .collect()
    }

    /// Names of the scheduled tasks that are due now (and not running).
    pub(crate) fn due(&self) -> Vec<String> {
        let now = Instant::now();
        self.entries
            .iter()
            .filter(|e| {
                let st = Self::lock(e);
                !st.running && st.next_due.is_some_and(|d| d <= now)
            })
            .map(|e| e.cfg.name.clone())
            .collect()
    }

    /// Runs one task to completion and records the result.
    pub(crate) async fn run(
        &self,
        name: &str,
        dry_run: bool,
        trigger: &str,
    ) -> Result<TaskResult, RunError> {
        let e = self
            .entries
            .iter()
            .find(|e| e.cfg.name == name)
            .ok_or_else(|| RunError::Unknown(name.to_string()))?;
        // A dry run changes nothing, so it neither waits for a real run nor marks the task
        // running: it must not make a real run (from the API or the scheduler) look busy.
        if !dry_run {
            let mut st = Self::lock(e);
            if st.running {
                return Err(RunError::AlreadyRunning(name.to_string()));
            }
            st.running = true;
        }
        let started_ms = now_ms();
        let t0 = Instant::now();
        let outcome = match tokio::time::timeout(e.timeout, execute(&e.cfg.kind, dry_run)).await {
            Ok(r) => r,
            Err(_) => Err(TaskError::Timeout(e.timeout)),
        };
        let (ok, summary, details) = match outcome {
            Ok((s, d)) => (true, s, d),
            Err(err) => (false, crate::stats::error_chain(&err), Vec::new()),
        };
        let result = TaskResult {
            task: name.to_string(),
            started_ms,
            duration_ms: t0.elapsed().as_millis() as u64,
            ok,
            trigger: trigger.to_string(),
            dry_run,
            summary,
            details,
        };
        let mut st = Self::lock(e);
        if !dry_run {
            st.running = false;
            if st.last.len() == KEEP_RESULTS {
                st.last.pop_front();
            }
            st.last.push_back(result.clone());
        }
        if trigger == "schedule" {
            st.next_due = e.every.map(|ev| Instant::now() + ev);
        }
        Ok(result)
    }
}

type Outcome = Result<(String, Vec<String>), TaskError>;

#[cfg(feature = "server")]
async fn execute(kind: &TaskKind, dry_run: bool) -> Outcome {
    match kind.clone() {
        TaskKind::Fstrim { mountpoints } => {
            let mut lines = Vec::new();
            let argsets: Vec<Vec<String>> = if mountpoints.is_empty() {
                vec![vec!["--all".into(), "-v".into()]]
            } else {
                mountpoints
                    .iter()
                    .map(|m| vec!["-v".into(), m.display().to_string()])
                    .collect()
            };
            for args in argsets {
                if dry_run {
                    lines.push(format!("would run: fstrim {}", args.join(" ")));
                    continue;
                }
                lines.extend(
                    run_program("fstrim", &args)
                        .await?
                        .lines()
                        .map(String::from),
                );
            }
            let summary = if dry_run {
                "plan only".to_string()
            } else {
                format!("trimmed {} filesystem(s)", lines.len())
            };
            Ok((summary, lines))
        }
        TaskKind::Prune {
            dir,
            older_than,
            keep,
        } => {
            let age = parse_duration(&older_than).unwrap_or(Duration::MAX);
            blocking(move || prune(&dir, age, keep, dry_run)).await
        }
        TaskKind::RotateLogs {
            files,
            max_bytes,
            keep,
        } => blocking(move || rotate(&files, max_bytes, keep, dry_run)).await,
        TaskKind::CheckUpdates { manager } => {
            let (prog, args): (&str, Vec<String>) = match manager {
                PackageManager::Apt => (
                    "apt-get",
                    vec![
                        "-s".into(),
                        "-o".into(),
                        "Debug::NoLocking=1".into(),
                        "upgrade".into(),
                    ],
                ),
                PackageManager::Apk => ("apk", vec!["version".into(), "-l".into(), "<".into()]),
            };
            let out = run_program(prog, &args).await?;
            let pending = count_updates(manager, &out);
            Ok((format!("{} update(s) pending", pending.len()), pending))
        }
    }
}

/// The package names pending in `apt-get -s upgrade` or `apk version -l '<'` output.
#[cfg(feature = "server")]
pub(crate) fn count_updates(manager: PackageManager, out: &str) -> Vec<String> {
    match manager {
        PackageManager::Apt => out
            .lines()
            .filter_map(|l| l.strip_prefix("Inst "))
            .filter_map(|l| l.split_whitespace().next())
            .map(String::from)
            .collect(),
        PackageManager::Apk => out
            .lines()
            .filter(|l| l.contains('<'))
            .filter_map(|l| l.split_whitespace().next())
            .map(String::from)
            .collect(),
    }
}

#[cfg(feature = "server")]
async fn blocking(f: impl FnOnce() -> Outcome + Send + 'static) -> Outcome {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(TaskError::Command {
            command: "task".into(),
            detail: e.to_string(),
        })
    })
}

#[cfg(feature = "server")]
async fn run_program(prog: &str, args: &[String]) -> Result<String, TaskError> {
    let command = format!("{prog} {}", args.join(" "));
    let out = tokio::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| TaskError::Command {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(TaskError::Command {
            command,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TaskError {
    let path = path.to_path_buf();
    move |source| TaskError::Io {
        action,
        path,
        source,
    }
}

/// Deletes the entries of `dir` older than `age`, keeping the `keep` newest whatever their age.
pub(crate) fn prune(dir: &Path, age: Duration, keep: usize, dry_run: bool) -> Outcome {
    let now = SystemTime::now();
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io("cannot list", dir))? {
        let e = e.map_err(io("cannot list", dir))?;
        let md = e
            .path()
            .symlink_metadata()
            .map_err(io("cannot stat", &e.path()))?;
        let mtime = md.modified().map_err(io("cannot stat", &e.path()))?;
        entries.push((mtime, e.path(), md.is_dir()));
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut lines = Vec::new();
    for (mtime, path, is_dir) in entries.into_iter().skip(keep) {
        let old = now.duration_since(mtime).unwrap_or_default() > age;
        if !old {
            continue;
        }
        if dry_run {
            lines.push(format!("would remove {}", path.display()));
            continue;
        }
        if is_dir {
            std::fs::remove_dir_all(&path).map_err(io("cannot remove", &path))?;
        } else {
            std::fs::remove_file(&path).map_err(io("cannot remove", &path))?;
        }
        lines.push(format!("removed {}", path.display()));
    }
    let summary = match (lines.len(), dry_run) {
        (0, _) => format!("nothing to prune in {}", dir.display()),
        (n, true) => format!("would remove {n} entr(y/ies) from {}", dir.display()),
        (n, false) => format!("removed {n} entr(y/ies) from {}", dir.display()),
    };
    Ok((summary, lines))
}

fn numbered(f: &Path, n: usize) -> PathBuf {
    let mut s = f.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Rotates every file over `max_bytes`: `f.<keep-1>` -> `f.<keep>`, ..., `f` -> `f.1`, and a new
/// empty `f` with the old one's permissions.
pub(crate) fn rotate(files: &[PathBuf], max_bytes: u64, keep: usize, dry_run: bool) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    let keep = keep.max(1);
    let mut lines = Vec::new();
    for f in files {
        let md = match std::fs::metadata(f) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("cannot stat", f)(e)),
        };
        if md.len() <= max_bytes {
            continue;
        }
        if dry_run {
            lines.push(format!("would rotate {} ({} bytes)", f.display(), md.len()));
            continue;
        }
        let oldest = numbered(f, keep);
        if oldest.exists() {
            std::fs::remove_file(&oldest).map_err(io("cannot remove", &oldest))?;
        }
        for n in (1..keep).rev() {
            let from = numbered(f, n);
            if from.exists() {
                let to = numbered(f, n + 1);
                std::fs::rename(&from, &to).map_err(io("cannot rename", &from))?;
            }
        }
        let first = numbered(f, 1);
        std::fs::rename(f, &first).map_err(io("cannot rename", f))?;
        let mode = md.permissions().mode() & 0o7777;
        let new = std::fs::File::create(f).map_err(io("cannot create", f))?;
        new.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io("cannot chmod", f))?;
        lines.push(format!("rotated {} ({} bytes)", f.display(), md.len()));
    }
    let summary = match (lines.len(), dry_run) {
        (0, _) => "no log over the size limit".to_string(),
        (n, true) => format!("would rotate {n} file(s)"),
        (n, false) => format!("rotated {n} file(s)"),
    };
    Ok((summary, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_newest_and_is_idempotent() {
        let d = tempfile::tempdir().unwrap();
        for (name, age_s) in [("a", 10_000u64), ("b", 20_000), ("c", 5)] {
            let p = d.path().join(name);
            std::fs::write(&p, b"x").unwrap();
            let t = SystemTime::now() - Duration::from_secs(age_s);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        // keep=1 keeps "c" (newest); "a" and "b" are older than 1h.
        let (s, plan) = prune(d.path(), Duration::from_secs(3600), 1, true).unwrap();
        assert_eq!(plan.len(), 2, "{s}");
        assert!(d.path().join("a").exists());
        let (_, done) = prune(d.path(), Duration::from_secs(3600), 1, false).unwrap();
        assert_eq!(done.len(), 2);
        assert!(!d.path().join("a").exists() && !d.path().join("b").exists());
        assert!(d.path().join("c").exists());
        let (s, again) = prune(d.path(), Duration::from_secs(3600), 1, false).unwrap();
        assert!(again.is_empty());
        assert!(s.starts_with("nothing to prune"), "{s}");
    }

    #[tokio::test]
    async fn a_dry_run_neither_waits_for_nor_marks_a_run() {
        let d = tempfile::tempdir().unwrap();
        let cfg: TaskConfig = toml::from_str(&format!(
            "name = \"p\"\nkind = \"prune\"\ndir = {:?}\nolder_than = \"1h\"\n",
            d.path().display().to_string()
        ))
        .unwrap();
        let t = Tasks::new(&[cfg]);
        // A real run in progress: a dry run still plans, and leaves the mark alone.
        Tasks::lock(&t.entries[0]).running = true;
        let r = t.run("p", true, "api").await.unwrap();
        assert!(r.ok && r.dry_run);
        assert!(t.list()[0].running);
        assert!(matches!(
            t.run("p", false, "api").await,
            Err(RunError::AlreadyRunning(_))
        ));
        // No run in progress: a dry run does not mark one.
        Tasks::lock(&t.entries[0]).running = false;
        t.run("p", true, "api").await.unwrap();
        assert!(!t.list()[0].running);
        assert!(t.list()[0].last.is_empty());
    }

    #[test]
    fn rotate_shifts_copies() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("agent.log");
        std::fs::write(&f, vec![b'x'; 100]).unwrap();
        std::fs::write(numbered(&f, 1), b"old1").unwrap();
        std::fs::write(numbered(&f, 2), b"old2").unwrap();
        let (_, l) = rotate(std::slice::from_ref(&f), 50, 2, false).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(std::fs::read(&f).unwrap().len(), 0);
        assert_eq!(std::fs::read(numbered(&f, 1)).unwrap().len(), 100);
        assert_eq!(std::fs::read(numbered(&f, 2)).unwrap(), b"old1");
        let (s, l) = rotate(&[f], 50, 2, false).unwrap();
        assert!(l.is_empty(), "{s}");
    }

    #[test]
    fn update_counts() {
        let apt = "Reading package lists...\nInst libc6 [2.36-9] (2.36-9+deb12u4 Debian:12.5)\nInst tzdata [a] (b)\nConf libc6 (x)\n";
        assert_eq!(
            count_updates(PackageManager::Apt, apt),
            vec!["libc6", "tzdata"]
        );
        let apk = "Installed:                                Available:\nmusl-1.2.4-r1                           < 1.2.4-r2\n";
        assert_eq!(
            count_updates(PackageManager::Apk, apk),
            vec!["musl-1.2.4-r1"]
        );
    }
}
