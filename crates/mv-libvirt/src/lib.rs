//! `mv-libvirt`: everything Multiverse does through libvirt.
//!
//! - [`conn`]: [`Connection`], one open libvirt URI, with uniform list / XML / define / undefine
//!   on every [`ObjectKind`] (domains, networks, storage pools, network filters, secret metadata)
//!   and the lifecycle calls (start, shutdown, destroy).
//! - [`backup`]: every definition of a host filed in the tree (`machines/<fqdn>/libvirt/`,
//!   `backups/{multiverse,foreign}/`), normalised so an unchanged host gives a zero diff.
//! - [`restore`]: the reverse, in dependency order, with a diff against the host, all or nothing.
//! - [`images`]: base images and qcow2 overlays with `qemu-img`.
//! - [`up`]: `up` / `down` / `status`: rendered files → defined and running objects, and back.
//! - [`xml`]: reads which object a document defines; normalises dumps for backups.
//! - [`error`]: [`LibvirtError`], with libvirt's own message as its source.
//!
//! What this crate is not: a model of libvirt XML (libvirt validates it) nor a `virsh` wrapper
//! (every call goes through the libvirt API via the `virt` bindings).
#![forbid(unsafe_code)]

pub mod backup;
pub mod conn;
pub mod error;
pub mod images;
pub mod restore;
pub mod up;
pub mod xml;

pub use conn::{Connection, DomainState, ObjectKind, VolumeInfo, DEFAULT_URI};
pub use error::{LibvirtError, VirtError};
