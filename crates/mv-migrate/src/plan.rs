//! The planner: reads the old tree (and libvirt) and decides every step, writing nothing.
//!
//! The result, a [`Plan`], is a list of small [`Op`]s in execution order and a list of
//! [`Finding`]s. Each op is reversible and checks what it finds before acting (see
//! `crate::apply`), which is what makes the migration resumable and undoable. Each finding names
//! one entry that is left where it is (or moved by a rule worth telling), with its reason.
//!
//! The rules (docs/migrate.md quotes them):
//! - `Machines/<Name>/` and `Data/<Name>/` name the machine [`crate::names::machine_name`]`(Name)`.
//! - `Machines/<Name>/` moves into `machines/<fqdn>/`, `Data/<Name>/` into `machines/<fqdn>/data/`,
//!   entry by entry; folder names are lower-cased at every depth, file names are kept.
//! - `Machines/<Name>.qcow2` (any case of `.qcow2`, a regular file starting with the qcow2 magic)
//!   moves to `machines/<fqdn>/disk.qcow2` when a folder names that machine.
//! - every `machines/<fqdn>/disk.qcow2` the plan creates gets `storage/<fqdn>.qcow2 ->
//!   ../machines/<fqdn>/disk.qcow2`.
//! - nothing is ever overwritten or merged into a file: a target that exists is a finding; names that
//!   would land on the same target (they differ only in case) are all findings; symlinks move as
//!   links (their target text unchanged); a folder is removed only once everything in it moved.

use crate::libvirt::{self, Hypervisor, HypervisorError, ObjectKind, Rewrite};
use crate::names;
use mv_core::MachineName;
use mv_machines::Tree;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Version of the saved plan format.
pub(crate) const PLAN_VERSION: u32 = 1;

