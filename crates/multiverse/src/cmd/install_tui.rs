//! The interactive installer: asks the questions of the answer file on one screen (ratatui, in the
//! spirit of `setup-alpine`) and writes it.
//!
//! One list of questions. `↑`/`↓` (and `Tab`/`Shift-Tab`) move; text fields take typing
//! (`Backspace` deletes, `Ctrl-U` clears); `←`/`→` cycle a field's proposals (disks, tokens, NICs,
//! keymaps) or a choice; `Space` toggles a checkbox; `Enter` on "Write answers" validates and
//! writes; `Esc` or `Ctrl-C` quits without writing (exit 1).
//!
//! The proposals come from this machine ([`mv_install::probe`]: the largest fixed disk, removable or
//! USB devices as the token, NICs with a PCI device, GPUs for passthrough; CPU vendor and IOMMU
//! from `mv_host::check`). `MULTIVERSE_INSTALL_SYS` points both at another sysfs root: tests use
//! it with a fixture tree, and it also serves to validate the uplink and passthrough answers.
//!
//! Writing: the passphrase (typed twice, masked, at least
//! [`mv_install::answers::MIN_PASSPHRASE_CHARS`] characters) goes to `<answers>.passphrase`
//! (0600), whose path is the answer file's `passphrase_file`; it never reaches the screen, argv or
//! a log. Before anything is written at those paths, the answers are written into a private
//! temporary folder and held against the machine exactly as `install --answers` does
//! ([`mv_install::Answers::load`] + `check`); a problem shows as `FILE:LINE: what` in the status
//! line and the cursor moves to the field it names. Both files are written atomically
//! (`mv_core::fsutil`).
//!
//! What this is not: the installer; it only writes the answer file `multiverse install --answers`
//! reads (docs/install.md, `contrib/install/answers.toml`).

use crate::error::CliError;
use mv_core::secret::SecretString;
use mv_install::answers::{known_machines, TopologyKind, KNOWN_SERVICES, MIN_PASSPHRASE_CHARS};
use mv_install::{probe, Answers, System};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// The environment variable naming the sysfs root the proposals and checks read (default `/sys`).
pub const SYS_ENV: &str = "MULTIVERSE_INSTALL_SYS";

/// Common console keymaps, cycled with `←`/`→` (any other name can be typed).
const KEYMAPS: &[&str] = &[
    "us", "gb", "de", "fr", "es", "it", "pt", "br", "ch", "se", "no", "dk", "fi", "nl", "be", "pl",
    "cz", "hu", "ru", "jp",
];

/// One row of the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    Disk,
    Source,
    Passphrase,
    Again,
    Hostname,
    Keymap,
    Timezone,
    Token,
    Uplink,
    Passthrough,
    Topology,
    Machine(usize),
    Service(usize),
    Words,
    Console,
    Erase,
    Pbkdf,
    Iterations,
    KdfMemory,
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
struct Form {
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Info(String),
    Error(String),
}

/// What a key asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Continue,
    Submit,
    Cancel,
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

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if c.is_control() => q.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn quote_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = items.map(quote).collect();
    format!("[{}]", v.join(", "))
}

/// The passphrase file written beside `out`: `<out>.passphrase`.
pub fn passphrase_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_os_string();
    s.push(".passphrase");
    PathBuf::from(s)
}

