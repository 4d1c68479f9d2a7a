//! `mv-provision`: Declarative, idempotent provisioning for Alpine and Debian machines.
//!
//! (Being built; see ARCHITECTURE.md.)
#![forbid(unsafe_code)]
