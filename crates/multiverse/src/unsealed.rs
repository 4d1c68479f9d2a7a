//! The identity root, unsealed once per session: one Argon2id, then the session agent.
//!
//! Every unseal is a full Argon2id (about a second at the default 256 MiB), and nearly every
//! command needs the root (`identity show/export/fleet/rotate`, `ssh`, `provision`, `pass
//! machines`, `up`, `rebuild`). [`unseal`] looks for the bare root, in this order:
//!
//! 1. in this process (`rebuild` runs several commands in one process, `pass machines` needs the
//!    root more than once);
//! 2. in the session agent (`crate::session`, the one that holds pass's unsealed keys), under
//!    `mv_pass::agent::cache_id("identity-root", sealed bytes)`: a re-sealed or other root file
//!    (`identity new`, `identity restore`) is another id, so it never finds the old root;
//! 3. else, holding the agent's unlock lock (concurrent first commands unseal once, and the
//!    second finds what the first stored), it asks for the passphrase, unseals, and only on
//!    success hands the bare 32 bytes to the agent, printing one line (unless `--quiet`).
//!
//! The passphrase is a closure, called only on a miss: a cached root asks for nothing (like
//! gpg-agent, the session's unlock stands for the passphrase until `identity lock`, `pass lock`,
//! the kill switch or the timeouts of `MULTIVERSE_PASS_CACHE_TTL`/`_MAX_TTL`, either 0 disabling
//! the agent). A wrong passphrase fails as it always did and stores nothing.
//!
//! Only the bare root is kept, never the passphrase; the tree's epochs are read again at each
//! call, as [`IdentityStore::unseal`] does, so a rotation is seen.
//!
//! What this is not: a passphrase check. Commands that must know whether a passphrase opens the
//! root (`identity restore`'s "unchanged" test, `pass key import` sealing under it) use
//! [`check`], a real Argon2id every time.

use crate::error::CliError;
use crate::global::Global;
use mv_core::secret::{SecretBytes, SecretString};
use mv_identity::{IdentityStore, Root, StoreError};
use sha2::{Digest, Sha256};
use std::sync::Mutex;

/// The root unsealed in this process, with the SHA-256 of the sealed bytes it came from.
static MEMO: Mutex<Option<([u8; 32], Root)>> = Mutex::new(None);

fn digest(store: &IdentityStore) -> [u8; 32] {
    Sha256::digest(store.sealed_bytes()).into()
}

fn recall(store: &IdentityStore) -> Option<Root> {
    let d = digest(store);
    MEMO.lock()
        .ok()?
        .as_ref()
        .filter(|(sealed, _)| *sealed == d)
        .map(|(_, root)| root.clone())
}

fn memo(store: &IdentityStore, root: &Root) {
    if let Ok(mut m) = MEMO.lock() {
        *m = Some((digest(store), root.clone()));
    }
}

/// The session agent's id of the root sealed in `store` (the hash of ciphertext reveals nothing).
pub fn cache_id(store: &IdentityStore) -> String {
    mv_pass::agent::cache_id("identity-root", store.sealed_bytes())
}

/// The session agent's id of the identity's `@user` OpenPGP key (pass's default key) in the
/// tree at `tree_root`: of the sealed root's bytes and every epoch of the tree (a rotation, by
/// `identity rotate` or a hand edit of `[identity.epochs]`, changes the key without touching the
/// sealed root, and must not find the old key cached). Unreadable files count as empty.
pub fn user_key_cache_id(tree_root: &std::path::Path) -> String {
    let tree = mv_core::layout::Tree::new(tree_root);
    let mut material = std::fs::read(tree.sealed_root()).unwrap_or_default();
    let config = std::fs::read_to_string(tree.config_file()).unwrap_or_default();
    if let Ok(epochs) = mv_core::epochs::epochs(&config) {
        for (name, epoch) in epochs.iter() {
            material.extend_from_slice(format!("\n{name}={epoch}").as_bytes());
        }
    }
    mv_pass::agent::cache_id("identity", &material)
}

/// A root from the agent's value: exactly 32 bytes, else nothing (a miss).
fn from_cached(value: &[u8]) -> Option<Root> {
    let bytes: [u8; 32] = value.try_into().ok()?;
    let root = Root::from_bytes(bytes);
    let mut bytes = bytes;
    zeroize::Zeroize::zeroize(&mut bytes);
    Some(root)
}

