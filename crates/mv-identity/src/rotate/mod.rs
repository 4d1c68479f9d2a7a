//! Rotation of one name's keys (`docs/spec/scramble-v1-epochs.md`, "Rotation"): what revokes the
//! keys of an old epoch, and the journal that makes `multiverse identity rotate` resumable.
//!
//! - `revoked_openpgp` (and `revoked_openpgp_armored`, the file the export writes): the old epoch's public key carrying a key revocation signature (reason
//!   0x01, key superseded) made with the old key itself, dated at the new epoch's creation time,
//!   so it is a function of root, name and epoch like every other output;
//! - `revoked_known_hosts_lines`: `@revoked` lines for the old host keys;
//! - [`Journal`]: `<tree>/identity/rotate.json`, written (atomically, fsync'd) before the first
//!   change and after every step; a rerun reads it and continues with the same from/to epochs,
//!   so a crash at any point ends in the same state as an uninterrupted run.
//!
//! - [`Step`]: the steps of a rotation, in order; [`Journal::begin`] starts a rotation or resumes
//!   the one in progress;
//! - [`rekey_device`], [`rekey_disks`], [`finish_rekey`]: the LUKS step (`cryptsetup`,
//!   `qemu-img amend`, the keys read from 0600 files).
//!
//! Nothing here touches `multiverse.toml`, the pass store or a running machine: the CLI runs
//! those steps (with the crates that own them) and records them here.

mod luks;

pub use luks::{finish_rekey, rekey_device, rekey_disks, LuksError};

use crate::keys::KeyError;
use crate::openpgp::creation_time;
use crate::public::PublicIdentity;
use crate::root::Root;
use mv_core::fsutil::{self, FsError};
use mv_core::IdentityName;
use pgp::composed::{SignedKeyDetails, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::packet::{RevocationCode, SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::types::{KeyDetails as _, Password, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// How many earlier epochs of a name keep their revocations in exports and `known_hosts`.
pub(crate) const REVOKED_EPOCHS_KEPT: u32 = 16;

/// The epochs before `epoch` whose keys are still listed as revoked (newest first, at most
/// [`REVOKED_EPOCHS_KEPT`]).
pub(crate) fn previous_epochs(epoch: u32) -> impl Iterator<Item = u32> {
    (epoch.saturating_sub(REVOKED_EPOCHS_KEPT)..epoch).rev()
}

fn err(e: impl std::fmt::Display) -> KeyError {
    KeyError::OpenPgp(e.to_string())
}

/// The public key of `name` at `old` epoch with a key revocation signature (reason 0x01, key
/// superseded by epoch `old + 1`), signed by that old key.
pub(crate) fn revoked_openpgp(
    root: &Root,
    name: &IdentityName,
    old: u32,
) -> Result<SignedPublicKey, KeyError> {
    let old_root = root.at_epoch(name, old);
    let key = old_root.openpgp(name)?;
    let when = Timestamp::from_secs(creation_time(old.saturating_add(1)));
    let mut config = SignatureConfig::v4(
        SignatureType::KeyRevocation,
        PublicKeyAlgorithm::EdDSALegacy,
        HashAlgorithm::Sha256,
    );
    config.hashed_subpackets = vec![
        Subpacket::regular(SubpacketData::SignatureCreationTime(when)).map_err(err)?,
        Subpacket::regular(SubpacketData::IssuerFingerprint(
            key.primary_key.fingerprint(),
        ))
        .map_err(err)?,
        Subpacket::regular(SubpacketData::RevocationReason(
            RevocationCode::KeySuperseded,
            format!("superseded by epoch {}", old.saturating_add(1))
                .into_bytes()
                .into(),
        ))
        .map_err(err)?,
    ];
    config.unhashed_subpackets =
        vec![
            Subpacket::regular(SubpacketData::IssuerKeyId(key.primary_key.legacy_key_id()))
                .map_err(err)?,
        ];
    let sig = config
        .sign_key(
            &key.primary_key,
            &Password::empty(),
            key.primary_key.public_key(),
        )
        .map_err(err)?;
    let public = key.to_public_key();
    let details = SignedKeyDetails::new(
        vec![sig],
        public.details.direct_signatures.clone(),
        public.details.users.clone(),
        public.details.user_attributes.clone(),
    );
    Ok(SignedPublicKey::new(
        public.primary_key,
        details,
        public.public_subkeys,
    ))
}

/// The armored revoked keys of every kept earlier epoch of `name` (empty at epoch 0), newest
/// first: the file exported beside the new key.
pub(crate) fn revoked_openpgp_armored(
    root: &Root,
    name: &IdentityName,
) -> Result<String, KeyError> {
    let mut out = String::new();
    for old in previous_epochs(root.epoch(name)) {
        let k = revoked_openpgp(root, name, old)?;
        out.push_str(
            &k.to_armored_string(pgp::composed::ArmorOptions::default())
                .map_err(err)?,
        );
    }
    Ok(out)
}

/// `@revoked` lines for a machine's host keys of an earlier epoch (the identity derived there).
pub(crate) fn revoked_known_hosts_lines(old: &PublicIdentity) -> String {
    let mut s = String::new();
    for key in [&old.ssh_host_ed25519, &old.ssh_host_ecdsa_p256] {
        s.push_str(&format!("@revoked {},{} {key}\n", old.name, old.onion));
    }
    s
}

/// The `@revoked` lines of every kept earlier epoch of `name` (empty at epoch 0).
pub fn revoked_known_hosts(root: &Root, name: &IdentityName) -> Result<String, KeyError> {
    let mut s = String::new();
    for old in previous_epochs(root.epoch(name)) {
        s.push_str(&revoked_known_hosts_lines(
            &root.at_epoch(name, old).public_identity(name)?,
        ));
    }
    Ok(s)
}

/// One step of a rotation, in the order they run ([`Step::ALL`]); each is recorded in the
/// [`Journal`] by its [`Step::as_str`] name once done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Pass entries re-encrypted to the new OpenPGP key (and a machine's password entry).
    Pass,
    /// `[identity.epochs]` of `multiverse.toml` holds the new epoch.
    Config,
    /// The public record holds the new public identity.
    Record,
    /// Running machines provisioned with the new keys.
    Guests,
    /// The fleet folder brought up to date.
    Fleet,
    /// LUKS devices and encrypted disks re-keyed.
    Luks,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 6] = [
        Step::Pass,
        Step::Config,
        Step::Record,
        Step::Guests,
        Step::Fleet,
        Step::Luks,
    ];

    /// The step's name in the journal (and in `MV_ROTATE_PAUSE_AFTER`).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Pass => "pass",
            Step::Config => "config",
            Step::Record => "record",
            Step::Guests => "guests",
            Step::Fleet => "fleet",
            Step::Luks => "luks",
        }
    }
}

