//! `mv-identity`: the Scramble Suit. One 32-byte root secret derives every SSH, OpenPGP and onion
//! key, machine password and LUKS key file, exactly per `docs/spec/scramble-v1.md` and its epochs
//! extension `docs/spec/scramble-v1-epochs.md` (one name's keys replaced without a new root).
//!
//! Lose the machine, keep the 24 words and `multiverse.toml`, get every current key back. Output that
//! differs from the spec by one byte is a bug; the spec's vectors are data beside the spec
//! (`docs/spec/*.vectors.toml`), the independent cross-checks in `tests/vectors/`, and one runner
//! reads them all (`tests/vectors.rs`).
//!
//! # Stable API (other crates call these; keep the names)
//! - [`Root`]: [`Root::generate`], [`Root::from_mnemonic`] (BIP-39 checksum checked, a bad word
//!   named), [`Root::mnemonic`], [`Root::derive`] (`HKDF-SHA256`, [`Purpose`] × name × length).
//! - Key builders on [`Root`]: [`Root::ssh_ed25519`], [`Root::ssh_ecdsa_p256`],
//!   [`Root::ssh_host_ed25519`], [`Root::ssh_host_ecdsa_p256`] (`ssh_key::PrivateKey`),
//!   [`Root::onion_v3`] ([`OnionKey`]: tor's files and hostname), [`Root::openpgp`]
//!   (`pgp::composed::SignedSecretKey`), [`Root::password`] (32 characters), [`Root::luks_key`]
//!   (64 raw bytes), [`Root::public_identity`] ([`PublicIdentity`], the fields of `identity show`).
//! - Files: [`export::plan`] (standard names and modes per [`export::Kind`]),
//!   [`export::write_files`] (idempotent, atomic, parallel), `known_hosts` / `authorized_keys` lines.
//! - Storage under `<tree>/identity/`: [`IdentityStore::create`], [`IdentityStore::load`],
//!   [`IdentityStore::unseal`]; and the public record readable without the passphrase,
//!   [`PublicRecord::load`] / [`public_identity`] (what `machine show` prints).
//!
//! What it is not: a key agent, a keyring, or a CLI. Nothing here prompts or prints; the
//! `multiverse identity` command does that. Nothing here reads argv or the environment.
//!
//! Secrets stay in zeroised types ([`mv_core::Secret`], `Zeroizing`, the key libraries' own
//! zeroising keys) and never appear in `Debug` output.
#![forbid(unsafe_code)]

pub mod export;
pub mod keys;
pub mod onion;
pub mod openpgp;
pub mod public;
pub mod root;
pub mod rotate;
pub mod store;

pub use keys::{public_line, KeyError, PASSWORD_ALPHABET};
pub use onion::{onion_address, OnionKey};
pub use openpgp::{fingerprint_hex, CREATION_TIME};
pub use public::{public_identity, PublicIdentity, PublicRecord, PublicRecordError};
pub use root::{derive_raw, derive_raw_at, MnemonicError, Purpose, Root};
pub use store::{load_epochs, IdentityStore, StoreError};

/// Re-exported: the epoch table every derivation reads.
pub use mv_core::epochs::{Epochs, MAX_EPOCH};

/// Re-exported so callers name the same crate versions we build with.
pub use mv_seal::KdfParams;
pub use pgp;

/// Re-exported so callers name the same crate versions we build with.
pub use ssh_key;
