//! The parsed form of pass's command line: [`Invocation`], [`Cmd`] and their parts.

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
