//! `mv-identity`: Scramble Suit: one root secret derives every SSH, OpenPGP, onion key, password and LUKS key.
//!
//! (Being built; see ARCHITECTURE.md.)
#![forbid(unsafe_code)]
