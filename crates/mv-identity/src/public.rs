//! Public material: [`PublicIdentity`] (what `identity show` prints) and [`PublicRecord`], the file
//! `<tree>/identity/public.json` that holds the public identity of every name derived so far.
//!
//! The record is readable without the passphrase, so `machine show` and other read-only commands can
//! print a machine's keys and onion address. It is refreshed whenever the root is unsealed for
//! `show`, `export` or `fleet`. It is a cache of public values, never a source of truth: every value
//! can be derived again from the root.

use crate::keys::{public_line, KeyError};
use crate::openpgp::fingerprint_hex;
use crate::root::Root;
use mv_core::fsutil::{self, FsError};
use mv_core::IdentityName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Version of the public record format.
pub const PUBLIC_RECORD_VERSION: u32 = 1;

/// The public identity of one name. Field names are stable (`identity show --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicIdentity {
    /// The name (`universe.router.multiverse` or `@user`).
    pub name: String,
    /// The epoch the keys are derived at (0: never rotated, spec v1).
    #[serde(default)]
    pub epoch: u32,
    /// Login Ed25519 key, an OpenSSH public key line without comment.
    pub ssh_ed25519: String,
    /// Login ECDSA P-256 key line.
    pub ssh_ecdsa_p256: String,
    /// sshd Ed25519 host key line.
    pub ssh_host_ed25519: String,
    /// sshd ECDSA P-256 host key line.
    pub ssh_host_ecdsa_p256: String,
    /// The onion address (`….onion`).
    pub onion: String,
    /// OpenPGP fingerprint, 40 upper-case hex digits.
    pub openpgp_fingerprint: String,
}

impl Root {
    /// Derives the public identity of `name`.
    pub fn public_identity(&self, name: &IdentityName) -> Result<PublicIdentity, KeyError> {
        Ok(PublicIdentity {
            name: name.as_str().to_string(),
            epoch: self.epoch(name),
            ssh_ed25519: public_line(&self.ssh_ed25519(name)?),
            ssh_ecdsa_p256: public_line(&self.ssh_ecdsa_p256(name)?),
            ssh_host_ed25519: public_line(&self.ssh_host_ed25519(name)?),
            ssh_host_ecdsa_p256: public_line(&self.ssh_host_ecdsa_p256(name)?),
            onion: self.onion_v3(name).hostname,
            openpgp_fingerprint: fingerprint_hex(&self.openpgp(name)?),
        })
    }
}

/// Why the public record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PublicRecordError {
    /// Reading failed (other than "does not exist").
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid JSON of the expected shape.
    #[error("{path} is not a valid public identity record")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A newer format.
    #[error("{path} has record version {found}; this build reads version {PUBLIC_RECORD_VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// Writing failed.
    #[error("cannot write the public identity record")]
    Write(#[source] FsError),
}

/// The contents of `identity/public.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PublicRecord {
    /// Format version ([`PUBLIC_RECORD_VERSION`]).
    pub version: u32,
    /// Public identities by name, sorted.
    pub identities: BTreeMap<String, PublicIdentity>,
}

impl PublicRecord {
    /// The record's path for a tree.
    pub fn path(tree_root: &Path) -> PathBuf {
        mv_core::layout::Tree::new(tree_root).public_identity()
    }

    /// Loads the record of a tree; an absent file is an empty record.
    pub fn load(tree_root: &Path) -> Result<PublicRecord, PublicRecordError> {
        let path = Self::path(tree_root);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PublicRecord {
                    version: PUBLIC_RECORD_VERSION,
                    identities: BTreeMap::new(),
                })
            }
            Err(source) => return Err(PublicRecordError::Read { path, source }),
        };
        let rec: PublicRecord =
            serde_json::from_str(&text).map_err(|source| PublicRecordError::Parse {
                path: path.clone(),
                source,
            })?;
        if rec.version != PUBLIC_RECORD_VERSION {
            return Err(PublicRecordError::Version {
                path,
                found: rec.version,
            });
        }
        Ok(rec)
    }

    /// Adds or replaces identities; returns whether anything changed.
    pub fn merge(&mut self, ids: impl IntoIterator<Item = PublicIdentity>) -> bool {
        let mut changed = false;
        for id in ids {
            if self.identities.get(&id.name) != Some(&id) {
                self.identities.insert(id.name.clone(), id);
                changed = true;
            }
        }
        changed
    }

    /// Writes the record atomically (0644; it holds public keys only). Returns whether the file
    /// changed.
    pub fn save(&self, tree_root: &Path) -> Result<bool, PublicRecordError> {
        let mut text = serde_json::to_string_pretty(&PublicRecord {
            version: PUBLIC_RECORD_VERSION,
            identities: self.identities.clone(),
        })
        .map_err(|source| PublicRecordError::Parse {
            path: Self::path(tree_root),
            source,
        })?;
        text.push('\n');
        fsutil::write_public(&Self::path(tree_root), text.as_bytes())
            .map_err(PublicRecordError::Write)
    }
}

/// The recorded public identity of `name` in a tree, without the passphrase. `Ok(None)` when the
/// name was never derived there (run `multiverse identity show NAME` once to record it).
pub fn public_identity(
    tree_root: &Path,
    name: &IdentityName,
) -> Result<Option<PublicIdentity>, PublicRecordError> {
    Ok(PublicRecord::load(tree_root)?
        .identities
        .remove(name.as_str()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn record_round_trip_and_idempotence() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::from_bytes([9; 32]);
        let name = IdentityName::parse("a.multiverse").unwrap();
        let id = root.public_identity(&name).unwrap();
        let mut rec = PublicRecord::load(d.path()).unwrap();
        assert!(rec.identities.is_empty());
        assert!(rec.merge([id.clone()]));
        assert!(rec.save(d.path()).unwrap());
        assert!(!rec.merge([id.clone()]));
        assert!(!rec.save(d.path()).unwrap());
        assert_eq!(public_identity(d.path(), &name).unwrap(), Some(id));
        let other = IdentityName::parse("b.multiverse").unwrap();
        assert_eq!(public_identity(d.path(), &other).unwrap(), None);
    }

    #[test]
    fn bad_record_names_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = PublicRecord::path(d.path());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "{not json").unwrap();
        let e = PublicRecord::load(d.path()).unwrap_err();
        assert!(e.to_string().contains("public.json"), "{e}");
    }
}
