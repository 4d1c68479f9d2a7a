//! Naming rules: how an old folder or image name becomes a machine name, and how folders are
//! lower-cased.
//!
//! These rules are the whole of the "mixed case" and "names with spaces" policy; docs/migrate.md
//! quotes them. They are pure functions so that property tests can pin them.

use mv_core::MachineName;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// The domain appended to an old machine name that has no dot (`Star` -> `star.multiverse`).
pub(crate) const DEFAULT_DOMAIN: &str = "multiverse";

/// Maps an old machine folder or image stem to a machine name.
///
/// Rule: lower-case; every run of spaces, tabs or underscores becomes one `-`; if the result is
/// a valid [`MachineName`] it is the name; if it has no dot, `.multiverse` is appended and tried.
/// Anything else (non-UTF-8, bad characters) is `None`: the entry is reported and left in place.
pub(crate) fn machine_name(old: &OsStr) -> Option<MachineName> {
    let s = old.to_str()?;
    let mut out = String::with_capacity(s.len());
    let mut in_sep = false;
    for c in s.trim().chars() {
        if c == ' ' || c == '\t' || c == '_' {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            in_sep = false;
            out.extend(c.to_lowercase());
        }
    }
    if let Ok(n) = MachineName::parse(&out) {
        return Some(n);
    }
    if !out.contains('.') {
        return MachineName::parse(&format!("{out}.{DEFAULT_DOMAIN}")).ok();
    }
    None
}

/// The lower-cased form of a folder name inside a machine folder (only ASCII letters change, so
/// the byte length and every non-ASCII byte stay as they were).
pub(crate) fn lower_folder(name: &OsStr) -> std::ffi::OsString {
    let bytes: Vec<u8> = name.as_bytes().to_ascii_lowercase();
    <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes)
}

/// Whether a file name has the `.qcow2` extension (in any case) and returns its stem.
pub(crate) fn qcow2_stem(name: &OsStr) -> Option<&OsStr> {
    let b = name.as_bytes();
    let ext = b".qcow2";
    if b.len() > ext.len() && b[b.len() - ext.len()..].eq_ignore_ascii_case(ext) {
        Some(OsStr::from_bytes(&b[..b.len() - ext.len()]))
    } else {
        None
    }
}

/// The first four bytes of every qcow2 image ("QFI\xfb").
pub(crate) const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mn(s: &str) -> Option<String> {
        machine_name(OsStr::new(s)).map(|n| n.as_str().to_string())
    }

    #[test]
    fn machine_names_from_old_folders() {
        assert_eq!(
            mn("Star.Router.Multiverse").as_deref(),
            Some("star.router.multiverse")
        );
        assert_eq!(mn("Star").as_deref(), Some("star.multiverse"));
        assert_eq!(mn("Tor  Router").as_deref(), Some("tor-router.multiverse"));
        assert_eq!(mn("my_app vm").as_deref(), Some("my-app-vm.multiverse"));
        assert_eq!(mn("bad!name"), None);
        assert_eq!(mn("a..b"), None);
        assert_eq!(mn(""), None);
    }

    #[test]
    fn stems_and_folders() {
        assert_eq!(
            qcow2_stem(OsStr::new("Star.QCOW2")),
            Some(OsStr::new("Star"))
        );
        assert_eq!(qcow2_stem(OsStr::new(".qcow2")), None);
        assert_eq!(qcow2_stem(OsStr::new("x.img")), None);
        assert_eq!(
            lower_folder(OsStr::new("Provision Files")),
            "provision files"
        );
    }

    proptest! {
        /// Names differing only in ASCII case always map to the same machine: the planner relies
        /// on this to detect case collisions.
        #[test]
        fn case_insensitive(s in "[A-Za-z0-9 ._-]{0,40}") {
            prop_assert_eq!(mn(&s), mn(&s.to_ascii_lowercase()));
        }

        /// Whatever comes out is a valid machine name (never a half-checked string).
        #[test]
        fn output_is_valid(s in "\\PC{0,40}") {
            if let Some(n) = mn(&s) {
                prop_assert!(MachineName::parse(n.as_str()).is_ok());
            }
        }

        #[test]
        fn lower_folder_keeps_length(b in proptest::collection::vec(1u8..=255, 1..40)) {
            let name = OsStr::from_bytes(&b);
            prop_assert_eq!(lower_folder(name).as_bytes().len(), b.len());
        }
    }
}