/// One step of a migration. Every op has an inverse ([`Op::inverse`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Create a folder with this mode and owner.
    MkDir {
        /// The folder.
        path: PathBuf,
        /// Permission bits.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// Move a file or symlink: a rename on one filesystem, else copy, verify by SHA-256, remove.
    Move {
        /// Where it is.
        from: PathBuf,
        /// Where it goes (must not exist).
        to: PathBuf,
        /// Source and target are on different filesystems.
        cross_fs: bool,
        /// Size in bytes at planning time (for the progress bar).
        size: u64,
    },
    /// Remove a folder that the plan emptied (its mode and owner are kept for the undo).
    RmDir {
        /// The folder.
        path: PathBuf,
        /// Permission bits.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// Create a symlink.
    Symlink {
        /// The link.
        path: PathBuf,
        /// What it points at (relative).
        target: PathBuf,
    },
    /// Remove a symlink (the inverse of [`Op::Symlink`]).
    Unlink {
        /// The link.
        path: PathBuf,
        /// What it must point at to be removed.
        target: PathBuf,
    },
    /// Redefine a libvirt object with some of its paths replaced.
    Redefine {
        /// Domain or pool.
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// The replacements.
        rewrites: Vec<Rewrite>,
    },
}

impl Op {
    /// The op that undoes this one.
    pub fn inverse(&self) -> Op {
        match self.clone() {
            Op::MkDir {
                path,
                mode,
                uid,
                gid,
            } => Op::RmDir {
                path,
                mode,
                uid,
                gid,
            },
            Op::RmDir {
                path,
                mode,
                uid,
                gid,
            } => Op::MkDir {
                path,
                mode,
                uid,
                gid,
            },
            Op::Move {
                from,
                to,
                cross_fs,
                size,
            } => Op::Move {
                from: to,
                to: from,
                cross_fs,
                size,
            },
            Op::Symlink { path, target } => Op::Unlink { path, target },
            Op::Unlink { path, target } => Op::Symlink { path, target },
            Op::Redefine {
                kind,
                name,
                rewrites,
            } => Op::Redefine {
                kind,
                name,
                rewrites: rewrites
                    .into_iter()
                    .map(|r| Rewrite {
                        old: r.new,
                        new: r.old,
                    })
                    .collect(),
            },
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::MkDir { path, mode, .. } => write!(f, "mkdir   {} (mode {mode:o})", path.display()),
            Op::Move {
                from, to, cross_fs, ..
            } => {
                let how = if *cross_fs { "copy  " } else { "rename" };
                write!(f, "{how}  {} -> {}", from.display(), to.display())
            }
            Op::RmDir { path, .. } => write!(f, "rmdir   {} (emptied)", path.display()),
            Op::Symlink { path, target } => {
                write!(f, "link    {} -> {}", path.display(), target.display())
            }
            Op::Unlink { path, .. } => write!(f, "unlink  {}", path.display()),
            Op::Redefine {
                kind,
                name,
                rewrites,
            } => {
                write!(f, "define  {kind} {name}:")?;
                for r in rewrites {
                    write!(f, " {} -> {};", r.old, r.new)?;
                }
                Ok(())
            }
        }
    }
}

/// Why an entry is reported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FindingKind {
    /// Several names differ only in case and would land on the same target: none is moved.
    CaseCollision {
        /// The shared target.
        target: PathBuf,
        /// Every source competing for it.
        sources: Vec<PathBuf>,
    },
    /// The target already exists (and is not a folder the entry could merge into).
    TargetExists {
        /// The target.
        target: PathBuf,
    },
    /// The name cannot become a machine name.
    BadMachineName,
    /// The name is not UTF-8 (it could not be recorded in the plan or in libvirt XML).
    NotUtf8,
    /// A file in `Machines/` that is not a qcow2 image (by name or by its first bytes).
    NotAnImage,
    /// A qcow2 image whose name matches no machine folder in `Machines/` or `Data/`.
    NoMachine {
        /// The machine the name maps to.
        machine: String,
    },
    /// A symlink directly in `Machines/` or `Data/`: where its target belongs is unknowable.
    LooseSymlink,
    /// A plain file directly in `Data/` (data belongs to a machine folder).
    LooseDataFile,
    /// An entry at the top of the old tree that is not `Data/` or `Machines/`.
    NotInOldLayout,
    /// A FIFO, socket or device node.
    SpecialFile,
    /// A symlink whose target does not exist: it is moved as it is (still dangling).
    DanglingSymlink {
        /// Its target text.
        target: PathBuf,
    },
    /// A libvirt object refers to a path in the old tree that the plan does not move.
    LibvirtPathStays {
        /// Domain or pool.
        object_kind: ObjectKind,
        /// Its name.
        name: String,
    },
}

/// One entry the plan reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    /// The entry.
    pub path: PathBuf,
    /// Why.
    #[serde(flatten)]
    pub kind: FindingKind,
}

impl Finding {
    /// Whether the entry stays where it is (the alternative: it moves, by a rule worth telling).
    pub fn left_in_place(&self) -> bool {
        !matches!(self.kind, FindingKind::DanglingSymlink { .. })
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.kind {
            FindingKind::CaseCollision { target, sources } => {
                write!(
                    f,
                    "left    {p}: {} names differ only in case and would all become {}",
                    sources.len(),
                    target.display()
                )
            }
            FindingKind::TargetExists { target } => {
                write!(f, "left    {p}: {} already exists", target.display())
            }
            FindingKind::BadMachineName => {
                write!(f, "left    {p}: the name cannot become a machine name")
            }
            FindingKind::NotUtf8 => write!(f, "left    {p}: the name is not UTF-8"),
            FindingKind::NotAnImage => write!(f, "left    {p}: not a qcow2 image"),
            FindingKind::NoMachine { machine } => {
                write!(f, "left    {p}: no machine folder for {machine}")
            }
            FindingKind::LooseSymlink => {
                write!(f, "left    {p}: a symlink outside any machine folder")
            }
            FindingKind::LooseDataFile => {
                write!(f, "left    {p}: a file outside any machine data folder")
            }
            FindingKind::NotInOldLayout => {
                write!(
                    f,
                    "left    {p}: not part of the old layout (Data/, Machines/)"
                )
            }
            FindingKind::SpecialFile => write!(f, "left    {p}: a FIFO, socket or device"),
            FindingKind::DanglingSymlink { target } => {
                write!(
                    f,
                    "note    {p}: dangling symlink to {}, moved as it is",
                    target.display()
                )
            }
            FindingKind::LibvirtPathStays { object_kind, name } => {
                write!(
                    f,
                    "note    {object_kind} {name} keeps {p}, which does not move"
                )
            }
        }
    }
}

