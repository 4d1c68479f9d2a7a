//! The executor: saves a plan, runs it under the write-ahead journal, resumes it, undoes it.
//!
//! State lives in `<root>/.multiverse-migrate/`: `plan.json` (written atomically before the first
//! change) and `journal` (see [`crate::journal`]). Ops run in order; every op first looks at what
//! is on disk:
//!
//! | op | source there, target not | target there, source not | both there |
//! |---|---|---|---|
//! | move (rename) | rename (no-replace) | already done | refused: never overwrite |
//! | move (copy) | copy to a temp file, fsync, verify SHA-256, rename in, fsync, remove source | already done | verify both equal, then remove source |
//! | mkdir / rmdir / link / unlink | act | already done | refused when it is not ours |
//!
//! so an op interrupted anywhere is finished by the next run, and the inverse of an op that never
//! ran does nothing. Completed ops are group-committed: the folders they touched are fsync'd,
//! then their `done` records are appended and fsync'd (see [`crate::journal`]). The undo journals
//! `undo-start`, runs the inverse ([`Op::inverse`]) of every op not yet undone, last first, then
//! removes the state folder.

use crate::journal::{Journal, JournalError, Progress, Record};
use crate::libvirt::{self, Hypervisor, HypervisorError};
use crate::plan::{Op, Plan};
use crate::{crash, STATE_DIR};
use mv_core::fsutil::sha256_file;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Marker file in the state folder: the migration created the root.
const CREATED_ROOT: &str = "created-root";

