//! Key rotation in the store: every `.gpg-id` that names an old key names the new one instead,
//! and what it covers is re-encrypted ([`Store::replace_recipient`], `identity rotate`'s pass
//! step); and the machine root-password entries that `pass machines` and a rotation write
//! ([`machine_root_entry`]).
//!
//! What this is not: key derivation. The caller hands in both fingerprints and a [`Crypto`]
//! that decrypts with the old key and encrypts to the new one (mv-pass never derives keys).

use crate::backend::Crypto;
use crate::name::{EntryName, EntryNameError};
use crate::store::{Store, StoreError};
use mv_core::fsutil::FsError;
use mv_core::secret::SecretString;

/// One folder [`Store::replace_recipient`] changed, for the caller's progress output.
#[derive(Debug, Clone, Copy)]
pub struct Replaced<'a> {
    /// The folder, relative to the store (`""`: its top).
    pub folder: &'a str,
    /// Entries re-encrypted there.
    pub reencrypted: usize,
}

/// Whether `id`, a recipient of a `.gpg-id`, names the key with fingerprint `fingerprint` (40
/// hex digits): the fingerprint itself or its long key id (the last 16 digits), in either case,
/// with or without `0x`. E-mail addresses and other names never match.
pub fn names_key(id: &str, fingerprint: &str) -> bool {
    let id = id.trim();
    let id = id.strip_prefix("0x").unwrap_or(id).to_ascii_uppercase();
    let fpr = fingerprint.to_ascii_uppercase();
    let long_id = fpr.get(fpr.len().saturating_sub(16)..).unwrap_or("");
    !id.is_empty() && (id == fpr || id == long_id)
}

/// The entry `machines/<fqdn>/root` and its content (the password, then `user: root` and
/// `machine: <fqdn>` lines): what `pass machines` writes and a rotation rewrites.
pub fn machine_root_entry(
    fqdn: &str,
    password: &SecretString,
) -> Result<(EntryName, SecretString), EntryNameError> {
    let name = EntryName::parse(&format!("machines/{fqdn}/root"))?;
    let content = SecretString::new(format!(
        "{}\nuser: root\nmachine: {fqdn}\n",
        password.expose()
    ));
    Ok((name, content))
}

impl Store {
    /// Every folder whose own `.gpg-id` names the key `fingerprint` ([`names_key`]), relative to
    /// the store (`""`: its top), in name order; `.git` is skipped and no link is followed. A
    /// store folder that does not exist has none.
    pub fn folders_naming(&self, fingerprint: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for (folder, ids) in self.gpg_id_files()? {
            if ids.iter().any(|i| names_key(i, fingerprint)) {
                out.push(folder);
            }
        }
        Ok(out)
    }

