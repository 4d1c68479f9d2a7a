//! `mv-provision`: declarative, idempotent provisioning of Multiverse machines, replacing the old
//! per-machine `provision.sh` scripts.
//!
//! A machine's provisioning is data, not shell: a **recipe** per machine type and router role
//! (TOML under `recipes/`) lists packages, services, sysctl keys, kernel modules, users and files;
//! files come from **templates** ([`Engine`]: `mv-machines`' minijinja engine, strict undefined
//! values, over this crate's own set) or from the **identity** (SSH host keys, login keys,
//! password hashes).
//!
//! The public API is this root (the modules are private, except the [`remote`] facade). Where a
//! reader starts:
//!
//! - [`spec_for`] turns a machine of an `mv_machines::Topology` into a [`MachineSpec`];
//!   [`RootIdentity`] is the [`IdentitySource`] over an `mv_identity::Root`.
//! - [`render()`] turns a [`MachineSpec`] plus an [`IdentitySource`] into a [`Desired`] state
//!   (files as [`Contents`], secrets kept secret); errors [`RenderError`].
//! - [`plan()`] compares it with a mounted root filesystem ([`Target`]) into a [`Plan`] of
//!   [`Change`]s and [`apply()`] makes the target match with a [`Runner`] ([`SystemRunner`]), so
//!   that a second run reports no changes. Apply records what it manages in a [`State`] file on
//!   the target ([`STATE_PATH`], [`parse_state`]), so the next apply removes what the machine no
//!   longer wants (services, files, empty folders; never packages).
//! - [`seed_id`], [`read_seed_dir`] and [`ensure_seed`]: the seed disk a guest applies to itself
//!   at first boot ([`SeedOutcome`]).
//! - [`check_all`] runs each generated router configuration through its own tool (`nft -c`,
//!   `dnsmasq --test`, `tor --verify-config`, `sshd -t`, `wg-quick strip`, OpenVPN's option
//!   parser).
//! - [`remote`] does the same as [`apply()`] to a running machine over SSH
//!   ([`remote::Session`], [`remote::reprovision`]), plus both ends of `ssh`'s `ProxyCommand`.
//!
//! Targets: Alpine (apk, OpenRC, `/etc/network/interfaces`) and Debian (apt, systemd). Package
//! databases are read as files and accounts edited as files ([`Accounts`]), so an Alpine root can
//! be planned and provisioned from a Debian build machine, with `apk` run in a chroot.
//!
//! What this crate is not: the machine model (`mv-machines` owns `multiverse.toml`), the key
//! derivation (`mv-identity`), or a remote-execution framework; the CLI wires those in.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod accounts;
mod adapt;
mod apply;
mod check;
mod model;
mod pkgdb;
mod recipe;
// A public module, unlike the others: a facade of its own (see its docs for why).
pub mod remote;
mod render;
mod seed;
mod seed_disk;
mod state;
mod template;

pub use accounts::{hash_password, Accounts, AccountsError};
pub use adapt::{new_wireguard_key_file, spec_for, vpn_file, AdaptError, RootIdentity};
pub use apply::{
    apply, plan, Applied, ApplyError, Change, Plan, RunOutput, Runner, SystemRunner, Target,
};
pub use check::{check_all, check_file, CheckError, Checked, Tool};
pub use model::{
    IdentityError, IdentitySource, Interface, MachineSpec, MachineType, OnionPublish, OnionService,
    Os, Role, SshKeyPair, VpnKind, VpnOptions,
};
pub use recipe::{RecipeError, ServiceSpec};
pub use render::{
    render, Contents, Desired, DesiredDir, DesiredFile, DesiredUser, RenderError, AGENT_BIN_ENV,
    AGENT_VIRTIO_PORT, OPENVPN_MANAGEMENT_SOCKET,
};
pub use seed::{read_dir as read_seed_dir, seed_id, SeedError, SeedId};
pub use seed_disk::{ensure_seed, SeedDiskError, SeedOutcome};
pub use state::{
    parse as parse_state, sha256_hex, ManagedFile, ManagedLink, ManagedService, State, StateError,
    MAX_BYTES as STATE_MAX_BYTES, STATE_PATH, VERSION as STATE_VERSION,
};
pub use template::{Engine, TemplateError};

#[cfg(any(test, feature = "test-hooks"))]
#[doc(hidden)]
pub use render::recipe_packages;

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
