//! The armed state on disk: `<root>/guard/guard.toml`.
//!
//! ```toml
//! armed = true
//! token = "1050:0407:CC0123"
//! on_signal = "ignore"        # or "fire": what SIGTERM/SIGINT/SIGHUP do to the watcher
//! trigger = "insert"          # or "any"; absent means "remove" (the token's removal fires)
//!
//! [[step]]
//! action = "luks-suspend"
//! timeout_ms = 5000
//! ```
//! The file holds no secret (a token's serial number is printed on many devices) and is written
//! atomically. A missing `[[step]]` list means the default chain ([`crate::chain::default_steps`]).
//!
//! When the process runs as root the file is read through `trust` ([`Policy`]): it is used only if
//! root alone could have written it (root-owned, not group/other-writable, every folder above it
//! likewise), else loading fails with [`ConfigError::Untrusted`]. The file decides which programs
//! root runs and whether root's watcher fires, so a file another user can change would hand them
//! root. [`GuardConfig::save`] as root likewise refuses a folder root could not trust on reading.
//!
//! What this module is not: the watcher; it only reads and writes the file.

use crate::chain::{default_steps, Step};
use crate::token::{TokenSpec, Trigger};
pub use crate::trust::{Policy, TrustError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a termination signal does to the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SignalPolicy {
    /// Log it and keep watching (`kill -9` or `guard disarm` stop the watcher).
    #[default]
    Ignore,
    /// Treat it as the token's removal: a watcher killed by `pkill` fires first.
    Fire,
}

/// The guard's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardConfig {
    /// Whether the kill switch is armed.
    pub armed: bool,
    /// The token (`SERIAL` or `VID:PID[:SERIAL]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Signal policy.
    #[serde(default)]
    pub on_signal: SignalPolicy,
    /// Which token event fires: removal (default, not written so older files are unchanged),
    /// insertion, or either.
    #[serde(default, skip_serializing_if = "Trigger::is_remove")]
    pub trigger: Trigger,
    /// Paused until this time (seconds since the epoch): the watcher keeps running, but the
    /// token's removal does nothing until then (`guard disarm --for`, BusKill #95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<u64>,
    /// The chain.
    #[serde(default = "default_steps", rename = "step")]
    pub steps: Vec<Step>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            armed: false,
            token: None,
            on_signal: SignalPolicy::Ignore,
            trigger: Trigger::Remove,
            paused_until: None,
            steps: default_steps(),
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable.
    #[error("cannot read {0}")]
    Read(PathBuf, #[source] std::io::Error),
    /// Running as root, the file (or a folder above it) could be changed by another user.
    #[error("refusing the guard configuration {0}")]
    Untrusted(PathBuf, #[source] crate::trust::TrustError),
    /// Not valid TOML for this schema.
    #[error("{0}: invalid guard configuration")]
    Parse(PathBuf, #[source] toml::de::Error),
    /// The token field is invalid.
    #[error("{0}: invalid token")]
    Token(PathBuf, #[source] crate::token::TokenError),
    /// A step with a zero timeout or an empty command.
    #[error("{0}: step {1} ({2}) has a zero timeout or an empty command")]
    Step(PathBuf, usize, &'static str),
    /// Writing failed.
    #[error("cannot save the guard configuration")]
    Write(#[source] mv_core::fsutil::FsError),
    /// Serialising failed.
    #[error("cannot serialise the guard configuration")]
    Serialise(#[source] toml::ser::Error),
}

impl GuardConfig {
    /// Loads the file under the process's [`Policy`]; `Ok(None)` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<GuardConfig>, ConfigError> {
        Self::load_with(path, Policy::for_process())
    }

    /// Loads the file under `policy`; `Ok(None)` when it does not exist.
    pub fn load_with(path: &Path, policy: Policy) -> Result<Option<GuardConfig>, ConfigError> {
        let text = match crate::trust::read_to_string(path, policy) {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(None),
            Err(TrustError::Io(p, e)) => return Err(ConfigError::Read(p, e)),
            Err(e) => return Err(ConfigError::Untrusted(path.into(), e)),
        };
        let cfg: GuardConfig =
            toml::from_str(&text).map_err(|e| ConfigError::Parse(path.into(), e))?;
        cfg.token_spec()
            .map_err(|e| ConfigError::Token(path.into(), e))?;
        for (i, s) in cfg.steps.iter().enumerate() {
            let empty_cmd = matches!(&s.action, crate::chain::Action::Command { argv } if argv.is_empty())
                || s.fallback.as_ref().is_some_and(Vec::is_empty);
            if s.timeout_ms == 0 || empty_cmd {
                return Err(ConfigError::Step(path.into(), i + 1, s.action.name()));
            }
        }
        Ok(Some(cfg))
    }

    /// Whether the token's removal fires at `now` (seconds since the epoch).
    pub fn fires_at(&self, now: u64) -> bool {
        self.armed && self.paused_until.is_none_or(|t| now >= t)
    }

    /// The parsed token, if one is set.
    pub fn token_spec(&self) -> Result<Option<TokenSpec>, crate::token::TokenError> {
        self.token.as_deref().map(str::parse).transpose()
    }

    /// The file's text.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        let body = toml::to_string(self).map_err(ConfigError::Serialise)?;
        Ok(format!(
            "# Multiverse guard: the kill switch. Edit the [[step]] list to change the chain.\n{body}"
        ))
    }

    /// Saves atomically; `Ok(false)` when the file already says exactly this. As root, the folder
    /// must be one root alone can change (else [`ConfigError::Untrusted`], nothing written): a
    /// file written there could be swapped by its owner before root reads it back.
    pub fn save(&self, path: &Path) -> Result<bool, ConfigError> {
        let policy = Policy::for_process();
        if policy == Policy::Root {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| ConfigError::Read(dir.into(), e))?;
                crate::trust::check_dir(dir, policy)
                    .map_err(|e| ConfigError::Untrusted(path.into(), e))?;
            }
        }
        mv_core::fsutil::write_public(path, self.to_toml()?.as_bytes()).map_err(ConfigError::Write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_and_idempotence() {
        let d = tempfile::tempdir().unwrap();
        let p = mv_core::layout::Tree::new(d.path()).guard_config();
        assert!(GuardConfig::load(&p).unwrap().is_none());
        let cfg = GuardConfig {
            armed: true,
            token: Some("1050:0407:ABC".into()),
            ..GuardConfig::default()
        };
        assert!(cfg.save(&p).unwrap());
        assert!(!cfg.save(&p).unwrap());
        assert_eq!(GuardConfig::load(&p).unwrap().unwrap(), cfg);
    }

    #[test]
    fn trigger_round_trips_and_the_default_is_not_written() {
        let d = tempfile::tempdir().unwrap();
        let p = mv_core::layout::Tree::new(d.path()).guard_config();
        let mut cfg = GuardConfig {
            armed: true,
            token: Some("1050:0407:ABC".into()),
            ..GuardConfig::default()
        };
        assert!(!cfg.to_toml().unwrap().contains("trigger"));
        cfg.trigger = Trigger::Insert;
        assert!(cfg.to_toml().unwrap().contains("trigger = \"insert\"\n"));
        cfg.save(&p).unwrap();
        assert_eq!(
            GuardConfig::load(&p).unwrap().unwrap().trigger,
            Trigger::Insert
        );
        std::fs::write(&p, "armed = true\ntrigger = \"sideways\"\n").unwrap();
        assert!(matches!(GuardConfig::load(&p), Err(ConfigError::Parse(..))));
    }

    #[test]
    fn a_pause_ends() {
        let cfg = GuardConfig {
            armed: true,
            paused_until: Some(100),
            ..GuardConfig::default()
        };
        assert!(!cfg.fires_at(99));
        assert!(cfg.fires_at(100));
        assert!(!GuardConfig::default().fires_at(0));
    }

    #[test]
    fn rejects_bad_files_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("g.toml");
        std::fs::write(&p, "armed = true\ntoken = \"zz:1\"\n").unwrap();
        let e = GuardConfig::load(&p).unwrap_err();
        assert!(e.to_string().contains("g.toml"), "{e}");
        std::fs::write(
            &p,
            "armed = true\n[[step]]\naction = \"sync\"\ntimeout_ms = 0\n",
        )
        .unwrap();
        assert!(matches!(
            GuardConfig::load(&p),
            Err(ConfigError::Step(_, 1, "sync"))
        ));
        std::fs::write(&p, "armed = maybe\n").unwrap();
        assert!(matches!(GuardConfig::load(&p), Err(ConfigError::Parse(..))));
    }
}
