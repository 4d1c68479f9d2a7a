//! `mv-pass`: A password store in the pass on-disk format, with OTP.
//!
//! (Being built; see ARCHITECTURE.md.)
#![forbid(unsafe_code)]
