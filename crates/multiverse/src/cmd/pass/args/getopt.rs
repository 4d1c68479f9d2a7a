//! GNU getopt as pass runs it (permutation, unique long prefixes, clustered short options),
//! the usage line of each command, and the command words.

use super::{Extras, ParseError};
use std::path::PathBuf;

/// Whether an option takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arg {
    No,
    Required,
    Optional,
}

/// One option of a command's table.
pub(super) struct Opt {
    pub(super) short: Option<char>,
    pub(super) long: &'static str,
    pub(super) arg: Arg,
}

pub(super) const fn o(short: char, long: &'static str, arg: Arg) -> Opt {
    Opt {
        short: Some(short),
        long,
        arg,
    }
}

pub(super) const fn l(long: &'static str, arg: Arg) -> Opt {
    Opt {
        short: None,
        long,
        arg,
    }
}

/// Our options, valid in every command.
pub(super) const EXTRAS: [Opt; 4] = [
    l("gpg", Arg::No),
    l("passphrase-file", Arg::Required),
    l("json", Arg::No),
    l("dry-run", Arg::No),
];

/// What getopt found: options in order (long name, value), then the operands.
pub(super) struct Parsed {
    pub(super) opts: Vec<(&'static str, Option<String>)>,
    pub(super) operands: Vec<String>,
}

impl Parsed {
    pub(super) fn has(&self, long: &str) -> bool {
        self.opts.iter().any(|(n, _)| *n == long)
    }
    /// The last value given to `long` (`Some(None)`: given without a value).
    pub(super) fn last(&self, long: &str) -> Option<Option<&str>> {
        self.opts
            .iter()
            .rev()
            .find(|(n, _)| *n == long)
            .map(|(_, v)| v.as_deref())
    }
}

/// GNU getopt with permutation over `table` plus [`EXTRAS`].
pub(super) fn getopt(args: &[String], table: &[Opt], usage: &str) -> Result<Parsed, ParseError> {
    let err = |m: String| ParseError {
        message: m,
        usage: usage.to_string(),
    };
    let all: Vec<&Opt> = table.iter().chain(EXTRAS.iter()).collect();
    let mut opts = Vec::new();
    let mut operands = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            operands.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let exact: Vec<&&Opt> = all.iter().filter(|o| o.long == name).collect();
            let cands: Vec<&&Opt> = if exact.is_empty() {
                all.iter().filter(|o| o.long.starts_with(name)).collect()
            } else {
                exact
            };
            let opt = match cands.as_slice() {
                [one] => **one,
                [] => return Err(err(format!("unrecognized option '--{name}'"))),
                _ => return Err(err(format!("option '--{name}' is ambiguous"))),
            };
            let value = match (opt.arg, inline) {
                (Arg::No, Some(_)) => {
                    return Err(err(format!(
                        "option '--{}' doesn't allow an argument",
                        opt.long
                    )))
                }
                (Arg::No, None) => None,
                (Arg::Optional, v) => v,
                (Arg::Required, Some(v)) => Some(v),
                (Arg::Required, None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(v.clone())
                    }
                    None => {
                        return Err(err(format!("option '--{}' requires an argument", opt.long)))
                    }
                },
            };
            opts.push((opt.long, value));
            continue;
        }
        if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a.chars().skip(1).collect();
            let mut k = 0;
            while k < chars.len() {
                let c = chars[k];
                k += 1;
                let Some(opt) = all.iter().find(|o| o.short == Some(c)) else {
                    return Err(err(format!("invalid option -- '{c}'")));
                };
                let rest: String = chars[k..].iter().collect();
                let value = match opt.arg {
                    Arg::No => None,
                    Arg::Optional => {
                        k = chars.len();
                        (!rest.is_empty()).then_some(rest)
                    }
                    Arg::Required => {
                        k = chars.len();
                        if !rest.is_empty() {
                            Some(rest)
                        } else if let Some(v) = args.get(i) {
                            i += 1;
                            Some(v.clone())
                        } else {
                            return Err(err(format!("option requires an argument -- '{c}'")));
                        }
                    }
                };
                opts.push((opt.long, value));
            }
            continue;
        }
        operands.push(a.clone());
    }
    Ok(Parsed { opts, operands })
}

