//! `multiverse agent`: placeholder until its crate lands.

use crate::error::CliError;
use crate::global::Global;

/// Arguments of `multiverse top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {}

/// Runs `multiverse top`.
pub fn top(_g: &Global, _a: TopArgs) -> Result<(), CliError> {
    Err(super::not_yet("top"))
}