impl Form {
    fn new(out: &Path, system: System) -> Form {
        let sys = &system.sys;
        let disks = probe::target_disks(sys);
        let tokens = probe::token_candidates(sys);
        let nics = probe::nics(sys);
        let gpus = probe::gpus(sys);
        let report = mv_host::check::check(
            &mv_host::check::Roots {
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

    fn rows(&self) -> Vec<Row> {
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

    fn current(&self) -> Row {
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
    fn is_text(row: Row) -> bool {
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

    fn key(&mut self, k: KeyEvent) -> Action {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let last = self.rows().len() - 1;
        let row = self.current();
        match k.code {
            KeyCode::Esc => return Action::Cancel,
            KeyCode::Char('c') if ctrl => return Action::Cancel,
            KeyCode::Up | KeyCode::BackTab => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Down | KeyCode::Tab => self.cursor = (self.cursor + 1).min(last),
            KeyCode::Home | KeyCode::PageUp => self.cursor = 0,
            KeyCode::End | KeyCode::PageDown => self.cursor = last,
            KeyCode::Enter if row == Row::Write => return Action::Submit,
            KeyCode::Enter => self.cursor = (self.cursor + 1).min(last),
            KeyCode::Left | KeyCode::Right => self.cycle(row, k.code == KeyCode::Right),
            KeyCode::Char('u') if ctrl => {
                if let Some(s) = self.secret_mut(row) {
                    s.clear();
                } else if let Some(t) = self.text_mut(row) {
                    t.value.clear();
                }
            }
            KeyCode::Backspace => {
                if let Some(s) = self.secret_mut(row) {
                    s.pop();
                } else if let Some(t) = self.text_mut(row) {
                    t.value.pop();
                }
            }
            KeyCode::Char(c) if !ctrl => {
                if let Some(s) = self.secret_mut(row) {
                    s.push(c);
                } else if let Some(t) = self.text_mut(row) {
                    t.value.push(c);
                } else if c == ' ' {
                    self.cycle(row, true);
                }
            }
            _ => {}
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

    /// What the screen can tell without the machine: every answer present and of the right shape.
    fn precheck(&self) -> Result<(), (Row, String)> {
        let need = |row: Row, t: &Text, what: &str| {
            if t.value.trim().is_empty() {
                Err((row, what.to_string()))
            } else {
                Ok(())
            }
        };
        need(
            Row::Disk,
            &self.disk,
            "disk: type the whole disk to install on (e.g. /dev/nvme0n1)",
        )?;
        need(
            Row::Source,
            &self.source,
            "source: type the host image or root folder to install from",
        )?;
        let p = self.passphrase.expose();
        if p.chars().count() < MIN_PASSPHRASE_CHARS {
            return Err((
                Row::Passphrase,
                format!("passphrase: at least {MIN_PASSPHRASE_CHARS} characters"),
            ));
        }
        if p.chars().any(char::is_control) {
            return Err((Row::Passphrase, "passphrase: no control characters".into()));
        }
        if p != self.again.expose() {
            return Err((
                Row::Again,
                "passphrase: the two entries do not match".into(),
            ));
        }
        need(Row::Hostname, &self.hostname, "hostname: type a host name")?;
        need(Row::Keymap, &self.keymap, "keymap: type a keymap (e.g. us)")?;
        need(
            Row::Timezone,
            &self.timezone,
            "timezone: type a time zone (e.g. UTC, Europe/Berlin)",
        )?;
        if !self.machines.iter().any(|m| m.1) {
            return Err((Row::Machine(0), "machines: check at least one".into()));
        }
        if self.pbkdf2
            && !self.iterations.value.trim().is_empty()
            && self.iterations.value.trim().parse::<u32>().is_err()
        {
            return Err((
                Row::Iterations,
                "luks.iterations: a whole number (at least 1000)".into(),
            ));
        }
        if self.kdf_memory.value.trim().parse::<u32>().is_err() {
            return Err((
                Row::KdfMemory,
                "kdf_memory_kib: a whole number of KiB (e.g. 262144)".into(),
            ));
        }
        Ok(())
    }

    /// The answer file naming `passphrase_file`, and the row each line answers.
    fn render(&self, passphrase_file: &Path) -> (String, Vec<Option<Row>>) {
        let mut text = String::new();
        let mut lines: Vec<Option<Row>> = Vec::new();
        let mut put = |row: Option<Row>, line: String| {
            text.push_str(&line);
            text.push('\n');
            lines.push(row);
        };
        put(
            None,
            "# The answers of `multiverse install`, written by the interactive installer.".into(),
        );
        put(
            None,
            "# docs/install.md describes every field; install with `multiverse install --answers FILE`."
                .into(),
        );
        let t = |t: &Text| t.value.trim().to_string();
        put(Some(Row::Disk), format!("disk = {}", quote(&t(&self.disk))));
        put(
            Some(Row::Source),
            format!("source = {}", quote(&t(&self.source))),
        );
        put(
            Some(Row::Passphrase),
            format!(
                "passphrase_file = {}",
                quote(&passphrase_file.to_string_lossy())
            ),
        );
        put(
            Some(Row::Hostname),
            format!("hostname = {}", quote(&t(&self.hostname))),
        );
        put(
            Some(Row::Keymap),
            format!("keymap = {}", quote(&t(&self.keymap))),
        );
        put(
            Some(Row::Timezone),
            format!("timezone = {}", quote(&t(&self.timezone))),
        );
        if !t(&self.token).is_empty() {
            put(
                Some(Row::Token),
                format!("token = {}", quote(&t(&self.token))),
            );
        }
        if !t(&self.uplink).is_empty() {
            put(
                Some(Row::Uplink),
                format!("uplink = {}", quote(&t(&self.uplink))),
            );
        }
        put(
            Some(Row::Passthrough),
            format!(
                "passthrough = {}",
                quote_list(self.passthrough_list().into_iter())
            ),
        );
        put(
            Some(Row::Topology),
            format!(
                "topology = {}",
                quote(if self.lab { "lab" } else { "default" })
            ),
        );
        put(
            Some(Row::Machine(0)),
            format!(
                "machines = {}",
                quote_list(self.machines.iter().filter(|m| m.1).map(|m| m.0.as_str()))
            ),
        );
        put(
            Some(Row::Service(0)),
            format!(
                "services = {}",
                quote_list(self.services.iter().filter(|s| s.1).map(|s| s.0.as_str()))
            ),
        );
        if !t(&self.words).is_empty() {
            put(
                Some(Row::Words),
                format!("words_file = {}", quote(&t(&self.words))),
            );
        }
        if !t(&self.console).is_empty() {
            put(
                Some(Row::Console),
                format!("console = {}", quote(&t(&self.console))),
            );
        }
        put(Some(Row::Erase), format!("erase = {}", self.erase));
        put(
            Some(Row::KdfMemory),
            format!("kdf_memory_kib = {}", t(&self.kdf_memory)),
        );
        put(None, String::new());
        put(Some(Row::Pbkdf), "[luks]".into());
        put(
            Some(Row::Pbkdf),
            format!(
                "pbkdf = {}",
                quote(if self.pbkdf2 { "pbkdf2" } else { "argon2id" })
            ),
        );
        if self.pbkdf2 && !t(&self.iterations).is_empty() {
            put(
                Some(Row::Iterations),
                format!("iterations = {}", t(&self.iterations)),
            );
        }
        (text, lines)
    }

    /// Validates and writes; on a problem, sets the status line and the cursor and writes nothing.
    fn submit(&mut self) -> bool {
        if let Err((row, msg)) = self.precheck() {
            self.go_to(row);
            self.status = Status::Error(msg);
            return false;
        }
        match self.try_write() {
            Ok(()) => true,
            Err((row, msg)) => {
                if let Some(row) = row {
                    self.go_to(row);
                }
                self.status = Status::Error(msg);
                false
            }
        }
    }

    fn try_write(&self) -> Result<(), (Option<Row>, String)> {
        let final_pp = passphrase_path(&self.out);
        let parent = self
            .out
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && p.is_dir())
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        let scratch = tempfile::Builder::new()
            .prefix(".multiverse-install-")
            .tempdir_in(&parent)
            .map_err(|e| {
                (
                    None,
                    format!("cannot make a scratch folder in {}: {e}", parent.display()),
                )
            })?;
        let tmp_pp = scratch.path().join("passphrase");
        let tmp_answers = scratch.path().join("answers.toml");
        let (tmp_text, lines) = self.render(&tmp_pp);
        let io = |what: &Path, e: &dyn std::fmt::Display| {
            (None, format!("cannot write {}: {e}", what.display()))
        };
        mv_core::fsutil::write_secret(&tmp_pp, self.passphrase.expose().as_bytes())
            .map_err(|e| io(&tmp_pp, &e))?;
        mv_core::fsutil::write_atomic(&tmp_answers, tmp_text.as_bytes(), 0o600)
            .map_err(|e| io(&tmp_answers, &e))?;
        let checked = Answers::load(&tmp_answers).and_then(|a| a.check(&self.system));
        if let Err(e) = checked {
            let row = lines.get(e.line.wrapping_sub(1)).copied().flatten();
            let message = e
                .message
                .replace(&*tmp_pp.to_string_lossy(), &final_pp.to_string_lossy());
            return Err((row, format!("{}:{}: {message}", self.out.display(), e.line)));
        }
        drop(checked);
        drop(scratch);
        let (text, _) = self.render(&final_pp);
        mv_core::fsutil::write_secret(&final_pp, self.passphrase.expose().as_bytes())
            .map_err(|e| io(&final_pp, &e))?;
        mv_core::fsutil::write_atomic(&self.out, text.as_bytes(), 0o644)
            .map_err(|e| io(&self.out, &e))?;
        Ok(())
    }

    fn label(&self, row: Row) -> String {
        match row {
            Row::Disk => "Disk".into(),
            Row::Source => "Source".into(),
            Row::Passphrase => "Passphrase".into(),
            Row::Again => "Passphrase again".into(),
            Row::Hostname => "Hostname".into(),
            Row::Keymap => "Keymap".into(),
            Row::Timezone => "Timezone".into(),
            Row::Token => "USB token".into(),
            Row::Uplink => "Uplink NIC".into(),
            Row::Passthrough => "Passthrough".into(),
            Row::Topology => "Topology".into(),
            Row::Machine(0) => "Machines".into(),
            Row::Service(0) => "Services".into(),
            Row::Machine(_) | Row::Service(_) => String::new(),
            Row::Words => "Recovery words".into(),
            Row::Console => "Serial console".into(),
            Row::Erase => "Erase the disk".into(),
            Row::Pbkdf => "LUKS pbkdf".into(),
            Row::Iterations => "PBKDF2 rounds".into(),
            Row::KdfMemory => "KDF memory KiB".into(),
            Row::Write => String::new(),
        }
    }

    /// The value as shown (passphrases masked) and a grey hint.
    fn value(&self, row: Row) -> (String, String) {
        let text = |t: &Text, empty: &str| {
            let hint = t.description().unwrap_or_default().to_string();
            let hint = if t.value.is_empty() && hint.is_empty() {
                empty.to_string()
            } else {
                hint
            };
            (t.value.clone(), hint)
        };
        let check = |on: bool| if on { "[x]" } else { "[ ]" };
        match row {
            Row::Disk => text(&self.disk, "type a disk or an image file (erased!)"),
            Row::Source => text(&self.source, "the host image or root folder to copy"),
            Row::Passphrase => (
                "*".repeat(self.passphrase.expose().chars().count()),
                format!(
                    "unlocks LUKS without the token; at least {MIN_PASSPHRASE_CHARS} characters"
                ),
            ),
            Row::Again => (
                "*".repeat(self.again.expose().chars().count()),
                String::new(),
            ),
            Row::Hostname => text(&self.hostname, ""),
            Row::Keymap => text(&self.keymap, "←→ or type"),
            Row::Timezone => text(&self.timezone, "Area/City or UTC"),
            Row::Token => {
                let (v, hint) = text(&self.token, "no token");
                let hint = if v.is_empty() {
                    hint
                } else if hint.is_empty() {
                    "wiped and formatted".to_string()
                } else {
                    format!("{hint} · wiped and formatted")
                };
                (v, hint)
            }
            Row::Uplink => text(&self.uplink, "none"),
            Row::Passthrough => text(&self.passthrough, "PCI addresses, comma-separated"),
            Row::Topology => (
                if self.lab { "lab" } else { "default" }.into(),
                "←→: default (DESIGN.md) or lab (Debian, virtio NIC)".into(),
            ),
            Row::Machine(i) => self
                .machines
                .get(i)
                .map(|m| (format!("{} {}", check(m.1), m.0), String::new()))
                .unwrap_or_default(),
            Row::Service(i) => self
                .services
                .get(i)
                .map(|s| {
                    (
                        format!("{} {}", check(s.1), s.0),
                        "listening; off by default".into(),
                    )
                })
                .unwrap_or_default(),
            Row::Words => text(
                &self.words,
                "a file of 24 words, or empty for a new identity",
            ),
            Row::Console => text(&self.console, "the screen only"),
            Row::Erase => (
                if self.erase { "yes" } else { "no" }.into(),
                "yes: a disk with a partition table is erased".into(),
            ),
            Row::Pbkdf => (
                if self.pbkdf2 { "pbkdf2" } else { "argon2id" }.into(),
                "argon2id for a real host".into(),
            ),
            Row::Iterations => text(&self.iterations, "empty: 1000"),
            Row::KdfMemory => text(&self.kdf_memory, ""),
            Row::Write => (
                "[ Write answers ]".into(),
                format!("to {}", self.out.display()),
            ),
        }
    }
}

/// The columns before a value: the cursor mark and the label.
const LABEL_WIDTH: u16 = 19;

fn draw(f: &mut Frame<'_>, form: &Form) {
    let [head, summary, body, status, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(2),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                "Multiverse install",
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!("  answers → {}", form.out.display())),
        ])),
        head,
    );
    f.render_widget(
        Paragraph::new(form.summary.as_str()).style(Style::default().fg(Color::DarkGray)),
        summary,
    );
    let rows = form.rows();
    let width = usize::from(body.width.saturating_sub(LABEL_WIDTH) / 2).clamp(20, 44);
    let items: Vec<ListItem> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mark = if i == form.cursor { "> " } else { "  " };
            let (value, hint) = form.value(*r);
            let mut spans = vec![
                Span::raw(format!("{mark}{:<17}", form.label(*r))),
                Span::styled(
                    format!("{value:<width$}"),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
            ];
            if !hint.is_empty() {
                spans.push(Span::styled(
                    format!(" {hint}"),
                    Style::default().fg(Color::DarkGray),
                ));
            }
            ListItem::new(Line::from(spans))
        })
        .collect();
    let mut state = ListState::default().with_selected(Some(form.cursor));
    f.render_stateful_widget(
        List::new(items).highlight_style(Style::default().add_modifier(Modifier::REVERSED)),
        body,
        &mut state,
    );
    // The terminal's cursor sits at the end of the text being typed.
    let row = form.current();
    if Form::is_text(row) {
        let value_width = Span::raw(form.value(row).0).width();
        let line = form.cursor.saturating_sub(state.offset());
        if let (Ok(dx), Ok(dy)) = (u16::try_from(value_width), u16::try_from(line)) {
            if dy < body.height {
                f.set_cursor_position((
                    (body.x + LABEL_WIDTH)
                        .saturating_add(dx)
                        .min(body.right().saturating_sub(1)),
                    body.y + dy,
                ));
            }
        }
    }
    let (text, style) = match &form.status {
        Status::Info(s) => (s.as_str(), Style::default()),
        Status::Error(s) => (s.as_str(), Style::default().fg(Color::Red)),
    };
    f.render_widget(
        Paragraph::new(text).style(style).wrap(Wrap { trim: false }),
        status,
    );
    f.render_widget(
        Paragraph::new(
            "↑↓ Tab: move · type, Backspace, Ctrl-U: edit · ←→: proposals · Space: toggle · Esc: quit",
        )
        .style(Style::default().fg(Color::DarkGray)),
        help,
    );
}

/// The sysfs root the proposals and checks read: `$MULTIVERSE_INSTALL_SYS` or `/sys`.
fn system() -> System {
    let mut s = System::default();
    if let Some(p) = std::env::var_os(SYS_ENV).filter(|p| !p.is_empty()) {
        s.sys = PathBuf::from(p);
    }
    s
}

/// Asks every question and writes the answer file to `out` (and the passphrase beside it).
pub fn interactive(out: &Path) -> Result<(), CliError> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(
            CliError::usage_msg("the interactive installer needs a terminal").with_hint(
                "write an answer file (contrib/install/answers.toml) and pass --answers FILE",
            ),
        );
    }
    let mut form = Form::new(out, system());
    let mut terminal = ratatui::try_init()?;
    let result = ui_loop(&mut terminal, &mut form);
    ratatui::restore();
    match result? {
        true => {
            eprintln!(
                "wrote {} (the passphrase is in {}, mode 0600)",
                out.display(),
                passphrase_path(out).display()
            );
            Ok(())
        }
        false => Err(CliError::failure_msg("cancelled, nothing written")),
    }
}

