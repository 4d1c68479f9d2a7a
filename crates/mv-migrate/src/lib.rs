//! `mv-migrate`: moves an old Multiverse tree to the current layout, crash-safe and undoable.
//!
//! The old layout (the project's early notes) keeps `Data/` beside `Machines/`, loose `*.qcow2`
//! images in `Machines/`, and folders in mixed case. The current layout (DESIGN.md) keeps
//! everything of a machine in `machines/<fqdn>/` (its disk as `disk.qcow2`, its old data in `data/`)
//! and links every disk from `storage/<fqdn>.qcow2`. docs/migrate.md defines both precisely, with
//! the rule applied to each awkward case.
//!
//! How it works, in three steps that never overlap:
//! 1. [`plan::plan`] reads the old tree (and, through the [`libvirt::Hypervisor`] trait, libvirt)
//!    and writes nothing. It returns a [`plan::Plan`]: an ordered list of small reversible
//!    [`plan::Op`]s (make a folder, move an entry, remove an emptied folder, make a link, redefine a
//!    libvirt object) plus the [`plan::Finding`]s: entries that are left in place, each with a
//!    reason.
//! 2. [`apply::Migration::run`] saves the plan in `<root>/.multiverse-migrate/` and executes it
//!    under a write-ahead [`journal::Journal`] (every record fsync'd). Every op checks the state it
//!    finds before acting, so re-running after a crash or `kill -9` simply finishes the work.
//! 3. [`apply::Migration::undo`] runs the inverse of every op in reverse order, under the same
//!    journal, and removes the state folder: the old tree is back, names, case, modes, symlinks
//!    and contents.
//!
//! [`snapshot::Snapshot`] records every path, kind, mode, symlink target and SHA-256 of a tree; the
//! tests and the benchmark use it to prove that nothing was lost or changed.
//!
//! What this crate is not: a general file mover. It knows one old layout and one new one, refuses
//! to overwrite anything, and leaves whatever it cannot place by a clear rule where it was.
#![forbid(unsafe_code)]

pub mod apply;
pub mod crash;
pub mod journal;
pub mod libvirt;
pub mod names;
pub mod plan;
pub mod snapshot;

pub use apply::{ApplyError, Migration, Outcome};
pub use plan::{plan, Finding, FindingKind, Op, Plan, PlanError};

/// Name of the folder, inside the new root, that holds the saved plan and the journal.
pub const STATE_DIR: &str = ".multiverse-migrate";
