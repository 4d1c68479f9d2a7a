//! How `provision` prints a plan's changes and an apply's warnings.

use mv_provision::Change;

pub(super) fn print_change(c: &Change, with_diff: bool) {
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

/// The warnings of an apply (something left in place), on stderr even with `--quiet`.
pub(super) fn warn(changes: &[Change]) {
    for c in changes.iter().filter(|c| c.is_warning()) {
        eprintln!("warning: {}", c.summary());
    }
}
