//! The watcher's pidfile: held for the watcher's lifetime, not merely written.
//!
//! [`Pidfile::acquire`] creates `<root>/guard/watch.pid` (mode 0600, never through a link), takes
//! an exclusive `flock` on it that the watcher holds until it exits, and writes two lines: the pid
//! and the process's start time (field 22 of `/proc/PID/stat`, clock ticks since boot). The lock
//! goes away with the process however it ends, so a pidfile whose lock is free is stale.
//!
//! [`Pidfile::probe`] is what `guard status` and `guard disarm` ask: the file's lock must be held, and the
//! pid it names must run our own executable (`/proc/PID/exe` equals `/proc/self/exe`, or that path
//! marked `(deleted)` after an upgrade) and have started at the recorded time. Anything else is not
//! our watcher, and nothing is signalled: a stale file naming a recycled pid, or any process whose
//! command line merely contains "guard", is never sent SIGUSR1.
//!
//! Main types: [`Pidfile`], [`Liveness`], [`PidfileError`].
//!
//! What this module is not: the signal itself ([`crate::watch::notify_watcher`]).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the pidfile could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PidfileError {
    /// A verified watcher holds it.
    #[error("a watcher is already running (pid {1}, {0})")]
    Running(PathBuf, i32),
    /// Creating, locking or writing failed.
    #[error("cannot write the pidfile {0}")]
    Io(PathBuf, #[source] io::Error),
}

/// What a pidfile says about its watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// No pidfile, a stale one (its lock is free), or one naming a process that is not our
    /// watcher (another executable, another start time, gone).
    NotRunning,
    /// Our watcher, verified: safe to signal.
    Running(i32),
    /// The lock is held but the holder cannot be verified from here (e.g. a user asking about
    /// root's watcher: `/proc/PID/exe` is root's to read). Never signalled.
    Unknown {
        /// The pid the file names, when it could be read.
        pid: Option<i32>,
        /// Why it cannot be verified.
        why: String,
    },
}

/// The held pidfile; dropping it removes the file and releases the lock.
#[derive(Debug)]
pub struct Pidfile {
    file: File,
    path: PathBuf,
}

/// The start time of `pid` (field 22 of `/proc/PID/stat`), if it exists.
pub(crate) fn start_time(pid: i32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    stat_start_time(&stat).ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))
}

/// Field 22 of a `/proc/PID/stat` line. The command name (field 2) is in parentheses and may
/// contain anything, spaces and parentheses included: the fields start after the last `)`.
fn stat_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(22 - 3)?.parse().ok()
}

fn open_flags() -> i32 {
    (nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC).bits()
}

impl Pidfile {
    /// Whether the pidfile at `path` names our running watcher (see the module documentation):
    /// what `guard status` and `guard disarm` ask before they report or signal a pid.
    pub fn probe(path: &Path) -> Liveness {
        probe(path)
    }

    /// Creates (or takes over a stale) pidfile at `path` for this process and locks it.
    pub fn acquire(path: &Path) -> Result<Pidfile, PidfileError> {
        let io_err = |e| PidfileError::Io(path.into(), e);
        let me = i32::try_from(std::process::id()).map_err(|e| io_err(io::Error::other(e)))?;
        let started = start_time(me).map_err(io_err)?;
        // A reader holds a shared lock for an instant, and a previous watcher may be removing the
        // file: retry for a second before giving up.
        for _ in 0..50 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(open_flags())
                .open(path)
                .map_err(io_err)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    if let Liveness::Running(pid) = probe(path) {
                        return Err(PidfileError::Running(path.into(), pid));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(TryLockError::Error(e)) => return Err(io_err(e)),
            }
            // The locked file must still be the one at `path` (not one a previous watcher
            // removed after we opened it).
            let held = file.metadata().map_err(io_err)?;
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.dev() == held.dev() && m.ino() == held.ino() => {}
                _ => continue,
            }
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io_err)?;
            file.set_len(0).map_err(io_err)?;
            (&file)
                .write_all(format!("{me}\n{started}\n").as_bytes())
                .map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
            return Ok(Pidfile {
                file,
                path: path.into(),
            });
        }
        Err(io_err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "its lock stayed busy",
        )))
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        // Removed while still locked, and only if it is still ours.
        if let (Ok(held), Ok(now)) = (self.file.metadata(), std::fs::symlink_metadata(&self.path)) {
            if held.dev() == now.dev() && held.ino() == now.ino() {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Whether the pidfile at `path` names our running watcher (see the module documentation).
pub(crate) fn probe(path: &Path) -> Liveness {
    let unknown = |pid, why: String| Liveness::Unknown { pid, why };
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(open_flags())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Liveness::NotRunning,
        Err(e) => return unknown(None, format!("cannot open {}: {e}", path.display())),
    };
    match file.try_lock_shared() {
        // Nobody holds it: whatever it names, that watcher is gone.
        Ok(()) => return Liveness::NotRunning,
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(e)) => {
            return unknown(
                None,
                format!("cannot test the lock on {}: {e}", path.display()),
            )
        }
    }
    let mut text = String::new();
    if let Err(e) = (&mut file).take(64).read_to_string(&mut text) {
        return unknown(None, format!("cannot read {}: {e}", path.display()));
    }
    let mut lines = text.lines();
    let pid: Option<i32> = lines.next().and_then(|l| l.trim().parse().ok());
    let started: Option<u64> = lines.next().and_then(|l| l.trim().parse().ok());
    let (Some(pid), Some(started)) = (pid.filter(|p| *p > 0), started) else {
        return unknown(pid, format!("{} is locked but incomplete", path.display()));
    };
    verify(pid, started)
}

