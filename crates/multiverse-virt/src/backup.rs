//! `multiverse backup|restore`: the host's libvirt definitions filed into the tree, and defined
//! back from it, through `mv-libvirt`.

use crate::common::{connect, topology_opt, uri};
use multiverse::cli::virt::{BackupArgs, RestoreArgs};
use multiverse::error::CliError;
use multiverse::global::Global;
use mv_core::{Classify, ErrorClass};
use mv_libvirt::{FileChange, ObjectKind, Ownership, RestoreChange, RestoreError};
use mv_machines::{Topology, Tree};

fn ownership(tree: &Tree, topo: Option<&Topology>) -> Ownership {
    let mut own = Ownership::default();
    own.others
        .insert((ObjectKind::Pool, mv_core::layout::POOL_NAME.to_string()));
    if let Some(t) = topo {
        for m in t.vms() {
            own.machines.insert(m.name.as_str().to_string());
            // An encrypted machine's disk secret is ours too (metadata only: no value).
            if let Some(uuid) = mv_machines::luks_secret_uuid(m) {
                own.others.insert((ObjectKind::Secret, uuid));
            }
        }
        for n in &t.networks {
            own.others.insert((ObjectKind::Network, n.name.clone()));
        }
    }
    // Machine folders count too: a tree without multiverse.toml (a bare backup) still knows them.
    own.add_machine_folders(&tree.machines_dir());
    own
}

/// `multiverse backup`.
pub fn backup(g: &Global, a: BackupArgs) -> Result<(), CliError> {
    let tree = Tree::new(&g.root);
    let topo = topology_opt(&tree)?;
    let own = ownership(&tree, topo.as_ref());
    let out = a.out.clone().unwrap_or_else(|| g.root.clone());
    let conn = connect(&uri(&a.conn, topo.as_ref()))?;
    let report = mv_libvirt::backup(&conn, &out, &own, g.dry_run).map_err(CliError::from)?;
    if g.json {
        multiverse::global::print_json(&report)?;
        return Ok(());
    }
    let prefix = if g.dry_run { "would be " } else { "" };
    for f in &report.files {
        let word = match f.change {
            FileChange::Written => "written",
            FileChange::Removed => "removed",
            FileChange::Unchanged if g.verbose > 0 => "unchanged",
            FileChange::Unchanged => continue,
        };
        g.say(format!("{prefix}{word:<9} {}", f.path.display()));
    }
    let objects = report.files.iter().filter(|f| f.kind.is_some()).count();
    if report.changed() == 0 {
        g.say(format!(
            "nothing changed: {objects} object(s) already backed up in {}",
            out.display()
        ));
    } else {
        g.say(format!(
            "{objects} object(s) backed up in {}, {} file(s) {prefix}changed",
            out.display(),
            report.changed()
        ));
    }
    Ok(())
}

fn restore_error(e: RestoreError) -> CliError {
    let hint = match &e {
        _ if e.class() == ErrorClass::Usage => {
            Some("restore reads what `multiverse backup` writes (machines/*/libvirt/, backups/)")
        }
        RestoreError::Collision(_) => {
            Some("the host has a different object of that name: undefine or rename it first")
        }
        RestoreError::Apply { .. } => {
            Some("nothing was left half-restored; fix the file and run restore again")
        }
        _ => None,
    };
    let err = CliError::from(e);
    match hint {
        Some(h) => err.with_hint(h),
        None => err,
    }
}

/// `multiverse restore`.
pub fn restore(g: &Global, a: RestoreArgs) -> Result<(), CliError> {
    let tree = Tree::new(&g.root);
    let from = a.from.clone().unwrap_or_else(|| g.root.clone());
    let topo = if a.from.is_some() {
        None
    } else {
        topology_opt(&tree)?
    };
    let entries = mv_libvirt::restore_scan(&from).map_err(restore_error)?;
    let conn = connect(&uri(&a.conn, topo.as_ref()))?;
    let steps = mv_libvirt::restore_plan(&conn, entries).map_err(restore_error)?;
    let prefix = if g.dry_run { "would " } else { "" };
    if !g.json {
        for s in &steps {
            let e = &s.entry;
            match &s.change {
                RestoreChange::Create => g.say(format!("{prefix}define   {} {}", e.kind, e.name)),
                RestoreChange::Update { diff } => {
                    g.say(format!("{prefix}redefine {} {}", e.kind, e.name));
                    g.say(diff.trim_end());
                }
                RestoreChange::Unchanged if g.verbose > 0 => {
                    g.say(format!("unchanged {} {}", e.kind, e.name))
                }
                RestoreChange::Unchanged => {}
            }
        }
    }
    let (creates, updates) = steps.iter().fold((0, 0), |(c, u), s| match s.change {
        RestoreChange::Create => (c + 1, u),
        RestoreChange::Update { .. } => (c, u + 1),
        RestoreChange::Unchanged => (c, u),
    });
    if g.dry_run {
        if g.json {
            let plan: Vec<_> = steps
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "kind": s.entry.kind,
                        "name": s.entry.name,
                        "file": s.entry.path,
                        "change": match &s.change {
                            RestoreChange::Create => "create",
                            RestoreChange::Update { .. } => "update",
                            RestoreChange::Unchanged => "unchanged",
                        },
                    })
                })
                .collect();
            multiverse::global::print_json(&plan)?;
        } else {
            g.say(format!(
                "dry run: {creates} to define, {updates} to redefine, {} unchanged",
                steps.len() - creates - updates
            ));
        }
        return Ok(());
    }
    let done = mv_libvirt::restore_apply(&conn, &steps).map_err(restore_error)?;
    if g.json {
        let j = serde_json::json!({
            "created": done.created.iter().map(|(k, n)| serde_json::json!({"kind": k, "name": n})).collect::<Vec<_>>(),
            "updated": done.updated.iter().map(|(k, n)| serde_json::json!({"kind": k, "name": n})).collect::<Vec<_>>(),
            "unchanged": done.unchanged,
        });
        multiverse::global::print_json(&j)?;
    } else if done.created.is_empty() && done.updated.is_empty() {
        g.say(format!(
            "nothing to restore: all {} object(s) already defined as in {}",
            done.unchanged,
            from.display()
        ));
    } else {
        g.say(format!(
            "restored from {}: {} defined, {} redefined, {} unchanged",
            from.display(),
            done.created.len(),
            done.updated.len(),
            done.unchanged
        ));
    }
    Ok(())
}
