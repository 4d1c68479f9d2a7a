//! `multiverse`: the command-line front end of Multiverse OS.
//!
//! This binary only parses arguments, wires the library crates together and maps their errors to
//! exit codes and hints. Every subcommand lives in its own module under [`cmd`]; the work itself is
//! done by the `mv-*` crates (see ARCHITECTURE.md).
//!
//! Exit codes: 0 success, 1 failure, 2 usage or bad input (a malformed config, a bad name, ...).
#![forbid(unsafe_code)]

mod cmd;
mod error;
mod global;
mod secret_input;

use clap::{CommandFactory, Parser, Subcommand};
use error::CliError;
use global::Global;

/// Multiverse OS: a compartmentalised desktop on KVM/libvirt, built, keyed and protected from one tree.
#[derive(Debug, Parser)]
#[command(
    name = "multiverse",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the default topology (multiverse.toml and the tree) into --root
    Init(cmd::init::Args),
    /// Render every machine's definition and configuration from multiverse.toml
    Render(cmd::render::Args),
    /// Add, list, show and remove machines
    #[command(subcommand)]
    Machine(cmd::machine::Command),
    /// The Scramble Suit identity: one root secret, every key
    #[command(subcommand)]
    Identity(cmd::identity::Command),
    /// The password store (pass format), with OTP
    Pass(cmd::pass::Args),
    /// Define (and with --start, start) the multiverse through libvirt
    Up(cmd::libvirt::UpArgs),
    /// Stop machines in reverse dependency order
    Down(cmd::libvirt::DownArgs),
    /// Every machine: defined, running, changed since render; agent stats where reachable
    Status(cmd::libvirt::StatusArgs),
    /// Pull every libvirt definition off the host into the tree
    Backup(cmd::libvirt::BackupArgs),
    /// Define everything from a backup back on a host
    Restore(cmd::libvirt::RestoreArgs),
    /// Base OS images
    #[command(subcommand)]
    Image(cmd::libvirt::ImageCommand),
    /// Move an old Multiverse tree to the current layout
    Migrate(cmd::migrate::Args),
    /// Declarative provisioning of machines (replaces provision.sh)
    #[command(subcommand)]
    Provision(cmd::provision::Command),
    /// Live dashboard of every machine's agent
    Top(cmd::agent::TopArgs),
    /// The kill switch and the LUKS key hidden in an image
    #[command(subcommand)]
    Guard(cmd::guard::Command),
    /// Host setup: udev rules, IOMMU checks, vfio-pci binding
    #[command(subcommand)]
    Host(cmd::host::Command),
    /// Print shell completions
    Completions(cmd::meta::CompletionsArgs),
    /// Print the man page (roff)
    Man,
}

fn main() {
    let cli = Cli::parse();
    cli.global.init_logging();
    let result = run(cli);
    std::process::exit(error::report(result));
}

fn run(cli: Cli) -> Result<(), CliError> {
    let g = &cli.global;
    match cli.command {
        Command::Init(a) => cmd::init::run(g, a),
        Command::Render(a) => cmd::render::run(g, a),
        Command::Machine(c) => cmd::machine::run(g, c),
        Command::Identity(c) => cmd::identity::run(g, c),
        Command::Pass(a) => cmd::pass::run(g, a),
        Command::Up(a) => cmd::libvirt::up(g, a),
        Command::Down(a) => cmd::libvirt::down(g, a),
        Command::Status(a) => cmd::libvirt::status(g, a),
        Command::Backup(a) => cmd::libvirt::backup(g, a),
        Command::Restore(a) => cmd::libvirt::restore(g, a),
        Command::Image(c) => cmd::libvirt::image(g, c),
        Command::Migrate(a) => cmd::migrate::run(g, a),
        Command::Provision(c) => cmd::provision::run(g, c),
        Command::Top(a) => cmd::agent::top(g, a),
        Command::Guard(c) => cmd::guard::run(g, c),
        Command::Host(c) => cmd::host::run(g, c),
        Command::Completions(a) => cmd::meta::completions(Cli::command(), a),
        Command::Man => cmd::meta::man(Cli::command()),
    }
}