/// A complete migration plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// The format version of a saved plan (1: this one).
    pub version: u32,
    /// The old tree (absolute).
    pub from: PathBuf,
    /// The new root (absolute).
    pub to: PathBuf,
    /// The new root does not exist yet and is created first (and removed by the undo).
    pub create_root: bool,
    /// Steps in execution order.
    pub ops: Vec<Op>,
    /// Entries reported.
    pub findings: Vec<Finding>,
}

impl Plan {
    /// Human-readable rendering: one line per op, then one per finding.
    pub fn render(&self) -> String {
        let mut s = format!(
            "migration plan: {} -> {}\n",
            self.from.display(),
            self.to.display()
        );
        if self.create_root {
            s.push_str(&format!("mkdir   {} (new root)\n", self.to.display()));
        }
        for op in &self.ops {
            s.push_str(&format!("{op}\n"));
        }
        for f in &self.findings {
            s.push_str(&format!("{f}\n"));
        }
        let left = self.findings.iter().filter(|f| f.left_in_place()).count();
        s.push_str(&format!(
            "{} steps, {} entries left in place\n",
            self.ops.len(),
            left
        ));
        s
    }
}

/// Why a plan could not be made. Nothing has been written when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The old tree is missing or not a folder.
    #[error("old tree {path} is not a folder")]
    NotAFolder {
        /// The path given.
        path: PathBuf,
    },
    /// The new root's parent folder does not exist.
    #[error("the folder holding the new root {path} does not exist")]
    NoRootParent {
        /// The root given.
        path: PathBuf,
    },
    /// The new root lies inside `Data/` or `Machines/` of the old tree.
    #[error("the new root {to} lies inside the old tree's {inside}")]
    RootInsideOld {
        /// The root.
        to: PathBuf,
        /// The old folder containing it.
        inside: PathBuf,
    },
    /// A path has a name that is not UTF-8.
    #[error("path {path} is not UTF-8")]
    NotUtf8 {
        /// The path.
        path: PathBuf,
    },
    /// Reading the tree failed.
    #[error("cannot read {path}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// libvirt failed.
    #[error(transparent)]
    Libvirt(#[from] HypervisorError),
    /// Domains that use files the plan moves are running.
    #[error("domain(s) {} running and using files of the old tree: shut them down first", .names.join(", "))]
    DomainsRunning {
        /// Their names.
        names: Vec<String>,
    },
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> PlanError + '_ {
    move |source| PlanError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// What the planner believes a path is once the ops planned so far have run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Planned {
    Dir,
    Other,
}

struct Planner {
    to_dev: u64,
    ops: Vec<Op>,
    findings: Vec<Finding>,
    /// Targets created by ops planned so far.
    planned: HashMap<PathBuf, Planned>,
    /// Old path -> new path, for every moved file and every folder whose content moved.
    map: HashMap<String, String>,
}

impl Planner {
    fn finding(&mut self, path: &Path, kind: FindingKind) {
        self.findings.push(Finding {
            path: path.to_path_buf(),
            kind,
        });
    }

