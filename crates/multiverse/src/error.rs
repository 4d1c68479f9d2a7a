//! How the CLI turns library errors into one clear message, a hint, and an exit code.
//!
//! Commands return [`CliError`]: usage errors (exit 2) for bad input the person can fix (arguments,
//! config files, names) and failures (exit 1) for everything else. A hint is printed on its own line
//! under the message. A closed stdout (`multiverse … | head`) is a quiet exit 0, whether it shows
//! up as an error or as `println!`'s panic ([`quiet_on_broken_pipe`]).

use mv_core::{Classify, ErrorClass};
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

/// Every library error becomes a [`CliError`] through its [`Classify`] impl: the library says
/// whether the person's input was wrong (exit 2) or the operation failed (exit 1). There is no
/// conversion from just any error: a library error without `Classify` does not compile here, so
/// no error falls through to a default exit code. Errors that are not a library's (an
/// `anyhow` chain built with context) are turned into one explicitly, with [`CliError::failure`]
/// or [`CliError::usage`].
impl<E> From<E> for CliError
where
    E: Classify + std::error::Error + Send + Sync + 'static,
{
    fn from(e: E) -> Self {
        let kind = match e.class() {
            ErrorClass::Usage => Kind::Usage,
            ErrorClass::Failure => Kind::Failure,
        };
        CliError {
            kind,
            error: anyhow::Error::new(e),
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
    /// A failure (exit 1) from an error that is not a library's, e.g. an `anyhow` chain.
    pub fn failure(error: impl Into<anyhow::Error>) -> Self {
        CliError {
            kind: Kind::Failure,
            error: error.into(),
            hint: None,
        }
    }
    /// Bad input (exit 2) from an error that is not a library's.
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        CliError {
            kind: Kind::Usage,
            error: error.into(),
            hint: None,
        }
    }
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

/// Runs the program's body (which returns the exit code) so that a closed stdout or stderr ends
/// it quietly with exit code 0, like a broken pipe reported as an error (see [`report`]):
/// `println!` panics when its write fails, and `multiverse machine list | head -c1` used to print
/// a panic message and exit 101. The panic still unwinds (locks and temp files are released by
/// their destructors); only its message is suppressed. Any other panic is left as it was.
pub fn quiet_on_broken_pipe(body: impl FnOnce() -> i32) -> i32 {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_broken_pipe_panic(info.payload()) {
            default_hook(info);
        }
    }));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(code) => code,
        Err(payload) if is_broken_pipe_panic(payload.as_ref()) => 0,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// Whether a panic is `print!`'s or `eprint!`'s on a closed pipe: std's message is
/// "failed printing to stdout: Broken pipe (os error 32)".
fn is_broken_pipe_panic(payload: &(dyn std::any::Any + Send)) -> bool {
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied());
    // std formats the io::Error of the failed write: "Broken pipe (os error 32)".
    let epipe = std::io::Error::from_raw_os_error(EPIPE).to_string();
    msg.is_some_and(|m| {
        (m.starts_with("failed printing to stdout") || m.starts_with("failed printing to stderr"))
            && m.ends_with(&epipe)
    })
}

/// EPIPE, the same number on every Linux architecture (asm-generic/errno-base.h).
const EPIPE: i32 = 32;

/// The CLI's advice for a library error found anywhere in `error`'s chain, when the command
/// gave none: libraries say what happened, and only here is it turned into what to type. One
/// match per error type, so every command that meets the error prints the same hint.
pub fn library_hint(error: &anyhow::Error) -> Option<&'static str> {
    error.chain().find_map(|e| {
        if let Some(e) = e.downcast_ref::<mv_pass::StoreError>() {
            return pass_hint(e);
        }
        if let Some(e) = e.downcast_ref::<mv_identity::export::ExportError>() {
            return export_hint(e);
        }
        if let Some(e) = e.downcast_ref::<mv_machines::EditError>() {
            return edit_hint(e);
        }
        if let Some(mv_machines::RenderError::StorageOccupied { .. }) =
            e.downcast_ref::<mv_machines::RenderError>()
        {
            return Some(
                "move it into machines/<fqdn>/, or run `multiverse migrate` to move an old layout",
            );
        }
        if let Some(mv_provision::RenderError::AgentBinary { .. }) =
            e.downcast_ref::<mv_provision::RenderError>()
        {
            return Some(
                "build it beside `multiverse` (cargo build --workspace), or set MULTIVERSE_AGENT_BIN=PATH",
            );
        }
        None
    })
}

