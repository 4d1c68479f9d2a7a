//! The hermetic integration tests of `multiverse-agent` (no daemons, no root, no tools beyond the Rust
//! toolchain), one test binary with a module a topic.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
mod provisioned;
mod soak;
