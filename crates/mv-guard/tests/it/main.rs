//! The hermetic integration tests of `mv-guard` (no daemons, no root, no tools beyond the Rust
//! toolchain), one test binary with a module a topic.
#![allow(clippy::unwrap_used)]

mod emit;
mod steganalysis;
