//! `mv-guard`: The kill switch and the LUKS key hidden in an image.
//!
//! (Being built; see ARCHITECTURE.md.)
#![forbid(unsafe_code)]
