//! `mv-machines` (Portal Gun): the machine model of a Multiverse host and everything rendered
//! from it.
//!
//! The public API is this root; the modules are private. Where a reader starts:
//!
//! - [`Topology`]: `multiverse.toml` read ([`Topology::load`], [`Topology::parse`]) and validated
//!   into the host, the [`Network`]s and the [`Machine`]s, every default filled in; errors are a
//!   [`ConfigError`] whose text is `FILE:LINE: what`. [`DEFAULT_TOML`], [`LAB_TOML`] and
//!   [`lab_toml`] are the texts `multiverse init` writes.
//! - [`Tree`] (defined in `mv_core::layout`, re-exported): where every file of the tree lives
//!   (docs/design.md's layout); the rest of that layout (`agent_socket`, `POOL_NAME`...) is
//!   `mv_core::layout`'s.
//! - [`Engine`]: minijinja with strict undefined variables, embedded templates overridable from
//!   `<root>/templates/`; reusable with another embedded set (mv-provision does), errors
//!   [`TemplateError`].
//! - [`render_tree`] turns a topology into domain, network and pool XML, per-machine
//!   `machine.toml` and `storage/` symlinks, all validated before anything is written, and
//!   reports a [`RenderReport`]; [`render_plan`] is the same in memory ([`Output`]s).
//! - [`add_machine`], [`remove_machine`]: editing `multiverse.toml` as text, comments kept; the
//!   caller re-validates the result with [`Topology::parse`] before writing.
//!   [`set_epoch_in_file`] does the whole edit of `[identity.epochs]` (read, edit, validate,
//!   atomic write).
//!
//! What this crate is not: it never talks to libvirt (that is `mv-libvirt`), never creates disks
//! and holds no secrets.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod config;
mod edit;
mod render;
mod templates;

pub use config::{
    lab_toml, Accel, ConfigError, Disk, DiskEncryption, Firmware, HostConfig, IommuConfig, Machine,
    Network, NetworkAttachment, OnionService, Problem, RouterOptions, RouterRole, SerializeError,
    Topology, VpnKind, DEFAULT_TOML, LAB_TOML,
};
pub use edit::{
    add_machine, remove_machine, set_epoch_in_file, EditError, EpochFileError, NewMachine,
    NewNetwork,
};
pub use mv_core::layout::Tree;
/// The shared model types a [`Machine`] is made of (defined in `mv_core::model`).
pub use mv_core::model::{Arch, CpuVendor, MachineType, Os};
pub use render::{
    luks_secret_uuid, plan as render_plan, render_tree, stable_uuid, Change, Output, RenderError,
    RenderReport,
};
pub use templates::{Engine, TemplateError};

#[cfg(any(test, feature = "test-hooks"))]
#[doc(hidden)]
pub use config::fuzz_entry;
