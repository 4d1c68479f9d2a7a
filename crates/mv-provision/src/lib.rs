//! `mv-provision`: declarative, idempotent provisioning of Multiverse machines, replacing the old
//! per-machine `provision.sh` scripts.
//!
//! A machine's provisioning is data, not shell: a **recipe** per machine type and router role
//! ([`recipe`], TOML under `recipes/`) lists packages, services, sysctl keys, kernel modules,
//! users and files; files come from **templates** ([`template`], minijinja with strict undefined
//! values) or from the **identity** (SSH host keys, login keys, password hashes). [`render`] turns
//! a [`model::MachineSpec`] plus an [`model::IdentitySource`] into a [`render::Desired`] state;
//! [`apply::plan`] compares it with a mounted root filesystem ([`apply::Target`]) and
//! [`apply::apply`] makes the target match, so that a second run reports no changes.
//!
//! Targets: Alpine (apk, OpenRC, `/etc/network/interfaces`) and Debian (apt, systemd). Package
//! databases are read as files ([`pkgdb`]) and accounts edited as files ([`accounts`]), so an
//! Alpine root can be planned and provisioned from a Debian build machine, with `apk` run in a
//! chroot. [`check`] runs each generated router configuration through its own tool (`nft -c`,
//! `dnsmasq --test`, `tor --verify-config`, `sshd -t`, `wg-quick strip`).
//!
//! What this crate is not: the machine model (`mv-machines` owns `multiverse.toml`), the key
//! derivation (`mv-identity`), or a remote-execution framework; the CLI wires those in.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod adapt;
pub mod apply;
pub mod check;
pub mod model;
pub mod pkgdb;
pub mod recipe;
pub mod render;
pub mod template;

pub use apply::{apply, plan, Applied, ApplyError, Change, Plan, Runner, SystemRunner, Target};
pub use model::{IdentitySource, Kind, MachineSpec, Os, Role};
pub use render::{render, Desired, RenderError};
pub use template::Engine;
