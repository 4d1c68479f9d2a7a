//! `multiverse up|down|status|backup|restore|image`: placeholder until its crate lands.

use crate::error::CliError;
use crate::global::Global;

/// Arguments of `up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {}
/// Arguments of `down`.
#[derive(Debug, clap::Args)]
pub struct DownArgs {}
/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {}
/// Arguments of `backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {}
/// Arguments of `restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {}
/// `image` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Not built yet
    Todo,
}

/// `multiverse up`.
pub fn up(_g: &Global, _a: UpArgs) -> Result<(), CliError> {
    Err(super::not_yet("up"))
}
/// `multiverse down`.
pub fn down(_g: &Global, _a: DownArgs) -> Result<(), CliError> {
    Err(super::not_yet("down"))
}
/// `multiverse status`.
pub fn status(_g: &Global, _a: StatusArgs) -> Result<(), CliError> {
    Err(super::not_yet("status"))
}
/// `multiverse backup`.
pub fn backup(_g: &Global, _a: BackupArgs) -> Result<(), CliError> {
    Err(super::not_yet("backup"))
}
/// `multiverse restore`.
pub fn restore(_g: &Global, _a: RestoreArgs) -> Result<(), CliError> {
    Err(super::not_yet("restore"))
}
/// `multiverse image`.
pub fn image(_g: &Global, _c: ImageCommand) -> Result<(), CliError> {
    Err(super::not_yet("image"))
}
