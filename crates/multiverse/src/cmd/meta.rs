//! `multiverse completions SHELL` and `multiverse man`: generated from the clap definitions.

use crate::error::CliError;
use clap_complete::Shell;

/// Arguments of `completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Prints completions for the shell to stdout.
pub fn completions(mut cmd: clap::Command, a: CompletionsArgs) -> Result<(), CliError> {
    clap_complete::generate(a.shell, &mut cmd, "multiverse", &mut std::io::stdout());
    Ok(())
}

/// Prints the man page (roff) to stdout.
pub fn man(cmd: clap::Command) -> Result<(), CliError> {
    clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
    Ok(())
}
