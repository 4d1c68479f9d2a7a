//! `mv-guard`: the kill switch and the LUKS key hidden in an image.
//!
//! Two halves that share a USB stick:
//! - **The hidden key.** [`image::Cover`] reads and writes lossless PNG covers; [`container`] seals
//!   a key with a passphrase (Argon2id + XChaCha20-Poly1305) and spreads it over the cover's low
//!   bits in a passphrase-keyed order with LSB matching, hiding both its length and its presence.
//!   [`luks`] builds the cryptsetup command lines that enrol and use such a key.
//! - **The kill switch.** [`uevent`] parses kernel uevents; [`token`] says which device is the
//!   armed token and tracks it by device path; [`chain`] is the ordered list of actions run when the
//!   token leaves (each with a timeout and a fallback, or recorded in dry-run); [`watch`] reads
//!   uevents from a `NETLINK_KOBJECT_UEVENT` socket (or a unix datagram socket carrying the same
//!   bytes) and fires the chain; [`config`] is the armed state on disk; [`udev`] writes the
//!   equivalent udev rule for people who want no daemon; [`trust`] is the rule root's
//!   configuration follows (root-owned, not writable by others, checked on the open descriptor);
//!   [`pidfile`] is the watcher's locked pidfile, verified before anyone signals the pid in it.
//!
//! What this crate is not: a CLI. It prints nothing; `multiverse guard` does.
#![forbid(unsafe_code)]

pub mod chain;
pub mod config;
pub mod container;
pub mod image;
pub mod luks;
pub mod pidfile;
pub mod token;
pub mod trust;
pub mod udev;
pub mod uevent;
pub mod watch;
