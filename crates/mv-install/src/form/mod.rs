//! The interactive installer's form: the questions of the answer file, the answers so far, the
//! cursor and the status line, the keys that edit them, and the validation that writes the
//! answer file. Free of any terminal library: the CLI draws it (ratatui) and maps key events to
//! [`Key`].
//!
//! One list of questions ([`Row`]). [`Key::Up`]/[`Key::Down`] move; text fields take typing
//! ([`Key::Backspace`] deletes, [`Key::Clear`] clears); [`Key::Left`]/[`Key::Right`] cycle a field's
//! proposals (disks, tokens, NICs, keymaps) or a choice; `Space` toggles a checkbox; `Enter` on
//! "Write answers" asks for [`Form::submit`].
//!
//! The proposals come from the machine (`probe`: the largest fixed disk, removable or
//! USB devices as the token, NICs with a PCI device, GPUs for passthrough; CPU vendor and IOMMU
//! from `mv_host::check`), read under [`System::sys`].
//!
//! Writing: the passphrase (typed twice, masked, at least
//! [`MIN_PASSPHRASE_CHARS`](crate::MIN_PASSPHRASE_CHARS) characters)
//! goes to `<answers>.passphrase` (0600, [`passphrase_path`]), whose path is the answer file's
//! `passphrase_file`; it never reaches the screen, argv or a log. Before anything is written at
//! those paths, the answers are written into a private temporary folder and held against the
//! machine exactly as `install --answers` does ([`Answers::load`](crate::Answers::load) + `check`); a problem shows as
//! `FILE:LINE: what` in the status line and the cursor moves to the field it names. Both files
//! are written atomically (`mv_core::fsutil`).
//!
//! Main types: [`Form`], [`Row`], [`Key`], [`Action`], [`Status`].
//!
//! What this is not: drawing or reading the terminal (the CLI's `install_tui`).

mod answer;
#[cfg(test)]
mod tests;
mod view;

use crate::answers::{known_machines, TopologyKind, KNOWN_SERVICES};
use crate::{probe, System};
use mv_core::secret::SecretString;
use std::path::{Path, PathBuf};

/// Common console keymaps, cycled with `←`/`→` (any other name can be typed).
const KEYMAPS: &[&str] = &[
    "us", "gb", "de", "fr", "es", "it", "pt", "br", "ch", "se", "no", "dk", "fi", "nl", "be", "pl",
    "cz", "hu", "ru", "jp",
];

/// One row of the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// The target disk.
    Disk,
    /// The host image or root folder to copy.
    Source,
    /// The LUKS passphrase.
    Passphrase,
    /// The passphrase again.
    Again,
    /// The host name.
    Hostname,
    /// The console keymap.
    Keymap,
    /// The time zone.
    Timezone,
    /// The USB token.
    Token,
    /// The uplink NIC.
    Uplink,
    /// PCI devices passed through.
    Passthrough,
    /// Default or lab topology.
    Topology,
    /// The machine of this index (a checkbox).
    Machine(usize),
    /// The service of this index (a checkbox).
    Service(usize),
    /// The recovery words file.
    Words,
    /// The serial console.
    Console,
    /// Whether to erase a disk with a partition table.
    Erase,
    /// argon2id or pbkdf2 for LUKS.
    Pbkdf,
    /// PBKDF2 iterations.
    Iterations,
    /// Argon2id memory of the token image.
    KdfMemory,
    /// The "Write answers" button.
    Write,
}

/// A text answer with the values `←`/`→` cycle through (value, description).
#[derive(Debug, Default)]
struct Text {
    value: String,
    choices: Vec<(String, String)>,
}

impl Text {
    fn new(value: &str) -> Text {
        Text {
            value: value.to_string(),
            choices: Vec::new(),
        }
    }
    fn with_choices(choices: Vec<(String, String)>, first: bool) -> Text {
        Text {
            value: if first {
                choices.first().map(|c| c.0.clone()).unwrap_or_default()
            } else {
                String::new()
            },
            choices,
        }
    }
    fn cycle(&mut self, forward: bool) {
        let n = self.choices.len();
        if n == 0 {
            return;
        }
        let next = match self.choices.iter().position(|c| c.0 == self.value) {
            Some(i) if forward => (i + 1) % n,
            Some(i) => (i + n - 1) % n,
            None if forward => 0,
            None => n - 1,
        };
        self.value = self.choices[next].0.clone();
    }
    fn description(&self) -> Option<&str> {
        self.choices
            .iter()
            .find(|c| c.0 == self.value)
            .map(|c| c.1.as_str())
    }
}

