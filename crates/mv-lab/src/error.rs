//! [`LabError`]: why the lab could not build, boot or answer. Timeouts and QEMU failures carry the
//! console's last lines, so a failed test says what the guest was doing.

use std::path::PathBuf;

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A step of the lab image build failed.
    #[error("lab image: step {step} failed: {detail}")]
    Image {
        /// Which step.
        step: String,
        /// The tool's last meaningful line.
        detail: String,
    },
    /// A required file or tool is missing on this machine.
    #[error("{what} is missing: {path}")]
    Missing {
        /// What it is.
        what: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// QEMU exited (or could not start).
    #[error("QEMU exited ({status}); its stderr: {stderr}\nconsole (last lines):\n{console}")]
    QemuExited {
        /// Its exit status.
        status: String,
        /// Its standard error.
        stderr: String,
        /// The console's last lines.
        console: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {seconds:.0} s waiting for {what}\nconsole (last lines, full log in {log}):\n{console}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        seconds: f64,
        /// The console's last lines.
        console: String,
        /// The console log file.
        log: String,
    },
    /// QMP answered with an error.
    #[error("QMP {command}: {class}: {desc}")]
    Qmp {
        /// The command.
        command: String,
        /// QEMU's error class.
        class: String,
        /// QEMU's message.
        desc: String,
    },
    /// A QMP message could not be read.
    #[error("QMP protocol: {0}")]
    Protocol(String),
    /// A command on the console exited non-zero (from [`crate::Lab::run_ok`]).
    #[error("`{command}` exited {status} in the lab:\n{stdout}")]
    Failed {
        /// The command.
        command: String,
        /// Its exit status.
        status: i32,
        /// Its output (stdout and stderr).
        stdout: String,
    },
}

impl LabError {
    /// A closure mapping an I/O error to [`LabError::Io`] saying `what` was being done.
    pub fn io(what: &str) -> impl FnOnce(std::io::Error) -> LabError + '_ {
        move |source| LabError::Io {
            what: what.to_string(),
            source,
        }
    }
}

// The lab is test equipment: every error is a failure of the machine or the guest.
impl mv_core::Classify for LabError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}
