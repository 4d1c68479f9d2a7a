//! The keys a command gets: the passphrase prompt (at most once per command), the identity's
//! `@user` key, and what is said on stderr. The policy is the libraries': which keys reading
//! starts from ([`mv_pass::KeyDir::reading_keys`]), the sealed keys and their cache ids
//! ([`mv_pass::KeyDir::unseal_each`]), unlocking once per session
//! ([`mv_pass::agent::Client::unlock`], with this command's [`mv_pass::agent::UnlockSteps`]), the
//! identity root and the `@user` key's cache id (`crate::unsealed`). Unsealing is mv-seal's and
//! mv-identity's; [`mv_pass::LazyCrypto`] defers all of it to the first decryption.

use crate::error::{CliError, Hinted};
use crate::global::Global;
use crate::secret_input;
use mv_core::secret::{SecretBytes, SecretString};
use mv_core::IdentityName;
use mv_identity::IdentityStore;
use mv_pass::{Crypto, Gpg, KeyDir, Keyring, LazyCrypto, ReadingKeys, Store, StoreError};
use std::path::PathBuf;

/// Everything a subcommand needs to reach the store and the keys.
pub(super) struct Ctx<'a> {
    pub(super) g: &'a Global,
    pub(super) store: Store,
    pub(super) keys: KeyDir,
    pub(super) gpg: bool,
    pub(super) passphrase_file: Option<PathBuf>,
    /// The command writes entries: recipients' public keys are needed (and taken from gpg's
    /// keyring when ours lacks them).
    pub(super) writing: bool,
    /// Recipients named on the command line (`init`), besides those of the store's .gpg-id files.
    pub(super) new_ids: Vec<String>,
    /// The passphrase, once asked (one prompt per command).
    pub(super) asked: std::sync::OnceLock<SecretString>,
    /// The identity root (`None`: the tree has none), once unsealed or found in the session
    /// cache.
    pub(super) root: std::sync::OnceLock<Option<mv_identity::Root>>,
}

