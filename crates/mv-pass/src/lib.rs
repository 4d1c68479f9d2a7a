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
//! - [`check`]: `fsck` and `audit`;
//! - [`agent`]: the session cache of unlocked keys (unlock once, as gpg-agent).
//!
//! What this crate is not: the CLI (prompts, clipboard, editor, output formats live in the
//! `multiverse` binary), nor the identity (it never derives or unseals keys itself: the caller
//! hands it keys or an unseal function).
#![forbid(unsafe_code)]

pub mod agent;
pub mod backend;
pub mod check;
pub mod generate;
pub mod git;
pub mod keydir;
pub mod keys;
pub mod name;
pub mod otp;
pub mod store;

pub use backend::{Crypto, CryptoError, Gpg};
pub use keydir::KeyDir;
pub use keys::{KeyError, Keyring};
pub use name::{EntryName, EntryNameError};
pub use otp::{OtpError, OtpUri};
pub use store::{Store, StoreError};

/// The fuzzing entry point: runs every parser of untrusted input on `data` (the OpenPGP message
/// headers of an entry file, decryption with an empty keyring, the otpauth line, an entry name).
/// It must never panic, whatever the bytes.
pub fn fuzz_entry(data: &[u8]) {
    let _ = keys::message_key_ids(data);
    let _ = Keyring::new().decrypt(data);
    let text = String::from_utf8_lossy(data);
    let _ = OtpUri::from_entry(&text);
    let _ = EntryName::parse(&text);
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
