//! How every library error tells the command line what kind of failure it is.
//!
//! Each library error type implements [`Classify`]; the CLI turns the [`ErrorClass`] into an exit
//! code and adds its own hint. A library says what happened; advice on what to type next is the
//! CLI's (libraries do not know which command the person ran). There is deliberately no
//! blanket implementation: an error type without `Classify` does not compile into a CLI error,
//! so no error silently gets the wrong exit code.

/// What kind of failure an error is; the CLI maps each to one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The person's input is wrong (an argument, a config file, an answer file, a name, a
    /// passphrase): they can fix it and run again. Exit code 2.
    Usage,
    /// The operation failed (a tool, the system, a daemon, a corrupt file): exit code 1.
    Failure,
}

/// Implemented by every library error: which [`ErrorClass`] this value is.
pub trait Classify {
    /// The class of this error value (may depend on the variant).
    fn class(&self) -> ErrorClass;
}

impl Classify for std::io::Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failure
    }
}

impl Classify for crate::name::NameError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

impl Classify for crate::duration::DurationError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

impl Classify for crate::model::AddrError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

impl Classify for crate::fsutil::FsError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failure
    }
}
