//! Per-name key epochs: the `[identity.epochs]` table of `multiverse.toml`
//! (`docs/spec/scramble-v1-epochs.md`).
//!
//! An epoch is public and lives in the file the person keeps in git, so that the 24 words plus that
//! file rebuild every current key. A name missing from the table is at epoch 0, which is spec v1
//! byte for byte. [`parse`] reads the table out of the whole file's text and refuses, with the line
//! of the value, a malformed name, a negative epoch, an epoch above 2^32 − 1 or a value that is not
//! a whole number; whether a machine name belongs to a machine of the file is checked by the
//! machine model (`mv-machines`), which knows the machines.

use crate::name::IdentityName;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;

/// The largest epoch: 2^32 − 1 (the spec encodes it as a big-endian u32).
pub const MAX_EPOCH: u32 = u32::MAX;

/// Epochs by name; absent names are at epoch 0. Public data, so `Debug` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Epochs(BTreeMap<String, u32>);

impl Epochs {
    /// No name rotated.
    pub fn new() -> Epochs {
        Epochs::default()
    }

    /// The epoch of `name` (0 when absent).
    pub fn get(&self, name: &IdentityName) -> u32 {
        self.0.get(name.as_str()).copied().unwrap_or(0)
    }

    /// Sets the epoch of `name`; epoch 0 removes it from the table.
    pub fn set(&mut self, name: &IdentityName, epoch: u32) {
        if epoch == 0 {
            self.0.remove(name.as_str());
        } else {
            self.0.insert(name.as_str().to_string(), epoch);
        }
    }

    /// Every name with a non-zero epoch, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// True when no name has a non-zero epoch.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One entry of the table, with where it is in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochEntry {
    /// The name.
    pub name: IdentityName,
    /// Its epoch.
    pub epoch: u32,
    /// Byte range of the key in the text.
    pub span: Range<usize>,
}

/// What is wrong with the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochsProblem {
    /// Not TOML, or `[identity]` holds something else than `epochs`.
    Syntax,
    /// A key that is not a machine FQDN or `@person`.
    BadName,
    /// An epoch that is not a whole number in 0..=2^32 − 1.
    BadEpoch,
}

/// Why the table was refused: `line: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}: {message}")]
pub struct EpochsError {
    /// 1-based line of the value concerned.
    pub line: usize,
    /// Byte offset in the text.
    pub offset: usize,
    /// Kind of problem.
    pub problem: EpochsProblem,
    /// What is wrong, for people.
    pub message: String,
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    identity: Option<FileIdentity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIdentity {
    #[serde(default)]
    epochs: BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>,
}

use crate::line_at as line_of;

/// Reads `[identity.epochs]` out of a whole `multiverse.toml`, in file order. Other tables are not
/// looked at (beyond being valid TOML).
pub fn parse(text: &str) -> Result<Vec<EpochEntry>, EpochsError> {
    let err = |offset: usize, problem, message: String| EpochsError {
        line: line_of(text, offset),
        offset,
        problem,
        message,
    };
    let file: File = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        let message = e.message().trim_end_matches('.').replace('\n', " ");
        err(at, EpochsProblem::Syntax, message)
    })?;
    let Some(identity) = file.identity else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (key, value) in identity.epochs {
        let span = key.span();
        let name = IdentityName::parse(key.get_ref()).map_err(|e| {
            err(
                span.start,
                EpochsProblem::BadName,
                format!("[identity.epochs] `{}`: {e}", key.get_ref()),
            )
        })?;
        let bad = |why: &str| {
            err(
                value.span().start,
                EpochsProblem::BadEpoch,
                format!(
                    "[identity.epochs] `{}`: {why}; an epoch is a whole number from 0 to {MAX_EPOCH}",
                    key.get_ref()
                ),
            )
        };
        let epoch = match value.get_ref() {
            toml::Value::Integer(i) if *i < 0 => {
                return Err(bad(&format!("epoch {i} is negative")))
            }
            toml::Value::Integer(i) => {
                u32::try_from(*i).map_err(|_| bad(&format!("epoch {i} is above 2^32 - 1")))?
            }
            other => return Err(bad(&format!("`{other}` is not a whole number"))),
        };
        out.push(EpochEntry { name, epoch, span });
    }
    out.sort_by_key(|e| e.span.start);
    Ok(out)
}

/// [`parse`] into an [`Epochs`] table.
pub fn epochs(text: &str) -> Result<Epochs, EpochsError> {
    let mut t = Epochs::new();
    for e in parse(text)? {
        t.set(&e.name, e.epoch);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_the_table_and_refuses_bad_values_with_their_line() {
        let text = "[host]\nname = \"h.m\"\n\n[identity.epochs]\n\"star.router.multiverse\" = 1\n\"@user\" = 2\n";
        let e = epochs(text).unwrap();
        let star = IdentityName::parse("star.router.multiverse").unwrap();
        assert_eq!(e.get(&star), 1);
        assert_eq!(e.get(&IdentityName::parse("@user").unwrap()), 2);
        assert_eq!(e.get(&IdentityName::parse("other.m").unwrap()), 0);
        let entries = parse(text).unwrap();
        assert_eq!(line_of(text, entries[0].span.start), 5);
        assert!(parse("[host]\n").unwrap().is_empty());

        for (bad, line, problem) in [
            (
                "[identity.epochs]\n\"a.b\" = -1\n",
                2,
                EpochsProblem::BadEpoch,
            ),
            (
                "[identity.epochs]\n\n\"a.b\" = 4294967296\n",
                3,
                EpochsProblem::BadEpoch,
            ),
            (
                "[identity.epochs]\n\"a.b\" = \"1\"\n",
                2,
                EpochsProblem::BadEpoch,
            ),
            (
                "[identity.epochs]\n\"a.b\" = 1.5\n",
                2,
                EpochsProblem::BadEpoch,
            ),
            (
                "[identity.epochs]\n\"nodot\" = 1\n",
                2,
                EpochsProblem::BadName,
            ),
            ("[identity]\nepoch = 1\n", 2, EpochsProblem::Syntax),
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!((e.line, e.problem), (line, problem), "{bad}: {e}");
        }
        assert_eq!(
            epochs("[identity.epochs]\n\"a.b\" = 4294967295\n")
                .unwrap()
                .get(&IdentityName::parse("a.b").unwrap()),
            MAX_EPOCH
        );
    }
}
