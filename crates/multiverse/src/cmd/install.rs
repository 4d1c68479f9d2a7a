//! `multiverse install`: arguments, the report and exit codes of the host installer ([`mv_install`]).
//!
//! `--answers FILE` runs unattended: every answer is checked first (exit 2 with `FILE:LINE` and
//! nothing touched), then the journaled steps run; `--dry-run` prints the commands and writes of
//! a run on a blank disk. Without `--answers`, the interactive installer (`install_tui`) asks the
//! questions and writes an answer file, then runs it.
//!
//! What this is not: the installer; see `mv-install` and docs/install.md.

use crate::error::CliError;
use crate::global::Global;
use mv_install::{Answers, DryRun, InstallError, Options, Problem, RealHost, System};
use std::path::PathBuf;

/// Arguments of `install`.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The answer file (docs/install.md describes every field); without it, the interactive
    /// installer asks and writes one
    #[arg(long, value_name = "FILE")]
    pub answers: Option<PathBuf>,
    /// Where the interactive installer writes the answer file
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/root/multiverse-install.toml"
    )]
    pub write_answers: PathBuf,
    /// Only write the answer file (interactive), do not install
    #[arg(long)]
    pub no_install: bool,
    /// The install's journal and sealed identity (a rerun after a crash reads them)
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/multiverse-install"
    )]
    pub state: PathBuf,
    /// Where the new system is mounted while installing
    #[arg(long, value_name = "DIR", default_value = "/run/multiverse-install")]
    pub mount_dir: PathBuf,
}

fn answer_error(e: mv_install::AnswerError) -> CliError {
    let hint = match e.problem {
        Problem::TooSmall => Some("pick a larger disk (lsblk lists them)"),
        Problem::InUse => Some("the target must be a whole disk nothing else uses"),
        Problem::Syntax => Some("docs/install.md lists every field of the answer file"),
        _ => None,
    };
    let mut c = CliError::usage_msg(e);
    if let Some(h) = hint {
        c = c.with_hint(h);
    }
    c
}

fn install_error(e: InstallError) -> CliError {
    match e {
        InstallError::NotBlank { .. } => CliError::usage_msg(e)
            .with_hint("set `erase = true` in the answer file to erase it (everything on it is lost)"),
        InstallError::OtherInstall { .. } => CliError::usage_msg(e).with_hint(
            "finish it with the same answer file, or remove the journal to start over (the disk is erased again)",
        ),
        InstallError::SourceIncomplete { .. } => CliError::usage_msg(e).with_hint(
            "build a host image: multiverse image build debian --name host --kernel generic \
             --include cryptsetup,cryptsetup-initramfs,grub-efi-amd64-bin,grub2-common,dosfstools,keyutils",
        ),
        other => CliError::from(other).with_hint(
            "run the same command again to finish: every step done is in the journal",
        ),
    }
}

/// `multiverse install`.
pub fn run(g: &Global, a: InstallArgs) -> Result<(), CliError> {
    let answers_path = match &a.answers {
        Some(p) => p.clone(),
        None => {
            crate::cmd::install_tui::interactive(&a.write_answers)?;
            if a.no_install {
                return Ok(());
            }
            a.write_answers.clone()
        }
    };
    let answers = Answers::load(&answers_path).map_err(answer_error)?;
    let checked = answers.check(&System::default()).map_err(answer_error)?;
    let o = Options::for_this_machine(a.state.clone(), a.mount_dir.clone());
    if g.dry_run {
        let mut dry = DryRun::default();
        let report = mv_install::install(&checked, &o, &mut dry).map_err(install_error)?;
        for line in &dry.lines {
            println!("{line}");
        }
        g.say(format!(
            "would run {} steps on {} (nothing was changed)",
            report.ran.len(),
            checked.disk.display()
        ));
        return Ok(());
    }
    if !mv_install::running_as_root() {
        return Err(CliError::usage_msg(
            "`multiverse install` partitions disks: run it as root",
        ));
    }
    let mut host = RealHost {
        verbose: g.verbose > 0,
    };
    let started = std::time::Instant::now();
    let report = mv_install::install(&checked, &o, &mut host).map_err(install_error)?;
    if let Some(words) = &report.new_words {
        eprintln!("\nThe recovery words of the new identity (shown once; write them down):\n");
        eprintln!("    {}\n", words.expose());
    }
    if report.ran.is_empty() {
        g.say(format!(
            "{} is already installed; nothing changed",
            checked.disk.display()
        ));
    } else {
        g.say(format!(
            "installed {} on {} in {:.0} s ({} steps run, {} already done)",
            checked.hostname,
            checked.disk.display(),
            started.elapsed().as_secs_f64(),
            report.ran.len(),
            report.skipped.len()
        ));
    }
    Ok(())
}
