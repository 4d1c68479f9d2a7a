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
use std::io::{IsTerminal, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// `multiverse pass`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Let gpg (and gpg-agent, smartcards) do the OpenPGP work instead of the built-in keyring
    #[arg(long, global = true)]
    pub gpg: bool,
    /// Read the identity passphrase from this file (else env MULTIVERSE_PASSPHRASE, else a prompt)
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write .gpg-id (the recipients) and re-encrypt what it covers; no KEYID: the identity's @user key
    Init {
        /// Only for this subfolder
        #[arg(short = 'p', long = "path", value_name = "SUBFOLDER")]
        path: Option<String>,
        /// Key ids, fingerprints or e-mail addresses
        keyids: Vec<String>,
    },
    /// Add an entry from stdin or a prompt
    Insert {
        /// Read every line up to end of input (else one line)
        #[arg(short, long)]
        multiline: bool,
        /// Overwrite an existing entry
        #[arg(short, long)]
        force: bool,
        /// The entry
        #[arg(allow_hyphen_values = true)]
        name: String,
    },
    /// Print an entry (or one line of it, or copy it to the clipboard)
    Show {
        /// Only line N (1 = the password)
        #[arg(long, value_name = "N")]
        line: Option<usize>,
        /// Copy to the clipboard instead of printing (cleared after PASSWORD_STORE_CLIP_TIME s, 45)
        #[arg(short, long)]
        clip: bool,
        /// The entry
        #[arg(allow_hyphen_values = true)]
        name: String,
    },
    /// Internal: the detached job of --clip that clears the clipboard later (input on stdin)
    #[command(name = "__clip-restore", hide = true)]
    ClipRestore {
        /// Seconds to wait
        #[arg(long)]
        secs: u64,
    },
    /// Make a random password and store it
    Generate {
        /// Letters and digits only
        #[arg(short, long)]
        no_symbols: bool,
        /// Replace only the first line of an existing entry
        #[arg(short, long, conflicts_with = "force")]
        in_place: bool,
        /// Overwrite an existing entry
        #[arg(short, long)]
        force: bool,
        /// Copy to the clipboard instead of printing
        #[arg(short, long)]
        clip: bool,
        /// The entry
        #[arg(allow_hyphen_values = true)]
        name: String,
        /// Length (default 25, or PASSWORD_STORE_GENERATED_LENGTH)
        length: Option<usize>,
    },
    /// Edit an entry with $EDITOR on a private temporary file
    Edit {
        /// The entry
        #[arg(allow_hyphen_values = true)]
        name: String,
    },
    /// Remove an entry (or a folder with -r)
    Rm {
        /// Remove a folder and everything in it
        #[arg(short, long)]
        recursive: bool,
        /// Accepted for pass compatibility (we never prompt)
        #[arg(short, long)]
        force: bool,
        /// The entry or folder
        #[arg(allow_hyphen_values = true)]
        name: String,
    },
    /// Rename an entry or folder (re-encrypted for the destination's recipients)
    Mv {
        /// Overwrite existing entries
        #[arg(short, long)]
        force: bool,
        /// From
        #[arg(allow_hyphen_values = true)]
        from: String,
        /// To
        #[arg(allow_hyphen_values = true)]
        to: String,
    },
    /// Copy an entry or folder (re-encrypted for the destination's recipients)
    Cp {
        /// Overwrite existing entries
        #[arg(short, long)]
        force: bool,
        /// From
        #[arg(allow_hyphen_values = true)]
        from: String,
        /// To
        #[arg(allow_hyphen_values = true)]
        to: String,
    },
    /// List entries as a tree (--json: a list of names)
    Ls {
        /// Only this subfolder
        subfolder: Option<String>,
    },
    /// List entries whose name contains one of the terms
    Find {
        /// Terms (case-insensitive)
        #[arg(required = true)]
        terms: Vec<String>,
    },
    /// Search decrypted contents with a regular expression (in parallel)
    Grep {
        /// Ignore case
        #[arg(short, long)]
        ignore_case: bool,
        /// Regular expression (Rust regex syntax)
        pattern: String,
    },
    /// Run git in the store (`git init` also commits the current contents, like pass)
    Git {
        /// Arguments for git
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// One-time passwords (pass-otp compatible)
    Otp(OtpArgs),
    /// Keys of the built-in keyring
    #[command(subcommand)]
    Key(KeyCommand),
    /// Store every machine's derived password as machines/<fqdn>/root
    Machines,
    /// Check every entry: readable, private (0600), encrypted to its current recipients
    Fsck {
        /// Also try to decrypt every entry
        #[arg(long)]
        decrypt: bool,
    },
    /// Report weak, reused and old passwords
    Audit {
        /// An entry unchanged for more days than this is old
        #[arg(long, default_value_t = 365, value_name = "DAYS")]
        max_age: u64,
    },
}

/// `pass otp [NAME]` or `pass otp insert|uri|validate|code`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct OtpArgs {
    /// The entry (same as `otp code NAME`)
    #[arg(allow_hyphen_values = true)]
    pub name: Option<String>,
    /// Copy the code to the clipboard
    #[arg(short, long)]
    pub clip: bool,
    #[command(subcommand)]
    pub command: Option<OtpCommand>,
}

