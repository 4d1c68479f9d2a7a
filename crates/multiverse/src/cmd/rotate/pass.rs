//! Step `pass` of a rotation: every `.gpg-id` of the pass store that names the old OpenPGP key
//! names the new one instead, and what it covers is re-encrypted (`mv_pass::Store::init`, as
//! `pass init` does) while the old key can still decrypt it; the new certificate goes into the
//! key folder; for a machine, its `machines/<fqdn>/root` entry gets the new password.
//!
//! This belongs in `mv_pass` (a `Store::replace_recipient`); it is here until that crate has it.

use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_core::layout::Tree;
use mv_core::secret::SecretString;
use mv_core::IdentityName;
use mv_identity::Root;
use std::path::{Path, PathBuf};

fn pass_store_dir(g: &Global) -> PathBuf {
    match std::env::var_os("PASSWORD_STORE_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Tree::new(&g.root).pass_dir(),
    }
}

fn pass_keys_dir(g: &Global) -> PathBuf {
    match std::env::var_os("MULTIVERSE_PASS_KEYS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Tree::new(&g.root).pass_keys_dir(),
    }
}

/// Every `.gpg-id` below `dir` (not in `.git`, no link followed), as folders relative to `dir`.
fn gpg_id_folders(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let t = e.file_type()?;
        let n = e.file_name();
        if t.is_file() && n == ".gpg-id" {
            out.push(rel.to_path_buf());
        } else if t.is_dir() && n != ".git" {
            gpg_id_folders(&e.path(), &rel.join(&n), out)?;
        }
    }
    Ok(())
}

/// Step 1: pass entries encrypted to the old key are re-encrypted to the new one.
pub(super) fn reencrypt_pass(
    g: &Global,
    root: &Root,
    name: &IdentityName,
    from: u32,
    to: u32,
) -> Result<(), CliError> {
    let dir = pass_store_dir(g);
    if !dir.is_dir() {
        return Ok(());
    }
    let old_key = root.at_epoch(name, from).openpgp(name)?;
    let new_key = root.at_epoch(name, to).openpgp(name)?;
    let old_fpr = mv_identity::fingerprint_hex(&old_key);
    let new_fpr = mv_identity::fingerprint_hex(&new_key);
    let old_long_id = old_fpr[24..].to_string();
    let keys = mv_pass::KeyDir::new(pass_keys_dir(g));
    let mut ring = if keys.path().is_dir() {
        keys.load(None)?
    } else {
        mv_pass::Keyring::new()
    };
    ring.add_secret(old_key);
    ring.add_secret(new_key.clone());
    let store = mv_pass::Store::new(dir.clone());
    let mut folders = Vec::new();
    gpg_id_folders(&dir, Path::new(""), &mut folders)?;
    let mut reencrypted = 0;
    let mut touched = false;
    for folder in folders {
        let id_file = dir.join(&folder).join(".gpg-id");
        let text = std::fs::read_to_string(&id_file)?;
        let ids: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        let names_old = |id: &str| {
            let id = id.trim_start_matches("0x").to_ascii_uppercase();
            id == old_fpr || id == old_long_id
        };
        if !ids.iter().any(|i| names_old(i)) {
            continue;
        }
        let mut new_ids: Vec<String> = Vec::new();
        for id in &ids {
            let id = if names_old(id) {
                new_fpr.clone()
            } else {
                id.clone()
            };
            if !new_ids.contains(&id) {
                new_ids.push(id);
            }
        }
        let sub = if folder.as_os_str().is_empty() {
            None
        } else {
            Some(mv_pass::EntryName::parse(&folder.to_string_lossy()).usage()?)
        };
        if !touched && keys.path().is_dir() {
            keys.put_public(&new_key.to_public_key())?;
        }
        touched = true;
        let ch = store.init(sub.as_ref(), &new_ids, &ring)?;
        reencrypted += ch.files.len().saturating_sub(1);
    }
    if let IdentityName::Machine(m) = name {
        let entry = mv_pass::EntryName::parse(&format!("machines/{m}/root")).usage()?;
        if store.contains(&entry) {
            let pw = root.at_epoch(name, to).password(name);
            let content = SecretString::new(format!("{}\nuser: root\nmachine: {m}\n", pw.expose()));
            let msg = format!("Rotate the password of {entry} (epoch {to}).");
            if store
                .write_if_changed(&entry, content.expose().as_bytes(), &msg, &ring)?
                .is_some()
            {
                g.say(format!("pass: {entry} has the new password"));
            }
        }
    }
    g.say(format!(
        "pass: {reencrypted} entr{} re-encrypted from {old_fpr} to {new_fpr}",
        if reencrypted == 1 { "y" } else { "ies" }
    ));
    Ok(())
}
