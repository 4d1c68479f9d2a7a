//! The hermetic integration tests of `mv-migrate` (no daemons, no root, no tools beyond the Rust
//! toolchain), one test binary with a module a topic.
#![allow(clippy::unwrap_used)]

mod libvirt_fake;
mod random_trees;
mod sparse_copy;
