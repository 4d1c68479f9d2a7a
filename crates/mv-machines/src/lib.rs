//! `mv-machines`: The machine model (Portal Gun): multiverse.toml, validation, templates, rendering, the on-disk layout.
//!
//! (Being built; see ARCHITECTURE.md.)
#![forbid(unsafe_code)]
