//! `multiverse pass …`: the password store (pass format, OTP) on the command line.
//!
//! Parsing, prompting, printing, the clipboard and `$EDITOR` live here; the store, OpenPGP and
//! OTP are `mv_pass`. The store is `PASSWORD_STORE_DIR`, else `<root>/pass`; keys live in
//! `MULTIVERSE_PASS_KEYS`, else `<root>/pass-keys` (certificates, and secret keys sealed under
//! the identity passphrase). The identity's `@user` OpenPGP key is the default key: `init`
//! without a key id uses it, and reading unseals it when no clear secret key is present.
//! `--gpg` hands all OpenPGP work to gpg/gpg-agent instead (smartcards).
//!
//! Secrets come from stdin, a prompt or files, never argv; the passphrase from
//! `--passphrase-file`, `MULTIVERSE_PASSPHRASE` or a prompt. Exit codes: bad names, bad input,
//! a missing entry or a wrong passphrase are 2; other failures 1.

use crate::error::{CliError, Hinted};
use crate::global::Global;
use crate::secret_input;
use mv_core::secret::{SecretBytes, SecretString};
use mv_core::{IdentityName, MachineName};
use mv_identity::{IdentityStore, KdfParams};
use mv_pass::check;
use mv_pass::store::Change;
use mv_pass::{Crypto, EntryName, Gpg, KeyDir, Keyring, OtpUri, Store, StoreError};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

mod args;

use args::{Cmd, KeyCmd, OtpCmd, OtpNew, Output};

/// `multiverse pass`: pass's own command line, parsed by [`args::parse`] (GNU getopt rules, as
/// pass does), not by clap, so that it is exactly pass's.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true, disable_version_flag = true)]
pub struct Args {
    /// `pass [COMMAND] [OPTIONS] [ARGS]`, as pass 1.7.4 and pass-otp (`multiverse pass help`)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 0..,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

/// Everything a subcommand needs to reach the store and the keys.
struct Ctx<'a> {
    g: &'a Global,
    store: Store,
    keys: KeyDir,
    gpg: bool,
    passphrase_file: Option<PathBuf>,
    /// The command writes entries: recipients' public keys are needed (and taken from gpg's
    /// keyring when ours lacks them).
    writing: bool,
    /// Recipients named on the command line (`init`), besides those of the store's .gpg-id files.
    new_ids: Vec<String>,
    /// The passphrase, once asked (one prompt per command).
    asked: std::sync::OnceLock<SecretString>,
    /// The identity root (`None`: the tree has none), once unsealed or found in the session
    /// cache.
    root: std::sync::OnceLock<Option<mv_identity::Root>>,
}

fn store_dir(g: &Global) -> PathBuf {
    match std::env::var_os("PASSWORD_STORE_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => g.root.join("pass"),
    }
}

fn keys_dir(g: &Global) -> PathBuf {
    match std::env::var_os("MULTIVERSE_PASS_KEYS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => g.root.join("pass-keys"),
    }
}

fn entry(s: &str) -> Result<EntryName, CliError> {
    EntryName::parse(s)
        .usage()
        .hint("entry names are relative paths inside the store, without `..`")
}

/// Maps store errors: the person's input (names, missing entries, patterns) is exit 2.
fn store_err(e: StoreError) -> CliError {
    let usage = matches!(
        e,
        StoreError::Name(_)
            | StoreError::NotFound(_)
            | StoreError::Exists(_)
            | StoreError::Pattern(_)
            | StoreError::NotInitialised(_)
            | StoreError::NoRecipients
    );
    let hint = match &e {
        StoreError::Exists(_) => Some("use --force to overwrite"),
        StoreError::NotInitialised(_) => Some("run `multiverse pass init` (the identity's key) or `multiverse pass init KEYID`"),
        StoreError::Decrypt { .. } => Some("import the store's secret key with `multiverse pass key import`, or use --gpg"),
        StoreError::Encrypt { .. } => Some("add the recipients' public keys with `multiverse pass key add` (or `key import`), or use --gpg"),
        _ => None,
    };
    let mut c: CliError = e.into();
    if usage {
        c.kind = crate::error::Kind::Usage;
    }
    if let Some(h) = hint {
        c = c.with_hint(h);
    }
    c
}

impl Ctx<'_> {
    /// The identity passphrase, asked at most once per command.
    fn passphrase(&self) -> Result<SecretString, CliError> {
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
    fn identity_root(&self) -> Result<Option<mv_identity::Root>, CliError> {
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
    fn check_identity_passphrase(&self, pass: &SecretString) -> Result<(), CliError> {
        let store = IdentityStore::load(&self.g.root)?;
        crate::unsealed::check(&store, pass.expose().as_bytes())
            .usage()
            .hint("wrong identity passphrase")?;
        Ok(())
    }

    /// The identity's @user OpenPGP key; its certificate is saved in the key folder so writes
    /// need no passphrase later.
    fn identity_key(
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
    fn crypto_write(&self) -> Result<Box<dyn Crypto>, CliError> {
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

    /// Recipients our keyring lacks are taken, read-only, from gpg's keyring (`gpg --export`;
    /// gpg's files are not changed) and kept in the key folder, so this is said once per key.
    fn fill_publics(&self, ring: &mut Keyring) {
        if self.gpg || !self.writing || !which("gpg") {
            return;
        }
        let wanted = ring.expand_groups(&self.store_recipients());
        for id in wanted {
            if !matches!(
                ring.resolve(&id),
                Err(mv_pass::KeyError::UnknownRecipient(_))
            ) {
                continue;
            }
            let Ok(out) = std::process::Command::new("gpg")
                .args(["--batch", "--export", "--armor", "--", &id])
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
            else {
                return;
            };
            if !out.status.success() || out.stdout.is_empty() {
                continue;
            }
            let Ok(cert) = mv_pass::keys::parse_public_key(&out.stdout) else {
                continue;
            };
            let fpr = mv_pass::keys::fingerprint_hex(&cert);
            let saved = !self.g.dry_run && self.keys.put_public(&cert).unwrap_or(false);
            ring.add_public(cert);
            if !self.g.quiet {
                let kept = if saved {
                    format!("; kept in {}", self.keys.path().display())
                } else {
                    String::new()
                };
                eprintln!(
                    "multiverse: took the public key {fpr} ({id}) from gpg's keyring, read-only{kept}"
                );
            }
        }
    }

    /// Keys for reading: clear secret keys, plus (with the passphrase) the sealed ones. The
    /// identity's @user key is added whenever the passphrase is asked anyway, or when there is
    /// no other secret key. No sealed key and a clear one: no passphrase is asked.
    fn crypto_read(&self) -> Result<Box<dyn Crypto>, CliError> {
        self.crypto_reading(false)
    }

    /// Keys that only decrypt (`show`, `grep`): [`Ctx::crypto_read`]'s secret keys, without the
    /// key folder's certificates and gpg's groups, which only encrypting needs.
    fn crypto_decrypt(&self) -> Result<Box<dyn Crypto>, CliError> {
        self.crypto_reading(true)
    }

    fn crypto_reading(&self, decrypt_only: bool) -> Result<Box<dyn Crypto>, CliError> {
        if self.gpg {
            return Ok(Box::new(Gpg::new()));
        }
        let ring = if decrypt_only {
            self.keys.load_secrets()?
        } else {
            self.keys.load(None)?
        };
        let has_sealed = self.keys.has_sealed()?;
        let has_identity = IdentityStore::exists(&self.g.root);
        if !has_sealed && (ring.has_secret() || !has_identity) {
            if ring.has_secret() {
                let mut ring = ring;
                if !decrypt_only {
                    ring.set_groups(gpg_groups());
                    self.fill_publics(&mut ring);
                }
                return Ok(Box::new(ring));
            }
            return Err(CliError::usage_msg(format!(
                "no secret key: {} holds none and the tree {} has no identity",
                self.keys.path().display(),
                self.g.root.display()
            ))
            .with_hint("import one with `multiverse pass key import < key.asc`, create an identity, or use --gpg"));
        }
        let mut ring = ring;
        if !decrypt_only {
            ring.set_groups(gpg_groups());
            self.fill_publics(&mut ring);
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
        let mut out = Vec::new();
        for (path, sealed) in self.keys.sealed_files()? {
            let pass = self.passphrase()?;
            let plain = mv_seal::open(&sealed, pass.expose().as_bytes())
                .map_err(|e| {
                    CliError::from(anyhow::anyhow!("cannot unseal {}: {e}", path.display()))
                })
                .usage()
                .hint("wrong passphrase, or a damaged key file")?;
            out.push((cache_id("sealed", &sealed), plain));
        }
        if let Some(root) = self.identity_root()? {
            let key = self.identity_key(&root)?;
            let armored = mv_pass::keys::armor_secret(&key)?;
            out.push((self.identity_cache_id()?, armored));
        }
        Ok(out)
    }

    /// The cache ids of what [`Ctx::unseal_all`] would unseal (no passphrase needed).
    fn cache_ids(&self) -> Result<Vec<String>, CliError> {
        let mut ids: Vec<String> = self
            .keys
            .sealed_files()?
            .iter()
            .map(|(_, b)| cache_id("sealed", b))
            .collect();
        if IdentityStore::exists(&self.g.root) {
            ids.push(self.identity_cache_id()?);
        }
        Ok(ids)
    }

    /// The cache id of the identity's @user key: the sealed root's bytes and every epoch of the
    /// tree (a rotation, by `identity rotate` or a hand edit of `[identity.epochs]`, changes the
    /// key without touching the sealed root, and must not find the old key cached).
    fn identity_cache_id(&self) -> Result<String, CliError> {
        let mut material =
            std::fs::read(IdentityStore::sealed_path(&self.g.root)).unwrap_or_default();
        let config =
            std::fs::read_to_string(self.g.root.join("multiverse.toml")).unwrap_or_default();
        if let Ok(epochs) = mv_core::epochs::epochs(&config) {
            for (name, epoch) in epochs.iter() {
                material.extend_from_slice(format!("\n{name}={epoch}").as_bytes());
            }
        }
        Ok(cache_id("identity", &material))
    }

    /// Unlock once per session: the keys come from the agent; on a miss (under the unlock lock,
    /// so concurrent first commands unseal once) they are unsealed and handed to the agent.
    fn unlock_cached(
        &self,
        mut ring: Keyring,
        life: mv_pass::agent::Lifetime,
    ) -> Result<Box<dyn Crypto>, CliError> {
        let agent = crate::session::client();
        let ids = self.cache_ids()?;
        let fetch = |ring: &mut Keyring| -> Result<bool, CliError> {
            let mut got = Vec::new();
            for id in &ids {
                match agent.get(id) {
                    Some(v) => got.push(v),
                    None => return Ok(false),
                }
            }
            for v in &got {
                add_secret_armored(ring, v)?;
            }
            Ok(true)
        };
        if fetch(&mut ring)? {
            return Ok(Box::new(ring));
        }
        // The identity root first, under its own turn of the unlock lock (from the session
        // cache, or unsealed and cached): taking the lock again while holding it below would
        // wait forever.
        self.identity_root()?;
        let guard = match agent.unlock_guard() {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!("multiverse: warning: no session cache: {e}");
                None
            }
        };
        if guard.is_some() && fetch(&mut ring)? {
            return Ok(Box::new(ring));
        }
        let unsealed = self.unseal_all()?;
        for (_, plain) in &unsealed {
            add_secret_armored(&mut ring, plain)?;
        }
        if guard.is_some() && crate::session::start_agent(&agent) {
            let stored = unsealed
                .iter()
                .all(|(id, plain)| agent.put(id, plain.expose(), life).is_ok());
            if stored && !self.g.quiet {
                eprintln!(
                    "multiverse: pass keys unlocked for this session ({} s after last use, {} s at most; `multiverse pass lock` forgets them)",
                    life.idle.as_secs(),
                    life.max.as_secs()
                );
            }
        }
        drop(guard);
        Ok(Box::new(ring))
    }
}

use mv_pass::agent::cache_id;

fn add_secret_armored(ring: &mut Keyring, armored: &SecretBytes) -> Result<(), CliError> {
    let key = mv_pass::keys::parse_secret_key(armored.expose(), None)
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
        .map(|t| mv_pass::keys::parse_gpg_groups(&t))
        .unwrap_or_default()
}

/// pass's banner (`pass version`), which its suite looks for in `--help`.
const BANNER: &str = "============================================
= pass: the standard unix password manager =
=                                          =
=                  v1.7.4                  =
=       (multiverse pass, a drop-in)       =
=                                          =
=      http://www.passwordstore.org/       =
============================================";

fn usage_text() -> String {
    format!(
        "{BANNER}

Usage:
    pass init [--path=subfolder,-p subfolder] gpg-id...
        Initialize new password storage and use gpg-id for encryption.
        Selectively reencrypt existing passwords using new gpg-id.
        An empty gpg-id (with -p) removes the folder's .gpg-id.
    pass [ls] [subfolder]
        List passwords.
    pass find pass-names...
        List passwords that match pass-names.
    pass [show] [--clip[=line-number],-c[line-number]] [--line N] pass-name
        Show existing password and optionally put it on the clipboard.
    pass grep [-i|-F|-w|-x|-E] search-string
        Search for password files containing search-string when decrypted.
    pass insert [--echo,-e | --multiline,-m] [--force,-f] pass-name
        Insert new password.
    pass edit pass-name
        Insert a new password or edit an existing password using $EDITOR.
    pass generate [--no-symbols,-n] [--clip,-c] [--in-place,-i | --force,-f] pass-name [pass-length]
        Generate a new password of pass-length (or 25 if unspecified).
    pass rm [--recursive,-r] [--force,-f] pass-name
    pass mv [--force,-f] old-path new-path
    pass cp [--force,-f] old-path new-path
    pass git git-command-args...
    pass otp [code] [--clip,-c] pass-name
    pass otp insert|append [--force,-f] [--echo,-e] [--secret,-s] [--issuer,-i issuer] [--account,-a account] [pass-name]
    pass otp uri [--clip,-c | --qrcode,-q] pass-name
    pass otp validate [uri]
    pass help | version

Multiverse's own:
    pass key import [--unsealed] | key add | key ls
    pass machines | fsck [--decrypt] | audit [--max-age DAYS]
    pass lock [--all]
        Forget the secret key unlocked for this session.
    Every command also takes --gpg, --passphrase-file FILE, --json and --dry-run.
"
    )
}

/// Keys that unlock only when a secret key is needed: writing with certificates alone, and the
/// sealed key (the passphrase, or the session cache) only for the first decryption. `mv`/`cp` of
/// entries already encrypted for their new place, or `init` with nothing to re-encrypt, never
/// ask. An unlock failure is kept and reported as it is (its hint and exit code).
struct LazyCrypto<'a> {
    ctx: &'a Ctx<'a>,
    write: std::sync::OnceLock<Result<Box<dyn Crypto>, String>>,
    read: std::sync::OnceLock<Result<Box<dyn Crypto>, String>>,
    failure: std::sync::Mutex<Option<CliError>>,
}

impl<'a> LazyCrypto<'a> {
    fn new(ctx: &'a Ctx<'a>) -> Self {
        LazyCrypto {
            ctx,
            write: std::sync::OnceLock::new(),
            read: std::sync::OnceLock::new(),
            failure: std::sync::Mutex::new(None),
        }
    }

    fn get<'s>(
        &'s self,
        cell: &'s std::sync::OnceLock<Result<Box<dyn Crypto>, String>>,
        read: bool,
    ) -> Result<&'s dyn Crypto, mv_pass::CryptoError> {
        let r = cell.get_or_init(|| {
            let made = if read {
                self.ctx.crypto_read()
            } else {
                self.ctx.crypto_write()
            };
            made.map_err(|e| {
                let text = format!("{:#}", e.error);
                if let Ok(mut f) = self.failure.lock() {
                    f.get_or_insert(e);
                }
                text
            })
        });
        match r {
            Ok(b) => Ok(b.as_ref()),
            Err(text) => Err(mv_pass::CryptoError::Unavailable(text.clone())),
        }
    }

    /// A store result, with an unlock failure (if one happened) in place of the store's error.
    fn finish<T>(&self, r: Result<T, StoreError>) -> Result<T, CliError> {
        r.map_err(
            |e| match self.failure.lock().ok().and_then(|mut f| f.take()) {
                Some(c) => c,
                None => store_err(e),
            },
        )
    }
}

