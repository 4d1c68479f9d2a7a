//! Store health: [`fsck`] (is every file readable, private and encrypted to its current
//! recipients?) and [`audit`] (weak, reused and old passwords).
//!
//! `fsck` reads only the unencrypted packet headers (the key ids an entry is addressed to), so
//! it needs no secret key unless asked to try decryption too. It also walks the whole store
//! (never following a link, skipping `.git`) and reports every symbolic link (the store never
//! follows one: dangling, leading outside, or inside) and every temporary file an interrupted
//! write left behind (`.NAME.gpg.tmp…`, after a crash or `kill -9`). With
//! `PASSWORD_STORE_SIGNING_KEY` set it checks every `.gpg-id`'s signature as pass would (gpg
//! verifies) and says which way it fails: missing, not verifying, or by another key.
//!
//! `audit` decrypts every entry in parallel; passwords are compared through SHA-256 digests
//! held in memory only, and never appear in the report.

use crate::backend::{entry_key_ids, Crypto};
use crate::name::EntryName;
use crate::store::{chain, walk_store, BulkError, Store, StoreError};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// One problem `fsck` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FsckIssue {
    /// The file concerned.
    pub file: PathBuf,
    /// What is wrong.
    #[serde(flatten)]
    pub kind: FsckKind,
}

/// Kinds of `fsck` problems.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum FsckKind {
    /// Readable by group or others.
    BadPermissions {
        /// The mode found (octal digits as a number, e.g. 644).
        mode: String,
    },
    /// Not addressed to exactly the recipients of its `.gpg-id`.
    WrongRecipients {
        /// Key ids in the file.
        found: Vec<String>,
        /// `.gpg-id` lines that apply.
        recipients: Vec<String>,
    },
    /// The file cannot be read or parsed (or decrypted, when asked).
    Unreadable {
        /// The error with its causes.
        error: String,
    },
    /// No `.gpg-id` governs the entry.
    NoGpgId,
    /// `PASSWORD_STORE_SIGNING_KEY` is set and this `.gpg-id` has no `.gpg-id.sig`.
    GpgIdSignatureMissing {
        /// The folder the `.gpg-id` governs, relative to the store (`""` for the top).
        folder: String,
    },
    /// `.gpg-id.sig` does not verify (by gpg): the `.gpg-id` changed after signing, the
    /// signature is damaged, or gpg lacks the signer's public key.
    GpgIdSignatureBad {
        /// The folder the `.gpg-id` governs, relative to the store (`""` for the top).
        folder: String,
    },
    /// `.gpg-id.sig` is a good signature by a key that is not in `PASSWORD_STORE_SIGNING_KEY`.
    GpgIdSignatureWrongKey {
        /// The folder the `.gpg-id` governs, relative to the store (`""` for the top).
        folder: String,
        /// Primary-key fingerprints of the good signatures.
        signers: Vec<String>,
    },
    /// A symbolic link: never followed by the store, so skipped by `ls`, `grep`, `find`, `audit`.
    Symlink {
        /// What it points to.
        target: String,
        /// `dangling`, `outside the store` or `inside the store`.
        leads: String,
    },
    /// A temporary file left by a write that was interrupted (crash, `kill -9`).
    TempFile,
}

impl std::fmt::Display for FsckKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsckKind::BadPermissions { mode } => write!(
                f,
                "mode {mode} lets other users read or list it (pass's umask 077: want 600 for \
                 files, 700 for folders; `chmod go-rwx` fixes it)"
            ),
            FsckKind::WrongRecipients { found, recipients } => write!(
                f,
                "encrypted to [{}], not to the current recipients [{}]",
                found.join(", "),
                recipients.join(", ")
            ),
            FsckKind::Unreadable { error } => write!(f, "unreadable: {error}"),
            FsckKind::NoGpgId => write!(f, "no .gpg-id applies to it"),
            FsckKind::GpgIdSignatureMissing { folder } => write!(
                f,
                "{}: .gpg-id has no signature (.gpg-id.sig) while PASSWORD_STORE_SIGNING_KEY is \
                 set, so pass and ours refuse to encrypt there; sign it again with `init`",
                folder_label(folder)
            ),
            FsckKind::GpgIdSignatureBad { folder } => write!(
                f,
                "{}: .gpg-id.sig does not verify (.gpg-id changed after it was signed, the \
                 signature is damaged, or gpg lacks the signer's public key); check .gpg-id, \
                 then sign it again with `init`",
                folder_label(folder)
            ),
            FsckKind::GpgIdSignatureWrongKey { folder, signers } => write!(
                f,
                "{}: .gpg-id.sig is a good signature by {}, which is not a key of \
                 PASSWORD_STORE_SIGNING_KEY (40-digit fingerprints)",
                folder_label(folder),
                signers.join(", ")
            ),
            FsckKind::Symlink { target, leads } => write!(
                f,
                "symbolic link to {target} ({leads}): the store never follows links, so \
                 ls, grep, find, audit and show skip or refuse it; remove it (`multiverse pass \
                 rm NAME` removes the link itself) or replace it with a real file"
            ),
            FsckKind::TempFile => write!(
                f,
                "temporary file left by an interrupted write (crash or kill -9); the entry \
                 itself is whole and nothing reads this file; remove it with `rm -f -- FILE` \
                 while no other pass command runs"
            ),
        }
    }
}