    /// Every `.gpg-id` that names the key `old` names `new` instead (in its place, once), and
    /// what it covers is re-encrypted as [`Store::init`] does (so a rerun after a crash finishes
    /// the job). `crypto` must decrypt with the old key and encrypt to the new one. `progress`
    /// hears of each folder done. Returns the number of entries re-encrypted; a store folder that
    /// does not exist is nothing to do.
    pub fn replace_recipient(
        &self,
        old: &str,
        new: &str,
        crypto: &dyn Crypto,
        mut progress: impl FnMut(Replaced<'_>),
    ) -> Result<usize, StoreError> {
        let mut reencrypted = 0;
        for (folder, ids) in self.gpg_id_files()? {
            if !ids.iter().any(|i| names_key(i, old)) {
                continue;
            }
            let mut new_ids: Vec<String> = Vec::new();
            for id in &ids {
                let id = if names_key(id, old) {
                    new.to_string()
                } else {
                    id.clone()
                };
                if !new_ids.contains(&id) {
                    new_ids.push(id);
                }
            }
            let sub = if folder.is_empty() {
                None
            } else {
                Some(EntryName::parse(&folder)?)
            };
            let change = self.init(sub.as_ref(), &new_ids, crypto)?;
            // `init` lists the `.gpg-id` among the files it wrote.
            let n = change.files.len().saturating_sub(1);
            reencrypted += n;
            progress(Replaced {
                folder: &folder,
                reencrypted: n,
            });
        }
        Ok(reencrypted)
    }

    /// Every `.gpg-id` file of the store (`.git` skipped, links not followed) as (folder
    /// relative to the store, its recipients), in name order.
    fn gpg_id_files(&self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        if !self.dir().is_dir() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for e in crate::store::walk_store(self.dir()) {
            let e = e?;
            if !(e.file_type().is_file() && e.file_name() == ".gpg-id") {
                continue;
            }
            let text = crate::store::read_no_follow(e.path())
                .map_err(|io| StoreError::Fs(FsError::new("cannot read", e.path(), io)))?;
            let ids = crate::store::parse_gpg_id(&String::from_utf8_lossy(&text));
            let folder = e
                .path()
                .parent()
                .and_then(|p| p.strip_prefix(self.dir()).ok())
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((folder, ids));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::keys::tests::test_key;
    use crate::Keyring;

    #[test]
    fn a_key_is_named_by_its_fingerprint_or_long_id() {
        let fpr = "0123456789ABCDEF0123456789ABCDEF01234567";
        assert!(names_key(fpr, fpr));
        assert!(names_key(&fpr.to_lowercase(), fpr));
        assert!(names_key("0x89ABCDEF01234567", fpr));
        assert!(names_key("89abcdef01234567", fpr));
        assert!(!names_key("01234567", fpr), "a short id is not enough");
        assert!(!names_key("me@example.org", fpr));
        assert!(!names_key("", fpr));
    }

    #[test]
    fn the_old_key_is_replaced_in_every_gpg_id_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let old = test_key("Old <old@example.org>");
        let new = test_key("New <new@example.org>");
        let other = test_key("Other <other@example.org>");
        let old_fpr = crate::secret_fingerprint(&old);
        let new_fpr = crate::secret_fingerprint(&new);
        let mut ring = Keyring::new();
        ring.add_secret(old);
        ring.add_secret(new);
        ring.add_secret(other);
        let store = Store::new(dir.path().join("store"));
        assert_eq!(
            store
                .replace_recipient(&old_fpr, &new_fpr, &ring, |_| {})
                .unwrap(),
            0,
            "no store: nothing to do"
        );
        store
            .init(None, std::slice::from_ref(&old_fpr), &ring)
            .unwrap();
        let sub = EntryName::parse("team").unwrap();
        store
            .init(
                Some(&sub),
                &["other@example.org".into(), old_fpr[24..].into()],
                &ring,
            )
            .unwrap();
        let other_sub = EntryName::parse("elsewhere").unwrap();
        store
            .init(Some(&other_sub), &["other@example.org".into()], &ring)
            .unwrap();
        for n in ["a", "team/b", "team/c", "elsewhere/d"] {
            let n = EntryName::parse(n).unwrap();
            store.insert(&n, b"pw\n", false, &ring).unwrap();
        }
        assert_eq!(store.folders_naming(&old_fpr).unwrap(), ["", "team"]);
        let mut seen = Vec::new();
        let n = store
            .replace_recipient(&old_fpr, &new_fpr, &ring, |r| {
                seen.push((r.folder.to_string(), r.reencrypted));
            })
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(seen, [(String::new(), 1), ("team".to_string(), 2)]);
        assert!(store.folders_naming(&old_fpr).unwrap().is_empty());
        assert_eq!(store.recipients_for("").unwrap().1, vec![new_fpr.clone()]);
        assert_eq!(
            store.recipients_for("team").unwrap().1,
            ["other@example.org".to_string(), new_fpr.clone()]
        );
        assert_eq!(
            store
                .replace_recipient(&old_fpr, &new_fpr, &ring, |_| {})
                .unwrap(),
            0,
            "a rerun changes nothing"
        );
    }

    #[test]
    fn a_machine_entry_holds_the_password_then_its_user_and_machine() {
        let (name, content) =
            machine_root_entry("web.example.org", &SecretString::new("pw".into())).unwrap();
        assert_eq!(name.as_str(), "machines/web.example.org/root");
        assert_eq!(
            content.expose(),
            "pw\nuser: root\nmachine: web.example.org\n"
        );
        assert!(machine_root_entry("../x", &SecretString::new("pw".into())).is_err());
    }
}
