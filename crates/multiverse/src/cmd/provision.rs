//! `multiverse provision`: declarative provisioning of a machine (replaces `provision.sh`).
//!
//! - `plan FQDN --target DIR`: what would change on the root filesystem at DIR, with diffs.
//! - `apply FQDN --target DIR`: make it so; a second run prints "no changes". `--dry-run` = plan.
//!   What a previous apply made and the machine no longer wants is removed (plan lines `-`);
//!   what is left in place instead (edited by hand) is a `warning:` line on stderr.
//! - `plan|apply FQDN --ssh [root@]HOST`: the same on the running machine, logged in with the
//!   identity's `@user` key and the machine's host key pinned to the identity's (known_hosts
//!   written from the identity; `--first-contact` accepts a not-yet-provisioned machine's key).
//! - `check FQDN`: render the machine's configuration and run each file through its own tool.
//! - `render FQDN`: write the machine's rendered public files under `machines/<fqdn>/provision/`.
//!
//! The work is `mv_provision`'s; this module loads the topology and the identity, maps errors to
//! exit codes (bad names, configs, templates and targets: 2; failed installs: 1) and prints.
//! The identity is unsealed with the passphrase from `--passphrase-file`, `MULTIVERSE_PASSPHRASE`
//! or a prompt; passwords and private keys never reach stdout, logs or argv.

use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_core::{IdentityName, MachineName};
use mv_identity::{Root, StoreError};
use mv_machines::{Topology, Tree};
use mv_provision::adapt::{spec_for, AdaptError, RootIdentity};
use mv_provision::render::Contents;
use mv_provision::seed::{self, SeedId};
use mv_provision::{ApplyError, Change, Desired, Engine, Plan, RenderError, SystemRunner, Target};
use std::path::{Path, PathBuf};

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
    pub pass: super::identity::PassArgs,
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

/// Runs the command.
pub fn run(g: &Global, c: Command) -> Result<(), CliError> {
    match c {
        Command::Plan(a) => plan(g, &a, true),
        Command::Apply(a) if g.dry_run => plan(g, &a, false),
        Command::Apply(a) if a.disk => apply_disk(g, &a),
        Command::Apply(a) => apply(g, &a),
        Command::ApplySeed(a) => apply_seed(g, &a),
        Command::Check(a) => check(g, &a),
        Command::Render(a) => render_files(g, &a),
    }
}

/// Unseals the tree's identity (the passphrase from `pass`, the environment or a prompt).
pub fn unseal(g: &Global, pass: &super::identity::PassArgs) -> Result<Root, CliError> {
    let hint = |e: StoreError| match &e {
        StoreError::Missing(_) => CliError::from(e).with_hint(
            "create one with `multiverse identity new` or `multiverse identity restore`",
        ),
        _ if e.is_authentication() => {
            let mut c = CliError::from(e).with_hint("check the passphrase");
            c.kind = crate::error::Kind::Usage;
            c
        }
        _ => CliError::from(e),
    };
    crate::unsealed::unseal_tree(g, pass.passphrase_file.as_deref(), hint)
}

fn render_error(e: RenderError) -> CliError {
    let hint = match &e {
        RenderError::Template { .. } => {
            "fix the template (or your override under <root>/templates/provision/)"
        }
        RenderError::MissingOption { .. } => "add the option to multiverse.toml",
        _ => "",
    };
    let c = CliError::usage_msg(format!("{:#}", anyhow::Error::new(e)));
    if hint.is_empty() {
        c
    } else {
        c.with_hint(hint)
    }
}

/// Loads the topology and identity and renders `args.machine`.
fn desired(g: &Global, args: &MachineArgs) -> Result<Desired, CliError> {
    desired_and_root(g, args).map(|(d, _)| d)
}

/// [`desired`], also returning the unsealed root (for the SSH login key).
fn desired_and_root(g: &Global, args: &MachineArgs) -> Result<(Desired, Root), CliError> {
    let name = MachineName::parse(&args.machine)
        .usage()
        .hint("machine names are lower-case FQDNs like star.router.multiverse")?;
    let person = IdentityName::parse(&args.person).usage()?;
    let tree = Tree::new(&g.root);
    let topology = Topology::load(&tree.config_file()).map_err(super::render::config_error)?;
    // An unknown machine or missing option is reported before asking for the passphrase.
    spec_of(g, &topology, &name)?;
    let root = unseal(g, &args.pass)?;
    let d = render_machine(g, &topology, &name, &root, &person)?;
    Ok((d, root))
}

