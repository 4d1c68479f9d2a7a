//! Which errors of this crate are the person's to fix ([`ErrorClass::Usage`]: a bad cover, a
//! wrong passphrase, an untrusted or invalid configuration, a bad token) and which are failures
//! of a tool or the system ([`ErrorClass::Failure`]). One place, so every error type has a class.

use crate::chain::{FillError, OpError};
use crate::config::ConfigError;
use crate::container::{HideError, RevealError};
use crate::image::ImageError;
use crate::luks::LuksError;
use crate::pidfile::PidfileError;
use crate::token::TokenError;
use crate::trust::TrustError;
use crate::uevent::ParseError;
use crate::watch::WatchError;
use mv_core::{Classify, ErrorClass};

impl Classify for HideError {
    /// Every refusal to hide is about the key or the cover the person gave.
    fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

impl Classify for RevealError {
    /// A wrong passphrase is the person's input; a damaged image is not.
    fn class(&self) -> ErrorClass {
        match self {
            RevealError::NotFound => ErrorClass::Usage,
            RevealError::Damaged => ErrorClass::Failure,
        }
    }
}

impl Classify for ImageError {
    /// A cover of the wrong kind is the person's choice; a file that cannot be read or written
    /// is a failure.
    fn class(&self) -> ErrorClass {
        match self {
            ImageError::Read { .. } | ImageError::Encode(_) => ErrorClass::Failure,
            _ => ErrorClass::Usage,
        }
    }
}

impl Classify for LuksError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failure
    }
}

impl Classify for ConfigError {
    /// A configuration that cannot be used as it is (untrusted, invalid) is the person's to fix.
    fn class(&self) -> ErrorClass {
        match self {
            ConfigError::Read(..) | ConfigError::Write(_) | ConfigError::Serialise(_) => {
                ErrorClass::Failure
            }
            _ => ErrorClass::Usage,
        }
    }
}

impl Classify for TrustError {
    fn class(&self) -> ErrorClass {
        match self {
            TrustError::Io(..) => ErrorClass::Failure,
            _ => ErrorClass::Usage,
        }
    }
}

impl Classify for TokenError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

impl Classify for ParseError {
    /// Malformed bytes from a socket: nothing the person typed.
    fn class(&self) -> ErrorClass {
        ErrorClass::Failure
    }
}

impl Classify for WatchError {
    fn class(&self) -> ErrorClass {
        match self {
            WatchError::NotArmed | WatchError::Token(_) => ErrorClass::Usage,
            _ => ErrorClass::Failure,
        }
    }
}

impl Classify for PidfileError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failure
    }
}

impl Classify for FillError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failure
    }
}

impl Classify for OpError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_person_s_input_is_usage() {
        assert_eq!(HideError::EmptyKey.class(), ErrorClass::Usage);
        assert_eq!(RevealError::NotFound.class(), ErrorClass::Usage);
        assert_eq!(RevealError::Damaged.class(), ErrorClass::Failure);
        assert_eq!(ImageError::Lossy("x".into()).class(), ErrorClass::Usage);
        assert_eq!(WatchError::NotArmed.class(), ErrorClass::Usage);
        assert_eq!(TokenError::Syntax("x".into()).class(), ErrorClass::Usage);
    }
}
