//! The sealed root at rest: `<tree>/identity/root.sealed`, an `mv-seal` container (Argon2id +
//! XChaCha20-Poly1305, parameters inside) holding the 32 root bytes, written atomically with mode
//! 0600 in a 0700 folder.
//!
//! [`IdentityStore::create`] refuses to replace an existing identity unless `force` is set;
//! [`IdentityStore::load`] reads and format-checks the container without the passphrase;
//! [`IdentityStore::unseal`] opens it. A wrong passphrase and a changed byte are the same error.
//! The unsealed [`Root`] carries the tree's key epochs, read from `[identity.epochs]` of
//! `<tree>/multiverse.toml` (none when the file is absent), so every key derived from it is the
//! name's current key; the sealed file itself holds no epoch.
//!
//! The file is read before anything in it is authenticated, so `load` trusts nothing about it: it
//! must be a regular file (not a link, a device or a FIFO) of at most [`MAX_SEALED_LEN`] bytes, and
//! `mv-seal` refuses costly Argon2 parameters before deriving anything.

use crate::root::Root;
use mv_core::epochs::Epochs;
use mv_core::fsutil::{self, FsError};
use mv_core::layout::Tree;
use mv_seal::{KdfParams, SealError};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The largest sealed root read (a 32-byte root seals to 108 bytes; the slack is for later
/// versions). A bigger file is refused without being read whole.
pub const MAX_SEALED_LEN: u64 = 4096;

/// Why the sealed identity could not be created, read or opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` without `force` on a tree that already has an identity.
    #[error("an identity already exists at {0}; refusing to replace it")]
    Exists(PathBuf),
    /// No sealed root in the tree.
    #[error("no identity at {0}")]
    Missing(PathBuf),
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The container is malformed, or the passphrase is wrong / the file was changed.
    #[error("cannot open the sealed identity {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Format or authentication error.
        #[source]
        source: SealError,
    },
    /// The path is not a regular file of at most [`MAX_SEALED_LEN`] bytes.
    #[error("{path} is not a sealed identity: {why}")]
    NotSealedFile {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        why: String,
    },
    /// The container opened but does not hold 32 bytes.
    #[error("the sealed identity {path} holds {len} bytes, not a 32-byte root")]
    BadLength {
        /// The file.
        path: PathBuf,
        /// Bytes found.
        len: usize,
    },
    /// Writing failed.
    #[error("cannot write the sealed identity")]
    Write(#[source] FsError),
    /// `multiverse.toml` could not be read for its key epochs.
    #[error("{}: cannot read the key epochs", path.display())]
    ReadEpochs {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `[identity.epochs]` of `multiverse.toml` is refused (`FILE:LINE: what`).
    #[error("{}:{}", path.display(), source)]
    Epochs {
        /// The file.
        path: PathBuf,
        /// The line and what is wrong.
        source: mv_core::epochs::EpochsError,
    },
}

impl StoreError {
    /// True when the passphrase was wrong or the sealed file was modified.
    pub fn is_authentication(&self) -> bool {
        matches!(
            self,
            StoreError::Open {
                source: SealError::Authentication,
                ..
            }
        )
    }
}

/// A sealed identity read from a tree.
#[derive(Debug, Clone)]
pub struct IdentityStore {
    path: PathBuf,
    tree: PathBuf,
    sealed: Vec<u8>,
}

/// The file holding the key epochs of a tree (its `multiverse.toml`).
pub fn epochs_file(tree_root: &Path) -> PathBuf {
    Tree::new(tree_root).config_file()
}

/// The key epochs of a tree: `[identity.epochs]` of `<tree>/multiverse.toml`, empty when the file
/// does not exist.
pub fn load_epochs(tree_root: &Path) -> Result<Epochs, StoreError> {
    let path = epochs_file(tree_root);
    let text = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Epochs::new()),
        Err(source) => return Err(StoreError::ReadEpochs { path, source }),
    };
    let text = String::from_utf8_lossy(&text);
    mv_core::epochs::epochs(&text).map_err(|source| StoreError::Epochs { path, source })
}

impl IdentityStore {
    /// `<tree>/identity` ([`Tree::identity_dir`]).
    pub fn dir(tree_root: &Path) -> PathBuf {
        Tree::new(tree_root).identity_dir()
    }