/// Whether `pid` runs our executable and started at `started`.
fn verify(pid: i32, started: u64) -> Liveness {
    let exe = match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Liveness::NotRunning,
        Err(e) => {
            return Liveness::Unknown {
                pid: Some(pid),
                why: format!("cannot read /proc/{pid}/exe: {e}"),
            }
        }
    };
    let Ok(ours) = std::fs::read_link("/proc/self/exe") else {
        return Liveness::Unknown {
            pid: Some(pid),
            why: "cannot read /proc/self/exe".into(),
        };
    };
    let mut upgraded = ours.clone().into_os_string();
    upgraded.push(" (deleted)");
    if exe != ours && exe.as_os_str() != upgraded {
        return Liveness::NotRunning;
    }
    match start_time(pid) {
        Ok(t) if t == started => Liveness::Running(pid),
        _ => Liveness::NotRunning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_pidfile_is_running_and_removed_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("watch.pid");
        let held = Pidfile::acquire(&p).unwrap();
        let me = std::process::id() as i32;
        // The test binary is "our executable" here.
        assert_eq!(probe(&p), Liveness::Running(me));
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().next(), Some(me.to_string().as_str()));
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A second watcher is refused while the first holds it.
        assert!(matches!(
            Pidfile::acquire(&p),
            Err(PidfileError::Running(_, pid)) if pid == me
        ));
        drop(held);
        assert!(!p.exists());
        assert_eq!(probe(&p), Liveness::NotRunning);
    }

    #[test]
    fn stale_or_foreign_pidfiles_are_not_running() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("watch.pid");
        let me = std::process::id() as i32;
        let started = start_time(me).unwrap();
        // Our own pid and start time, but nobody holds the lock: stale.
        std::fs::write(&p, format!("{me}\n{started}\n")).unwrap();
        assert_eq!(probe(&p), Liveness::NotRunning);
        // Held (by this test), but another start time: a recycled pid.
        let f = File::open(&p).unwrap();
        f.try_lock().unwrap();
        std::fs::write(&p, format!("{me}\n{}\n", started + 1)).unwrap();
        assert_eq!(probe(&p), Liveness::NotRunning);
        // Held, naming a process of another executable, with its true start time.
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let opid = other.id() as i32;
        let ostart = start_time(opid).unwrap();
        std::fs::write(&p, format!("{opid}\n{ostart}\n")).unwrap();
        let verdict = probe(&p);
        let _ = other.kill();
        let _ = other.wait();
        assert_eq!(verdict, Liveness::NotRunning);
        // Held and naming us: running.
        std::fs::write(&p, format!("{me}\n{started}\n")).unwrap();
        assert_eq!(probe(&p), Liveness::Running(me));
        // Held but incomplete.
        std::fs::write(&p, format!("{me}\n")).unwrap();
        assert!(matches!(probe(&p), Liveness::Unknown { pid: Some(_), .. }));
        drop(f);
        // A link is not followed.
        let l = d.path().join("link.pid");
        std::os::unix::fs::symlink(&p, &l).unwrap();
        assert!(matches!(probe(&l), Liveness::Unknown { .. }));
        assert!(Pidfile::acquire(&l).is_err());
    }

    #[test]
    fn start_time_is_field_22_past_a_hostile_command_name() {
        let fields: Vec<String> = (3..=25).map(|i| i.to_string()).collect();
        let line = format!("42 (x) 1 2 3 ) (y) {}\n", fields.join(" "));
        assert_eq!(stat_start_time(&line), Some(22));
        assert_eq!(stat_start_time("42 (x) S 1"), None);
        let me = std::process::id() as i32;
        assert!(start_time(me).unwrap() > 0);
        assert!(start_time(i32::MAX).is_err());
    }
}
