//! `backup`: pull every libvirt definition off a host and file it in the tree.
//!
//! Where things go (relative to the tree root, or `--out DIR`):
//!
//! | object | file |
//! |---|---|
//! | domain of a machine of the multiverse | `machines/<fqdn>/libvirt/domain.xml` |
//! | network / pool / filter / secret of the multiverse | `backups/multiverse/<kind>/<name>.xml` |
//! | anything else on the host | `backups/foreign/<kind>/<name>.xml` |
//! | volumes of an active pool (names and paths, never contents) | `<pool file>` with `.volumes` instead of `.xml` |
//!
//! Domains are saved as their inactive (persistent) XML; secrets as metadata only (libvirt's XML
//! of a secret never holds its value, and we never ask for values). Every file is normalised
//! ([`crate::xml::normalise`]) and written only when its bytes change, so a second backup of an
//! unchanged host is a zero git diff. Files under `backups/{multiverse,foreign}/` whose object no
//! longer exists are removed (the folder mirrors the host); a machine's `libvirt/domain.xml` is
//! never removed, since it may be the only copy of a machine not defined on this host.
//!
//! What this is not: a disk backup. Images and volumes are data, not definitions.

use crate::conn::{Connection, ObjectKind};
use crate::error::LibvirtError;
use mv_core::fsutil::{self, FsError};
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Which objects belong to the multiverse (by name); everything else is foreign.
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    /// Machine FQDNs: their domains go to `machines/<fqdn>/libvirt/domain.xml`.
    pub machines: BTreeSet<String>,
    /// Other objects (networks, pools, filters, secrets by UUID) of the multiverse.
    pub others: BTreeSet<(ObjectKind, String)>,
}

