//! `guard arm`, `disarm`, `status`, `watch`, `fire` and `udev-rule`: the kill switch. The watcher,
//! the chain and the pidfile are `mv_guard`'s; this prints their events and the state.

use super::args::{
    ArmArgs, DisarmArgs, FillMemoryArgs, SignalArg, SysArgs, UdevRuleArgs, WatchArgs,
};
use super::event::print_event;
use super::{load_config, save_config};
use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_core::layout::Tree;
use mv_guard::chain::{Chain, Env};
use mv_guard::token::{TokenSpec, Trigger};
use mv_guard::watch::{Liveness, Outcome, Pidfile, Source, Watch, WatchEvent};
use mv_guard::{GuardConfig, SignalPolicy};
use std::path::Path;

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether our watcher runs, asked of its locked pidfile only (see `mv_guard::watch::Pidfile`):
/// never by matching command lines.
fn running_watcher(g: &Global) -> Liveness {
    Pidfile::probe(&Tree::new(&g.root).guard_pidfile())
}

/// `--for`: whole seconds (a part second counts as one); zero is refused, as before.
fn pause_secs(text: &str) -> Result<u64, CliError> {
    let bad = || {
        CliError::usage_msg(format!(
            "--for {text}: expected a duration like 90s, 10m or 2h"
        ))
    };
    let d = mv_core::duration::parse(text).map_err(|_| bad())?;
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if secs == 0 {
        return Err(bad());
    }
    Ok(secs)
}

pub(super) fn arm(g: &Global, a: ArmArgs) -> Result<(), CliError> {
    let spec: TokenSpec = a
        .token
        .parse()
        .usage()
        .hint("lsusb shows `ID 1050:0407`; the serial is in /sys/bus/usb/devices/*/serial")?;
    let (path, cfg) = load_config(g)?;
    let mut cfg = cfg.unwrap_or_default();
    cfg.armed = true;
    cfg.paused_until = None;
    cfg.token = Some(spec.to_string());
    if let Some(p) = a.on_signal {
        cfg.on_signal = match p {
            SignalArg::Ignore => SignalPolicy::Ignore,
            SignalArg::Fire => SignalPolicy::Fire,
        };
    }
    if let Some(t) = a.trigger {
        cfg.trigger = t.into();
    }
    // Today's messages unchanged for the default; the other choices are named.
    let on = if cfg.trigger.is_remove() {
        String::new()
    } else {
        format!(" (fires on {})", cfg.trigger)
    };
    if g.dry_run {
        g.say(format!(
            "would arm the kill switch for {spec}{on} in {}",
            path.display()
        ));
        return Ok(());
    }
    if save_config(&cfg, &path)? {
        g.say(format!(
            "armed for token {spec}{on}; start the watcher: multiverse guard watch (as root)"
        ));
    } else {
        g.say(format!("already armed for token {spec}{on}; unchanged"));
    }
    Ok(())
}

pub(super) fn disarm(g: &Global, a: DisarmArgs) -> Result<(), CliError> {
    let pause = a.pause.as_deref().map(pause_secs).transpose()?;
    let (path, cfg) = load_config(g)?;
    let Some(mut cfg) = cfg.filter(|c| c.armed) else {
        g.say("not armed; unchanged");
        return Ok(());
    };
    if let Some(secs) = pause {
        let now = now_secs();
        if g.dry_run {
            g.say(format!(
                "would pause the kill switch for {secs} s in {}",
                path.display()
            ));
            return Ok(());
        }
        cfg.paused_until = Some(now + secs);
        save_config(&cfg, &path)?;
        g.say(format!(
            "paused for {secs} s: removing the token does nothing until then; the watcher keeps running"
        ));
        return Ok(());
    }
    if g.dry_run {
        g.say(format!(
            "would disarm in {} and stop the watcher",
            path.display()
        ));
        return Ok(());
    }
    cfg.armed = false;
    cfg.paused_until = None;
    save_config(&cfg, &path)?;
    match running_watcher(g) {
        Liveness::Running(pid) => {
            let _ = mv_guard::watch::notify_watcher(pid);
            g.say(format!("disarmed; told the watcher (pid {pid}) to stop"));
        }
        Liveness::NotRunning => g.say("disarmed"),
        Liveness::Unknown { why, .. } => g.say(format!(
            "disarmed; a watcher may be running but cannot be verified ({why}): not signalled, \
             it will not fire while disarmed"
        )),
    }
    Ok(())
}