/// Why one op failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A filesystem call failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Something the plan did not create is in the way.
    #[error("{path} {why}; move it away and run again")]
    Conflict {
        /// The path in the way.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Neither end of a move exists.
    #[error("neither {from} nor {to} exists: the entry was removed while the migration ran")]
    Missing {
        /// Source.
        from: PathBuf,
        /// Target.
        to: PathBuf,
    },
    /// A copy does not match its source.
    #[error("the copy {to} does not match {from} (SHA-256); the source is kept")]
    Checksum {
        /// Source.
        from: PathBuf,
        /// Copy.
        to: PathBuf,
    },
    /// A libvirt step is in the plan but no connection was given.
    #[error("this step needs libvirt, and no connection was given")]
    NoHypervisor,
    /// libvirt failed.
    #[error(transparent)]
    Libvirt(#[from] HypervisorError),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> OpError + 'a {
    move |source| OpError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Why applying or undoing failed. The journal is intact: the same command finishes the work.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The state folder or plan file could not be written or removed.
    #[error("cannot {action} migration state {path}")]
    State {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The saved plan does not parse.
    #[error("saved plan {path} is unreadable")]
    PlanFile {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// One op failed.
    #[error("step {index} ({op}) failed")]
    Op {
        /// Its index in the plan.
        index: usize,
        /// The op, rendered.
        op: String,
        /// Cause.
        #[source]
        source: OpError,
    },
    /// A forward run was asked while an undo is half done.
    #[error("an undo of the migration in {state} is half done")]
    UndoInProgress {
        /// The state folder.
        state: PathBuf,
    },
    /// A new plan was given while another is in progress.
    #[error("a migration from {from} is already in progress in {state}")]
    OtherInProgress {
        /// Its old tree.
        from: PathBuf,
        /// The state folder.
        state: PathBuf,
    },
}

/// Where a migration stands, as its state folder says.
#[derive(Debug)]
pub enum State {
    /// No migration state in this root.
    None,
    /// A plan is saved; some ops remain.
    InProgress {
        /// The plan.
        plan: Plan,
        /// The journal.
        progress: Progress,
    },
    /// Every op is done (the state is kept for `--undo`).
    Complete {
        /// The plan.
        plan: Plan,
    },
    /// An undo has started and not finished.
    Undoing {
        /// The plan.
        plan: Plan,
        /// The journal.
        progress: Progress,
    },
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// Ops in the plan.
    pub total: usize,
    /// Ops executed by this run.
    pub executed: usize,
    /// Ops found already done (by an earlier, interrupted run).
    pub already_done: usize,
}

/// How far the copies across filesystems of a run or an undo are (renames on one filesystem are
/// instant and not reported). This crate never draws it: the caller of [`Migration::on_progress`]
/// does (the CLI draws a bar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyProgress {
    /// The copies start: this many bytes in all (as planned). Not sent when nothing is copied.
    Start {
        /// Bytes to copy.
        total_bytes: u64,
    },
    /// This many more bytes were copied.
    Copied(u64),
    /// Every copy of the run (or undo) is done. Not sent after an error.
    Finish,
}

/// A migration into one root.
pub struct Migration {
    root: PathBuf,
    progress: Option<Box<dyn Fn(CopyProgress)>>,
}

impl std::fmt::Debug for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migration")
            .field("root", &self.root)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Migration {
    /// The migration state of root `root`.
    pub fn at(root: &Path) -> Migration {
        let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        Migration {
            root,
            progress: None,
        }
    }

    /// Calls `f` with the progress of the copies across filesystems of later runs and undos.
    pub fn on_progress(&mut self, f: impl Fn(CopyProgress) + 'static) {
        self.progress = Some(Box::new(f));
    }

    /// The state folder.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    fn plan_path(&self) -> PathBuf {
        self.state_dir().join("plan.json")
    }

    fn journal_path(&self) -> PathBuf {
        self.state_dir().join("journal")
    }

    /// Reads the state folder.
    pub fn state(&self) -> Result<State, ApplyError> {
        let pp = self.plan_path();
        let bytes = match fs::read(&pp) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::None),
            Err(source) => {
                return Err(ApplyError::State {
                    action: "read",
                    path: pp,
                    source,
                })
            }
        };
        let plan: Plan = serde_json::from_slice(&bytes)
            .map_err(|source| ApplyError::PlanFile { path: pp, source })?;
        let progress = Journal::read(&self.journal_path())?;
        Ok(if progress.undoing {
            State::Undoing { plan, progress }
        } else if progress.done.len() >= plan.ops.len()
            && (0..plan.ops.len()).all(|i| progress.done.contains(&i))
        {
            State::Complete { plan }
        } else {
            State::InProgress { plan, progress }
        })
    }

    /// Removes a state folder left without a plan (a crash before the plan was saved, or at the
    /// very end of an undo), and the root too when the migration had created it and it is empty.
    /// Returns whether there was one. Call it before planning, so the plan sees the tree as it
    /// was before the interrupted run.
    pub fn clear_leftover(&self) -> Result<bool, ApplyError> {
        let dir = self.state_dir();
        if dir.is_dir() && !self.plan_path().exists() {
            let created_root = dir.join(CREATED_ROOT).exists();
            fs::remove_dir_all(&dir).map_err(|source| ApplyError::State {
                action: "remove",
                path: dir.clone(),
                source,
            })?;
            if created_root {
                self.remove_created_root()?;
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Removes the root the migration created, if it is empty (what others put there stays).
    fn remove_created_root(&self) -> Result<(), ApplyError> {
        if fs::remove_dir(&self.root).is_ok() {
            if let Some(parent) = self.root.parent() {
                mv_core::fsutil::sync_dir(parent).map_err(|source| ApplyError::State {
                    action: "sync",
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Saves `plan` (creating the root if the plan says so). Nothing of the old tree changes.
    pub fn start(&self, plan: &Plan) -> Result<(), ApplyError> {
        match self.state()? {
            State::None => {}
            State::InProgress { plan: p, .. } | State::Complete { plan: p } => {
                return Err(ApplyError::OtherInProgress {
                    from: p.from,
                    state: self.state_dir(),
                })
            }
            State::Undoing { .. } => {
                return Err(ApplyError::UndoInProgress {
                    state: self.state_dir(),
                })
            }
        }
        self.clear_leftover()?;
        let st = |action, path: PathBuf| {
            move |source| ApplyError::State {
                action,
                path,
                source,
            }
        };
        if plan.create_root && !plan.to.exists() {
            fs::create_dir(&plan.to).map_err(st("create", plan.to.clone()))?;
            if let Some(parent) = plan.to.parent() {
                mv_core::fsutil::sync_dir(parent).map_err(st("sync", parent.to_path_buf()))?;
            }
        }
        let dir = self.state_dir();
        fs::create_dir_all(&dir).map_err(st("create", dir.clone()))?;
        if plan.create_root {
            // Written before the plan: a crash in between leaves a leftover that
            // `clear_leftover` recognises as "the root is ours to remove".
            mv_core::fsutil::write_public(&dir.join(CREATED_ROOT), b"").map_err(|e| {
                ApplyError::State {
                    action: "write",
                    path: e.path,
                    source: e.source,
                }
            })?;
        }
        let json = serde_json::to_vec_pretty(plan).map_err(|source| ApplyError::PlanFile {
            path: self.plan_path(),
            source,
        })?;
        mv_core::fsutil::write_public(&self.plan_path(), &json).map_err(|e| ApplyError::State {
            action: "write",
            path: e.path,
            source: e.source,
        })?;
        mv_core::fsutil::sync_dir(&self.root).map_err(st("sync", self.root.clone()))?;
        Journal::open(&self.journal_path())?;
        crash::point();
        Ok(())
    }

    /// Executes the saved plan's remaining ops. A complete migration is left as it is.
    pub fn run(&self, hv: Option<&dyn Hypervisor>) -> Result<Outcome, ApplyError> {
        let (plan, progress) = match self.state()? {
            State::None => {
                return Ok(Outcome {
                    total: 0,
                    executed: 0,
                    already_done: 0,
                })
            }
            State::Complete { plan } => {
                return Ok(Outcome {
                    total: plan.ops.len(),
                    executed: 0,
                    already_done: plan.ops.len(),
                })
            }
            State::Undoing { .. } => {
                return Err(ApplyError::UndoInProgress {
                    state: self.state_dir(),
                })
            }
            State::InProgress { plan, progress } => (plan, progress),
        };
        let mut journal = Journal::open(&self.journal_path())?;
        let todo: Vec<usize> = (0..plan.ops.len())
            .filter(|i| !progress.done.contains(i))
            .collect();
        let copy_bytes = cross_fs_bytes(&plan, &todo);
        let copied = self.copies(copy_bytes);
        drive(&plan, &mut journal, &todo, false, hv, &copied)?;
        if copy_bytes > 0 {
            self.report(CopyProgress::Finish);
        }
        Ok(Outcome {
            total: plan.ops.len(),
            executed: todo.len(),
            already_done: plan.ops.len() - todo.len(),
        })
    }

    /// The inverse ops the undo would run, in order (for `--dry-run`).
    pub fn undo_plan(&self) -> Result<Vec<Op>, ApplyError> {
        let (plan, progress) = match self.state()? {
            State::None => return Ok(Vec::new()),
            State::Complete { plan } => (plan, Progress::default()),
            State::InProgress { plan, progress } | State::Undoing { plan, progress } => {
                (plan, progress)
            }
        };
        Ok(undo_indices(&plan, &progress)
            .into_iter()
            .map(|i| plan.ops[i].inverse())
            .collect())
    }

    /// Undoes the migration (complete, interrupted, or half undone) and removes the state folder.
    /// Returns `None` when there was nothing to undo.
    pub fn undo(&self, hv: Option<&dyn Hypervisor>) -> Result<Option<Outcome>, ApplyError> {
        let (plan, progress) = match self.state()? {
            State::None => {
                self.clear_leftover()?;
                return Ok(None);
            }
            State::Complete { plan } => {
                let p = Journal::read(&self.journal_path())?;
                (plan, p)
            }
            State::InProgress { plan, progress } | State::Undoing { plan, progress } => {
                (plan, progress)
            }
        };
        // Temp files of interrupted copies first: on a destination that filled up, they hold
        // the space the journal needs for `undo-start`.
        remove_copy_temps(&plan)?;
        let mut journal = Journal::open(&self.journal_path())?;
        if !progress.undoing {
            journal.commit(&[Record::UndoStart])?;
        }
        let todo = undo_indices(&plan, &progress);
        let copy_bytes = cross_fs_bytes(&plan, &todo);
        let copied = self.copies(copy_bytes);
        drive(&plan, &mut journal, &todo, true, hv, &copied)?;
        if copy_bytes > 0 {
            self.report(CopyProgress::Finish);
        }
        drop(journal);
        self.finish_undo(&plan)?;
        Ok(Some(Outcome {
            total: plan.ops.len(),
            executed: todo.len(),
            already_done: plan.ops.len() - todo.len(),
        }))
    }

    /// Removes the state folder (plan first: a crash after that leaves a leftover folder that
    /// [`Migration::clear_leftover`] removes) and the root if the migration created it.
    fn finish_undo(&self, plan: &Plan) -> Result<(), ApplyError> {
        let st = |action, path: PathBuf| {
            move |source| ApplyError::State {
                action,
                path,
                source,
            }
        };
        let pp = self.plan_path();
        fs::remove_file(&pp).map_err(st("remove", pp.clone()))?;
        mv_core::fsutil::sync_dir(&self.state_dir()).map_err(st("sync", self.state_dir()))?;
        crash::point();
        let dir = self.state_dir();
        fs::remove_dir_all(&dir).map_err(st("remove", dir.clone()))?;
        mv_core::fsutil::sync_dir(&self.root).map_err(st("sync", self.root.clone()))?;
        if plan.create_root {
            self.remove_created_root()?;
        }
        Ok(())
    }

    fn report(&self, p: CopyProgress) {
        if let Some(f) = &self.progress {
            f(p);
        }
    }

    /// Announces copies of `bytes` in all; the returned function reports each chunk copied.
    fn copies(&self, bytes: u64) -> impl Fn(u64) + '_ {
        if bytes > 0 {
            self.report(CopyProgress::Start { total_bytes: bytes });
        }
        move |n| {
            if bytes > 0 {
                self.report(CopyProgress::Copied(n));
            }
        }
    }
}

/// Removes the temp file of every copy of the plan, in either direction (`execute` removes them
/// too, one op at a time; this does it before anything is journaled).
fn remove_copy_temps(plan: &Plan) -> Result<(), ApplyError> {
    for op in &plan.ops {
        if let Op::Move {
            from,
            to,
            cross_fs: true,
            ..
        } = op
        {
            for t in [tmp_for(to), tmp_for(from)] {
                match fs::remove_file(&t) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(ApplyError::State {
                            action: "remove",
                            path: t,
                            source,
                        })
                    }
                }
            }
        }
    }
    Ok(())
}

/// Ops to invert, last first: every op not yet undone. The inverse of an op that never ran
/// finds nothing to do (see the module table), so the journal need not say which ops ran, and an
/// effect that reached the disk ahead of its journal record is undone all the same.
fn undo_indices(plan: &Plan, progress: &Progress) -> Vec<usize> {
    (0..plan.ops.len())
        .rev()
        .filter(|i| !progress.undone.contains(i))
        .collect()
}

/// Ops per group commit of the journal.
const BATCH: usize = 4096;

/// Executes the ops `todo` (or their inverses), group-committing their journal records.
fn drive(
    plan: &Plan,
    journal: &mut Journal,
    todo: &[usize],
    inverse: bool,
    hv: Option<&dyn Hypervisor>,
    copied: &dyn Fn(u64),
) -> Result<(), ApplyError> {
    let mut dirty = BTreeSet::new();
    let mut pending = Vec::new();
    for &i in todo {
        let op = if inverse {
            plan.ops[i].inverse()
        } else {
            plan.ops[i].clone()
        };
        if let Err(source) = execute(&op, hv, copied, &mut dirty) {
            // Record what did complete, so the next run starts from there.
            let _ = checkpoint(journal, &mut dirty, &mut pending);
            return Err(ApplyError::Op {
                index: i,
                op: op.to_string(),
                source,
            });
        }
        pending.push(if inverse {
            Record::UndoDone(i)
        } else {
            Record::Done(i)
        });
        crash::point();
        if pending.len() >= BATCH {
            checkpoint(journal, &mut dirty, &mut pending)?;
        }
    }
    checkpoint(journal, &mut dirty, &mut pending)
}

/// Makes the effects of the pending ops durable (fsync of every folder they touched, several at
/// a time so the filesystem can commit them together), then journals them.
fn checkpoint(
    journal: &mut Journal,
    dirty: &mut BTreeSet<PathBuf>,
    pending: &mut Vec<Record>,
) -> Result<(), ApplyError> {
    let dirs: Vec<PathBuf> = std::mem::take(dirty).into_iter().collect();
    let chunk = dirs.len().div_ceil(8).max(1);
    let failed: Option<(PathBuf, io::Error)> = std::thread::scope(|scope| {
        let handles: Vec<_> = dirs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    for d in part {
                        match mv_core::fsutil::sync_dir(d) {
                            Ok(()) => {}
                            // Removed since: its parent, also dirty, holds the removal.
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Some((d.clone(), e)),
                        }
                    }
                    None
                })
            })
            .collect();
        handles.into_iter().find_map(|h| h.join().ok().flatten())
    });
    if let Some((path, source)) = failed {
        return Err(ApplyError::State {
            action: "sync",
            path,
            source,
        });
    }
    journal.commit(pending)?;
    pending.clear();
    Ok(())
}

