//! Checking and writing the answers: what the form can tell alone ([`Form::precheck`]), the
//! answer file's text, and the write through a private scratch folder checked like
//! `install --answers`.

use super::{passphrase_path, Form, Row, Status, Text};
use crate::answers::MIN_PASSPHRASE_CHARS;
use crate::Answers;
use std::path::Path;

/// A TOML basic string.
pub(super) fn quote(s: &str) -> String {
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

impl Form {
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

    /// Validates and writes (the answer file and the passphrase beside it); on a problem, sets
    /// the status line and the cursor and writes nothing. Whether it wrote.
    /// on a problem, sets the status line and the cursor and writes nothing.
    pub fn submit(&mut self) -> bool {
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
}
