//! `mv-libvirt`: libvirt: define/start/stop, backup and restore of every libvirt object.
//!
//! (Being built; see ARCHITECTURE.md.)
#![forbid(unsafe_code)]
