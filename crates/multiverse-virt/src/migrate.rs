//! `multiverse migrate`: moves an old Multiverse tree (`Data/`, `Machines/*.qcow2`, mixed case) to
//! the current layout, through `mv-migrate`.
//!
//! This module only decides which library call to make from the saved state (none, in progress,
//! complete, half undone), prints the plan and the outcome, and maps errors to exit codes: bad
//! paths are usage errors (2); a failed step is a failure (1) whose hint says that running the
//! same command again resumes from the journal.

use multiverse::cli::virt::MigrateArgs;
use multiverse::error::{CliError, Hinted};
use multiverse::global::Global;
use mv_migrate::{ApplyError, CopyProgress, Hypervisor, Libvirt, Migration, PlanError, State};

const RESUME_HINT: &str =
    "fix the cause and run the same command again: the journal resumes where it stopped";

/// `multiverse migrate`.
pub fn run(g: &Global, a: MigrateArgs) -> Result<(), CliError> {
    let to = a.to.clone().unwrap_or_else(|| g.root.clone());
    let mut mig = Migration::at(&to);
    if !g.quiet && !g.json {
        mig.on_progress(progress_bar());
    }
    let lv =
        if a.no_libvirt {
            None
        } else {
            Some(Libvirt::open(&a.connect).map_err(CliError::from).hint(
                "is libvirtd running? Use --connect URI, or --no-libvirt to move files only",
            )?)
        };
    let hv = lv.as_ref().map(|l| l as &dyn Hypervisor);
    if a.undo {
        return undo(g, &mig, hv);
    }
    let from = a
        .from
        .clone()
        .ok_or_else(|| CliError::usage_msg("--from OLD_DIR is required"))?;
    match mig.state().map_err(CliError::from).hint(RESUME_HINT)? {
        State::Complete { plan } => {
            report(
                g,
                "already migrated; nothing to do (`multiverse migrate --undo` restores the old tree)",
                &plan,
                None,
            );
            Ok(())
        }
        State::Undoing { .. } => Err(CliError::usage_msg(format!(
            "an undo of the migration into {} is half done",
            to.display()
        ))
        .with_hint("finish it with `multiverse migrate --undo`")),
        State::InProgress { plan, progress } => {
            let same = std::fs::canonicalize(&from).ok().as_ref() == Some(&plan.from);
            if !same {
                return Err(CliError::usage_msg(format!(
                    "a migration from {} into {} is in progress, not from {}",
                    plan.from.display(),
                    plan.to.display(),
                    from.display()
                ))
                .with_hint("finish it first (same --from), or --undo it"));
            }
            if g.dry_run {
                let remaining = plan.ops.len() - progress.done.len();
                report(
                    g,
                    &format!("dry run: an interrupted migration has {remaining} steps left; nothing changed"),
                    &plan,
                    None,
                );
                return Ok(());
            }
            let outcome = mig.run(hv).map_err(apply_error)?;
            report(
                g,
                &format!(
                    "resumed: {} steps done now, {} were already done",
                    outcome.executed, outcome.already_done
                ),
                &plan,
                Some(outcome),
            );
            Ok(())
        }
        State::None => {
            if !g.dry_run {
                // What a run killed before saving its plan left behind goes first.
                mig.clear_leftover().map_err(apply_error)?;
            }
            let plan = mv_migrate::plan(&from, &to, hv).map_err(plan_error)?;
            if g.dry_run {
                report(g, "dry run: nothing changed", &plan, None);
                return Ok(());
            }
            if plan.ops.is_empty() {
                report(g, "nothing to migrate; nothing changed", &plan, None);
                return Ok(());
            }
            mig.start(&plan).map_err(apply_error)?;
            let outcome = mig.run(hv).map_err(apply_error)?;
            report(
                g,
                &format!(
                    "migrated: {} steps (plan and journal kept in {})",
                    outcome.executed,
                    mig.state_dir().display()
                ),
                &plan,
                Some(outcome),
            );
            Ok(())
        }
    }
}

fn undo(g: &Global, mig: &Migration, hv: Option<&dyn Hypervisor>) -> Result<(), CliError> {
    if g.dry_run {
        let ops = mig.undo_plan().map_err(apply_error)?;
        if g.json {
            let v = serde_json::json!({ "dry_run": true, "undo": ops });
            println!("{v:#}");
        } else {
            for op in &ops {
                g.say(op);
            }
            g.say(format!(
                "dry run: the undo has {} steps; nothing changed",
                ops.len()
            ));
        }
        return Ok(());
    }
    match mig.undo(hv).map_err(apply_error)? {
        None => {
            if g.json {
                println!("{:#}", serde_json::json!({ "undone": null }));
            } else {
                g.say("no migration to undo; nothing changed");
            }
        }
        Some(o) => {
            if g.json {
                println!("{:#}", serde_json::json!({ "undone": o }));
            } else {
                g.say(format!(
                    "undone: {} steps reversed; the old tree is back",
                    o.executed
                ));
            }
        }
    }
    Ok(())
}

fn report(
    g: &Global,
    summary: &str,
    plan: &mv_migrate::Plan,
    outcome: Option<mv_migrate::Outcome>,
) {
    if g.json {
        let v = serde_json::json!({
            "dry_run": g.dry_run,
            "summary": summary,
            "plan": plan,
            "outcome": outcome,
        });
        println!("{v:#}");
    } else {
        if !g.quiet {
            print!("{}", plan.render());
        }
        g.say(summary);
    }
}

fn plan_error(e: PlanError) -> CliError {
    match e {
        PlanError::DomainsRunning { .. } => CliError::from(e)
            .with_hint("shut them down (`virsh shutdown NAME`) and run the same command again"),
        other => CliError::from(other),
    }
}

fn apply_error(e: ApplyError) -> CliError {
    match e {
        ApplyError::OtherInProgress { .. } | ApplyError::UndoInProgress { .. } => CliError::from(e),
        ApplyError::Op {
            source: mv_migrate::OpError::NoHypervisor,
            ..
        } => CliError::from(e)
            .with_hint("the plan redefines libvirt objects: run it again without --no-libvirt"),
        other => CliError::from(other).with_hint(RESUME_HINT),
    }
}

/// The bar of the copies across filesystems, on stderr (hidden when it is not a terminal).
fn progress_bar() -> impl Fn(CopyProgress) + 'static {
    let bar = indicatif::ProgressBar::hidden();
    move |p| match p {
        CopyProgress::Start { total_bytes } => {
            bar.set_length(total_bytes);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "copying {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        CopyProgress::Copied(n) => bar.inc(n),
        CopyProgress::Finish => bar.finish_and_clear(),
    }
}
