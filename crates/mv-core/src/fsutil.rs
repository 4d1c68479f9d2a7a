//! Crash-safe file writes.
//!
//! Every file Multiverse writes goes through [`write_atomic`]: the bytes go to a temporary file in
//! the same folder, are fsynced, then renamed over the target, and the folder is fsynced. A crash at
//! any point leaves the old file or the new one, never a truncated mix. [`write_secret`] does the
//! same with mode 0600 set at creation, so a secret is never readable by others, not even briefly.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode for files holding secrets.
pub const SECRET_MODE: u32 = 0o600;
/// Mode for ordinary files of the tree.
pub const PUBLIC_MODE: u32 = 0o644;

/// An I/O failure together with the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}")]
pub struct FsError {
    /// What was being done ("cannot write", "cannot create folder", ...).
    pub action: &'static str,
    /// The path concerned.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

impl FsError {
    /// Wraps `source` with the action and path.
    pub fn new(action: &'static str, path: &Path, source: io::Error) -> Self {
        FsError {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Writes `contents` to `path` atomically with the given permission `mode`.
///
/// Creates missing parent folders (mode 0755). Returns `Ok(false)` without touching the file when
/// it already holds exactly `contents` with that mode, so callers can report "unchanged".
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<bool, FsError> {
    if let Ok(existing) = fs::read(path) {
        let same_mode = fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777 == mode)
            .unwrap_or(false);
        if existing == contents && same_mode {
            return Ok(false);
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| FsError::new("cannot create folder", &dir, e))?;
    let file_name = path.file_name().ok_or_else(|| {
        FsError::new("not a file path:", path, io::ErrorKind::InvalidInput.into())
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; make it exact.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(FsError::new("cannot write", path, e));
    }
    Ok(true)
}

/// Writes a secret file: atomic, mode 0600 from creation.
pub fn write_secret(path: &Path, contents: &[u8]) -> Result<bool, FsError> {
    write_atomic(path, contents, SECRET_MODE)
}

/// Writes an ordinary (public) file atomically with mode 0644.
pub fn write_public(path: &Path, contents: &[u8]) -> Result<bool, FsError> {
    write_atomic(path, contents, PUBLIC_MODE)
}

/// Fsyncs a folder so that a rename inside it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reports_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/c.txt");
        assert!(write_public(&p, b"one").unwrap());
        assert!(!write_public(&p, b"one").unwrap());
        assert!(write_public(&p, b"two").unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let leftovers: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    #[test]
    fn secret_files_are_0600() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key");
        write_secret(&p, b"s").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // An existing public file turned secret gets its mode fixed even with equal bytes.
        let q = d.path().join("k2");
        write_public(&q, b"s").unwrap();
        assert!(write_secret(&q, b"s").unwrap());
        assert_eq!(
            fs::metadata(&q).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
