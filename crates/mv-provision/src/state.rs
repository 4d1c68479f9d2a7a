//! The provision state file: what [`crate::apply()`] manages on a target, so that the next apply
//! removes what the machine no longer wants.
//!
//! One JSON file on the target, [`STATE_PATH`] (0600 root, written atomically with the other
//! files of a commit, and last), lists the files multiverse wrote (with the SHA-256 of the bytes
//! as written), the folders it created, and the services it enabled with the symlinks that
//! enable them. [`crate::apply::plan`] compares it with the new desired state: a service no
//! longer wanted loses exactly its recorded links, a file no longer wanted is removed unless its
//! bytes changed since (then it is left in place with a warning), a folder only when empty.
//!
//! The file is read from a machine's disk (a guest's own root, or a running machine's copy over
//! SSH): [`parse`] takes untrusted bytes, is bounded in size, never panics (fuzzed in
//! `fuzz/fuzz_targets/provision_state.rs`, property-tested in `tests/state.rs`) and refuses any
//! path that is not a plain absolute path (no `..`, no `.`, no empty component, no NUL). Every
//! path is only ever used through [`mv_core::confined::RootDir`] anyway.
//!
//! What this is not: a record of packages (packages are never removed), or of accounts (the
//! account files are edited, not owned).

use serde::{Deserialize, Serialize};

/// Where the state lives on a target.
pub const STATE_PATH: &str = "/var/lib/multiverse/provision-state.json";

/// The format version this code writes and reads.
pub const VERSION: u32 = 1;

/// The largest state file read (a machine lists a few hundred paths; this is far above).
pub const MAX_BYTES: usize = 4 << 20;

/// The longest path accepted (Linux's `PATH_MAX`).
const MAX_PATH: usize = 4096;

/// Why a state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file cannot be read.
    #[error("cannot be read")]
    Unreadable(#[source] std::io::Error),
    /// A link, folder or device rather than a regular file.
    #[error("is not a regular file")]
    NotAFile,
    /// Larger than [`MAX_BYTES`].
    #[error("is {0} bytes, more than the {MAX_BYTES} a state file may have")]
    TooLarge(usize),
    /// Not JSON of the state's shape.
    #[error("is not valid")]
    Json(#[source] serde_json::Error),
    /// Another format version.
    #[error("is format version {0}; this multiverse reads version {VERSION}")]
    Version(u32),
    /// A path that is not a plain absolute path.
    #[error("lists an invalid path {path:?} ({why})")]
    Path {
        /// The path as written.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A digest that is not 64 lower-case hex digits.
    #[error("lists an invalid sha256 for {0}")]
    Digest(String),
    /// The same path twice in one list.
    #[error("lists {0} twice")]
    Duplicate(String),
}

/// A file multiverse wrote.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedFile {
    /// Absolute path in the target.
    pub path: String,
    /// SHA-256 (lower-case hex) of the bytes written.
    pub sha256: String,
}

/// One symlink that enables a service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedLink {
    /// The link's absolute path in the target.
    pub link: String,
    /// Its text (the unit file or init script it points to).
    pub to: String,
}

/// A service multiverse enabled.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedService {
    /// The service's name as the recipe gives it (`wg-quick@wg0`, `sshd`).
    pub name: String,
    /// The links that enable it.
    pub links: Vec<ManagedLink>,
}

/// What multiverse manages on a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// [`VERSION`].
    pub version: u32,
    /// Files written, sorted by path.
    pub files: Vec<ManagedFile>,
    /// Folders created, sorted.
    pub dirs: Vec<String>,
    /// Services enabled, sorted by name.
    pub services: Vec<ManagedService>,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: VERSION,
            files: Vec::new(),
            dirs: Vec::new(),
            services: Vec::new(),
        }
    }
}

/// Only the version, read first so a newer format gets its own error.
#[derive(Deserialize)]
struct Probe {
    version: u32,
}