/// The CLI's hints for the identity store's errors, shared by every command that unseals: no
/// identity yet, malformed epochs in `multiverse.toml` (exit 2), a wrong passphrase (exit 2).
pub fn hint(e: StoreError) -> CliError {
    match &e {
        StoreError::Missing(_) => CliError::from(e).with_hint(
            "create one with `multiverse identity new` or `multiverse identity restore`",
        ),
        StoreError::Epochs { .. } => {
            let mut c = CliError::from(e).with_hint(
                "[identity.epochs] maps names of multiverse.toml to whole numbers 0..=4294967295",
            );
            c.kind = crate::error::Kind::Usage;
            c
        }
        _ if e.is_authentication() => {
            let mut c = CliError::from(e).with_hint(
                "check the passphrase; if it is right, the sealed file was damaged: restore it from the 24 words",
            );
            c.kind = crate::error::Kind::Usage;
            c
        }
        _ => CliError::from(e),
    }
}

/// [`unseal_tree`] with the common [`hint`]s: the one way `identity`, `provision`, `ssh`,
/// `rotate` and `up` unseal the tree's identity.
pub fn unseal_tree_hinted(
    g: &Global,
    passphrase_file: Option<&std::path::Path>,
) -> Result<Root, CliError> {
    unseal_tree(g, passphrase_file, hint)
}

/// The root of the tree at `g.root`: its identity store loaded, then [`unseal`], asking for the
/// passphrase (from `passphrase_file`, else a prompt) only when the session cache misses.
/// `on_error` maps the store's errors, loading included (the caller's hints).
pub fn unseal_tree(
    g: &Global,
    passphrase_file: Option<&std::path::Path>,
    on_error: impl Fn(StoreError) -> CliError,
) -> Result<Root, CliError> {
    let store = IdentityStore::load(&g.root).map_err(&on_error)?;
    let passphrase =
        || crate::secret_input::passphrase(passphrase_file, "Identity passphrase", false);
    unseal(g, &store, passphrase, on_error)
}

/// The root of `store` with the tree's epochs: from this process, else from the session agent,
/// else unsealed with `passphrase()` (asked only then) and handed to the agent. `on_error` maps
/// the store's errors (the caller's hints).
pub fn unseal(
    g: &Global,
    store: &IdentityStore,
    passphrase: impl FnOnce() -> Result<SecretString, CliError>,
    on_error: impl Fn(StoreError) -> CliError,
) -> Result<Root, CliError> {
    let life = crate::session::lifetime()?;
    let bare = bare(g, store, life, passphrase, &on_error)?;
    store.attach_epochs(bare).map_err(on_error)
}

/// [`unseal`] without the epochs; `life: None` is no session cache (this process only).
fn bare(
    g: &Global,
    store: &IdentityStore,
    life: Option<mv_pass::agent::Lifetime>,
    passphrase: impl FnOnce() -> Result<SecretString, CliError>,
    on_error: &impl Fn(StoreError) -> CliError,
) -> Result<Root, CliError> {
    if let Some(root) = recall(store) {
        return Ok(root);
    }
    let mut steps = RootSteps {
        store,
        passphrase: Some(passphrase),
        on_error,
    };
    let (values, stored) = match life {
        None => (mv_pass::agent::UnlockSteps::unseal(&mut steps)?, false),
        Some(life) => {
            let u = crate::session::client().unlock(&[cache_id(store)], life, &mut steps)?;
            (u.values, u.stored)
        }
    };
    let root = values
        .first()
        .and_then(|v| from_cached(v.expose()))
        .ok_or_else(|| CliError::failure_msg("no identity root was unsealed"))?;
    memo(store, &root);
    if let (Some(life), true, false) = (life, stored, g.quiet) {
        eprintln!(
            "multiverse: identity unlocked for this session ({} s after last use, {} s at most; `multiverse identity lock` forgets it)",
            life.idle.as_secs(),
            life.max.as_secs()
        );
    }
    Ok(root)
}

/// The identity root's part of [`mv_pass::agent::Client::unlock`]: a cached value is a root
/// only when it has 32 bytes; a miss asks for the passphrase (once) and unseals.
struct RootSteps<'a, P, F> {
    store: &'a IdentityStore,
    passphrase: Option<P>,
    on_error: &'a F,
}