/// Everything on the screen: the answers so far, the cursor and the status line.
#[derive(Debug)]
pub struct Form {
    out: PathBuf,
    system: System,
    /// CPU, IOMMU and what was found, for the line under the title.
    summary: String,
    disk: Text,
    source: Text,
    passphrase: SecretString,
    again: SecretString,
    hostname: Text,
    keymap: Text,
    timezone: Text,
    token: Text,
    uplink: Text,
    passthrough: Text,
    lab: bool,
    machines: Vec<(String, bool)>,
    services: Vec<(String, bool)>,
    words: Text,
    console: Text,
    erase: bool,
    pbkdf2: bool,
    iterations: Text,
    kdf_memory: Text,
    cursor: usize,
    status: Status,
}

/// The status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Information.
    Info(String),
    /// A problem with the answers (shown in red).
    Error(String),
}

/// What a key asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Keep asking.
    Continue,
    /// Validate and write ([`Form::submit`]).
    Submit,
    /// Quit without writing.
    Cancel,
}

/// A key, as the form understands it (the terminal's key events are mapped to these by the CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// Previous row (`↑`, `Shift-Tab`).
    Up,
    /// Next row (`↓`, `Tab`).
    Down,
    /// First row (`Home`, `PageUp`).
    First,
    /// Last row (`End`, `PageDown`).
    Last,
    /// `Enter`: next row, or submit on "Write answers".
    Enter,
    /// Previous proposal or choice (`←`).
    Left,
    /// Next proposal or choice (`→`).
    Right,
    /// Delete the last character.
    Backspace,
    /// Clear the field (`Ctrl-U`).
    Clear,
    /// Quit (`Esc`, `Ctrl-C`).
    Cancel,
    /// A typed character (`Space` toggles a checkbox).
    Char(char),
}

fn machine_rows(lab: bool) -> Vec<(String, bool)> {
    let kind = if lab {
        TopologyKind::Lab
    } else {
        TopologyKind::Default
    };
    known_machines(kind)
        .into_iter()
        .map(|m| (m, true))
        .collect()
}

/// The passphrase file written beside `out`: `<out>.passphrase`.
pub fn passphrase_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_os_string();
    s.push(".passphrase");
    PathBuf::from(s)
}

impl Form {
    /// The form for an answer file at `out`, with proposals probed from `system`.
    pub fn new(out: &Path, system: System) -> Form {
        let sys = &system.sys;
        let disks = probe::target_disks(sys);
        let tokens = probe::token_candidates(sys);
        let nics = probe::nics(sys);
        let gpus = probe::gpus(sys);
        let report = mv_host::check(
            &mv_host::Roots {
                sys: sys.clone(),
                proc_root: system.proc_root.clone(),
            },
            &[],
        );
        let iommu = if report.groups.is_empty() {
            "IOMMU off".to_string()
        } else {
            format!("IOMMU on ({} groups)", report.groups.len())
        };
        let gpu_text = if gpus.is_empty() {
            "no GPU".to_string()
        } else {
            let v: Vec<String> = gpus
                .iter()
                .map(|g| format!("{} [{}]", g.pci, g.id))
                .collect();
            format!("GPU {}", v.join(", "))
        };
        let summary = format!(
            "CPU {} · {iommu} · {} disks · {} token candidates · {} NICs · {gpu_text}",
            report.cpu,
            disks.len(),
            tokens.len(),
            nics.len()
        );
        let disk_choices = disks
            .iter()
            .map(|d| (d.dev.display().to_string(), d.describe()))
            .collect();
        let mut token_choices: Vec<(String, String)> = vec![(
            String::new(),
            "no token: the passphrase alone unlocks".into(),
        )];
        token_choices.extend(
            tokens
                .iter()
                .map(|d| (d.dev.display().to_string(), d.describe())),
        );
        let mut token = Text::with_choices(token_choices, true);
        if !tokens.is_empty() {
            token.cycle(true);
        }
        let mut uplink_choices: Vec<(String, String)> =
            vec![(String::new(), "none: universe gets no NIC".into())];
        uplink_choices.extend(nics.iter().map(|n| (n.name.clone(), n.pci.clone())));
        let mut uplink = Text::with_choices(uplink_choices, true);
        if !nics.is_empty() {
            uplink.cycle(true);
        }
        let mut keymap = Text::new("us");
        keymap.choices = KEYMAPS
            .iter()
            .map(|k| (k.to_string(), String::new()))
            .collect();
        let mut console = Text::new("");
        console.choices = vec![
            (String::new(), "the screen only".into()),
            ("ttyS0,115200".into(), "first serial port".into()),
            ("ttyS1,115200".into(), "second serial port".into()),
        ];
        Form {
            out: out.to_path_buf(),
            summary,
            disk: Text::with_choices(disk_choices, true),
            source: Text::new(""),
            passphrase: SecretString::default(),
            again: SecretString::default(),
            hostname: Text::new("host"),
            keymap,
            timezone: Text::new("UTC"),
            token,
            uplink,
            passthrough: Text::new(""),
            lab: false,
            machines: machine_rows(false),
            services: KNOWN_SERVICES
                .iter()
                .map(|s| (s.to_string(), false))
                .collect(),
            words: Text::new(""),
            console,
            erase: false,
            pbkdf2: false,
            iterations: Text::new(""),
            kdf_memory: Text::new("262144"),
            cursor: 0,
            status: Status::Info(
                "Nothing is written before you choose \"Write answers\"; Esc quits.".into(),
            ),
            system,
        }
    }

