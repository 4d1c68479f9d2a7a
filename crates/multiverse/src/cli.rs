//! The command line of `multiverse`: the clap definitions of every subcommand, in one place.
//!
//! Both binaries use this module of the `multiverse` library (`multiverse`, and `multiverse-virt`
//! of the package of that name), so they parse exactly the same arguments and print the same help,
//! completions and man page. It is not the dispatch of the libvirt commands: those are grouped in
//! [`VirtCommand`] (their arguments in [`virt`]) and handed to a function the binary supplies
//! ([`run`]); only the `multiverse-virt` package holds them, and only it depends on libvirt. See
//! docs/cli.md.
//!
//! `multiverse pass …` skips clap's tree: [`pass_command_line`] reads the global options and
//! hands the rest to pass's own parser, so that `pass show` does not build the definitions of every
//! subcommand first (issue 17). It takes only command lines that clap would read the same way, and
//! leaves every other one, errors included, to [`Cli`].
//!
//! Main types: [`Cli`] (the whole command line), [`Command`], [`VirtCommand`].

pub mod virt;

use crate::cmd;
use crate::error::CliError;
use crate::global::Global;
use clap::{CommandFactory, Parser, Subcommand};
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

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
    Up(virt::UpArgs),
    /// Stop machines in reverse dependency order
    Down(virt::DownArgs),
    /// Every machine: defined, running, changed since render; agent stats where reachable
    Status(virt::StatusArgs),
    /// Pull every libvirt definition off the host into the tree
    Backup(virt::BackupArgs),
    /// Define everything from a backup back on a host
    Restore(virt::RestoreArgs),
    /// Base OS images
    #[command(subcommand)]
    Image(virt::ImageCommand),
    /// Move an old Multiverse tree to the current layout
    Migrate(virt::MigrateArgs),
    /// Attach to a machine's serial console (libvirt's; Ctrl+] leaves)
    Console(virt::ConsoleArgs),
    /// Rebuild a lost host from its 24 words and multiverse.toml: restore, render, pass, image, up
    Rebuild(virt::RebuildArgs),
}

/// The whole program: parses the command line, sets up logging, runs the command with `virt` for
/// the libvirt subcommands, and exits with the command's exit code (0, 1 or 2; clap's own errors
/// exit 2 before anything runs).
pub fn main(
    virt: impl FnOnce(&Global, VirtCommand) -> Result<(), CliError>,
) -> std::process::ExitCode {
    // First, while the process has a single thread: no child may inherit the passphrase.
    crate::secret_input::take_env_passphrase();
    let code = crate::error::quiet_on_broken_pipe(|| {
        let argv: Vec<OsString> = std::env::args_os().collect();
        let root_env = std::env::var_os(ROOT_ENV);
        if let Some((mut g, args)) = pass_command_line(&argv, root_env.as_deref()) {
            g.init_logging();
            g.make_root_absolute();
            return crate::error::report(cmd::pass::run(&g, args));
        }
        let mut cli = Cli::parse_from(argv);
        cli.global.init_logging();
        cli.global.make_root_absolute();
        crate::error::report(run(cli, virt))
    });
    // Exit codes are 0, 1 and 2 (crate::error::report); anything else would be a bug, reported as 1.
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Runs one parsed command line. `virt` runs the libvirt subcommands: `multiverse` passes a
/// function that execs `multiverse-virt`, which passes the real dispatch (package
/// `multiverse-virt`).
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
        Command::Completions(a) => cmd::meta::completions(Cli::command(), a),
        Command::Man => cmd::meta::man(Cli::command()),
    }
}

/// The variable `--root` falls back to (see [`Global`]).
const ROOT_ENV: &str = "MULTIVERSE_ROOT";

/// `--root`'s default (see [`Global`]).
const ROOT_DEFAULT: &str = "/var/multiverse";

