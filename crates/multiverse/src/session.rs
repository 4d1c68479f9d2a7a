//! The session cache of both binaries: one `mv_pass::agent`, holding the pass store's unsealed
//! keys and the unsealed identity root, so each is unlocked once per session.
//!
//! This module only decides how long entries live (from the environment) and starts the agent;
//! the agent itself (private folder, `SO_PEERCRED`, expiry, `lock`) is `mv_pass::agent`. Callers
//! derive their ids from the sealed files' bytes (`mv_pass::agent::cache_id`), hold
//! [`mv_pass::agent::Client::unlock_guard`] across "look up, unseal on a miss, store", and never
//! put a passphrase in it. `pass lock`, `identity lock` and the kill switch forget everything.

use crate::error::CliError;
use mv_pass::agent::{Client, Lifetime, DEFAULT_MAX_TTL_SECS, DEFAULT_TTL_SECS};
use std::os::unix::process::CommandExt;
use std::time::Duration;

/// Seconds after the last use (default 10 minutes).
pub const TTL_ENV: &str = "MULTIVERSE_PASS_CACHE_TTL";
/// Seconds after the unlock, however often used (default 8 hours).
pub const MAX_TTL_ENV: &str = "MULTIVERSE_PASS_CACHE_MAX_TTL";

/// Seconds from `value` (the environment variable `var`), else `default`; anything but a whole
/// number is an error naming the variable.
fn parse_secs(var: &str, value: Option<&str>, default: u64) -> Result<u64, CliError> {
    match value {
        Some(s) if !s.trim().is_empty() => s.trim().parse::<u64>().map_err(|_| {
            CliError::usage_msg(format!("{var}={s:?}: expected a number of seconds")).with_hint(
                &format!("unset {var} for the default ({default} s); 0 disables the session cache"),
            )
        }),
        _ => Ok(default),
    }
}

fn env_secs(var: &str, default: u64) -> Result<u64, CliError> {
    parse_secs(var, std::env::var(var).ok().as_deref(), default)
}

/// The lifetime of `idle` and `max` seconds; `None` (no cache) when either is 0.
fn lifetime_of(idle: u64, max: u64) -> Option<Lifetime> {
    (idle > 0 && max > 0).then(|| Lifetime {
        idle: Duration::from_secs(idle),
        max: Duration::from_secs(max),
    })
}

/// The session cache's lifetime: `MULTIVERSE_PASS_CACHE_TTL` seconds after last use (default
/// 10 minutes) and at most `MULTIVERSE_PASS_CACHE_MAX_TTL` seconds after the unlock (default 8
/// hours), like gpg-agent's `default-cache-ttl` and `max-cache-ttl`. Either at 0: no cache.
pub fn lifetime() -> Result<Option<Lifetime>, CliError> {
    let idle = env_secs(TTL_ENV, DEFAULT_TTL_SECS)?;
    let max = env_secs(MAX_TTL_ENV, DEFAULT_MAX_TTL_SECS)?;
    Ok(lifetime_of(idle, max))
}

/// The agent of this session (`MULTIVERSE_PASS_AGENT_DIR`, else the user's runtime folder).
pub fn client() -> Client {
    Client::default_session()
}

/// Starts the agent (this binary, `pass __agent`, detached) unless one answers; true once one
/// answers. No secret is on its command line or in its environment.
pub fn start_agent(agent: &Client) -> bool {
    if agent.is_running() {
        return true;
    }
    let Ok(exe) = std::env::current_exe() else {
        return false;
    };
    let spawned = std::process::Command::new(exe)
        .args(["pass", "__agent"])
        .env("MULTIVERSE_PASS_AGENT_DIR", agent.dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
    if spawned.is_err() {
        return false;
    }
    for _ in 0..200 {
        if agent.is_running() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Says that the unlock lock could not be taken (values are unsealed for this command only).
pub fn warn_no_cache(error: &mv_pass::agent::AgentError) {
    eprintln!("multiverse: warning: no session cache: {error}");
}

/// Forgets everything the agent holds (pass keys and the identity root) and ends it.
/// `Ok(false)`: no agent was running.
pub fn lock() -> Result<bool, CliError> {
    Ok(client().lock()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_default_parse_and_refuse() {
        assert_eq!(parse_secs(TTL_ENV, None, 600).unwrap(), 600);
        assert_eq!(parse_secs(TTL_ENV, Some(" "), 600).unwrap(), 600);
        assert_eq!(parse_secs(TTL_ENV, Some(" 5\n"), 600).unwrap(), 5);
        for bad in ["-1", "1.5", "ten"] {
            let e = parse_secs(TTL_ENV, Some(bad), 600).unwrap_err();
            assert!(format!("{e:?}").contains(TTL_ENV), "{e:?}");
        }
    }

    #[test]
    fn either_zero_disables_the_cache() {
        assert!(lifetime_of(0, 100).is_none());
        assert!(lifetime_of(100, 0).is_none());
        let l = lifetime_of(2, 100).unwrap();
        assert_eq!((l.idle.as_secs(), l.max.as_secs()), (2, 100));
    }
}
