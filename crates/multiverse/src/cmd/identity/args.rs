//! The clap arguments of `multiverse identity`.

use crate::error::{CliError, Hinted};
use crate::secret_input;
use mv_identity::KdfParams;
use std::path::PathBuf;

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make a new root, print its 24 recovery words once, and seal it with a passphrase
    New(NewArgs),
    /// Rebuild the root from its 24 words (stdin or --words-file) and seal it with a passphrase
    Restore(RestoreArgs),
    /// Print the public identity of a machine (FQDN) or a person (@user)
    Show(ShowArgs),
    /// Write the keys of one name in their standard file formats
    Export(ExportArgs),
    /// Write the keys of every machine of multiverse.toml, a known_hosts and an authorized_keys
    Fleet(FleetArgs),
    /// Replace one name's keys: raise its epoch in multiverse.toml and revoke the old keys
    Rotate(crate::cmd::rotate::RotateArgs),
    /// Forget the session cache: the identity root and the pass keys unlocked for this session
    /// (the same as `multiverse pass lock`); the next command asks for the passphrase
    Lock,
}

/// Where the unseal passphrase comes from.
#[derive(Debug, clap::Args)]
pub struct PassArgs {
    /// Read the passphrase from this file (else env MULTIVERSE_PASSPHRASE, else a prompt)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// Argon2id cost of the seal (defaults: the spec's m = 256 MiB, t = 3, p = 1).
#[derive(Debug, clap::Args)]
pub struct KdfArgs {
    /// Argon2id memory in KiB (lower only for tests or very small machines)
    #[arg(long, value_name = "KIB", default_value_t = KdfParams::DEFAULT.memory_kib())]
    pub kdf_memory: u32,
    /// Argon2id passes
    #[arg(long, value_name = "N", default_value_t = KdfParams::DEFAULT.iterations())]
    pub kdf_iterations: u32,
    /// Argon2id lanes
    #[arg(long, value_name = "N", default_value_t = KdfParams::DEFAULT.parallelism())]
    pub kdf_parallelism: u32,
}

/// `identity new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// Replace an existing identity (its keys are lost unless you kept its words)
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub pass: PassArgs,
    #[command(flatten)]
    pub kdf: KdfArgs,
}

/// `identity restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Read the 24 words from this file instead of stdin
    #[arg(long, value_name = "FILE")]
    pub words_file: Option<PathBuf>,
    /// Replace an existing, different identity
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub pass: PassArgs,
    #[command(flatten)]
    pub kdf: KdfArgs,
}

/// `identity show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// A machine FQDN (`universe.router.multiverse`) or a person (`@user`)
    pub name: String,
    #[command(flatten)]
    pub pass: PassArgs,
}

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Kind {
    /// id_ed25519, id_ecdsa (+ .pub): login keys
    Ssh,
    /// ssh_host_ed25519_key, ssh_host_ecdsa_key (+ .pub): sshd host keys
    SshHost,
    /// hs_ed25519_secret_key, hs_ed25519_public_key, hostname: a Tor v3 onion service
    Onion,
    /// openpgp-secret.asc, openpgp-public.asc
    Openpgp,
    /// password: the machine password (32 characters)
    Password,
    /// luks.key: the 64-byte LUKS key file
    Luks,
    /// Every kind above
    All,
}

/// The one conversion of the clap type (whose doc comments are the help text) to
/// `mv_identity::export::Kind`: one kind each, every kind for `all`. The match has no wildcard, so
/// a clap kind without a mapping does not compile, and neither does the test's reverse match for a
/// library kind without a clap one.
impl From<Kind> for &'static [mv_identity::export::Kind] {
    fn from(k: Kind) -> Self {
        use mv_identity::export::Kind as K;
        match k {
            Kind::Ssh => &[K::Ssh],
            Kind::SshHost => &[K::SshHost],
            Kind::Onion => &[K::Onion],
            Kind::Openpgp => &[K::Openpgp],
            Kind::Password => &[K::Password],
            Kind::Luks => &[K::Luks],
            Kind::All => &K::ALL,
        }
    }
}

/// Options shared by `export` and `fleet` for SSH private keys.
#[derive(Debug, clap::Args)]
pub struct KeyPassArgs {
    /// Encrypt exported SSH private keys with the passphrase in this file (bcrypt-pbkdf, aes256-ctr)
    #[arg(long, value_name = "FILE")]
    pub key_passphrase_file: Option<PathBuf>,
}

/// `identity export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A machine FQDN or a person (@user)
    pub name: String,
    /// What to write (repeatable; `all` for everything)
    #[arg(long, value_enum, required = true)]
    pub kind: Vec<Kind>,
    /// Folder to write into (created with mode 0700)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write secret keys even into a folder of another user (with a warning): they stay yours,
    /// mode 0600, but that user can delete or replace them
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub key_pass: KeyPassArgs,
    #[command(flatten)]
    pub pass: PassArgs,
}

/// `identity fleet`.
#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    /// Folder to write into: one sub-folder per machine, plus known_hosts and authorized_keys
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The person whose login keys go into authorized_keys (and into DIR/@USER/)
    #[arg(long, value_name = "USER", default_value = "@user")]
    pub user: String,
    #[command(flatten)]
    pub key_pass: KeyPassArgs,
    #[command(flatten)]
    pub pass: PassArgs,
}

impl KdfArgs {
    pub(crate) fn params(&self) -> Result<KdfParams, CliError> {
        let p = KdfParams::new(self.kdf_memory, self.kdf_iterations, self.kdf_parallelism)
            .usage()
            .hint("see `multiverse identity new --help` for the KDF options")?;
        secret_input::warn_if_weak(&p);
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::Kind;
    use mv_identity::export::Kind as K;

    /// Every library kind has its own clap kind, which converts back to it alone.
    #[test]
    fn every_export_kind_has_one_clap_kind() {
        for k in K::ALL {
            let cli = match k {
                K::Ssh => Kind::Ssh,
                K::SshHost => Kind::SshHost,
                K::Onion => Kind::Onion,
                K::Openpgp => Kind::Openpgp,
                K::Password => Kind::Password,
                K::Luks => Kind::Luks,
            };
            assert_eq!(<&[K]>::from(cli), &[k]);
        }
        assert_eq!(<&[K]>::from(Kind::All), &K::ALL);
    }
}
