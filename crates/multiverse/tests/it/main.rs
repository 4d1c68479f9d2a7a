//! The hermetic integration tests of the `multiverse` command (no daemons, no root, no tools beyond
//! the Rust toolchain), one test binary with a module a topic. The tests that run real tools
//! (gpg, pass, libvirtd, QEMU, tor, sshd, the lab VMs) are the per-topic files beside this folder,
//! built only with `--features system-tests` (scripts/test.sh); they stay separate binaries so
//! that the VM tests, which share the lab's cache and machine names, never run at the same time.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
mod identity_rebuild;
mod libvirt_free;
mod repo;