    /// `<tree>/identity/root.sealed` ([`Tree::sealed_root`]).
    pub fn sealed_path(tree_root: &Path) -> PathBuf {
        Tree::new(tree_root).sealed_root()
    }

    /// Whether the tree has a sealed identity.
    pub fn exists(tree_root: &Path) -> bool {
        Self::sealed_path(tree_root).exists()
    }

    /// Seals `root` under `passphrase` into the tree. Refuses to replace an existing identity
    /// unless `force`.
    pub fn create(
        tree_root: &Path,
        root: &Root,
        passphrase: &[u8],
        params: KdfParams,
        force: bool,
    ) -> Result<IdentityStore, StoreError> {
        let path = Self::sealed_path(tree_root);
        if path.exists() && !force {
            return Err(StoreError::Exists(path));
        }
        let sealed = mv_seal::seal(root.expose_bytes(), passphrase, params);
        let dir = Self::dir(tree_root);
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Write(FsError::new("cannot create folder", &dir, e)))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| StoreError::Write(FsError::new("cannot set mode 0700 on", &dir, e)))?;
        fsutil::write_secret(&path, &sealed).map_err(StoreError::Write)?;
        Ok(IdentityStore {
            path,
            tree: tree_root.to_path_buf(),
            sealed,
        })
    }

    /// Reads the sealed identity of a tree and checks its format (no passphrase needed).
    pub fn load(tree_root: &Path) -> Result<IdentityStore, StoreError> {
        let path = Self::sealed_path(tree_root);
        let sealed = read_bounded(&path)?;
        if let Err(e) = mv_seal::parse(&sealed) {
            return Err(StoreError::Open {
                path,
                source: e.into(),
            });
        }
        Ok(IdentityStore {
            path,
            tree: tree_root.to_path_buf(),
            sealed,
        })
    }

    /// The sealed file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The KDF parameters it is sealed with.
    pub fn params(&self) -> Option<KdfParams> {
        mv_seal::parse(&self.sealed).ok().map(|p| p.params)
    }

    /// Opens the sealed root with the passphrase; the root carries the tree's key epochs.
    pub fn unseal(&self, passphrase: &[u8]) -> Result<Root, StoreError> {
        self.attach_epochs(self.unseal_bare(passphrase)?)
    }

    /// `root` with the tree's key epochs, read now (what [`IdentityStore::unseal`] adds to the
    /// bare root).
    pub fn attach_epochs(&self, root: Root) -> Result<Root, StoreError> {
        Ok(root.with_epochs(load_epochs(&self.tree)?))
    }

    /// The sealed file's bytes as read (ciphertext: public, and what a cache of unsealed roots
    /// is keyed by).
    pub fn sealed_bytes(&self) -> &[u8] {
        &self.sealed
    }

    /// Opens the sealed root without reading any epoch (every name at epoch 0).
    pub fn unseal_bare(&self, passphrase: &[u8]) -> Result<Root, StoreError> {
        let plain = mv_seal::open(&self.sealed, passphrase).map_err(|source| StoreError::Open {
            path: self.path.clone(),
            source,
        })?;
        let bytes: [u8; 32] =
            plain
                .expose()
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::BadLength {
                    path: self.path.clone(),
                    len: plain.expose().len(),
                })?;
        let root = Root::from_bytes(bytes);
        // `bytes` is a Copy array on the stack; overwrite our copy now that the Root holds it.
        let mut bytes = bytes;
        zeroize::Zeroize::zeroize(&mut bytes);
        Ok(root)
    }
}