/// How a message names a folder of the store (`""` is its top).
fn folder_label(folder: &str) -> String {
    if folder.is_empty() {
        "the store's top folder".to_string()
    } else {
        format!("folder `{folder}`")
    }
}

/// Checks every entry. With `decrypt`, also tries to decrypt each one. With signing keys (see
/// [`Store::with_signing_keys`]) every `.gpg-id`'s signature is checked once, and an entry whose
/// `.gpg-id` fails that check is reported through it, not one by one.
pub fn fsck(
    store: &Store,
    crypto: &dyn Crypto,
    decrypt: bool,
) -> Result<Vec<FsckIssue>, StoreError> {
    let mut issues = Vec::new();
    let mut wanted: BTreeMap<Vec<String>, Option<BTreeSet<String>>> = BTreeMap::new();
    for name in store.list(None)? {
        let file = name.file_in(store.dir());
        let issue = |kind| FsckIssue {
            file: file.clone(),
            kind,
        };
        match std::fs::metadata(&file) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                issues.push(issue(FsckKind::BadPermissions {
                    mode: format!("{:o}", m.permissions().mode() & 0o777),
                }));
            }
            _ => {}
        }
        let data = match crate::store::read_no_follow(&file) {
            Ok(d) => d,
            Err(e) => {
                issues.push(issue(FsckKind::Unreadable {
                    error: e.to_string(),
                }));
                continue;
            }
        };
        let found = match entry_key_ids(&data) {
            Ok(ids) => ids,
            Err(e) => {
                issues.push(issue(FsckKind::Unreadable { error: chain(&e) }));
                continue;
            }
        };
        let recipients = match store.recipients_for(name.parent().unwrap_or("")) {
            Ok((_, r)) => r,
            // Reported once for the `.gpg-id` by `gpg_id_signatures`.
            Err(
                StoreError::SignatureMissing(_)
                | StoreError::SignatureInvalid(_)
                | StoreError::SignatureWrongKey { .. },
            ) => continue,
            Err(_) => {
                issues.push(issue(FsckKind::NoGpgId));
                continue;
            }
        };
        let want = wanted
            .entry(recipients.clone())
            .or_insert_with(|| crypto.encryption_key_ids(&recipients).ok());
        let ok = match want {
            // pass's rule: the message's key ids are exactly the recipients' (groups expanded).
            Some(w) => found.iter().cloned().collect::<BTreeSet<String>>() == *w,
            // Recipients we cannot resolve: report, since nobody here can re-encrypt to them.
            None => false,
        };
        if !ok {
            issues.push(issue(FsckKind::WrongRecipients {
                found: found.clone(),
                recipients: recipients.clone(),
            }));
        }
        if decrypt {
            if let Err(e) = store.read(&name, crypto) {
                issues.push(issue(FsckKind::Unreadable { error: chain(&e) }));
            }
        }
    }
    issues.extend(gpg_id_signatures(store));
    issues.extend(open_folders(store));
    issues.extend(stray_files(store)?);
    Ok(issues)
}

