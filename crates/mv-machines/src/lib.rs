//! `mv-machines` (Portal Gun): the machine model of a Multiverse host and everything rendered
//! from it.
//!
//! - [`config`]: `multiverse.toml` read into a validated [`config::Topology`] (host, networks,
//!   machines), errors as `FILE:LINE: what`.
//! - [`layout`]: [`layout::Tree`], where every file of the tree lives (docs/design.md's layout).
//! - [`templates`]: [`templates::Engine`], minijinja with strict undefined variables, embedded
//!   templates overridable from `<root>/templates/`; reusable with another embedded set.
//! - [`render`]: [`render::render_tree`] turns a topology into domain, network and pool XML,
//!   per-machine `machine.toml` and `storage/` symlinks, all validated before anything is written.
//! - [`edit`]: adding and removing machines in `multiverse.toml`, comments kept.
//!
//! What this crate is not: it never talks to libvirt (that is `mv-libvirt`), never creates disks
//! and holds no secrets.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod config;
pub mod edit;
pub mod layout;

pub use config::{ConfigError, Machine, MachineType, Topology};
pub use layout::Tree;
pub mod render;
pub mod templates;
