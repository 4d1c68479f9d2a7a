//! `multiverse-virt`: the part of `multiverse` that links libvirt.
//!
//! `multiverse` execs this binary, with the same arguments, for the subcommands that talk to
//! libvirt (`up`, `down`, `status`, `backup`, `restore`, `image`, `migrate`, `console`, `rebuild`), so that every other
//! command starts without loading libvirt and its ~55 shared libraries (docs/cli.md). It compiles
//! the very same modules as `multiverse` (through `#[path]`: one definition of the command line,
//! [`cli::Cli`]), and runs any subcommand itself, libvirt or not; it is not meant to be called by
//! hand, though doing so is harmless.
#![forbid(unsafe_code)]

#[path = "../cli.rs"]
mod cli;
#[path = "../cmd/mod.rs"]
mod cmd;
#[path = "../error.rs"]
mod error;
#[path = "../global.rs"]
mod global;
#[path = "../secret_input.rs"]
mod secret_input;
#[path = "../session.rs"]
mod session;
#[path = "../unsealed.rs"]
mod unsealed;

use cli::VirtCommand;
use error::CliError;
use global::Global;

fn main() {
    cli::main(run_virt)
}

/// Runs one libvirt subcommand.
fn run_virt(g: &Global, c: VirtCommand) -> Result<(), CliError> {
    match c {
        VirtCommand::Up(a) => cmd::libvirt::up(g, a),
        VirtCommand::Down(a) => cmd::libvirt::down(g, a),
        VirtCommand::Status(a) => cmd::libvirt::status(g, a),
        VirtCommand::Backup(a) => cmd::libvirt::backup(g, a),
        VirtCommand::Restore(a) => cmd::libvirt::restore(g, a),
        VirtCommand::Image(c) => cmd::libvirt::image(g, c),
        VirtCommand::Migrate(a) => cmd::migrate::run(g, a),
        VirtCommand::Console(a) => cmd::libvirt::console(g, a),
        VirtCommand::Rebuild(a) => cmd::rebuild::run(g, a, &run_virt),
    }
}