fn spec_of(
    g: &Global,
    topology: &Topology,
    name: &MachineName,
) -> Result<mv_provision::MachineSpec, CliError> {
    spec_for(topology, name, &g.root).map_err(|e| match e {
        AdaptError::Unknown(_) => CliError::usage_msg(e)
            .with_hint("`multiverse machine list` shows the machines of multiverse.toml"),
        AdaptError::Vpn { .. } => CliError::usage_msg(e)
            .with_hint("the galaxy router needs its VPN provider's settings in that file"),
    })
}

/// The desired state of machine `name` of `topology`, from an unsealed identity.
pub fn render_machine(
    g: &Global,
    topology: &Topology,
    name: &MachineName,
    root: &Root,
    person: &IdentityName,
) -> Result<Desired, CliError> {
    let tree = Tree::new(&g.root);
    let spec = spec_of(g, topology, name)?;
    let engine = Engine::with_overrides(&tree.templates_dir().join("provision"));
    let identity = RootIdentity::new(root, person.clone());
    mv_provision::render(&spec, &engine, &identity).map_err(render_error)
}

/// The target: a mounted root, or the running machine over SSH (with its scratch folder).
fn target_of(
    g: &Global,
    a: &TargetArgs,
) -> Result<(Desired, Target, String, Option<super::ssh::Login>), CliError> {
    let (d, root) = desired_and_root(g, &a.machine)?;
    if let Some(dir) = &a.target {
        let t = open_target(&d, dir)?;
        return Ok((d, t, dir.display().to_string(), None));
    }
    let dest = a.ssh.clone().unwrap_or_default();
    let host = match dest.split_once('@') {
        None => dest.clone(),
        Some(("root", h)) => h.to_string(),
        Some((user, _)) => {
            return Err(CliError::usage_msg(format!(
                "--ssh {dest}: provisioning logs in as root, not {user}"
            ))
            .with_hint("use --ssh root@HOST or just HOST"))
        }
    };
    if host.is_empty() || host.starts_with('-') {
        return Err(CliError::usage_msg(format!(
            "--ssh {dest}: not a host name"
        )));
    }
    let name = MachineName::parse(&d.machine).usage()?;
    let person = IdentityName::parse(&a.machine.person).usage()?;
    let pattern = if a.port == 22 {
        host.clone()
    } else {
        format!("[{host}]:{}", a.port)
    };
    // The SSH key, known_hosts and the shadow copy: a fresh private folder, removed on drop.
    let login = super::ssh::Login::new(&root, &person, &name, &pattern)?;
    let mut ssh = vec!["ssh".to_string()];
    ssh.extend(login.options(!a.first_contact));
    ssh.extend(["-p".to_string(), a.port.to_string(), format!("root@{host}")]);
    let t = Target::over_ssh(ssh, &login.dir().join("shadow"), d.os);
    let shown = format!("root@{host}");
    Ok((d, t, shown, Some(login)))
}

/// The running machine `d` over its virtio-serial SSH channel, logged in as root with `login`
/// (whose known_hosts decides which host key is accepted).
pub fn channel_target(
    g: &Global,
    d: &Desired,
    login: &super::ssh::Login,
) -> Result<Target, CliError> {
    let name = MachineName::parse(&d.machine).usage()?;
    let mut ssh = vec!["ssh".to_string()];
    ssh.extend(login.options(true));
    ssh.extend([
        // A guest whose sshd never answers (the relay is there, sshd is not) ends in minutes, not
        // never; under TCG, on a host busy with other guests, a first answer took over a minute.
        "-o".to_string(),
        "ConnectTimeout=180".to_string(),
        "-o".to_string(),
        format!("ProxyCommand={}", super::ssh::channel_proxy(g, &name)?),
        "-l".to_string(),
        "root".to_string(),
        name.as_str().to_string(),
    ]);
    Ok(Target::over_ssh(ssh, &login.dir().join("shadow"), d.os))
}