/// Runs until the answers are written (`true`) or the person quits (`false`).
fn ui_loop(terminal: &mut ratatui::DefaultTerminal, form: &mut Form) -> std::io::Result<bool> {
    loop {
        terminal.draw(|f| draw(f, form))?;
        let Event::Key(k) = event::read()? else {
            continue;
        };
        if k.kind != KeyEventKind::Press {
            continue;
        }
        match form.key(k) {
            Action::Continue => {}
            Action::Cancel => return Ok(false),
            Action::Submit => {
                if form.submit() {
                    return Ok(true);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn form() -> (tempfile::TempDir, Form) {
        let d = tempfile::tempdir().unwrap();
        let system = System {
            sys: d.path().join("sys"),
            ..System::default()
        };
        let f = Form::new(&d.path().join("a.toml"), system);
        (d, f)
    }

    fn press(f: &mut Form, code: KeyCode) -> Action {
        f.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn typ(f: &mut Form, s: &str) {
        for c in s.chars() {
            press(f, KeyCode::Char(c));
        }
    }

    #[test]
    fn quoting_is_toml() {
        assert_eq!(quote("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
        assert_eq!(
            passphrase_path(Path::new("/r/a.toml")),
            Path::new("/r/a.toml.passphrase")
        );
    }

    #[test]
    fn keys_edit_move_toggle_and_the_passphrase_is_masked() {
        let (_d, mut f) = form();
        typ(&mut f, "/dev/x");
        assert_eq!(f.disk.value, "/dev/x");
        press(&mut f, KeyCode::Backspace);
        assert_eq!(f.disk.value, "/dev/");
        press(&mut f, KeyCode::Down);
        press(&mut f, KeyCode::Tab);
        assert_eq!(f.current(), Row::Passphrase);
        typ(&mut f, "sekrit words");
        assert_eq!(f.passphrase.expose(), "sekrit words");
        f.go_to(Row::Topology);
        press(&mut f, KeyCode::Right);
        assert!(f.lab);
        f.go_to(Row::Machine(1));
        typ(&mut f, " ");
        assert!(!f.machines[1].1);
        let mut t = Terminal::new(TestBackend::new(120, 40)).unwrap();
        t.draw(|fr| draw(fr, &f)).unwrap();
        let screen: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(screen.contains("************"), "{screen}");
        assert!(!screen.contains("sekrit"), "{screen}");
        assert!(screen.contains("Write answers"), "{screen}");
        assert_eq!(press(&mut f, KeyCode::Esc), Action::Cancel);
    }

    #[test]
    fn a_short_or_mismatched_passphrase_writes_nothing() {
        let (d, mut f) = form();
        f.disk.value = "/dev/x".into();
        f.source.value = "/src".into();
        typ(&mut f, "");
        f.passphrase = SecretString::new("short".into());
        assert!(!f.submit());
        assert_eq!(f.current(), Row::Passphrase);
        f.passphrase = SecretString::new("long enough".into());
        f.again = SecretString::new("long enougH".into());
        assert!(!f.submit());
        assert_eq!(f.current(), Row::Again);
        assert!(matches!(&f.status, Status::Error(m) if m.contains("do not match")));
        f.again = SecretString::new("long enough".into());
        // Now the machine check: /dev/x is no disk; the cursor goes to the disk.
        assert!(!f.submit());
        assert_eq!(f.current(), Row::Disk);
        assert!(
            matches!(&f.status, Status::Error(m) if m.contains("a.toml:3: disk: /dev/x")),
            "{:?}",
            f.status
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_refused_answer_moves_the_cursor_to_its_field_and_a_good_one_writes_both_files() {
        let (d, mut f) = form();
        let inputs = tempfile::tempdir().unwrap();
        let disk = inputs.path().join("disk.img");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(5 << 30)
            .unwrap();
        let source = inputs.path().join("src.img");
        std::fs::write(&source, b"x").unwrap();
        f.disk.value = disk.display().to_string();
        f.source.value = source.display().to_string();
        f.passphrase = SecretString::new("long enough".into());
        f.again = SecretString::new("long enough".into());
        f.token.value.clear();
        f.uplink.value.clear();
        f.timezone.value = "Mars/Olympus_Mons".into();
        assert!(!f.submit());
        assert_eq!(f.current(), Row::Timezone);
        assert!(
            matches!(&f.status, Status::Error(m) if m.contains("a.toml:8: timezone: `Mars/Olympus_Mons`")),
            "{:?}",
            f.status
        );
        f.timezone.value = "UTC".into();
        f.uplink.value = "eth9".into();
        assert!(!f.submit());
        assert_eq!(f.current(), Row::Uplink);
        f.uplink.value.clear();
        f.go_to(Row::Service(0));
        typ(&mut f, " ");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        assert!(f.submit(), "{:?}", f.status);
        let out = d.path().join("a.toml");
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("services = [\"ssh\"]\n"), "{text}");
        assert!(
            !text.contains("token") && !text.contains("uplink"),
            "{text}"
        );
        let pp = passphrase_path(&out);
        assert!(text.contains(&format!("passphrase_file = \"{}\"", pp.display())));
        assert_eq!(std::fs::read_to_string(&pp).unwrap(), "long enough");
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a.toml", "a.toml.passphrase"]);
    }
}
