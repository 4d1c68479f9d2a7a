//! `mv-core`: the few pieces every Multiverse crate needs and none should write twice.
//!
//! - [`cmdline`]: the kernel command line (`init_on_free`).
//! - [`confined`]: [`confined::RootDir`], reads and writes inside another system's root folder
//!   (a guest's mounted `/`) that no symlink can lead out of.
//! - [`duration`]: [`duration::parse`], the one grammar for durations (`500ms`, `90s`, `10m`).
//! - [`error_class`]: [`Classify`] and [`ErrorClass`], how each library error tells the CLI its
//!   exit code.
//! - [`epochs`]: [`epochs::Epochs`], the per-name key epochs of `[identity.epochs]`
//!   (`docs/spec/scramble-v1-epochs.md`), read with the line of each value.
//! - [`layout`]: [`layout::Tree`], every path of a Multiverse tree (docs/design.md "The tree on
//!   disk"), and the runtime sockets beside it.
//! - [`model`]: the shared vocabulary of the machine model: [`model::MachineType`],
//!   [`model::Os`], [`model::Arch`], [`model::CpuVendor`], [`model::PciAddress`],
//!   [`model::UsbId`], [`model::Ipv4Net`], [`model::HostAddress`], [`model::MacAddress`].
//! - [`fsutil`]: atomic file writes (temp file, fsync, rename, fsync of the folder) and secret files
//!   (mode 0600 from the moment they exist); [`fsutil::sha256_file`].
//! - [`name`]: [`name::MachineName`], a validated machine FQDN (`star.router.multiverse`), and
//!   [`name::IdentityName`], which is a machine name or a person (`@user`).
//! - [`secret`]: [`secret::Secret`], a zeroised-on-drop buffer whose `Debug` never shows the contents.
//! - [`text`]: [`text::last_lines`], the last lines of a console or log, safe to print.
//! - [`xml`]: [`xml::escape`] and [`xml::unescape`], values in libvirt's XML.
//!
//! What this crate is not: a grab bag. Anything with a single user lives in that user's crate.
//!
//! Unlike the other libraries, the modules here are public on purpose: each is one word of the
//! shared vocabulary and callers name it (`mv_core::duration::parse`, `mv_core::fsutil::write_atomic`,
//! `mv_core::model::Arch`), the way `std::fs` and `std::time` are named. Each module exposes only its
//! documented items; helpers stay `pub(crate)`.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod cmdline;
pub mod confined;
pub mod duration;
pub mod epochs;
pub mod error_class;
pub mod fsutil;
pub mod layout;
pub mod model;
pub mod name;
pub mod secret;
pub mod text;
pub mod xml;

pub use error_class::{Classify, ErrorClass};
pub use layout::Tree;
pub use name::{IdentityName, MachineName, NameError};
pub use secret::Secret;

/// The 1-based line of byte `offset` in `text` (clamped to its end): what `FILE:LINE` errors of
/// every TOML reader name.
pub fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
