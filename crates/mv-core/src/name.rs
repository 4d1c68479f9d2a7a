//! Machine and identity names.
//!
//! A machine name is a fully qualified, lower-case DNS name with at least one dot
//! (`universe.router.multiverse`). It names the machine's folder, every libvirt object of it and its
//! derived keys (spec scramble-v1), so it is validated once, here, and carried as [`MachineName`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty string.
    #[error("a machine name cannot be empty")]
    Empty,
    /// Longer than 253 bytes.
    #[error("machine name `{0}` is longer than 253 characters")]
    TooLong(String),
    /// Contains an upper-case letter.
    #[error("machine name `{0}` has an upper-case letter; names are lower case (try `{1}`)")]
    UpperCase(String, String),
    /// No dot.
    #[error("machine name `{0}` has no dot; a machine name is a fully qualified name like `{0}.multiverse`")]
    NoDot(String),
    /// A label is empty, too long, or has a bad character or hyphen placement.
    #[error("machine name `{name}` has a bad label `{label}`: labels are 1-63 of a-z, 0-9 and '-', not starting or ending with '-'")]
    BadLabel {
        /// The whole name.
        name: String,
        /// The offending label.
        label: String,
    },
    /// A person name (`@user`) that is malformed.
    #[error("person name `{0}` is not `@` followed by 1-32 of a-z, 0-9, '_' and '-'")]
    BadPerson(String),
}

/// A validated machine FQDN.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MachineName(String);

impl MachineName {
    /// Validates `s` as a machine name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > 253 {
            return Err(NameError::TooLong(s.to_string()));
        }
        if s.chars().any(|c| c.is_uppercase()) {
            return Err(NameError::UpperCase(s.to_string(), s.to_lowercase()));
        }
        if !s.contains('.') {
            return Err(NameError::NoDot(s.to_string()));
        }
        for label in s.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(NameError::BadLabel {
                    name: s.to_string(),
                    label: label.to_string(),
                });
            }
        }
        Ok(MachineName(s.to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first label (`universe` for `universe.router.multiverse`).
    pub fn short(&self) -> &str {
        self.0.split('.').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for MachineName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for MachineName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MachineName::parse(s)
    }
}

impl TryFrom<String> for MachineName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        MachineName::parse(&s)
    }
}

impl From<MachineName> for String {
    fn from(n: MachineName) -> String {
        n.0
    }
}

impl AsRef<str> for MachineName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The name a key is derived for: a machine, or a person (`@user`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentityName {
    /// A machine's FQDN.
    Machine(MachineName),
    /// A person, stored with its leading `@`.
    Person(String),
}

impl IdentityName {
    /// Parses `@user` as a person and anything else as a machine name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if let Some(rest) = s.strip_prefix('@') {
            let ok = !rest.is_empty()
                && rest.len() <= 32
                && rest.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if ok {
                Ok(IdentityName::Person(s.to_string()))
            } else {
                Err(NameError::BadPerson(s.to_string()))
            }
        } else {
            MachineName::parse(s).map(IdentityName::Machine)
        }
    }

    /// The exact bytes used as `name` in the derivation.
    pub fn as_str(&self) -> &str {
        match self {
            IdentityName::Machine(m) => m.as_str(),
            IdentityName::Person(p) => p,
        }
    }
}

impl fmt::Display for IdentityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IdentityName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IdentityName::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_refuses() {
        assert!(MachineName::parse("universe.router.multiverse").is_ok());
        assert!(matches!(
            MachineName::parse("Star.router"),
            Err(NameError::UpperCase(..))
        ));
        assert!(matches!(
            MachineName::parse("star"),
            Err(NameError::NoDot(_))
        ));
        assert!(matches!(
            MachineName::parse("a..b"),
            Err(NameError::BadLabel { .. })
        ));
        assert!(matches!(
            MachineName::parse("-a.b"),
            Err(NameError::BadLabel { .. })
        ));
        assert!(matches!(
            MachineName::parse("a b.c"),
            Err(NameError::BadLabel { .. })
        ));
        assert!(MachineName::parse("").is_err());
        assert_eq!(IdentityName::parse("@user").unwrap().as_str(), "@user");
        assert!(IdentityName::parse("@").is_err());
        assert!(IdentityName::parse("@User").is_err());
    }

    proptest! {
        #[test]
        fn valid_names_round_trip(labels in proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", 2..5)) {
            let s = labels.join(".");
            let n = MachineName::parse(&s).unwrap();
            prop_assert_eq!(n.as_str(), s.as_str());
        }

        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = MachineName::parse(&s);
            let _ = IdentityName::parse(&s);
        }
    }
}
