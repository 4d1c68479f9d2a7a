//! `restore`: define every object of a backup back on a host, all or nothing.
//!
//! 1. [`scan`] reads the backup's files (the layout of [`crate::backup`]) and identifies each
//!    object from its XML (kind from the root element, name from `<name>`, UUID).
//! 2. [`plan`] compares each with what the host has: [`Change::Create`], [`Change::Update`]
//!    (with a unified diff of the inactive XML) or [`Change::Unchanged`]. A host object with the
//!    same name but another UUID is a collision and stops the restore before anything is defined.
//! 3. [`apply`] defines in dependency order (secrets, filters, pools, networks, then domains). It
//!    journals what it did; if any definition fails, it undoes the journal in reverse (undefines
//!    what it created, redefines the previous XML of what it updated) and reports the file and
//!    libvirt's message. No half-restored host.
//!
//! What this is not: a start. Restored pools, networks and domains are defined, not started
//! (`multiverse up --start` does that), and secret values are not restored (a backup never has
//! them).

use crate::backup::files_under;
use crate::conn::{Connection, ObjectKind};
use crate::error::LibvirtError;
use crate::xml::{identify, normalise, XmlError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One object found in a backup.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name (UUID for secrets).
    pub name: String,
    /// Its UUID, when the XML has one.
    pub uuid: Option<String>,
    /// The file it came from.
    pub path: PathBuf,
    /// The XML.
    pub xml: String,
}

/// What a restore does to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Not defined on the host: define it.
    Create,
    /// Defined with a different definition: redefine it. Holds the diff (host → backup).
    Update {
        /// Unified diff of the normalised inactive XML.
        diff: String,
    },
    /// Defined exactly so: nothing to do.
    Unchanged,
}

/// One step of a restore plan.
#[derive(Debug, Clone)]
pub struct Step {
    /// The object.
    pub entry: Entry,
    /// What happens to it.
    pub change: Change,
    /// The host's current inactive XML, for undo (when it exists).
    pub current: Option<String>,
}

/// What was done.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// Objects defined that did not exist.
    pub created: Vec<(ObjectKind, String)>,
    /// Objects redefined.
    pub updated: Vec<(ObjectKind, String)>,
    /// Objects already as in the backup.
    pub unchanged: usize,
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A file of the backup cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not a libvirt object definition.
    #[error("{path} is not a libvirt definition")]
    Identify {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: XmlError,
    },
    /// A definition without a name (or a secret without a UUID).
    #[error("{path}: the {kind} has no <{}>", if *kind == ObjectKind::Secret { "uuid" } else { "name" })]
    NoName {
        /// The file.
        path: PathBuf,
        /// Its kind.
        kind: ObjectKind,
    },
    /// Two files define the same object.
    #[error("{first} and {second} both define {kind} {name}")]
    Duplicate {
        /// Kind.
        kind: ObjectKind,
        /// Name.
        name: String,
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// The folder holds no backup.
    #[error("{0} holds no libvirt backup (no machines/*/libvirt/*.xml nor backups/*/*/*.xml)")]
    Empty(PathBuf),
    /// The host already has another object of that name (different UUID).
    #[error("{}: {} {} already exists on the host with UUID {}, the backup has UUID {}", .0.path.display(), .0.kind, .0.name, .0.host_uuid, .0.backup_uuid)]
    Collision(Box<Collision>),
    /// Reading the host's state failed.
    #[error("cannot compare the backup with the host")]
    Libvirt(#[from] LibvirtError),
    /// A definition failed; everything this run defined was undone.
    #[error(
        "{path}: restore stopped, {undone} earlier definition(s) of this run undone{}",
        undo_summary(undo_failures)
    )]
    Apply {
        /// The file whose definition failed.
        path: PathBuf,
        /// How many journal entries were undone.
        undone: usize,
        /// Undo steps that failed themselves (the host needs a look).
        undo_failures: Vec<String>,
        /// Libvirt's refusal.
        #[source]
        source: Box<LibvirtError>,
    },
}

/// A name collision: the details of [`RestoreError::Collision`].
#[derive(Debug)]
pub struct Collision {
    /// The file.
    pub path: PathBuf,
    /// Kind.
    pub kind: ObjectKind,
    /// Name.
    pub name: String,
    /// UUID on the host.
    pub host_uuid: String,
    /// UUID in the backup.
    pub backup_uuid: String,
}

fn undo_summary(fails: &[String]) -> String {
    if fails.is_empty() {
        String::new()
    } else {
        format!(
            "; {} could NOT be undone: {}",
            fails.len(),
            fails.join("; ")
        )
    }
}

