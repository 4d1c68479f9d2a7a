//! The security suite: one test per red-team finding of the threat model (`docs/security.md`),
//! each reproducing the attack against the real `multiverse` binary (or the library that the
//! binary calls) and asserting that the wall now holds. Root-run attacks use a throwaway
//! unprivileged user (`nobody`) as the attacker, as the original findings did.
//!
//! One module per area: `provision` (offline writes into a guest root, the SSH scratch folder),
//! `fsutil` (atomic writes, temp names), `pass` (symlinks planted in the store), `guard`
//! (root-run configuration, pidfiles), `agent` (connection slots, nesting, parameters) and
//! `misc` (migrate, sealed files, names, environment, pipes).
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod agent;
mod fsutil;
mod guard;
mod misc;
mod pass;
mod provision;
