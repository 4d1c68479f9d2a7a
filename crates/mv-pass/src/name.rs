//! Entry names: the path of a secret inside the store, without the `.gpg` suffix.
//!
//! A name is what a person types (`email/work`, `bank account`, `-weird`, `café/pin`). It becomes
//! a file path under the store, so it is validated once, here, and carried as [`EntryName`]:
//! absolute names and `..` are refused (pass's "sneaky paths" check), and so are components that
//! start with a dot, which would reach the store's own files (`.gpg-id`, `.git`). Spaces, unicode
//! and leading dashes are ordinary characters: the name is never put on a command line where a
//! dash could be read as an option (git gets `--` before paths).

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryNameError {
    /// Nothing left after trimming slashes.
    #[error("an entry name cannot be empty")]
    Empty,
    /// Starts with `/`.
    #[error("entry name `{0}` is absolute; names are relative to the store")]
    Absolute(String),
    /// Has a `..` or `.` component.
    #[error("entry name `{0}` has a `.` or `..` component, which could leave the store")]
    Sneaky(String),
    /// A component starts with a dot (`.git`, `.gpg-id`).
    #[error(
        "entry name `{0}` has a component starting with `.`, reserved for the store's own files"
    )]
    Hidden(String),
    /// An empty component (`a//b`) or a NUL byte or a control character.
    #[error("entry name `{0}` has an empty component or a control character")]
    Malformed(String),
}

/// A validated entry name: `/`-separated components, no empty, `.`, `..` or dot-led component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct EntryName(String);

impl EntryName {
    /// Validates `s`. A trailing `/` is dropped (pass does the same: `foo/` is `foo`).
    pub fn parse(s: &str) -> Result<Self, EntryNameError> {
        if s.starts_with('/') {
            return Err(EntryNameError::Absolute(s.to_string()));
        }
        let trimmed = s.trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(EntryNameError::Empty);
        }
        for comp in trimmed.split('/') {
            if comp == "." || comp == ".." {
                return Err(EntryNameError::Sneaky(s.to_string()));
            }
            if comp.is_empty() || comp.chars().any(char::is_control) {
                return Err(EntryNameError::Malformed(s.to_string()));
            }
            if comp.starts_with('.') {
                return Err(EntryNameError::Hidden(s.to_string()));
            }
        }
        Ok(EntryName(trimmed.to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `.gpg` file of this entry under `store`.
    pub fn file_in(&self, store: &Path) -> PathBuf {
        store.join(format!("{}.gpg", self.0))
    }

    /// The folder of the same name under `store` (for folder operations: `rm -r`, `mv` of a folder).
    pub fn dir_in(&self, store: &Path) -> PathBuf {
        store.join(&self.0)
    }

    /// The parent folder name (`a/b` for `a/b/c`), or `None` at the top.
    pub fn parent(&self) -> Option<&str> {
        self.0.rsplit_once('/').map(|(p, _)| p)
    }

    /// The last component.
    pub fn leaf(&self) -> &str {
        self.0.rsplit_once('/').map_or(&self.0, |(_, l)| l)
    }

    /// `self/child`, validated.
    pub fn join(&self, child: &str) -> Result<Self, EntryNameError> {
        EntryName::parse(&format!("{}/{}", self.0, child))
    }

    /// The entry a `.gpg` file under `store` stands for, if it is one.
    pub fn from_file(store: &Path, file: &Path) -> Option<Self> {
        let rel = file.strip_prefix(store).ok()?.to_str()?;
        let stem = rel.strip_suffix(".gpg")?;
        EntryName::parse(stem).ok()
    }
}

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for EntryName {
    type Err = EntryNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntryName::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_people_names() {
        for ok in [
            "a",
            "email/work",
            "bank account",
            "-rf",
            "--help",
            "café/pin 🔑",
            "a/b/",
            "x.y/z.gpg.bak",
        ] {
            assert!(EntryName::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(EntryName::parse("a/b/").unwrap().as_str(), "a/b");
    }

    #[test]
    fn refuses_escapes() {
        assert!(matches!(
            EntryName::parse("/etc/passwd"),
            Err(EntryNameError::Absolute(_))
        ));
        assert!(matches!(
            EntryName::parse("../x"),
            Err(EntryNameError::Sneaky(_))
        ));
        assert!(matches!(
            EntryName::parse("a/../../x"),
            Err(EntryNameError::Sneaky(_))
        ));
        assert!(matches!(
            EntryName::parse("a/./x"),
            Err(EntryNameError::Sneaky(_))
        ));
        assert!(matches!(
            EntryName::parse(".git/config"),
            Err(EntryNameError::Hidden(_))
        ));
        assert!(matches!(
            EntryName::parse("a/.gpg-id"),
            Err(EntryNameError::Hidden(_))
        ));
        assert!(matches!(
            EntryName::parse("a//b"),
            Err(EntryNameError::Malformed(_))
        ));
        assert!(matches!(
            EntryName::parse("a\nb"),
            Err(EntryNameError::Malformed(_))
        ));
        assert!(EntryName::parse("/").is_err());
        assert!(matches!(EntryName::parse(""), Err(EntryNameError::Empty)));
    }

    #[test]
    fn parts() {
        let n = EntryName::parse("a/b/c").unwrap();
        assert_eq!(n.parent(), Some("a/b"));
        assert_eq!(n.leaf(), "c");
        let store = Path::new("/s");
        assert_eq!(n.file_in(store), PathBuf::from("/s/a/b/c.gpg"));
        assert_eq!(
            EntryName::from_file(store, Path::new("/s/a/b/c.gpg")),
            Some(n)
        );
        assert_eq!(EntryName::from_file(store, Path::new("/s/.gpg-id")), None);
    }

    proptest! {
        /// Whatever is accepted stays inside the store.
        #[test]
        fn accepted_names_stay_inside(s in "[a-z./ -]{0,30}") {
            if let Ok(n) = EntryName::parse(&s) {
                let store = Path::new("/store");
                let p = n.file_in(store);
                prop_assert!(p.starts_with(store));
                for c in p.strip_prefix(store).unwrap().components() {
                    prop_assert!(matches!(c, std::path::Component::Normal(_)));
                }
            }
        }
    }
}
