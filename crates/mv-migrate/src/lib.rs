//! `mv-migrate`: Layout migration of old Multiverse trees, crash-safe and undoable.
//!
//! (Being built; see ARCHITECTURE.md.)
#![forbid(unsafe_code)]
