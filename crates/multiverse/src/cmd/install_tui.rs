//! The interactive installer: asks the questions of the answer file in a terminal UI and writes it.
//!
//! What this is not: the installer; it only writes the answer file `multiverse install --answers`
//! reads.

use crate::error::CliError;
use std::path::Path;

/// Asks every question and writes the answer file to `out`.
pub fn interactive(out: &Path) -> Result<(), CliError> {
    Err(CliError::usage_msg(format!(
        "the interactive installer is not built yet; write {} by hand (docs/install.md) and pass --answers",
        out.display()
    )))
}
