//! `mv-pass`: a password store in the `pass` on-disk format, with OTP, that does its OpenPGP in
//! process.
//!
//! The folder layout and the file format are pass's, so `pass`, browserpass, Android Password
//! Store and gopass keep working on the same store; what changes is speed (no gpg process per
//! entry, parallel decryption for `grep` and `audit`) and safety (atomic writes, a writer lock,
//! secrets never on a command line).
//!
//! Main types:
//! - [`Store`]: the folder: read, write, list, grep, move, copy, init and re-encrypt, OTP codes;
//! - [`EntryName`]: a validated entry name (refuses `..` and absolute names);
//! - [`Keyring`] (in-process OpenPGP) and [`Gpg`] (delegate to gpg/gpg-agent), both [`Crypto`];
//! - [`KeyDir`]: the key folder (certificates, sealed secret keys);
//! - [`OtpUri`]: `otpauth://` URIs, HOTP/TOTP per RFC 4226/6238;
//! - [`fsck`] and [`audit`]: the store's health;
//! - [`agent`]: the session cache of unlocked keys (unlock once, as gpg-agent);
//! - [`grep`]: `pass grep`'s GNU grep options and patterns, matched in process.
//!
//! Two modules stay public namespaces, because their items are named for their own protocol and
//! would be ambiguous or clash at the root: [`agent`] (`Client`, `Request`, `serve`, `Lifetime`
//! of the session cache) and [`grep`] (`Plan`, `plan`, `Matcher`, `Selection` of GNU grep's
//! options; `Selection` is also the clipboard's, re-exported here as [`ClipboardSelection`]).
//!
//! # The stable API (what the agent, the installer and `rebuild` use)
//!
//! Open a store and keys, list, read, write, and OTP; nothing else is needed for everyday use,
//! and these calls keep their signatures:
//!
//! ```no_run
//! use mv_pass::{EntryName, KeyDir, Store};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::new("/var/multiverse/pass"); // open (nothing is read yet)
//! let keys = KeyDir::new("/var/multiverse/pass-keys").load(None)?; // certificates + clear keys
//! let names: Vec<EntryName> = store.list(None)?; // list (sorted)
//! let name = EntryName::parse("machines/host/root")?;
//! store.write_with_message(&name, b"pw\n", "Add given password for machines/host/root to store.", &keys)?; // write
//! let plain = store.read(&name, &keys)?; // read (a zeroizing buffer)
//! let (code, _uri) = store.otp_code(&EntryName::parse("web/otp")?, 0, &keys)?; // otp (HOTP advances)
//! # let _ = (names, plain, code); Ok(()) }
//! ```
//!
//! Beyond those calls, the rest of pass's behaviour is here too, for the CLI; the library
//! reads no environment variable itself (the caller maps pass's variables onto these):
//! - [`Store::with_recipients_override`] (`PASSWORD_STORE_KEY`) and
//!   [`Store::with_signing_keys`] (`PASSWORD_STORE_SIGNING_KEY`: `.gpg-id.sig` made by
//!   [`Store::init`], checked by [`Store::verify_signed`] before recipients are used);
//! - [`Store::generate`] with [`GenerateOptions`] and [`Charset`] ([`tr_set`] reads
//!   `PASSWORD_STORE_CHARACTER_SET`);
//! - [`Store::find_all`] (pass's `tree -P … --matchdirs` matching), [`Store::grep_matcher`] with
//!   [`grep::plan`] (GNU grep's options) or [`Store::grep_external`], [`Store::for_each_decrypted`] for anything else done
//!   to every entry;
//! - [`agent::Client`] with an [`agent::Lifetime`] (idle and maximum time of a cached key).
//!
//! ```no_run
//! use mv_pass::{grep, KeyDir, Store};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = KeyDir::new("/var/multiverse/pass-keys").load(None)?;
//! let store = Store::new("/var/multiverse/pass")
//!     .with_recipients_override(vec!["ops@example.org".into()]);
//! let words = vec!["-i".to_string(), "user:".to_string()];
//! if let grep::Plan::Native(m) = grep::plan(&words)? {
//!     for hit in store.grep_matcher(&m, &keys)?.hits {
//!         println!("{}: {} lines", hit.name, hit.lines.len());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Sealed secret keys are unsealed by the caller ([`KeyDir::load`] with an unseal function, or
//! one by one with [`KeyDir::sealed_files`]); [`agent::Client`] reaches the session cache.
//!
//! The workflows around the store are here too, so the CLI only parses, calls and prints:
//! [`Clipboard`] (`--clip`, and its clearing job [`restore_clipboard_later`]), [`edit_secret`] (the editor in a private
//! scratch folder), [`write_tree`] (`ls`/`find` output), [`Store::git_init`], extensions
//! ([`find_extension`], [`extension_command`]), [`LazyCrypto`] (unlock on first decryption),
//! [`KeyDir::take_from_gpg`] and [`KeyDir::put_sealed_by`]. Every error type implements
//! `mv_core::Classify`.
//!
//! What this crate is not: the CLI (prompts and output formats live in the `multiverse`
//! binary), nor the identity (it never derives or unseals keys itself: the caller hands it keys,
//! an unseal function or a sealing function).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod agent;
mod backend;
mod check;
mod classify;
mod clipboard;
mod edit;
mod extension;
mod generate;
mod git;
pub mod grep;
mod grep_external;
mod keydir;
mod keys;
mod lazy;
mod name;
mod otp;
mod rotate;
mod store;
mod tree;
mod unlock;

