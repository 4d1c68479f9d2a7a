//! How the watcher's and the chain's events are shown: one line each, or one JSON object each
//! with `--json` (the tests and the benchmark read those).

use crate::global::Global;
use mv_guard::chain::Status;
use mv_guard::token::Trigger;
use mv_guard::watch::WatchEvent;
use std::io::Write;

pub(super) fn print_event(g: &Global, e: &WatchEvent) {
    let mut out = std::io::stdout().lock();
    let line = if g.json {
        serde_json::to_string(e).unwrap_or_default()
    } else {
        match e {
            WatchEvent::Ready {
                token,
                trigger,
                present,
                source,
            } => format!(
                "watching {source} for the {} of token {token} ({} present now)",
                match trigger {
                    Trigger::Remove => "removal",
                    Trigger::Insert => "insertion",
                    Trigger::Any => "insertion or removal",
                },
                present.len()
            ),
            WatchEvent::Uevent {
                seqnum,
                action,
                devpath,
                decision,
            } => {
                format!(
                    "uevent {} {action} {devpath}: {decision:?}",
                    seqnum.unwrap_or(0)
                )
            }
            WatchEvent::Rejected { why } => format!("rejected datagram: {why}"),
            WatchEvent::Fire { cause } => format!("FIRE ({cause})"),
            WatchEvent::Action(r) => {
                let what = match &r.status {
                    Status::DryRun => "would run".to_string(),
                    Status::Ok => "ran".to_string(),
                    Status::Failed(e) => format!("FAILED ({e})"),
                    Status::Timeout => "TIMEOUT".to_string(),
                };
                format!(
                    "[{}{}] {what}: {}",
                    r.step,
                    if r.fallback { " fallback" } else { "" },
                    r.command
                )
            }
            WatchEvent::Signal { name, handled } => format!("signal {name}: {handled}"),
            WatchEvent::DisarmedIgnore => {
                "token removed or inserted but the guard is disarmed".into()
            }
            WatchEvent::ConfigRefused { why } => {
                format!("configuration refused, still armed with the chain it started with: {why}")
            }
        }
    };
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
