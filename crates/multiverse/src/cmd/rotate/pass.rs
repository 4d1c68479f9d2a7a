//! Step `pass` of a rotation: the keys of both epochs, then `mv_pass`'s
//! [`Store::replace_recipient`](mv_pass::Store::replace_recipient) (every `.gpg-id` naming the old
//! OpenPGP key names the new one, and what it covers is re-encrypted while the old key can still
//! decrypt it); the new certificate goes into the key folder; for a machine, its
//! `machines/<fqdn>/root` entry gets the new password. Here: deriving the keys, and printing.

use crate::cmd::pass::{keys_dir, store_dir};
use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_core::IdentityName;
use mv_identity::Root;

/// Step 1: pass entries encrypted to the old key are re-encrypted to the new one.
pub(super) fn reencrypt_pass(
    g: &Global,
    root: &Root,
    name: &IdentityName,
    from: u32,
    to: u32,
) -> Result<(), CliError> {
    let store = mv_pass::Store::new(store_dir(g));
    if !store.dir().is_dir() {
        return Ok(());
    }
    let old_key = root.at_epoch(name, from).openpgp(name)?;
    let new_key = root.at_epoch(name, to).openpgp(name)?;
    let old_fpr = mv_identity::fingerprint_hex(&old_key);
    let new_fpr = mv_identity::fingerprint_hex(&new_key);
    let keys = mv_pass::KeyDir::new(keys_dir(g));
    let mut ring = if keys.path().is_dir() {
        keys.load(None)?
    } else {
        mv_pass::Keyring::new()
    };
    ring.add_secret(old_key);
    ring.add_secret(new_key.clone());
    if keys.path().is_dir() && !store.folders_naming(&old_fpr)?.is_empty() {
        keys.put_public(&new_key.to_public_key())?;
    }
    let reencrypted = store.replace_recipient(&old_fpr, &new_fpr, &ring, |r| {
        tracing::debug!(
            folder = r.folder,
            entries = r.reencrypted,
            "pass: re-encrypted"
        );
    })?;
    if let IdentityName::Machine(m) = name {
        let pw = root.at_epoch(name, to).password(name);
        let (entry, content) = mv_pass::machine_root_entry(m.as_str(), &pw).usage()?;
        if store.contains(&entry) {
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