    /// What `p` is, counting planned ops: a folder, something else, or nothing.
    fn exists(&self, p: &Path) -> Option<Planned> {
        if let Some(k) = self.planned.get(p) {
            return Some(*k);
        }
        match fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => Some(Planned::Dir),
            Ok(_) => Some(Planned::Other),
            Err(_) => None,
        }
    }

    /// Ensures folder `dst` will exist (planning a MkDir like `like`, or 0755 root:root);
    /// false when something else is in the way (reported against `src`).
    fn ensure_dir(&mut self, src: &Path, dst: &Path, like: Option<&fs::Metadata>) -> bool {
        match self.exists(dst) {
            Some(Planned::Dir) => true,
            Some(Planned::Other) => {
                self.finding(
                    src,
                    FindingKind::TargetExists {
                        target: dst.to_path_buf(),
                    },
                );
                false
            }
            None => {
                let (mode, uid, gid) = match like {
                    Some(m) => (m.permissions().mode() & 0o7777, m.uid(), m.gid()),
                    None => (0o755, 0, 0),
                };
                self.ops.push(Op::MkDir {
                    path: dst.to_path_buf(),
                    mode,
                    uid,
                    gid,
                });
                self.planned.insert(dst.to_path_buf(), Planned::Dir);
                true
            }
        }
    }

    fn plan_move(&mut self, from: &Path, to: &Path, meta: &fs::Metadata) -> Result<(), PlanError> {
        let cross_fs = meta.dev() != self.to_dev;
        self.ops.push(Op::Move {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            cross_fs,
            size: if meta.is_file() { meta.len() } else { 0 },
        });
        self.planned.insert(to.to_path_buf(), Planned::Other);
        self.map_path(from, to)
    }

    fn map_path(&mut self, from: &Path, to: &Path) -> Result<(), PlanError> {
        let f = utf8(from)?;
        let t = utf8(to)?;
        self.map.insert(f.to_string(), t.to_string());
        Ok(())
    }

    /// Moves the content of folder `src` into folder `dst` (which will exist), recursively.
    /// Returns whether everything moved (then `src` is removed too).
    fn move_tree(&mut self, src: &Path, dst: &Path) -> Result<bool, PlanError> {
        let entries = list(src)?;
        // Target names: folders lower-cased, everything else unchanged.
        let mut by_target: BTreeMap<OsString, Vec<(OsString, fs::Metadata)>> = BTreeMap::new();
        let mut all = true;
        for (name, meta) in entries {
            if name.to_str().is_none() {
                self.finding(&src.join(&name), FindingKind::NotUtf8);
                all = false;
                continue;
            }
            let t = if meta.is_dir() {
                names::lower_folder(&name)
            } else {
                name.clone()
            };
            by_target.entry(t).or_default().push((name, meta));
        }
        for (tname, group) in by_target {
            let target = dst.join(&tname);
            if group.len() > 1 {
                let sources: Vec<PathBuf> = group.iter().map(|(n, _)| src.join(n)).collect();
                for s in &sources {
                    self.finding(
                        s,
                        FindingKind::CaseCollision {
                            target: target.clone(),
                            sources: sources.clone(),
                        },
                    );
                }
                all = false;
                continue;
            }
            let (name, meta) = &group[0];
            let from = src.join(name);
            let ft = meta.file_type();
            if ft.is_dir() {
                if !self.ensure_dir(&from, &target, Some(meta)) {
                    all = false;
                    continue;
                }
                if self.move_tree(&from, &target)? {
                    self.map_path(&from, &target)?;
                } else {
                    all = false;
                }
            } else if ft.is_file() || ft.is_symlink() {
                if self.exists(&target).is_some() {
                    self.finding(&from, FindingKind::TargetExists { target });
                    all = false;
                    continue;
                }
                if ft.is_symlink() && fs::metadata(&from).is_err() {
                    let link = fs::read_link(&from).map_err(read_err(&from))?;
                    self.finding(&from, FindingKind::DanglingSymlink { target: link });
                }
                self.plan_move(&from, &target, meta)?;
            } else {
                self.finding(&from, FindingKind::SpecialFile);
                all = false;
            }
        }
        if all {
            let m = fs::symlink_metadata(src).map_err(read_err(src))?;
            self.ops.push(Op::RmDir {
                path: src.to_path_buf(),
                mode: m.permissions().mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
            });
        }
        Ok(all)
    }
}

fn utf8(p: &Path) -> Result<&str, PlanError> {
    p.to_str().ok_or_else(|| PlanError::NotUtf8 {
        path: p.to_path_buf(),
    })
}

/// Entries of a folder, sorted by name (so that plans are deterministic).
fn list(dir: &Path) -> Result<Vec<(OsString, fs::Metadata)>, PlanError> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).map_err(read_err(dir))? {
        let e = e.map_err(read_err(dir))?;
        let p = e.path();
        let m = fs::symlink_metadata(&p).map_err(read_err(&p))?;
        v.push((e.file_name(), m));
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

/// Whether a regular file starts with the qcow2 magic.
fn is_qcow2(p: &Path) -> bool {
    let mut b = [0u8; 4];
    fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut b))
        .map(|()| b == names::QCOW2_MAGIC)
        .unwrap_or(false)
}