fn open_target(d: &Desired, dir: &Path) -> Result<Target, CliError> {
    Target::open(dir, d.os).usage().hint(
        "--target is the machine's root filesystem, mounted (e.g. /mnt/star), of the OS in multiverse.toml",
    )
}

pub fn apply_error(e: ApplyError) -> CliError {
    match e {
        ApplyError::Packages { .. } => CliError::from(e).with_hint(
            "check the package names (recipe or extra packages); nothing was changed on the target",
        ),
        ApplyError::UnknownOwner { .. } | ApplyError::ServiceMissing { .. } => CliError::from(e),
        ApplyError::State { .. } => CliError {
            kind: crate::error::Kind::Usage,
            ..CliError::from(e)
        }
        .with_hint(
            "nothing was changed; delete that file to adopt the machine as it is (nothing it listed will be removed), then apply again",
        ),
        other => CliError::from(other),
    }
}

fn print_change(c: &Change, with_diff: bool) {
    let mark = match c {
        Change::Packages { .. } | Change::Service { .. } | Change::ServiceAfterInstall { .. } => {
            "+"
        }
        Change::Dir { create: true, .. } => "+",
        Change::File { action, .. } if action == "create" => "+",
        Change::State { create: true, .. } => "+",
        Change::Disable { .. }
        | Change::Stop { .. }
        | Change::Remove { .. }
        | Change::RemoveDir { .. } => "-",
        Change::Kept { .. } => "!",
        Change::Reload { .. } => "~",
        _ => "~",
    };
    println!("  {mark} {}", c.summary());
    if let Change::Packages { command, .. } | Change::Reload { command, .. } = c {
        println!("      runs: {}", command.join(" "));
    }
    if with_diff {
        if let Change::File {
            diff: Some(d),
            action,
            ..
        } = c
        {
            if action != "create" {
                for line in d.lines() {
                    println!("      {line}");
                }
            }
        }
    }
}

fn plan(g: &Global, a: &TargetArgs, diffs: bool) -> Result<(), CliError> {
    let (d, target, shown, _scratch) = target_of(g, a)?;
    target
        .refresh(&d, &SystemRunner)
        .map_err(apply_error)
        .hint("check that the machine is up and reachable over SSH as root")?;
    let mut p: Plan = mv_provision::plan(&d, &target).map_err(apply_error)?;
    p.target = shown.clone();
    if g.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
        return Ok(());
    }
    if p.is_empty() {
        g.say(format!("{} on {shown}: no changes", p.machine));
        return Ok(());
    }
    println!(
        "{} ({}) on {shown}: {} change{}",
        p.machine,
        p.os,
        p.changes.len(),
        if p.changes.len() == 1 { "" } else { "s" }
    );
    for c in &p.changes {
        print_change(c, diffs || a.diff);
    }
    if g.dry_run {
        g.say("dry run: nothing was changed");
    }
    Ok(())
}

fn apply(g: &Global, a: &TargetArgs) -> Result<(), CliError> {
    let (d, target, shown, _scratch) = target_of(g, a)?;
    let done = mv_provision::apply(&d, &target, &SystemRunner).map_err(apply_error)?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
        return Ok(());
    }
    if done.changes.is_empty() {
        g.say(format!("{} on {shown}: no changes", d.machine));
        return Ok(());
    }
    let n = done.changes.iter().filter(|c| !c.is_warning()).count();
    g.say(format!(
        "{} on {shown}: {n} change{} applied",
        d.machine,
        if n == 1 { "" } else { "s" }
    ));
    if !g.quiet {
        for c in done.changes.iter().filter(|c| !c.is_warning()) {
            print_change(c, a.diff);
        }
    }
    warn(&done.changes);
    Ok(())
}

/// The warnings of an apply (something left in place), on stderr even with `--quiet`.
fn warn(changes: &[Change]) {
    for c in changes.iter().filter(|c| c.is_warning()) {
        eprintln!("warning: {}", c.summary());
    }
}

