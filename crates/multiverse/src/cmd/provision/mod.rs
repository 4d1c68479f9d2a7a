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
use mv_identity::Root;
use mv_machines::{Topology, Tree};
use mv_provision::remote::{HostKeyCheck, Route, Session};
use mv_provision::{
    spec_for, AdaptError, ApplyError, Contents, Desired, Engine, Plan, RenderError, RootIdentity,
    SystemRunner, Target,
};
use std::path::Path;

pub use mv_provision::SeedOutcome;

mod args;
mod print;
mod seed;

pub use args::{Command, MachineArgs, SeedArgs, TargetArgs};
pub use seed::ensure_seed;

use print::{print_change, warn};
use seed::{apply_disk, apply_seed};

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
    crate::unsealed::unseal_tree_hinted(g, pass.passphrase_file.as_deref())
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
pub(super) fn desired_and_root(
    g: &Global,
    args: &MachineArgs,
) -> Result<(Desired, Root), CliError> {
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

/// The target: a mounted root, or the running machine over SSH (with its session, whose
/// private folder holds the key, known_hosts and the shadow copy, removed on drop).
fn target_of(
    g: &Global,
    a: &TargetArgs,
) -> Result<(Desired, Target, String, Option<Session>), CliError> {
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
    let route = Route::Direct {
        host: host.clone(),
        port: a.port,
    };
    let session = Session::new(&root, &person, &name, &route.known_hosts_pattern())?;
    let check = if a.first_contact {
        HostKeyCheck::AcceptNew
    } else {
        HostKeyCheck::Strict
    };
    let t = session.target(&route, check, d.os);
    Ok((d, t, format!("root@{host}"), Some(session)))
}

pub(super) fn open_target(d: &Desired, dir: &Path) -> Result<Target, CliError> {
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

fn plan(g: &Global, a: &TargetArgs, diffs: bool) -> Result<(), CliError> {
    let (d, target, shown, _scratch) = target_of(g, a)?;
    target
        .refresh(&d, &SystemRunner)
        .map_err(apply_error)
        .hint("check that the machine is up and reachable over SSH as root")?;
    let mut p: Plan = mv_provision::plan(&d, &target).map_err(apply_error)?;
    p.target = shown.clone();
    if g.json {
        crate::global::print_json(&p)?;
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
        crate::global::print_json(&done)?;
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

fn check(g: &Global, a: &MachineArgs) -> Result<(), CliError> {
    let d = desired(g, a)?;
    // Not a 0700 folder: the checkers run as other users (tor as its own) and read from it.
    let scratch = std::env::temp_dir().join(format!("multiverse-check.{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = mv_provision::check_all(&d, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let checked = result
        .usage()
        .hint("the rendered file is refused by its own tool: fix the template or the option")?;
    if g.json {
        let v: Vec<_> = checked
            .iter()
            .map(|c| serde_json::json!({"path": c.path, "tool": c.tool, "ok": true}))
            .collect();
        crate::global::print_json(&serde_json::json!({"machine": d.machine, "checked": v}))?;
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
