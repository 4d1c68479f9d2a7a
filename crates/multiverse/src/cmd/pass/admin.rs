//! The store's housekeeping: `git`, extensions, `key …`, `machines`, `fsck`, `audit`, `lock`.
//!
//! `machines` derives each machine's root password from the identity (mv-identity, which mv-pass
//! does not depend on: it never derives keys) and writes it with the store; that derivation is
//! the one workflow kept here, in [`machines`], because it needs the identity root.

use super::args::KeyCmd;
use super::keys::Ctx;
use super::{env_words, now_unix, store_dir};
use crate::error::{CliError, Hinted};
use crate::global::Global;
use crate::secret_input;
use mv_core::{IdentityName, MachineName};
use mv_identity::{IdentityStore, KdfParams};
use mv_pass::{ExtensionError, ExtensionSettings, Store, StoreError};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

pub(super) fn lock(ctx: &Ctx<'_>, all: bool) -> Result<(), CliError> {
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

pub(super) fn git(ctx: &Ctx<'_>, args: &[String]) -> Result<(), CliError> {
    let dir = ctx.store.dir();
    if ctx.g.dry_run {
        ctx.g.say(format!(
            "would run git {} in {}",
            args.join(" "),
            dir.display()
        ));
        return Ok(());
    }
    let status = mv_pass::Git::command(dir).args(args).status()?;
    if !status.success() {
        return Err(CliError::failure_msg(format!("git failed ({status})")));
    }
    if args.first().map(String::as_str) == Some("init") {
        // Like pass: commit what is there, and teach git to diff entries through gpg.
        ctx.store.git_init().map_err(|e| match e {
            StoreError::NotARepository(_) => CliError::failure_msg(e),
            other => CliError::from(other),
        })?;
    }
    Ok(())
}

/// The extension `pass WORD` runs, as pass finds it (`mv_pass::find_extension`), with pass's
/// `PASSWORD_STORE_EXTENSIONS_DIR` and `PASSWORD_STORE_ENABLE_EXTENSIONS`.
pub(super) fn find_extension(g: &Global, word: &str) -> Result<Option<PathBuf>, CliError> {
    let store = Store::new(store_dir(g)).with_signing_keys(env_words("PASSWORD_STORE_SIGNING_KEY"));
    let settings = ExtensionSettings {
        user_dir: std::env::var_os("PASSWORD_STORE_EXTENSIONS_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
        enabled: std::env::var("PASSWORD_STORE_ENABLE_EXTENSIONS").as_deref() == Ok("true"),
    };
    mv_pass::find_extension(&store, word, &settings).map_err(|e| match e {
        ExtensionError::SneakyPath => CliError::usage_msg(e),
        ExtensionError::Store(s) => CliError::from(*s),
        other => other.into(),
    })
}

/// Runs an extension as pass does (`mv_pass::extension_command`), in place of this process:
/// its exit status is ours.
pub(super) fn run_extension(
    g: &Global,
    ext: &Path,
    extras: &[String],
    word: &str,
    rest: &[String],
) -> Result<(), CliError> {
    let exe = std::env::current_exe().map_err(|e| {
        CliError::failure_msg(format!("cannot find this program for the extension: {e}"))
    })?;
    let mut me = vec![exe.to_string_lossy().into_owned(), "pass".to_string()];
    me.extend(extras.iter().cloned());
    let store = Store::new(store_dir(g));
    let err = mv_pass::extension_command(&store, ext, &me, word, rest).exec();
    Err(CliError::failure_msg(format!(
        "cannot run bash for the extension {}: {err}",
        ext.display()
    )))
}

pub(super) fn key(ctx: &Ctx<'_>, k: KeyCmd) -> Result<(), CliError> {
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
            let key = mv_pass::parse_secret_key(
                armored.expose(),
                key_pw.as_ref().map(|p| p.expose().as_str()),
            )
            .usage()
            .hint("give an armored secret key on stdin (gpg --export-secret-keys --armor ID), and --key-passphrase-file if gpg protects it")?;
            let fpr = mv_pass::secret_fingerprint(&key);
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
                ctx.keys.put_sealed_by(&key, |plain| {
                    mv_seal::seal(plain, pass.expose().as_bytes(), params)
                })?;
            }
            ctx.g.say(format!("imported secret key {fpr}"));
            Ok(())
        }
        KeyCmd::Add => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes)?;
            let cert = mv_pass::parse_public_key(&bytes).usage()?;
            let fpr = mv_pass::fingerprint_hex(&cert);
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
                    let secret = ctx.keys.secret_state(&fpr).as_str();
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
    let dir = mv_core::layout::Tree::new(root).machines_dir();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(CliError::failure_msg(format!(
                "cannot list {}: {e}",
                dir.display()
            )))
        }
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

pub(super) fn machines(ctx: &Ctx<'_>) -> Result<(), CliError> {
    let names = machine_names(&ctx.g.root)?;
    if names.is_empty() {
        return Err(CliError::usage_msg(format!(
            "no machines under {}",
            mv_core::layout::Tree::new(&ctx.g.root)
                .machines_dir()
                .display()
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
        let (name, content) = mv_pass::machine_root_entry(m.as_str(), &pw)
            .usage()
            .hint("entry names are relative paths inside the store, without `..`")?;
        let msg = format!("Add given password for {name} to store.");
        match ctx.store.write_if_changed(
            &name,
            content.expose().as_bytes(),
            &msg,
            crypto.as_ref(),
        )? {
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

pub(super) fn fsck(ctx: &Ctx<'_>, decrypt: bool) -> Result<(), CliError> {
    let crypto = if decrypt {
        ctx.crypto_read()?
    } else {
        ctx.crypto_write()?
    };
    let issues = mv_pass::fsck(&ctx.store, crypto.as_ref(), decrypt)?;
    if ctx.g.json {
        crate::global::print_json_line(&issues)?;
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

pub(super) fn audit(ctx: &Ctx<'_>, max_age: u64) -> Result<(), CliError> {
    let crypto = ctx.crypto_read()?;
    let now = i64::try_from(now_unix()).unwrap_or(i64::MAX);
    let r = mv_pass::audit(&ctx.store, crypto.as_ref(), now, max_age)?;
    if ctx.g.json {
        crate::global::print_json_line(&r)?;
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
