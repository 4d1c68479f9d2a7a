//! `multiverse-virt`: the part of `multiverse` that links libvirt.
//!
//! `multiverse` execs this binary, with the same arguments, for the subcommands that talk to
//! libvirt (`up`, `down`, `status`, `backup`, `restore`, `image`, `migrate`, `console`,
//! `rebuild`), so that every other command starts without loading libvirt and its ~55 shared
//! libraries (docs/cli.md). It is its own package, the only one of the command line that depends
//! on `mv-libvirt` and `mv-migrate`; the command line itself (one definition, [`Cli`]) and every
//! other command come from the `multiverse` library, so it parses exactly what `multiverse` does
//! and runs any subcommand itself, libvirt or not; it is not meant to be called by hand, though
//! doing so is harmless.
//!
//! One module per subcommand family; each parses nothing (clap did), calls `mv-libvirt` or
//! `mv-migrate`, prints and maps errors to exit codes and hints:
//! [`up`] (`up`, `down`), [`status`], [`backup`] (`backup`, `restore`), [`image`] (`image`,
//! `console`), [`migrate`], [`rebuild`]; [`common`] holds what they share.
//!
//! [`Cli`]: multiverse::cli::Cli
#![forbid(unsafe_code)]

mod backup;
mod common;
mod image;
mod migrate;
mod rebuild;
mod status;
mod up;

use multiverse::cli::VirtCommand;
use multiverse::error::CliError;
use multiverse::global::Global;

fn main() -> std::process::ExitCode {
    multiverse::cli::main(run_virt)
}

/// Runs one libvirt subcommand.
fn run_virt(g: &Global, c: VirtCommand) -> Result<(), CliError> {
    match c {
        VirtCommand::Up(a) => up::up(g, a),
        VirtCommand::Down(a) => up::down(g, a),
        VirtCommand::Status(a) => status::status(g, a),
        VirtCommand::Backup(a) => backup::backup(g, a),
        VirtCommand::Restore(a) => backup::restore(g, a),
        VirtCommand::Image(c) => image::image(g, c),
        VirtCommand::Migrate(a) => migrate::run(g, a),
        VirtCommand::Console(a) => image::console(g, a),
        VirtCommand::Rebuild(a) => rebuild::run(g, a, &run_virt),
    }
}
