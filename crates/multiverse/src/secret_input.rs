//! Where secrets come from: never argv.
//!
//! Order for a passphrase: `--passphrase-file FILE`, then env `MULTIVERSE_PASSPHRASE`, then a
//! prompt on the terminal. Without a terminal and without either source, it is an error with a hint.
//!
//! The env variable is taken out of the process environment as the program starts
//! ([`take_env_passphrase`]), so that no child (git, gpg, the clipboard tool, `$EDITOR`, ssh)
//! inherits it; [`passphrase`] reads the copy kept here.
#![allow(dead_code)]

use crate::error::{CliError, Hinted};
use mv_core::secret::SecretString;
use std::io::{IsTerminal, Read};
use std::path::Path;
use std::sync::OnceLock;

/// The env variable holding the passphrase for non-interactive use.
pub const PASSPHRASE_ENV: &str = "MULTIVERSE_PASSPHRASE";

/// `MULTIVERSE_PASSPHRASE` as the program found it (`None`: unset or not UTF-8).
static ENV_PASSPHRASE: OnceLock<Option<SecretString>> = OnceLock::new();

/// Moves `MULTIVERSE_PASSPHRASE` from the process environment into this module, so that children
/// do not inherit it. Called first thing in `main`, while the process has one thread: removing an
/// env variable races with any other thread reading the environment (which is why `remove_var`
/// is `unsafe` in the 2024 edition), and there is none yet. A second call changes nothing.
///
/// What it cannot do: the kernel's copy of the initial environment (`/proc/PID/environ`, readable
/// by the same user and root) keeps the value; the variable is for tests and scripts, a
/// `--passphrase-file` or the prompt is the way for secrets that matter.
pub fn take_env_passphrase() {
    ENV_PASSPHRASE.get_or_init(|| {
        let value = std::env::var_os(PASSPHRASE_ENV)?;
        std::env::remove_var(PASSPHRASE_ENV);
        value.into_string().ok().map(SecretString::new)
    });
}

/// The passphrase taken from the environment at start, if any (for `multiverse-virt`, which gets
/// it back in its own environment when `multiverse` execs it).
pub fn env_passphrase() -> Option<&'static SecretString> {
    ENV_PASSPHRASE.get().and_then(Option::as_ref)
}

/// Gets the passphrase. `confirm` asks twice on a terminal (for new secrets).
pub fn passphrase(
    file: Option<&Path>,
    prompt: &str,
    confirm: bool,
) -> Result<SecretString, CliError> {
    if let Some(path) = file {
        let mut text = std::fs::read_to_string(path).map_err(|e| {
            CliError::usage_msg(format!(
                "cannot read passphrase file {}: {e}",
                path.display()
            ))
        })?;
        // A trailing newline from `echo` is not part of the passphrase.
        while text.ends_with('\n') || text.ends_with('\r') {
            text.pop();
        }
        return Ok(SecretString::new(text));
    }
    let from_env = match ENV_PASSPHRASE.get() {
        Some(taken) => taken.clone(),
        // Not taken at start (only unit tests get here): read it where it is.
        None => std::env::var(PASSPHRASE_ENV).ok().map(SecretString::new),
    };
    if let Some(value) = from_env {
        return Ok(value);
    }
    if !std::io::stdin().is_terminal() {
        return Err(
            CliError::usage_msg("no passphrase given and no terminal to ask on")
                .with_hint("pass --passphrase-file FILE or set MULTIVERSE_PASSPHRASE"),
        );
    }
    let first = SecretString::new(rpassword::prompt_password(format!("{prompt}: "))?);
    if confirm {
        let second = SecretString::new(rpassword::prompt_password("Again: ")?);
        if first != second {
            return Err(CliError::usage_msg("the two passphrases differ"));
        }
    }
    Ok(first)
}

/// Warns on stderr when `params` are valid but weak against guessing (below 64 MiB of memory):
/// called by every command that seals, so `--kdf-memory 8` is never accepted silently.
pub fn warn_if_weak(params: &mv_seal::KdfParams) {
    if params.is_weak() {
        eprintln!(
            "multiverse: warning: Argon2 memory {} KiB is below {} KiB (64 MiB): this seal resists \
             passphrase guessing poorly; use such values only for tests",
            params.memory_kib(),
            mv_seal::WEAK_MEMORY_KIB
        );
    }
}

/// Reads all of stdin as a secret (a key file, a password).
pub fn stdin_secret() -> Result<mv_core::secret::SecretBytes, CliError> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .hint("could not read the secret from stdin")?;
    Ok(mv_core::secret::SecretBytes::new(buf))
}

/// The 24 recovery words, from `file` or else stdin (with a prompt on a terminal).
pub fn recovery_words(file: Option<&Path>) -> Result<SecretString, CliError> {
    let mut text = String::new();
    match file {
        Some(p) => {
            text = std::fs::read_to_string(p).map_err(|e| {
                CliError::usage_msg(format!("cannot read words file {}: {e}", p.display()))
            })?;
        }
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("Type the 24 recovery words (spaces or new lines), then Ctrl-D:");
            }
            std::io::stdin()
                .read_to_string(&mut text)
                .hint("could not read the recovery words from stdin")?;
        }
    }
    Ok(SecretString::new(text))
}

/// The passphrase that encrypts exported SSH private keys, from `file` (never empty), if any.
pub fn key_passphrase(file: Option<&Path>) -> Result<Option<SecretString>, CliError> {
    match file {
        None => Ok(None),
        Some(p) => {
            let mut t = std::fs::read_to_string(p).map_err(|e| {
                CliError::usage_msg(format!(
                    "cannot read key passphrase file {}: {e}",
                    p.display()
                ))
            })?;
            while t.ends_with('\n') || t.ends_with('\r') {
                t.pop();
            }
            if t.is_empty() {
                return Err(CliError::usage_msg(format!(
                    "key passphrase file {} is empty",
                    p.display()
                )));
            }
            Ok(Some(SecretString::new(t)))
        }
    }
}
