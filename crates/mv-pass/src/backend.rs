//! Who does the OpenPGP work: the in-process [`Keyring`] (the default) or gpg ([`Gpg`], for keys
//! that live on a smartcard or in gpg-agent).
//!
//! Both implement [`Crypto`], which the store calls for every entry. The gpg backend runs one
//! `gpg` per call with the plaintext on stdin/stdout (never argv, never a temp file) and the
//! recipients as `-r` arguments (public key ids, not secrets), with pass's own options
//! (`--compress-algo=none --no-encrypt-to`).

use crate::keys::{self, KeyError, Keyring};
use mv_core::secret::SecretBytes;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Errors of the gpg backend.
#[derive(Debug, thiserror::Error)]
pub enum GpgError {
    /// gpg could not be started.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// gpg exited with an error.
    #[error("gpg {action} failed ({status}): {stderr}")]
    Failed {
        /// "--decrypt", "--encrypt", ...
        action: &'static str,
        /// Exit status.
        status: std::process::ExitStatus,
        /// Its last stderr lines.
        stderr: String,
    },
}

/// Errors of a [`Crypto`] operation.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// In-process OpenPGP.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// gpg.
    #[error(transparent)]
    Gpg(#[from] GpgError),
    /// The caller could not make the keys available (a lazy unlock failed).
    #[error("keys unavailable: {0}")]
    Unavailable(String),
}

/// Encrypts and decrypts entries.
pub trait Crypto: Send + Sync {
    /// Decrypts one entry's bytes.
    fn decrypt(&self, data: &[u8]) -> Result<SecretBytes, CryptoError>;
    /// Encrypts `plain` to the `.gpg-id` recipients.
    fn encrypt(&self, plain: &[u8], recipients: &[String]) -> Result<Vec<u8>, CryptoError>;
    /// Every key id (upper-case hex, 16 digits) belonging to the recipients, for fsck.
    fn recipient_key_ids(&self, recipients: &[String]) -> Result<BTreeSet<String>, CryptoError>;
    /// The key ids an entry encrypted now to `recipients` is addressed to (gpg groups
    /// expanded): the store re-encrypts an entry only when its key ids differ, as pass does.
    /// An unknown recipient is an error.
    fn encryption_key_ids(&self, recipients: &[String]) -> Result<BTreeSet<String>, CryptoError>;
    /// Whether decrypting many entries at once pays off (false for gpg, which serialises on its agent).
    fn parallel(&self) -> bool {
        true
    }
}

impl Crypto for Keyring {
    fn decrypt(&self, data: &[u8]) -> Result<SecretBytes, CryptoError> {
        Ok(Keyring::decrypt(self, data)?)
    }
    fn encrypt(&self, plain: &[u8], recipients: &[String]) -> Result<Vec<u8>, CryptoError> {
        Ok(Keyring::encrypt(self, plain, recipients)?)
    }
    fn recipient_key_ids(&self, recipients: &[String]) -> Result<BTreeSet<String>, CryptoError> {
        Ok(Keyring::recipient_key_ids(self, recipients)?)
    }
    fn encryption_key_ids(&self, recipients: &[String]) -> Result<BTreeSet<String>, CryptoError> {
        Ok(Keyring::encryption_key_ids(self, recipients)?)
    }
}

/// gpg as a backend: `GNUPGHOME` and gpg-agent as the environment has them.
#[derive(Debug, Clone)]
pub struct Gpg {
    program: PathBuf,
}

impl Default for Gpg {
    fn default() -> Self {
        Gpg {
            program: PathBuf::from("gpg"),
        }
    }
}

impl Gpg {
    /// gpg from `PATH`.
    pub fn new() -> Self {
        Self::default()
    }