impl Ctx<'_> {
    /// The identity passphrase, asked at most once per command.
    pub(super) fn passphrase(&self) -> Result<SecretString, CliError> {
        if let Some(p) = self.asked.get() {
            return Ok(p.clone());
        }
        let p = secret_input::passphrase(
            self.passphrase_file.as_deref(),
            "Identity passphrase",
            false,
        )?;
        let _ = self.asked.set(p.clone());
        Ok(p)
    }

    /// The identity root, if the tree has one: from the session cache, else unsealed (the
    /// passphrase is asked only then). Once per command: later calls take no lock and ask
    /// nothing (the unlock lock may be held by then).
    pub(super) fn identity_root(&self) -> Result<Option<mv_identity::Root>, CliError> {
        if let Some(r) = self.root.get() {
            return Ok(r.clone());
        }
        let root = if IdentityStore::exists(&self.g.root) {
            let store = IdentityStore::load(&self.g.root)?;
            let wrong = |e: mv_identity::StoreError| {
                if e.is_authentication() {
                    let mut c = CliError::from(e).with_hint("wrong identity passphrase");
                    c.kind = crate::error::Kind::Usage;
                    c
                } else {
                    e.into()
                }
            };
            Some(crate::unsealed::unseal(
                self.g,
                &store,
                || self.passphrase(),
                wrong,
            )?)
        } else {
            None
        };
        let _ = self.root.set(root.clone());
        Ok(root)
    }

    /// Whether `pass` opens the identity (a real unseal, whatever the session cache holds).
    pub(super) fn check_identity_passphrase(&self, pass: &SecretString) -> Result<(), CliError> {
        let store = IdentityStore::load(&self.g.root)?;
        crate::unsealed::check(&store, pass.expose().as_bytes())
            .usage()
            .hint("wrong identity passphrase")?;
        Ok(())
    }

    /// The identity's @user OpenPGP key; its certificate is saved in the key folder so writes
    /// need no passphrase later.
    pub(super) fn identity_key(
        &self,
        root: &mv_identity::Root,
    ) -> Result<mv_identity::pgp::composed::SignedSecretKey, CliError> {
        let user = IdentityName::parse("@user")?;
        let key = root.openpgp(&user)?;
        if !self.g.dry_run {
            self.keys.put_public(&key.to_public_key())?;
        }
        Ok(key)
    }

    /// Keys for writing: certificates (and clear secret keys). Asks for the passphrase only when
    /// there is no certificate at all and an identity exists.
    pub(super) fn crypto_write(&self) -> Result<Box<dyn Crypto>, CliError> {
        if self.gpg {
            return Ok(Box::new(Gpg::new()));
        }
        let mut ring = self.keys.load(None)?;
        if ring.list().is_empty() && IdentityStore::exists(&self.g.root) {
            return self.crypto_read();
        }
        ring.set_groups(gpg_groups());
        self.fill_publics(&mut ring);
        Ok(Box::new(ring))
    }

    /// Every recipient of the store's `.gpg-id` files (and of this command's `init`).
    fn store_recipients(&self) -> Vec<String> {
        let mut ids = self.new_ids.clone();
        ids.extend(self.store.all_recipients());
        ids.sort();
        ids.dedup();
        ids
    }

    /// Recipients our keyring lacks are taken, read-only, from gpg's keyring
    /// ([`KeyDir::take_from_gpg`]) and kept in the key folder, so this is said once per key.
    fn fill_publics(&self, ring: &mut Keyring) {
        if self.gpg || !self.writing || !which("gpg") {
            return;
        }
        let taken = self
            .keys
            .take_from_gpg(ring, &self.store_recipients(), !self.g.dry_run);
        for t in taken {
            if !self.g.quiet {
                let kept = if t.saved {
                    format!("; kept in {}", self.keys.path().display())
                } else {
                    String::new()
                };
                eprintln!(
                    "multiverse: took the public key {} ({}) from gpg's keyring, read-only{kept}",
                    t.fingerprint, t.recipient
                );
            }
        }
    }

    /// Keys for reading: clear secret keys, plus (with the passphrase) the sealed ones. The
    /// identity's @user key is added whenever the passphrase is asked anyway, or when there is
    /// no other secret key. No sealed key and a clear one: no passphrase is asked.
    pub(super) fn crypto_read(&self) -> Result<Box<dyn Crypto>, CliError> {
        self.crypto_reading(false)
    }

    /// Keys that only decrypt (`show`, `grep`): [`Ctx::crypto_read`]'s secret keys, without the
    /// key folder's certificates and gpg's groups, which only encrypting needs.
    pub(super) fn crypto_decrypt(&self) -> Result<Box<dyn Crypto>, CliError> {
        self.crypto_reading(true)
    }

    fn crypto_reading(&self, decrypt_only: bool) -> Result<Box<dyn Crypto>, CliError> {
        if self.gpg {
            return Ok(Box::new(Gpg::new()));
        }
        let has_identity = IdentityStore::exists(&self.g.root);
        let (mut ring, unlock) = match self.keys.reading_keys(decrypt_only, has_identity)? {
            ReadingKeys::Clear(ring) => (ring, false),
            ReadingKeys::Unlock(ring) => (ring, true),
            ReadingKeys::None => {
                return Err(CliError::usage_msg(format!(
                    "no secret key: {} holds none and the tree {} has no identity",
                    self.keys.path().display(),
                    self.g.root.display()
                ))
                .with_hint("import one with `multiverse pass key import < key.asc`, create an identity, or use --gpg"));
            }
        };
        if !decrypt_only {
            ring.set_groups(gpg_groups());
            self.fill_publics(&mut ring);
        }
        if !unlock {
            return Ok(Box::new(ring));
        }
        match crate::session::lifetime()? {
            Some(life) => self.unlock_cached(ring, life),
            None => {
                for (_, plain) in self.unseal_all()? {
                    add_secret_armored(&mut ring, &plain)?;
                }
                Ok(Box::new(ring))
            }
        }
    }

    /// Unseals every sealed key and derives the identity's @user key: (cache id, armored key).
    /// A wrong passphrase fails here, before anything is cached. The passphrase is asked for
    /// sealed keys, and for the identity root only when the session cache lacks it.
    fn unseal_all(&self) -> Result<Vec<(String, SecretBytes)>, CliError> {
        let mut out = self.keys.unseal_each(|path, sealed| {
            let pass = self.passphrase()?;
            mv_seal::open(sealed, pass.expose().as_bytes())
                .map_err(|e| {
                    CliError::failure_msg(format!("cannot unseal {}: {e}", path.display()))
                })
                .usage()
                .hint("wrong passphrase, or a damaged key file")
        })?;
        if let Some(root) = self.identity_root()? {
            let key = self.identity_key(&root)?;
            let armored = mv_pass::armor_secret(&key)?;
            out.push((crate::unsealed::user_key_cache_id(&self.g.root), armored));
        }
        Ok(out)
    }

    /// The cache ids of what [`Ctx::unseal_all`] would unseal (no passphrase needed).
    fn cache_ids(&self) -> Result<Vec<String>, CliError> {
        let mut ids = self.keys.sealed_cache_ids()?;
        if IdentityStore::exists(&self.g.root) {
            ids.push(crate::unsealed::user_key_cache_id(&self.g.root));
        }
        Ok(ids)
    }

    /// Unlock once per session ([`mv_pass::agent::Client::unlock`]): the keys come from the
    /// agent; on a miss they are unsealed and handed to it.
    fn unlock_cached(
        &self,
        mut ring: Keyring,
        life: mv_pass::agent::Lifetime,
    ) -> Result<Box<dyn Crypto>, CliError> {
        let ids = self.cache_ids()?;
        let unlocked = crate::session::client().unlock(&ids, life, &mut PassSteps(self))?;
        for v in &unlocked.values {
            add_secret_armored(&mut ring, v)?;
        }
        if unlocked.stored && !self.g.quiet {
            eprintln!(
                "multiverse: pass keys unlocked for this session ({} s after last use, {} s at most; `multiverse pass lock` forgets them)",
                life.idle.as_secs(),
                life.max.as_secs()
            );
        }
        Ok(Box::new(ring))
    }
}

