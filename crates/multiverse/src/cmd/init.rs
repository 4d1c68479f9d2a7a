//! `multiverse init`: placeholder until its crate lands.

use crate::error::CliError;
use crate::global::Global;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the command.
pub fn run(_g: &Global, _a: Args) -> Result<(), CliError> {
    Err(super::not_yet("init"))
}
