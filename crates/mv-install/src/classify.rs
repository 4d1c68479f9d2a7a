//! The class of each error of this crate: an answer file the person can fix, or a disk they
//! must allow erasing, is [`ErrorClass::Usage`]; a command, a write or the journal failing is
//! [`ErrorClass::Failure`]. One place, so every error type has a class.

use crate::answers::AnswerError;
use crate::host::HostError;
use crate::install::InstallError;
use mv_core::{Classify, ErrorClass};

impl Classify for AnswerError {
    /// Every problem of an answer file is the person's to fix.
    fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

impl Classify for HostError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failure
    }
}

impl Classify for InstallError {
    /// A disk that is not blank, a journal of another install and an incomplete source are the
    /// person's to decide or fix; anything else failed on the way (a rerun finishes it).
    fn class(&self) -> ErrorClass {
        match self {
            InstallError::NotBlank { .. }
            | InstallError::OtherInstall { .. }
            | InstallError::SourceIncomplete { .. } => ErrorClass::Usage,
            _ => ErrorClass::Failure,
        }
    }
}
