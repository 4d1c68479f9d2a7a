//! `mv-provision`: declarative, idempotent provisioning of Multiverse machines, replacing the old
//! per-machine `provision.sh` scripts.
//!
//! A machine's provisioning is data, not shell: a **recipe** per machine type and router role
//! ([`recipe`], TOML under `recipes/`) lists packages, services, sysctl keys, kernel modules,
//! users and files; files come from **templates** ([`template`]: `mv-machines`' minijinja engine,
//! strict undefined values, over this crate's own set) or from the **identity** (SSH host keys,
//! login keys, password hashes). [`render`](mod@render) turns
//! a [`model::MachineSpec`] plus an [`model::IdentitySource`] into a [`render::Desired`] state;
//! [`apply::plan`] compares it with a mounted root filesystem ([`apply::Target`]) and
//! [`apply::apply`] makes the target match, so that a second run reports no changes. Apply records
//! what it manages in a [`state`] file on the target, so the next apply removes what the machine
//! no longer wants (services, files, empty folders; never packages).
//!
//! Targets: Alpine (apk, OpenRC, `/etc/network/interfaces`) and Debian (apt, systemd). Package
//! databases are read as files ([`pkgdb`]) and accounts edited as files ([`accounts`]), so an
//! Alpine root can be planned and provisioned from a Debian build machine, with `apk` run in a
//! chroot. [`check`] runs each generated router configuration through its own tool (`nft -c`,
//! `dnsmasq --test`, `tor --verify-config`, `sshd -t`, `wg-quick strip`, OpenVPN's option parser).
//! [`remote`] does the same to a running machine over SSH.
//!
//! What this crate is not: the machine model (`mv-machines` owns `multiverse.toml`), the key
//! derivation (`mv-identity`), or a remote-execution framework; the CLI wires those in.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod accounts;
pub mod adapt;
pub mod apply;
pub mod check;
pub mod model;
pub mod pkgdb;
pub mod recipe;
pub mod remote;
pub mod render;
pub mod seed;
pub mod seed_disk;
pub mod state;
pub mod template;

pub use apply::{apply, plan, Applied, ApplyError, Change, Plan, Runner, SystemRunner, Target};
pub use model::{IdentitySource, MachineSpec, MachineType, Os, Role};
pub use render::{render, Desired, RenderError};
pub use template::Engine;

/// The fuzzing entry point: every parser of bytes read from a target, fed `data`. Never panics
/// (the property the fuzz target in `fuzz/` and the proptest in `tests/fuzz_entry.rs` check).
/// Compiled only for tests and fuzzing (feature `test-hooks`, which `fuzz/` and this crate's
/// dev-dependency on itself turn on).
#[cfg(any(test, feature = "test-hooks"))]
#[doc(hidden)]
pub fn fuzz_entry(data: &[u8]) {
    if let Ok(s) = state::parse(data) {
        // What parses must write back to bytes that parse to the same state.
        let again = state::parse(&s.to_bytes()).ok();
        let mut sorted = s;
        sorted.normalize();
        assert_eq!(again, Some(sorted), "state round trip");
    }
    let text = String::from_utf8_lossy(data);
    let _ = pkgdb::dpkg_installed(&text);
    let _ = pkgdb::apk_installed(&text);
    let _ = apply::install_section(&text);
    let mid = (0..=text.len() / 2)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    let (a, rest) = text.split_at(mid);
    let accounts = accounts::Accounts::parse(a, rest, &text);
    let _ = accounts.ids_of("root");
    let _ = accounts.password_verifies("root", "x");
    let user = render::DesiredUser {
        name: "user".to_string(),
        shell: Some("/bin/sh".to_string()),
        home: "/home/user".to_string(),
        groups: vec!["users".to_string()],
        password: None,
    };
    let _ = accounts::plan_accounts(&accounts, &[user], "/bin/sh");
}
