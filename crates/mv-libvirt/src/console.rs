//! A machine's serial console, live: libvirt's own console client (`virsh console`), on the
//! terminal of the caller.
//!
//! The libvirt API offers a console stream but no terminal client (raw mode, the escape key,
//! restoring the terminal); `virsh console` is that client, so this is the one place this crate
//! runs `virsh`. It shows the same stream libvirt keeps in `machines/<fqdn>/console.log`.

use std::process::{Command, ExitStatus};

/// Why the console could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// `virsh` could not be started (not installed, not executable).
    #[error("cannot run virsh")]
    Spawn(#[source] std::io::Error),
    /// `virsh console` ended with a failure (the machine is not running, no such machine, no
    /// permission).
    #[error("virsh console {name} exited with {status}")]
    Exit {
        /// The machine.
        name: String,
        /// How `virsh` ended.
        status: ExitStatus,
    },
}

impl mv_core::Classify for ConsoleError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

/// Attaches the caller's terminal to the serial console of domain `name` on `uri` until the
/// person leaves it (Ctrl+]).
pub fn console(uri: &str, name: &str) -> Result<(), ConsoleError> {
    let status = Command::new("virsh")
        .args(["-c", uri, "console", name])
        .status()
        .map_err(ConsoleError::Spawn)?;
    if status.success() {
        Ok(())
    } else {
        Err(ConsoleError::Exit {
            name: name.to_string(),
            status,
        })
    }
}
