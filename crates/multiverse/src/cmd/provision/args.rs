//! The clap arguments of `multiverse provision`.

use std::path::PathBuf;

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show what `apply` would change on a machine's root filesystem (a diff)
    Plan(TargetArgs),
    /// Make a machine's root filesystem match its recipe (packages, files, users, services)
    Apply(TargetArgs),
    /// Check the machine's rendered configs with their own tools (nft, dnsmasq, tor, sshd, wg-quick, openvpn)
    Check(MachineArgs),
    /// Write the machine's rendered configuration files under machines/<fqdn>/provision/
    Render(MachineArgs),
    /// Apply a seed folder (a mounted seed disk) to a root filesystem: what a machine runs on
    /// itself at first boot. Needs no identity: the seed holds the machine's desired state
    ApplySeed(SeedArgs),
}

/// Arguments of `apply-seed`.
#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// The seed folder (where the machine mounted its seed disk)
    #[arg(long, value_name = "DIR")]
    pub seed: PathBuf,
    /// The root filesystem to provision (`/` on the machine itself)
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub target: PathBuf,
}

/// A machine and the identity passphrase.
#[derive(Debug, clap::Args)]
pub struct MachineArgs {
    /// The machine's FQDN (star.router.multiverse)
    pub machine: String,
    #[command(flatten)]
    pub pass: crate::cmd::identity::PassArgs,
    /// Whose login key goes into authorized_keys
    #[arg(long, default_value = "@user", value_name = "@PERSON")]
    pub person: String,
}

/// A machine, the identity passphrase and where the machine's root filesystem is.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    #[command(flatten)]
    pub machine: MachineArgs,
    /// The machine's mounted root filesystem
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present_any = ["ssh", "disk"],
        conflicts_with_all = ["ssh", "disk"]
    )]
    pub target: Option<PathBuf>,
    /// The running machine over SSH, as root
    #[arg(long, value_name = "[root@]HOST")]
    pub ssh: Option<String>,
    /// SSH port
    #[arg(long, default_value_t = 22, requires = "ssh")]
    pub port: u16,
    /// Accept the machine's current SSH host key (before its first provisioning it is not yet the
    /// identity's); otherwise only the identity's host key for this machine is accepted
    #[arg(long, requires = "ssh")]
    pub first_contact: bool,
    /// Show the full diff of every file (plan shows diffs by default; apply only with this)
    #[arg(long)]
    pub diff: bool,
    /// Write the machine's seed disk (machines/FQDN/seed.img) instead: the machine applies it
    /// to itself at its next boot, reaching the state `--target` would
    #[arg(long, conflicts_with = "ssh")]
    pub disk: bool,
}
