//! A snapshot of a tree: every path with its kind, permission bits, owner, size, SHA-256 (files) or
//! target (symlinks). Used to prove that a migration lost and changed nothing, and that an undo
//! restores the old tree exactly.
//!
//! Not recorded: timestamps of folders (moving entries in and out of a folder changes its mtime,
//! which no rename can avoid) and extended attributes. Built for the tests only (`test-hooks`).

use mv_core::fsutil::sha256_file;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One entry of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Entry {
    /// A folder.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Owner and group.
        owner: (u32, u32),
    },
    /// A regular file.
    File {
        /// Permission bits.
        mode: u32,
        /// Owner and group.
        owner: (u32, u32),
        /// Size in bytes.
        size: u64,
        /// SHA-256 of the contents, hex.
        sha256: String,
        /// Modification time (seconds, nanoseconds).
        mtime: (i64, i64),
    },
    /// A symlink.
    Symlink {
        /// Its target text.
        target: PathBuf,
    },
    /// Anything else (FIFO, socket, device).
    Other {
        /// Permission bits.
        mode: u32,
    },
}

/// Every entry under a root, by path relative to it (the root itself is "").
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Snapshot(pub BTreeMap<PathBuf, Entry>);

/// A snapshot failure.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path} for a snapshot")]
pub struct SnapshotError {
    /// The path.
    pub path: PathBuf,
    /// Cause.
    #[source]
    pub source: io::Error,
}

impl Snapshot {
    /// Walks `root` (never following symlinks) and records everything, skipping any top-level
    /// name in `skip`.
    pub fn take(root: &Path, skip: &[&str]) -> Result<Snapshot, SnapshotError> {
        let mut s = Snapshot::default();
        walk(root, Path::new(""), skip, &mut s.0)?;
        Ok(s)
    }

    /// A stable text form (one line per entry), handy for diffs in test failures.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (p, e) in &self.0 {
            out.push_str(&format!("{}\t{:?}\n", p.display(), e));
        }
        out
    }
}

fn walk(
    root: &Path,
    rel: &Path,
    skip: &[&str],
    out: &mut BTreeMap<PathBuf, Entry>,
) -> Result<(), SnapshotError> {
    let path = root.join(rel);
    let err = |source| SnapshotError {
        path: path.clone(),
        source,
    };
    let m = fs::symlink_metadata(&path).map_err(err)?;
    let mode = m.permissions().mode() & 0o7777;
    let owner = (m.uid(), m.gid());
    let ft = m.file_type();
    let entry = if ft.is_symlink() {
        Entry::Symlink {
            target: fs::read_link(&path).map_err(err)?,
        }
    } else if ft.is_dir() {
        Entry::Dir { mode, owner }
    } else if ft.is_file() {
        Entry::File {
            mode,
            owner,
            size: m.len(),
            sha256: sha256_file(&path).map_err(err)?,
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    } else {
        Entry::Other { mode }
    };
    out.insert(rel.to_path_buf(), entry);
    if ft.is_dir() {
        for e in fs::read_dir(&path).map_err(err)? {
            let e = e.map_err(err)?;
            let name = e.file_name();
            if rel.as_os_str().is_empty() && skip.iter().any(|s| name == *s) {
                continue;
            }
            walk(root, &rel.join(name), skip, out)?;
        }
    }
    Ok(())
}
