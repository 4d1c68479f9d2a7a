//! pass's command line, parsed exactly as pass 1.7.4 and pass-otp parse it.
//!
//! pass runs GNU `getopt` per command: options and operands may be mixed, `--` ends the options,
//! long options may be shortened to any unique prefix (`--multi`), `--opt=value` and `--opt value`
//! both work for options that need a value, optional values only attach (`-c2`, `--clip=2`), short
//! options cluster (`-mf`), and an unknown option is an error (never an entry name). The first
//! word picks the command (`show|ls|list`, `insert|add`, `rm|delete|remove`, `mv|rename`,
//! `cp|copy`, `find|search`, …); a word that is no command means `show WORD…`, and nothing at all
//! lists the store.
//!
//! Our extras are long options accepted by every command (`--gpg`, `--passphrase-file FILE`,
//! `--json`, `--dry-run`, and `--line N` for `show`) and commands pass does not have (`key`,
//! `machines`, `fsck`, `audit`, `lock`); none shares a name with a pass command or option.
//!
//! Nothing here touches the store: [`parse`] turns words into an [`Invocation`].

mod getopt;
mod sub;
#[cfg(test)]
mod tests;
mod types;

use getopt::*;
use std::path::PathBuf;
use sub::*;
pub use types::*;

/// A call that may be an extension's (`pass WORD ARGS…` where WORD is no command): our leading
/// extras as typed, WORD and ARGS. `None` for a command or no word at all.
pub fn extension_call(args: &[String]) -> Option<(Vec<String>, String, Vec<String>)> {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "--gpg" | "--json" | "--dry-run" => i += 1,
            "--passphrase-file" => i += 2,
            s if s.starts_with("--passphrase-file=") => i += 1,
            _ => break,
        }
    }
    let word = args.get(i)?;
    if COMMANDS.contains(&word.as_str()) || word.starts_with('-') {
        return None;
    }
    Some((
        args[..i.min(args.len())].to_vec(),
        word.clone(),
        args[i + 1..].to_vec(),
    ))
}

