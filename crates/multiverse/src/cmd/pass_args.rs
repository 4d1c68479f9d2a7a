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

use std::path::PathBuf;

/// A parse failure: the message pass would print, and the usage line of the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What was wrong (`unknown option '-x'`).
    pub message: String,
    /// `Usage: pass insert [--echo,-e | --multiline,-m] [--force,-f] pass-name`.
    pub usage: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

/// Options every pass command takes (ours, not pass's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// `--gpg`: gpg does the OpenPGP work.
    pub gpg: bool,
    /// `--passphrase-file FILE`.
    pub passphrase_file: Option<PathBuf>,
    /// `--json`.
    pub json: bool,
    /// `--dry-run`.
    pub dry_run: bool,
}

/// One parsed `pass` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Our options.
    pub extras: Extras,
    /// The command.
    pub command: Cmd,
}

/// Where a secret goes instead of the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Printed.
    Print,
    /// `--clip[=N]`: line N on the clipboard.
    Clip(usize),
    /// `--qrcode[=N]`: line N as a QR code.
    Qr(usize),
}

/// `otp insert|append` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtpNew {
    /// `-f`.
    pub force: bool,
    /// `-e`.
    pub echo: bool,
    /// `-s`: read a bare secret, not a URI.
    pub secret: bool,
    /// `-i ISSUER`.
    pub issuer: Option<String>,
    /// `-a ACCOUNT`.
    pub account: Option<String>,
    /// The entry (insert: optional, taken from the URI's label).
    pub name: Option<String>,
}

/// The commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    /// `help`, `--help`.
    Help,
    /// `version`, `--version`.
    Version,
    /// `init [-p SUB] ID…` (one empty ID: remove the `.gpg-id`).
    Init {
        /// `-p`.
        path: Option<String>,
        /// Key ids.
        ids: Vec<String>,
    },
    /// `show|ls|list [-c[N]|-q[N]] [--line N] [NAME]` (no name, or a folder: the tree).
    Show {
        /// The entry or folder.
        name: Option<String>,
        /// Print, clip or QR.
        output: Output,
        /// `--line N` (ours): only that line.
        line: Option<usize>,
    },
    /// `find TERM…`.
    Find {
        /// Terms.
        terms: Vec<String>,
    },
    /// `grep [GREPOPTIONS] search-string`: everything but our extras goes to grep's rules
    /// (`mv_pass::grep::plan`), as pass hands it all to grep.
    Grep {
        /// grep's arguments, as typed.
        args: Vec<String>,
    },
    /// `insert [-e|-m] [-f] NAME`.
    Insert {
        /// `-e`.
        echo: bool,
        /// `-m`.
        multiline: bool,
        /// `-f`.
        force: bool,
        /// The entry.
        name: String,
    },
    /// `edit NAME`.
    Edit {
        /// The entry.
        name: String,
    },
    /// `generate [-n] [-c|-q] [-i|-f] NAME [LENGTH]`.
    Generate {
        /// `-n`.
        no_symbols: bool,
        /// `-c` / `-q`.
        output: Output,
        /// `-i`.
        in_place: bool,
        /// `-f`.
        force: bool,
        /// The entry.
        name: String,
        /// The length, as typed.
        length: Option<String>,
    },
    /// `rm [-r] [-f] NAME`.
    Rm {
        /// `-r`.
        recursive: bool,
        /// `-f`.
        force: bool,
        /// The entry or folder (a trailing `/`: the folder).
        name: String,
    },
    /// `mv|cp [-f] OLD NEW`.
    MoveCopy {
        /// cp.
        copy: bool,
        /// `-f`.
        force: bool,
        /// From.
        from: String,
        /// To (a trailing `/`: into that folder).
        to: String,
    },
    /// `git ARGS…` (passed through untouched).
    Git {
        /// Arguments for git.
        args: Vec<String>,
    },
    /// `otp …`.
    Otp(OtpCmd),
    /// `key …` (ours).
    Key(KeyCmd),
    /// `machines` (ours).
    Machines,
    /// `fsck [--decrypt]` (ours).
    Fsck {
        /// Also decrypt every entry.
        decrypt: bool,
    },
    /// `audit [--max-age DAYS]` (ours).
    Audit {
        /// Days.
        max_age: u64,
    },
    /// `lock [--all]` (ours): forget the unlocked keys of this session (`--all`: every agent
    /// this user can reach; as root, every user's, which is what the kill switch does).
    Lock {
        /// Every agent in the usual places.
        all: bool,
    },
    /// `__agent` (internal): the session cache's agent, started by the first unlock.
    Agent,
    /// `__clip NAME` (internal, for extensions' `clip`): copies stdin like `--clip` does, and
    /// says it copied NAME.
    Clip {
        /// What was copied, for the message.
        name: String,
    },
    /// `__clip-restore --secs N` (internal).
    ClipRestore {
        /// Seconds.
        secs: u64,
    },
}

