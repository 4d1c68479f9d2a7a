//! The arguments of the libvirt subcommands (`up`, `down`, `status`, `backup`, `restore`,
//! `image`, `migrate`, `console`, `rebuild`): clap types only.
//!
//! They live in this library so that `multiverse` parses them (help, completions, the man page
//! and usage errors come from one definition) although it never runs them: the package
//! `multiverse-virt`, which links libvirt, does (docs/cli.md). What is not here: any code that
//! acts on them.

use std::path::PathBuf;

/// The libvirt connection option every subcommand here takes.
#[derive(Debug, clap::Args)]
pub struct ConnectArg {
    /// libvirt URI (default: `libvirt_uri` of multiverse.toml, else qemu:///system)
    #[arg(long, short = 'c', env = "MULTIVERSE_CONNECT", value_name = "URI")]
    pub connect: Option<String>,
}

/// Arguments of `up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub conn: ConnectArg,
    /// Only these machines (FQDNs); default: all. The pool and networks are always defined
    #[arg(value_name = "FQDN")]
    pub machines: Vec<String>,
    /// Start the machines in dependency order (universe → galaxy → star → the rest)
    #[arg(long)]
    pub start: bool,
    /// Seconds to wait for each machine to be running and its agent to answer
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub timeout: u64,
    /// Start without provisioning: attach no seed disk (the disks boot as they are)
    #[arg(long)]
    pub no_provision: bool,
    /// Do not wait for each machine's agent before starting the next (only for libvirt running)
    #[arg(long)]
    pub no_wait: bool,
    /// The person whose login key the machines accept (`authorized_keys` of `user`)
    #[arg(long, default_value = "@user", value_name = "@PERSON")]
    pub person: String,
    #[command(flatten)]
    pub pass: crate::cmd::identity::PassArgs,
}

/// Arguments of `down`.
#[derive(Debug, clap::Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub conn: ConnectArg,
    /// Only these machines (FQDNs); default: all, in reverse start order
    #[arg(value_name = "FQDN")]
    pub machines: Vec<String>,
    /// Seconds to wait for each machine to stop after the ACPI shutdown request
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub timeout: u64,
    /// Power off a machine still running after the timeout (risks its filesystem)
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: ConnectArg,
    /// Only these machines (FQDNs)
    #[arg(value_name = "FQDN")]
    pub machines: Vec<String>,
}

/// Arguments of `console`.
#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub conn: ConnectArg,
    /// The machine (FQDN)
    #[arg(value_name = "FQDN")]
    pub machine: String,
}

/// Arguments of `backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub conn: ConnectArg,
    /// Write the backup under DIR instead of the tree (same layout)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Arguments of `restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub conn: ConnectArg,
    /// Read the backup from DIR instead of the tree
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
}

/// `image` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Add a base image (any format qemu-img reads) as images/NAME.qcow2
    Import {
        /// The image file
        file: PathBuf,
        /// Its name (machines refer to it as `base = "NAME"`)
        #[arg(long)]
        name: String,
    },
    /// List the base images
    List,
    /// Build a bootable base image from the distribution's mirror, with nothing mounted
    /// (docs/images.md)
    Build(crate::cmd::image_build::BuildArgs),
}

/// Arguments of `multiverse migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The old tree (holding `Data/` and `Machines/`)
    #[arg(long, value_name = "OLD_DIR", required_unless_present = "undo")]
    pub from: Option<PathBuf>,
    /// The new root (default: --root); may be the old tree itself
    #[arg(long, value_name = "ROOT")]
    pub to: Option<PathBuf>,
    /// Put the old tree back exactly as it was (also finishes a half-done undo)
    #[arg(long)]
    pub undo: bool,
    /// libvirt URI whose domains and pools are repointed
    #[arg(
        long,
        value_name = "URI",
        env = "MULTIVERSE_LIBVIRT_URI",
        default_value = "qemu:///system"
    )]
    pub connect: String,
    /// Move files only; leave libvirt alone
    #[arg(long)]
    pub no_libvirt: bool,
}

/// `rebuild`.
#[derive(Debug, clap::Args)]
pub struct RebuildArgs {
    /// The 24 recovery words
    #[arg(long, value_name = "FILE")]
    pub words_file: PathBuf,
    /// The passphrase to seal the root with (else env MULTIVERSE_PASSPHRASE, else a prompt)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Stop before `up --start` (no libvirt on this host yet)
    #[arg(long)]
    pub no_up: bool,
    /// Do not build a missing base image
    #[arg(long)]
    pub no_image: bool,
    /// Start only these machines (and, as `up` does, nothing else); every machine when none
    #[arg(value_name = "FQDN")]
    pub machines: Vec<String>,
}
