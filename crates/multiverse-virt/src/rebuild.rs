//! `multiverse rebuild --words-file F`: a lost host back from its 24 words and `multiverse.toml`
//! (kept in git), as one command over the existing ones.
//!
//! Steps, each an existing subcommand with the same `--root`, all run in this process (a libvirt
//! command: `multiverse-virt`), so the root is unsealed once (`multiverse::unsealed`):
//! `identity restore` (the words; the sealed root), `render`, `pass init` + `pass machines`, `image
//! build debian` (when `images/debian.qcow2` is missing), `up --start [FQDN...]` (which writes
//! the seeds of the machines it starts and starts them in order; every machine when none is
//! named). Each is idempotent, so the whole command can be run
//! again after a failure; it stops at the first failing step with one line naming it.
//!
//! The passphrase reaches the steps as `--passphrase-file`: the given file, or (read once from
//! `MULTIVERSE_PASSPHRASE` or a prompt) a 0600 file in a private scratch folder removed on exit.
//! Never argv, never the environment.

use multiverse::cli::virt::RebuildArgs;
use multiverse::cli::{Cli, VirtCommand};
use multiverse::error::{CliError, Kind};
use multiverse::global::Global;
use multiverse::secret_input;
use std::path::PathBuf;

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `multiverse rebuild`.
pub fn run(
    g: &Global,
    a: RebuildArgs,
    virt: &dyn Fn(&Global, VirtCommand) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let tree = mv_machines::Tree::new(g.root.clone());
    let config = tree.config_file();
    // The file must be there and valid, and the machines named in it, before anything is written.
    let topo = mv_machines::Topology::load(&config).map_err(|e| {
        CliError::usage_msg(e).with_hint(
            "rebuild needs the multiverse.toml you keep in git at --root (copy it there first)",
        )
    })?;
    for m in &a.machines {
        if !topo.start_order().iter().any(|v| v.name.as_str() == m) {
            return Err(CliError::usage_msg(format!(
                "{}: no virtual machine `{m}`",
                config.display()
            ))
            .with_hint("`multiverse machine list` shows the machines of multiverse.toml"));
        }
    }
    if a.no_up && !a.machines.is_empty() {
        return Err(CliError::usage_msg(
            "machines to start were named, but --no-up starts none",
        ));
    }
    let mut _scratch = None;
    let pass_file = match &a.passphrase_file {
        Some(p) => p.clone(),
        None => {
            let pass = secret_input::passphrase(None, "Identity passphrase", true)?;
            let dir = std::env::temp_dir().join(format!(".mv-rebuild-{}", std::process::id()));
            {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
            }
            let f = dir.join("passphrase");
            _scratch = Some(Scratch(dir));
            mv_core::fsutil::write_secret(&f, pass.expose().as_bytes())?;
            f
        }
    };
    let pf = pass_file.as_os_str();
    let mut steps: Vec<(String, Vec<&std::ffi::OsStr>)> = vec![
        (
            "identity restore".into(),
            vec![
                "identity".as_ref(),
                "restore".as_ref(),
                "--words-file".as_ref(),
                a.words_file.as_os_str(),
                "--passphrase-file".as_ref(),
                pf,
            ],
        ),
        ("render".into(), vec!["render".as_ref()]),
        (
            "pass init".into(),
            vec![
                "pass".as_ref(),
                "init".as_ref(),
                "--passphrase-file".as_ref(),
                pf,
            ],
        ),
        (
            "pass machines".into(),
            vec![
                "pass".as_ref(),
                "machines".as_ref(),
                "--passphrase-file".as_ref(),
                pf,
            ],
        ),
    ];
    if !a.no_image && !tree.image("debian").exists() {
        steps.push((
            "image build debian".into(),
            vec!["image".as_ref(), "build".as_ref(), "debian".as_ref()],
        ));
    }
    if !a.no_up {
        let mut up: Vec<&std::ffi::OsStr> = vec![
            "up".as_ref(),
            "--start".as_ref(),
            "--passphrase-file".as_ref(),
            pf,
            "--".as_ref(),
        ];
        up.extend(a.machines.iter().map(|m| std::ffi::OsStr::new(m.as_str())));
        steps.push(("up --start".into(), up));
    }
    let total = steps.len();
    for (i, (name, args)) in steps.iter().enumerate() {
        g.say(format!("[{}/{total}] {name}", i + 1));
        // Every step in this process (`multiverse-virt`, which links libvirt for `image` and
        // `up`): the root unsealed, or sealed by `identity restore`, by one step is the next
        // one's (`multiverse::unsealed`): one Argon2id for the whole rebuild instead of one per step.
        let mut argv: Vec<std::ffi::OsString> = vec!["multiverse".into()];
        argv.extend(global_args(g));
        argv.extend(args.iter().map(|a| a.to_os_string()));
        let cli = <Cli as clap::Parser>::try_parse_from(argv).map_err(|e| {
            CliError::failure_msg(format!("rebuild's step `{name}` does not parse: {e}"))
        })?;
        let code = multiverse::error::report(multiverse::cli::run(cli, virt));
        if code != 0 {
            return Err(CliError {
                kind: if code == 2 {
                    Kind::Usage
                } else {
                    Kind::Failure
                },
                error: anyhow::anyhow!(
                    "rebuild stopped at step {}/{total}, `{name}` (exit {code}); steps before it are done",
                    i + 1
                ),
                hint: Some("fix what it printed above and run the same rebuild again".into()),
            });
        }
    }
    g.say(format!("rebuild done: {total} steps"));
    Ok(())
}

/// `--root R`, `--quiet`, `-v`…: this run's global options, for each step.
fn global_args(g: &Global) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = vec!["--root".into(), g.root.clone().into()];
    if g.quiet {
        out.push("--quiet".into());
    }
    for _ in 0..g.verbose {
        out.push("-v".into());
    }
    out
}
