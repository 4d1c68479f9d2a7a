//! `multiverse guard`: placeholder until its crate lands.

use crate::error::CliError;
use crate::global::Global;

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Not built yet
    Todo,
}

/// Runs the command.
pub fn run(_g: &Global, _c: Command) -> Result<(), CliError> {
    Err(super::not_yet("guard"))
}