fn check(g: &Global, a: &MachineArgs) -> Result<(), CliError> {
    let d = desired(g, a)?;
    let scratch = std::env::temp_dir().join(format!("multiverse-check.{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = mv_provision::check::check_all(&d, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let checked = result
        .usage()
        .hint("the rendered file is refused by its own tool: fix the template or the option")?;
    if g.json {
        let v: Vec<_> = checked
            .iter()
            .map(|c| serde_json::json!({"path": c.path, "tool": c.tool, "ok": true}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"machine": d.machine, "checked": v}))?
        );
        return Ok(());
    }
    for c in &checked {
        g.say(format!("ok  {:<10} {}", c.tool, c.path));
    }
    if checked.is_empty() {
        g.say(format!(
            "{}: no file of this machine has a checker",
            d.machine
        ));
    }
    Ok(())
}

/// Writes the rendered public files (secrets stay out of the tree) to
/// `machines/<fqdn>/provision/files/`, so they can be reviewed and kept in git.
fn render_files(g: &Global, a: &MachineArgs) -> Result<(), CliError> {
    let d = desired(g, a)?;
    let name = MachineName::parse(&d.machine).usage()?;
    let dir = Tree::new(&g.root).provision_dir(&name).join("files");
    let mut changed = 0;
    for f in &d.files {
        let Contents::Public(text) = &f.contents else {
            continue;
        };
        let path = dir.join(f.path.trim_start_matches('/'));
        if g.dry_run {
            let same = std::fs::read(&path).is_ok_and(|b| b == text.as_bytes());
            if !same {
                g.say(format!("would write {}", path.display()));
                changed += 1;
            }
            continue;
        }
        if mv_core::fsutil::write_public(&path, text.as_bytes())? {
            g.say(format!("wrote {}", path.display()));
            changed += 1;
        }
    }
    if changed == 0 {
        g.say(format!("{}: no changes", dir.display()));
    }
    Ok(())
}

/// What [`ensure_seed`] did.
pub enum SeedOutcome {
    /// A new seed disk was written (first time, or the desired state changed).
    Written(SeedId),
    /// The seed disk on file already holds this desired state.
    Unchanged(SeedId),
}

/// Makes sure `machines/<fqdn>/seed.img` holds `d`: the seed folder (desired state, blobs), the
/// `multiverse` binary that applies it, packed into a small ext4 disk (0600, renamed into place).
/// The seed-id on file decides whether anything is written, so a second `up` rewrites nothing
/// and the guest provisions nothing again.
pub fn ensure_seed(tree: &Tree, d: &Desired, dry_run: bool) -> Result<SeedOutcome, CliError> {
    let name = MachineName::parse(&d.machine).usage()?;
    let id = seed::seed_id(d);
    let disk = tree.seed_disk(&name);
    let recorded = std::fs::read_to_string(tree.seed_id(&name)).unwrap_or_default();
    if disk.is_file() && recorded.trim() == id.0 {
        return Ok(SeedOutcome::Unchanged(id));
    }
    if dry_run {
        return Ok(SeedOutcome::Written(id));
    }
    let dir = tree.machine_dir(&name);
    std::fs::create_dir_all(&dir)?;
    // A private scratch folder beside the disk (0700, unpredictable name), removed on drop.
    let scratch = tempfile::Builder::new()
        .prefix(".seed.")
        .tempdir_in(&dir)
        .map_err(|e| {
            CliError::failure_msg(format!(
                "cannot make a scratch folder in {}: {e}",
                dir.display()
            ))
        })?;
    let folder = scratch.path().join("seed");
    let write = || -> Result<seed::SeedId, CliError> {
        let written = seed::write_dir(d, &folder).map_err(seed_error)?;
        copy_applier(&folder.join("multiverse"))?;
        seed::make_disk(&folder, &disk).map_err(seed_error)?;
        mv_core::fsutil::write_public(&tree.seed_id(&name), format!("{written}\n").as_bytes())?;
        Ok(written)
    };
    match write() {
        Ok(written) => Ok(SeedOutcome::Written(written)),
        Err(e) => {
            // Nothing half-made: the disk is written to a temp file and renamed (make_disk), the
            // id after it, and the scratch folder goes on drop.
            let full = format!("{:#}", e.error).contains("No space left");
            let e = CliError {
                error: e.error.context(format!(
                    "cannot write the seed disk of {name} in {}",
                    dir.display()
                )),
                ..e
            };
            Err(if full {
                e.with_hint(&format!(
                    "the filesystem of {} is full: free some space (df -h {}) and run again",
                    dir.display(),
                    dir.display()
                ))
            } else {
                e
            })
        }
    }
}

