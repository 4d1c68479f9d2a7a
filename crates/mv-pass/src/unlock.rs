//! Unlock once per session: the order in which a command looks in the session cache, takes the
//! unlock lock, unseals and hands the result to the agent ([`Client::unlock`]), shared by the
//! pass keys and the CLI's identity root; and the sealed keys of a key folder under their cache
//! ids ([`KeyDir::sealed_cache_ids`], [`KeyDir::unseal_each`]); and which keys a reading
//! command starts from ([`KeyDir::reading_keys`]).
//!
//! What this is not: unsealing itself, or asking for a passphrase. The caller's [`UnlockSteps`] do
//! both (mv-pass never unseals or derives keys), and says what it wants printed.

use crate::agent::{cache_id, AgentError, Client, Lifetime};
use crate::keydir::{KeyDir, KeyDirError};
use crate::keys::Keyring;
use mv_core::secret::SecretBytes;
use std::path::Path;

/// The caller's part of [`Client::unlock`].
pub trait UnlockSteps {
    /// The caller's error (a wrong passphrase, a damaged file).
    type Error;

    /// Makes the values, in the order of the ids (asks for the passphrase, unseals). Called
    /// at most once, after the session cache missed, under the unlock lock when it could be
    /// taken.
    fn unseal(&mut self) -> Result<Vec<SecretBytes>, Self::Error>;

    /// Starts the agent unless one answers; true once one answers (`false`: nothing is stored).
    fn start_agent(&mut self, agent: &Client) -> bool;

    /// Called after the cache missed, before the unlock lock is taken: work that takes the lock
    /// itself (another value's own [`Client::unlock`]) must be done here, as the lock is not
    /// reentrant. Nothing by default.
    fn before_lock(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Whether a value found in the cache is usable (a miss otherwise). All are by default.
    fn usable(&self, _value: &SecretBytes) -> bool {
        true
    }

    /// The unlock lock cannot be taken: the values are unsealed for this command only, and
    /// nothing is stored. Ignored by default.
    fn no_cache(&mut self, _error: &AgentError) {}
}

/// What [`Client::unlock`] found or made.
#[derive(Debug)]
pub struct Unlocked {
    /// The values, in the order of the ids.
    pub values: Vec<SecretBytes>,
    /// They were unsealed by this call and are now held by the agent (the caller may say so).
    pub stored: bool,
}

impl Client {
    /// The values under `ids`: from the agent when it holds them all (and [`UnlockSteps::usable`]
    /// accepts them); else, holding the unlock lock (so concurrent first commands unseal once,
    /// and the second finds what the first stored), looked up again, and on a second miss
    /// unsealed by `steps` and handed to the agent for `life`. A failed unseal stores nothing.
    pub fn unlock<U: UnlockSteps>(
        &self,
        ids: &[String],
        life: Lifetime,
        steps: &mut U,
    ) -> Result<Unlocked, U::Error> {
        let fetch = |steps: &U| -> Option<Vec<SecretBytes>> {
            let mut got = Vec::with_capacity(ids.len());
            for id in ids {
                let v = self.get(id)?;
                if !steps.usable(&v) {
                    return None;
                }
                got.push(v);
            }
            Some(got)
        };
        if let Some(values) = fetch(steps) {
            return Ok(Unlocked {
                values,
                stored: false,
            });
        }
        steps.before_lock()?;
        let guard = match self.unlock_guard() {
            Ok(g) => Some(g),
            Err(e) => {
                steps.no_cache(&e);
                None
            }
        };
        if guard.is_some() {
            if let Some(values) = fetch(steps) {
                return Ok(Unlocked {
                    values,
                    stored: false,
                });
            }
        }
        let values = steps.unseal()?;
        let stored = guard.is_some()
            && steps.start_agent(self)
            && ids
                .iter()
                .zip(&values)
                .all(|(id, v)| self.put(id, v.expose(), life).is_ok());
        drop(guard);
        Ok(Unlocked { values, stored })
    }
}

/// The keys a command that decrypts starts from ([`KeyDir::reading_keys`]).
#[derive(Debug)]
pub enum ReadingKeys {
    /// Clear secret keys, and no sealed one: nothing to unlock, no passphrase to ask.
    Clear(Keyring),
    /// The key folder's keys so far; the sealed keys and the identity's key must be unlocked
    /// and added ([`Client::unlock`], or unsealed for this command only).
    Unlock(Keyring),
    /// No secret key at all: none in the folder and no identity to derive one from.
    None,
}

impl KeyDir {
    /// Which keys reading starts from: the certificates and clear secret keys (only the
    /// secret keys when `decrypt_only`: encrypting is what needs certificates), and whether
    /// the sealed keys and the identity's key (`has_identity`) must be unlocked. The identity's
    /// key is unlocked whenever a sealed key is (one passphrase for both), or when there is no
    /// other secret key; a clear secret key and no sealed one need nothing.
    pub fn reading_keys(
        &self,
        decrypt_only: bool,
        has_identity: bool,
    ) -> Result<ReadingKeys, KeyDirError> {
        let ring = if decrypt_only {
            self.load_secrets()?
        } else {
            self.load(None)?
        };
        if self.has_sealed()? {
            return Ok(ReadingKeys::Unlock(ring));
        }
        Ok(if ring.has_secret() {
            ReadingKeys::Clear(ring)
        } else if has_identity {
            ReadingKeys::Unlock(ring)
        } else {
            ReadingKeys::None
        })
    }

    /// The session cache ids of the sealed secret keys, in [`KeyDir::sealed_files`] order (no
    /// passphrase needed: an id is a hash of the sealed bytes).
    pub fn sealed_cache_ids(&self) -> Result<Vec<String>, KeyDirError> {
        Ok(self
            .sealed_files()?
            .iter()
            .map(|(_, sealed)| cache_id("sealed", sealed))
            .collect())
    }

    /// Every sealed secret key opened by `open` (the caller's unseal, given the file and its
    /// bytes), with its session cache id, in [`KeyDir::sealed_files`] order. The first failure
    /// stops: nothing after it is opened.
    pub fn unseal_each<E: From<KeyDirError>>(
        &self,
        mut open: impl FnMut(&Path, &[u8]) -> Result<SecretBytes, E>,
    ) -> Result<Vec<(String, SecretBytes)>, E> {
        let mut out = Vec::new();
        for (path, sealed) in self.sealed_files()? {
            let plain = open(&path, &sealed)?;
            out.push((cache_id("sealed", &sealed), plain));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    struct Steps {
        unsealed: usize,
        before: usize,
    }

    impl UnlockSteps for Steps {
        type Error = String;
        fn unseal(&mut self) -> Result<Vec<SecretBytes>, String> {
            self.unsealed += 1;
            Ok(vec![SecretBytes::new(b"one".to_vec())])
        }
        fn start_agent(&mut self, _agent: &Client) -> bool {
            false
        }
        fn before_lock(&mut self) -> Result<(), String> {
            self.before += 1;
            Ok(())
        }
    }

    /// No agent runs: every call misses, unseals, and stores nothing.
    #[test]
    fn without_an_agent_every_call_unseals_and_nothing_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::new(dir.path().join("agent"));
        let mut steps = Steps {
            unsealed: 0,
            before: 0,
        };
        for _ in 0..2 {
            let u = client
                .unlock(&["x:1".to_string()], Lifetime::default(), &mut steps)
                .unwrap();
            assert!(!u.stored);
            assert_eq!(u.values.len(), 1);
        }
        assert_eq!((steps.unsealed, steps.before), (2, 2));
    }
}