/// What [`Journal::begin`] found.
#[derive(Debug)]
pub enum Begun {
    /// A new rotation (not saved yet).
    New(Journal),
    /// The rotation of the same name in progress, to continue.
    Resumed(Journal),
}

/// Why a rotation cannot begin.
#[derive(Debug, thiserror::Error)]
pub enum BeginError {
    /// Another name's rotation is unfinished.
    #[error("the rotation of {name} (epoch {from} to {to}) is unfinished")]
    Unfinished {
        /// Its name.
        name: String,
        /// Its epoch before.
        from: u32,
        /// Its epoch after.
        to: u32,
    },
    /// The name is at the last epoch.
    #[error("{0} is at epoch {MAX}, the last one (2^32 - 1): it cannot be rotated again", MAX = u32::MAX)]
    LastEpoch(IdentityName),
    /// The journal could not be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl mv_core::Classify for BeginError {
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            BeginError::Journal(e) => e.class(),
            _ => mv_core::ErrorClass::Usage,
        }
    }
}

impl mv_core::Classify for JournalError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

/// Why the journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading failed.
    #[error("cannot read the rotation journal {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not a journal.
    #[error("{path} is not a rotation journal")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// Writing failed.
    #[error("cannot write the rotation journal")]
    Write(#[source] FsError),
}

/// A rotation in progress: which name, from which epoch to which, and the steps done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The name rotated.
    pub name: String,
    /// Its epoch before.
    pub from: u32,
    /// Its epoch after.
    pub to: u32,
    /// Steps finished, by name.
    pub done: BTreeSet<String>,
    /// The fleet folder (`identity fleet --out`) brought up to date, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<PathBuf>,
    /// LUKS devices (or image files) whose keyslot of the old key is replaced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub luks: Vec<PathBuf>,
}

impl Journal {
    /// `<tree>/identity/rotate.json`.
    pub fn path(tree_root: &Path) -> PathBuf {
        mv_core::layout::Tree::new(tree_root).rotate_journal()
    }