/// What is at a path (not following symlinks).
fn what(p: &Path) -> Result<Option<fs::Metadata>, OpError> {
    match fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("inspect", p)(e)),
    }
}

fn sync_parent(p: &Path) -> Result<(), OpError> {
    let dir = p.parent().unwrap_or(Path::new("/"));
    mv_core::fsutil::sync_dir(dir).map_err(io_err("sync folder", dir))
}

/// Notes that the folder holding `p` changed (synced at the next checkpoint).
fn touch(dirty: &mut BTreeSet<PathBuf>, p: &Path) {
    dirty.insert(p.parent().unwrap_or(Path::new("/")).to_path_buf());
}

/// Executes one op, idempotently (see the module table).
/// Folders changed are added to `dirty`; the caller makes them durable before journaling.
pub(crate) fn execute(
    op: &Op,
    hv: Option<&dyn Hypervisor>,
    copied: &dyn Fn(u64),
    dirty: &mut BTreeSet<PathBuf>,
) -> Result<(), OpError> {
    match op {
        Op::MkDir {
            path,
            mode,
            uid,
            gid,
        } => {
            match what(path)? {
                Some(m) if m.is_dir() => {}
                Some(_) => {
                    return Err(OpError::Conflict {
                        path: path.clone(),
                        why: "exists and is not a folder",
                    })
                }
                None => {
                    fs::create_dir(path).map_err(io_err("create folder", path))?;
                    crash::point();
                }
            }
            // Owner before mode: chown clears set-id bits.
            set_owner(path, *uid, *gid, false)?;
            fs::set_permissions(path, fs::Permissions::from_mode(*mode))
                .map_err(io_err("set the mode of", path))?;
            touch(dirty, path);
            // The folder's own mode and owner.
            dirty.insert(path.clone());
            Ok(())
        }
        Op::RmDir { path, .. } => match what(path)? {
            None => Ok(()),
            Some(m) if m.is_dir() => {
                fs::remove_dir(path).map_err(|e| {
                    if e.kind() == io::ErrorKind::DirectoryNotEmpty {
                        OpError::Conflict {
                            path: path.clone(),
                            why: "is not empty (something was added while migrating)",
                        }
                    } else {
                        io_err("remove folder", path)(e)
                    }
                })?;
                crash::point();
                touch(dirty, path);
                Ok(())
            }
            Some(_) => Err(OpError::Conflict {
                path: path.clone(),
                why: "is not a folder",
            }),
        },
        Op::Move {
            from, to, cross_fs, ..
        } => {
            // A temp file of an interrupted copy, in either direction, is ours to remove.
            for t in [tmp_for(to), tmp_for(from)] {
                if what(&t)?.is_some() {
                    fs::remove_file(&t).map_err(io_err("remove", &t))?;
                }
            }
            match (what(from)?, what(to)?) {
                (Some(_), None) => {
                    if *cross_fs {
                        copy_verified(from, to, copied)?;
                        touch(dirty, from);
                    } else {
                        rename_noreplace(from, to)?;
                        crash::point();
                        touch(dirty, to);
                        touch(dirty, from);
                    }
                    Ok(())
                }
                (None, Some(_)) => Ok(()),
                (Some(fm), Some(tm)) => {
                    // Only an interrupted copy leaves both; remove the source once they agree.
                    if *cross_fs && same_content(from, &fm, to, &tm)? {
                        fs::remove_file(from).map_err(io_err("remove", from))?;
                        touch(dirty, from);
                        Ok(())
                    } else {
                        Err(OpError::Conflict {
                            path: to.clone(),
                            why: "exists and the plan did not put it there",
                        })
                    }
                }
                (None, None) => Err(OpError::Missing {
                    from: from.clone(),
                    to: to.clone(),
                }),
            }
        }
        Op::Symlink { path, target } => match what(path)? {
            None => {
                std::os::unix::fs::symlink(target, path).map_err(io_err("create link", path))?;
                crash::point();
                touch(dirty, path);
                Ok(())
            }
            Some(m) if m.is_symlink() && fs::read_link(path).ok().as_ref() == Some(target) => {
                Ok(())
            }
            Some(_) => Err(OpError::Conflict {
                path: path.clone(),
                why: "exists and is not the link the plan makes",
            }),
        },
        Op::Unlink { path, target } => match what(path)? {
            None => Ok(()),
            Some(m) if m.is_symlink() && fs::read_link(path).ok().as_ref() == Some(target) => {
                fs::remove_file(path).map_err(io_err("remove link", path))?;
                crash::point();
                touch(dirty, path);
                Ok(())
            }
            Some(_) => Err(OpError::Conflict {
                path: path.clone(),
                why: "is not the link the migration made",
            }),
        },
        Op::Redefine {
            kind,
            name,
            rewrites,
        } => {
            let hv = hv.ok_or(OpError::NoHypervisor)?;
            let xml = hv.xml(*kind, name)?;
            let (new, made) = libvirt::apply_rewrites(*kind, &xml, rewrites);
            if !made.is_empty() {
                hv.define(*kind, &new)?;
                crash::point();
            }
            Ok(())
        }
    }
}

