//! The command line of `multiverse`: the clap definitions of every subcommand, in one place.
//!
//! Both binaries of this package compile this module (`multiverse` as `mod cli`,
//! `multiverse-virt` through `#[path]`), so they parse exactly the same arguments and print the
//! same help, completions and man page. It is not the dispatch of the libvirt commands: those are
//! grouped in [`VirtCommand`] and handed to a function the binary supplies ([`run`]), so that only
//! `multiverse-virt` references (and links) libvirt. See docs/cli.md.
//!
//! Main types: [`Cli`] (the whole command line), [`Command`], [`VirtCommand`].

use crate::cmd;
use crate::error::CliError;
use crate::global::Global;
use clap::{CommandFactory, Parser, Subcommand};

/// Multiverse OS: a compartmentalised desktop on KVM/libvirt, built, keyed and protected from one tree.
#[derive(Debug, Parser)]
#[command(
    name = "multiverse",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand. The libvirt ones are flattened in from [`VirtCommand`] at their usual place,
/// so the help lists them in the same order as before the split.
#[derive(Debug, Subcommand)]
pub enum Command {
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
    #[command(flatten)]
    Virt(VirtCommand),
    /// Declarative provisioning of machines (replaces provision.sh)
    #[command(subcommand)]
    Provision(cmd::provision::Command),
    /// Live dashboard of every machine's agent
    Top(cmd::agent::TopArgs),
    /// SSH into a machine over its virtio-serial channel, with the identity's keys both ways
    Ssh(cmd::ssh::SshArgs),
    /// ssh's ProxyCommand for `multiverse ssh` (stdin/stdout to the machine's SSH channel)
    #[command(hide = true)]
    SshProxy(cmd::ssh::ProxyArgs),
    /// In a machine: join the SSH virtio-serial port to sshd (run by the base image's service)
    #[command(hide = true)]
    SshRelay(cmd::ssh::RelayArgs),
    /// The kill switch and the LUKS key hidden in an image
    #[command(subcommand)]
    Guard(cmd::guard::Command),
    /// Host setup: udev rules, IOMMU checks, vfio-pci binding
    #[command(subcommand)]
    Host(cmd::host::Command),
    /// Install a Multiverse host on a disk: unattended from an answer file, or interactively
    Install(cmd::install::InstallArgs),
    /// Rebuild a lost host from its 24 words and multiverse.toml: restore, render, pass, image, up
    Rebuild(cmd::rebuild::RebuildArgs),
    /// Print shell completions
    Completions(cmd::meta::CompletionsArgs),
    /// Print the man page (roff)
    Man,
}

/// The subcommands that talk to libvirt (directly, or through `mv-migrate`); they run in the
/// `multiverse-virt` binary.
#[derive(Debug, Subcommand)]
pub enum VirtCommand {
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
    /// Attach to a machine's serial console (libvirt's; Ctrl+] leaves)
    Console(cmd::libvirt::ConsoleArgs),
}

/// The whole program: parses the command line, sets up logging, runs the command with `virt` for
/// the libvirt subcommands, and exits with the command's exit code (0, 1 or 2; clap's own errors
/// exit 2 before anything runs).
pub fn main(virt: impl FnOnce(&Global, VirtCommand) -> Result<(), CliError>) -> ! {
    // First, while the process has a single thread: no child may inherit the passphrase.
    crate::secret_input::take_env_passphrase();
    let code = crate::error::quiet_on_broken_pipe(|| {
        let mut cli = Cli::parse();
        cli.global.init_logging();
        cli.global.make_root_absolute();
        crate::error::report(run(cli, virt))
    });
    std::process::exit(code);
}

/// Runs one parsed command line. `virt` runs the libvirt subcommands: `multiverse` passes a
/// function that execs `multiverse-virt`, which passes the real dispatch.
pub fn run(
    cli: Cli,
    virt: impl FnOnce(&Global, VirtCommand) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let g = &cli.global;
    match cli.command {
        Command::Init(a) => cmd::init::run(g, a),
        Command::Render(a) => cmd::render::run(g, a),
        Command::Machine(c) => cmd::machine::run(g, c),
        Command::Identity(c) => cmd::identity::run(g, c),
        Command::Pass(a) => cmd::pass::run(g, a),
        Command::Virt(c) => virt(g, c),
        Command::Provision(c) => cmd::provision::run(g, c),
        Command::Top(a) => cmd::agent::top(g, a),
        Command::Ssh(a) => cmd::ssh::ssh(g, a),
        Command::SshProxy(a) => cmd::ssh::proxy(g, a),
        Command::SshRelay(a) => cmd::ssh::relay(g, a),
        Command::Guard(c) => cmd::guard::run(g, c),
        Command::Host(c) => cmd::host::run(g, c),
        Command::Install(a) => cmd::install::run(g, a),
        Command::Rebuild(a) => cmd::rebuild::run(g, a),
        Command::Completions(a) => cmd::meta::completions(Cli::command(), a),
        Command::Man => cmd::meta::man(Cli::command()),
    }
}