impl Crypto for LazyCrypto<'_> {
    fn decrypt(&self, data: &[u8]) -> Result<SecretBytes, mv_pass::CryptoError> {
        self.get(&self.read, true)?.decrypt(data)
    }
    fn encrypt(
        &self,
        plain: &[u8],
        recipients: &[String],
    ) -> Result<Vec<u8>, mv_pass::CryptoError> {
        match self.read.get() {
            Some(Ok(r)) => r.encrypt(plain, recipients),
            _ => self.get(&self.write, false)?.encrypt(plain, recipients),
        }
    }
    fn recipient_key_ids(
        &self,
        recipients: &[String],
    ) -> Result<std::collections::BTreeSet<String>, mv_pass::CryptoError> {
        match self.read.get() {
            Some(Ok(r)) => r.recipient_key_ids(recipients),
            _ => self.get(&self.write, false)?.recipient_key_ids(recipients),
        }
    }
    fn encryption_key_ids(
        &self,
        recipients: &[String],
    ) -> Result<std::collections::BTreeSet<String>, mv_pass::CryptoError> {
        match self.read.get() {
            Some(Ok(r)) => r.encryption_key_ids(recipients),
            _ => self.get(&self.write, false)?.encryption_key_ids(recipients),
        }
    }
    fn parallel(&self) -> bool {
        !self.ctx.gpg
    }
}

