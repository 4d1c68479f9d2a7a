//! `mv-install`: `multiverse install`, which puts a Multiverse host on a disk.
//!
//! The flow: [`answers::Answers::load`] reads the answer file, [`answers::Answers::check`] holds it
//! against the machine (every problem is `FILE:LINE: what`, and nothing is touched before all
//! answers pass), then [`install::install`] runs the journaled [`install::Step`]s through a
//! [`host::Host`]: [`host::RealHost`] for a real run, [`host::DryRun`] for `--dry-run`, which
//! records the very commands and writes a real run makes on a blank disk.
//!
//! The new disk: GPT with an ESP (FAT, 512 MiB), `/boot` (ext4, 512 MiB) and a LUKS2 root whose
//! keyslot 0 holds the identity's `luks` key for the host and keyslot 1 the passphrase; Debian
//! copied from a host image (`multiverse image build debian --kernel generic --include …`, see
//! docs/install.md), GRUB for UEFI, an initramfs with cryptsetup and the token hook
//! (`contrib/initramfs-tools`), the tree under `/var/multiverse`, and the key hidden in a PNG on the
//! token. The installed host is locked down (`files::DISABLED_UNITS`, no address on any network).
//!
//! The interactive installer's questions are [`form::Form`]: the model, its keys, validation and
//! the writing of the answer file, free of any terminal library (the CLI draws it), proposing
//! defaults from what it finds on the machine (disks, tokens, NICs, GPUs). `form` is the one
//! public module, a namespace (`form::Form`, `form::Row`, `form::Action`: names that would be
//! ambiguous at the root); the rest is private and re-exported here.
//!
//! Every error type implements [`mv_core::Classify`]. Output goes through [`Host`] (a real run's
//! verbose lines, or [`DryRun`]'s recorded commands); the crate prints nothing.
//!
//! What this is not: the terminal screen (the CLI's `install` without `--answers`), or the host
//! checks (`mv-host`), which it calls.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod answers;
mod classify;
mod defaults;
mod files;
pub mod form;
mod host;
mod install;
mod probe;

pub use answers::{
    AnswerError, Answers, Checked, Pbkdf, Problem, Source, System, TopologyKind,
    MIN_PASSPHRASE_CHARS,
};
pub use host::{Cmd, DryRun, Host, HostError, Ran, RealHost};
/// The crash-test hook (feature `test-hooks`, tests only).
#[cfg(feature = "test-hooks")]
pub use install::CRASH_ENV;
pub use install::{install, InstallError, Options, Report, Step, SOURCE_NEEDS};

/// The pure pieces the golden tests pin (partition table, files written into the new system).
#[cfg(any(test, feature = "test-hooks"))]
pub mod golden {
    pub use crate::files::{target_files, DiskIds};
    pub use crate::install::{disk_ids, sfdisk_script};
}

/// Whether this process runs as root (partitioning and LUKS need it).
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}
