//! Finding the hidden key on the token: in a folder of PNG files, or on the armed token's own
//! partitions, each mounted read-only in turn.
//!
//! [`find_key_in_dir`] tries every `*.png` of a folder (sorted by name) and returns the first key
//! that opens under the passphrase. [`find_key_on_token`] mounts each partition of the token
//! (`mount -o ro,nodev,nosuid,noexec`) on a folder of its own, looks there, and unmounts it before
//! trying the next; a failed `umount` is an error ([`TokenKeyError::Umount`]): a partition left
//! mounted under a temporary folder is something the person must know about.
//!
//! Main types: [`TokenKeyError`], [`TokenPartitions`].
//!
//! What this module is not: the decision which device is the token ([`crate::token::TokenSpec`]),
//! or opening the LUKS device with the key ([`crate::luks`]).

use crate::container::{self, KdfParams};
use crate::image::Cover;
use crate::token::{block_devices, scan, TokenSpec};
use mv_core::secret::SecretBytes;
use mv_core::{Classify, ErrorClass};
use std::path::{Path, PathBuf};

/// Why no key came from the token.
#[derive(Debug, thiserror::Error)]
pub enum TokenKeyError {
    /// The armed token is not plugged in, or has no block device.
    #[error("the token {0} is not plugged in (or has no storage)")]
    NotPlugged(String),
    /// The folder of images cannot be listed.
    #[error("cannot read token folder {}: {source}", dir.display())]
    ReadDir {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No image in the folder opens under the passphrase.
    #[error("no image under {} holds a key for this passphrase ({tried} PNG files tried)", dir.display())]
    NotInDir {
        /// The folder.
        dir: PathBuf,
        /// How many PNG files were tried.
        tried: usize,
    },
    /// No image on any of the token's partitions opens under the passphrase.
    #[error("no image on the token's partitions ({}) holds a key for this passphrase", partitions.join(", "))]
    NotOnToken {
        /// The partitions tried (names under /dev).
        partitions: Vec<String>,
    },
    /// The mount point cannot be made.
    #[error("cannot create {}: {source}", dir.display())]
    MountPoint {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A partition stays mounted: `umount` failed.
    #[error("cannot unmount /dev/{partition} from {}: {why}", dir.display())]
    Umount {
        /// The partition (name under /dev).
        partition: String,
        /// The mount point.
        dir: PathBuf,
        /// What umount said, or why it could not run.
        why: String,
    },
}

impl Classify for TokenKeyError {
    fn class(&self) -> ErrorClass {
        match self {
            TokenKeyError::NotPlugged(_)
            | TokenKeyError::ReadDir { .. }
            | TokenKeyError::NotInDir { .. }
            | TokenKeyError::NotOnToken { .. } => ErrorClass::Usage,
            TokenKeyError::MountPoint { .. } | TokenKeyError::Umount { .. } => ErrorClass::Failure,
        }
    }
}

/// The first PNG under `dir` (by name) holding a key for this passphrase.
pub fn find_key_in_dir(
    dir: &Path,
    passphrase: &[u8],
    params: KdfParams,
) -> Result<SecretBytes, TokenKeyError> {
    let mut pngs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| TokenKeyError::ReadDir {
            dir: dir.into(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png")))
        .collect();
    pngs.sort();
    pngs.iter()
        .find_map(|png| {
            let c = Cover::read(png).ok()?;
            container::reveal(&c, passphrase, params).ok()
        })
        .ok_or_else(|| TokenKeyError::NotInDir {
            dir: dir.into(),
            tried: pngs.len(),
        })
}

/// The armed token's partitions and where they are mounted while looking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPartitions {
    /// Block devices of the token (names under /dev), sorted.
    pub partitions: Vec<String>,
    /// The mount point, one per process (`$TMPDIR/multiverse-token-PID`).
    pub mount_dir: PathBuf,
}

impl TokenPartitions {
    /// The partitions of every plugged-in device matching `spec`, read from the sysfs at `sys`.
    pub fn find(sys: &Path, spec: &TokenSpec) -> Result<TokenPartitions, TokenKeyError> {
        let partitions: Vec<String> = scan(sys)
            .into_iter()
            .filter(|d| spec.matches(d))
            .flat_map(|d| block_devices(sys, &d.devpath))
            .collect();
        if partitions.is_empty() {
            return Err(TokenKeyError::NotPlugged(spec.to_string()));
        }
        Ok(TokenPartitions {
            partitions,
            mount_dir: std::env::temp_dir()
                .join(format!("multiverse-token-{}", std::process::id())),
        })
    }

    /// The read-only `mount` command line for `partition` (a name under /dev).
    pub fn mount_argv(&self, partition: &str) -> Vec<String> {
        vec![
            "mount".into(),
            "-o".into(),
            "ro,nodev,nosuid,noexec".into(),
            format!("/dev/{partition}"),
            self.mount_dir.display().to_string(),
        ]
    }
}

/// Mounts each of the token's partitions read-only in turn and returns the first key found there
/// ([`find_key_in_dir`]). A partition that does not mount is skipped; one that does not unmount
/// stops the search with [`TokenKeyError::Umount`].
pub fn find_key_on_token(
    token: &TokenPartitions,
    passphrase: &[u8],
    params: KdfParams,
) -> Result<SecretBytes, TokenKeyError> {
    let mnt = &token.mount_dir;
    std::fs::create_dir_all(mnt).map_err(|source| TokenKeyError::MountPoint {
        dir: mnt.clone(),
        source,
    })?;
    let result = search(token, passphrase, params);
    // Only an empty folder is removed (a partition still mounted on it keeps it).
    let _ = std::fs::remove_dir(mnt);
    result
}

fn search(
    token: &TokenPartitions,
    passphrase: &[u8],
    params: KdfParams,
) -> Result<SecretBytes, TokenKeyError> {
    let mnt = &token.mount_dir;
    for dev in &token.partitions {
        let argv = token.mount_argv(dev);
        let mounted = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            continue;
        }
        let found = find_key_in_dir(mnt, passphrase, params).ok();
        umount(dev, mnt)?;
        if let Some(key) = found {
            return Ok(key);
        }
    }
    Err(TokenKeyError::NotOnToken {
        partitions: token.partitions.clone(),
    })
}

fn umount(partition: &str, dir: &Path) -> Result<(), TokenKeyError> {
    let err = |why: String| TokenKeyError::Umount {
        partition: partition.into(),
        dir: dir.into(),
        why,
    };
    let out = std::process::Command::new("umount")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| err(format!("cannot run umount: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(err(if said.is_empty() {
        format!("umount exited with {}", out.status)
    } else {
        said
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::image::{synthetic_photo, Layout};

    #[test]
    fn the_first_png_that_opens_is_the_key() {
        let d = tempfile::tempdir().unwrap();
        let p = KdfParams::INSECURE_FAST;
        std::fs::write(d.path().join("a-notes.txt"), b"x").unwrap();
        let other = synthetic_photo(256, 256, Layout::Rgb, 8, 1);
        std::fs::write(d.path().join("a.png"), other.encode().unwrap()).unwrap();
        let mut c = synthetic_photo(256, 256, Layout::Rgb, 8, 2);
        container::hide(&mut c, b"the key", b"pass", p).unwrap();
        std::fs::write(d.path().join("b.PNG"), c.encode().unwrap()).unwrap();
        let k = find_key_in_dir(d.path(), b"pass", p).unwrap();
        assert_eq!(k.expose(), b"the key");
        let e = find_key_in_dir(d.path(), b"wrong", p).unwrap_err();
        assert!(matches!(e, TokenKeyError::NotInDir { tried: 2, .. }), "{e}");
        assert_eq!(e.class(), ErrorClass::Usage);
        let e = find_key_in_dir(&d.path().join("none"), b"pass", p).unwrap_err();
        assert!(matches!(e, TokenKeyError::ReadDir { .. }));
    }

    #[test]
    fn no_token_no_partitions_and_the_mount_line_is_read_only() {
        let d = tempfile::tempdir().unwrap();
        let spec: TokenSpec = "1050:0407".parse().unwrap();
        let e = TokenPartitions::find(d.path(), &spec).unwrap_err();
        assert!(matches!(e, TokenKeyError::NotPlugged(_)));
        let t = TokenPartitions {
            partitions: vec!["sdb1".into()],
            mount_dir: "/tmp/m".into(),
        };
        assert_eq!(
            t.mount_argv("sdb1").join(" "),
            "mount -o ro,nodev,nosuid,noexec /dev/sdb1 /tmp/m"
        );
    }

    #[test]
    fn a_failed_umount_is_reported() {
        let d = tempfile::tempdir().unwrap();
        // Nothing is mounted there: umount fails, and says so.
        let e = umount("sdz1", d.path()).unwrap_err();
        assert!(matches!(e, TokenKeyError::Umount { .. }), "{e}");
        assert_eq!(e.class(), ErrorClass::Failure);
    }
}