/// `otp` subcommands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtpCmd {
    /// `otp [code|show] [-c] NAME`.
    Code {
        /// `-c`.
        clip: bool,
        /// The entry.
        name: String,
    },
    /// `otp insert|add …`.
    Insert(OtpNew),
    /// `otp append …`.
    Append(OtpNew),
    /// `otp uri [-c|-q] NAME`.
    Uri {
        /// Print, clip or QR.
        output: Output,
        /// The entry.
        name: String,
    },
    /// `otp validate [URI]` (no URI: one line from stdin, which keeps it off argv).
    Validate {
        /// The URI when given on the command line.
        uri: Option<String>,
    },
    /// `otp help`.
    Help,
    /// `otp version`.
    Version,
}

/// `key` subcommands (ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCmd {
    /// `key import [--unsealed] [--key-passphrase-file F] [--kdf-memory K] [--kdf-iterations N]`.
    Import {
        /// Keep it in the clear.
        unsealed: bool,
        /// The key's own passphrase file.
        key_passphrase_file: Option<PathBuf>,
        /// Argon2id memory, KiB.
        kdf_memory: Option<u32>,
        /// Argon2id passes.
        kdf_iterations: Option<u32>,
    },
    /// `key add`.
    Add,
    /// `key ls`.
    Ls,
}

/// Whether an option takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    No,
    Required,
    Optional,
}

/// One option of a command's table.
struct Opt {
    short: Option<char>,
    long: &'static str,
    arg: Arg,
}

const fn o(short: char, long: &'static str, arg: Arg) -> Opt {
    Opt {
        short: Some(short),
        long,
        arg,
    }
}

const fn l(long: &'static str, arg: Arg) -> Opt {
    Opt {
        short: None,
        long,
        arg,
    }
}

/// Our options, valid in every command.
const EXTRAS: [Opt; 4] = [
    l("gpg", Arg::No),
    l("passphrase-file", Arg::Required),
    l("json", Arg::No),
    l("dry-run", Arg::No),
];

