//! `mv-guard`: the kill switch and the LUKS key hidden in an image.
//!
//! Two halves that share a USB stick:
//! - **The hidden key.** [`Cover`] reads and writes lossless PNG covers; [`container`] seals
//!   a key with a passphrase (Argon2id + XChaCha20-Poly1305) and spreads it over the cover's low
//!   bits in a passphrase-keyed order with LSB matching, hiding both its length and its presence.
//!   [`luks`] builds the cryptsetup command lines that enrol and use such a key.
//! - **The kill switch.** [`Uevent`] parses kernel uevents; [`token`] says which device is the
//!   armed token and tracks it by device path; [`chain`] is the ordered list of actions run when the
//!   token leaves (each with a timeout and a fallback, or recorded in dry-run); [`watch`] reads
//!   uevents from a `NETLINK_KOBJECT_UEVENT` socket (or a unix datagram socket carrying the same
//!   bytes) and fires the chain; [`GuardConfig`] is the armed state on disk;
//!   [`kill_switch_rule`] writes the equivalent udev rule for people who want no daemon; `trust` is the rule root's
//!   configuration follows (root-owned, not writable by others, checked on the open descriptor);
//!   [`watch::Pidfile`] is the watcher's locked pidfile, verified before anyone signals the pid
//!   in it.
//! - **Unlocking.** [`token::find_key_on_token`] mounts the armed token's partitions read-only in
//!   turn and finds the image holding the key ([`token::find_key_in_dir`] for a folder);
//!   [`container::hide_file`] hides a key from a cover file into an image file, idempotently;
//!   [`container::capacity`] says whether a cover can hold a key before any key is derived.
//!
//! Every error type implements [`mv_core::Classify`]. Test tools are not part of the API: the
//! `guard-emit` binary (feature `test-hooks`) sends a uevent into a watcher's network namespace (tests, benchmark).
//!
//! The API: the items above at the crate root, and five modules kept as namespaces because their
//! items are verbs or generic nouns that read well only qualified (`container::hide`,
//! `luks::open_argv`, `token::scan`, `chain::Status`, `watch::Outcome`).
//!
//! What this crate is not: a CLI. It prints nothing (the watcher and the chain report through
//! callbacks); `multiverse guard` does.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

// `chain`, `container`, `luks`, `token` and `watch` stay namespaces: their items are verbs and
// generic nouns (`container::hide`, `luks::open_argv`, `token::scan`, `chain::Status`,
// `watch::Outcome`) that would clash or lose their meaning at the crate root. The other modules'
// few public items are re-exported below.
pub mod chain;
mod classify;
mod config;
pub mod container;
mod hide_file;
mod image;
pub mod luks;
mod pidfile;
pub mod token;
mod token_key;
mod trust;
mod udev;
mod uevent;
pub mod watch;

pub use config::{ConfigError, GuardConfig, Policy, SignalPolicy, TrustError};
pub use image::{synthetic_photo, Cover, ImageError, Layout};
pub use udev::{kill_switch_rule, kill_switch_rule_on};
pub use uevent::{ParseError as UeventError, Uevent, MAX_LEN as MAX_UEVENT_LEN};