/// The temp name a copy to `to` uses (a hidden sibling).
fn tmp_for(to: &Path) -> PathBuf {
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    to.with_file_name(format!(".{name}.mv-migrate-tmp"))
}

fn rename_noreplace(from: &Path, to: &Path) -> Result<(), OpError> {
    use nix::fcntl::{renameat2, RenameFlags};
    match renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EEXIST) => Err(OpError::Conflict {
            path: to.to_path_buf(),
            why: "appeared while migrating",
        }),
        // Filesystems without RENAME_NOREPLACE: the target was checked just before.
        Err(nix::errno::Errno::EINVAL) => fs::rename(from, to).map_err(io_err("rename", from)),
        Err(e) => Err(io_err("rename", from)(io::Error::from(e))),
    }
}

fn set_owner(path: &Path, uid: u32, gid: u32, link: bool) -> Result<(), OpError> {
    let r = if link {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
    } else {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
    };
    match r {
        Ok(()) => Ok(()),
        // Not root: files can only be given to ourselves; what we create is already ours.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
        Err(e) => Err(io_err("set the owner of", path)(e)),
    }
}

fn same_content(a: &Path, am: &fs::Metadata, b: &Path, bm: &fs::Metadata) -> Result<bool, OpError> {
    if am.is_symlink() || bm.is_symlink() {
        return Ok(am.is_symlink()
            && bm.is_symlink()
            && fs::read_link(a).ok().is_some()
            && fs::read_link(a).ok() == fs::read_link(b).ok());
    }
    if am.len() != bm.len() {
        return Ok(false);
    }
    let ha = sha256_file(a).map_err(io_err("read", a))?;
    let hb = sha256_file(b).map_err(io_err("read", b))?;
    Ok(ha == hb)
}

