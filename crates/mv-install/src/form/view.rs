//! What the form shows: each row's label, its value (passphrases masked) and a hint, and the
//! rest of the screen's state.

use super::{Form, Row, Status, Text};
use crate::answers::MIN_PASSPHRASE_CHARS;
use std::path::Path;

impl Form {
    /// Where the answer file goes.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// CPU, IOMMU and what was found, for the line under the title.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// The index of the row under the cursor in [`Form::rows`].
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// The status line.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The label of a row.
    pub fn label(&self, row: Row) -> String {
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
    pub fn value(&self, row: Row) -> (String, String) {
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
                "←→: default (docs/design.md) or lab (Debian, virtio NIC)".into(),
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
