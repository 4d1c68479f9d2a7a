//! pass's extensions (`pass WORD …` runs `WORD.bash`): where they are found, and the bash that
//! runs one with pass 1.7.4's variables and helpers around it.
//!
//! The prelude (`extension_prelude.bash`) copies pass's helpers where they need no key, and
//! defines `clip` and `cmd_*` functions that call back into our binary for anything that needs
//! one; the text to copy reaches `__clip` on its stdin (bash's `printf` is a builtin), never
//! argv or the environment. What this is not: it does not decide whether a word is a command
//! (the CLI's parser does) and reads none of pass's variables (the caller maps them into
//! [`ExtensionSettings`]).

use crate::{Store, StoreError};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where pass 1.7.4 looks for system extensions (always enabled, as in pass).
pub const SYSTEM_EXTENSION_DIR: &str = "/usr/lib/password-store/extensions";

/// What an extension finds around it: pass's variables and helpers (see the module doc).
const PRELUDE: &str = include_str!("extension_prelude.bash");

/// Errors finding an extension.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {
    /// The word climbs out of the extensions folder (`..`); pass's own words.
    #[error("Error: You've attempted to pass a sneaky path to pass. Go home.")]
    SneakyPath,
    /// The user extension's signature does not hold.
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl From<StoreError> for ExtensionError {
    fn from(e: StoreError) -> Self {
        ExtensionError::Store(Box::new(e))
    }
}

impl mv_core::Classify for ExtensionError {
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            ExtensionError::SneakyPath => mv_core::ErrorClass::Usage,
            ExtensionError::Store(e) => mv_core::Classify::class(e.as_ref()),
        }
    }
}

/// pass's extension variables.
#[derive(Debug, Clone, Default)]
pub struct ExtensionSettings {
    /// `PASSWORD_STORE_EXTENSIONS_DIR` (default: `STORE/.extensions`).
    pub user_dir: Option<PathBuf>,
    /// `PASSWORD_STORE_ENABLE_EXTENSIONS=true`.
    pub enabled: bool,
}

/// The extension `pass WORD` runs, as pass finds it: the user's `WORD.bash` when extensions are
/// enabled (its `.sig` checked by [`Store::verify_signed`] when the store has signing keys),
/// else the system one; either must be an executable regular file.
pub fn find_extension(
    store: &Store,
    word: &str,
    settings: &ExtensionSettings,
) -> Result<Option<PathBuf>, ExtensionError> {
    if word.split('/').any(|p| p == "..") {
        return Err(ExtensionError::SneakyPath);
    }
    let user_dir = settings
        .user_dir
        .clone()
        .unwrap_or_else(|| store.dir().join(".extensions"));
    let user = user_dir.join(format!("{word}.bash"));
    // pass: a regular file with an execute bit.
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
    };
    if settings.enabled && runnable(&user) {
        store.verify_signed(&user)?;
        return Ok(Some(user));
    }
    let system = Path::new(SYSTEM_EXTENSION_DIR).join(format!("{word}.bash"));
    Ok(runnable(&system).then_some(system))
}

/// A word for bash, single-quoted.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The bash that runs extension `ext` as pass does (`source EXT ARGS…` after the prelude), for
/// command word `word` with arguments `rest`; `callback` is the command line the helpers run
/// for `cmd_*` and `clip` (our binary and its `pass` word, with the options to keep).
pub fn extension_command(
    store: &Store,
    ext: &Path,
    callback: &[String],
    word: &str,
    rest: &[String],
) -> Command {
    let me: Vec<String> = callback.iter().map(|w| sh_quote(w)).collect();
    let script = format!(
        "{PRELUDE}MULTIVERSE=( {} )\nsource \"$MULTIVERSE_PASS_EXTENSION\" \"$@\"\n",
        me.join(" ")
    );
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(script)
        .arg("pass")
        .args(rest)
        .env("PASSWORD_STORE_DIR", store.dir())
        .env("MULTIVERSE_PASS_EXTENSION", ext)
        .env("MULTIVERSE_PASS_COMMAND", word);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sneaky_words_are_refused_and_quoting_survives_quotes() {
        let store = Store::new("/nonexistent");
        let r = find_extension(&store, "../x", &ExtensionSettings::default());
        assert!(matches!(r, Err(ExtensionError::SneakyPath)));
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
    }
}
