//! `pass grep` with options only grep itself understands ([`crate::grep::Plan::External`]):
//! GNU grep runs once per decrypted entry, the entry on its stdin (never on a command line), as
//! pass does. What this is not: the in-process matcher ([`Store::grep_matcher`]).

use crate::store::{GrepHit, GrepLine, GrepReport};
use crate::{Crypto, Store, StoreError};
use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

/// What [`Store::grep_external`] found.
#[derive(Debug)]
pub struct ExternalGrep {
    /// The entries grep selected lines of, and the unreadable ones.
    pub report: GrepReport,
    /// grep's own complaints (a bad pattern, an unknown option), each once, as grep said it.
    pub refusals: BTreeSet<String>,
}

impl Store {
    /// Runs `grep --color=never ARGS` on every entry (in parallel when `crypto` allows).
    pub fn grep_external(
        &self,
        args: &[String],
        crypto: &dyn Crypto,
    ) -> Result<ExternalGrep, StoreError> {
        let refusals = std::sync::Mutex::new(BTreeSet::new());
        let (hits, errors, searched) = self.for_each_decrypted(None, crypto, |name, plain| {
            match run_grep(args, plain.expose()) {
                Ok(Some(out)) => Some(GrepHit {
                    name: name.clone(),
                    lines: crate::grep::lines(&out)
                        .map(|l| GrepLine {
                            line: None,
                            text: l.to_string(),
                        })
                        .collect(),
                }),
                Ok(None) => None,
                Err(why) => {
                    if let Ok(mut f) = refusals.lock() {
                        f.insert(why);
                    }
                    None
                }
            }
        })?;
        Ok(ExternalGrep {
            report: GrepReport {
                hits,
                errors,
                searched,
            },
            refusals: refusals.into_inner().unwrap_or_default(),
        })
    }
}

/// `grep --color=never ARGS` with `plain` on stdin: its output when it selected something,
/// `None` when not (exit 1), its message when it failed.
fn run_grep(args: &[String], plain: &[u8]) -> Result<Option<String>, String> {
    let mut child = Command::new("grep")
        .arg("--color=never")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run grep: {e}"))?;
    let stdin = child.stdin.take();
    let out = std::thread::scope(|s| {
        s.spawn(move || {
            if let Some(mut i) = stdin {
                let _ = i.write_all(plain);
            }
        });
        child.wait_with_output()
    })
    .map_err(|e| format!("grep: {e}"))?;
    match out.status.code() {
        Some(0) => Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned())),
        Some(1) => Ok(None),
        _ => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}