impl Ownership {
    /// Counts every folder of `machines_dir` (a tree's `machines/`) as a machine of the
    /// multiverse, so that a tree without `multiverse.toml` (a bare backup) still knows its
    /// machines. A missing or unreadable folder adds nothing.
    pub fn add_machine_folders(&mut self, machines_dir: &Path) {
        if let Ok(rd) = std::fs::read_dir(machines_dir) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    self.machines
                        .insert(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }

    fn is_machine(&self, kind: ObjectKind, name: &str) -> bool {
        kind == ObjectKind::Domain && self.machines.contains(name)
    }
    fn is_ours(&self, kind: ObjectKind, name: &str) -> bool {
        self.is_machine(kind, name) || self.others.contains(&(kind, name.to_string()))
    }
}

/// Where the backup of one object lives under `out`.
pub fn object_path(out: &Path, own: &Ownership, kind: ObjectKind, name: &str) -> PathBuf {
    if own.is_machine(kind, name) {
        return out
            .join("machines")
            .join(name)
            .join("libvirt")
            .join("domain.xml");
    }
    let side = if own.is_ours(kind, name) {
        "multiverse"
    } else {
        "foreign"
    };
    out.join("backups")
        .join(side)
        .join(kind.as_str())
        .join(format!("{}.xml", file_stem(name)))
}

/// A file-name-safe form of a libvirt name: `[A-Za-z0-9._+-]` kept, everything else (and a leading
/// dot) as `%XX`. Injective, so two objects never share a file.
pub(crate) fn file_stem(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let keep =
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-') || (b == b'.' && i > 0);
        if keep {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    if s.is_empty() {
        s.push('%');
    }
    s
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileChange {
    /// Written (new or different content).
    Written,
    /// Already held these bytes.
    Unchanged,
    /// Removed: its object is gone from the host.
    Removed,
}

/// One file of a backup.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupFile {
    /// The object's kind (`None` for a `.volumes` list or a pruned file).
    pub kind: Option<ObjectKind>,
    /// The object's name (UUID for secrets); empty for a pruned file.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// What happened (or, in a dry run, would happen).
    pub change: FileChange,
}

/// The result of a backup.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BackupReport {
    /// Every file considered, in the order written.
    pub files: Vec<BackupFile>,
}

impl BackupReport {
    /// Files written or removed.
    pub fn changed(&self) -> usize {
        self.files
            .iter()
            .filter(|f| f.change != FileChange::Unchanged)
            .count()
    }
}

/// Why a backup failed. Files already written stay (each is complete: writes are atomic).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Talking to libvirt failed.
    #[error("cannot back up from libvirt")]
    Libvirt(#[from] LibvirtError),
    /// Writing or pruning a file failed.
    #[error("cannot write the backup")]
    Write(#[from] FsError),
}

/// Backs up every object of the host into `out`. With `dry_run`, reads everything and reports what
/// would change, writing nothing.
pub fn backup(
    conn: &Connection,
    out: &Path,
    own: &Ownership,
    dry_run: bool,
) -> Result<BackupReport, BackupError> {
    let mut report = BackupReport::default();
    // 1. Read everything over the one connection (fast: a round trip per object).
    let mut texts: Vec<String> = Vec::new();
    for kind in ObjectKind::ALL {
        let names = match conn.list(kind) {
            Ok(n) => n,
            // qemu:///embed has domains only: back up what the driver has.
            Err(e) if e.is_unsupported() => continue,
            Err(e) => return Err(e.into()),
        };
        for name in names {
            let xml = match conn.xml(kind, &name, true) {
                Ok(x) => x,
                // Undefined between list and read (a transient domain that stopped): not ours to keep.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let path = object_path(out, own, kind, &name);
            texts.push(crate::xml::normalise(kind, &xml));
            report.files.push(BackupFile {
                kind: Some(kind),
                name: name.clone(),
                path: path.clone(),
                change: FileChange::Unchanged,
            });
            if kind == ObjectKind::Pool {
                let vols = conn.pool_volumes(&name)?;
                if !vols.is_empty() {
                    let mut listing = String::new();
                    for v in vols {
                        listing.push_str(&format!("{}\t{}\n", v.name, v.path));
                    }
                    texts.push(listing);
                    report.files.push(BackupFile {
                        kind: None,
                        name,
                        path: path.with_extension("volumes"),
                        change: FileChange::Unchanged,
                    });
                }
            }
        }
    }
    // 2. Write in parallel: each write is atomic and fsynced, and the fsyncs, not the reads, are
    //    what a first backup of hundreds of objects waits for.
    //    They wait on the disk, not the CPU: more threads than cores.
    let write_all = || {
        report
            .files
            .par_iter()
            .zip(texts.par_iter())
            .map(|(f, text)| put(&f.path, text, dry_run))
            .collect::<Result<Vec<FileChange>, FsError>>()
    };
    let changes = match rayon::ThreadPoolBuilder::new().num_threads(16).build() {
        Ok(pool) => pool.install(write_all)?,
        Err(_) => write_all()?,
    };
    for (f, c) in report.files.iter_mut().zip(changes) {
        f.change = c;
    }
    let keep: BTreeSet<PathBuf> = report.files.iter().map(|f| f.path.clone()).collect();
    for side in ["multiverse", "foreign"] {
        let dir = out.join("backups").join(side);
        for path in files_under(&dir)? {
            if !keep.contains(&path) {
                if !dry_run {
                    std::fs::remove_file(&path)
                        .map_err(|e| FsError::new("cannot remove stale backup", &path, e))?;
                }
                report.files.push(BackupFile {
                    kind: None,
                    name: String::new(),
                    path,
                    change: FileChange::Removed,
                });
            }
        }
    }
    Ok(report)
}

fn put(path: &Path, text: &str, dry_run: bool) -> Result<FileChange, FsError> {
    let same = std::fs::read(path)
        .map(|b| b == text.as_bytes())
        .unwrap_or(false);
    if dry_run {
        return Ok(if same {
            FileChange::Unchanged
        } else {
            FileChange::Written
        });
    }
    Ok(if fsutil::write_public(path, text.as_bytes())? {
        FileChange::Written
    } else {
        FileChange::Unchanged
    })
}

/// Files (`*.xml`, `*.volumes`) in `dir/<kind>/`, sorted. A missing folder has none.
pub(crate) fn files_under(dir: &Path) -> Result<Vec<PathBuf>, FsError> {
    let mut out = Vec::new();
    let kinds = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(FsError::new("cannot read folder", dir, e)),
    };
    for k in kinds {
        let k = k.map_err(|e| FsError::new("cannot read folder", dir, e))?;
        let kdir = k.path();
        if !kdir.is_dir() {
            continue;
        }
        let entries =
            std::fs::read_dir(&kdir).map_err(|e| FsError::new("cannot read folder", &kdir, e))?;
        for f in entries {
            let f = f.map_err(|e| FsError::new("cannot read folder", &kdir, e))?;
            let p = f.path();
            let ext = p.extension().and_then(|e| e.to_str());
            if p.is_file() && matches!(ext, Some("xml") | Some("volumes")) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths() {
        let mut own = Ownership::default();
        own.machines.insert("star.router.multiverse".into());
        own.others.insert((ObjectKind::Pool, "multiverse".into()));
        let out = Path::new("/t");
        assert_eq!(
            object_path(out, &own, ObjectKind::Domain, "star.router.multiverse"),
            Path::new("/t/machines/star.router.multiverse/libvirt/domain.xml")
        );
        assert_eq!(
            object_path(out, &own, ObjectKind::Pool, "multiverse"),
            Path::new("/t/backups/multiverse/pool/multiverse.xml")
        );
        assert_eq!(
            object_path(out, &own, ObjectKind::Domain, "win 10/x"),
            Path::new("/t/backups/foreign/domain/win%2010%2Fx.xml")
        );
        assert_eq!(file_stem(".hidden"), "%2Ehidden");
        assert_eq!(file_stem("a%b"), "a%25b");
    }

    proptest! {
        #[test]
        fn file_stem_is_injective_and_safe(a in ".{0,20}", b in ".{0,20}") {
            let (sa, sb) = (file_stem(&a), file_stem(&b));
            prop_assert!(!sa.contains('/') && !sa.starts_with('.'));
            if a != b {
                prop_assert_ne!(sa, sb);
            }
        }
    }
}
