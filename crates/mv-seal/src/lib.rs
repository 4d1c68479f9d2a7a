//! `mv-seal`: Passphrase sealing: Argon2id + XChaCha20-Poly1305 with stored parameters.
//!
//! (Being built; see ARCHITECTURE.md.)
#![forbid(unsafe_code)]
