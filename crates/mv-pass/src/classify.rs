//! Which [`mv_core::ErrorClass`] each error of this crate is: `Usage` for what the person typed
//! or chose (a name, a pattern, an `otpauth://` URI, a character set, a key they handed us, a
//! missing entry or `.gpg-id`), `Failure` for everything else. The new workflow modules
//! (`clipboard`, `edit`, `extension`) classify their own errors beside them.

use crate::agent::AgentError;
use crate::grep::GrepArgError;
use crate::{
    CryptoError, EntryNameError, GitError, GpgError, KeyDirError, KeyError, OtpError, SetError,
    StoreError,
};
use mv_core::{Classify, ErrorClass};

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::Name(_)
            | StoreError::NotFound(_)
            | StoreError::Exists(_)
            | StoreError::Pattern(_)
            | StoreError::NotInitialised(_)
            | StoreError::NoRecipients => ErrorClass::Usage,
            _ => ErrorClass::Failure,
        }
    }
}

impl Classify for KeyError {
    fn class(&self) -> ErrorClass {
        match self {
            // A key or recipient the person gave us.
            KeyError::Parse { .. }
            | KeyError::Locked { .. }
            | KeyError::UnknownRecipient(_)
            | KeyError::AmbiguousRecipient(_) => ErrorClass::Usage,
            _ => ErrorClass::Failure,
        }
    }
}

impl Classify for CryptoError {
    fn class(&self) -> ErrorClass {
        match self {
            CryptoError::Key(k) => k.class(),
            _ => ErrorClass::Failure,
        }
    }
}

/// Infallible by construction; every variant is the same class.
macro_rules! all {
    ($class:ident: $($t:ty),*) => {$(
        impl Classify for $t {
            fn class(&self) -> ErrorClass {
                ErrorClass::$class
            }
        }
    )*};
}

all!(Usage: EntryNameError, OtpError, SetError, GrepArgError);
all!(Failure: GpgError, GitError, KeyDirError, AgentError);
