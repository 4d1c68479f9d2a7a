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
//!   [`export::write_files_synced`] (idempotent, atomic, parallel), `known_hosts` / `authorized_keys` lines.
//! - Storage under `<tree>/identity/`: [`IdentityStore::create`], [`IdentityStore::load`],
//!   [`IdentityStore::unseal`]; and the public record readable without the passphrase,
//!   [`PublicRecord::load`] / [`public_identity`] (what `machine show` prints).
//!
//! What it is not: a key agent, a keyring, or a CLI. Nothing here prompts or prints; the
//! `multiverse identity` command does that. Nothing here reads argv or the environment.
//!
//! Secrets stay in zeroised types ([`mv_core::Secret`], `Zeroizing`, the key libraries' own
//! zeroising keys) and never appear in `Debug` output.
//!
//! # Modules
//! Two public modules are namespaces on purpose, since their names read better qualified
//! (`export::plan`, `rotate::Journal`): [`export`] (key files in their standard formats) and
//! [`rotate`] (revocations, the rotation journal and its LUKS step). Everything else is a private
//! module whose real API is re-exported here.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod classify;
pub mod export;
mod keys;
mod onion;
mod openpgp;
mod public;
mod root;
pub mod rotate;
mod store;

pub use keys::{
    p256_scalar_from_bytes, password_from_bytes, public_line, KeyError, SshRole, PASSWORD_ALPHABET,
    PASSWORD_LEN,
};
pub use onion::{onion_address, onion_from_seed, parse_onion_address, OnionAddressError, OnionKey};
pub use openpgp::{
    creation_time, fingerprint_hex, openpgp_from_secrets, openpgp_from_secrets_at, CREATION_TIME,
};
pub use public::{
    public_identity, PublicIdentity, PublicRecord, PublicRecordError, PUBLIC_RECORD_VERSION,
};
pub use root::{
    derive_raw, derive_raw_at, MnemonicError, Purpose, Root, HKDF_SALT, MNEMONIC_WORDS,
};
pub use store::{epochs_file, load_epochs, IdentityStore, StoreError, MAX_SEALED_LEN};

/// Re-exported: the epoch table every derivation reads.
pub use mv_core::epochs::{Epochs, MAX_EPOCH};

/// Re-exported so callers name the same crate versions we build with.
pub use mv_seal::KdfParams;
pub use pgp;

/// Re-exported so callers name the same crate versions we build with.
pub use ssh_key;