/// The pass keys' part of [`mv_pass::agent::Client::unlock`].
struct PassSteps<'c, 'a>(&'c Ctx<'a>);

impl mv_pass::agent::UnlockSteps for PassSteps<'_, '_> {
    type Error = CliError;
    /// The identity root first, under its own turn of the unlock lock (from the session cache,
    /// or unsealed and cached): taking the lock again while holding it would wait forever.
    fn before_lock(&mut self) -> Result<(), CliError> {
        self.0.identity_root().map(drop)
    }
    fn unseal(&mut self) -> Result<Vec<SecretBytes>, CliError> {
        Ok(self.0.unseal_all()?.into_iter().map(|(_, v)| v).collect())
    }
    fn start_agent(&mut self, agent: &mv_pass::agent::Client) -> bool {
        crate::session::start_agent(agent)
    }
    fn no_cache(&mut self, error: &mv_pass::agent::AgentError) {
        crate::session::warn_no_cache(error);
    }
}

fn add_secret_armored(ring: &mut Keyring, armored: &SecretBytes) -> Result<(), CliError> {
    let key = mv_pass::parse_secret_key(armored.expose(), None)
        .hint("a cached or unsealed key does not parse; run `multiverse pass lock` and retry")?;
    ring.add_secret(key);
    Ok(())
}

/// gpg's groups from `$GNUPGHOME/gpg.conf` (else `~/.gnupg/gpg.conf`), for the built-in keyring.
fn gpg_groups() -> std::collections::BTreeMap<String, Vec<String>> {
    let home = std::env::var_os("GNUPGHOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".gnupg")));
    home.and_then(|h| std::fs::read_to_string(h.join("gpg.conf")).ok())
        .map(|t| mv_pass::parse_gpg_groups(&t))
        .unwrap_or_default()
}

/// An unlock failure carried through [`LazyCrypto`]; shown as the error and its causes.
pub(super) struct Unlock(CliError);

impl std::fmt::Display for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0.error)
    }
}

/// Keys that unlock only when a secret key is needed (see [`LazyCrypto`]).
pub(super) type Lazy<'a> = LazyCrypto<'a, Unlock>;

impl<'a> Ctx<'a> {
    pub(super) fn crypto_read_lazy(&'a self) -> Lazy<'a> {
        LazyCrypto::new(
            || self.crypto_read().map_err(Unlock),
            || self.crypto_write().map_err(Unlock),
            !self.gpg,
        )
    }
}

/// A store result, with an unlock failure (if one happened) in place of the store's error.
pub(super) fn finish<T>(lazy: &Lazy<'_>, r: Result<T, StoreError>) -> Result<T, CliError> {
    r.map_err(|e| match lazy.take_failure() {
        Some(Unlock(c)) => c,
        None => CliError::from(e),
    })
}

/// Whether `tool` is on `PATH`.
pub(super) fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}
