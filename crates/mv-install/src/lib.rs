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
//! What this is not: the TUI that writes an answer file (the CLI's `install` without `--answers`,
//! proposing defaults from [`probe`]), or the host checks (`mv-host`), which it calls.
#![forbid(unsafe_code)]

pub mod answers;
pub mod files;
pub mod host;
pub mod install;
pub mod probe;

pub use answers::{AnswerError, Answers, Checked, Problem, System};
pub use host::{DryRun, Host, RealHost};
pub use install::{install, InstallError, Options, Report, Step};

/// Whether this process runs as root (partitioning and LUKS need it).
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}
