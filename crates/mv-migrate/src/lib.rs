//! `mv-migrate`: moves an old Multiverse tree to the current layout, crash-safe and undoable.
//!
//! The old layout (the project's early notes) keeps `Data/` beside `Machines/`, loose `*.qcow2`
//! images in `Machines/`, and folders in mixed case. The current layout (docs/design.md) keeps
//! everything of a machine in `machines/<fqdn>/` (its disk as `disk.qcow2`, its old data in `data/`)
//! and links every disk from `storage/<fqdn>.qcow2`. docs/migrate.md defines both precisely, with
//! the rule applied to each awkward case.
//!
//! How it works, in three steps that never overlap:
//! 1. [`plan()`] reads the old tree (and, through the [`Hypervisor`] trait, libvirt)
//!    and writes nothing. It returns a [`Plan`]: an ordered list of small reversible
//!    [`Op`]s (make a folder, move an entry, remove an emptied folder, make a link, redefine a
//!    libvirt object) plus the [`Finding`]s: entries that are left in place, each with a
//!    reason.
//! 2. [`Migration::run`] saves the plan in `<root>/.multiverse-migrate/` and executes it
//!    under a write-ahead journal (every record fsync'd). Every op checks the state it
//!    finds before acting, so re-running after a crash or `kill -9` simply finishes the work.
//! 3. [`Migration::undo`] runs the inverse of every op in reverse order, under the same
//!    journal, and removes the state folder: the old tree is back, names, case, modes, symlinks
//!    and contents.
//!
//! Progress of long copies reaches the caller through [`Migration::on_progress`]
//! ([`CopyProgress`]); this crate never prints. With the `test-hooks` feature (tests only),
//! `Snapshot` records every path, kind, mode, symlink target and SHA-256 of a tree, which the tests
//! use to prove that nothing was lost or changed, and `CRASH_ENV` makes the process abort at a
//! chosen crash point.
//!
//! What this crate is not: a general file mover. It knows one old layout and one new one, refuses
//! to overwrite anything, and leaves whatever it cannot place by a clear rule where it was.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod apply;
mod crash;
mod journal;
mod libvirt;
mod names;
mod plan;
#[cfg(any(test, feature = "test-hooks"))]
mod snapshot;

pub use apply::{ApplyError, CopyProgress, Migration, OpError, Outcome, State};
pub use journal::{JournalError, Progress};
pub use libvirt::{Hypervisor, HypervisorError, Libvirt, ObjectKind, Rewrite};
pub use plan::{plan, Finding, FindingKind, Op, Plan, PlanError};

#[cfg(feature = "test-hooks")]
pub use crash::CRASH_ENV;
#[cfg(any(test, feature = "test-hooks"))]
pub use snapshot::{Entry, Snapshot, SnapshotError};

/// The SHA-256 of a file's contents, in lower-case hex (what [`Snapshot`] records; test hooks).
#[cfg(any(test, feature = "test-hooks"))]
pub use mv_core::fsutil::sha256_file;

/// Name of the folder, inside the new root, that holds the saved plan and the journal.
pub const STATE_DIR: &str = ".multiverse-migrate";

/// The parsers of untrusted input, for the fuzz targets (`crates/mv-migrate/fuzz`) only.
#[cfg(fuzzing)]
pub mod fuzz {
    pub use crate::journal::parse as journal;
    pub use crate::libvirt::rewrite;
    pub use crate::names::{lower_folder, machine_name, qcow2_stem};
}

// Error classes for the CLI (exit 2 for what the person can fix, 1 otherwise).

impl mv_core::Classify for PlanError {
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            // Paths the person gave.
            PlanError::NotAFolder { .. }
            | PlanError::NoRootParent { .. }
            | PlanError::RootInsideOld { .. }
            | PlanError::NotUtf8 { .. } => mv_core::ErrorClass::Usage,
            _ => mv_core::ErrorClass::Failure,
        }
    }
}

impl mv_core::Classify for ApplyError {
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            // Another migration (or its undo) is half done: the person picks what to finish.
            ApplyError::OtherInProgress { .. } | ApplyError::UndoInProgress { .. } => {
                mv_core::ErrorClass::Usage
            }
            _ => mv_core::ErrorClass::Failure,
        }
    }
}

impl mv_core::Classify for OpError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

impl mv_core::Classify for JournalError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

impl mv_core::Classify for HypervisorError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

#[cfg(any(test, feature = "test-hooks"))]
impl mv_core::Classify for SnapshotError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}