pub use backend::{entry_key_ids, Crypto, CryptoError, Gpg, GpgError};
pub use check::{audit, fsck, weakness, AuditReport, FsckIssue, FsckKind, Old, Weak};
pub use clipboard::{
    restore_later as restore_clipboard_later, Clipboard, ClipboardError,
    Selection as ClipboardSelection, Session as ClipboardSession,
};
pub use edit::{edit_secret, EditError, Edited};
pub use extension::{
    extension_command, find_extension, ExtensionError, ExtensionSettings, SYSTEM_EXTENSION_DIR,
};
pub use generate::{password, password_from, tr_set, SetError, ALNUM, DEFAULT_LENGTH, PUNCT};
pub use git::{Git, GitError};
pub use grep_external::ExternalGrep;
pub use keydir::{KeyDir, KeyDirError, SecretState, TakenKey, Unseal};
pub use keys::{
    armor_public, armor_secret, fingerprint_hex, parse_gpg_groups, parse_public_key,
    parse_secret_key, secret_fingerprint, KeyError, Keyring,
};
pub use lazy::LazyCrypto;
pub use name::{EntryName, EntryNameError};
pub use otp::{
    hotp, replace_otp_line, totp, uri_from_secret, Algorithm, OtpError, OtpKind, OtpUri,
};
pub use rotate::{machine_root_entry, names_key, Replaced};
pub use store::{
    set_umask, BulkError, Change, Charset, Found, GenerateOptions, GrepHit, GrepLine, GrepReport,
    MoveOptions, RemoveOptions, Store, StoreError, StoreLock,
};
pub use tree::{write_tree, TreeStyle};
pub use unlock::ReadingKeys;

/// The fuzzing entry point: runs every parser of untrusted input on `data` (the OpenPGP message
/// headers of an entry file, decryption with an empty keyring, the otpauth line and its label, an
/// entry name, gpg.conf groups, a request to the session agent).
/// It must never panic, whatever the bytes. Compiled for the tests and the fuzzer only (feature `test-hooks`).
#[cfg(any(test, feature = "test-hooks"))]
pub fn fuzz_entry(data: &[u8]) {
    let _ = keys::message_key_ids(data);
    let _ = Keyring::new().decrypt(data);
    let text = String::from_utf8_lossy(data);
    let _ = OtpUri::from_entry(&text);
    let _ = EntryName::parse(&text);
    let _ = otp::split_label(&text);
    let _ = keys::parse_gpg_groups(&text);
    // What the session agent reads off its socket.
    let _ = agent::read_request(&mut std::io::Cursor::new(data));
    // `pass grep`'s arguments and patterns.
    let words: Vec<String> = text.split(' ').map(str::to_string).collect();
    let _ = grep::plan(&words);
    let _ = grep::translate(&text, false);
    let _ = grep::translate(&text, true);
}

#[cfg(test)]
mod fuzz_tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn fuzz_entry_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            super::fuzz_entry(&data);
        }

        /// Real ciphertext with bytes flipped: errors, never panics.
        #[test]
        fn damaged_messages_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut ct = SAMPLE.with(|s| s.clone());
            for (i, b) in flips {
                let n = ct.len();
                ct[i % n] ^= b | 1;
            }
            super::fuzz_entry(&ct);
            let _ = KEYRING.with(|k| k.decrypt(&ct));
        }
    }

    thread_local! {
        static KEYRING: super::Keyring = {
            let mut k = super::Keyring::new();
            k.add_secret(crate::keys::tests::test_key("F <f@example.org>"));
            k
        };
        static SAMPLE: Vec<u8> = KEYRING.with(|k| {
            k.encrypt(b"pw\notpauth://totp/a?secret=AAAA\n", &["f@example.org".into()]).unwrap()
        });
    }
}
