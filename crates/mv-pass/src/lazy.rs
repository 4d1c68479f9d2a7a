//! [`LazyCrypto`]: keys that unlock only when a secret key is needed.
//!
//! Writing needs certificates alone; the sealed key (a passphrase, or the session cache) is
//! opened only for the first decryption. So `mv`/`cp` of entries already encrypted for their
//! new place, or `init` with nothing to re-encrypt, never ask for anything. An unlock failure is
//! kept, so the caller can report it as it is ([`LazyCrypto::take_failure`]) instead of the
//! store's "keys unavailable".

use crate::{Crypto, CryptoError};
use mv_core::secret::SecretBytes;
use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

/// How the caller makes keys: `Ok` keys, or its own error `E`.
type Make<'a, E> = Box<dyn Fn() -> Result<Box<dyn Crypto>, E> + Send + Sync + 'a>;

/// A [`Crypto`] that makes its keys on first use: `read` (secret keys) for decrypting, `write`
/// (certificates) for encrypting until `read` has been made.
pub struct LazyCrypto<'a, E> {
    read_keys: Make<'a, E>,
    write_keys: Make<'a, E>,
    parallel: bool,
    read: OnceLock<Result<Box<dyn Crypto>, String>>,
    write: OnceLock<Result<Box<dyn Crypto>, String>>,
    failure: Mutex<Option<E>>,
}

impl<E> std::fmt::Debug for LazyCrypto<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyCrypto")
            .field("read", &self.read.get().map(|r| r.is_ok()))
            .field("write", &self.write.get().map(|r| r.is_ok()))
            .finish_non_exhaustive()
    }
}

impl<'a, E: std::fmt::Display + Send> LazyCrypto<'a, E> {
    /// Keys made by `read_keys` (to decrypt) and `write_keys` (to encrypt); `parallel` is what
    /// [`Crypto::parallel`] answers (false for gpg).
    pub fn new(
        read_keys: impl Fn() -> Result<Box<dyn Crypto>, E> + Send + Sync + 'a,
        write_keys: impl Fn() -> Result<Box<dyn Crypto>, E> + Send + Sync + 'a,
        parallel: bool,
    ) -> Self {
        LazyCrypto {
            read_keys: Box::new(read_keys),
            write_keys: Box::new(write_keys),
            parallel,
            read: OnceLock::new(),
            write: OnceLock::new(),
            failure: Mutex::new(None),
        }
    }

    fn get<'s>(
        &'s self,
        cell: &'s OnceLock<Result<Box<dyn Crypto>, String>>,
        read: bool,
    ) -> Result<&'s dyn Crypto, CryptoError> {
        let r = cell.get_or_init(|| {
            let made = if read {
                (self.read_keys)()
            } else {
                (self.write_keys)()
            };
            made.map_err(|e| {
                let text = e.to_string();
                if let Ok(mut f) = self.failure.lock() {
                    f.get_or_insert(e);
                }
                text
            })
        });
        match r {
            Ok(b) => Ok(b.as_ref()),
            Err(text) => Err(CryptoError::Unavailable(text.clone())),
        }
    }

    /// The first unlock failure, if one happened (taken: a second call gives `None`).
    pub fn take_failure(&self) -> Option<E> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }

    /// The encrypting keys: the reading ones once made, else the writing ones.
    fn encrypting(&self) -> Result<&dyn Crypto, CryptoError> {
        match self.read.get() {
            Some(Ok(r)) => Ok(r.as_ref()),
            _ => self.get(&self.write, false),
        }
    }
}

impl<E: std::fmt::Display + Send> Crypto for LazyCrypto<'_, E> {
    fn decrypt(&self, data: &[u8]) -> Result<SecretBytes, CryptoError> {
        self.get(&self.read, true)?.decrypt(data)
    }
    fn encrypt(&self, plain: &[u8], recipients: &[String]) -> Result<Vec<u8>, CryptoError> {
        self.encrypting()?.encrypt(plain, recipients)
    }
    fn recipient_key_ids(&self, recipients: &[String]) -> Result<BTreeSet<String>, CryptoError> {
        self.encrypting()?.recipient_key_ids(recipients)
    }
    fn encryption_key_ids(&self, recipients: &[String]) -> Result<BTreeSet<String>, CryptoError> {
        self.encrypting()?.encryption_key_ids(recipients)
    }
    fn parallel(&self) -> bool {
        self.parallel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_unlock_is_kept_once_and_reported_as_unavailable() {
        let lazy: LazyCrypto<'_, String> = LazyCrypto::new(
            || Err("wrong passphrase".to_string()),
            || Err("no certificate".to_string()),
            true,
        );
        assert!(
            matches!(lazy.decrypt(b"x"), Err(CryptoError::Unavailable(t)) if t == "wrong passphrase")
        );
        assert!(lazy.decrypt(b"x").is_err());
        assert_eq!(lazy.take_failure().as_deref(), Some("wrong passphrase"));
        assert_eq!(lazy.take_failure(), None);
    }
}