/// The `multiverse` binary the guest runs to apply its seed: `MULTIVERSE_SEED_BIN`, else the
/// `multiverse` beside this executable (this build), stripped of debug info to keep seeds small.
fn copy_applier(dest: &Path) -> Result<(), CliError> {
    let src = match std::env::var_os("MULTIVERSE_SEED_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("multiverse"))
            .unwrap_or_else(|| PathBuf::from("multiverse")),
    };
    if !src.is_file() {
        return Err(CliError::failure_msg(format!(
            "cannot find the multiverse binary to put on the seed disk at {}",
            src.display()
        ))
        .with_hint("install multiverse beside multiverse-virt, or set MULTIVERSE_SEED_BIN=PATH"));
    }
    // strip's own complaints are not shown: a failed strip falls back to a plain copy, whose
    // error (if any) is the one reported.
    let stripped = std::process::Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(dest)
        .arg(&src)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let io = |what: &str, e: std::io::Error| {
        CliError::from(anyhow::Error::new(e).context(format!("{what} {}", dest.display())))
    };
    if !stripped {
        std::fs::copy(&src, dest).map_err(|e| io("cannot copy the multiverse binary to", e))?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io("cannot set the mode of", e))?;
    Ok(())
}

fn seed_error(e: seed::SeedError) -> CliError {
    match e {
        seed::SeedError::Malformed { .. } | seed::SeedError::Mismatch { .. } => {
            CliError::usage_msg(format!("{:#}", anyhow::Error::new(e)))
                .with_hint("the seed is corrupt or from another version: make it again with `multiverse provision apply FQDN --disk` on the host")
        }
        other => CliError::failure_msg(format!("{:#}", anyhow::Error::new(other))),
    }
}

/// `provision apply FQDN --disk`.
fn apply_disk(g: &Global, a: &TargetArgs) -> Result<(), CliError> {
    let (d, _root) = desired_and_root(g, &a.machine)?;
    let tree = Tree::new(&g.root);
    let name = MachineName::parse(&d.machine).usage()?;
    let disk = tree.seed_disk(&name);
    let prefix = if g.dry_run { "would write" } else { "wrote" };
    match ensure_seed(&tree, &d, g.dry_run)? {
        SeedOutcome::Written(id) => g.say(format!(
            "{}: {prefix} {} (seed {}); the machine applies it at its next boot",
            d.machine,
            disk.display(),
            &id.0[..12]
        )),
        SeedOutcome::Unchanged(id) => g.say(format!(
            "{}: no changes ({} already holds seed {})",
            d.machine,
            disk.display(),
            &id.0[..12]
        )),
    }
    Ok(())
}

/// `provision apply-seed --seed DIR --target ROOT`: the guest side of `--disk`.
fn apply_seed(g: &Global, a: &SeedArgs) -> Result<(), CliError> {
    let (d, id) = seed::read_dir(&a.seed).map_err(seed_error)?;
    let target = open_target(&d, &a.target)?;
    let shown = a.target.display().to_string();
    if g.dry_run {
        let plan = mv_provision::plan(&d, &target).map_err(apply_error)?;
        g.say(format!(
            "{} on {shown}: seed {} would make {} change(s)",
            d.machine,
            &id.0[..12],
            plan.changes.len()
        ));
        return Ok(());
    }
    let done = mv_provision::apply(&d, &target, &SystemRunner).map_err(apply_error)?;
    g.say(format!(
        "{} on {shown}: seed {} applied, {} change(s)",
        d.machine,
        &id.0[..12],
        done.changes.len()
    ));
    if !g.quiet {
        for c in done.changes.iter().filter(|c| !c.is_warning()) {
            print_change(c, false);
        }
    }
    warn(&done.changes);
    Ok(())
}