pub(super) fn extras_of(p: &Parsed, base: &Extras) -> Extras {
    let mut e = base.clone();
    e.gpg |= p.has("gpg");
    e.json |= p.has("json");
    e.dry_run |= p.has("dry-run");
    if let Some(Some(f)) = p.last("passphrase-file") {
        e.passphrase_file = Some(PathBuf::from(f));
    }
    e
}

pub(super) fn usage_err(usage: &str, message: impl Into<String>) -> ParseError {
    ParseError {
        message: message.into(),
        usage: usage.to_string(),
    }
}

/// `N` of `--clip=N`: pass's "Clip location 'x' is not a number.".
pub(super) fn line_number(v: Option<&str>, usage: &str) -> Result<usize, ParseError> {
    match v {
        None => Ok(1),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| usage_err(usage, format!("Clip location '{s}' is not a number."))),
    }
}

pub(super) fn number<T: std::str::FromStr>(
    p: &Parsed,
    long: &str,
    usage: &str,
) -> Result<Option<T>, ParseError> {
    match p.last(long) {
        Some(Some(v)) => v
            .parse()
            .map(Some)
            .map_err(|_| usage_err(usage, format!("--{long} {v:?} is not a number"))),
        _ => Ok(None),
    }
}

pub(super) fn usage_for(cmd: &str) -> String {
    let u = match cmd {
        "init" => "init [--path=subfolder,-p subfolder] gpg-id...",
        "show" | "ls" | "list" => {
            "show [--clip[=line-number],-c[line-number]] [--qrcode[=line-number],-q[line-number]] [pass-name]"
        }
        "find" | "search" => "find pass-names...",
        "grep" => "grep [GREPOPTIONS] search-string",
        "insert" | "add" => "insert [--echo,-e | --multiline,-m] [--force,-f] pass-name",
        "edit" => "edit pass-name",
        "generate" => {
            "generate [--no-symbols,-n] [--clip,-c] [--qrcode,-q] [--in-place,-i | --force,-f] pass-name [pass-length]"
        }
        "rm" | "delete" | "remove" => "rm [--recursive,-r] [--force,-f] pass-name",
        "mv" | "rename" => "mv [--force,-f] old-path new-path",
        "cp" | "copy" => "cp [--force,-f] old-path new-path",
        "otp insert" => {
            "otp insert [--force,-f] [--echo,-e] [--secret, -s] [--issuer,-i issuer] [--account,-a account] [pass-name]"
        }
        "otp append" => {
            "otp append [--force,-f] [--echo,-e] [--secret, -s] [--issuer,-i issuer] [--account,-a account] pass-name"
        }
        "otp code" => "otp [--clip,-c] pass-name",
        "otp uri" => "otp uri [--clip,-c | --qrcode,-q] pass-name",
        "key" => "key import|add|ls",
        _ => "[COMMAND] [ARGS...]",
    };
    format!("Usage: pass {u}")
}

/// Whether grep reads the word after `a` as `a`'s value (`-e PAT`, `-ie PAT`, `--regexp PAT`),
/// so that a pattern spelled like one of our extras stays grep's.
pub(super) fn grep_takes_next(a: &str) -> bool {
    const LONG: [&str; 15] = [
        "--regexp",
        "--file",
        "--max-count",
        "--after-context",
        "--before-context",
        "--context",
        "--label",
        "--exclude",
        "--exclude-from",
        "--exclude-dir",
        "--include",
        "--binary-files",
        "--devices",
        "--directories",
        "--group-separator",
    ];
    if a.starts_with("--") {
        return LONG.contains(&a);
    }
    let Some(cluster) = a.strip_prefix('-') else {
        return false;
    };
    for (i, c) in cluster.char_indices() {
        if "efmABCdD".contains(c) {
            return i + c.len_utf8() == cluster.len();
        }
    }
    false
}

/// Command words of pass and ours: any other first word may name an extension.
pub(super) const COMMANDS: [&str; 35] = [
    "help",
    "--help",
    "-h",
    "version",
    "--version",
    "init",
    "show",
    "ls",
    "list",
    "find",
    "search",
    "grep",
    "insert",
    "add",
    "edit",
    "generate",
    "rm",
    "delete",
    "remove",
    "mv",
    "rename",
    "cp",
    "copy",
    "git",
    "otp",
    "key",
    "machines",
    "fsck",
    "audit",
    "lock",
    "__agent",
    "__clip",
    "__clip-restore",
    "--",
    "",
];