/// What getopt found: options in order (long name, value), then the operands.
struct Parsed {
    opts: Vec<(&'static str, Option<String>)>,
    operands: Vec<String>,
}

impl Parsed {
    fn has(&self, long: &str) -> bool {
        self.opts.iter().any(|(n, _)| *n == long)
    }
    /// The last value given to `long` (`Some(None)`: given without a value).
    fn last(&self, long: &str) -> Option<Option<&str>> {
        self.opts
            .iter()
            .rev()
            .find(|(n, _)| *n == long)
            .map(|(_, v)| v.as_deref())
    }
}

/// GNU getopt with permutation over `table` plus [`EXTRAS`].
fn getopt(args: &[String], table: &[Opt], usage: &str) -> Result<Parsed, ParseError> {
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

fn extras_of(p: &Parsed, base: &Extras) -> Extras {
    let mut e = base.clone();
    e.gpg |= p.has("gpg");
    e.json |= p.has("json");
    e.dry_run |= p.has("dry-run");
    if let Some(Some(f)) = p.last("passphrase-file") {
        e.passphrase_file = Some(PathBuf::from(f));
    }
    e
}

fn usage_err(usage: &str, message: impl Into<String>) -> ParseError {
    ParseError {
        message: message.into(),
        usage: usage.to_string(),
    }
}

/// `N` of `--clip=N`: pass's "Clip location 'x' is not a number.".
fn line_number(v: Option<&str>, usage: &str) -> Result<usize, ParseError> {
    match v {
        None => Ok(1),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| usage_err(usage, format!("Clip location '{s}' is not a number."))),
    }
}

fn number<T: std::str::FromStr>(
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

fn usage_for(cmd: &str) -> String {
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
fn grep_takes_next(a: &str) -> bool {
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
const COMMANDS: [&str; 35] = [
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

fn show(args: &[String], base: &Extras, u: &str) -> Result<(Extras, Cmd), ParseError> {
    let p = getopt(
        args,
        &[
            o('q', "qrcode", Arg::Optional),
            o('c', "clip", Arg::Optional),
            l("line", Arg::Required),
        ],
        u,
    )?;
    // pass takes the last of -c/-q for the line and refuses both together.
    let mut output = Output::Print;
    let (mut clip, mut qr) = (false, false);
    for (n, v) in &p.opts {
        match *n {
            "clip" => {
                clip = true;
                output = Output::Clip(line_number(v.as_deref(), u)?);
            }
            "qrcode" => {
                qr = true;
                output = Output::Qr(line_number(v.as_deref(), u)?);
            }
            _ => {}
        }
    }
    if clip && qr {
        return Err(usage_err(u, "--clip and --qrcode exclude each other"));
    }
    let line = number::<usize>(&p, "line", u)?;
    if line == Some(0) {
        return Err(usage_err(u, "--line counts from 1"));
    }
    let name = match p.operands.as_slice() {
        [] => None,
        [n] => Some(n.clone()),
        _ => return Err(usage_err(u, "give at most one pass-name")),
    };
    Ok((extras_of(&p, base), Cmd::Show { name, output, line }))
}

const OTP_NEW: [Opt; 5] = [
    o('f', "force", Arg::No),
    o('e', "echo", Arg::No),
    o('s', "secret", Arg::No),
    o('i', "issuer", Arg::Required),
    o('a', "account", Arg::Required),
];

fn otp_new(p: &Parsed) -> OtpNew {
    OtpNew {
        force: p.has("force"),
        echo: p.has("echo"),
        secret: p.has("secret"),
        issuer: p.last("issuer").flatten().map(str::to_string),
        account: p.last("account").flatten().map(str::to_string),
        name: p.operands.first().cloned(),
    }
}

fn otp(args: &[String], base: &Extras) -> Result<(Extras, Cmd), ParseError> {
    let sub = args.first().map(String::as_str);
    let tail = args.get(1..).unwrap_or(&[]);
    let (extras, cmd) = match sub {
        Some("help" | "--help" | "-h") => (base.clone(), OtpCmd::Help),
        Some("version" | "--version") => (base.clone(), OtpCmd::Version),
        Some("insert" | "add") => {
            let u = usage_for("otp insert");
            let p = getopt(tail, &OTP_NEW, &u)?;
            if p.operands.len() > 1 {
                return Err(usage_err(&u, "give at most one pass-name"));
            }
            (extras_of(&p, base), OtpCmd::Insert(otp_new(&p)))
        }
        Some("append") => {
            let u = usage_for("otp append");
            let p = getopt(tail, &OTP_NEW, &u)?;
            if p.operands.len() != 1 {
                return Err(usage_err(&u, "give exactly one pass-name"));
            }
            (extras_of(&p, base), OtpCmd::Append(otp_new(&p)))
        }
        Some("uri") => {
            let u = usage_for("otp uri");
            let p = getopt(
                tail,
                &[o('c', "clip", Arg::No), o('q', "qrcode", Arg::No)],
                &u,
            )?;
            let [name] = p.operands.as_slice() else {
                return Err(usage_err(&u, "give exactly one pass-name"));
            };
            let output = match (p.has("clip"), p.has("qrcode")) {
                (true, true) => {
                    return Err(usage_err(&u, "--clip and --qrcode exclude each other"))
                }
                (true, false) => Output::Clip(1),
                (false, true) => Output::Qr(1),
                _ => Output::Print,
            };
            (
                extras_of(&p, base),
                OtpCmd::Uri {
                    output,
                    name: name.clone(),
                },
            )
        }
        Some("validate") => {
            let u = "Usage: pass otp validate [uri]";
            let p = getopt(tail, &[], u)?;
            if p.operands.len() > 1 {
                return Err(usage_err(u, "give at most one URI"));
            }
            (
                extras_of(&p, base),
                OtpCmd::Validate {
                    uri: p.operands.first().cloned(),
                },
            )
        }
        other => {
            let words = if matches!(other, Some("code" | "show")) {
                tail
            } else {
                args
            };
            let u = usage_for("otp code");
            let p = getopt(words, &[o('c', "clip", Arg::No)], &u)?;
            let [name] = p.operands.as_slice() else {
                return Err(usage_err(&u, "give exactly one pass-name"));
            };
            (
                extras_of(&p, base),
                OtpCmd::Code {
                    clip: p.has("clip"),
                    name: name.clone(),
                },
            )
        }
    };
    Ok((extras, Cmd::Otp(cmd)))
}

fn key(args: &[String], base: &Extras) -> Result<(Extras, Cmd), ParseError> {
    let u = usage_for("key");
    let tail = args.get(1..).unwrap_or(&[]);
    let (extras, cmd) = match args.first().map(String::as_str) {
        Some("import") => {
            let p = getopt(
                tail,
                &[
                    l("unsealed", Arg::No),
                    l("key-passphrase-file", Arg::Required),
                    l("kdf-memory", Arg::Required),
                    l("kdf-iterations", Arg::Required),
                ],
                &u,
            )?;
            if !p.operands.is_empty() {
                return Err(usage_err(&u, "key import reads the key from stdin"));
            }
            (
                extras_of(&p, base),
                KeyCmd::Import {
                    unsealed: p.has("unsealed"),
                    key_passphrase_file: p.last("key-passphrase-file").flatten().map(PathBuf::from),
                    kdf_memory: number(&p, "kdf-memory", &u)?,
                    kdf_iterations: number(&p, "kdf-iterations", &u)?,
                },
            )
        }
        Some(w @ ("add" | "ls")) => {
            let p = getopt(tail, &[], &u)?;
            if !p.operands.is_empty() {
                return Err(usage_err(&u, format!("key {w} takes no arguments")));
            }
            let c = if w == "add" { KeyCmd::Add } else { KeyCmd::Ls };
            (extras_of(&p, base), c)
        }
        _ => return Err(usage_err(&u, "key needs import, add or ls")),
    };
    Ok((extras, Cmd::Key(cmd)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(words: &[&str]) -> Result<Invocation, ParseError> {
        let v: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        parse(&v)
    }
    fn cmd(words: &[&str]) -> Cmd {
        p(words).unwrap().command
    }

    #[test]
    fn bare_pass_lists_and_a_name_shows() {
        let list = Cmd::Show {
            name: None,
            output: Output::Print,
            line: None,
        };
        assert_eq!(cmd(&[]), list);
        assert_eq!(cmd(&["--gpg"]), list);
        assert_eq!(cmd(&["ls"]), list);
        assert_eq!(
            cmd(&["web/mail"]),
            Cmd::Show {
                name: Some("web/mail".into()),
                output: Output::Print,
                line: None
            }
        );
        assert_eq!(
            cmd(&["-c2", "web"]),
            Cmd::Show {
                name: Some("web".into()),
                output: Output::Clip(2),
                line: None
            }
        );
        assert_eq!(
            cmd(&["show", "web", "--clip=3"]),
            Cmd::Show {
                name: Some("web".into()),
                output: Output::Clip(3),
                line: None
            }
        );
        // An optional value never takes the next word.
        assert_eq!(
            cmd(&["show", "-c", "2"]),
            Cmd::Show {
                name: Some("2".into()),
                output: Output::Clip(1),
                line: None
            }
        );
        assert!(p(&["show", "-c", "-q", "x"]).is_err());
        assert!(p(&["show", "--clip=x", "a"]).is_err());
    }

    #[test]
    fn unknown_flags_are_errors_never_names() {
        for bad in [
            &["insert", "-x", "a"][..],
            &["generate", "--no-symbolz", "a"],
            &["otp", "insert", "-z"],
            &["rm", "--bogus", "a"],
            &["show", "-z", "a"],
            &["-z"],
            &["mv", "-r", "a", "b"],
        ] {
            let e = p(bad).unwrap_err();
            assert!(e.usage.starts_with("Usage: pass"), "{bad:?}: {e:?}");
        }
        // A unique prefix of a long option is that option, like getopt.
        assert!(matches!(
            cmd(&["generate", "--no-symbol", "a"][..]),
            Cmd::Generate { no_symbols: true, ref name, .. } if name == "a"
        ));
    }

    #[test]
    fn options_mix_with_operands_and_dash_dash_ends_them() {
        assert_eq!(
            cmd(&["insert", "a", "-mf"]),
            Cmd::Insert {
                echo: false,
                multiline: true,
                force: true,
                name: "a".into()
            }
        );
        assert_eq!(
            cmd(&["insert", "-e", "--", "-dash"]),
            Cmd::Insert {
                echo: true,
                multiline: false,
                force: false,
                name: "-dash".into()
            }
        );
        assert!(p(&["insert", "-e", "-m", "a"]).is_err());
        assert!(p(&["insert", "a", "b"]).is_err());
        assert_eq!(
            cmd(&["init", "-pteam", "K1", "K2"]),
            Cmd::Init {
                path: Some("team".into()),
                ids: vec!["K1".into(), "K2".into()]
            }
        );
        assert_eq!(
            cmd(&["init", "--path", "team", ""]),
            Cmd::Init {
                path: Some("team".into()),
                ids: vec![String::new()]
            }
        );
        assert!(p(&["generate", "-if", "a"]).is_err());
        assert!(matches!(
            cmd(&["generate", "--in", "a", "12"]),
            Cmd::Generate { in_place: true, ref length, .. } if length.as_deref() == Some("12")
        ));
        assert_eq!(
            cmd(&["git", "log", "--oneline", "-n1"]),
            Cmd::Git {
                args: vec!["log".into(), "--oneline".into(), "-n1".into()]
            }
        );
    }

    #[test]
    fn extras_anywhere_and_otp() {
        let i = p(&["show", "--json", "x", "--gpg"]).unwrap();
        assert!(i.extras.json && i.extras.gpg);
        let i = p(&["--passphrase-file", "/f", "grep", "-i", "x"]).unwrap();
        assert_eq!(i.extras.passphrase_file, Some(PathBuf::from("/f")));
        assert_eq!(
            i.command,
            Cmd::Grep {
                args: vec!["-i".into(), "x".into()]
            }
        );
        let i = p(&["grep", "-e", "--json", "--json", "--", "--gpg"]).unwrap();
        assert!(i.extras.json && !i.extras.gpg);
        assert_eq!(
            i.command,
            Cmd::Grep {
                args: vec!["-e".into(), "--json".into(), "--".into(), "--gpg".into()]
            }
        );
        assert_eq!(
            cmd(&["otp", "insert", "-s", "-i", "Iss", "--account=me", "n"]),
            Cmd::Otp(OtpCmd::Insert(OtpNew {
                force: false,
                echo: false,
                secret: true,
                issuer: Some("Iss".into()),
                account: Some("me".into()),
                name: Some("n".into())
            }))
        );
        assert_eq!(
            cmd(&["otp", "-c", "n"]),
            Cmd::Otp(OtpCmd::Code {
                clip: true,
                name: "n".into()
            })
        );
        assert_eq!(
            cmd(&["otp", "insert"]),
            Cmd::Otp(OtpCmd::Insert(OtpNew::default()))
        );
        assert!(p(&["otp", "append"]).is_err());
        assert!(p(&["otp", "insert", "-e", "-x"]).is_err());
        assert_eq!(cmd(&["lock"]), Cmd::Lock { all: false });
        assert_eq!(cmd(&["lock", "--all"]), Cmd::Lock { all: true });
    }
}
