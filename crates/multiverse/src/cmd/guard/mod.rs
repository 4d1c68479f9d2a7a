//! `multiverse guard`: the LUKS key hidden in an image, and the kill switch.
//!
//! Parsing, prompting and printing only; the work is `mv_guard`'s. Keys come from `--key FILE`
//! (`-` for stdin), piped stdin, or the machine's derived `luks` key (`--machine`, unsealing the
//! identity); passphrases from `--passphrase-file`, env `MULTIVERSE_PASSPHRASE` or a prompt. Neither
//! ever appears on argv, ours or cryptsetup's.
//!
//! Exit codes: bad input (a JPEG cover, a too small cover, a bad token, a wrong passphrase) is 2;
//! a failing tool or a damaged image is 1 (each library error's [`mv_core::Classify`]).
//!
//! Files: [`args`] holds the clap types, `key` the hidden key (hide, reveal, enroll, unlock),
//! `switch` the kill switch (arm, disarm, status, watch, fire, udev-rule), `event` how the
//! watcher's events are printed.

mod args;
mod event;
mod key;
mod switch;

pub use args::*;

use crate::error::{CliError, Kind};
use crate::global::Global;
use mv_core::layout::Tree;
use mv_guard::GuardConfig;
use std::path::{Path, PathBuf};

/// Runs the command.
pub fn run(g: &Global, c: Command) -> Result<(), CliError> {
    match c {
        Command::Hide(a) => key::hide(g, a),
        Command::Reveal(a) => key::reveal(g, a),
        Command::Enroll(a) => key::enroll(g, a),
        Command::Unlock(a) => key::unlock(g, a),
        Command::Arm(a) => switch::arm(g, a),
        Command::Disarm(a) => switch::disarm(g, a),
        Command::Status(a) => switch::status(g, a),
        Command::Watch(a) => switch::watch(g, a),
        Command::Fire(a) => switch::fire(g, a),
        Command::UdevRule(a) => switch::udev_rule(g, a),
        Command::FillMemory(a) => switch::fill_memory(a),
    }
}

fn load_config(g: &Global) -> Result<(PathBuf, Option<GuardConfig>), CliError> {
    let path = Tree::new(&g.root).guard_config();
    let cfg = GuardConfig::load(&path).map_err(config_error)?;
    Ok((path, cfg))
}

/// Saves the configuration; a folder root cannot trust is the person's to fix, like on loading.
fn save_config(cfg: &GuardConfig, path: &Path) -> Result<bool, CliError> {
    cfg.save(path).map_err(|e| match e {
        mv_guard::ConfigError::Untrusted(..) => config_error(e),
        e => e.into(),
    })
}

/// A configuration that cannot be used is the person's to fix (exit 2), with the way to fix it.
fn config_error(e: mv_guard::ConfigError) -> CliError {
    let hint = if matches!(e, mv_guard::ConfigError::Untrusted(..)) {
        "root runs the chain: the guard configuration, its folder and every folder above must be \
         owned by root and not writable by group or others (see docs/guard.md, \"Who may change \
         the chain\"); nothing was run"
    } else {
        "fix or delete the guard configuration, then `multiverse guard arm` again"
    };
    let mut c = CliError::from(e).with_hint(hint);
    c.kind = Kind::Usage;
    c
}