    fn run(
        &self,
        action: &'static str,
        args: &[&str],
        input: &[u8],
    ) -> Result<SecretBytes, GpgError> {
        let mut child = Command::new(&self.program)
            .args(["--batch", "--quiet", "--yes"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| GpgError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        // Write stdin from a thread: gpg may fill its stdout pipe before reading all of stdin.
        let mut stdin = child.stdin.take();
        let input = SecretBytes::new(input.to_vec());
        let writer = std::thread::spawn(move || {
            if let Some(s) = stdin.as_mut() {
                let _ = s.write_all(input.expose());
            }
        });
        let out = child.wait_with_output().map_err(|source| GpgError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        let _ = writer.join();
        let stdout = SecretBytes::new(out.stdout);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            return Err(GpgError::Failed {
                action,
                status: out.status,
                stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
            });
        }
        Ok(stdout)
    }

    /// A detached signature of `data` by the first usable of `keys` (gpg's `--default-key`,
    /// as pass signs `.gpg-id` for `PASSWORD_STORE_SIGNING_KEY`). Not in batch mode: a
    /// passphrase-protected signing key may ask through gpg-agent's pinentry.
    pub fn detach_sign(&self, data: &[u8], keys: &[String]) -> Result<Vec<u8>, GpgError> {
        let mut args: Vec<&str> = Vec::new();
        for k in keys {
            args.extend(["--default-key", k.as_str()]);
        }
        args.extend(["--detach-sign", "-o", "-", "-"]);
        let mut child = Command::new(&self.program)
            .args(["--quiet", "--yes"])
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| GpgError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(data);
        }
        let out = child.wait_with_output().map_err(|source| GpgError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        if !out.status.success() || out.stdout.is_empty() {
            return Err(GpgError::Failed {
                action: "--detach-sign",
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out.stdout)
    }

    /// The good signatures of `sig` (a detached signature file) over `data`, from gpg's
    /// `VALIDSIG` status lines: (signing key, primary key) fingerprints, 40 hex digits each.
    /// Empty when the signature is bad or gpg cannot check it.
    pub fn valid_signers(&self, data: &[u8], sig: &Path) -> Vec<(String, String)> {
        let Some(sig) = sig.to_str() else {
            return Vec::new();
        };
        let Ok(out) = self.run("--verify", &["--status-fd=1", "--verify", sig, "-"], data) else {
            return Vec::new();
        };
        let fpr = |f: &&&str| f.len() == 40 && f.bytes().all(|b| b.is_ascii_hexdigit());
        String::from_utf8_lossy(out.expose())
            .lines()
            .filter_map(|l| l.strip_prefix("[GNUPG:] VALIDSIG "))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                match (f.first().filter(fpr), f.last().filter(fpr)) {
                    (Some(a), Some(b)) => Some((a.to_string(), b.to_string())),
                    _ => None,
                }
            })
            .collect()
    }

    /// Key ids (16 hex digits) of a key gpg knows, primary and subkeys.
    fn key_ids(&self, recipient: &str) -> Result<BTreeSet<String>, GpgError> {
        let out = self.run(
            "--list-keys",
            &["--with-colons", "--list-keys", "--", recipient],
            b"",
        )?;
        let text = String::from_utf8_lossy(out.expose()).into_owned();
        Ok(text
            .lines()
            .filter(|l| l.starts_with("pub:") || l.starts_with("sub:"))
            .filter_map(|l| l.split(':').nth(4))
            .map(str::to_ascii_uppercase)
            .collect())
    }
}

impl Gpg {
    /// gpg's groups: `gpg --list-config --with-colons` lines `cfg:group:NAME:ID;ID`.
    fn groups(&self) -> Result<std::collections::BTreeMap<String, Vec<String>>, GpgError> {
        let out = self.run("--list-config", &["--list-config", "--with-colons"], b"")?;
        let text = String::from_utf8_lossy(out.expose()).into_owned();
        Ok(text
            .lines()
            .filter_map(|l| l.strip_prefix("cfg:group:"))
            .filter_map(|l| l.split_once(':'))
            .map(|(name, ids)| {
                (
                    name.to_string(),
                    ids.split(';')
                        .filter(|i| !i.is_empty())
                        .map(String::from)
                        .collect(),
                )
            })
            .collect())
    }
}

impl Crypto for Gpg {
    fn encryption_key_ids(&self, recipients: &[String]) -> Result<BTreeSet<String>, CryptoError> {
        // As pass: groups expanded, then the valid encryption subkeys of every key.
        let groups = self.groups()?;
        let mut ids: Vec<String> = Vec::new();
        for r in recipients {
            match groups.get(r) {
                Some(m) => ids.extend(m.iter().cloned()),
                None => ids.push(r.clone()),
            }
        }
        let mut args: Vec<&str> = vec!["--with-colons", "--list-keys", "--"];
        args.extend(ids.iter().map(String::as_str));
        let out = self.run("--list-keys", &args, b"")?;
        let text = String::from_utf8_lossy(out.expose()).into_owned();
        Ok(text
            .lines()
            .filter(|l| l.starts_with("sub:"))
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| {
                let validity = f.get(1).copied().unwrap_or("");
                let caps = f.get(11).copied().unwrap_or("");
                !validity.contains(['i', 'd', 'r']) && caps.contains('e')
            })
            .filter_map(|f| f.get(4).map(|s| s.to_ascii_uppercase()))
            .collect())
    }

    fn decrypt(&self, data: &[u8]) -> Result<SecretBytes, CryptoError> {
        Ok(self.run("--decrypt", &["--decrypt"], data)?)
    }
    fn encrypt(&self, plain: &[u8], recipients: &[String]) -> Result<Vec<u8>, CryptoError> {
        let mut args = vec![
            "--encrypt",
            "--compress-algo=none",
            "--no-encrypt-to",
            "--trust-model",
            "always",
        ];
        for r in recipients {
            args.push("-r");
            args.push(r);
        }
        let out = self.run("--encrypt", &args, plain)?;
        Ok(out.expose().clone())
    }
    fn recipient_key_ids(&self, recipients: &[String]) -> Result<BTreeSet<String>, CryptoError> {
        let mut all = BTreeSet::new();
        for r in recipients {
            all.extend(self.key_ids(r)?);
        }
        Ok(all)
    }
    fn parallel(&self) -> bool {
        false
    }
}

/// Key ids an encrypted entry is addressed to (no decryption needed).
pub fn entry_key_ids(data: &[u8]) -> Result<Vec<String>, KeyError> {
    keys::message_key_ids(data)
}