/// With signing keys set: every `.gpg-id` (`.git` aside, links not followed) whose signature is
/// missing, does not verify, or is by another key, in path order.
fn gpg_id_signatures(store: &Store) -> Vec<FsckIssue> {
    if store.signing_keys().is_none() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for e in walk_store(store.dir()).flatten() {
        if !(e.file_type().is_file() && e.file_name() == ".gpg-id") {
            continue;
        }
        let folder = e
            .path()
            .parent()
            .and_then(|p| p.strip_prefix(store.dir()).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = match store.verify_signed(e.path()) {
            Ok(()) => continue,
            Err(StoreError::SignatureMissing(_)) => FsckKind::GpgIdSignatureMissing { folder },
            Err(StoreError::SignatureWrongKey { signers, .. }) => {
                FsckKind::GpgIdSignatureWrongKey { folder, signers }
            }
            Err(StoreError::SignatureInvalid(_)) => FsckKind::GpgIdSignatureBad { folder },
            Err(other) => FsckKind::Unreadable {
                error: chain(&other),
            },
        };
        out.push(FsckIssue {
            file: e.path().to_path_buf(),
            kind,
        });
    }
    out
}

/// Folders and `.gpg-id` files (`.git` aside) that other users can read or list: pass writes
/// everything under umask 077, so entry names and recipients stay private.
fn open_folders(store: &Store) -> Vec<FsckIssue> {
    let mut out = Vec::new();
    for e in walk_store(store.dir()).flatten() {
        let ty = e.file_type();
        let relevant = ty.is_dir() || (ty.is_file() && e.file_name() == ".gpg-id");
        if !relevant {
            continue;
        }
        if let Ok(m) = e.metadata() {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                out.push(FsckIssue {
                    file: e.path().to_path_buf(),
                    kind: FsckKind::BadPermissions {
                        mode: format!("{mode:o}"),
                    },
                });
            }
        }
    }
    out
}

/// Links and leftover temporary files anywhere in the store (`.git` aside), in path order.
fn stray_files(store: &Store) -> Result<Vec<FsckIssue>, StoreError> {
    let dir = store.dir();
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let real_store = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut out = Vec::new();
    for entry in walk_store(dir) {
        let entry = entry?;
        if entry.depth() == 0 {
            continue;
        }
        let path = entry.path();
        let kind = if entry.path_is_symlink() {
            let target = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            let leads = match std::fs::canonicalize(path) {
                Err(_) => "dangling",
                Ok(real) if real.starts_with(&real_store) => "inside the store",
                Ok(_) => "outside the store",
            };
            FsckKind::Symlink {
                target,
                leads: leads.to_string(),
            }
        } else if entry.file_type().is_file() && mv_core::fsutil::is_temp_name(entry.file_name()) {
            FsckKind::TempFile
        } else {
            continue;
        };
        out.push(FsckIssue {
            file: path.to_path_buf(),
            kind,
        });
    }
    Ok(out)
}

/// Why a password counts as weak.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Weak {
    /// The entry.
    pub name: EntryName,
    /// Reasons ("shorter than 12 characters", ...).
    pub reasons: Vec<String>,
}

/// An entry not changed for a long time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Old {
    /// The entry.
    pub name: EntryName,
    /// Days since its last change (git history, else the file's modification time).
    pub days: u64,
}

/// Result of [`audit`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AuditReport {
    /// Weak passwords.
    pub weak: Vec<Weak>,
    /// Groups of entries sharing one password.
    pub reused: Vec<Vec<EntryName>>,
    /// Entries older than the limit.
    pub old: Vec<Old>,
    /// Files that could not be read.
    pub errors: Vec<BulkError>,
    /// Entries audited.
    pub audited: usize,
}

/// A few passwords every cracker tries first.
const COMMON: &[&str] = &[
    "password", "123456", "12345678", "qwerty", "letmein", "admin", "welcome", "iloveyou",
    "monkey", "dragon", "abc123", "passw0rd", "root", "toor", "changeme",
];

