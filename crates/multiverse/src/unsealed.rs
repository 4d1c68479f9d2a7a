//! The identity root, unsealed at most once per process.
//!
//! `rebuild` runs several commands in one process, and a command such as `pass machines` needs
//! the root more than once; every unseal is a full Argon2id (about a second at the default
//! 256 MiB). The first unseal, or the seal of `identity new`/`restore`, is remembered here, keyed
//! by the SHA-256 of the sealed file's bytes and of the passphrase: another passphrase or a
//! re-sealed file is a miss (and then a real unseal, with its real error), never a wrong root.
//! Only the bare root is kept; the tree's epochs are read again at each call, as
//! [`IdentityStore::unseal`] does, so a rotation within the process is seen.
//!
//! What this is not: a cache across processes (the pass session agent is that, for pass), or a
//! place that keeps a secret longer than the process that already holds it.

use mv_identity::{IdentityStore, Root, StoreError};
use sha2::{Digest, Sha256};
use std::sync::Mutex;
use zeroize::Zeroizing;

struct Memo {
    sealed: [u8; 32],
    passphrase: Zeroizing<[u8; 32]>,
    root: Root,
}

static MEMO: Mutex<Option<Memo>> = Mutex::new(None);

fn digests(sealed: &[u8], passphrase: &[u8]) -> ([u8; 32], Zeroizing<[u8; 32]>) {
    (
        Sha256::digest(sealed).into(),
        Zeroizing::new(Sha256::digest(passphrase).into()),
    )
}

/// [`IdentityStore::unseal`], once per sealed file and passphrase in this process.
pub fn unseal(store: &IdentityStore, passphrase: &[u8]) -> Result<Root, StoreError> {
    let (sealed, pass) = digests(store.sealed_bytes(), passphrase);
    let known = MEMO.lock().ok().and_then(|m| {
        m.as_ref()
            .filter(|m| m.sealed == sealed && *m.passphrase == *pass)
            .map(|m| m.root.clone())
    });
    let bare = match known {
        Some(root) => root,
        None => {
            let root = store.unseal_bare(passphrase)?;
            remember_digests(sealed, pass, &root);
            root
        }
    };
    store.attach_epochs(bare)
}

/// After `store` was sealed from `root` with `passphrase`: the next [`unseal`] needs no Argon2id.
pub fn remember(store: &IdentityStore, passphrase: &[u8], root: &Root) {
    let (sealed, pass) = digests(store.sealed_bytes(), passphrase);
    remember_digests(sealed, pass, root);
}

fn remember_digests(sealed: [u8; 32], passphrase: Zeroizing<[u8; 32]>, root: &Root) {
    if let Ok(mut m) = MEMO.lock() {
        *m = Some(Memo {
            sealed,
            passphrase,
            root: root.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hit needs the same sealed bytes and the same passphrase; a wrong passphrase after a hit
    /// still fails as a real unseal does.
    #[test]
    fn only_the_same_file_and_passphrase_hit() {
        let tree = tempfile::tempdir().unwrap();
        let root = Root::from_bytes([7u8; 32]);
        let store = IdentityStore::create(
            tree.path(),
            &root,
            b"right",
            mv_identity::KdfParams::INSECURE_FAST,
            false,
        )
        .unwrap();
        let first = unseal(&store, b"right").unwrap();
        assert!(first.same_secret(&root));
        let again = unseal(&store, b"right").unwrap();
        assert!(again.same_secret(&root));
        let wrong = unseal(&store, b"wrong");
        assert!(wrong.is_err_and(|e| e.is_authentication()));
        // Another file (re-sealed under the same passphrase) is a miss, then a real unseal.
        let other = Root::from_bytes([9u8; 32]);
        let store2 = IdentityStore::create(
            tree.path(),
            &other,
            b"right",
            mv_identity::KdfParams::INSECURE_FAST,
            true,
        )
        .unwrap();
        assert!(unseal(&store2, b"right").unwrap().same_secret(&other));
    }
}
