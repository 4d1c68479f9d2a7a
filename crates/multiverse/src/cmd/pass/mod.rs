//! `multiverse pass …`: the password store (pass format, OTP) on the command line.
//!
//! Parse, call, print: the command line is [`args`] (pass's getopt rules), prompts and the
//! clipboard/QR glue are `prompt.rs`, which keys a command gets is `keys.rs`, and each command
//! family has its file (`entries.rs`, `listing.rs`, `otp.rs`, `admin.rs`). The workflows
//! themselves are `mv_pass`: the store, OpenPGP, OTP, the clipboard job, the editor's scratch
//! folder, the tree drawing, `git init`, extensions. The store is `PASSWORD_STORE_DIR`, else
//! `<root>/pass`; keys live in `MULTIVERSE_PASS_KEYS`, else `<root>/pass-keys` (certificates,
//! and secret keys sealed under the identity passphrase). The identity's `@user` OpenPGP key is
//! the default key: `init` without a key id uses it, and reading unseals it when no clear secret
//! key is present. `--gpg` hands all OpenPGP work to gpg/gpg-agent instead (smartcards).
//!
//! Secrets come from stdin, a prompt or files, never argv; the passphrase from
//! `--passphrase-file`, `MULTIVERSE_PASSPHRASE` or a prompt. Exit codes: bad names, bad input,
//! a missing entry or a wrong passphrase are 2; other failures 1.

use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_core::layout::Tree;
use mv_pass::{EntryName, KeyDir, Store};
use std::path::PathBuf;

mod admin;
mod args;
mod entries;
mod keys;
mod listing;
mod otp;
mod prompt;
mod text;

pub use admin::session_lock;
use args::{Cmd, OtpCmd};
use keys::Ctx;

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

/// The store folder: `PASSWORD_STORE_DIR`, else the tree's `pass/`.
pub(crate) fn store_dir(g: &Global) -> PathBuf {
    match std::env::var_os("PASSWORD_STORE_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Tree::new(&g.root).pass_dir(),
    }
}

/// The key folder: `MULTIVERSE_PASS_KEYS`, else the tree's `pass-keys/`.
pub(crate) fn keys_dir(g: &Global) -> PathBuf {
    match std::env::var_os("MULTIVERSE_PASS_KEYS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Tree::new(&g.root).pass_keys_dir(),
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

/// The store with pass's key variables: `PASSWORD_STORE_KEY` (whitespace-separated ids that
/// replace every .gpg-id) and `PASSWORD_STORE_SIGNING_KEY` (.gpg-id signed by init and checked
/// before use, by gpg).
fn open_store(g: &Global) -> Store {
    Store::new(store_dir(g))
        .with_recipients_override(env_words("PASSWORD_STORE_KEY"))
        .with_signing_keys(env_words("PASSWORD_STORE_SIGNING_KEY"))
}

fn entry(s: &str) -> Result<EntryName, CliError> {
    EntryName::parse(s)
        .usage()
        .hint("entry names are relative paths inside the store, without `..`")
}

/// A name as pass takes it for a new entry: a trailing `/` is dropped.
fn new_entry(name: &str) -> Result<EntryName, CliError> {
    entry(name.strip_suffix('/').unwrap_or(name))
}

/// pass's umask: `PASSWORD_STORE_UMASK` (octal), else 077, for everything the store writes.
fn apply_umask() {
    let mask = std::env::var("PASSWORD_STORE_UMASK")
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim(), 8).ok())
        .filter(|m| *m <= 0o777)
        .unwrap_or(0o077);
    mv_pass::set_umask(mask);
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs `multiverse pass …`.
pub fn run(g: &Global, a: Args) -> Result<(), CliError> {
    if let Some((extras, word, rest)) = args::extension_call(&a.args) {
        if let Some(ext) = admin::find_extension(g, &word)? {
            apply_umask();
            return admin::run_extension(g, &ext, &extras, &word, &rest);
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
        store: open_store(g),
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
            print!("{}", text::usage());
            Ok(())
        }
        Cmd::Version => {
            println!("{}", text::BANNER);
            Ok(())
        }
        Cmd::Init { path, ids } => entries::init(&ctx, path, ids),
        Cmd::Insert {
            echo,
            multiline,
            force,
            name,
        } => entries::insert(&ctx, &name, echo, multiline, force),
        Cmd::Show { name, output, line } => listing::show(&ctx, name.as_deref(), output, line),
        Cmd::Clip { name } => prompt::clip_stdin(g, &name),
        Cmd::ClipRestore { secs } => prompt::clip_restore(secs),
        Cmd::Generate {
            no_symbols,
            output,
            in_place,
            force,
            name,
            length,
        } => entries::generate(
            &ctx,
            &name,
            length,
            &entries::GenerateFlags {
                symbols: !no_symbols,
                in_place,
                force,
                output,
            },
        ),
        Cmd::Edit { name } => entries::edit(&ctx, &name),
        Cmd::Rm {
            recursive,
            force,
            name,
        } => entries::remove(&ctx, &name, recursive, force),
        Cmd::MoveCopy {
            copy,
            force,
            from,
            to,
        } => entries::move_copy(&ctx, &from, &to, copy, force),
        Cmd::Find { terms } => listing::find(&ctx, &terms),
        Cmd::Grep { args } => listing::grep(&ctx, &args),
        Cmd::Git { args } => admin::git(&ctx, &args),
        Cmd::Otp(o) => otp::otp(&ctx, o),
        Cmd::Key(k) => admin::key(&ctx, k),
        Cmd::Machines => admin::machines(&ctx),
        Cmd::Fsck { decrypt } => admin::fsck(&ctx, decrypt),
        Cmd::Audit { max_age } => admin::audit(&ctx, max_age),
        Cmd::Lock { all } => admin::lock(&ctx, all),
        Cmd::Agent => Ok(mv_pass::agent::serve(&mv_pass::agent::default_dir())?),
    }
}
