//! The hermetic integration tests of `mv-provision` (no daemons, no root, no tools beyond the Rust
//! toolchain), one test binary with a module a topic.
#![allow(clippy::unwrap_used)]

mod alpine;
#[path = "../common/mod.rs"]
mod common;
mod fuzz_entry;
mod golden;
mod state;
