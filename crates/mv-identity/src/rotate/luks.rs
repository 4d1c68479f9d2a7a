//! The LUKS steps of a rotation: the new epoch's LUKS key in a keyslot, the old key's removed.
//!
//! - [`rekey_device`]: a LUKS device or image (`cryptsetup luksAddKey` / `luksRemoveKey`);
//! - [`rekey_disks`]: a machine's LUKS-encrypted qcow2 disks (`qemu-img amend`; the passphrase is
//!   the hex of the `luks` key). A running machine holds its disks (QEMU locks them) and keeps
//!   its open volume key: its disks are re-keyed before its next start ([`finish_rekey`], from a
//!   marker file naming the old epoch).
//!
//! Both read the keys from 0600 files in a private scratch folder (0700 from creation, removed on
//! drop), never from argv, and both are idempotent: a key already present is not added twice, an
//! old key already gone is not removed. Progress lines go to the caller's callback.
//!
//! What this is not: the choice of devices (the caller's `--luks-device` and the machine's disks).

use crate::root::Root;
use mv_core::fsutil::FsError;
use mv_core::{Classify, ErrorClass, IdentityName};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why a re-key failed.
#[derive(Debug, thiserror::Error)]
pub enum LuksError {
    /// A tool could not be started.
    #[error("cannot run {tool}: {error}")]
    Spawn {
        /// `cryptsetup` or `qemu-img`.
        tool: &'static str,
        /// Why (in the message, as the CLI showed it).
        error: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("{what} failed: {stderr}")]
    Tool {
        /// The tool and its subcommand (and the disk).
        what: String,
        /// The last thing it said.
        stderr: String,
    },
    /// Neither key opens the device: it is not this name's.
    #[error("{}: neither the old nor the new LUKS key of {name} opens it", path.display())]
    NeitherKey {
        /// The device or disk.
        path: PathBuf,
        /// The name rotated.
        name: IdentityName,
    },
    /// A disk is held by a running machine.
    #[error("{}: the disk is in use (its machine is running)", .0.display())]
    InUse(PathBuf),
    /// The pending re-key marker does not hold an epoch.
    #[error("{}: not an epoch: {text:?}", path.display())]
    Marker {
        /// The marker file.
        path: PathBuf,
        /// What it holds.
        text: String,
    },
    /// The private scratch folder could not be made.
    #[error("cannot make a private scratch folder")]
    Scratch(#[source] std::io::Error),
    /// A key file or the marker could not be written or removed.
    #[error(transparent)]
    Write(#[from] FsError),
}

impl Classify for LuksError {
    fn class(&self) -> ErrorClass {
        match self {
            LuksError::NeitherKey { .. } | LuksError::InUse(_) | LuksError::Marker { .. } => {
                ErrorClass::Usage
            }
            _ => ErrorClass::Failure,
        }
    }
}

/// A private scratch folder for key files, removed on drop.
fn scratch() -> Result<tempfile::TempDir, LuksError> {
    tempfile::Builder::new()
        .prefix(".mv-rotate-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .map_err(LuksError::Scratch)
}

fn run(tool: &'static str, cmd: &mut Command) -> Result<std::process::Output, LuksError> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|error| LuksError::Spawn { tool, error })
}

/// Whether `key` opens a keyslot of `dev` (`cryptsetup open --test-passphrase`, no mapping made).
fn luks_opens(dev: &Path, key: &Path) -> Result<bool, LuksError> {
    let st = Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file"])
        .arg(key)
        .arg(dev)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|error| LuksError::Spawn {
            tool: "cryptsetup",
            error,
        })?;
    Ok(st.success())
}

fn cryptsetup(args: &[&std::ffi::OsStr]) -> Result<(), LuksError> {
    let out = run("cryptsetup", Command::new("cryptsetup").args(args))?;
    if !out.status.success() {
        return Err(LuksError::Tool {
            what: format!(
                "cryptsetup {}",
                args.first()
                    .map(|a| a.to_string_lossy())
                    .unwrap_or_default()
            ),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The new LUKS key of `name` (from `new`) in a keyslot of `dev`, the old key's (from `old`)
/// keyslot removed.
pub fn rekey_device(
    old: &Root,
    new: &Root,
    name: &IdentityName,
    dev: &Path,
    progress: &mut dyn FnMut(String),
) -> Result<(), LuksError> {
    let s = scratch()?;
    let old_file = s.path().join("old.key");
    let new_file = s.path().join("new.key");
    mv_core::fsutil::write_secret(&old_file, old.luks_key(name).expose())?;
    mv_core::fsutil::write_secret(&new_file, new.luks_key(name).expose())?;
    if !luks_opens(dev, &new_file)? {
        if !luks_opens(dev, &old_file)? {
            return Err(LuksError::NeitherKey {
                path: dev.to_path_buf(),
                name: name.clone(),
            });
        }
        cryptsetup(&[
            "luksAddKey".as_ref(),
            "--batch-mode".as_ref(),
            "--key-file".as_ref(),
            old_file.as_os_str(),
            dev.as_os_str(),
            new_file.as_os_str(),
        ])?;
        progress(format!("{}: new LUKS key added", dev.display()));
    }
    if luks_opens(dev, &old_file)? {
        cryptsetup(&[
            "luksRemoveKey".as_ref(),
            "--batch-mode".as_ref(),
            dev.as_os_str(),
            old_file.as_os_str(),
        ])?;
        progress(format!("{}: old LUKS keyslot removed", dev.display()));
    }
    Ok(())
}

/// `secret,id=ID,format=raw,file=PATH`: a QEMU secret object read from a 0600 file.
fn key_object(id: &str, file: &Path) -> std::ffi::OsString {
    let mut o = std::ffi::OsString::from(format!("secret,id={id},format=raw,file="));
    o.push(file.as_os_str());
    o
}

fn image_opts(disk: &Path, key_id: &str) -> std::ffi::OsString {
    let mut o = std::ffi::OsString::from("driver=qcow2,file.filename=");
    o.push(disk.as_os_str());
    o.push(format!(",encrypt.key-secret={key_id}"));
    o
}

/// Whether the passphrase in `pass` opens the encrypted qcow2 `disk` (`qemu-img check`, which
/// reads it and writes nothing); a disk held by a running machine is [`LuksError::InUse`].
fn disk_opens(disk: &Path, pass: &Path) -> Result<bool, LuksError> {
    let out = run(
        "qemu-img",
        Command::new("qemu-img")
            .arg("check")
            .arg("--object")
            .arg(key_object("k", pass))
            .arg("--image-opts")
            .arg(image_opts(disk, "k")),
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(true)
    } else if err.contains("Invalid password") {
        Ok(false)
    } else if err.contains("lock") {
        Err(LuksError::InUse(disk.to_path_buf()))
    } else {
        Err(LuksError::Tool {
            what: format!("qemu-img check of {}", disk.display()),
            stderr: err.trim().to_string(),
        })
    }
}

/// `qemu-img amend` of an encrypted disk opened with secret `open` (both key files named).
fn amend(disk: &Path, old: &Path, new: &Path, open: &str, opts: &str) -> Result<(), LuksError> {
    let out = run(
        "qemu-img",
        Command::new("qemu-img")
            .arg("amend")
            .arg("--object")
            .arg(key_object("old", old))
            .arg("--object")
            .arg(key_object("new", new))
            .arg("--image-opts")
            .arg(image_opts(disk, open))
            .args(["-o", opts]),
    )?;
    if !out.status.success() {
        return Err(LuksError::Tool {
            what: format!("qemu-img amend of {}", disk.display()),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Re-keys the existing encrypted qcow2 `disks` of machine `name` from `old`'s LUKS key to
/// `new`'s. When one of them is held by the running machine nothing is changed: `marker` then
/// records the old epoch (for [`finish_rekey`]) and the answer is `Ok(false)`.
pub fn rekey_disks(
    old: &Root,
    new: &Root,
    name: &IdentityName,
    disks: &[PathBuf],
    marker: &Path,
    progress: &mut dyn FnMut(String),
) -> Result<bool, LuksError> {
    if disks.is_empty() {
        return Ok(true);
    }
    let s = scratch()?;
    let old_file = s.path().join("old.pass");
    let new_file = s.path().join("new.pass");
    let hex = mv_core::secret::hex_lower;
    mv_core::fsutil::write_secret(&old_file, hex(&old.luks_key(name)).expose())?;
    mv_core::fsutil::write_secret(&new_file, hex(&new.luks_key(name)).expose())?;
    if let Some(disk) = disks
        .iter()
        .find(|d| matches!(disk_opens(d, &new_file), Err(LuksError::InUse(_))))
    {
        let from = old.epochs().get(name);
        mv_core::fsutil::write_public(marker, format!("{from}\n").as_bytes())?;
        progress(format!(
            "{}: in use by the running {name}: its LUKS keyslot changes at the machine's next `multiverse up --start` (the running machine keeps its open disk)",
            disk.display(),
        ));
        return Ok(false);
    }
    for disk in disks {
        if !disk_opens(disk, &new_file)? {
            if !disk_opens(disk, &old_file)? {
                return Err(LuksError::NeitherKey {
                    path: disk.clone(),
                    name: name.clone(),
                });
            }
            amend(
                disk,
                &old_file,
                &new_file,
                "old",
                "encrypt.state=active,encrypt.new-secret=new,encrypt.iter-time=10",
            )?;
            progress(format!("{}: new LUKS key added", disk.display()));
        }
        if disk_opens(disk, &old_file)? {
            amend(
                disk,
                &old_file,
                &new_file,
                "new",
                "encrypt.state=inactive,encrypt.old-secret=old",
            )?;
            progress(format!("{}: old LUKS keyslot removed", disk.display()));
        }
    }
    Ok(true)
}

/// Before a shut-off machine starts: the re-key a rotation left pending (see [`rekey_disks`]),
/// from the epoch in `marker` to `root`'s; the marker is removed once done. Nothing when there is
/// no marker.
pub fn finish_rekey(
    root: &Root,
    name: &IdentityName,
    disks: &[PathBuf],
    marker: &Path,
    progress: &mut dyn FnMut(String),
) -> Result<(), LuksError> {
    let Ok(text) = std::fs::read_to_string(marker) else {
        return Ok(());
    };
    let from: u32 = text.trim().parse().map_err(|_| LuksError::Marker {
        path: marker.to_path_buf(),
        text: text.trim().to_string(),
    })?;
    if rekey_disks(
        &root.at_epoch(name, from),
        root,
        name,
        disks,
        marker,
        progress,
    )? {
        std::fs::remove_file(marker).map_err(|e| FsError::new("cannot remove", marker, e))?;
    }
    Ok(())
}