/// OTP subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum OtpCommand {
    /// Print the current code (HOTP: advance the counter and store it)
    Code {
        /// Copy to the clipboard
        #[arg(short, long)]
        clip: bool,
        /// The entry
        #[arg(allow_hyphen_values = true)]
        name: String,
    },
    /// Store an otpauth:// URI read from stdin (or a prompt) as a new entry
    Insert {
        /// Overwrite an existing entry
        #[arg(short, long)]
        force: bool,
        /// The entry
        #[arg(allow_hyphen_values = true)]
        name: String,
    },
    /// Print the otpauth:// URI of an entry
    Uri {
        /// The entry
        #[arg(allow_hyphen_values = true)]
        name: String,
    },
    /// Check an otpauth:// URI read from stdin (never argv: it holds the secret)
    Validate,
}

/// Key subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Import an armored secret key from stdin (e.g. `gpg --export-secret-keys --armor ID`)
    Import {
        /// Keep it unencrypted (mode 0600), like a gpg key with an empty passphrase
        #[arg(long)]
        unsealed: bool,
        /// File holding the key's own passphrase, if gpg protected it
        #[arg(long, value_name = "FILE")]
        key_passphrase_file: Option<PathBuf>,
        /// Argon2id memory (KiB) of the seal; default: the identity's, else 256 MiB
        #[arg(long, value_name = "KIB")]
        kdf_memory: Option<u32>,
        /// Argon2id passes of the seal
        #[arg(long, value_name = "N")]
        kdf_iterations: Option<u32>,
    },
    /// Add a recipient's public key (armored, stdin)
    Add,
    /// List keys (--json)
    Ls,
}

