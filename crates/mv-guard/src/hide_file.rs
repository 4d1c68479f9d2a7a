//! Hiding a key from a cover file into an output file, idempotently: what `guard hide` and
//! `guard enroll` do with files.
//!
//! [`hide_file`] reads the cover, leaves an output that already holds this key under this
//! passphrase untouched, checks the cover's capacity before any key is derived, and writes the
//! image atomically (mode 0644: the image is meant to look like any other photo). In dry-run it
//! checks the same and writes nothing.
//!
//! Main types: [`HideFile`], [`HideFileOutcome`], [`HideFileError`].

use crate::container::{self, HideError, KdfParams};
use crate::image::{Cover, ImageError, Layout};
use mv_core::{Classify, ErrorClass};
use std::path::Path;

/// What to hide where.
#[derive(Clone, Copy)]
pub struct HideFile<'a> {
    /// The cover image (a lossless PNG).
    pub cover: &'a Path,
    /// Where the image with the hidden key goes.
    pub out: &'a Path,
    /// The key.
    pub key: &'a [u8],
    /// The image passphrase.
    pub passphrase: &'a [u8],
    /// Its Argon2id parameters.
    pub params: KdfParams,
    /// Check everything, write nothing.
    pub dry_run: bool,
}

impl std::fmt::Debug for HideFile<'_> {
    // The key and the passphrase never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HideFile")
            .field("cover", &self.cover)
            .field("out", &self.out)
            .field("key", &format_args!("[{} bytes]", self.key.len()))
            .field("passphrase", &"[redacted]")
            .field("params", &self.params)
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

/// What [`hide_file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HideFileOutcome {
    /// The output already holds this key under this passphrase: nothing written.
    Unchanged,
    /// Dry-run: the key fits; nothing written.
    WouldHide {
        /// Cover width in pixels.
        width: u32,
        /// Cover height in pixels.
        height: u32,
        /// Cover colour layout.
        layout: Layout,
        /// Bits per sample.
        depth: u8,
        /// Carrier samples needed.
        need: usize,
        /// Carrier samples the cover has.
        have: usize,
    },
    /// The image was written.
    Hidden,
}

/// Why the key was not hidden.
#[derive(Debug, thiserror::Error)]
pub enum HideFileError {
    /// The cover cannot be read or used.
    #[error(transparent)]
    Cover(ImageError),
    /// The key does not fit in the cover (or is empty or too long).
    #[error(transparent)]
    Hide(HideError),
    /// The image cannot be encoded.
    #[error(transparent)]
    Encode(ImageError),
    /// The image cannot be written.
    #[error(transparent)]
    Write(mv_core::fsutil::FsError),
}

impl Classify for HideFileError {
    fn class(&self) -> ErrorClass {
        match self {
            HideFileError::Cover(e) => e.class(),
            HideFileError::Hide(e) => e.class(),
            HideFileError::Encode(_) | HideFileError::Write(_) => ErrorClass::Failure,
        }
    }
}

/// Hides `h.key` in `h.cover` and writes `h.out` (see the module documentation).
pub fn hide_file(h: &HideFile<'_>) -> Result<HideFileOutcome, HideFileError> {
    let mut cover = Cover::read(h.cover).map_err(HideFileError::Cover)?;
    if let Ok(existing) = Cover::read(h.out) {
        if container::reveal(&existing, h.passphrase, h.params).is_ok_and(|k| k.expose() == h.key) {
            return Ok(HideFileOutcome::Unchanged);
        }
    }
    let room = container::capacity(&cover, h.key.len()).map_err(HideFileError::Hide)?;
    if h.dry_run {
        return Ok(HideFileOutcome::WouldHide {
            width: cover.width,
            height: cover.height,
            layout: cover.layout,
            depth: cover.depth,
            need: room.need,
            have: room.have,
        });
    }
    container::hide(&mut cover, h.key, h.passphrase, h.params).map_err(HideFileError::Hide)?;
    let bytes = cover.encode().map_err(HideFileError::Encode)?;
    mv_core::fsutil::write_public(h.out, &bytes).map_err(HideFileError::Write)?;
    Ok(HideFileOutcome::Hidden)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::image::synthetic_photo;

    #[test]
    fn hides_once_then_leaves_the_image_alone() {
        let d = tempfile::tempdir().unwrap();
        let cover = d.path().join("c.png");
        let out = d.path().join("o.png");
        let c = synthetic_photo(256, 256, Layout::Rgb, 8, 3);
        std::fs::write(&cover, c.encode().unwrap()).unwrap();
        let mut h = HideFile {
            cover: &cover,
            out: &out,
            key: b"0123456789abcdef",
            passphrase: b"pass",
            params: KdfParams::INSECURE_FAST,
            dry_run: true,
        };
        assert!(matches!(
            hide_file(&h).unwrap(),
            HideFileOutcome::WouldHide { width: 256, .. }
        ));
        assert!(!out.exists());
        h.dry_run = false;
        assert_eq!(hide_file(&h).unwrap(), HideFileOutcome::Hidden);
        assert_eq!(hide_file(&h).unwrap(), HideFileOutcome::Unchanged);
        h.key = b"";
        let e = hide_file(&h).unwrap_err();
        assert!(matches!(e, HideFileError::Hide(HideError::EmptyKey)));
        assert_eq!(e.class(), ErrorClass::Usage);
        assert!(!format!("{h:?}").contains("pass\""));
    }
}