pub(super) fn status(g: &Global, a: SysArgs) -> Result<(), CliError> {
    let (path, cfg) = load_config(g)?;
    let cfg = cfg.unwrap_or_default();
    let spec = cfg.token_spec().usage()?;
    let present: Vec<_> = match &spec {
        Some(s) => mv_guard::token::scan(&a.sys)
            .into_iter()
            .filter(|d| s.matches(d))
            .collect(),
        None => vec![],
    };
    let watcher = running_watcher(g);
    // The memory step relies on the kernel zeroing freed pages (init_on_free=1, set by the
    // installer); without it the chain fills free memory instead, which is slower.
    let init_on_free = mv_guard::chain::init_on_free(&a.proc_root);
    if g.json {
        let v = serde_json::json!({
            "init_on_free": init_on_free,
            "config": path,
            "armed": cfg.armed,
            "token": cfg.token,
            "on_signal": cfg.on_signal,
            "trigger": cfg.trigger,
            "paused_until": cfg.paused_until,
            "token_present": present,
            "watcher_pid": match &watcher {
                Liveness::Running(pid) => Some(*pid),
                _ => None,
            },
            "watcher": match &watcher {
                Liveness::Running(_) => "running",
                Liveness::NotRunning => "not-running",
                Liveness::Unknown { .. } => "unknown",
            },
            "steps": cfg.steps.iter().map(|s| s.action.name()).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    let armed = match (cfg.armed, cfg.paused_until) {
        (false, _) => "no".to_string(),
        (true, Some(t)) if !cfg.fires_at(now_secs()) => {
            format!("yes, paused until {t} (unix time)")
        }
        (true, _) => "yes".to_string(),
    };
    println!("armed:    {armed}");
    println!("token:    {}", cfg.token.as_deref().unwrap_or("(none)"));
    println!("fires on: {}", cfg.trigger);
    println!(
        "present:  {}",
        if present.is_empty() {
            "no".to_string()
        } else {
            present
                .iter()
                .map(|d| d.devpath.clone())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    println!(
        "watcher:  {}",
        match &watcher {
            Liveness::Running(p) => format!("running (pid {p})"),
            Liveness::NotRunning => "not running".to_string(),
            Liveness::Unknown { why, .. } => format!("unknown ({why})"),
        }
    );
    println!(
        "memory:   {}",
        match init_on_free {
            Some(true) => "init_on_free=1: the kernel zeroes every page it frees".to_string(),
            Some(false) => format!(
                "WARNING: no init_on_free=1 on the kernel command line ({}/cmdline): freed pages \
                 keep their bytes until reused; the chain fills free memory instead (slower). \
                 Add init_on_free=1 to GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub",
                a.proc_root.display()
            ),
            None => format!("unknown: cannot read {}/cmdline", a.proc_root.display()),
        }
    );
    println!(
        "chain:    {}",
        cfg.steps
            .iter()
            .map(|s| s.action.name())
            .collect::<Vec<_>>()
            .join(" -> ")
    );
    Ok(())
}

/// The hidden subcommand the chain's memory fill runs as a child (the OOM killer's first
/// choice), through `/proc/self/exe`: the running binary even after an upgrade replaced it.
const FILLER: [&str; 3] = ["/proc/self/exe", "guard", "__fill-memory"];

fn chain_of(cfg: &GuardConfig, a: &SysArgs) -> Chain {
    Chain {
        steps: cfg.steps.clone(),
        env: Env {
            sys: a.sys.clone(),
            proc_root: a.proc_root.clone(),
            filler: Some(FILLER.iter().map(|s| s.to_string()).collect()),
        },
    }
}

/// `guard __fill-memory` (hidden): the chain's memory fill, in a process of its own; one line
/// on stderr says what it did.
pub(super) fn fill_memory(a: FillMemoryArgs) -> Result<(), CliError> {
    let limit = a.limit_mib.map(|m| m << 20);
    let report =
        mv_guard::chain::fill_free_memory(&a.proc_root, a.reserve_mib, a.lower_watermarks, limit)?;
    eprintln!("{report}");
    Ok(())
}

pub(super) fn watch(g: &Global, a: WatchArgs) -> Result<(), CliError> {
    let (path, cfg) = load_config(g)?;
    let cfg = cfg
        .filter(|c| c.armed && c.token.is_some())
        .ok_or_else(|| {
            CliError::usage_msg("the kill switch is not armed")
                .with_hint("run `multiverse guard arm --token VID:PID:SERIAL` first")
        })?;
    let source = if a.source == "netlink" {
        Source::netlink()?
    } else if let Some(p) = a.source.strip_prefix("unix:") {
        Source::unix(Path::new(p))?
    } else {
        return Err(CliError::usage_msg(format!(
            "--source {}: expected netlink or unix:PATH",
            a.source
        )));
    };
    if !g.dry_run {
        if let Err(e) = mv_guard::watch::lock_memory() {
            tracing::warn!("cannot lock the watcher in memory ({e}): it may be swapped out");
        }
    }
    // Held (flock) until the watcher returns; removed on the way out, whatever the outcome.
    let _pidfile = if g.dry_run {
        None
    } else {
        Some(
            Pidfile::acquire(&Tree::new(&g.root).guard_pidfile())
                .hint("`multiverse guard status` shows the running watcher")?,
        )
    };
    let w = Watch {
        config_path: path,
        chain: chain_of(&cfg, &a.sys),
        dry_run: g.dry_run,
    };
    let outcome = w.run(&cfg, source, &mut |e| print_event(g, e))?;
    match outcome {
        Outcome::Disarmed => Ok(()),
        Outcome::Fired if g.dry_run => Ok(()),
        Outcome::Fired => {
            // sysrq `o` only queues the power-off: the watcher gets here ~50 ms before the
            // kernel powers down (seen in the lab), so give it time before calling it failed.
            if w.chain.powers_off() {
                std::thread::sleep(std::time::Duration::from_secs(5));
            }
            Err(CliError::failure_msg(
                "the chain ran but the machine is still up (power-off failed)",
            ))
        }
    }
}

pub(super) fn fire(g: &Global, a: SysArgs) -> Result<(), CliError> {
    let (_, cfg) = load_config(g)?;
    let cfg = cfg.unwrap_or_default();
    let chain = chain_of(&cfg, &a);
    print_event(
        g,
        &WatchEvent::Fire {
            cause: "manual".into(),
        },
    );
    chain.run(g.dry_run, |r| {
        print_event(g, &WatchEvent::Action(r.clone()))
    });
    Ok(())
}

pub(super) fn udev_rule(g: &Global, a: UdevRuleArgs) -> Result<(), CliError> {
    // Without --token the armed configuration gives both the token and (without --on) the event.
    let (token, armed_trigger) = match a.token {
        Some(t) => (t, Trigger::Remove),
        None => load_config(g)?
            .1
            .and_then(|c| Some((c.token?, c.trigger)))
            .ok_or_else(|| {
                CliError::usage_msg("no token given and none armed")
                    .with_hint("pass --token VID:PID:SERIAL")
            })?,
    };
    let trigger = a.trigger.map_or(armed_trigger, Trigger::from);
    let spec: TokenSpec = token.parse().usage()?;
    let rule =
        mv_guard::kill_switch_rule_on(&spec, trigger, &a.binary, &g.root.display().to_string());
    match a.out {
        None => print!("{rule}"),
        Some(p) if g.dry_run => g.say(format!("would write {}", p.display())),
        Some(p) => {
            if mv_core::fsutil::write_public(&p, rule.as_bytes())? {
                g.say(format!(
                    "wrote {}; now run: udevadm control --reload",
                    p.display()
                ));
            } else {
                g.say(format!("{}: unchanged", p.display()));
            }
        }
    }
    Ok(())
}
