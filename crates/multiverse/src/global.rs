//! Options every subcommand takes.

use crate::error::CliError;
use clap::Args;
use std::path::PathBuf;

/// Global options, accepted before or after the subcommand.
#[derive(Debug, Args)]
pub struct Global {
    /// The Multiverse tree to work on
    #[arg(
        long,
        global = true,
        env = "MULTIVERSE_ROOT",
        default_value = "/var/multiverse"
    )]
    pub root: PathBuf,
    /// Machine-readable output (read commands)
    #[arg(long, global = true)]
    pub json: bool,
    /// Print what would change and change nothing (commands that write)
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// More output (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

impl Global {
    /// Logs go to stderr; `-v` shows info, `-vv` debug. Secrets are never logged.
    pub fn init_logging(&self) {
        let level = match (self.quiet, self.verbose) {
            (true, _) => "error",
            (false, 0) => "warn",
            (false, 1) => "info",
            (false, _) => "debug",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_env("MULTIVERSE_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .without_time()
            .try_init();
    }

    /// Makes `--root` absolute against the working directory. Paths under the tree end up in
    /// libvirt definitions (console logs, disks, the storage pool), which libvirtd resolves from
    /// its own working directory: a relative `--root ./tree` would name files libvirtd cannot
    /// find. Nothing is resolved through links and the folder need not exist yet (`init`).
    pub fn make_root_absolute(&mut self) {
        if let Ok(abs) = std::path::absolute(&self.root) {
            self.root = abs;
        }
    }

    /// Prints a progress or status line unless `--quiet`.
    #[allow(dead_code)]
    pub fn say(&self, line: impl std::fmt::Display) {
        if !self.quiet {
            println!("{line}");
        }
    }
}

/// Prints `value` as pretty JSON on stdout (the `--json` output of every read command).
pub fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(CliError::failure)?;
    println!("{text}");
    Ok(())
}

/// Prints `value` as one line of compact JSON on stdout (pass's `--json` output, one document).
pub fn print_json_line(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string(value).map_err(CliError::failure)?;
    println!("{text}");
    Ok(())
}