/// Writes `data` at the current position, seeking over 4 KiB blocks that are all zero so that
/// holes stay holes (the caller sets the final length).
fn write_sparse(dst: &mut fs::File, data: &[u8]) -> io::Result<()> {
    const BLOCK: usize = 4096;
    let mut start = 0;
    while start < data.len() {
        let zero = |b: &[u8]| b.iter().all(|x| *x == 0);
        let end = (start + BLOCK).min(data.len());
        if zero(&data[start..end]) {
            // A run of zero blocks: seek over it.
            let mut stop = end;
            while stop < data.len() && zero(&data[stop..(stop + BLOCK).min(data.len())]) {
                stop = (stop + BLOCK).min(data.len());
            }
            dst.seek(SeekFrom::Current((stop - start) as i64))?;
            start = stop;
        } else {
            // A run of data blocks: one write.
            let mut stop = end;
            while stop < data.len() && !zero(&data[stop..(stop + BLOCK).min(data.len())]) {
                stop = (stop + BLOCK).min(data.len());
            }
            dst.write_all(&data[start..stop])?;
            start = stop;
        }
    }
    Ok(())
}

/// Copies `from` to a temp file beside `to` (holes kept), fsyncs, checks SHA-256 of what landed
/// on disk against the source, renames it to `to`, then removes `from`. A copy that fails (a full
/// destination, a read error, a checksum mismatch) removes its temp file before returning, so
/// that it does not keep the space the undo then needs for its journal.
fn copy_verified(from: &Path, to: &Path, copied: &dyn Fn(u64)) -> Result<(), OpError> {
    let meta = fs::symlink_metadata(from).map_err(io_err("inspect", from))?;
    let tmp = tmp_for(to);
    if let Err(e) = copy_to_tmp(from, to, &tmp, &meta, copied) {
        // Best effort: the error that matters is the copy's; a temp file that cannot be removed
        // now is removed by the next run or undo (see `execute`).
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    crash::point();
    rename_noreplace(&tmp, to)?;
    sync_parent(to)?;
    crash::point();
    fs::remove_file(from).map_err(io_err("remove", from))
}

/// The first half of [`copy_verified`]: `from` (described by `meta`) copied to `tmp`, durable
/// and checked. Leaves `tmp` behind on error; the caller removes it.
fn copy_to_tmp(
    from: &Path,
    to: &Path,
    tmp: &Path,
    meta: &fs::Metadata,
    copied: &dyn Fn(u64),
) -> Result<(), OpError> {
    if meta.is_symlink() {
        let target = fs::read_link(from).map_err(io_err("read link", from))?;
        std::os::unix::fs::symlink(&target, tmp).map_err(io_err("create link", tmp))?;
        set_owner(tmp, meta.uid(), meta.gid(), true)?;
    } else {
        let mut src = fs::File::open(from).map_err(io_err("open", from))?;
        let mut dst = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .map_err(io_err("create", tmp))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = src.read(&mut buf).map_err(io_err("read", from))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            write_sparse(&mut dst, &buf[..n]).map_err(io_err("write", tmp))?;
            total += n as u64;
            copied(n as u64);
        }
        dst.set_len(total).map_err(io_err("write", tmp))?;
        if let Ok(mtime) = meta.modified() {
            dst.set_modified(mtime)
                .map_err(io_err("set the time of", tmp))?;
        }
        drop(dst);
        set_owner(tmp, meta.uid(), meta.gid(), false)?;
        fs::set_permissions(
            tmp,
            fs::Permissions::from_mode(meta.permissions().mode() & 0o7777),
        )
        .map_err(io_err("set the mode of", tmp))?;
        // fsync through a read-only handle: the mode may forbid writing now.
        fs::File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err("sync", tmp))?;
        let landed = sha256_file(tmp).map_err(io_err("read", tmp))?;
        if landed != hex::encode(hasher.finalize()) {
            return Err(OpError::Checksum {
                from: from.to_path_buf(),
                to: to.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Bytes the ops at `todo` copy across filesystems: the total of [`CopyProgress::Start`] (renames on one
/// filesystem are instant and do not count).
fn cross_fs_bytes(plan: &Plan, todo: &[usize]) -> u64 {
    todo.iter()
        .map(|i| match &plan.ops[*i] {
            Op::Move {
                cross_fs: true,
                size,
                ..
            } => *size,
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever mix of zero and data blocks, the written file reads back identical.
        #[test]
        fn sparse_writes_read_back(runs in prop::collection::vec((any::<bool>(), 1usize..9000), 0..12)) {
            let mut data = Vec::new();
            for (zero, len) in runs {
                let byte = if zero { 0 } else { 0xa5 };
                data.extend(std::iter::repeat_n(byte, len));
            }
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("f");
            let mut f = fs::File::create(&p).unwrap();
            // In two calls, as the copy loop does with its buffer.
            let mid = data.len() / 2;
            write_sparse(&mut f, &data[..mid]).unwrap();
            write_sparse(&mut f, &data[mid..]).unwrap();
            f.set_len(data.len() as u64).unwrap();
            drop(f);
            prop_assert_eq!(fs::read(&p).unwrap(), data);
        }
    }
}
