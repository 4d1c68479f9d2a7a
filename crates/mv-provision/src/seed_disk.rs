//! A machine's seed disk on file: `machines/<fqdn>/seed.img`, what the machine applies to itself
//! at boot (`provision apply-seed`), kept current with its desired state.
//!
//! [`ensure_seed`] writes the seed folder ([`crate::seed::write_dir`]), the `multiverse` binary
//! that applies it ([`copy_applier`], stripped of debug info) and packs them into a small ext4
//! disk ([`crate::seed::make_disk`], 0600, renamed into place), then records the seed id beside
//! it. The seed id on file decides whether anything is written, so a second `up` rewrites
//! nothing and the guest provisions nothing again. The scratch folder is private (0700, a random
//! name beside the disk) and removed on drop.
//!
//! What this is not: the seed's format (that is [`crate::seed`]) or the choice of which binary
//! goes on it (the caller's: an environment variable, or the executable beside it).

use crate::render::Desired;
use crate::seed::{self, SeedError, SeedId};
use mv_core::fsutil::FsError;
use mv_core::{Classify, ErrorClass, MachineName, NameError};
use mv_machines::Tree;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What [`ensure_seed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedOutcome {
    /// A new seed disk was written (first time, or the desired state changed).
    Written(SeedId),
    /// The seed disk on file already holds this desired state.
    Unchanged(SeedId),
}

/// Why the seed disk could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SeedDiskError {
    /// The desired state names no valid machine.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The machine's folder could not be made.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The private scratch folder could not be made.
    #[error("cannot make a scratch folder in {}: {error}", dir.display())]
    Scratch {
        /// Where.
        dir: PathBuf,
        /// Why (in the message: the CLI showed it so before this error had a type).
        error: std::io::Error,
    },
    /// The seed folder or disk could not be written.
    #[error(transparent)]
    Seed(#[from] SeedError),
    /// No `multiverse` binary at the path the caller gave.
    #[error("cannot find the multiverse binary to put on the seed disk at {}", .0.display())]
    NoApplier(PathBuf),
    /// The binary could not be copied or made executable.
    #[error("{what} {}", path.display())]
    Applier {
        /// What was being done.
        what: &'static str,
        /// The destination.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The seed id could not be recorded.
    #[error(transparent)]
    Record(#[from] FsError),
}

impl SeedDiskError {
    /// Whether the error happened while writing the disk (as opposed to before it started).
    pub fn while_writing(&self) -> bool {
        !matches!(
            self,
            SeedDiskError::Name(_) | SeedDiskError::Io(_) | SeedDiskError::Scratch { .. }
        )
    }
}

impl Classify for SeedDiskError {
    fn class(&self) -> ErrorClass {
        match self {
            SeedDiskError::Name(_)
            | SeedDiskError::Seed(SeedError::Malformed { .. } | SeedError::Mismatch { .. }) => {
                ErrorClass::Usage
            }
            _ => ErrorClass::Failure,
        }
    }
}

/// Makes sure `tree`'s `machines/<fqdn>/seed.img` holds `d`, with the binary at `applier` on it
/// (see the module documentation). With `dry_run`, says what it would do and writes nothing.
pub fn ensure_seed(
    tree: &Tree,
    d: &Desired,
    applier: &Path,
    dry_run: bool,
) -> Result<SeedOutcome, SeedDiskError> {
    let name = MachineName::parse(&d.machine)?;
    let id = seed::seed_id(d);
    let disk = tree.seed_disk(&name);
    let recorded = std::fs::read_to_string(tree.seed_id(&name)).unwrap_or_default();
    if disk.is_file() && recorded.trim() == id.0 {
        return Ok(SeedOutcome::Unchanged(id));
    }
    if dry_run {
        return Ok(SeedOutcome::Written(id));
    }
    let dir = tree.machine_dir(&name);
    std::fs::create_dir_all(&dir)?;
    // A private scratch folder beside the disk (0700, unpredictable name), removed on drop.
    let scratch = tempfile::Builder::new()
        .prefix(".seed.")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(&dir)
        .map_err(|error| SeedDiskError::Scratch {
            dir: dir.clone(),
            error,
        })?;
    let folder = scratch.path().join("seed");
    // Nothing half-made: the disk is written to a temp file and renamed (make_disk), the id
    // after it, and the scratch folder goes on drop.
    let written = seed::write_dir(d, &folder)?;
    copy_applier(applier, &folder.join("multiverse"))?;
    seed::make_disk(&folder, &disk)?;
    mv_core::fsutil::write_public(&tree.seed_id(&name), format!("{written}\n").as_bytes())?;
    Ok(SeedOutcome::Written(written))
}

/// Copies the binary `src` to `dest` (mode 0755), stripped of debug info to keep seeds small.
pub(crate) fn copy_applier(src: &Path, dest: &Path) -> Result<(), SeedDiskError> {
    if !src.is_file() {
        return Err(SeedDiskError::NoApplier(src.to_path_buf()));
    }
    // strip's own complaints are not shown: a failed strip falls back to a plain copy, whose
    // error (if any) is the one reported.
    let stripped = std::process::Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(dest)
        .arg(src)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let io = |what: &'static str| {
        let path = dest.to_path_buf();
        move |source| SeedDiskError::Applier { what, path, source }
    };
    if !stripped {
        std::fs::copy(src, dest).map_err(io("cannot copy the multiverse binary to"))?;
    }
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))
        .map_err(io("cannot set the mode of"))?;
    Ok(())
}