    /// The rows on the screen, in order.
    pub fn rows(&self) -> Vec<Row> {
        let mut r = vec![
            Row::Disk,
            Row::Source,
            Row::Passphrase,
            Row::Again,
            Row::Hostname,
            Row::Keymap,
            Row::Timezone,
            Row::Token,
            Row::Uplink,
            Row::Passthrough,
            Row::Topology,
        ];
        r.extend((0..self.machines.len()).map(Row::Machine));
        r.extend((0..self.services.len()).map(Row::Service));
        r.extend([Row::Words, Row::Console, Row::Erase, Row::Pbkdf]);
        if self.pbkdf2 {
            r.push(Row::Iterations);
        }
        r.extend([Row::KdfMemory, Row::Write]);
        r
    }

    /// The row under the cursor.
    pub fn current(&self) -> Row {
        let rows = self.rows();
        rows[self.cursor.min(rows.len() - 1)]
    }

    fn go_to(&mut self, row: Row) {
        if let Some(i) = self.rows().iter().position(|r| *r == row) {
            self.cursor = i;
        }
    }

    fn text_mut(&mut self, row: Row) -> Option<&mut Text> {
        Some(match row {
            Row::Disk => &mut self.disk,
            Row::Source => &mut self.source,
            Row::Hostname => &mut self.hostname,
            Row::Keymap => &mut self.keymap,
            Row::Timezone => &mut self.timezone,
            Row::Token => &mut self.token,
            Row::Uplink => &mut self.uplink,
            Row::Passthrough => &mut self.passthrough,
            Row::Words => &mut self.words,
            Row::Console => &mut self.console,
            Row::Iterations => &mut self.iterations,
            Row::KdfMemory => &mut self.kdf_memory,
            _ => return None,
        })
    }

    /// Whether typing edits this row.
    pub fn is_text(row: Row) -> bool {
        !matches!(
            row,
            Row::Topology
                | Row::Machine(_)
                | Row::Service(_)
                | Row::Erase
                | Row::Pbkdf
                | Row::Write
        )
    }

    fn secret_mut(&mut self, row: Row) -> Option<&mut String> {
        match row {
            Row::Passphrase => Some(self.passphrase.expose_mut()),
            Row::Again => Some(self.again.expose_mut()),
            _ => None,
        }
    }

    /// Cycles a choice, a text field's proposals, or toggles a checkbox.
    fn cycle(&mut self, row: Row, forward: bool) {
        match row {
            Row::Topology => {
                self.lab = !self.lab;
                self.machines = machine_rows(self.lab);
            }
            Row::Erase => self.erase = !self.erase,
            Row::Pbkdf => self.pbkdf2 = !self.pbkdf2,
            Row::Machine(i) => {
                if let Some(m) = self.machines.get_mut(i) {
                    m.1 = !m.1;
                }
            }
            Row::Service(i) => {
                if let Some(s) = self.services.get_mut(i) {
                    s.1 = !s.1;
                }
            }
            other => {
                if let Some(t) = self.text_mut(other) {
                    t.cycle(forward);
                }
            }
        }
    }

    /// Applies one key.
    pub fn key(&mut self, k: Key) -> Action {
        let last = self.rows().len() - 1;
        let row = self.current();
        match k {
            Key::Cancel => return Action::Cancel,
            Key::Up => self.cursor = self.cursor.saturating_sub(1),
            Key::Down => self.cursor = (self.cursor + 1).min(last),
            Key::First => self.cursor = 0,
            Key::Last => self.cursor = last,
            Key::Enter if row == Row::Write => return Action::Submit,
            Key::Enter => self.cursor = (self.cursor + 1).min(last),
            Key::Left | Key::Right => self.cycle(row, k == Key::Right),
            Key::Clear => {
                if let Some(s) = self.secret_mut(row) {
                    s.clear();
                } else if let Some(t) = self.text_mut(row) {
                    t.value.clear();
                }
            }
            Key::Backspace => {
                if let Some(s) = self.secret_mut(row) {
                    s.pop();
                } else if let Some(t) = self.text_mut(row) {
                    t.value.pop();
                }
            }
            Key::Char(c) => {
                if let Some(s) = self.secret_mut(row) {
                    s.push(c);
                } else if let Some(t) = self.text_mut(row) {
                    t.value.push(c);
                } else if c == ' ' {
                    self.cycle(row, true);
                }
            }
        }
        Action::Continue
    }

    fn passthrough_list(&self) -> Vec<&str> {
        self.passthrough
            .value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .collect()
    }
}