/// Names at the top of a root that belong to the new layout (never reported when migrating in
/// place), as `mv-machines` lays it out.
fn new_layout_names(tree: &Tree) -> Vec<OsString> {
    [
        tree.config_file(),
        tree.identity_dir(),
        tree.machines_dir(),
        tree.images_dir(),
        tree.storage_dir(),
        tree.pass_dir(),
        tree.templates_dir(),
        tree.libvirt_dir(),
        tree.migrate_state_dir(),
    ]
    .iter()
    .filter_map(|p| p.file_name().map(OsStr::to_os_string))
    .collect()
}

/// Makes the plan to migrate the old tree `from` into the new root `to` (which may be the same
/// folder). Reads libvirt through `hv` when given. Writes nothing.
pub fn plan(from: &Path, to: &Path, hv: Option<&dyn Hypervisor>) -> Result<Plan, PlanError> {
    let from_abs = fs::canonicalize(from).map_err(|_| PlanError::NotAFolder {
        path: from.to_path_buf(),
    })?;
    if !from_abs.is_dir() {
        return Err(PlanError::NotAFolder {
            path: from.to_path_buf(),
        });
    }
    let (to_abs, create_root) = match fs::canonicalize(to) {
        Ok(p) => (p, false),
        Err(_) => {
            let parent = match to.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let name = to.file_name().ok_or_else(|| PlanError::NoRootParent {
                path: to.to_path_buf(),
            })?;
            let parent = fs::canonicalize(parent).map_err(|_| PlanError::NoRootParent {
                path: to.to_path_buf(),
            })?;
            (parent.join(name), true)
        }
    };
    utf8(&from_abs)?;
    utf8(&to_abs)?;
    let tree = Tree::new(&to_abs);
    let new_names = new_layout_names(&tree);
    let old_machines = from_abs.join("Machines");
    let old_data = from_abs.join("Data");
    for inside in [&old_machines, &old_data] {
        if to_abs.starts_with(inside) {
            return Err(PlanError::RootInsideOld {
                to: to_abs,
                inside: inside.clone(),
            });
        }
    }
    let dev_probe = if create_root {
        to_abs.parent().unwrap_or(&to_abs).to_path_buf()
    } else {
        to_abs.clone()
    };
    let to_dev = fs::metadata(&dev_probe)
        .map_err(read_err(&dev_probe))?
        .dev();
    let mut p = Planner {
        to_dev,
        ops: Vec::new(),
        findings: Vec::new(),
        planned: HashMap::new(),
        map: HashMap::new(),
    };

    // The top of the old tree: only Data/ and Machines/ belong to the old layout.
    let top = list(&from_abs)?;
    let is_real_dir = |name: &str| {
        top.iter()
            .any(|(n, m)| n.as_os_str() == OsStr::new(name) && m.is_dir())
    };
    let has_machines = is_real_dir("Machines");
    let has_data = is_real_dir("Data");
    for (name, meta) in &top {
        let path = from_abs.join(name);
        if (name == "Machines" && has_machines) || (name == "Data" && has_data) {
            continue;
        }
        let ours = from_abs == to_abs && new_names.contains(name);
        if ours || to_abs.starts_with(&path) {
            continue;
        }
        let _ = meta;
        p.finding(&path, FindingKind::NotInOldLayout);
    }

    // Classify Machines/ and Data/ entries by machine.
    let mut folders: BTreeMap<MachineName, Vec<(PathBuf, fs::Metadata)>> = BTreeMap::new();
    let mut data: BTreeMap<MachineName, Vec<(PathBuf, fs::Metadata)>> = BTreeMap::new();
    let mut images: BTreeMap<MachineName, Vec<(PathBuf, fs::Metadata)>> = BTreeMap::new();
    let mut machines_all = has_machines;
    let mut data_all = has_data;
    if has_machines {
        for (name, meta) in list(&old_machines)? {
            let path = old_machines.join(&name);
            let ft = meta.file_type();
            let kind = if name.to_str().is_none() {
                Err(FindingKind::NotUtf8)
            } else if ft.is_symlink() {
                Err(FindingKind::LooseSymlink)
            } else if ft.is_dir() {
                match names::machine_name(&name) {
                    Some(m) => Ok((&mut folders, m)),
                    None => Err(FindingKind::BadMachineName),
                }
            } else if ft.is_file() {
                match names::qcow2_stem(&name) {
                    Some(stem) if is_qcow2(&path) => match names::machine_name(stem) {
                        Some(m) => Ok((&mut images, m)),
                        None => Err(FindingKind::BadMachineName),
                    },
                    _ => Err(FindingKind::NotAnImage),
                }
            } else {
                Err(FindingKind::SpecialFile)
            };
            match kind {
                Ok((map, m)) => map.entry(m).or_default().push((path, meta)),
                Err(k) => {
                    machines_all = false;
                    p.finding(&path, k);
                }
            }
        }
    }
    if has_data {
        for (name, meta) in list(&old_data)? {
            let path = old_data.join(&name);
            let ft = meta.file_type();
            let kind = if name.to_str().is_none() {
                Err(FindingKind::NotUtf8)
            } else if ft.is_symlink() {
                Err(FindingKind::LooseSymlink)
            } else if ft.is_dir() {
                names::machine_name(&name).ok_or(FindingKind::BadMachineName)
            } else if ft.is_file() {
                Err(FindingKind::LooseDataFile)
            } else {
                Err(FindingKind::SpecialFile)
            };
            match kind {
                Ok(m) => data.entry(m).or_default().push((path, meta)),
                Err(k) => {
                    data_all = false;
                    p.finding(&path, k);
                }
            }
        }
    }

    let new_machines = tree.machines_dir();
    let storage = tree.storage_dir();
    let mut machine_set: Vec<MachineName> = folders.keys().chain(data.keys()).cloned().collect();
    machine_set.sort();
    machine_set.dedup();

    // Case collisions among the candidates for one machine: none of them moves.
    let collide = |p: &mut Planner, group: &[(PathBuf, fs::Metadata)], target: PathBuf| -> bool {
        if group.len() < 2 {
            return false;
        }
        let sources: Vec<PathBuf> = group.iter().map(|(s, _)| s.clone()).collect();
        for s in &sources {
            p.finding(
                s,
                FindingKind::CaseCollision {
                    target: target.clone(),
                    sources: sources.clone(),
                },
            );
        }
        true
    };

    for m in &machine_set {
        let mdir = tree.machine_dir(m);
        let single = |g: Option<&Vec<(PathBuf, fs::Metadata)>>| g.is_some_and(|g| g.len() == 1);
        if !single(folders.get(m)) && !single(data.get(m)) && !single(images.get(m)) {
            // Every candidate collides: report them all, create nothing for this machine.
            for (group, target) in [
                (folders.get(m), mdir.clone()),
                (data.get(m), mdir.join("data")),
                (images.get(m), tree.disk(m)),
            ] {
                if let Some(g) = group {
                    collide(&mut p, g, target);
                }
            }
            machines_all &= !folders.contains_key(m) && !images.contains_key(m);
            data_all &= !data.contains_key(m);
            continue;
        }
        if !p.ensure_dir(&from_abs, &new_machines, None) {
            machines_all = false;
            data_all = false;
            continue;
        }
        let first_meta = folders
            .get(m)
            .and_then(|g| g.first())
            .map(|(_, meta)| meta.clone());
        let src_of = folders
            .get(m)
            .or(data.get(m))
            .and_then(|g| g.first())
            .map_or_else(|| from_abs.clone(), |(path, _)| path.clone());
        if !p.ensure_dir(&src_of, &mdir, first_meta.as_ref()) {
            machines_all = false;
            data_all = false;
            continue;
        }
        if let Some(group) = folders.get(m) {
            if collide(&mut p, group, mdir.clone()) {
                machines_all = false;
            } else if p.move_tree(&group[0].0, &mdir)? {
                p.map_path(&group[0].0, &mdir)?;
            } else {
                machines_all = false;
            }
        }
        if let Some(group) = data.get(m) {
            let ddir = mdir.join("data");
            if collide(&mut p, group, ddir.clone())
                || !p.ensure_dir(&group[0].0, &ddir, Some(&group[0].1))
            {
                data_all = false;
            } else if p.move_tree(&group[0].0, &ddir)? {
                p.map_path(&group[0].0, &ddir)?;
            } else {
                data_all = false;
            }
        }
        if let Some(group) = images.get(m) {
            let disk = tree.disk(m);
            if collide(&mut p, group, disk.clone()) {
                machines_all = false;
            } else if p.exists(&disk).is_some() {
                p.finding(&group[0].0, FindingKind::TargetExists { target: disk });
                machines_all = false;
            } else {
                let (src, meta) = &group[0];
                p.plan_move(src, &disk, meta)?;
            }
        }
        // Link every disk this plan puts in place.
        let disk = tree.disk(m);
        if p.planned.get(&disk) == Some(&Planned::Other) {
            let link = tree.storage_link(m);
            let target = Tree::storage_link_target(m, 0);
            if p.ensure_dir(&from_abs, &storage, None) {
                if p.exists(&link).is_some() {
                    p.finding(&disk, FindingKind::TargetExists { target: link });
                } else {
                    p.ops.push(Op::Symlink {
                        path: link.clone(),
                        target,
                    });
                    p.planned.insert(link, Planned::Other);
                }
            }
        }
    }
    // Images whose machine has no folder stay.
    for (m, group) in &images {
        if !machine_set.contains(m) {
            for (src, _) in group {
                p.finding(
                    src,
                    FindingKind::NoMachine {
                        machine: m.to_string(),
                    },
                );
            }
            machines_all = false;
        }
    }
    // The old top folders go once nothing is left in them.
    for (has, all, dir) in [
        (has_machines, machines_all, &old_machines),
        (has_data, data_all, &old_data),
    ] {
        if has && all {
            let meta = fs::symlink_metadata(dir).map_err(read_err(dir))?;
            p.ops.push(Op::RmDir {
                path: dir.clone(),
                mode: meta.permissions().mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
            });
        }
    }
    if has_machines {
        // A pool on Machines/ served the loose images; their links now live in storage/.
        p.map_path(&old_machines, &storage)?;
    }

    if let Some(hv) = hv {
        plan_libvirt(&mut p, hv, &from_abs)?;
    }

    Ok(Plan {
        version: PLAN_VERSION,
        from: from_abs,
        to: to_abs,
        create_root,
        ops: p.ops,
        findings: p.findings,
    })
}