impl<'a> Ctx<'a> {
    fn crypto_read_lazy(&'a self) -> LazyCrypto<'a> {
        LazyCrypto::new(self)
    }
}

/// The whitespace-separated words of environment variable `var` (none when unset), as pass
/// reads its key-list variables.
fn env_words(var: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Runs `multiverse pass …`.
pub fn run(g: &Global, a: Args) -> Result<(), CliError> {
    if let Some((extras, word, rest)) = args::extension_call(&a.args) {
        if let Some(ext) = find_extension(g, &word)? {
            apply_umask();
            return run_extension(g, &ext, &extras, &word, &rest);
        }
    }
    let inv = args::parse(&a.args)
        .map_err(|e| CliError::usage_msg(format!("pass: {}", e.message)).with_hint(&e.usage))?;
    apply_umask();
    let g2 = Global {
        root: g.root.clone(),
        json: g.json || inv.extras.json,
        dry_run: g.dry_run || inv.extras.dry_run,
        verbose: g.verbose,
        quiet: g.quiet,
    };
    let g = &g2;
    let ctx = Ctx {
        g,
        // pass's PASSWORD_STORE_KEY: whitespace-separated ids that replace every .gpg-id.
        store: Store::new(store_dir(g))
            .with_recipients_override(env_words("PASSWORD_STORE_KEY"))
            // PASSWORD_STORE_SIGNING_KEY: .gpg-id signed by init and checked before use (by gpg).
            .with_signing_keys(env_words("PASSWORD_STORE_SIGNING_KEY")),
        keys: KeyDir::new(keys_dir(g)),
        gpg: inv.extras.gpg,
        passphrase_file: inv.extras.passphrase_file,
        writing: !matches!(
            inv.command,
            Cmd::Show { .. }
                | Cmd::Find { .. }
                | Cmd::Grep { .. }
                | Cmd::Fsck { .. }
                | Cmd::Audit { .. }
                | Cmd::Otp(OtpCmd::Uri { .. } | OtpCmd::Validate { .. })
                | Cmd::Key(_)
                | Cmd::Lock { .. }
                | Cmd::Help
                | Cmd::Version
        ),
        new_ids: match &inv.command {
            Cmd::Init { ids, .. } => ids.iter().filter(|i| !i.is_empty()).cloned().collect(),
            _ => Vec::new(),
        },
        asked: std::sync::OnceLock::new(),
        root: std::sync::OnceLock::new(),
    };
    match inv.command {
        Cmd::Help => {
            print!("{}", usage_text());
            Ok(())
        }
        Cmd::Version => {
            println!("{BANNER}");
            Ok(())
        }
        Cmd::Init { path, ids } => init(&ctx, path, ids),
        Cmd::Insert {
            echo,
            multiline,
            force,
            name,
        } => insert(&ctx, &name, echo, multiline, force),
        Cmd::Show { name, output, line } => show(&ctx, name.as_deref(), output, line),
        Cmd::Clip { name } => clip_stdin(g, &name),
        Cmd::ClipRestore { secs } => clip_restore(secs),
        Cmd::Generate {
            no_symbols,
            output,
            in_place,
            force,
            name,
            length,
        } => generate(&ctx, &name, length, !no_symbols, in_place, force, output),
        Cmd::Edit { name } => edit(&ctx, &name),
        Cmd::Rm {
            recursive,
            force,
            name,
        } => remove(&ctx, &name, recursive, force),
        Cmd::MoveCopy {
            copy,
            force,
            from,
            to,
        } => move_copy(&ctx, &from, &to, copy, force),
        Cmd::Find { terms } => find(&ctx, &terms),
        Cmd::Grep { args } => grep(&ctx, &args),
        Cmd::Git { args } => git(&ctx, &args),
        Cmd::Otp(o) => otp(&ctx, o),
        Cmd::Key(k) => key(&ctx, k),
        Cmd::Machines => machines(&ctx),
        Cmd::Fsck { decrypt } => fsck(&ctx, decrypt),
        Cmd::Audit { max_age } => audit(&ctx, max_age),
        Cmd::Lock { all } => lock(&ctx, all),
        Cmd::Agent => Ok(mv_pass::agent::serve(&mv_pass::agent::default_dir())?),
    }
}

/// Where pass 1.7.4 looks for system extensions (always enabled, as in pass).
const SYSTEM_EXTENSION_DIR: &str = "/usr/lib/password-store/extensions";

/// The extension `pass WORD` runs, as pass finds it: `$PASSWORD_STORE_EXTENSIONS_DIR` (default
/// `STORE/.extensions`) `/WORD.bash` when `PASSWORD_STORE_ENABLE_EXTENSIONS=true` (its
/// `.sig` checked when `PASSWORD_STORE_SIGNING_KEY` is set), else the system one; either must
/// be executable.
fn find_extension(g: &Global, word: &str) -> Result<Option<PathBuf>, CliError> {
    if word.split('/').any(|p| p == "..") {
        return Err(CliError::usage_msg(
            "Error: You've attempted to pass a sneaky path to pass. Go home.",
        ));
    }
    let store = Store::new(store_dir(g)).with_signing_keys(
        std::env::var("PASSWORD_STORE_SIGNING_KEY")
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect(),
    );
    let user_dir = std::env::var_os("PASSWORD_STORE_EXTENSIONS_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| store.dir().join(".extensions"), PathBuf::from);
    let user = user_dir.join(format!("{word}.bash"));
    let enabled = std::env::var("PASSWORD_STORE_ENABLE_EXTENSIONS").as_deref() == Ok("true");
    // pass: a regular file with an execute bit.
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
    };
    if enabled && runnable(&user) {
        store.verify_signed(&user).map_err(store_err)?;
        return Ok(Some(user));
    }
    let system = Path::new(SYSTEM_EXTENSION_DIR).join(format!("{word}.bash"));
    Ok(runnable(&system).then_some(system))
}

/// A word for bash, single-quoted.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What an extension finds around it (docs/pass.md, "Extensions"): pass 1.7.4's variables and
/// helpers, their bodies copied from pass where they need no key, and `clip` and `cmd_*`
/// functions that run our binary for anything that needs one. The text to copy reaches
/// `__clip` on its stdin (bash's `printf` is a builtin): never argv or the environment.
const EXTENSION_PRELUDE: &str = r#"set -o pipefail
PREFIX="$PASSWORD_STORE_DIR"
EXTENSIONS="${PASSWORD_STORE_EXTENSIONS_DIR:-$PREFIX/.extensions}"
X_SELECTION="${PASSWORD_STORE_X_SELECTION:-clipboard}"
CLIP_TIME="${PASSWORD_STORE_CLIP_TIME:-45}"
GENERATED_LENGTH="${PASSWORD_STORE_GENERATED_LENGTH:-25}"
CHARACTER_SET="${PASSWORD_STORE_CHARACTER_SET:-[:punct:][:alnum:]}"
CHARACTER_SET_NO_SYMBOLS="${PASSWORD_STORE_CHARACTER_SET_NO_SYMBOLS:-[:alnum:]}"
GPG_OPTS=( $PASSWORD_STORE_GPG_OPTS --quiet --yes --compress-algo=none --no-encrypt-to )
GPG=gpg
export GPG_TTY="${GPG_TTY:-$(tty 2>/dev/null)}"
command -v gpg2 >/dev/null 2>&1 && GPG=gpg2
[[ -n $GPG_AGENT_INFO || $GPG == gpg2 ]] && GPG_OPTS+=( --batch --use-agent )
unset GIT_DIR GIT_WORK_TREE GIT_NAMESPACE GIT_INDEX_FILE GIT_INDEX_VERSION GIT_OBJECT_DIRECTORY GIT_COMMON_DIR
export GIT_CEILING_DIRECTORIES="$PREFIX/.."
GETOPT=getopt
SHRED="shred -f -z"
BASE64=base64
SYSTEM_EXTENSION_DIR=/usr/lib/password-store/extensions
PROGRAM=pass
COMMAND="$MULTIVERSE_PASS_COMMAND"
unset MULTIVERSE_PASS_COMMAND
set_git() {
	INNER_GIT_DIR="${1%/*}"
	while [[ ! -d $INNER_GIT_DIR && ${INNER_GIT_DIR%/*}/ == "${PREFIX%/}/"* ]]; do
		INNER_GIT_DIR="${INNER_GIT_DIR%/*}"
	done
	[[ $(git -C "$INNER_GIT_DIR" rev-parse --is-inside-work-tree 2>/dev/null) == true ]] || INNER_GIT_DIR=""
}
git_add_file() {
	[[ -n $INNER_GIT_DIR ]] || return
	git -C "$INNER_GIT_DIR" add "$1" || return
	[[ -n $(git -C "$INNER_GIT_DIR" status --porcelain "$1") ]] || return
	git_commit "$2"
}
git_commit() {
	local sign=""
	[[ -n $INNER_GIT_DIR ]] || return
	[[ $(git -C "$INNER_GIT_DIR" config --bool --get pass.signcommits) == "true" ]] && sign="-S"
	git -C "$INNER_GIT_DIR" commit $sign -m "$1"
}
yesno() {
	[[ -t 0 ]] || return 0
	local response
	read -r -p "$1 [y/N] " response
	[[ $response == [yY] ]] || exit 1
}
die() {
	echo "$@" >&2
	exit 1
}
verify_file() {
	[[ -n $PASSWORD_STORE_SIGNING_KEY ]] || return 0
	[[ -f $1.sig ]] || die "Signature for $1 does not exist."
	local fingerprints="$($GPG $PASSWORD_STORE_GPG_OPTS --verify --status-fd=1 "$1.sig" "$1" 2>/dev/null | sed -n 's/^\[GNUPG:\] VALIDSIG \([A-F0-9]\{40\}\) .* \([A-F0-9]\{40\}\)$/\1\n\2/p')"
	local fingerprint found=0
	for fingerprint in $PASSWORD_STORE_SIGNING_KEY; do
		[[ $fingerprint =~ ^[A-F0-9]{40}$ ]] || continue
		[[ $fingerprints == *$fingerprint* ]] && { found=1; break; }
	done
	[[ $found -eq 1 ]] || die "Signature for $1 is invalid."
}
set_gpg_recipients() {
	GPG_RECIPIENT_ARGS=( )
	GPG_RECIPIENTS=( )
	if [[ -n $PASSWORD_STORE_KEY ]]; then
		for gpg_id in $PASSWORD_STORE_KEY; do
			GPG_RECIPIENT_ARGS+=( "-r" "$gpg_id" )
			GPG_RECIPIENTS+=( "$gpg_id" )
		done
		return
	fi
	local current="$PREFIX/$1"
	while [[ $current != "$PREFIX" && ! -f $current/.gpg-id ]]; do
		current="${current%/*}"
	done
	current="$current/.gpg-id"
	if [[ ! -f $current ]]; then
		printf 'Error: You must run:\n    %s init your-gpg-id\nbefore you may use the password store.\n\n' "$PROGRAM" >&2
		cmd_usage
		exit 1
	fi
	verify_file "$current"
	local gpg_id
	while read -r gpg_id; do
		gpg_id="${gpg_id%%#*}"
		[[ -n $gpg_id ]] || continue
		GPG_RECIPIENT_ARGS+=( "-r" "$gpg_id" )
		GPG_RECIPIENTS+=( "$gpg_id" )
	done < "$current"
}
reencrypt_path() {
	die "Error: reencrypt_path is not available to extensions of $PROGRAM here; run \`$PROGRAM init [-p SUBFOLDER] GPG-ID…\`, which re-encrypts what needs it."
}
check_sneaky_paths() {
	local path
	for path in "$@"; do
		[[ $path =~ /\.\.$ || $path =~ ^\.\./ || $path =~ /\.\./ || $path =~ ^\.\.$ ]] && die "Error: You've attempted to pass a sneaky path to pass. Go home."
	done
}
clip() {
	[[ -n $WAYLAND_DISPLAY || -n $DISPLAY ]] || die "Error: No X11 or Wayland display detected"
	printf '%s' "$1" | PASSWORD_STORE_X_SELECTION="$X_SELECTION" PASSWORD_STORE_CLIP_TIME="$CLIP_TIME" "${MULTIVERSE[@]}" __clip "$2" || exit 1
}
qrcode() {
	if ! type qrencode >/dev/null 2>&1; then
		echo "$PROGRAM: qrencode: command not found" >&2
		return 127
	fi
	if [[ -n $DISPLAY || -n $WAYLAND_DISPLAY ]]; then
		if type feh >/dev/null 2>&1; then
			echo -n "$1" | qrencode --size 10 -o - | feh -x --title "pass: $2" -g +200+200 -
			return
		elif type gm >/dev/null 2>&1; then
			echo -n "$1" | qrencode --size 10 -o - | gm display -title "pass: $2" -geometry +200+200 -
			return
		elif type display >/dev/null 2>&1; then
			echo -n "$1" | qrencode --size 10 -o - | display -title "pass: $2" -geometry +200+200 -
			return
		fi
	fi
	echo -n "$1" | qrencode -t utf8
}
tmpdir() {
	[[ -n $SECURE_TMPDIR ]] && return
	local warn=1
	[[ $1 == "nowarn" ]] && warn=0
	local template="$PROGRAM.XXXXXXXXXXXXX"
	if [[ -d /dev/shm && -w /dev/shm && -x /dev/shm ]]; then
		SECURE_TMPDIR="$(mktemp -d "/dev/shm/$template")"
		remove_tmpfile() {
			rm -rf "$SECURE_TMPDIR"
		}
		trap remove_tmpfile EXIT
	else
		[[ $warn -eq 1 ]] && yesno "$(printf '%s\n' \
			"Your system does not have /dev/shm, which means that it may" \
			"be difficult to entirely erase the temporary non-encrypted" \
			"password file after editing." \
			"" \
			"Are you sure you would like to continue?")"
		SECURE_TMPDIR="$(mktemp -d "${TMPDIR:-/tmp}/$template")"
		shred_tmpfile() {
			find "$SECURE_TMPDIR" -type f -exec $SHRED {} +
			rm -rf "$SECURE_TMPDIR"
		}
		trap shred_tmpfile EXIT
	fi
}
cmd_show() { "${MULTIVERSE[@]}" show "$@"; }
cmd_extension_or_show() { "${MULTIVERSE[@]}" "$@"; }
cmd_extension() { "${MULTIVERSE[@]}" "$@"; }
cmd_insert() { "${MULTIVERSE[@]}" insert "$@"; }
cmd_edit() { "${MULTIVERSE[@]}" edit "$@"; }
cmd_generate() { "${MULTIVERSE[@]}" generate "$@"; }
cmd_delete() { "${MULTIVERSE[@]}" rm "$@"; }
cmd_copy_move() { local w="$1"; shift; if [[ $w == copy ]]; then "${MULTIVERSE[@]}" cp "$@"; else "${MULTIVERSE[@]}" mv "$@"; fi; }
cmd_find() { "${MULTIVERSE[@]}" find "$@"; }
cmd_grep() { "${MULTIVERSE[@]}" grep "$@"; }
cmd_init() { "${MULTIVERSE[@]}" init "$@"; }
cmd_git() { "${MULTIVERSE[@]}" git "$@"; }
cmd_otp() { "${MULTIVERSE[@]}" otp "$@"; }
cmd_version() { "${MULTIVERSE[@]}" version; }
cmd_usage() { "${MULTIVERSE[@]}" help; }
"#;

/// Runs an extension as pass does (`source EXT ARGS…` in a bash that has pass's variables and
/// helpers, see [`EXTENSION_PRELUDE`]), in place of this process: its exit status is ours.
fn run_extension(
    g: &Global,
    ext: &Path,
    extras: &[String],
    word: &str,
    rest: &[String],
) -> Result<(), CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find this program for the extension: {e}"))?;
    let mut me = vec![sh_quote(&exe.to_string_lossy()), "pass".to_string()];
    me.extend(extras.iter().map(|e| sh_quote(e)));
    let script = format!(
        "{EXTENSION_PRELUDE}MULTIVERSE=( {} )\nsource \"$MULTIVERSE_PASS_EXTENSION\" \"$@\"\n",
        me.join(" ")
    );
    let err = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("pass")
        .args(rest)
        .env("PASSWORD_STORE_DIR", store_dir(g))
        .env("MULTIVERSE_PASS_EXTENSION", ext)
        .env("MULTIVERSE_PASS_COMMAND", word)
        .exec();
    Err(anyhow::anyhow!("cannot run bash for the extension {}: {err}", ext.display()).into())
}

/// pass's umask: `PASSWORD_STORE_UMASK` (octal), else 077, for everything the store writes.
fn apply_umask() {
    let mask = std::env::var("PASSWORD_STORE_UMASK")
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim(), 8).ok())
        .filter(|m| *m <= 0o777)
        .unwrap_or(0o077);
    mv_pass::store::set_umask(mask);
}

/// Whether stdin is a terminal (pass asks before overwriting only then).
fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// pass's `yesno`: without a terminal the answer is yes; on one, anything but y/Y stops.
fn yesno(question: &str) -> Result<(), CliError> {
    if !interactive() {
        return Ok(());
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y") {
        Ok(())
    } else {
        Err(CliError::failure_msg("not confirmed: nothing changed"))
    }
}

fn lock(ctx: &Ctx<'_>, all: bool) -> Result<(), CliError> {
    if all && !ctx.g.dry_run {
        let n = mv_pass::agent::lock_all();
        ctx.g.say(format!("{n} key cache agent(s) locked"));
        return Ok(());
    }
    session_lock(ctx.g)
}

/// `pass lock` and `identity lock`: the session cache forgets the pass keys and the identity
/// root, and its agent ends.
pub fn session_lock(g: &Global) -> Result<(), CliError> {
    if g.dry_run {
        g.say("would forget the keys and the identity root unlocked for this session");
        return Ok(());
    }
    if crate::session::lock()? {
        g.say("pass keys and identity root locked: the next command asks for the passphrase");
    } else {
        g.say("nothing was unlocked for this session: nothing to forget");
    }
    Ok(())
}

fn report_change(g: &Global, what: &str, ch: &Change) {
    let git = if ch.committed { " (committed)" } else { "" };
    g.say(format!("{what}{git}"));
}

fn init(ctx: &Ctx<'_>, path: Option<String>, mut keyids: Vec<String>) -> Result<(), CliError> {
    // pass strips a trailing slash from -p in effect (the folder is the same).
    let sub = path
        .as_deref()
        .map(|p| p.trim_end_matches('/'))
        .filter(|p| !p.is_empty())
        .map(entry)
        .transpose()?;
    let where_ = sub.as_ref().map_or(String::new(), |s| format!(" ({s})"));
    if keyids.len() == 1 && keyids[0].is_empty() {
        // `init -p SUB ""`: remove that folder's .gpg-id; what it covered falls back to the one above.
        if ctx.g.dry_run {
            ctx.g.say(format!(
                "would remove the .gpg-id{where_} and re-encrypt what it covered"
            ));
            return Ok(());
        }
        let crypto = ctx.crypto_read_lazy();
        let ch = crypto.finish(ctx.store.deinit(sub.as_ref(), &crypto))?;
        report_change(
            ctx.g,
            &format!(
                "removed {}; {} entr{} re-encrypted",
                ch.files[0].display(),
                ch.files.len() - 1,
                if ch.files.len() == 2 { "y" } else { "ies" }
            ),
            &ch,
        );
        return Ok(());
    }
    if keyids.iter().any(String::is_empty) {
        return Err(CliError::usage_msg(
            "an empty gpg-id only works alone (it removes the .gpg-id)",
        ));
    }
    if keyids.is_empty() {
        // The identity's @user key is the default.
        if !IdentityStore::exists(&ctx.g.root) {
            return Err(CliError::usage_msg(
                "no key id given and the tree has no identity to take the @user key from",
            )
            .with_hint(
                "pass a key id (`multiverse pass init KEYID`) or create an identity first",
            ));
        }
        let root = ctx
            .identity_root()?
            .ok_or_else(|| CliError::failure_msg("the identity disappeared while reading it"))?;
        let key = ctx.identity_key(&root)?;
        keyids.push(mv_pass::keys::secret_fingerprint(&key));
    }
    if ctx.g.dry_run {
        ctx.g.say(format!(
            "would set the recipients{where_} to {} and re-encrypt what it covers",
            keyids.join(", ")
        ));
        return Ok(());
    }
    let crypto = ctx.crypto_read_lazy();
    let ch = crypto.finish(ctx.store.init(sub.as_ref(), &keyids, &crypto))?;
    if ch.files.is_empty() {
        ctx.g.say(format!(
            "Password store already initialized for {}{where_}: unchanged",
            keyids.join(", ")
        ));
    } else {
        report_change(
            ctx.g,
            &format!(
                "Password store initialized for {}{where_}; {} entr{} re-encrypted",
                keyids.join(", "),
                ch.files.len() - 1,
                if ch.files.len() == 2 { "y" } else { "ies" }
            ),
            &ch,
        );
    }
    Ok(())
}

/// Reads an entry's contents as pass does: `-m` everything up to end of input; `-e` one line
/// (shown while typed); else, on a terminal, twice without echo. From a pipe without `-e`, pass
/// reads the password twice: a second line must match the first (one line alone is accepted).
fn read_new_secret(
    name: &EntryName,
    echo: bool,
    multiline: bool,
) -> Result<SecretString, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() && !multiline {
        if echo {
            eprint!("Enter password for {name}: ");
            let _ = std::io::stderr().flush();
            let mut line = SecretString::new(String::new());
            stdin.lock().read_line(line.expose_mut())?;
            let text = line.expose().trim_end_matches(['\n', '\r']).to_string();
            return Ok(SecretString::new(format!("{text}\n")));
        }
        let a = SecretString::new(rpassword::prompt_password(format!(
            "Enter password for {name}: "
        ))?);
        let b = SecretString::new(rpassword::prompt_password(format!(
            "Retype password for {name}: "
        ))?);
        if a != b {
            return Err(CliError::usage_msg(
                "Error: the entered passwords do not match.",
            ));
        }
        return Ok(SecretString::new(format!("{}\n", a.expose())));
    }
    if stdin.is_terminal() {
        eprintln!("Enter contents of {name} and press Ctrl+D when finished:\n");
    }
    let mut raw = SecretBytes::new(Vec::new());
    stdin
        .lock()
        .read_to_end(raw.expose_mut())
        .hint("could not read the entry from stdin")?;
    let text = String::from_utf8(raw.expose().clone())
        .map_err(|_| CliError::usage_msg("the entry is not UTF-8 text"))?;
    let text = SecretString::new(text);
    if multiline {
        return Ok(text);
    }
    let mut lines = text.expose().lines();
    let first = SecretString::new(lines.next().unwrap_or("").to_string());
    if !echo {
        if let Some(second) = lines.next() {
            if second != first.expose() {
                return Err(CliError::usage_msg(
                    "Error: the entered passwords do not match.",
                ));
            }
        }
    }
    Ok(SecretString::new(format!("{}\n", first.expose())))
}

/// A name as pass takes it for a new entry: a trailing `/` is dropped.
fn new_entry(name: &str) -> Result<EntryName, CliError> {
    entry(name.strip_suffix('/').unwrap_or(name))
}

fn insert(
    ctx: &Ctx<'_>,
    name: &str,
    echo: bool,
    multiline: bool,
    force: bool,
) -> Result<(), CliError> {
    let name = new_entry(name)?;
    if !force && ctx.store.contains(&name) {
        yesno(&format!(
            "An entry already exists for {name}. Overwrite it?"
        ))?;
    }
    let content = read_new_secret(&name, echo, multiline)?;
    if ctx.g.dry_run {
        ctx.g.say(format!(
            "would write {}",
            name.file_in(ctx.store.dir()).display()
        ));
        return Ok(());
    }
    let crypto = ctx.crypto_write()?;
    let msg = format!("Add given password for {name} to store.");
    write_entry(
        ctx,
        &name,
        &content,
        &msg,
        crypto.as_ref(),
        &format!("Added {name}"),
    )
}

/// Writes `content` as entry `name` (committed with pass's message `msg` in a git store) unless it
/// already holds exactly that, and says which it was.
fn write_entry(
    ctx: &Ctx<'_>,
    name: &EntryName,
    content: &SecretString,
    msg: &str,
    crypto: &dyn Crypto,
    what: &str,
) -> Result<(), CliError> {
    match ctx
        .store
        .write_if_changed(name, content.expose().as_bytes(), msg, crypto)
        .map_err(store_err)?
    {
        Some(ch) => report_change(ctx.g, what, &ch),
        None => ctx.g.say(format!("{name}: unchanged")),
    }
    Ok(())
}

fn show(
    ctx: &Ctx<'_>,
    name: Option<&str>,
    output: Output,
    line: Option<usize>,
) -> Result<(), CliError> {
    // No name: the whole tree; a folder (or `NAME/`): its tree, as pass does.
    let raw = name.unwrap_or("");
    if raw.is_empty() {
        if !ctx.store.dir().is_dir() {
            return Err(CliError::usage_msg(
                "Error: password store is empty. Try \"pass init\".",
            ));
        }
        return list(ctx, None);
    }
    let trimmed = raw.trim_end_matches('/');
    if trimmed.is_empty() {
        return list(ctx, None);
    }
    let name = entry(trimmed)?;
    if raw.ends_with('/') || !ctx.store.contains(&name) {
        if name.dir_in(ctx.store.dir()).is_dir() {
            return list(ctx, Some(name.as_str()));
        }
        return Err(store_err(StoreError::NotFound(name.to_string())));
    }
    let crypto = ctx.crypto_decrypt()?;
    let plain = ctx.store.read(&name, crypto.as_ref()).map_err(store_err)?;
    let text = SecretString::new(String::from_utf8_lossy(plain.expose()).into_owned());
    let pick = |n: usize| -> Result<SecretString, CliError> {
        text.expose()
            .split('\n')
            .nth(n - 1)
            .filter(|l| !l.is_empty())
            .map(|l| SecretString::new(l.to_string()))
            .ok_or_else(|| {
                CliError::usage_msg(format!(
                    "There is no password to put on the clipboard at line {n}."
                ))
            })
    };
    match output {
        Output::Clip(n) => {
            let what = pick(line.unwrap_or(n))?;
            return clipboard(ctx.g, what.expose().as_bytes(), name.as_str());
        }
        Output::Qr(n) => {
            let what = pick(line.unwrap_or(n))?;
            return qrcode(what.expose());
        }
        Output::Print => {}
    }
    let selected = match line {
        Some(n) => Some(
            text.expose()
                .lines()
                .nth(n - 1)
                .ok_or_else(|| CliError::usage_msg(format!("there is no line {n} in {name}")))?
                .to_string(),
        ),
        None => None,
    };
    let selected = selected.map(SecretString::new);
    let mut out = std::io::stdout().lock();
    if ctx.g.json {
        let lines: Vec<&str> = text.expose().lines().collect();
        let v = serde_json::json!({
            "name": name.as_str(),
            "password": lines.first().copied().unwrap_or(""),
            "lines": lines,
            "selected": selected.as_ref().map(|s| s.expose().as_str()),
        });
        writeln!(out, "{v}")?;
    } else if let Some(sel) = selected {
        writeln!(out, "{}", sel.expose())?;
    } else {
        out.write_all(plain.expose())?;
    }
    Ok(())
}

/// `--qrcode`: the text as a QR code on the terminal by `qrencode -t utf8` (pass's tool), the
/// text on its stdin.
fn qrcode(text: &str) -> Result<(), CliError> {
    if !which("qrencode") {
        return Err(CliError::failure_msg("qrencode is not installed")
            .with_hint("install qrencode, or use --clip"));
    }
    let mut child = std::process::Command::new("qrencode")
        .args(["-t", "utf8"])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes())?;
    }
    let st = child.wait()?;
    if !st.success() {
        return Err(CliError::failure_msg(format!("qrencode failed ({st})")));
    }
    Ok(())
}

/// The clipboard programs of this session, chosen like pass 1.7: Wayland first, then X.
struct ClipTools {
    copy: Vec<String>,
    paste: Vec<String>,
    /// The display's name (`WAYLAND_DISPLAY` or `DISPLAY`): one clearing job per display.
    display: String,
}

/// The X selection `--clip` uses: `PASSWORD_STORE_X_SELECTION`, else `clipboard` (pass's
/// default); on Wayland only `primary` changes anything (wl-copy `--primary`), as in pass.
fn x_selection() -> Result<String, CliError> {
    let sel = std::env::var("PASSWORD_STORE_X_SELECTION")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "clipboard".into());
    if ["clipboard", "primary", "secondary"].contains(&sel.as_str()) {
        Ok(sel)
    } else {
        Err(CliError::usage_msg(format!(
            "PASSWORD_STORE_X_SELECTION={sel:?}: expected clipboard, primary or secondary"
        )))
    }
}

fn clip_tools() -> Result<ClipTools, CliError> {
    let wayland = std::env::var("WAYLAND_DISPLAY").unwrap_or_default();
    let x11 = std::env::var("DISPLAY").unwrap_or_default();
    let sel = x_selection()?;
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    if !wayland.is_empty() && which("wl-copy") {
        let mut t = ClipTools {
            copy: v(&["wl-copy"]),
            paste: v(&["wl-paste", "-n"]),
            display: wayland,
        };
        if sel == "primary" {
            t.copy.push("--primary".into());
            t.paste.push("--primary".into());
        }
        Ok(t)
    } else if !x11.is_empty() && which("xclip") {
        Ok(ClipTools {
            copy: v(&["xclip", "-selection", &sel]),
            paste: v(&["xclip", "-o", "-selection", &sel]),
            display: x11,
        })
    } else if !x11.is_empty() && which("xsel") {
        let flag = format!("--{sel}");
        Ok(ClipTools {
            copy: v(&["xsel", &flag, "--input"]),
            paste: v(&["xsel", &flag, "--output"]),
            display: x11,
        })
    } else {
        Err(CliError::usage_msg(
            "no clipboard here (no Wayland or X display with wl-copy, xclip or xsel)",
        )
        .with_hint("print it instead (drop --clip)"))
    }
}

impl ClipTools {
    /// Puts `data` on the clipboard (through stdin, never argv). xclip and wl-copy leave a
    /// process behind that serves the selection: it gets no stdout/stderr of ours, so whoever
    /// reads our output is not kept waiting until the clipboard changes hands.
    fn copy(&self, data: &[u8]) -> std::io::Result<()> {
        let mut child = std::process::Command::new(&self.copy[0])
            .args(&self.copy[1..])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(data)?;
        }
        let status = child.wait()?;
        if !status.success() {
            return Err(std::io::Error::other(format!(
                "{} failed: {status}",
                self.copy.join(" ")
            )));
        }
        Ok(())
    }

    /// Where the clearing job of this display listens (see [`ClipTools::supersede`]):
    /// `$XDG_RUNTIME_DIR`, else the temp folder with our uid in the name.
    fn socket(&self) -> PathBuf {
        let display: String = self
            .display
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d).join(format!("multiverse-clip-{display}")),
            _ => {
                let uid = std::fs::metadata("/proc/self")
                    .map(|m| std::os::unix::fs::MetadataExt::uid(&m).to_string())
                    .unwrap_or_else(|_| "unknown".into());
                std::env::temp_dir().join(format!("multiverse-clip-{uid}-{display}"))
            }
        }
    }

    /// Tells an earlier clearing job on this display to put its "before" back now and waits
    /// (at most 5 s) until it has, like pass's `pkill -f "^password store sleep on display"`:
    /// otherwise our "before" would be its secret, which we would restore later.
    fn supersede(&self) {
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.socket()) else {
            return;
        };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        if s.write_all(b"now").is_ok() {
            let mut done = [0u8; 4];
            let _ = s.read(&mut done);
        }
    }

    /// The clipboard's contents; None when it holds nothing (or cannot be read).
    fn paste(&self) -> Option<SecretBytes> {
        let out = std::process::Command::new(&self.paste[0])
            .args(&self.paste[1..])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let data = SecretBytes::new(out.stdout);
        out.status.success().then_some(data)
    }
}

/// The hidden subcommand that clears the clipboard later (see [`clipboard`]).
const CLIP_RESTORE: &str = "__clip-restore";

/// Copies `secret` to the clipboard and, after `PASSWORD_STORE_CLIP_TIME` seconds (default
/// 45), puts back what was there before — as pass 1.7 does — but only if the clipboard still
/// holds `secret`: something copied meanwhile is left alone.
///
/// The waiting is done by a detached copy of this binary (`pass __clip-restore`, its own
/// process group, no stdout/stderr, so this command returns at once), which gets the secret
/// and the previous contents on a pipe: neither is ever on a command line.
fn clipboard(g: &Global, secret: &[u8], what: &str) -> Result<(), CliError> {
    let tools = clip_tools()?;
    let secs: u64 = match std::env::var("PASSWORD_STORE_CLIP_TIME") {
        Ok(s) if !s.is_empty() => s.trim().parse().map_err(|_| {
            CliError::usage_msg(format!(
                "PASSWORD_STORE_CLIP_TIME={s:?} is not a number of seconds"
            ))
        })?,
        _ => 45,
    };
    tools.supersede();
    let before = tools.paste();
    tools
        .copy(secret)
        .map_err(|e| CliError::from(e).with_hint("could not copy to the clipboard"))?;
    // Frame: secret length (u64 LE), secret, 1 if there was a previous content, that content.
    let mut frame = SecretBytes::new(Vec::with_capacity(secret.len() + 64));
    let buf = frame.expose_mut();
    buf.extend_from_slice(&(secret.len() as u64).to_le_bytes());
    buf.extend_from_slice(secret);
    match &before {
        Some(b) => {
            buf.push(1);
            buf.extend_from_slice(b.expose());
        }
        None => buf.push(0),
    }
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .args(["pass", CLIP_RESTORE, "--secs", &secs.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(frame.expose())?;
    }
    // Not waited for: it outlives us on purpose, and init reaps it.
    drop(child);
    g.say(format!(
        "Copied {what} to clipboard. Will clear in {secs} seconds."
    ));
    Ok(())
}

/// `pass __clip NAME`, the extensions' `clip TEXT NAME` (see [`EXTENSION_PRELUDE`]): copies
/// what comes on stdin (the text, never on a command line) as [`clipboard`] does.
fn clip_stdin(g: &Global, name: &str) -> Result<(), CliError> {
    let mut text = SecretBytes::new(Vec::new());
    std::io::stdin().lock().read_to_end(text.expose_mut())?;
    clipboard(g, text.expose(), name)
}

/// `pass __clip-restore --secs N`: reads the frame of [`clipboard`] from stdin, waits, then
/// restores the previous contents (or empties the clipboard) if it still holds the secret.
fn clip_restore(secs: u64) -> Result<(), CliError> {
    let tools = clip_tools()?;
    let mut frame = SecretBytes::new(Vec::new());
    std::io::stdin().lock().read_to_end(frame.expose_mut())?;
    let f = frame.expose();
    let bad = || CliError::usage_msg(format!("{CLIP_RESTORE}: malformed input on stdin"));
    let len_bytes: [u8; 8] = f.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
    let len = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|_| bad())?;
    let secret = f.get(8..8usize.saturating_add(len)).ok_or_else(bad)?;
    let rest = &f[8 + len..];
    let before = match rest.first() {
        Some(1) => Some(&rest[1..]),
        Some(0) => None,
        _ => return Err(bad()),
    };
    // Listen for a later `--clip` on this display (see `ClipTools::supersede`) while waiting.
    let sock = tools.socket();
    let listener = listen(&sock);
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(l) = listener.as_ref().and_then(|l| l.try_clone().ok()) {
        let tx = tx.clone();
        std::thread::spawn(move || {
            // Only "now" counts: `listen`'s probe of a stale socket connects and says nothing.
            for mut s in l.incoming().flatten() {
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                let mut word = [0u8; 3];
                if s.read_exact(&mut word).is_ok() && &word == b"now" {
                    let _ = tx.send(s);
                    return;
                }
            }
        });
    }
    let early = rx.recv_timeout(std::time::Duration::from_secs(secs)).ok();
    drop(tx);
    let now = tools.paste();
    let result = if now.as_ref().map(|n| n.expose().as_slice()) == Some(secret) {
        tools.copy(before.unwrap_or(b""))
    } else {
        Ok(())
    };
    // Gone before we answer, so the next job can take the name.
    if listener.is_some() {
        let _ = std::fs::remove_file(&sock);
    }
    if let Some(mut s) = early {
        let _ = s.write_all(b"done");
    }
    result?;
    Ok(())
}

/// Binds the clearing job's socket; a stale one (nobody answers) is replaced. None when
/// another live job holds it or the folder is not writable: we then only wait out our time.
fn listen(sock: &Path) -> Option<std::os::unix::net::UnixListener> {
    use std::os::unix::net::{UnixListener, UnixStream};
    match UnixListener::bind(sock) {
        Ok(l) => Some(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(sock).is_ok() {
                return None;
            }
            std::fs::remove_file(sock).ok()?;
            UnixListener::bind(sock).ok()
        }
        Err(_) => None,
    }
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

#[allow(clippy::too_many_arguments)]
fn generate(
    ctx: &Ctx<'_>,
    name: &str,
    length: Option<String>,
    symbols: bool,
    in_place: bool,
    force: bool,
    output: Output,
) -> Result<(), CliError> {
    let name = new_entry(name)?;
    // pass's `${VAR:-default}`: an empty variable is the default.
    let length = length.or_else(|| {
        std::env::var("PASSWORD_STORE_GENERATED_LENGTH")
            .ok()
            .filter(|s| !s.is_empty())
    });
    let set_var = if symbols {
        "PASSWORD_STORE_CHARACTER_SET"
    } else {
        "PASSWORD_STORE_CHARACTER_SET_NO_SYMBOLS"
    };
    let set = match std::env::var_os(set_var).filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => {
            let spec = v
                .to_str()
                .ok_or_else(|| CliError::usage_msg(format!("{set_var} is not valid text")))?;
            Some(mv_pass::generate::tr_set(spec).map_err(|e| {
                CliError::usage_msg(format!("{set_var}={spec:?}: {e}")).with_hint(
                    "it is a tr(1) set, e.g. '[:alnum:]' or 'a-z0-9_'; unset it for pass's default",
                )
            })?)
        }
    };
    let len = match length {
        Some(s) => s.parse::<usize>().map_err(|_| {
            CliError::usage_msg(format!("Error: pass-length \"{s}\" must be a number."))
        })?,
        None => mv_pass::generate::DEFAULT_LENGTH,
    };
    if len == 0 {
        return Err(CliError::usage_msg(
            "Error: pass-length must be greater than zero.",
        ));
    }
    let exists = ctx.store.contains(&name);
    if !force && !in_place && exists {
        yesno(&format!(
            "An entry already exists for {name}. Overwrite it?"
        ))?;
    }
    if ctx.g.dry_run {
        ctx.g.say(format!(
            "would write a new {len}-character password to {}",
            name.file_in(ctx.store.dir()).display()
        ));
        return Ok(());
    }
    let crypto = if in_place && exists {
        ctx.crypto_read()?
    } else {
        ctx.crypto_write()?
    };
    let pw = match &set {
        Some(set) => mv_pass::generate::password_from(len, set),
        None => mv_pass::generate::password(len, symbols),
    };
    let (pw, ch) = ctx
        .store
        .generate_with(&name, pw, in_place, true, crypto.as_ref())
        .map_err(store_err)?;
    match output {
        Output::Clip(_) => return clipboard(ctx.g, pw.expose().as_bytes(), name.as_str()),
        Output::Qr(_) => return qrcode(pw.expose()),
        Output::Print => {}
    }
    if ctx.g.json {
        let v = serde_json::json!({"name": name.as_str(), "password": pw.expose(), "committed": ch.committed});
        println!("{v}");
    } else {
        // pass's exact bytes, colours included.
        println!(
            "\x1b[1mThe generated password for \x1b[4m{name}\x1b[24m is:\x1b[0m\n\x1b[1m\x1b[93m{}\x1b[0m",
            pw.expose()
        );
    }
    Ok(())
}

/// A private folder for the editor's temp file: /dev/shm (memory) when it exists, mode 0700.
fn private_tmpdir() -> Result<PathBuf, CliError> {
    use std::os::unix::fs::DirBuilderExt;
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let mut rnd = [0u8; 8];
    getrandom_bytes(&mut rnd);
    let dir = base.join(format!(
        "multiverse-pass.{}",
        rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create private folder {}: {e}", dir.display()))?;
    Ok(dir)
}

fn getrandom_bytes(buf: &mut [u8]) {
    // The password generator draws from the OS; reuse it for a unique folder name.
    let s = mv_pass::generate::password(buf.len(), false);
    for (b, c) in buf.iter_mut().zip(s.expose().bytes()) {
        *b = c;
    }
}

fn edit(ctx: &Ctx<'_>, name: &str) -> Result<(), CliError> {
    let name = entry(name)?;
    if ctx.g.dry_run {
        ctx.g.say(format!("would edit {name} with $EDITOR"));
        return Ok(());
    }
    let exists = ctx.store.contains(&name);
    let crypto = if exists {
        ctx.crypto_read()?
    } else {
        ctx.crypto_write()?
    };
    let old = if exists {
        ctx.store.read(&name, crypto.as_ref()).map_err(store_err)?
    } else {
        SecretBytes::new(Vec::new())
    };
    let dir = private_tmpdir()?;
    let file = dir.join(format!("{}.txt", name.as_str().replace('/', "-")));
    let result = (|| -> Result<Option<SecretBytes>, CliError> {
        // Like pass: a new entry starts with no file, so an editor that saves nothing saves
        // nothing.
        if exists {
            mv_core::fsutil::write_secret(&file, old.expose())?;
        }
        let editor = std::env::var("EDITOR")
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "vi".to_string());
        // $EDITOR may hold arguments ("code -w"): run it through the shell with the path as $1.
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(&file)
            .status()?;
        if !status.success() {
            return Err(CliError::failure_msg(format!(
                "the editor `{editor}` failed ({status}); nothing saved"
            )));
        }
        let new = match std::fs::read(&file) {
            Ok(b) => SecretBytes::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(
                    anyhow::anyhow!("cannot read the edited file {}: {e}", file.display()).into(),
                )
            }
        };
        // pass compares with the decrypted entry (under pipefail): a new entry is saved even
        // when the editor left it empty.
        if exists && new.expose() == old.expose() {
            return Err(CliError::failure_msg(format!(
                "Password for {name} unchanged."
            )));
        }
        Ok(Some(new))
    })();
    // Overwrite before removing, then remove the folder, whatever happened.
    if let Ok(meta) = std::fs::metadata(&file) {
        let zeros = vec![0u8; usize::try_from(meta.len()).unwrap_or(0)];
        let _ = std::fs::write(&file, zeros);
    }
    let _ = std::fs::remove_dir_all(&dir);
    // pass's two refusals, exit 1 as pass: "New password not saved." and "Password unchanged.".
    let Some(new) = result? else {
        return Err(CliError::failure_msg(format!(
            "New password for {name} not saved."
        )));
    };
    let editor = std::env::var("EDITOR").unwrap_or_else(|_| "editor".to_string());
    let verb = if exists { "Edit" } else { "Add" };
    let ch = ctx
        .store
        .write_with_message(
            &name,
            new.expose(),
            &format!("{verb} password for {name} using {editor}."),
            crypto.as_ref(),
        )
        .map_err(store_err)?;
    report_change(ctx.g, &format!("Saved {name}"), &ch);
    Ok(())
}

fn remove(ctx: &Ctx<'_>, raw: &str, recursive: bool, force: bool) -> Result<(), CliError> {
    let name = entry(raw.trim_end_matches('/'))?;
    let exists = ctx.store.contains(&name) || name.dir_in(ctx.store.dir()).exists();
    if !exists {
        return Err(store_err(StoreError::NotFound(raw.to_string())));
    }
    if !force {
        yesno(&format!("Are you sure you would like to delete {raw}?"))?;
    }
    if ctx.g.dry_run {
        let what = if ctx.store.contains(&name) {
            name.file_in(ctx.store.dir())
        } else {
            name.dir_in(ctx.store.dir())
        };
        ctx.g.say(format!("would remove {}", what.display()));
        return Ok(());
    }
    // `rm NAME/` means the folder even when an entry NAME exists too, as in pass.
    let ch = ctx
        .store
        .remove_as(&name, recursive, raw.ends_with('/'))
        .map_err(|e| match e {
            StoreError::Fs(f) if f.source.kind() == std::io::ErrorKind::IsADirectory => {
                CliError::failure_msg(format!("`{name}` is a folder"))
                    .with_hint("use --recursive (-r)")
            }
            other => store_err(other),
        })?;
    report_change(ctx.g, &format!("Removed {name}"), &ch);
    Ok(())
}

fn move_copy(ctx: &Ctx<'_>, from: &str, to: &str, copy: bool, force: bool) -> Result<(), CliError> {
    let from_raw = from;
    let from = entry(from.trim_end_matches('/'))?;
    let to_folder = to.ends_with('/');
    let to = entry(to.trim_end_matches('/'))?;
    let verb = if copy { "copy" } else { "move" };
    if ctx.g.dry_run {
        ctx.g.say(format!(
            "would {verb} {from} to {to}, re-encrypted for {to}'s recipients"
        ));
        return Ok(());
    }
    if !force && interactive() && (ctx.store.contains(&to) && !to_folder) {
        yesno(&format!("overwrite {to}?"))?;
    }
    let crypto = ctx.crypto_read_lazy();
    let opts = mv_pass::store::MoveOptions {
        copy,
        // pass overwrites unless asked on a terminal (answered above).
        force: true,
        to_folder,
        from_folder: from_raw.ends_with('/'),
    };
    let ch = crypto.finish(ctx.store.move_or_copy_with(&from, &to, opts, &crypto))?;
    let done = if copy { "Copied" } else { "Renamed" };
    report_change(ctx.g, &format!("{done} {from} to {to}"), &ch);
    Ok(())
}

/// How `tree` draws on this locale: ASCII unless the character set is UTF-8 (pass runs tree,
/// which decides the same way from LC_ALL, LC_CTYPE, LANG).
fn unicode_locale() -> bool {
    let v = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_default()
        .to_ascii_lowercase();
    v.contains("utf-8") || v.contains("utf8")
}

/// Prints names as `pass ls` does (its `tree` output without colours), byte for byte.
fn print_tree(title: &str, names: &[EntryName], strip: Option<&str>) -> std::io::Result<()> {
    #[derive(Default)]
    struct Node(std::collections::BTreeMap<String, Node>);
    let mut root = Node::default();
    for n in names {
        let s = match strip {
            Some(p) => n
                .as_str()
                .strip_prefix(p)
                .map(|x| x.trim_start_matches('/')),
            None => Some(n.as_str()),
        };
        let Some(s) = s else { continue };
        let mut cur = &mut root;
        for part in s.split('/') {
            cur = cur.0.entry(part.to_string()).or_default();
        }
    }
    struct Glyphs {
        mid: &'static str,
        last: &'static str,
        bar: &'static str,
        gap: &'static str,
    }
    // tree(1), which pass uses, pads the bar with two no-break spaces on UTF-8.
    let glyphs = if unicode_locale() {
        Glyphs {
            mid: "├── ",
            last: "└── ",
            bar: "│\u{a0}\u{a0} ",
            gap: "    ",
        }
    } else {
        Glyphs {
            mid: "|-- ",
            last: "`-- ",
            bar: "|   ",
            gap: "    ",
        }
    };
    fn walk(node: &Node, prefix: &str, g: &Glyphs, out: &mut impl Write) -> std::io::Result<()> {
        let n = node.0.len();
        for (i, (name, child)) in node.0.iter().enumerate() {
            let last = i + 1 == n;
            writeln!(out, "{prefix}{}{name}", if last { g.last } else { g.mid })?;
            let deeper = format!("{prefix}{}", if last { g.gap } else { g.bar });
            walk(child, &deeper, g, out)?;
        }
        Ok(())
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{title}")?;
    walk(&root, "", &glyphs, &mut out)
}

fn list(ctx: &Ctx<'_>, sub: Option<&str>) -> Result<(), CliError> {
    let sub = sub.map(entry).transpose()?;
    let names = ctx.store.list(sub.as_ref()).map_err(store_err)?;
    if ctx.g.json {
        println!("{}", serde_json::to_string(&names)?);
        return Ok(());
    }
    let title = sub
        .as_ref()
        .map_or("Password Store".to_string(), |s| s.to_string());
    print_tree(&title, &names, sub.as_ref().map(|s| s.as_str()))?;
    Ok(())
}

fn find(ctx: &Ctx<'_>, terms: &[String]) -> Result<(), CliError> {
    let found = ctx.store.find_all(terms).map_err(store_err)?;
    if ctx.g.json {
        println!("{}", serde_json::to_string(&found.entries)?);
        return Ok(());
    }
    // Folders whose name matched are drawn too, empty or not, as tree draws them for pass.
    let mut names = found.entries;
    names.extend(found.folders);
    print_tree(&format!("Search Terms: {}", terms.join(",")), &names, None)?;
    Ok(())
}

/// `grep [GREPOPTIONS] search-string`: GNU grep's options on every decrypted entry, as pass.
/// The common options are matched in process ([`mv_pass::grep::plan`]); anything else runs
/// grep itself once per entry, the entry on its stdin (never on a command line).
fn grep(ctx: &Ctx<'_>, args: &[String]) -> Result<(), CliError> {
    use mv_pass::grep::Plan;
    use mv_pass::store::{GrepHit, GrepLine, GrepReport};
    let plan = mv_pass::grep::plan(args).map_err(|e| {
        CliError::usage_msg(format!("pass grep: {e}"))
            .with_hint("Usage: pass grep [GREPOPTIONS] search-string")
    })?;
    let crypto = ctx.crypto_decrypt()?;
    let (report, external) = match &plan {
        Plan::Native(m) => (
            ctx.store
                .grep_matcher(m, crypto.as_ref())
                .map_err(store_err)?,
            None,
        ),
        Plan::External(gargs) => {
            if !which("grep") {
                return Err(CliError::usage_msg(format!(
                    "pass grep: {}: these grep options need grep, which is not on PATH",
                    gargs.join(" ")
                ))
                .with_hint("the options -i -v -w -x -c -n -m -e -E -F -G work without grep"));
            }
            let failures = std::sync::Mutex::new(std::collections::BTreeSet::new());
            let (hits, errors, searched) = ctx
                .store
                .for_each_decrypted(None, crypto.as_ref(), |name, plain| {
                    match run_grep(gargs, plain.expose()) {
                        Ok(Some(out)) => Some(GrepHit {
                            name: name.clone(),
                            lines: mv_pass::grep::lines(&out)
                                .map(|l| GrepLine {
                                    line: None,
                                    text: l.to_string(),
                                })
                                .collect(),
                        }),
                        Ok(None) => None,
                        Err(why) => {
                            if let Ok(mut f) = failures.lock() {
                                f.insert(why);
                            }
                            None
                        }
                    }
                })
                .map_err(store_err)?;
            let failures = failures.into_inner().unwrap_or_default();
            (
                GrepReport {
                    hits,
                    errors,
                    searched,
                },
                Some(failures),
            )
        }
    };
    // grep refused its arguments (a bad pattern, an unknown option): once, as grep said it.
    if let Some(f) = external.as_ref().filter(|f| !f.is_empty()) {
        return Err(CliError::usage_msg(format!(
            "pass grep: {}",
            f.iter().cloned().collect::<Vec<_>>().join("; ")
        ))
        .with_hint("Usage: pass grep [GREPOPTIONS] search-string"));
    }
    let mut out = std::io::stdout().lock();
    if ctx.g.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        let count = matches!(&plan, Plan::Native(m) if m.selection.count);
        let numbers = matches!(&plan, Plan::Native(m) if m.selection.line_number);
        for hit in &report.hits {
            writeln!(out, "{}:", hit.name)?;
            // pass prints `$(grep …)` with echo: trailing empty lines vanish.
            let mut block = String::new();
            if count {
                block = hit.lines.len().to_string();
            } else {
                for l in &hit.lines {
                    if let (true, Some(n)) = (numbers, l.line) {
                        block.push_str(&format!("{n}:"));
                    }
                    block.push_str(&l.text);
                    block.push('\n');
                }
            }
            writeln!(out, "{}", block.trim_end_matches('\n'))?;
        }
    }
    for e in &report.errors {
        eprintln!("multiverse: warning: {}: {}", e.file.display(), e.error);
    }
    if !report.errors.is_empty() {
        return Err(CliError::failure_msg(format!(
            "{} of {} entries could not be read (listed above); the others were searched",
            report.errors.len(),
            report.searched
        )));
    }
    Ok(())
}

/// `grep --color=never ARGS` with `plain` on stdin: its output when it selected something,
/// `None` when not (exit 1), its message when it failed.
fn run_grep(args: &[String], plain: &[u8]) -> Result<Option<String>, String> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("grep")
        .arg("--color=never")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run grep: {e}"))?;
    let stdin = child.stdin.take();
    let out = std::thread::scope(|s| {
        s.spawn(move || {
            if let Some(mut i) = stdin {
                let _ = i.write_all(plain);
            }
        });
        child.wait_with_output()
    })
    .map_err(|e| format!("grep: {e}"))?;
    match out.status.code() {
        Some(0) => Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned())),
        Some(1) => Ok(None),
        _ => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}

fn git(ctx: &Ctx<'_>, args: &[String]) -> Result<(), CliError> {
    let dir = ctx.store.dir();
    if ctx.g.dry_run {
        ctx.g.say(format!(
            "would run git {} in {}",
            args.join(" "),
            dir.display()
        ));
        return Ok(());
    }
    let status = mv_pass::git::Git::command(dir).args(args).status()?;
    if !status.success() {
        return Err(CliError::failure_msg(format!("git failed ({status})")));
    }
    if args.first().map(String::as_str) == Some("init") {
        // Like pass: commit what is there, and teach git to diff entries through gpg.
        let g = mv_pass::git::Git::for_store(dir)
            .ok_or_else(|| CliError::failure_msg("git init did not create a repository"))?;
        let _lock = ctx.store.lock().map_err(store_err)?;
        g.commit(&[dir], "Add current contents of password store.")?;
        let attrs = dir.join(".gitattributes");
        // 0600 like everything the store writes (pass writes it under umask 077).
        mv_core::fsutil::write_secret(&attrs, b"*.gpg diff=gpg\n")?;
        g.commit(&[&attrs], "Configure git repository for gpg file diff.")?;
        mv_pass::git::Git::command(dir)
            .args(["config", "--local", "diff.gpg.binary", "true"])
            .status()?;
        mv_pass::git::Git::command(dir)
            .args([
                "config",
                "--local",
                "diff.gpg.textconv",
                "gpg -d --quiet --yes",
            ])
            .status()?;
    }
    Ok(())
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

const OTP_USAGE: &str = "Usage:
    pass otp [code] [--clip,-c] pass-name
        Generate an OTP code and optionally put it on the clipboard.
    pass otp insert [--force,-f] [--echo,-e] [[--secret, -s] [--issuer,-i issuer] [--account,-a account]] [pass-name]
        Prompt for and insert a new OTP key URI (or, with --secret, a bare secret); without
        pass-name, the URI's label names the entry (ISSUER/ACCOUNT).
    pass otp append [--force,-f] [--echo,-e] [[--secret, -s] [--issuer,-i issuer] [--account,-a account]] pass-name
        Append an OTP key URI to an existing entry (or replace its OTP line).
    pass otp uri [--clip,-c | --qrcode,-q] pass-name
        Display the key URI stored in pass-name.
    pass otp validate [uri]
        Test a URI (from stdin when not given) for validity.
";

fn otp(ctx: &Ctx<'_>, cmd: OtpCmd) -> Result<(), CliError> {
    match cmd {
        OtpCmd::Help => {
            print!("{OTP_USAGE}");
            Ok(())
        }
        OtpCmd::Version => {
            println!("pass-otp 1.2.0 (multiverse)");
            Ok(())
        }
        OtpCmd::Code { clip, name } => {
            let name = entry(name.trim_end_matches('/'))?;
            if !ctx.store.contains(&name) {
                return Err(CliError::usage_msg(format!("{name}: passfile not found.")));
            }
            let crypto = ctx.crypto_read()?;
            if ctx.g.dry_run {
                ctx.g.say(format!(
                    "would compute the code of {name} (HOTP: and advance its counter)"
                ));
                return Ok(());
            }
            let (code, uri) = ctx
                .store
                .otp_code(&name, now_unix(), crypto.as_ref())
                .map_err(store_err)?;
            if clip {
                return clipboard(ctx.g, code.as_bytes(), &format!("OTP code for {name}"));
            }
            if ctx.g.json {
                let v = serde_json::json!({
                    "name": name.as_str(),
                    "code": code,
                    "kind": uri.kind,
                    "remaining": uri.remaining(now_unix()),
                });
                println!("{v}");
            } else {
                println!("{code}");
            }
            Ok(())
        }
        OtpCmd::Insert(o) => otp_insert(ctx, o),
        OtpCmd::Append(o) => otp_append(ctx, o),
        OtpCmd::Uri { output, name } => {
            let name = entry(name.trim_end_matches('/'))?;
            if !ctx.store.contains(&name) {
                return Err(CliError::usage_msg("Passfile not found"));
            }
            let crypto = ctx.crypto_read()?;
            let plain = ctx.store.read(&name, crypto.as_ref()).map_err(store_err)?;
            let text = SecretString::new(String::from_utf8_lossy(plain.expose()).into_owned());
            let uri = OtpUri::from_entry(text.expose()).usage()?;
            match output {
                Output::Clip(_) => {
                    return clipboard(
                        ctx.g,
                        uri.uri.expose().as_bytes(),
                        &format!("OTP key URI for {name}"),
                    )
                }
                Output::Qr(_) => return qrcode(uri.uri.expose()),
                Output::Print => {}
            }
            if ctx.g.json {
                let v = serde_json::json!({
                    "name": name.as_str(), "uri": uri.uri.expose(), "kind": uri.kind,
                    "issuer": uri.issuer, "account": uri.account, "digits": uri.digits,
                    "algorithm": uri.algorithm,
                });
                println!("{v}");
            } else {
                println!("{}", uri.uri.expose());
            }
            Ok(())
        }
        OtpCmd::Validate { uri } => {
            let uri = match uri {
                Some(u) => SecretString::new(u),
                None => read_line_secret("Enter otpauth:// URI: ", false)?,
            };
            let parsed = OtpUri::parse(uri.expose()).usage()?;
            if ctx.g.json {
                let v = serde_json::json!({"valid": true, "kind": parsed.kind, "digits": parsed.digits, "algorithm": parsed.algorithm, "issuer": parsed.issuer, "account": parsed.account});
                println!("{v}");
            } else {
                ctx.g.say("valid otpauth URI");
            }
            Ok(())
        }
    }
}

/// Reads the new OTP key of `otp insert|append`: a URI, or with `--secret` a bare base32
/// secret made into pass-otp's TOTP URI with `--issuer`/`--account`.
fn read_otp_key(o: &OtpNew, prompt: &str) -> Result<OtpUri, CliError> {
    if o.secret {
        if o.issuer.is_none() && o.account.is_none() {
            return Err(CliError::usage_msg(
                "Missing one of either '--issuer' or '--account'",
            ));
        }
        let secret = read_line_secret(&format!("Enter secret for {prompt}: "), o.echo)?;
        return mv_pass::otp::uri_from_secret(
            secret.expose(),
            o.issuer.as_deref(),
            o.account.as_deref(),
        )
        .usage();
    }
    let uri = read_line_secret(&format!("Enter otpauth:// URI for {prompt}: "), o.echo)?;
    OtpUri::parse(uri.expose())
        .usage()
        .hint("an otpauth://totp/ISSUER:ACCOUNT?secret=BASE32… URI (or use --secret)")
}

fn otp_insert(ctx: &Ctx<'_>, o: OtpNew) -> Result<(), CliError> {
    let given = o.name.as_deref().map(new_entry).transpose()?;
    let prompt = given
        .as_ref()
        .map_or("this token".to_string(), ToString::to_string);
    if let Some(n) = &given {
        if !o.force && ctx.store.contains(n) {
            yesno(&format!("An entry already exists for {n}. Overwrite it?"))?;
        }
    }
    let uri = read_otp_key(&o, &prompt)?;
    let name = match given {
        Some(n) => n,
        None => {
            let n = entry(&uri.label_name())
                .hint("the URI's label does not make an entry name: give pass-name")?;
            yesno(&format!("Insert into {n}?"))?;
            if !o.force && ctx.store.contains(&n) {
                yesno(&format!("An entry already exists for {n}. Overwrite it?"))?;
            }
            n
        }
    };
    if ctx.g.dry_run {
        ctx.g.say(format!("would write the OTP key of {name}"));
        return Ok(());
    }
    let crypto = ctx.crypto_write()?;
    let content = SecretString::new(format!("{}\n", uri.uri.expose()));
    let msg = format!("Add OTP secret for {name} to store.");
    let what = format!("Added OTP key {name}");
    write_entry(ctx, &name, &content, &msg, crypto.as_ref(), &what)
}

fn otp_append(ctx: &Ctx<'_>, o: OtpNew) -> Result<(), CliError> {
    let name = new_entry(o.name.as_deref().unwrap_or(""))?;
    if !ctx.store.contains(&name) {
        return Err(CliError::usage_msg("Passfile not found"));
    }
    let crypto = ctx.crypto_decrypt()?;
    let plain = ctx.store.read(&name, crypto.as_ref()).map_err(store_err)?;
    let old = SecretString::new(String::from_utf8_lossy(plain.expose()).into_owned());
    let has_otp = old.expose().lines().any(|l| l.starts_with("otpauth://"));
    if has_otp && !o.force {
        yesno(&format!(
            "An OTP secret already exists for {name}. Overwrite it?"
        ))?;
    }
    let uri = read_otp_key(&o, name.as_str())?;
    let (content, msg) = if has_otp {
        (
            mv_pass::otp::replace_otp_line(old.expose(), uri.uri.expose()),
            format!("Replace OTP secret for {name}."),
        )
    } else {
        let mut c = SecretString::new(old.expose().trim_end_matches('\n').to_string());
        c.expose_mut().push('\n');
        c.expose_mut().push_str(uri.uri.expose());
        c.expose_mut().push('\n');
        (c, format!("Append OTP secret for {name}."))
    };
    if ctx.g.dry_run {
        ctx.g.say(format!("would add the OTP key to {name}"));
        return Ok(());
    }
    let what = format!("Added OTP key to {name}");
    write_entry(ctx, &name, &content, &msg, crypto.as_ref(), &what)
}

/// One line from stdin, or a prompt on a terminal (hidden and asked twice unless `echo`).
fn read_line_secret(prompt: &str, echo: bool) -> Result<SecretString, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        if echo {
            eprint!("{prompt}");
            let _ = std::io::stderr().flush();
        } else {
            let a = SecretString::new(rpassword::prompt_password(prompt)?);
            let b = SecretString::new(rpassword::prompt_password(format!("Retype: {prompt}"))?);
            if a != b {
                return Err(CliError::usage_msg(
                    "Error: the entered values do not match.",
                ));
            }
            return Ok(a);
        }
    }
    let mut line = SecretString::new(String::new());
    stdin.lock().read_line(line.expose_mut())?;
    let trimmed = line.expose().trim().to_string();
    Ok(SecretString::new(trimmed))
}

fn key(ctx: &Ctx<'_>, k: KeyCmd) -> Result<(), CliError> {
    match k {
        KeyCmd::Import {
            unsealed,
            key_passphrase_file,
            kdf_memory,
            kdf_iterations,
        } => {
            let armored = secret_input::stdin_secret()?;
            let key_pw = match key_passphrase_file {
                Some(f) => Some(secret_input::passphrase(Some(&f), "Key passphrase", false)?),
                None => None,
            };
            let key = mv_pass::keys::parse_secret_key(
                armored.expose(),
                key_pw.as_ref().map(|p| p.expose().as_str()),
            )
            .usage()
            .hint("give an armored secret key on stdin (gpg --export-secret-keys --armor ID), and --key-passphrase-file if gpg protects it")?;
            let fpr = mv_pass::keys::secret_fingerprint(&key);
            if ctx.keys.has_secret(&fpr) {
                ctx.g
                    .say(format!("key {fpr} is already imported: unchanged"));
                return Ok(());
            }
            if ctx.g.dry_run {
                let how = if unsealed {
                    "unsealed (0600)"
                } else {
                    "sealed under the identity passphrase"
                };
                ctx.g.say(format!(
                    "would import secret key {fpr} into {}, {how}",
                    ctx.keys.path().display()
                ));
                return Ok(());
            }
            if unsealed {
                ctx.keys.put_clear(&key)?;
            } else {
                let pass = ctx.passphrase()?;
                // Same passphrase as the identity: check it by opening the identity.
                let identity_params = if IdentityStore::exists(&ctx.g.root) {
                    ctx.check_identity_passphrase(&pass)?;
                    IdentityStore::load(&ctx.g.root)?.params()
                } else {
                    None
                };
                let base = identity_params.unwrap_or(KdfParams::DEFAULT);
                let params = KdfParams::new(
                    kdf_memory.unwrap_or(base.memory_kib()),
                    kdf_iterations.unwrap_or(base.iterations()),
                    base.parallelism(),
                )
                .usage()?;
                secret_input::warn_if_weak(&params);
                let plain = mv_pass::keys::armor_secret(&key)?;
                let sealed = mv_seal::seal(plain.expose(), pass.expose().as_bytes(), params);
                ctx.keys.put_sealed(&key, &sealed)?;
            }
            ctx.g.say(format!("imported secret key {fpr}"));
            Ok(())
        }
        KeyCmd::Add => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes)?;
            let cert = mv_pass::keys::parse_public_key(&bytes).usage()?;
            let fpr = mv_pass::keys::fingerprint_hex(&cert);
            if ctx.g.dry_run {
                ctx.g.say(format!("would add public key {fpr}"));
                return Ok(());
            }
            if ctx.keys.put_public(&cert)? {
                ctx.g.say(format!("added public key {fpr}"));
            } else {
                ctx.g.say(format!("public key {fpr}: unchanged"));
            }
            Ok(())
        }
        KeyCmd::Ls => {
            let ring = ctx.keys.load(None)?;
            let rows: Vec<serde_json::Value> = ring
                .list()
                .into_iter()
                .map(|(fpr, uids, _)| {
                    let secret = if ctx.keys.clear_path(&fpr).exists() {
                        "clear"
                    } else if ctx.keys.sealed_path(&fpr).exists() {
                        "sealed"
                    } else {
                        "none"
                    };
                    serde_json::json!({"fingerprint": fpr, "user_ids": uids, "secret": secret})
                })
                .collect();
            if ctx.g.json {
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for r in rows {
                    println!(
                        "{}  secret: {:<6}  {}",
                        r["fingerprint"].as_str().unwrap_or(""),
                        r["secret"].as_str().unwrap_or(""),
                        r["user_ids"]
                            .as_array()
                            .map(|a| a
                                .iter()
                                .filter_map(|v| v.as_str())
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
    }
}

/// Machine names: the folders of `<root>/machines/` that are valid FQDNs.
fn machine_names(root: &Path) -> Result<Vec<MachineName>, CliError> {
    let dir = root.join("machines");
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::anyhow!("cannot list {}: {e}", dir.display()).into()),
    };
    let mut names: Vec<MachineName> = rd
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|s| MachineName::parse(s).ok())
        })
        .collect();
    names.sort();
    Ok(names)
}

fn machines(ctx: &Ctx<'_>) -> Result<(), CliError> {
    let names = machine_names(&ctx.g.root)?;
    if names.is_empty() {
        return Err(CliError::usage_msg(format!(
            "no machines under {}",
            ctx.g.root.join("machines").display()
        ))
        .with_hint("run `multiverse init` and `multiverse render` first"));
    }
    if ctx.g.dry_run {
        for m in &names {
            ctx.g.say(format!("would write machines/{m}/root"));
        }
        return Ok(());
    }
    let root = ctx.identity_root()?.ok_or_else(|| {
        CliError::usage_msg("the tree has no identity to derive machine passwords from")
            .with_hint("run `multiverse identity new` first")
    })?;
    let crypto = ctx.crypto_read()?;
    let mut written = 0;
    for m in &names {
        let pw = root.password(&IdentityName::Machine(m.clone()));
        let name = entry(&format!("machines/{m}/root"))?;
        let content = SecretString::new(format!("{}\nuser: root\nmachine: {m}\n", pw.expose()));
        let msg = format!("Add given password for {name} to store.");
        match ctx
            .store
            .write_if_changed(&name, content.expose().as_bytes(), &msg, crypto.as_ref())
            .map_err(store_err)?
        {
            Some(_) => {
                written += 1;
                ctx.g.say(format!("wrote {name}"));
            }
            None => ctx.g.say(format!("{name}: unchanged")),
        }
    }
    ctx.g.say(format!(
        "{written} of {} machine passwords written",
        names.len()
    ));
    Ok(())
}

fn fsck(ctx: &Ctx<'_>, decrypt: bool) -> Result<(), CliError> {
    let crypto = if decrypt {
        ctx.crypto_read()?
    } else {
        ctx.crypto_write()?
    };
    let issues = check::fsck(&ctx.store, crypto.as_ref(), decrypt).map_err(store_err)?;
    if ctx.g.json {
        println!("{}", serde_json::to_string(&issues)?);
    } else {
        for i in &issues {
            println!("{}: {}", i.file.display(), i.kind);
        }
        if issues.is_empty() {
            ctx.g.say("store is healthy");
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(CliError::failure_msg(format!(
            "{} problem(s) found",
            issues.len()
        )))
    }
}

fn audit(ctx: &Ctx<'_>, max_age: u64) -> Result<(), CliError> {
    let crypto = ctx.crypto_read()?;
    let now = i64::try_from(now_unix()).unwrap_or(i64::MAX);
    let r = check::audit(&ctx.store, crypto.as_ref(), now, max_age).map_err(store_err)?;
    if ctx.g.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    for w in &r.weak {
        println!("weak    {}: {}", w.name, w.reasons.join("; "));
    }
    for group in &r.reused {
        let names: Vec<String> = group.iter().map(ToString::to_string).collect();
        println!("reused  {}", names.join(", "));
    }
    for o in &r.old {
        println!("old     {}: unchanged for {} days", o.name, o.days);
    }
    for e in &r.errors {
        eprintln!("multiverse: warning: {}: {}", e.file.display(), e.error);
    }
    ctx.g.say(format!(
        "{} entries audited: {} weak, {} reused group(s), {} old, {} unreadable",
        r.audited,
        r.weak.len(),
        r.reused.len(),
        r.old.len(),
        r.errors.len()
    ));
    Ok(())
}