/// Reads `path` if it is a regular file (a symlink is refused, not followed: `create` never makes
/// one) of at most [`MAX_SEALED_LEN`] bytes. The check is made on the path (`lstat`, so that a
/// FIFO or a device is never opened) and again on the opened file (`fstat`: the same inode, still
/// small), and at most `MAX_SEALED_LEN + 1` bytes are ever read.
fn read_bounded(path: &Path) -> Result<Vec<u8>, StoreError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let read_err = |source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    };
    let not_sealed = |why: String| StoreError::NotSealedFile {
        path: path.to_path_buf(),
        why,
    };
    let check = |m: &std::fs::Metadata| -> Result<(), StoreError> {
        let t = m.file_type();
        if !t.is_file() {
            let what = if t.is_symlink() {
                "a symbolic link"
            } else if t.is_dir() {
                "a folder"
            } else {
                "a device, FIFO or socket"
            };
            return Err(not_sealed(format!("it is {what}, not a regular file")));
        }
        if m.len() > MAX_SEALED_LEN {
            return Err(not_sealed(format!(
                "it is {} bytes, more than the {MAX_SEALED_LEN}-byte maximum",
                m.len()
            )));
        }
        Ok(())
    };
    let before = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::Missing(path.to_path_buf()))
        }
        Err(e) => return Err(read_err(e)),
    };
    check(&before)?;
    let file = std::fs::File::open(path).map_err(read_err)?;
    let after = file.metadata().map_err(read_err)?;
    if (after.dev(), after.ino()) != (before.dev(), before.ino()) {
        return Err(not_sealed("it was replaced while being read".into()));
    }
    check(&after)?;
    let mut bytes = Vec::new();
    file.take(MAX_SEALED_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_SEALED_LEN {
        return Err(not_sealed(format!(
            "it grew past the {MAX_SEALED_LEN}-byte maximum while being read"
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const FAST: KdfParams = KdfParams::INSECURE_FAST;

    #[test]
    fn create_load_unseal() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::generate();
        IdentityStore::create(d.path(), &root, b"pw", FAST, false).unwrap();
        let meta = std::fs::metadata(IdentityStore::sealed_path(d.path())).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let dm = std::fs::metadata(IdentityStore::dir(d.path())).unwrap();
        assert_eq!(dm.permissions().mode() & 0o777, 0o700);
        let s = IdentityStore::load(d.path()).unwrap();
        assert_eq!(s.params(), Some(FAST));
        assert_eq!(s.unseal(b"pw").unwrap(), root);
        assert!(s.unseal(b"wrong").unwrap_err().is_authentication());
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let d = tempfile::tempdir().unwrap();
        let a = Root::generate();
        IdentityStore::create(d.path(), &a, b"pw", FAST, false).unwrap();
        let before = std::fs::read(IdentityStore::sealed_path(d.path())).unwrap();
        let e = IdentityStore::create(d.path(), &Root::generate(), b"pw", FAST, false).unwrap_err();
        assert!(matches!(e, StoreError::Exists(_)));
        assert_eq!(
            std::fs::read(IdentityStore::sealed_path(d.path())).unwrap(),
            before
        );
        let b = Root::generate();
        IdentityStore::create(d.path(), &b, b"pw", FAST, true).unwrap();
        assert_eq!(
            IdentityStore::load(d.path())
                .unwrap()
                .unseal(b"pw")
                .unwrap(),
            b
        );
    }

    #[test]
    fn flipped_byte_and_garbage() {
        let d = tempfile::tempdir().unwrap();
        IdentityStore::create(d.path(), &Root::generate(), b"pw", FAST, false).unwrap();
        let p = IdentityStore::sealed_path(d.path());
        let mut b = std::fs::read(&p).unwrap();
        let last = b.len() - 1;
        b[last] ^= 0x80;
        std::fs::write(&p, &b).unwrap();
        let e = IdentityStore::load(d.path())
            .unwrap()
            .unseal(b"pw")
            .unwrap_err();
        assert!(e.is_authentication());
        std::fs::write(&p, b"garbage").unwrap();
        assert!(matches!(
            IdentityStore::load(d.path()),
            Err(StoreError::Open {
                source: SealError::Format(_),
                ..
            })
        ));
        // Not regular files, or too big: refused without reading them whole.
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
        assert!(matches!(
            IdentityStore::load(d.path()),
            Err(StoreError::NotSealedFile { .. })
        ));
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, vec![0u8; MAX_SEALED_LEN as usize + 1]).unwrap();
        assert!(matches!(
            IdentityStore::load(d.path()),
            Err(StoreError::NotSealedFile { .. })
        ));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            IdentityStore::load(empty.path()),
            Err(StoreError::Missing(_))
        ));
    }
}
