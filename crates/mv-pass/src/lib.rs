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
//! - [`check`]: `fsck` and `audit`.
//!
//! What this crate is not: the CLI (prompts, clipboard, editor, output formats live in the
//! `multiverse` binary), nor the identity (it never derives or unseals keys itself: the caller
//! hands it keys or an unseal function).
#![forbid(unsafe_code)]

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
