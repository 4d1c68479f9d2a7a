//! `provision apply FQDN --disk` (the machine's seed disk) and `provision apply-seed` (its guest
//! side); [`ensure_seed`] for `up` and `identity rotate`.

use super::print::{print_change, warn};
use super::{apply_error, desired_and_root, open_target, SeedArgs, TargetArgs};
use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_core::MachineName;
use mv_machines::Tree;
use mv_provision::{read_seed_dir, Desired, SeedDiskError, SeedError, SeedOutcome, SystemRunner};
use std::path::PathBuf;

/// Makes sure `machines/<fqdn>/seed.img` holds `d` (`mv_provision::ensure_seed`),
/// with the `multiverse` binary the guest runs to apply it: `MULTIVERSE_SEED_BIN`, else the
/// `multiverse` beside this executable (this build).
pub fn ensure_seed(tree: &Tree, d: &Desired, dry_run: bool) -> Result<SeedOutcome, CliError> {
    let applier = match std::env::var_os("MULTIVERSE_SEED_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("multiverse"))
            .unwrap_or_else(|| PathBuf::from("multiverse")),
    };
    mv_provision::ensure_seed(tree, d, &applier, dry_run).map_err(|e| {
        let writing = e.while_writing();
        let c = match e {
            SeedDiskError::Seed(e) => seed_error(e),
            SeedDiskError::NoApplier(_) => CliError::from(e).with_hint(
                "install multiverse beside multiverse-virt, or set MULTIVERSE_SEED_BIN=PATH",
            ),
            SeedDiskError::Name(_) => CliError {
                kind: crate::error::Kind::Usage,
                ..CliError::from(e)
            },
            e => CliError::from(e),
        };
        if !writing {
            return c;
        }
        let dir = MachineName::parse(&d.machine).map(|n| tree.machine_dir(&n));
        let dir = dir.map(|p| p.display().to_string()).unwrap_or_default();
        // Nothing half-made (see seed_disk); a full filesystem gets its own hint.
        let full = format!("{:#}", c.error).contains("No space left");
        let c = CliError {
            error: c.error.context(format!(
                "cannot write the seed disk of {} in {dir}",
                d.machine
            )),
            ..c
        };
        if full {
            c.with_hint(&format!(
                "the filesystem of {dir} is full: free some space (df -h {dir}) and run again"
            ))
        } else {
            c
        }
    })
}

fn seed_error(e: SeedError) -> CliError {
    match e {
        SeedError::Malformed { .. } | SeedError::Mismatch { .. } => {
            CliError::usage_msg(format!("{:#}", anyhow::Error::new(e)))
                .with_hint("the seed is corrupt or from another version: make it again with `multiverse provision apply FQDN --disk` on the host")
        }
        other => CliError::failure_msg(format!("{:#}", anyhow::Error::new(other))),
    }
}

/// `provision apply FQDN --disk`.
pub(super) fn apply_disk(g: &Global, a: &TargetArgs) -> Result<(), CliError> {
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
pub(super) fn apply_seed(g: &Global, a: &SeedArgs) -> Result<(), CliError> {
    let (d, id) = read_seed_dir(&a.seed).map_err(seed_error)?;
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
