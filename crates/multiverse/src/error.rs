//! How the CLI turns library errors into one clear message, a hint, and an exit code.
//!
//! Commands return [`CliError`]: usage errors (exit 2) for bad input the person can fix (arguments,
//! config files, names) and failures (exit 1) for everything else. A hint is printed on its own line
//! under the message.

use std::fmt;

/// Exit code class of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad input: exit code 2.
    Usage,
    /// The operation failed: exit code 1.
    Failure,
}

/// An error as the CLI reports it.
#[derive(Debug)]
pub struct CliError {
    /// Exit code class.
    pub kind: Kind,
    /// The error with its chain of causes.
    pub error: anyhow::Error,
    /// An optional "hint:" line.
    pub hint: Option<String>,
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError {
            kind: Kind::Failure,
            error: e.into(),
            hint: None,
        }
    }
}

/// Marks results as bad input (exit 2) or attaches hints.
pub trait Hinted<T> {
    /// The error is the person's input: exit code 2.
    fn usage(self) -> Result<T, CliError>;
    /// Adds a hint line to the error (a failure unless already marked usage).
    fn hint(self, hint: &str) -> Result<T, CliError>;
}

impl<T, E: Into<CliError>> Hinted<T> for Result<T, E> {
    fn usage(self) -> Result<T, CliError> {
        self.map_err(|e| {
            let mut c: CliError = e.into();
            c.kind = Kind::Usage;
            c
        })
    }
    fn hint(self, hint: &str) -> Result<T, CliError> {
        self.map_err(|e| e.into().with_hint(hint))
    }
}

impl CliError {
    /// A usage error from a message.
    pub fn usage_msg(msg: impl fmt::Display) -> Self {
        CliError {
            kind: Kind::Usage,
            error: anyhow::anyhow!("{msg}"),
            hint: None,
        }
    }
    /// A failure from a message.
    pub fn failure_msg(msg: impl fmt::Display) -> Self {
        CliError {
            kind: Kind::Failure,
            error: anyhow::anyhow!("{msg}"),
            hint: None,
        }
    }
    /// Sets the hint line.
    pub fn with_hint(mut self, hint: &str) -> Self {
        self.hint = Some(hint.to_string());
        self
    }
}

/// Prints the error (if any) to stderr and returns the exit code.
pub fn report(result: Result<(), CliError>) -> i32 {
    let err = match result {
        Ok(()) => return 0,
        Err(e) => e,
    };
    // A closed stdout (`multiverse ... | head`) is not an error.
    if let Some(io) = err.error.root_cause().downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::BrokenPipe {
            return 0;
        }
    }
    eprintln!("multiverse: error: {:#}", err.error);
    if let Some(h) = &err.hint {
        eprintln!("hint: {h}");
    }
    match err.kind {
        Kind::Usage => 2,
        Kind::Failure => 1,
    }
}