/// The hints of the pass store's errors.
fn pass_hint(e: &mv_pass::StoreError) -> Option<&'static str> {
    use mv_pass::StoreError;
    match e {
        StoreError::Exists(_) => Some("use --force to overwrite"),
        StoreError::NotInitialised(_) => Some(
            "run `multiverse pass init` (the identity's key) or `multiverse pass init KEYID`",
        ),
        StoreError::Decrypt { .. } => Some(
            "import the store's secret key with `multiverse pass key import`, or use --gpg",
        ),
        StoreError::Encrypt { .. } => Some(
            "add the recipients' public keys with `multiverse pass key add` (or `key import`), or use --gpg",
        ),
        StoreError::Symlink { .. } => Some(
            "remove the link (`multiverse pass rm` removes the link itself) or replace it with a real file or folder",
        ),
        _ => None,
    }
}

/// The hints of `machine add`/`machine rm`'s errors: the flags that fix them.
fn edit_hint(e: &mv_machines::EditError) -> Option<&'static str> {
    use mv_machines::EditError;
    match e {
        EditError::RouterWithoutRole => Some("pass --role universe|galaxy|star"),
        EditError::RoleOnNonRouter => Some("drop --role, --upstream and --serves, or add a router"),
        EditError::NoNetwork(_) => Some("pass --network NAME"),
        _ => None,
    }
}

/// The hints of the identity export's errors.
fn export_hint(e: &mv_identity::export::ExportError) -> Option<&'static str> {
    match e {
        mv_identity::export::ExportError::ForeignFolder { .. } => Some(
            "write into a folder of your own, or pass --force (the files stay readable only by you, but that user can delete or replace them)",
        ),
        _ => None,
    }
}

/// Prints the error (if any) to stderr and returns the exit code: the message with its causes,
/// then the command's hint, else the one [`library_hint`] knows for the error.
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
    if let Some(h) = err.hint.as_deref().or_else(|| library_hint(&err.error)) {
        eprintln!("hint: {h}");
    }
    match err.kind {
        Kind::Usage => 2,
        Kind::Failure => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_get_their_hint_through_any_context() {
        let e = anyhow::Error::new(mv_machines::EditError::NoNetwork("x".into()))
            .context("cannot add the machine");
        assert_eq!(library_hint(&e), Some("pass --network NAME"));
        let e = anyhow::Error::new(mv_machines::RenderError::StorageOccupied {
            path: "/t/storage/x.qcow2".into(),
        });
        assert!(library_hint(&e).is_some_and(|h| h.contains("multiverse migrate")));
        let e = anyhow::Error::new(mv_provision::RenderError::AgentBinary {
            machine: "m".into(),
            what: "multiverse-agent",
            path: "/nope".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        assert!(library_hint(&e).is_some_and(|h| h.contains(mv_provision::AGENT_BIN_ENV)));
        // An error no library hint covers gets none.
        assert_eq!(library_hint(&anyhow::anyhow!("plain")), None);
        // The library messages themselves name no flag or command.
        for msg in [
            mv_machines::EditError::RouterWithoutRole.to_string(),
            mv_machines::EditError::RoleOnNonRouter.to_string(),
            mv_machines::EditError::NoNetwork("x".into()).to_string(),
        ] {
            assert!(!msg.contains("--") && !msg.contains("multiverse "), "{msg}");
        }
    }

    #[test]
    fn only_print_panics_on_a_broken_pipe_are_quiet() {
        assert_eq!(
            std::io::Error::from_raw_os_error(EPIPE).kind(),
            std::io::ErrorKind::BrokenPipe
        );
        let msg = |s: &str| -> Box<dyn std::any::Any + Send> { Box::new(s.to_string()) };
        let e = std::io::Error::from_raw_os_error(EPIPE);
        assert!(is_broken_pipe_panic(
            msg(&format!("failed printing to stdout: {e}")).as_ref()
        ));
        assert!(is_broken_pipe_panic(
            msg(&format!("failed printing to stderr: {e}")).as_ref()
        ));
        assert!(!is_broken_pipe_panic(
            msg("failed printing to stdout: No space left on device (os error 28)").as_ref()
        ));
        assert!(!is_broken_pipe_panic(msg("index out of bounds").as_ref()));
        assert_eq!(quiet_on_broken_pipe(|| 7), 7);
    }
}
