//! `mv-libvirt`: everything Multiverse does through libvirt.
//!
//! - [`Connection`]: one open libvirt URI, with uniform list / XML / define / undefine on every
//!   [`ObjectKind`] (domains, networks, storage pools, network filters, secret metadata) and the
//!   lifecycle calls (start, shutdown, destroy); [`DomainState`] is a domain's run state.
//! - [`backup()`]: every definition of a host filed in the tree (`machines/<fqdn>/libvirt/`,
//!   `backups/{multiverse,foreign}/`), normalised so an unchanged host gives a zero diff.
//! - [`restore_scan`] → [`restore_plan`] → [`restore_apply`]: the reverse, in dependency order,
//!   with a diff against the host, all or nothing.
//! - [`import_image`], [`image_info`], [`OverlaySpec`]: base images and qcow2 overlays with
//!   `qemu-img`.
//! - [`up()`] / [`down`] / [`status`]: rendered files ([`UpSpec`]) → defined and running objects,
//!   and back; [`console`] attaches to a machine's serial console.
//! - [`identify`], [`normalise`]: which object a document defines; dumps normalised for backups.
//! - [`LibvirtError`], with libvirt's own message as its source; every error type implements
//!   [`mv_core::Classify`].
//!
//! What this crate is not: a model of libvirt XML (libvirt validates it) nor a `virsh` wrapper
//! (every call goes through the libvirt API via the `virt` bindings; only [`console`] runs
//! `virsh`, whose console client libvirt's API does not offer). It never prints and never reads
//! `multiverse.toml`: the CLI builds the specs from `mv-machines`.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod backup;
mod conn;
mod console;
mod error;
mod images;
mod restore;
mod up;
mod xml;

pub use backup::{
    backup, object_path, BackupError, BackupFile, BackupReport, FileChange, Ownership,
};
pub use conn::{Connection, DomainState, ObjectKind, VolumeInfo, DEFAULT_URI};
pub use console::{console, ConsoleError};
pub use error::{LibvirtError, VirtError};
pub use images::{
    disk_passphrase, import as import_image, info as image_info, ImageError, ImageInfo,
    Outcome as ImageOutcome, OverlaySpec,
};
pub use restore::{
    apply as restore_apply, plan as restore_plan, scan as restore_scan, Change as RestoreChange,
    Collision, Entry as RestoreEntry, RestoreError, RestoreReport, Step as RestoreStep,
};
pub use up::{
    console_tail, down, status, up, up_with, Done, Item as UpItem, LuksSecret, MachineSpec,
    MachineStatus, ReadyProbe, Report as UpReport, UpError, UpOptions, UpSpec,
};
pub use xml::{identify, normalise, Identity, XmlError};

/// The readers of untrusted input, for the fuzz target (`crates/mv-libvirt/fuzz`) only.
#[cfg(fuzzing)]
pub mod fuzz {
    pub use crate::images::parse_info;
    pub use crate::xml::{
        identify, inject_metadata, is_subset, normalise, referenced_networks, rendered_hash,
        with_uuid,
    };
}