/// Parses the words after `multiverse pass`.
pub fn parse(args: &[String]) -> Result<Invocation, ParseError> {
    // Our options may come before the command word too: `pass --gpg init KEY`.
    let mut base = Extras::default();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "--gpg" => base.gpg = true,
            "--json" => base.json = true,
            "--dry-run" => base.dry_run = true,
            "--passphrase-file" => {
                let f = args.get(i + 1).ok_or_else(|| {
                    usage_err(
                        &usage_for(""),
                        "option '--passphrase-file' requires an argument",
                    )
                })?;
                base.passphrase_file = Some(PathBuf::from(f));
                i += 1;
            }
            s if s.starts_with("--passphrase-file=") => {
                base.passphrase_file = Some(PathBuf::from(&s["--passphrase-file=".len()..]));
            }
            _ => break,
        }
        i += 1;
    }
    let rest = &args[i..];
    let Some(word) = rest.first() else {
        return Ok(Invocation {
            extras: base,
            command: Cmd::Show {
                name: None,
                output: Output::Print,
                line: None,
            },
        });
    };
    let tail = &rest[1..];
    let (extras, command) = match word.as_str() {
        "help" | "--help" | "-h" => (base, Cmd::Help),
        "version" | "--version" => (base, Cmd::Version),
        "init" => {
            let u = usage_for("init");
            // No gpg-id at all is ours: the identity's @user key (pass refuses it).
            let p = getopt(tail, &[o('p', "path", Arg::Required)], &u)?;
            let path = p.last("path").flatten().map(str::to_string);
            (
                extras_of(&p, &base),
                Cmd::Init {
                    path,
                    ids: p.operands,
                },
            )
        }
        "show" | "ls" | "list" => show(tail, &base, &usage_for("show"))?,
        "find" | "search" => {
            let u = usage_for("find");
            let p = getopt(tail, &[], &u)?;
            if p.operands.is_empty() {
                return Err(usage_err(&u, "no search terms"));
            }
            (extras_of(&p, &base), Cmd::Find { terms: p.operands })
        }
        "grep" => {
            // No getopt: pass hands every word to grep. Only our extras (exactly spelled,
            // before a `--`) are taken out; grep's `--` stays for grep.
            let u = usage_for("grep");
            let mut e = base.clone();
            let mut args = Vec::new();
            let mut it = tail.iter();
            let mut ended = false;
            while let Some(a) = it.next() {
                match a.as_str() {
                    _ if ended => args.push(a.clone()),
                    _ if grep_takes_next(a) => {
                        args.push(a.clone());
                        args.extend(it.next().cloned());
                    }
                    "--" => {
                        ended = true;
                        args.push(a.clone());
                    }
                    "--gpg" => e.gpg = true,
                    "--json" => e.json = true,
                    "--dry-run" => e.dry_run = true,
                    "--passphrase-file" => {
                        let f = it.next().ok_or_else(|| {
                            usage_err(&u, "option '--passphrase-file' requires an argument")
                        })?;
                        e.passphrase_file = Some(PathBuf::from(f));
                    }
                    s if s.starts_with("--passphrase-file=") => {
                        e.passphrase_file = Some(PathBuf::from(&s["--passphrase-file=".len()..]));
                    }
                    _ => args.push(a.clone()),
                }
            }
            if args.is_empty() {
                return Err(usage_err(&u, "no search string"));
            }
            (e, Cmd::Grep { args })
        }
        "insert" | "add" => {
            let u = usage_for("insert");
            let p = getopt(
                tail,
                &[
                    o('m', "multiline", Arg::No),
                    o('e', "echo", Arg::No),
                    o('f', "force", Arg::No),
                ],
                &u,
            )?;
            let (echo, multiline) = (p.has("echo"), p.has("multiline"));
            if echo && multiline {
                return Err(usage_err(&u, "--echo and --multiline exclude each other"));
            }
            let [name] = p.operands.as_slice() else {
                return Err(usage_err(&u, "give exactly one pass-name"));
            };
            (
                extras_of(&p, &base),
                Cmd::Insert {
                    echo,
                    multiline,
                    force: p.has("force"),
                    name: name.clone(),
                },
            )
        }
        "edit" => {
            let u = usage_for("edit");
            let p = getopt(tail, &[], &u)?;
            let [name] = p.operands.as_slice() else {
                return Err(usage_err(&u, "give exactly one pass-name"));
            };
            (extras_of(&p, &base), Cmd::Edit { name: name.clone() })
        }
        "generate" => {
            let u = usage_for("generate");
            let p = getopt(
                tail,
                &[
                    o('n', "no-symbols", Arg::No),
                    o('q', "qrcode", Arg::No),
                    o('c', "clip", Arg::No),
                    o('i', "in-place", Arg::No),
                    o('f', "force", Arg::No),
                ],
                &u,
            )?;
            let (force, in_place) = (p.has("force"), p.has("in-place"));
            let (clip, qr) = (p.has("clip"), p.has("qrcode"));
            if force && in_place {
                return Err(usage_err(&u, "--in-place and --force exclude each other"));
            }
            if clip && qr {
                return Err(usage_err(&u, "--clip and --qrcode exclude each other"));
            }
            let (name, length) = match p.operands.as_slice() {
                [n] => (n.clone(), None),
                [n, len] => (n.clone(), Some(len.clone())),
                _ => return Err(usage_err(&u, "give a pass-name and at most a length")),
            };
            let output = if clip {
                Output::Clip(1)
            } else if qr {
                Output::Qr(1)
            } else {
                Output::Print
            };
            (
                extras_of(&p, &base),
                Cmd::Generate {
                    no_symbols: p.has("no-symbols"),
                    output,
                    in_place,
                    force,
                    name,
                    length,
                },
            )
        }
        "rm" | "delete" | "remove" => {
            let u = usage_for("rm");
            let p = getopt(
                tail,
                &[o('r', "recursive", Arg::No), o('f', "force", Arg::No)],
                &u,
            )?;
            let [name] = p.operands.as_slice() else {
                return Err(usage_err(&u, "give exactly one pass-name"));
            };
            (
                extras_of(&p, &base),
                Cmd::Rm {
                    recursive: p.has("recursive"),
                    force: p.has("force"),
                    name: name.clone(),
                },
            )
        }
        w @ ("mv" | "rename" | "cp" | "copy") => {
            let copy = matches!(w, "cp" | "copy");
            let u = usage_for(if copy { "cp" } else { "mv" });
            let p = getopt(tail, &[o('f', "force", Arg::No)], &u)?;
            let [from, to] = p.operands.as_slice() else {
                return Err(usage_err(&u, "give old-path and new-path"));
            };
            (
                extras_of(&p, &base),
                Cmd::MoveCopy {
                    copy,
                    force: p.has("force"),
                    from: from.clone(),
                    to: to.clone(),
                },
            )
        }
        "git" => (
            base,
            Cmd::Git {
                args: tail.to_vec(),
            },
        ),
        "otp" => otp(tail, &base)?,
        "key" => key(tail, &base)?,
        "machines" => {
            let p = getopt(tail, &[], "Usage: pass machines")?;
            if !p.operands.is_empty() {
                return Err(usage_err(
                    "Usage: pass machines",
                    "machines takes no arguments",
                ));
            }
            (extras_of(&p, &base), Cmd::Machines)
        }
        "fsck" => {
            let u = "Usage: pass fsck [--decrypt]";
            let p = getopt(tail, &[l("decrypt", Arg::No)], u)?;
            if !p.operands.is_empty() {
                return Err(usage_err(u, "fsck takes no arguments"));
            }
            (
                extras_of(&p, &base),
                Cmd::Fsck {
                    decrypt: p.has("decrypt"),
                },
            )
        }
        "audit" => {
            let u = "Usage: pass audit [--max-age DAYS]";
            let p = getopt(tail, &[l("max-age", Arg::Required)], u)?;
            if !p.operands.is_empty() {
                return Err(usage_err(u, "audit takes no arguments"));
            }
            let max_age = number(&p, "max-age", u)?.unwrap_or(365);
            (extras_of(&p, &base), Cmd::Audit { max_age })
        }
        "lock" => {
            let u = "Usage: pass lock [--all]";
            let p = getopt(tail, &[l("all", Arg::No)], u)?;
            if !p.operands.is_empty() {
                return Err(usage_err(u, "lock takes no arguments"));
            }
            (extras_of(&p, &base), Cmd::Lock { all: p.has("all") })
        }
        "__agent" => (base, Cmd::Agent),
        "__clip" => {
            let u = "Usage: pass __clip NAME";
            let p = getopt(tail, &[], u)?;
            let [name] = p.operands.as_slice() else {
                return Err(usage_err(u, "expected one name"));
            };
            let name = name.clone();
            (base, Cmd::Clip { name })
        }
        "__clip-restore" => {
            let u = "Usage: pass __clip-restore --secs N";
            let p = getopt(tail, &[l("secs", Arg::Required)], u)?;
            let secs = number(&p, "secs", u)?.ok_or_else(|| usage_err(u, "--secs is required"))?;
            (base, Cmd::ClipRestore { secs })
        }
        // Anything else is `show`, as in pass (`pass NAME`, `pass -c NAME`).
        _ => show(rest, &base, &usage_for("show"))?,
    };
    Ok(Invocation { extras, command })
}
