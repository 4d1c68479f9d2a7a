//! The write-ahead journal of a migration.
//!
//! One text file, `<root>/.multiverse-migrate/journal`, one record per line, appended and fsync'd
//! before the process goes on:
//!
//! ```text
//! begin 3        about to execute op 3 of the saved plan
//! done 3         op 3 is complete on disk
//! undo-begin 3   about to execute the inverse of op 3
//! undo-done 3    the inverse of op 3 is complete
//! ```
//!
//! A crash can leave a last line without its newline: it is ignored (the op it announced is
//! re-checked anyway, because every op verifies the state it finds before acting).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A journal failure, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading or appending failed.
    #[error("cannot {action} journal {path}")]
    Io {
        /// "read" or "append to".
        action: &'static str,
        /// The journal file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A complete line that is not a record.
    #[error("journal {path} line {line}: unknown record `{text}`")]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}

/// What the journal says has happened.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Ops announced by `begin`.
    pub begun: BTreeSet<usize>,
    /// Ops completed.
    pub done: BTreeSet<usize>,
    /// Inverse ops completed.
    pub undone: BTreeSet<usize>,
    /// Whether any undo record exists (an undo has started).
    pub undoing: bool,
}

/// An open journal, appending records.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Reads the journal at `path` (missing = empty).
    pub fn read(path: &Path) -> Result<Progress, JournalError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Progress::default()),
            Err(source) => {
                return Err(JournalError::Io {
                    action: "read",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        parse(path, &text)
    }

    /// Opens (creating) the journal for appending.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let io_err = |source| JournalError::Io {
            action: "append to",
            path: path.to_path_buf(),
            source,
        };
        // A torn last record (crash in mid-write) is cut off so that the next one starts clean.
        if let Ok(text) = std::fs::read(path) {
            if !text.is_empty() && text.last() != Some(&b'\n') {
                let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
                let f = OpenOptions::new().write(true).open(path).map_err(io_err)?;
                f.set_len(keep as u64).map_err(io_err)?;
                f.sync_all().map_err(io_err)?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        if let Some(dir) = path.parent() {
            mv_core::fsutil::sync_dir(dir).map_err(io_err)?;
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one record and fsyncs it; then passes a crash point.
    pub fn record(&mut self, what: Record) -> Result<(), JournalError> {
        let line = match what {
            Record::Begin(i) => format!("begin {i}\n"),
            Record::Done(i) => format!("done {i}\n"),
            Record::UndoBegin(i) => format!("undo-begin {i}\n"),
            Record::UndoDone(i) => format!("undo-done {i}\n"),
        };
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|source| JournalError::Io {
                action: "append to",
                path: self.path.clone(),
                source,
            })?;
        crate::crash::point();
        Ok(())
    }
}

/// One journal record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// About to execute op i.
    Begin(usize),
    /// Op i is complete.
    Done(usize),
    /// About to execute the inverse of op i.
    UndoBegin(usize),
    /// The inverse of op i is complete.
    UndoDone(usize),
}

/// Parses journal text (records of `path`); a last line without its newline is ignored.
pub fn parse(path: &Path, text: &str) -> Result<Progress, JournalError> {
    let mut p = Progress::default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => return Ok(p),
    };
    for (n, line) in complete.lines().enumerate() {
        let corrupt = || JournalError::Corrupt {
            path: path.to_path_buf(),
            line: n + 1,
            text: line.to_string(),
        };
        let (word, num) = line.split_once(' ').ok_or_else(corrupt)?;
        let i: usize = num.parse().map_err(|_| corrupt())?;
        match word {
            "begin" => {
                p.begun.insert(i);
            }
            "done" => {
                p.done.insert(i);
            }
            "undo-begin" => p.undoing = true,
            "undo-done" => {
                p.undoing = true;
                p.undone.insert(i);
            }
            _ => return Err(corrupt()),
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_round_trip_and_torn_line_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("journal");
        let mut j = Journal::open(&p).unwrap();
        j.record(Record::Begin(0)).unwrap();
        j.record(Record::Done(0)).unwrap();
        j.record(Record::Begin(1)).unwrap();
        drop(j);
        // A torn record, as a crash in mid-write leaves it.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"do").unwrap();
        drop(f);
        let got = Journal::read(&p).unwrap();
        assert_eq!(got.done.iter().copied().collect::<Vec<_>>(), vec![0]);
        assert_eq!(got.begun.len(), 2);
        assert!(!got.undoing);
        // Reopening cuts the torn record off; later records parse.
        let mut j = Journal::open(&p).unwrap();
        j.record(Record::UndoDone(0)).unwrap();
        let got = Journal::read(&p).unwrap();
        assert!(got.undoing);
        assert!(got.undone.contains(&0));
    }

    #[test]
    fn garbage_is_reported_with_its_line() {
        let err = parse(Path::new("j"), "begin 1\nbogus 2\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "journal j line 2: unknown record `bogus 2`"
        );
    }

    proptest! {
        /// The parser of the (on-disk, possibly damaged) journal never panics.
        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            let _ = parse(Path::new("j"), &s);
        }
    }
}