/// Everything a subcommand needs to reach the store and the keys.
struct Ctx<'a> {
    g: &'a Global,
    store: Store,
    keys: KeyDir,
    gpg: bool,
    passphrase_file: Option<PathBuf>,
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
    fn passphrase(&self) -> Result<SecretString, CliError> {
        secret_input::passphrase(
            self.passphrase_file.as_deref(),
            "Identity passphrase",
            false,
        )
    }

    /// Unseals the identity root, if the tree has one.
    fn identity_root(&self, pass: &SecretString) -> Result<Option<mv_identity::Root>, CliError> {
        if !IdentityStore::exists(&self.g.root) {
            return Ok(None);
        }
        let store = IdentityStore::load(&self.g.root)?;
        match store.unseal(pass.expose().as_bytes()) {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.is_authentication() => Err(CliError::from(e))
                .usage()
                .hint("wrong identity passphrase"),
            Err(e) => Err(e.into()),
        }
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
        let ring = self.keys.load(None)?;
        if ring.list().is_empty() && IdentityStore::exists(&self.g.root) {
            return self.crypto_read();
        }
        Ok(Box::new(ring))
    }

    /// Keys for reading: clear secret keys, plus (with the passphrase) the sealed ones. The
    /// identity's @user key is added whenever the passphrase is asked anyway, or when there is
    /// no other secret key. No sealed key and a clear one: no passphrase is asked.
    fn crypto_read(&self) -> Result<Box<dyn Crypto>, CliError> {
        if self.gpg {
            return Ok(Box::new(Gpg::new()));
        }
        let ring = self.keys.load(None)?;
        let has_sealed = self.keys.has_sealed()?;
        let has_identity = IdentityStore::exists(&self.g.root);
        if !has_sealed && (ring.has_secret() || !has_identity) {
            if ring.has_secret() {
                return Ok(Box::new(ring));
            }
            return Err(CliError::usage_msg(format!(
                "no secret key: {} holds none and the tree {} has no identity",
                self.keys.path().display(),
                self.g.root.display()
            ))
            .with_hint("import one with `multiverse pass key import < key.asc`, create an identity, or use --gpg"));
        }
        let pass = self.passphrase()?;
        let unseal = |b: &[u8]| -> Result<SecretBytes, Box<dyn std::error::Error + Send + Sync>> {
            mv_seal::open(b, pass.expose().as_bytes()).map_err(|e| Box::new(e) as _)
        };
        let mut ring: Keyring = self
            .keys
            .load(Some(&unseal))
            .usage()
            .hint("wrong passphrase, or a damaged key file")?;
        if let Some(root) = self.identity_root(&pass)? {
            ring.add_secret(self.identity_key(&root)?);
        }
        Ok(Box::new(ring))
    }
}

/// Runs `multiverse pass …`.
pub fn run(g: &Global, a: Args) -> Result<(), CliError> {
    let ctx = Ctx {
        g,
        store: Store::new(store_dir(g)),
        keys: KeyDir::new(keys_dir(g)),
        gpg: a.gpg,
        passphrase_file: a.passphrase_file,
    };
    match a.command {
        Command::Init { path, keyids } => init(&ctx, path, keyids),
        Command::Insert {
            multiline,
            force,
            name,
        } => insert(&ctx, &name, multiline, force),
        Command::Show { line, clip, name } => show(&ctx, &name, line, clip),
        Command::ClipRestore { secs } => clip_restore(secs),
        Command::Generate {
            no_symbols,
            in_place,
            force,
            clip,
            name,
            length,
        } => generate(&ctx, &name, length, !no_symbols, in_place, force, clip),
        Command::Edit { name } => edit(&ctx, &name),
        Command::Rm {
            recursive, name, ..
        } => remove(&ctx, &name, recursive),
        Command::Mv { force, from, to } => move_copy(&ctx, &from, &to, false, force),
        Command::Cp { force, from, to } => move_copy(&ctx, &from, &to, true, force),
        Command::Ls { subfolder } => list(&ctx, subfolder.as_deref()),
        Command::Find { terms } => find(&ctx, &terms),
        Command::Grep {
            ignore_case,
            pattern,
        } => grep(&ctx, &pattern, ignore_case),
        Command::Git { args } => git(&ctx, &args),
        Command::Otp(o) => otp(&ctx, o),
        Command::Key(k) => key(&ctx, k),
        Command::Machines => machines(&ctx),
        Command::Fsck { decrypt } => fsck(&ctx, decrypt),
        Command::Audit { max_age } => audit(&ctx, max_age),
    }
}

fn report_change(g: &Global, what: &str, ch: &Change) {
    let git = if ch.committed { " (committed)" } else { "" };
    g.say(format!("{what}{git}"));
}