/// Reads every definition of the backup at `dir`, sorted in restore order (kind, then name).
pub fn scan(dir: &Path) -> Result<Vec<Entry>, RestoreError> {
    let mut files: Vec<PathBuf> = Vec::new();
    let machines = dir.join("machines");
    if let Ok(rd) = std::fs::read_dir(&machines) {
        for m in rd.flatten() {
            let f = m.path().join("libvirt").join("domain.xml");
            if f.is_file() {
                files.push(f);
            }
        }
    }
    for side in ["multiverse", "foreign"] {
        let d = dir.join("backups").join(side);
        let found = files_under(&d).map_err(|e| RestoreError::Read {
            path: e.path.clone(),
            source: e.source,
        })?;
        files.extend(
            found
                .into_iter()
                .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("xml")),
        );
    }
    if files.is_empty() {
        return Err(RestoreError::Empty(dir.to_path_buf()));
    }
    let mut seen: BTreeMap<(ObjectKind, String), Entry> = BTreeMap::new();
    for path in files {
        let xml = std::fs::read_to_string(&path).map_err(|source| RestoreError::Read {
            path: path.clone(),
            source,
        })?;
        let id = identify(&xml).map_err(|source| RestoreError::Identify {
            path: path.clone(),
            source,
        })?;
        let Some(name) = id.name.filter(|n| !n.is_empty()) else {
            return Err(RestoreError::NoName {
                path,
                kind: id.kind,
            });
        };
        let key = (id.kind, name.clone());
        if let Some(prev) = seen.get(&key) {
            return Err(RestoreError::Duplicate {
                kind: id.kind,
                name,
                first: prev.path.clone(),
                second: path,
            });
        }
        seen.insert(
            key,
            Entry {
                kind: id.kind,
                name,
                uuid: id.uuid,
                path,
                xml,
            },
        );
    }
    Ok(seen.into_values().collect())
}

/// Compares each entry with the host. Fails on a collision before anything is defined.
pub fn plan(conn: &Connection, entries: Vec<Entry>) -> Result<Vec<Step>, RestoreError> {
    let mut steps = Vec::with_capacity(entries.len());
    for entry in entries {
        let current = match conn.xml(entry.kind, &entry.name, true) {
            Ok(x) => Some(x),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        let change = match &current {
            None => Change::Create,
            Some(cur) => {
                let host_uuid = identify(cur).ok().and_then(|i| i.uuid);
                if let (Some(h), Some(b)) = (&host_uuid, &entry.uuid) {
                    if !h.eq_ignore_ascii_case(b) {
                        return Err(RestoreError::Collision(Box::new(Collision {
                            path: entry.path.clone(),
                            kind: entry.kind,
                            name: entry.name.clone(),
                            host_uuid: h.clone(),
                            backup_uuid: b.clone(),
                        })));
                    }
                }
                let a = normalise(entry.kind, cur);
                let b = normalise(entry.kind, &entry.xml);
                if a == b {
                    Change::Unchanged
                } else {
                    let diff = similar::TextDiff::from_lines(&a, &b)
                        .unified_diff()
                        .header(
                            &format!("host {} {}", entry.kind, entry.name),
                            &entry.path.display().to_string(),
                        )
                        .to_string();
                    Change::Update { diff }
                }
            }
        };
        steps.push(Step {
            entry,
            change,
            current,
        });
    }
    Ok(steps)
}

enum Undo {
    Undefine(ObjectKind, String),
    Redefine(ObjectKind, String, String),
}

/// Applies a plan, all or nothing.
pub fn apply(conn: &Connection, steps: &[Step]) -> Result<RestoreReport, RestoreError> {
    let mut journal: Vec<Undo> = Vec::new();
    let mut report = RestoreReport::default();
    for step in steps {
        let e = &step.entry;
        let undo = match (&step.change, &step.current) {
            (Change::Unchanged, _) => {
                report.unchanged += 1;
                continue;
            }
            (Change::Create, _) | (Change::Update { .. }, None) => {
                Undo::Undefine(e.kind, e.name.clone())
            }
            (Change::Update { .. }, Some(old)) => {
                Undo::Redefine(e.kind, e.name.clone(), old.clone())
            }
        };
        // A hand-written file without <uuid> updates the host's object rather than colliding.
        let host_uuid = step
            .current
            .as_deref()
            .and_then(|c| identify(c).ok())
            .and_then(|i| i.uuid);
        let xml = match (&e.uuid, host_uuid) {
            (None, Some(u)) => crate::xml::with_uuid(&e.xml, &u).unwrap_or_else(|_| e.xml.clone()),
            _ => e.xml.clone(),
        };
        if let Err(source) = conn.define(e.kind, &xml) {
            let undone = journal.len();
            let undo_failures = rollback(conn, journal);
            return Err(RestoreError::Apply {
                path: e.path.clone(),
                undone,
                undo_failures,
                source: Box::new(source),
            });
        }
        match &undo {
            Undo::Undefine(k, n) => report.created.push((*k, n.clone())),
            Undo::Redefine(k, n, _) => report.updated.push((*k, n.clone())),
        }
        journal.push(undo);
    }
    Ok(report)
}

fn rollback(conn: &Connection, journal: Vec<Undo>) -> Vec<String> {
    let mut failures = Vec::new();
    for u in journal.into_iter().rev() {
        let res = match &u {
            Undo::Undefine(k, n) => conn.undefine(*k, n),
            Undo::Redefine(k, _, xml) => conn.define(*k, xml).map(drop),
        };
        if let Err(e) = res {
            let (k, n) = match &u {
                Undo::Undefine(k, n) | Undo::Redefine(k, n, _) => (k, n),
            };
            failures.push(format!("{k} {n}: {e}"));
        }
    }
    failures
}
