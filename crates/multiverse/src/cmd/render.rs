//! `multiverse render`: turns multiverse.toml into every libvirt definition and machine file of
//! the tree (`mv_machines::render_tree`). Also holds the helpers the `init` and `machine` commands share
//! for loading the config and printing a render report.

use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_machines::{render_tree, Change, ConfigError, RenderError, RenderReport, Topology, Tree};
use std::path::Path;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the command.
pub fn run(g: &Global, _a: Args) -> Result<(), CliError> {
    let (tree, topology) = load(g)?;
    let report = render_into(&tree, &topology, g.dry_run)?;
    print_report(g, &tree, &report)
}

/// Loads and validates `<root>/multiverse.toml`. Bad contents are exit 2; a missing file gets a hint.
pub fn load(g: &Global) -> Result<(Tree, Topology), CliError> {
    let tree = Tree::new(&g.root);
    let topology = Topology::load(&tree.config_file()).map_err(config_error)?;
    Ok((tree, topology))
}

/// Maps a config error: invalid contents are the person's input (exit 2), an unreadable file a
/// failure with a hint.
pub fn config_error(e: ConfigError) -> CliError {
    match e {
        ConfigError::Invalid { .. } => CliError::usage_msg(e),
        ConfigError::Read { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            CliError::from(e).with_hint("run `multiverse init` first, or pass --root DIR")
        }
        ConfigError::Read { .. } => CliError::from(e),
    }
}

/// Renders with CLI error mapping: a template error is bad input (exit 2) and is printed as the
/// template's `FILE:LINE: ...` first, since that is what the person must fix.
pub fn render_into(
    tree: &Tree,
    topology: &Topology,
    dry_run: bool,
) -> Result<RenderReport, CliError> {
    // MULTIVERSE_ACCEL=kvm|tcg overrides `[host] accel` for this rendering (tests, lab hosts).
    let overridden;
    let topology = match mv_machines::Accel::from_env().map_err(CliError::usage_msg)? {
        Some(accel) if accel != topology.host.accel => {
            let mut t = topology.clone();
            t.host.accel = accel;
            overridden = t;
            &overridden
        }
        _ => topology,
    };
    match render_tree(tree, topology, dry_run) {
        Ok(r) => Ok(r),
        Err(RenderError::Template { target, source }) => Err(CliError::usage_msg(format!(
            "{source} (rendering {})",
            rel(tree.root(), &target)
        ))
        .with_hint("fix the template under templates/ or remove it to use the built-in one")),
        // Usage (its Classify); the hint comes from `error::library_hint`.
        Err(e @ RenderError::StorageOccupied { .. }) => Err(CliError::from(e)),
        Err(e) => Err(e).hint("check that --root is writable"),
    }
}

/// `path` relative to `root` when it is inside it.
pub fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Prints what rendering did (or would do): one line per created or changed path, then a summary.
pub fn print_report(g: &Global, tree: &Tree, r: &RenderReport) -> Result<(), CliError> {
    if g.json {
        let entries: Vec<_> = r
            .entries
            .iter()
            .map(|(p, c)| serde_json::json!({ "path": rel(tree.root(), p), "change": c }))
            .collect();
        let stale: Vec<_> = r.stale.iter().map(|p| rel(tree.root(), p)).collect();
        let v = serde_json::json!({
            "dry_run": r.dry_run,
            "nothing_changed": r.nothing_changed(),
            "files": entries,
            "stale": stale,
        });
        crate::global::print_json(&v)?;
        return Ok(());
    }
    let verb = |c: Change| match (c, r.dry_run) {
        (Change::Created, false) => "created",
        (Change::Changed, false) => "changed",
        (Change::Created, true) => "would create",
        (Change::Changed, true) => "would change",
        (Change::Unchanged, _) => "unchanged",
    };
    for (p, c) in &r.entries {
        if *c != Change::Unchanged || g.verbose > 0 {
            g.say(format!("{} {}", verb(*c), rel(tree.root(), p)));
        }
    }
    for s in &r.stale {
        g.say(format!(
            "note: {} has no machine in multiverse.toml (left in place: it may hold or point to a disk)",
            rel(tree.root(), s)
        ));
    }
    let n = r.entries.len();
    if r.nothing_changed() {
        g.say(format!("nothing changed ({n} files up to date)"));
    } else {
        let created = r.created().count();
        let changed = r.changed().count();
        let what = if r.dry_run {
            "dry run: would write"
        } else {
            "wrote"
        };
        g.say(format!(
            "{what} {} of {n} files ({created} new, {changed} changed)",
            created + changed
        ));
    }
    Ok(())
}