fn init(ctx: &Ctx<'_>, path: Option<String>, mut keyids: Vec<String>) -> Result<(), CliError> {
    let sub = path.as_deref().map(entry).transpose()?;
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
        let pass = ctx.passphrase()?;
        let root = ctx
            .identity_root(&pass)?
            .ok_or_else(|| CliError::failure_msg("the identity disappeared while reading it"))?;
        let key = ctx.identity_key(&root)?;
        keyids.push(mv_pass::keys::secret_fingerprint(&key));
    }
    let where_ = sub.as_ref().map_or(String::new(), |s| format!(" ({s})"));
    if ctx.g.dry_run {
        ctx.g.say(format!(
            "would set the recipients{where_} to {} and re-encrypt what it covers",
            keyids.join(", ")
        ));
        return Ok(());
    }
    let crypto = ctx.crypto_read_if_needed(sub.as_ref(), &keyids)?;
    let ch = ctx
        .store
        .init(sub.as_ref(), &keyids, crypto.as_ref())
        .map_err(store_err)?;
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

impl Ctx<'_> {
    /// `init` needs to decrypt only when there are entries to re-encrypt.
    fn crypto_read_if_needed(
        &self,
        sub: Option<&EntryName>,
        _ids: &[String],
    ) -> Result<Box<dyn Crypto>, CliError> {
        let has_entries = self.store.list(sub).map(|l| !l.is_empty()).unwrap_or(false);
        if has_entries {
            self.crypto_read()
        } else {
            self.crypto_write()
        }
    }
}

/// Reads an entry's contents from stdin (or a prompt on a terminal).
fn read_new_secret(name: &EntryName, multiline: bool) -> Result<SecretString, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() && !multiline {
        let a = SecretString::new(rpassword::prompt_password(format!(
            "Enter password for {name}: "
        ))?);
        let b = SecretString::new(rpassword::prompt_password(format!(
            "Retype password for {name}: "
        ))?);
        if a != b {
            return Err(CliError::usage_msg("the entered passwords do not match"));
        }
        return Ok(SecretString::new(format!("{}\n", a.expose())));
    }
    if stdin.is_terminal() {
        eprintln!("Enter contents of {name} and press Ctrl+D when finished:");
    }
    let mut raw = SecretBytes::new(Vec::new());
    stdin
        .lock()
        .read_to_end(raw.expose_mut())
        .hint("could not read the entry from stdin")?;
    let text = String::from_utf8(raw.expose().clone())
        .map_err(|_| CliError::usage_msg("the entry is not UTF-8 text"))?;
    let mut text = SecretString::new(text);
    if !multiline {
        // Like pass: one line only.
        let first = text.expose().lines().next().unwrap_or("").to_string();
        text = SecretString::new(format!("{first}\n"));
    } else if !text.expose().ends_with('\n') && !text.expose().is_empty() {
        text.expose_mut().push('\n');
    }
    Ok(text)
}

