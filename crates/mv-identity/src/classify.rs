//! [`mv_core::Classify`] for this crate's errors: which are the person's to fix (a word of the
//! mnemonic, a passphrase, an epoch in `multiverse.toml`, an existing identity) and which are
//! failures. The classes follow the exit codes `multiverse` has always given them.

use crate::export::ExportError;
use crate::keys::KeyError;
use crate::onion::OnionAddressError;
use crate::public::PublicRecordError;
use crate::root::MnemonicError;
use crate::store::StoreError;
use mv_core::{Classify, ErrorClass};

impl Classify for KeyError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failure
    }
}

impl Classify for OnionAddressError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

impl Classify for MnemonicError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

impl Classify for PublicRecordError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failure
    }
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::Exists(_) | StoreError::Epochs { .. } => ErrorClass::Usage,
            e if e.is_authentication() => ErrorClass::Usage,
            _ => ErrorClass::Failure,
        }
    }
}

impl Classify for ExportError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failure
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn input_errors_are_usage() {
        assert_eq!(MnemonicError::Checksum.class(), ErrorClass::Usage);
        let missing = StoreError::Missing("x".into());
        assert_eq!(missing.class(), ErrorClass::Failure);
        assert_eq!(StoreError::Exists("x".into()).class(), ErrorClass::Usage);
    }
}