impl<P, F> mv_pass::agent::UnlockSteps for RootSteps<'_, P, F>
where
    P: FnOnce() -> Result<SecretString, CliError>,
    F: Fn(StoreError) -> CliError,
{
    type Error = CliError;
    fn unseal(&mut self) -> Result<Vec<SecretBytes>, CliError> {
        let passphrase = self
            .passphrase
            .take()
            .ok_or_else(|| CliError::failure_msg("the identity passphrase was asked twice"))?;
        let pass = passphrase()?;
        let root = self
            .store
            .unseal_bare(pass.expose().as_bytes())
            .map_err(self.on_error)?;
        drop(pass);
        Ok(vec![SecretBytes::new(root.expose_bytes().to_vec())])
    }
    fn start_agent(&mut self, agent: &mv_pass::agent::Client) -> bool {
        crate::session::start_agent(agent)
    }
    fn usable(&self, value: &SecretBytes) -> bool {
        value.expose().len() == 32
    }
    fn no_cache(&mut self, error: &mv_pass::agent::AgentError) {
        crate::session::warn_no_cache(error);
    }
}

/// A real unseal with `passphrase` (always an Argon2id, whatever is cached): for commands that
/// must know the passphrase opens the root. The root is then remembered in this process.
pub fn check(store: &IdentityStore, passphrase: &[u8]) -> Result<Root, StoreError> {
    let bare = store.unseal_bare(passphrase)?;
    memo(store, &bare);
    store.attach_epochs(bare)
}

/// After `store` was sealed from `root`: the next [`unseal`] in this process needs no Argon2id.
pub fn remember(store: &IdentityStore, root: &Root) {
    memo(store, root);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(root: &std::path::Path) -> Global {
        Global {
            root: root.to_path_buf(),
            json: false,
            dry_run: false,
            verbose: 0,
            quiet: true,
        }
    }

    /// [`bare`] without the session agent (none runs in unit tests).
    fn memo_only(
        g: &Global,
        store: &IdentityStore,
        passphrase: impl FnOnce() -> Result<SecretString, CliError>,
    ) -> Result<Root, CliError> {
        bare(g, store, None, passphrase, &CliError::from)
    }

    fn never() -> Result<SecretString, CliError> {
        Err(CliError::failure_msg("the passphrase was asked"))
    }

    /// In one process: the first unseal asks, later ones do not; a re-sealed file is a miss
    /// (its own passphrase, its own root); a wrong passphrase on a miss fails and keeps nothing.
    #[test]
    fn a_sealed_file_is_unsealed_once_and_only_its_own_root_is_served() {
        let tree = tempfile::tempdir().unwrap();
        let g = global(tree.path());
        let root = Root::from_bytes([7u8; 32]);
        let fast = mv_identity::KdfParams::INSECURE_FAST;
        let store = IdentityStore::create(tree.path(), &root, b"right", fast, false).unwrap();
        let pass = |p: &str| {
            let p = p.to_string();
            move || Ok(SecretString::new(p))
        };
        let wrong = memo_only(&g, &store, pass("wrong"));
        assert!(wrong.is_err());
        assert!(memo_only(&g, &store, never).is_err(), "nothing kept");
        let first = memo_only(&g, &store, pass("right")).unwrap();
        assert!(first.same_secret(&root));
        let again = memo_only(&g, &store, never).unwrap();
        assert!(again.same_secret(&root));
        // Another file (re-sealed, even under the same passphrase) is a miss, then a real unseal.
        let other = Root::from_bytes([9u8; 32]);
        let store2 = IdentityStore::create(tree.path(), &other, b"right", fast, true).unwrap();
        assert!(memo_only(&g, &store2, never).is_err());
        let second = memo_only(&g, &store2, pass("right")).unwrap();
        assert!(second.same_secret(&other));
        // check() always runs the KDF: a wrong passphrase fails although the root is known.
        assert!(check(&store2, b"wrong").is_err_and(|e| e.is_authentication()));
        assert!(check(&store2, b"right").unwrap().same_secret(&other));
    }

    #[test]
    fn only_32_bytes_make_a_cached_root() {
        assert!(from_cached(&[1u8; 31]).is_none());
        assert!(from_cached(&[1u8; 33]).is_none());
        let r = from_cached(&[1u8; 32]).unwrap();
        assert!(r.same_secret(&Root::from_bytes([1u8; 32])));
    }

    #[test]
    fn the_cache_id_follows_the_sealed_bytes() {
        let tree = tempfile::tempdir().unwrap();
        let root = Root::from_bytes([7u8; 32]);
        let fast = mv_identity::KdfParams::INSECURE_FAST;
        let a = IdentityStore::create(tree.path(), &root, b"p", fast, false).unwrap();
        let b = IdentityStore::create(tree.path(), &root, b"p", fast, true).unwrap();
        assert!(cache_id(&a).starts_with("identity-root:"));
        assert_ne!(
            cache_id(&a),
            cache_id(&b),
            "a re-seal (fresh salt) is another id"
        );
        assert_eq!(
            cache_id(&b),
            cache_id(&IdentityStore::load(tree.path()).unwrap())
        );
    }
}