/// Reads `argv` (the program's name first) as `multiverse [GLOBAL…] pass [GLOBAL…] ARGS…` without
/// clap, where GLOBAL is `--root R`, `--root=R`, `--json`, `--dry-run`, `--verbose`, `--quiet` or a
/// cluster of `-v`/`-q`, and ARGS start at the first word clap gives to `pass` (a word that is no
/// global option: clap's trailing, hyphen-accepting ARGS). `root_env` is `$MULTIVERSE_ROOT`.
///
/// `None` whenever clap might read it otherwise or fail: another subcommand, an option given
/// twice (`-v`s on both sides of `pass` included), `-v` with `-q`, an empty root, `--` or `-`
/// right after `pass`, a word that is not UTF-8.
/// The caller then parses with [`Cli`], which reports the errors, so nothing a user sees changes.
pub fn pass_command_line(
    argv: &[OsString],
    root_env: Option<&OsStr>,
) -> Option<(Global, cmd::pass::Args)> {
    let mut words = Vec::with_capacity(argv.len());
    for w in argv.iter().skip(1) {
        words.push(w.to_str()?);
    }
    let mut before = SeenGlobals::default();
    let mut i = 0;
    // Before `pass`: global options only.
    loop {
        if *words.get(i)? == "pass" {
            i += 1;
            break;
        }
        i += before.take(&words[i..])?;
    }
    // After it: global options, up to the first word of ARGS.
    let mut after = SeenGlobals::default();
    while let Some(w) = words.get(i) {
        if starts_pass_args(w)? {
            break;
        }
        i += after.take(&words[i..])?;
    }
    let seen = before.merge(after)?;
    if seen.verbose > 0 && seen.quiet {
        return None; // clap's "cannot be used with" error
    }
    let root = match (seen.root, root_env) {
        (Some(r), _) => PathBuf::from(r),
        (None, Some(r)) if r.is_empty() => return None, // clap's empty-value error
        (None, Some(r)) => PathBuf::from(r),
        (None, None) => PathBuf::from(ROOT_DEFAULT),
    };
    let global = Global {
        root,
        json: seen.json,
        dry_run: seen.dry_run,
        verbose: seen.verbose,
        quiet: seen.quiet,
    };
    let args = words[i..].iter().map(|w| w.to_string()).collect();
    Some((global, cmd::pass::Args { args }))
}

/// The global options [`pass_command_line`] has read so far.
#[derive(Default)]
struct SeenGlobals<'a> {
    root: Option<&'a str>,
    json: bool,
    dry_run: bool,
    verbose: u8,
    quiet: bool,
}