/// Adds a Redefine op for every domain and pool that refers to a moved path.
fn plan_libvirt(p: &mut Planner, hv: &dyn Hypervisor, from: &Path) -> Result<(), PlanError> {
    let old_roots = [from.join("Machines"), from.join("Data")];
    let mut running = Vec::new();
    for kind in [ObjectKind::Domain, ObjectKind::Pool] {
        let mut names = hv.list(kind)?;
        names.sort();
        for name in names {
            let xml = hv.xml(kind, &name)?;
            let map = &p.map;
            let (_, rewrites) = libvirt::rewrite(kind, &xml, &|path| map.get(path).cloned());
            for path in libvirt::paths(kind, &xml) {
                let in_old = old_roots.iter().any(|r| Path::new(&path).starts_with(r));
                if in_old && !rewrites.iter().any(|r| r.old == path) {
                    p.finding(
                        Path::new(&path),
                        FindingKind::LibvirtPathStays {
                            object_kind: kind,
                            name: name.clone(),
                        },
                    );
                }
            }
            if rewrites.is_empty() {
                continue;
            }
            if kind == ObjectKind::Domain && hv.is_active(kind, &name)? {
                running.push(name);
                continue;
            }
            p.ops.push(Op::Redefine {
                kind,
                name,
                rewrites,
            });
        }
    }
    if !running.is_empty() {
        return Err(PlanError::DomainsRunning { names: running });
    }
    Ok(())
}