    /// The rotation in progress, if any.
    pub fn load(tree_root: &Path) -> Result<Option<Journal>, JournalError> {
        let path = Self::path(tree_root);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(JournalError::Read { path, source }),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| JournalError::Parse { path, source })
    }

    /// Writes the journal (atomic: temp file, fsync, rename, fsync of the folder).
    pub fn save(&self, tree_root: &Path) -> Result<(), JournalError> {
        let mut text = serde_json::to_vec_pretty(self).map_err(|source| JournalError::Parse {
            path: Self::path(tree_root),
            source,
        })?;
        text.push(b'\n');
        fsutil::write_public(&Self::path(tree_root), &text).map_err(JournalError::Write)?;
        Ok(())
    }

    /// Starts the rotation of `name` from epoch `from`, or resumes the one in progress for the
    /// same name (its folders replaced by `fleet` and `luks` when given). Saves nothing.
    pub fn begin(
        tree_root: &Path,
        name: &IdentityName,
        from: u32,
        fleet: Option<PathBuf>,
        luks: Vec<PathBuf>,
    ) -> Result<Begun, BeginError> {
        match Journal::load(tree_root)? {
            Some(mut j) if j.name == name.as_str() => {
                if fleet.is_some() {
                    j.fleet = fleet;
                }
                if !luks.is_empty() {
                    j.luks = luks;
                }
                Ok(Begun::Resumed(j))
            }
            Some(j) => Err(BeginError::Unfinished {
                name: j.name,
                from: j.from,
                to: j.to,
            }),
            None => {
                let to = from
                    .checked_add(1)
                    .ok_or_else(|| BeginError::LastEpoch(name.clone()))?;
                Ok(Begun::New(Journal {
                    name: name.as_str().to_string(),
                    from,
                    to,
                    done: BTreeSet::new(),
                    fleet,
                    luks,
                }))
            }
        }
    }

    /// Whether `step` is done.
    pub fn is_done(&self, step: &str) -> bool {
        self.done.contains(step)
    }

    /// Records `step` as done and saves.
    pub fn mark(&mut self, tree_root: &Path, step: &str) -> Result<(), JournalError> {
        if self.done.insert(step.to_string()) {
            self.save(tree_root)?;
        }
        Ok(())
    }

    /// Removes the journal: the rotation is complete.
    pub fn finish(tree_root: &Path) -> Result<(), JournalError> {
        let path = Self::path(tree_root);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(JournalError::Write(FsError::new("cannot remove", &path, e))),
        }
        if let Some(dir) = path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn revocation_is_deterministic_and_verifies() {
        let root = Root::from_bytes([5; 32]);
        let name = IdentityName::parse("a.multiverse").unwrap();
        let k = revoked_openpgp(&root, &name, 0).unwrap();
        k.verify_bindings().unwrap();
        let sig = &k.details.revocation_signatures[0];
        assert_eq!(
            sig.revocation_reason_code(),
            Some(&RevocationCode::KeySuperseded)
        );
        sig.verify_key(&k.primary_key).unwrap();
        let again = revoked_openpgp(&root, &name, 0).unwrap();
        let opts = pgp::composed::ArmorOptions::default;
        assert_eq!(
            k.to_armored_string(opts()).unwrap(),
            again.to_armored_string(opts()).unwrap()
        );
        assert_eq!(
            crate::openpgp::fingerprint_hex(&root.openpgp(&name).unwrap()),
            hex::encode_upper(k.primary_key.fingerprint().as_bytes())
        );
        assert!(revoked_openpgp_armored(&root, &name).unwrap().is_empty());
        let rotated = root.at_epoch(&name, 1);
        assert!(revoked_known_hosts(&rotated, &name)
            .unwrap()
            .starts_with("@revoked a.multiverse,"));
        assert_eq!(previous_epochs(40).count(), 16);
        assert_eq!(previous_epochs(2).collect::<Vec<_>>(), [1, 0]);
    }

    #[test]
    fn journal_round_trip() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("identity")).unwrap();
        assert_eq!(Journal::load(d.path()).unwrap(), None);
        let mut j = Journal {
            name: "@user".into(),
            from: 0,
            to: 1,
            done: BTreeSet::new(),
            fleet: None,
            luks: vec![],
        };
        j.save(d.path()).unwrap();
        j.mark(d.path(), "pass").unwrap();
        let back = Journal::load(d.path()).unwrap().unwrap();
        assert!(back.is_done("pass"));
        Journal::finish(d.path()).unwrap();
        assert_eq!(Journal::load(d.path()).unwrap(), None);
    }
}