impl<'a> SeenGlobals<'a> {
    /// Reads the global option at the start of `words`: how many words it took, `None` if it is
    /// none, or one clap would refuse (given twice, an empty value, a flag with `=value`).
    fn take(&mut self, words: &[&'a str]) -> Option<usize> {
        let w = *words.first()?;
        let set = |flag: &mut bool| (!std::mem::replace(flag, true)).then_some(1);
        match w {
            "--root" => {
                // A value that looks like an option is clap's "a value is required" error.
                let v = *words.get(1)?;
                (self.root.is_none() && !v.is_empty() && !v.starts_with('-')).then_some(())?;
                self.root = Some(v);
                Some(2)
            }
            "--json" => set(&mut self.json),
            "--dry-run" => set(&mut self.dry_run),
            "--quiet" => set(&mut self.quiet),
            "--verbose" => self.more_verbose(),
            _ => {
                if let Some(v) = w.strip_prefix("--root=") {
                    (self.root.is_none() && !v.is_empty()).then_some(())?;
                    self.root = Some(v);
                    return Some(1);
                }
                let cluster = w.strip_prefix('-').filter(|c| !c.is_empty())?;
                for c in cluster.chars() {
                    match c {
                        'v' => self.more_verbose()?,
                        'q' => set(&mut self.quiet)?,
                        _ => return None,
                    };
                }
                Some(1)
            }
        }
    }

    /// The options given before `pass` and those given after it. `None` if one is on both sides:
    /// clap then keeps the later one only (even `-v`s are not added up), which is for clap to do.
    fn merge(self, after: Self) -> Option<Self> {
        let both = (self.root.is_some() && after.root.is_some())
            || (self.json && after.json)
            || (self.dry_run && after.dry_run)
            || (self.verbose > 0 && after.verbose > 0)
            || (self.quiet && after.quiet);
        (!both).then_some(SeenGlobals {
            root: self.root.or(after.root),
            json: self.json || after.json,
            dry_run: self.dry_run || after.dry_run,
            verbose: self.verbose.max(after.verbose),
            quiet: self.quiet || after.quiet,
        })
    }

    /// One more `-v` (clap counts them in a u8; a few is plenty, more goes to clap).
    fn more_verbose(&mut self) -> Option<usize> {
        (self.verbose < 8).then_some(())?;
        self.verbose += 1;
        Some(1)
    }
}

/// Whether clap takes `w`, a word after `pass` and its global options, as the first of pass's
/// ARGS (which accept hyphens): a word without a leading `-`, a long option that is no global
/// one, or a cluster holding a letter other than `v` and `q` (clap's rule for hyphen values).
/// `None` for `--` and `-`, which clap treats otherwise.
fn starts_pass_args(w: &str) -> Option<bool> {
    if w == "--" || w == "-" {
        return None;
    }
    if let Some(long) = w.strip_prefix("--") {
        let name = long.split_once('=').map_or(long, |(n, _)| n);
        return Some(!matches!(
            name,
            "root" | "json" | "dry-run" | "verbose" | "quiet"
        ));
    }
    Some(match w.strip_prefix('-') {
        Some(cluster) => cluster.chars().any(|c| c != 'v' && c != 'q'),
        None => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        std::iter::once("multiverse")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect()
    }

    /// The fast path's reading of `words`, as (root, json, dry_run, verbose, quiet, ARGS).
    type Reading = (PathBuf, bool, bool, u8, bool, Vec<String>);

    fn fast(words: &[&str]) -> Option<Reading> {
        let root_env = std::env::var_os(ROOT_ENV);
        let (g, a) = pass_command_line(&argv(words), root_env.as_deref())?;
        Some((g.root, g.json, g.dry_run, g.verbose, g.quiet, a.args))
    }

    /// clap's reading of `words` (same environment), `None` for an error or another command.
    fn clap(words: &[&str]) -> Option<Reading> {
        let cli = Cli::try_parse_from(argv(words)).ok()?;
        let g = cli.global;
        match cli.command {
            Command::Pass(a) => Some((g.root, g.json, g.dry_run, g.verbose, g.quiet, a.args)),
            _ => None,
        }
    }

    #[test]
    fn the_pass_fast_path_reads_what_clap_reads() {
        let cases: &[&[&str]] = &[
            &["pass"],
            &["pass", "show", "site/e2"],
            &["pass", "site/e2"],
            &["--root", "/r", "pass", "show", "x"],
            &["--root=/r", "--json", "pass", "x"],
            &["--root=-r", "pass", "x"],
            &["--root", "pass", "pass", "x"],
            &["--dry-run", "pass", "rm", "x"],
            &["pass", "--json", "show", "x"],
            &["pass", "--root", "/r", "-c", "x"],
            &["pass", "--root=/r", "--dry-run", "--quiet", "x"],
            &["-vv", "pass", "show", "x"],
            &["--verbose", "-v", "pass", "--json", "x"],
            &["-q", "pass", "show", "x", "--root", "/r", "-v"],
            &["pass", "--passphrase-file", "f", "show", "x"],
            &["pass", "--gpg", "--json", "x"],
            &["pass", "-c", "x"],
            &["pass", "-vc", "x"],
            &["pass", "-qc1", "x"],
            &["pass", "show", "--", "-dash"],
            &["pass", "--help"],
            &["pass", "-h"],
            &["pass", "--version"],
            &["pass", "-V"],
            &["pass", "--bogus"],
            &["pass", "--roo", "x"],
            &["pass", "--json"],
        ];
        for words in cases {
            let f = fast(words);
            assert!(f.is_some(), "{words:?} should take the fast path");
            assert_eq!(f, clap(words), "{words:?}");
        }
    }

    #[test]
    fn the_pass_fast_path_leaves_the_rest_to_clap() {
        let cases: &[&[&str]] = &[
            &[],
            &["machine", "list"],
            &["help", "pass"],
            &["--help"],
            &["-V", "pass"],
            &["-h", "pass"],
            &["--bogus", "pass", "x"],
            &["--root"],
            &["--root", "pass"],
            &["--root", "", "pass"],
            &["--root=", "pass"],
            &["--root", "-v", "pass"],
            &["--root", "/a", "pass", "--root", "/b", "x"],
            &["--json", "--json", "pass", "x"],
            &["--json", "pass", "--json", "x"],
            &["-qq", "pass", "x"],
            &["-v", "pass", "-v", "x"],
            &["-q", "pass", "--quiet", "x"],
            &["--dry-run", "pass", "--dry-run", "x"],
            &["-vq", "pass", "x"],
            &["-v", "pass", "-q", "x"],
            &["pass", "--quiet", "--verbose", "x"],
            &["pass", "--json=1", "x"],
            &["pass", "--", "show"],
            &["pass", "-"],
            &["pass", "-vq"],
            &["--jso", "pass"],
        ];
        for words in cases {
            assert_eq!(fast(words), None, "{words:?}");
        }
        // What clap would refuse or read otherwise: an empty $MULTIVERSE_ROOT, a word that is
        // not UTF-8.
        assert!(pass_command_line(&argv(&["pass", "x"]), Some(OsStr::new(""))).is_none());
        use std::os::unix::ffi::OsStringExt;
        let mut bad = argv(&["pass", "show"]);
        bad.push(OsString::from_vec(vec![0xff]));
        assert!(pass_command_line(&bad, None).is_none());
    }

    #[test]
    fn the_pass_fast_path_roots() {
        let root = |w: &[&str], env: Option<&str>| {
            pass_command_line(&argv(w), env.map(OsStr::new)).map(|(g, _)| g.root)
        };
        assert_eq!(root(&["pass"], None), Some(PathBuf::from(ROOT_DEFAULT)));
        assert_eq!(root(&["pass"], Some("/e")), Some(PathBuf::from("/e")));
        assert_eq!(
            root(&["--root", "/c", "pass"], Some("/e")),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            root(&["--root", "/c", "pass"], Some("")),
            Some(PathBuf::from("/c"))
        );
    }
}