/// Why `pw` is weak (empty when it is not).
pub fn weakness(pw: &str) -> Vec<String> {
    let mut r = Vec::new();
    let n = pw.chars().count();
    if n < 12 {
        r.push(format!("shorter than 12 characters ({n})"));
    }
    let classes = [
        pw.chars().any(|c| c.is_lowercase()),
        pw.chars().any(|c| c.is_uppercase()),
        pw.chars().any(|c| c.is_ascii_digit()),
        pw.chars().any(|c| !c.is_alphanumeric()),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if classes < 2 || (n < 20 && classes < 3) {
        r.push(format!("only {classes} kind(s) of character"));
    }
    let lower = pw.to_lowercase();
    if COMMON.iter().any(|c| lower.contains(c)) {
        r.push("contains a common password".to_string());
    }
    r
}

/// Audits every entry's first line. `now` is unix time; entries unchanged for more than
/// `max_age_days` are reported as old.
pub fn audit(
    store: &Store,
    crypto: &dyn Crypto,
    now: i64,
    max_age_days: u64,
) -> Result<AuditReport, StoreError> {
    let (rows, errors, audited) = store.for_each_decrypted(None, crypto, |name, plain| {
        let text = String::from_utf8_lossy(plain.expose());
        let first = text.lines().next().unwrap_or("");
        if first.is_empty() || first.starts_with("otpauth://") {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(first.as_bytes()).into();
        Some((name.clone(), weakness(first), digest))
    })?;
    let mut report = AuditReport {
        errors,
        audited,
        ..Default::default()
    };
    let mut by_digest: BTreeMap<[u8; 32], Vec<EntryName>> = BTreeMap::new();
    for (name, reasons, digest) in rows {
        if !reasons.is_empty() {
            report.weak.push(Weak {
                name: name.clone(),
                reasons,
            });
        }
        by_digest.entry(digest).or_default().push(name);
    }
    report.reused = by_digest
        .into_values()
        .filter(|v| v.len() > 1)
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    report.weak.sort_by(|a, b| a.name.cmp(&b.name));
    let git_times = store
        .git()
        .and_then(|g| g.last_change_times().ok())
        .unwrap_or_default();
    for name in store.list(None)? {
        let file = name.file_in(store.dir());
        let changed = git_times.get(&file).copied().or_else(|| {
            std::fs::metadata(&file)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_secs()).ok())
        });
        if let Some(t) = changed {
            let days = u64::try_from((now - t).max(0)).unwrap_or(0) / 86_400;
            if days > max_age_days {
                report.old.push(Old { name, days });
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::test_key;
    use crate::keys::{secret_fingerprint, Keyring};

    #[test]
    fn weakness_rules() {
        assert!(weakness("Xk3#pL9q!vR2mZ8w").is_empty());
        assert!(!weakness("short").is_empty());
        assert!(!weakness("alllowercaseletters").is_empty());
        assert!(!weakness("MyPassword123456!").is_empty());
        assert!(weakness("4FUWQoJVIQ8H96Z0Ocdii76e3oRjy5x4").is_empty());
    }

    #[test]
    fn audit_and_fsck_find_problems() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path().join("s"));
        let k = test_key("A <a@example.org>");
        let other = test_key("B <b@example.org>");
        let fpr = secret_fingerprint(&k);
        let mut ring = Keyring::new();
        ring.add_secret(k);
        ring.add_secret(other);
        s.init(None, std::slice::from_ref(&fpr), &ring).unwrap();
        let n = |x: &str| EntryName::parse(x).unwrap();
        s.insert(&n("a"), b"4FUWQoJVIQ8H96Z0Ocdii76e3oRjy5x4\n", false, &ring)
            .unwrap();
        s.insert(&n("b"), b"4FUWQoJVIQ8H96Z0Ocdii76e3oRjy5x4\n", false, &ring)
            .unwrap();
        s.insert(&n("c"), b"password1\n", false, &ring).unwrap();
        let r = audit(&s, &ring, 0, 365).unwrap();
        assert_eq!(r.audited, 3);
        assert_eq!(r.weak.len(), 1);
        assert_eq!(r.weak[0].name, n("c"));
        assert_eq!(r.reused, vec![vec![n("a"), n("b")]]);
        let future = 10 * 365 * 86_400 + 2_000_000_000;
        assert_eq!(audit(&s, &ring, future, 365).unwrap().old.len(), 3);

        assert!(fsck(&s, &ring, true).unwrap().is_empty());
        // Encrypted to the wrong key, world readable, and one garbage file.
        let wrong = ring.encrypt(b"x\n", &["b@example.org".into()]).unwrap();
        std::fs::write(s.dir().join("wrong.gpg"), wrong).unwrap();
        std::fs::set_permissions(
            s.dir().join("wrong.gpg"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::write(s.dir().join("junk.gpg"), b"junk").unwrap();
        let issues = fsck(&s, &ring, false).unwrap();
        let kinds: Vec<String> = issues
            .iter()
            .map(|i| {
                format!(
                    "{} {}",
                    i.file.file_name().unwrap().to_string_lossy(),
                    i.kind
                )
            })
            .collect();
        assert_eq!(issues.len(), 4, "{kinds:?}"); // junk: perms? no (0644 from fs::write) + unreadable
        assert!(kinds
            .iter()
            .any(|k| k.starts_with("wrong.gpg encrypted to")));
        assert!(kinds.iter().any(|k| k.starts_with("junk.gpg unreadable")));
    }
}
