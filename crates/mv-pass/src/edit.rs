//! `edit`: an entry's plaintext in a private scratch folder, opened with the person's editor.
//!
//! The folder is made by `tempfile::Builder` with mode 0700 from its creation, in `/dev/shm`
//! (memory) when it exists; the file is overwritten with zeros and the folder removed whatever
//! happened. The editor gets the file's path, never the secret. What this is not: it does not
//! read or write the store ([`crate::Store::read`] and [`crate::Store::write_with_message`] do,
//! around it) and does not choose the editor (the caller maps `$EDITOR`).

use mv_core::secret::SecretBytes;
use std::path::{Path, PathBuf};

/// Errors of [`edit_secret`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// The private folder could not be made.
    #[error("cannot create private folder in {}: {source}", .base.display())]
    Scratch {
        /// Where it was to be made.
        base: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The old contents could not be written for the editor.
    #[error("cannot write the file to edit: {0}")]
    Write(#[source] mv_core::fsutil::FsError),
    /// The editor could not be started.
    #[error("cannot run the editor `{editor}`: {source}")]
    Spawn {
        /// The editor command.
        editor: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The editor exited with a failure.
    #[error("the editor `{editor}` failed ({status}); nothing saved")]
    EditorFailed {
        /// The editor command.
        editor: String,
        /// How it ended.
        status: std::process::ExitStatus,
    },
    /// The edited file could not be read back.
    #[error("cannot read the edited file {}: {source}", .file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl mv_core::Classify for EditError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

/// What the editor left.
#[derive(Debug)]
pub enum Edited {
    /// New contents to save.
    Changed(SecretBytes),
    /// A new entry the editor did not save (pass: "New password not saved.").
    NotSaved,
    /// The same contents as before (pass: "Password unchanged.").
    Unchanged,
}

/// Runs `editor` (a shell word list, e.g. `code -w`, run by `sh -c` with the path as `$1`) on a
/// file named `file_name` in a private scratch folder, holding `old` if the entry exists (a new
/// entry starts with no file, so an editor that saves nothing saves nothing, as in pass).
pub fn edit_secret(
    old: Option<&SecretBytes>,
    file_name: &str,
    editor: &str,
) -> Result<Edited, EditError> {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new()
        .prefix("multiverse-pass.")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(&base)
        .map_err(|source| EditError::Scratch { base, source })?;
    let file = dir.path().join(file_name);
    let result = run(&file, old, editor);
    // Overwrite before removing; the folder goes when `dir` drops.
    if let Ok(meta) = std::fs::metadata(&file) {
        let zeros = vec![0u8; usize::try_from(meta.len()).unwrap_or(0)];
        let _ = std::fs::write(&file, zeros);
    }
    drop(dir);
    result
}

fn run(file: &Path, old: Option<&SecretBytes>, editor: &str) -> Result<Edited, EditError> {
    if let Some(old) = old {
        mv_core::fsutil::write_secret(file, old.expose()).map_err(EditError::Write)?;
    }
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file)
        .status()
        .map_err(|source| EditError::Spawn {
            editor: editor.to_string(),
            source,
        })?;
    if !status.success() {
        return Err(EditError::EditorFailed {
            editor: editor.to_string(),
            status,
        });
    }
    let new = match std::fs::read(file) {
        Ok(b) => SecretBytes::new(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Edited::NotSaved),
        Err(source) => {
            return Err(EditError::Read {
                file: file.to_path_buf(),
                source,
            })
        }
    };
    // pass compares with the decrypted entry (under pipefail): a new entry is saved even when
    // the editor left it empty.
    if old.is_some_and(|o| o.expose() == new.expose()) {
        return Ok(Edited::Unchanged);
    }
    Ok(Edited::Changed(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_editor_that_appends_changes_and_true_leaves_unchanged() {
        let old = SecretBytes::new(b"pw\n".to_vec());
        match edit_secret(Some(&old), "a.txt", "echo more >>").unwrap() {
            Edited::Changed(b) => assert_eq!(b.expose(), b"pw\nmore\n"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            edit_secret(Some(&old), "a.txt", "true").unwrap(),
            Edited::Unchanged
        ));
        assert!(matches!(
            edit_secret(None, "a.txt", "true").unwrap(),
            Edited::NotSaved
        ));
        assert!(matches!(
            edit_secret(None, "a.txt", "false"),
            Err(EditError::EditorFailed { .. })
        ));
    }

    #[test]
    fn the_scratch_folder_is_private_and_removed() {
        let probe = "stat -c %a \"$(dirname \"$1\")\" > \"$1\"; true";
        let r = edit_secret(None, "a.txt", &format!("sh -c '{probe}' sh")).unwrap();
        let Edited::Changed(mode) = r else {
            panic!("{r:?}")
        };
        assert_eq!(mode.expose(), b"700\n");
    }
}
