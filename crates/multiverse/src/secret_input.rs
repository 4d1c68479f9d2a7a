//! Where secrets come from: never argv.
//!
//! Order for a passphrase: `--passphrase-file FILE`, then env `MULTIVERSE_PASSPHRASE`, then a
//! prompt on the terminal. Without a terminal and without either source, it is an error with a hint.
#![allow(dead_code)]

use crate::error::{CliError, Hinted};
use mv_core::secret::SecretString;
use std::io::{IsTerminal, Read};
use std::path::Path;

/// The env variable holding the passphrase for non-interactive use.
pub const PASSPHRASE_ENV: &str = "MULTIVERSE_PASSPHRASE";

/// Gets the passphrase. `confirm` asks twice on a terminal (for new secrets).
pub fn passphrase(
    file: Option<&Path>,
    prompt: &str,
    confirm: bool,
) -> Result<SecretString, CliError> {
    if let Some(path) = file {
        let mut text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read passphrase file {}: {e}", path.display()))
            .usage()?;
        // A trailing newline from `echo` is not part of the passphrase.
        while text.ends_with('\n') || text.ends_with('\r') {
            text.pop();
        }
        return Ok(SecretString::new(text));
    }
    if let Ok(value) = std::env::var(PASSPHRASE_ENV) {
        return Ok(SecretString::new(value));
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