/// Checks that `p` is a plain absolute path.
fn check_path(p: &str) -> Result<(), StateError> {
    let bad = |why| {
        Err(StateError::Path {
            path: p.chars().take(200).collect(),
            why,
        })
    };
    if !p.starts_with('/') {
        return bad("not absolute");
    }
    if p.len() > MAX_PATH {
        return bad("too long");
    }
    if p.contains('\0') {
        return bad("holds a NUL byte");
    }
    let rest = &p[1..];
    if rest.is_empty() {
        return bad("the root itself");
    }
    for c in rest.split('/') {
        match c {
            "" => return bad("empty component"),
            "." | ".." => return bad("`.` or `..` component"),
            _ => {}
        }
    }
    if p == STATE_PATH {
        return bad("the state file itself");
    }
    Ok(())
}

fn check_unique<'a>(paths: impl Iterator<Item = &'a str>) -> Result<(), StateError> {
    let mut seen = std::collections::BTreeSet::new();
    for p in paths {
        if !seen.insert(p) {
            return Err(StateError::Duplicate(p.to_string()));
        }
    }
    Ok(())
}

/// Reads a state file's bytes. Never panics; every path checked.
pub fn parse(bytes: &[u8]) -> Result<State, StateError> {
    if bytes.len() > MAX_BYTES {
        return Err(StateError::TooLarge(bytes.len()));
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(StateError::Json)?;
    if probe.version != VERSION {
        return Err(StateError::Version(probe.version));
    }
    let state: State = serde_json::from_slice(bytes).map_err(StateError::Json)?;
    for f in &state.files {
        check_path(&f.path)?;
        if f.sha256.len() != 64
            || !f
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(StateError::Digest(f.path.clone()));
        }
    }
    check_unique(state.files.iter().map(|f| f.path.as_str()))?;
    for d in &state.dirs {
        check_path(d)?;
    }
    check_unique(state.dirs.iter().map(String::as_str))?;
    check_unique(state.services.iter().map(|s| s.name.as_str()))?;
    for s in &state.services {
        if s.name.is_empty() || s.name.contains('/') || s.name.contains('\0') {
            return Err(StateError::Path {
                path: s.name.chars().take(200).collect(),
                why: "not a service name",
            });
        }
        for l in &s.links {
            check_path(&l.link)?;
            if l.to.contains('\0') || l.to.is_empty() {
                return Err(StateError::Path {
                    path: l.to.chars().take(200).collect(),
                    why: "not a link text",
                });
            }
        }
        check_unique(s.links.iter().map(|l| l.link.as_str()))?;
    }
    Ok(state)
}

impl State {
    /// Sorts every list, so equal states have equal bytes.
    pub fn normalize(&mut self) {
        self.files.sort();
        self.dirs.sort();
        for s in &mut self.services {
            s.links.sort();
        }
        self.services.sort();
    }

    /// The file's bytes: pretty JSON and a final newline (sorted first).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = self.clone();
        s.normalize();
        // A State of strings and numbers always serialises.
        let mut out = serde_json::to_vec_pretty(&s).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The recorded file at `path`.
    pub fn file(&self, path: &str) -> Option<&ManagedFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

// A malformed state file: the person deletes it to adopt the machine.
impl mv_core::Classify for StateError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        State {
            version: VERSION,
            files: vec![ManagedFile {
                path: "/etc/wireguard/wg0.key".into(),
                sha256: sha256_hex(b"k"),
            }],
            dirs: vec!["/var/lib/tor/mail.service.multiverse".into()],
            services: vec![ManagedService {
                name: "wg-quick@wg0".into(),
                links: vec![ManagedLink {
                    link: "/etc/systemd/system/multi-user.target.wants/wg-quick@wg0.service".into(),
                    to: "/lib/systemd/system/wg-quick@.service".into(),
                }],
            }],
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(parse(&s.to_bytes()).ok(), Some(s));
    }

    #[test]
    fn bytes_are_sorted_and_stable() {
        let mut a = sample();
        a.files.push(ManagedFile {
            path: "/etc/a".into(),
            sha256: sha256_hex(b""),
        });
        let mut b = a.clone();
        b.files.reverse();
        assert_eq!(a.to_bytes(), b.to_bytes());
    }

    #[test]
    fn sha256_of_empty() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
