//! The key folder: where the store's OpenPGP keys live when gpg is not used.
//!
//! Layout (one folder, outside the store so that nothing secret is ever committed with it):
//!
//! | file | mode | holds |
//! |---|---|---|
//! | `<FPR>.pub.asc` | 0644 | a recipient's certificate (ours or someone else's) |
//! | `<FPR>.sec.sealed` | 0600 | a secret key, sealed by the caller (the CLI seals under the identity passphrase) |
//! | `<FPR>.sec.asc` | 0600 | a secret key in the clear, only when asked for (`--unsealed`), like a gpg key with an empty passphrase |
//!
//! This module does not seal or unseal: it takes closures, so the store crate does not depend on
//! how the identity protects secrets. Writing is atomic (`mv_core::fsutil`).

use crate::keys::{self, KeyError, Keyring};
use mv_core::fsutil::{self, FsError};
use mv_core::secret::SecretBytes;
use pgp::composed::{SignedPublicKey, SignedSecretKey};
use std::path::{Path, PathBuf};

/// Errors reading or writing the key folder.
#[derive(Debug, thiserror::Error)]
pub enum KeyDirError {
    /// Listing or reading a file failed.
    #[error("cannot read {path}")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file does not parse.
    #[error("bad key file {path}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// Unsealing a sealed key failed (wrong passphrase, damaged file).
    #[error("cannot unseal {path}")]
    Unseal {
        /// The file.
        path: PathBuf,
        /// Why (from the sealing layer).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] FsError),
}

/// How a secret key is kept in the key folder ([`KeyDir::secret_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretState {
    /// `<FPR>.sec.asc`, in the clear.
    Clear,
    /// `<FPR>.sec.sealed`.
    Sealed,
    /// Only the certificate.
    None,
}

impl SecretState {
    /// `clear`, `sealed` or `none`, as `pass key ls` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretState::Clear => "clear",
            SecretState::Sealed => "sealed",
            SecretState::None => "none",
        }
    }
}

/// A certificate [`KeyDir::take_from_gpg`] took from gpg's keyring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenKey {
    /// Its fingerprint (upper-case hex).
    pub fingerprint: String,
    /// The recipient it was taken for.
    pub recipient: String,
    /// Whether it was kept in the key folder.
    pub saved: bool,
}

/// A key folder.
#[derive(Debug, Clone)]
pub struct KeyDir {
    dir: PathBuf,
}

/// The unseal function the caller supplies: sealed bytes in, plaintext out.
pub type Unseal<'a> =
    dyn Fn(&[u8]) -> Result<SecretBytes, Box<dyn std::error::Error + Send + Sync>> + 'a;

