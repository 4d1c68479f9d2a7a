//! Re-provisioning a running machine whose keys change (a key rotation): log in with the keys it
//! still has, apply its new desired state, then check it presents the new ones.
//!
//! The machine is reached over its virtio-serial SSH channel (a `ProxyCommand`), logged in as
//! root with a [`Session`] of the *old* keys (known_hosts holding exactly the old host keys); the
//! new state is applied as `provision apply` does (sshd and tor reload what changed). After a
//! crash past the apply, a rerun finds the machine with the new keys, so those are tried second.
//! Then a session of the *new* keys (known_hosts holding only the new host keys, strictly) marks
//! the machine's seed applied (the guest's seed stage skips a seed it has applied, and this state
//! is that seed's) and asks its host name; sshd may reload in the background, so a few tries.
//!
//! What this is not: the choice of machines (the caller renders each with the old and new keys
//! and calls this for those that differ) or the seed disk (written by the caller beforehand).

use super::{HostKeyCheck, Route, Session, SessionError};
use crate::apply::{Applied, ApplyError, SystemRunner};
use crate::render::Desired;
use crate::seed::SeedId;
use mv_core::{Classify, ErrorClass, IdentityName, MachineName};
use mv_identity::Root;
use std::time::Duration;

/// What [`reprovision`] needs.
#[derive(Debug)]
pub struct Reprovision<'a> {
    /// The running machine.
    pub machine: &'a MachineName,
    /// The person whose login key logs in.
    pub person: &'a IdentityName,
    /// The keys the machine has now (before the rotation).
    pub old: &'a Root,
    /// The keys it gets.
    pub new: &'a Root,
    /// Its desired state with the new keys.
    pub desired: &'a Desired,
    /// The seed that state is (already written to the machine's seed disk).
    pub seed: &'a SeedId,
    /// The `ProxyCommand` that reaches the machine's sshd.
    pub proxy: String,
}

/// Why a running machine was not brought to its new keys.
#[derive(Debug, thiserror::Error)]
pub enum ReprovisionError {
    /// Neither the old nor the new keys logged in and applied the state.
    #[error("{machine}: cannot apply the new keys")]
    Apply {
        /// The machine.
        machine: MachineName,
        /// The failure with the old keys.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The new keys were applied, but the machine does not answer with them.
    #[error("{machine}: after provisioning it does not present the new host key: {last}")]
    Check {
        /// The machine.
        machine: MachineName,
        /// What the last try found.
        last: String,
    },
    /// The session of the new keys could not be prepared.
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl Classify for ReprovisionError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failure
    }
}

/// How a login failed: preparing the session, or the apply over it.
#[derive(Debug, thiserror::Error)]
enum LoginError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// Brings the running machine `r.machine` to its new keys (see the module documentation).
/// `on_applied` sees what the apply changed as soon as it is done, before the check.
pub fn reprovision(
    r: &Reprovision<'_>,
    on_applied: &mut dyn FnMut(&Applied),
) -> Result<Applied, ReprovisionError> {
    let route = Route::Proxy {
        command: r.proxy.clone(),
        host: r.machine.as_str().to_string(),
        // A guest whose sshd never answers (the relay is there, sshd is not) ends in minutes, not
        // never; under TCG, on a host busy with other guests, a first answer took over a minute.
        connect_timeout: Some(180),
    };
    let apply_with = |keys: &Root| -> Result<Applied, LoginError> {
        let session = Session::new(keys, r.person, r.machine, r.machine.as_str())?;
        let target = session.target(&route, HostKeyCheck::Strict, r.desired.os);
        Ok(crate::apply::apply(r.desired, &target, &SystemRunner)?)
    };
    let done = match apply_with(r.old) {
        Ok(done) => done,
        Err(e) => apply_with(r.new).map_err(|_| ReprovisionError::Apply {
            machine: r.machine.clone(),
            source: Box::new(e),
        })?,
    };
    on_applied(&done);
    let check = Session::new(r.new, r.person, r.machine, r.machine.as_str())?;
    let target = check.target(&route, HostKeyCheck::Strict, r.desired.os);
    let mark_and_name = format!(
        "mkdir -p /var/lib/multiverse && printf '%s\\n' {} > /var/lib/multiverse/seed-id.tmp && mv /var/lib/multiverse/seed-id.tmp /var/lib/multiverse/seed-id && hostname -f",
        r.seed.0
    );
    let mut last = String::new();
    for _ in 0..10 {
        match Session::run(&target, &mark_and_name) {
            Ok(out) if out.trim() == r.machine.as_str() => return Ok(done),
            Ok(out) => last = format!("it answered {:?} as its hostname", out.trim()),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    Err(ReprovisionError::Check {
        machine: r.machine.clone(),
        last,
    })
}