fn insert(ctx: &Ctx<'_>, name: &str, multiline: bool, force: bool) -> Result<(), CliError> {
    let name = entry(name)?;
    if !force && ctx.store.contains(&name) {
        return Err(
            CliError::usage_msg(format!("`{name}` already exists in the password store"))
                .with_hint("use --force to overwrite"),
        );
    }
    let content = read_new_secret(&name, multiline)?;
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

fn show(ctx: &Ctx<'_>, name: &str, line: Option<usize>, clip: bool) -> Result<(), CliError> {
    let name = entry(name)?;
    if !ctx.store.contains(&name) {
        if ctx.store.dir().join(name.as_str()).is_dir() {
            return list(ctx, Some(name.as_str()));
        }
        return Err(store_err(StoreError::NotFound(name.to_string())));
    }
    let crypto = ctx.crypto_read()?;
    let plain = ctx.store.read(&name, crypto.as_ref()).map_err(store_err)?;
    let text = SecretString::new(String::from_utf8_lossy(plain.expose()).into_owned());
    let selected = match line {
        Some(0) => return Err(CliError::usage_msg("--line counts from 1")),
        Some(n) => Some(
            text.expose()
                .lines()
                .nth(n - 1)
                .ok_or_else(|| CliError::usage_msg(format!("there is no line {n} in {name}")))?
                .to_string(),
        ),
        None => None,
    };
    if clip {
        let first = text.expose().lines().next().unwrap_or("").to_string();
        let what = SecretString::new(selected.unwrap_or(first));
        return clipboard(ctx.g, what.expose(), &name.to_string());
    }
    let mut out = std::io::stdout().lock();
    if ctx.g.json {
        let lines: Vec<&str> = text.expose().lines().collect();
        let v = serde_json::json!({
            "name": name.as_str(),
            "password": lines.first().copied().unwrap_or(""),
            "lines": lines,
            "selected": selected,
        });
        writeln!(out, "{v}")?;
    } else if let Some(sel) = selected {
        writeln!(out, "{sel}")?;
    } else {
        out.write_all(plain.expose())?;
    }
    Ok(())
}

/// The clipboard programs of this session, chosen like pass 1.7: Wayland first, then X.
struct ClipTools {
    copy: Vec<&'static str>,
    paste: Vec<&'static str>,
    /// The display's name (`WAYLAND_DISPLAY` or `DISPLAY`): one clearing job per display.
    display: String,
}

fn clip_tools() -> Result<ClipTools, CliError> {
    let wayland = std::env::var("WAYLAND_DISPLAY").unwrap_or_default();
    let x11 = std::env::var("DISPLAY").unwrap_or_default();
    if !wayland.is_empty() && which("wl-copy") {
        Ok(ClipTools {
            copy: vec!["wl-copy"],
            paste: vec!["wl-paste", "-n"],
            display: wayland,
        })
    } else if !x11.is_empty() && which("xclip") {
        Ok(ClipTools {
            copy: vec!["xclip", "-selection", "clipboard"],
            paste: vec!["xclip", "-o", "-selection", "clipboard"],
            display: x11,
        })
    } else if !x11.is_empty() && which("xsel") {
        Ok(ClipTools {
            copy: vec!["xsel", "--clipboard", "--input"],
            paste: vec!["xsel", "--clipboard", "--output"],
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
        let mut child = std::process::Command::new(self.copy[0])
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
        let out = std::process::Command::new(self.paste[0])
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
fn clipboard(g: &Global, secret: &str, what: &str) -> Result<(), CliError> {
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
        .copy(secret.as_bytes())
        .map_err(|e| CliError::from(e).with_hint("could not copy to the clipboard"))?;
    // Frame: secret length (u64 LE), secret, 1 if there was a previous content, that content.
    let mut frame = SecretBytes::new(Vec::with_capacity(secret.len() + 64));
    let buf = frame.expose_mut();
    buf.extend_from_slice(&(secret.len() as u64).to_le_bytes());
    buf.extend_from_slice(secret.as_bytes());
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
    length: Option<usize>,
    symbols: bool,
    in_place: bool,
    force: bool,
    clip: bool,
) -> Result<(), CliError> {
    let name = entry(name)?;
    let len = length
        .or_else(|| {
            std::env::var("PASSWORD_STORE_GENERATED_LENGTH")
                .ok()
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or(mv_pass::generate::DEFAULT_LENGTH);
    if len == 0 {
        return Err(CliError::usage_msg("pass-length must be greater than zero"));
    }
    if !force && !in_place && ctx.store.contains(&name) {
        return Err(
            CliError::usage_msg(format!("`{name}` already exists in the password store"))
                .with_hint(
                    "use --force to replace it, or --in-place to replace only its first line",
                ),
        );
    }
    if ctx.g.dry_run {
        ctx.g.say(format!(
            "would write a new {len}-character password to {}",
            name.file_in(ctx.store.dir()).display()
        ));
        return Ok(());
    }
    let crypto = if in_place {
        ctx.crypto_read()?
    } else {
        ctx.crypto_write()?
    };
    let (pw, ch) = ctx
        .store
        .generate(&name, len, symbols, in_place, force, crypto.as_ref())
        .map_err(store_err)?;
    if clip {
        return clipboard(ctx.g, pw.expose(), &name.to_string());
    }
    if ctx.g.json {
        let v = serde_json::json!({"name": name.as_str(), "password": pw.expose(), "committed": ch.committed});
        println!("{v}");
    } else {
        println!("The generated password for {name} is:\n{}", pw.expose());
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
        mv_core::fsutil::write_secret(&file, old.expose())?;
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
        let new = SecretBytes::new(
            std::fs::read(&file)
                .map_err(|e| anyhow::anyhow!("the edited file {} is gone: {e}", file.display()))?,
        );
        Ok((new.expose() != old.expose()).then_some(new))
    })();
    // Overwrite before removing, then remove the folder, whatever happened.
    if let Ok(meta) = std::fs::metadata(&file) {
        let zeros = vec![0u8; usize::try_from(meta.len()).unwrap_or(0)];
        let _ = std::fs::write(&file, zeros);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let Some(new) = result? else {
        ctx.g.say(format!("{name}: unchanged"));
        return Ok(());
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

fn remove(ctx: &Ctx<'_>, name: &str, recursive: bool) -> Result<(), CliError> {
    let name = entry(name)?;
    if ctx.g.dry_run {
        let what = if ctx.store.contains(&name) {
            name.file_in(ctx.store.dir())
        } else {
            name.dir_in(ctx.store.dir())
        };
        ctx.g.say(format!("would remove {}", what.display()));
        return Ok(());
    }
    let ch = ctx.store.remove(&name, recursive).map_err(|e| match e {
        StoreError::Fs(f) if f.source.kind() == std::io::ErrorKind::IsADirectory => {
            CliError::usage_msg(format!("`{name}` is a folder")).with_hint("use --recursive (-r)")
        }
        other => store_err(other),
    })?;
    report_change(ctx.g, &format!("Removed {name}"), &ch);
    Ok(())
}

fn move_copy(ctx: &Ctx<'_>, from: &str, to: &str, copy: bool, force: bool) -> Result<(), CliError> {
    let from = entry(from)?;
    let to = entry(to)?;
    let verb = if copy { "copy" } else { "move" };
    if ctx.g.dry_run {
        ctx.g.say(format!(
            "would {verb} {from} to {to}, re-encrypted for {to}'s recipients"
        ));
        return Ok(());
    }
    let crypto = ctx.crypto_read()?;
    let ch = ctx
        .store
        .move_or_copy(&from, &to, copy, force, crypto.as_ref())
        .map_err(store_err)?;
    let done = if copy { "Copied" } else { "Renamed" };
    report_change(ctx.g, &format!("{done} {from} to {to}"), &ch);
    Ok(())
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
    fn walk(node: &Node, prefix: &str, out: &mut impl Write) -> std::io::Result<()> {
        let n = node.0.len();
        for (i, (name, child)) in node.0.iter().enumerate() {
            let last = i + 1 == n;
            writeln!(out, "{prefix}{}{name}", if last { "└── " } else { "├── " })?;
            // tree(1), which pass uses, pads the bar with two no-break spaces.
            let deeper = format!("{prefix}{}", if last { "    " } else { "│\u{a0}\u{a0} " });
            walk(child, &deeper, out)?;
        }
        Ok(())
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{title}")?;
    walk(&root, "", &mut out)
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
    let names = ctx.store.find(terms).map_err(store_err)?;
    if ctx.g.json {
        println!("{}", serde_json::to_string(&names)?);
        return Ok(());
    }
    print_tree(&format!("Search Terms: {}", terms.join(" ")), &names, None)?;
    Ok(())
}

fn grep(ctx: &Ctx<'_>, pattern: &str, ignore_case: bool) -> Result<(), CliError> {
    let crypto = ctx.crypto_read()?;
    let report = ctx
        .store
        .grep(pattern, ignore_case, crypto.as_ref())
        .map_err(store_err)?;
    let mut out = std::io::stdout().lock();
    if ctx.g.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        for hit in &report.hits {
            writeln!(out, "{}:", hit.name)?;
            for l in &hit.lines {
                writeln!(out, "{}", l.text)?;
            }
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
        mv_core::fsutil::write_public(&attrs, b"*.gpg diff=gpg\n")?;
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

fn otp(ctx: &Ctx<'_>, o: OtpArgs) -> Result<(), CliError> {
    let cmd = match (o.command, o.name) {
        (Some(c), _) => c,
        (None, Some(name)) => OtpCommand::Code { clip: o.clip, name },
        (None, None) => {
            return Err(CliError::usage_msg("which entry?")
                .with_hint("multiverse pass otp NAME, or otp insert|uri|validate"))
        }
    };
    match cmd {
        OtpCommand::Code { clip, name } => {
            let name = entry(&name)?;
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
                return clipboard(ctx.g, &code, &format!("OTP code for {name}"));
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
        OtpCommand::Insert { force, name } => {
            let name = entry(&name)?;
            if !force && ctx.store.contains(&name) {
                return Err(CliError::usage_msg(format!(
                    "`{name}` already exists in the password store"
                ))
                .with_hint("use --force to overwrite"));
            }
            let uri = read_uri()?;
            OtpUri::parse(uri.expose()).usage()?;
            if ctx.g.dry_run {
                ctx.g.say(format!("would write the OTP key of {name}"));
                return Ok(());
            }
            let crypto = ctx.crypto_write()?;
            let content = SecretString::new(format!("{}\n", uri.expose()));
            let msg = format!("Add OTP secret for {name} to store.");
            let what = format!("Added OTP key {name}");
            write_entry(ctx, &name, &content, &msg, crypto.as_ref(), &what)
        }
        OtpCommand::Uri { name } => {
            let name = entry(&name)?;
            let crypto = ctx.crypto_read()?;
            let plain = ctx.store.read(&name, crypto.as_ref()).map_err(store_err)?;
            let text = SecretString::new(String::from_utf8_lossy(plain.expose()).into_owned());
            let uri = OtpUri::from_entry(text.expose()).usage()?;
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
        OtpCommand::Validate => {
            let uri = read_uri()?;
            let parsed = OtpUri::parse(uri.expose()).usage()?;
            if ctx.g.json {
                let v = serde_json::json!({"valid": true, "kind": parsed.kind, "digits": parsed.digits, "algorithm": parsed.algorithm});
                println!("{v}");
            } else {
                ctx.g.say("valid otpauth URI");
            }
            Ok(())
        }
    }
}

/// One URI line from stdin, or a hidden prompt on a terminal.
fn read_uri() -> Result<SecretString, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(SecretString::new(rpassword::prompt_password(
            "Enter otpauth:// URI: ",
        )?));
    }
    let mut line = SecretString::new(String::new());
    std::io::BufRead::read_line(&mut stdin.lock(), line.expose_mut())?;
    let trimmed = line.expose().trim().to_string();
    Ok(SecretString::new(trimmed))
}

fn key(ctx: &Ctx<'_>, k: KeyCommand) -> Result<(), CliError> {
    match k {
        KeyCommand::Import {
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
                    ctx.identity_root(&pass)?;
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
        KeyCommand::Add => {
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
        KeyCommand::Ls => {
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
    let pass = ctx.passphrase()?;
    let root = ctx.identity_root(&pass)?.ok_or_else(|| {
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