impl KeyDir {
    /// The folder at `dir` (need not exist yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KeyDir { dir: dir.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn files_ending(&self, suffix: &str) -> Result<Vec<PathBuf>, KeyDirError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(KeyDirError::Read {
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut out: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(suffix) && !n.starts_with('.'))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn read(path: &Path) -> Result<Vec<u8>, KeyDirError> {
        std::fs::read(path).map_err(|source| KeyDirError::Read {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Every sealed secret key file and its bytes (for callers that unseal, or look the keys up
    /// in the session cache, one by one).
    pub fn sealed_files(&self) -> Result<Vec<(PathBuf, Vec<u8>)>, KeyDirError> {
        self.files_ending(".sec.sealed")?
            .into_iter()
            .map(|p| {
                let b = Self::read(&p)?;
                Ok((p, b))
            })
            .collect()
    }

    /// Whether any sealed secret key is present (so the caller knows to ask for a passphrase).
    pub fn has_sealed(&self) -> Result<bool, KeyDirError> {
        Ok(!self.files_ending(".sec.sealed")?.is_empty())
    }

    /// Loads every certificate, every clear secret key, and (with `unseal`) every sealed one.
    pub fn load(&self, unseal: Option<&Unseal<'_>>) -> Result<Keyring, KeyDirError> {
        let mut ring = Keyring::new();
        for path in self.files_ending(".pub.asc")? {
            let bytes = Self::read(&path)?;
            let key = keys::parse_public_key(&bytes)
                .map_err(|source| KeyDirError::BadKey { path, source })?;
            ring.add_public(key);
        }
        self.add_secrets(&mut ring, unseal)?;
        Ok(ring)
    }

    /// Loads the clear secret keys only: what decrypting needs, without reading (and checking
    /// the signatures of) every certificate. The ring knows only their own certificates.
    pub fn load_secrets(&self) -> Result<Keyring, KeyDirError> {
        let mut ring = Keyring::new();
        self.add_secrets(&mut ring, None)?;
        Ok(ring)
    }

    /// Adds every clear secret key, and (with `unseal`) every sealed one, to `ring`.
    fn add_secrets(
        &self,
        ring: &mut Keyring,
        unseal: Option<&Unseal<'_>>,
    ) -> Result<(), KeyDirError> {
        for path in self.files_ending(".sec.asc")? {
            let bytes = SecretBytes::new(Self::read(&path)?);
            let key = keys::parse_secret_key(bytes.expose(), None)
                .map_err(|source| KeyDirError::BadKey { path, source })?;
            ring.add_secret(key);
        }
        if let Some(unseal) = unseal {
            for path in self.files_ending(".sec.sealed")? {
                let sealed = Self::read(&path)?;
                let plain = unseal(&sealed).map_err(|source| KeyDirError::Unseal {
                    path: path.clone(),
                    source,
                })?;
                let key = keys::parse_secret_key(plain.expose(), None)
                    .map_err(|source| KeyDirError::BadKey { path, source })?;
                ring.add_secret(key);
            }
        }
        Ok(())
    }

    /// Writes a certificate; `Ok(false)` when it was already there.
    pub fn put_public(&self, key: &SignedPublicKey) -> Result<bool, KeyDirError> {
        let path = self.dir.join(format!(
            "{}.pub.asc",
            keys::fingerprint_hex(&key.primary_key)
        ));
        let armored = keys::armor_public(key).map_err(|source| KeyDirError::BadKey {
            path: path.clone(),
            source,
        })?;
        Ok(fsutil::write_public(&path, &armored)?)
    }

    /// Path a secret key of fingerprint `fpr` is sealed at.
    pub fn sealed_path(&self, fpr: &str) -> PathBuf {
        self.dir.join(format!("{fpr}.sec.sealed"))
    }

    /// Path a clear secret key of fingerprint `fpr` is kept at.
    pub fn clear_path(&self, fpr: &str) -> PathBuf {
        self.dir.join(format!("{fpr}.sec.asc"))
    }

    /// Writes an already sealed secret key (mode 0600) and its certificate.
    pub fn put_sealed(&self, key: &SignedSecretKey, sealed: &[u8]) -> Result<(), KeyDirError> {
        self.put_public(&key.to_public_key())?;
        fsutil::write_secret(
            &self.sealed_path(&keys::fingerprint_hex(&key.primary_key)),
            sealed,
        )?;
        Ok(())
    }

    /// Writes a secret key in the clear (mode 0600) and its certificate.
    pub fn put_clear(&self, key: &SignedSecretKey) -> Result<(), KeyDirError> {
        self.put_public(&key.to_public_key())?;
        let path = self.clear_path(&keys::fingerprint_hex(&key.primary_key));
        let armored = keys::armor_secret(key).map_err(|source| KeyDirError::BadKey {
            path: path.clone(),
            source,
        })?;
        fsutil::write_secret(&path, armored.expose())?;
        Ok(())
    }

    /// Seals a secret key with `seal` (the caller's sealing: armored key in, sealed bytes out)
    /// and writes it with [`KeyDir::put_sealed`]; this crate never sees the passphrase.
    pub fn put_sealed_by(
        &self,
        key: &SignedSecretKey,
        seal: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Result<(), KeyDirError> {
        let plain = keys::armor_secret(key).map_err(|source| KeyDirError::BadKey {
            path: self.sealed_path(&keys::fingerprint_hex(&key.primary_key)),
            source,
        })?;
        self.put_sealed(key, &seal(plain.expose()))
    }

    /// How the secret key `fpr` is kept here, if at all.
    pub fn secret_state(&self, fpr: &str) -> SecretState {
        if self.clear_path(fpr).exists() {
            SecretState::Clear
        } else if self.sealed_path(fpr).exists() {
            SecretState::Sealed
        } else {
            SecretState::None
        }
    }

    /// Takes the certificates of `wanted` recipients that `ring` lacks from gpg's keyring,
    /// read-only (`gpg --export`; gpg's files are not changed), adds them to `ring` and, with
    /// `save`, keeps them in this folder. Returns what was taken, for the caller to say; gpg
    /// missing or failing takes nothing.
    pub fn take_from_gpg(
        &self,
        ring: &mut Keyring,
        wanted: &[String],
        save: bool,
    ) -> Vec<TakenKey> {
        let mut taken = Vec::new();
        for id in ring.expand_groups(wanted) {
            if !matches!(ring.resolve(&id), Err(KeyError::UnknownRecipient(_))) {
                continue;
            }
            let Ok(out) = std::process::Command::new("gpg")
                .args(["--batch", "--export", "--armor", "--", &id])
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
            else {
                return taken;
            };
            if !out.status.success() || out.stdout.is_empty() {
                continue;
            }
            let Ok(cert) = keys::parse_public_key(&out.stdout) else {
                continue;
            };
            let fingerprint = keys::fingerprint_hex(&cert);
            let saved = save && self.put_public(&cert).unwrap_or(false);
            ring.add_public(cert);
            taken.push(TakenKey {
                fingerprint,
                recipient: id,
                saved,
            });
        }
        taken
    }

    /// Whether the secret key `fpr` is present (sealed or clear).
    pub fn has_secret(&self, fpr: &str) -> bool {
        self.sealed_path(fpr).exists() || self.clear_path(fpr).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::test_key;

    #[test]
    fn stores_and_loads_with_a_sealer() {
        let d = tempfile::tempdir().unwrap();
        let kd = KeyDir::new(d.path().join("keys"));
        let k = test_key("Carol <carol@example.org>");
        let fpr = keys::secret_fingerprint(&k);
        // A toy "seal": xor. The real one is the CLI's; this checks the plumbing only.
        let armored = keys::armor_secret(&k).unwrap();
        let sealed: Vec<u8> = armored.expose().iter().map(|b| b ^ 0x5a).collect();
        kd.put_sealed(&k, &sealed).unwrap();
        assert!(kd.has_secret(&fpr));
        assert!(kd.has_sealed().unwrap());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(kd.sealed_path(&fpr))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);

        let public_only = kd.load(None).unwrap();
        assert!(!public_only.has_secret());
        let unseal = |b: &[u8]| -> Result<SecretBytes, Box<dyn std::error::Error + Send + Sync>> {
            Ok(SecretBytes::new(b.iter().map(|x| x ^ 0x5a).collect()))
        };
        let ring = kd.load(Some(&unseal)).unwrap();
        assert!(ring.has_secret());
        let failing = |_: &[u8]| -> Result<SecretBytes, Box<dyn std::error::Error + Send + Sync>> {
            Err("wrong passphrase".into())
        };
        let err = kd.load(Some(&failing)).unwrap_err();
        assert!(err.to_string().contains(".sec.sealed"), "{err}");

        std::fs::write(d.path().join("keys/BAD.pub.asc"), b"nope").unwrap();
        let err = kd.load(None).unwrap_err();
        assert!(err.to_string().contains("BAD.pub.asc"), "{err}");
    }
}
