//! The write-ahead journal of a migration.
//!
//! One text file, `<root>/.multiverse-migrate/journal`, one record per line:
//!
//! ```text
//! done 3         op 3 of the saved plan is complete and durable
//! undo-start     an undo has begun (forward runs are refused from here on)
//! undo-done 3    the inverse of op 3 is complete and durable
//! ```
//!
//! Records are group-committed: the executor runs a batch of ops, makes their effects durable
//! (fsync of every folder they touched), and only then appends the batch's records with one
//! fsync. A record therefore never claims more than what is on disk; what is on disk may be ahead
//! of the journal, which is harmless because every op checks the state it finds before acting
//! and re-running a completed op does nothing. This is what lets a tree of hundreds of entries
//! migrate with a handful of fsyncs instead of several per entry.
//!
//! A crash can leave a last line without its newline: it is ignored when read and cut off when
//! the journal is next opened.

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
    /// Ops completed.
    pub done: BTreeSet<usize>,
    /// Inverse ops completed.
    pub undone: BTreeSet<usize>,
    /// Whether an undo has started.
    pub undoing: bool,
}

/// An open journal, appending records.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Reads the journal at `path` (missing = empty).
    pub(crate) fn read(path: &Path) -> Result<Progress, JournalError> {
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
    pub(crate) fn open(path: &Path) -> Result<Journal, JournalError> {
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

    /// Appends records in one write and fsyncs them; then passes a crash point.
    pub(crate) fn commit(&mut self, records: &[Record]) -> Result<(), JournalError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for r in records {
            match r {
                Record::Done(i) => text.push_str(&format!("done {i}\n")),
                Record::UndoStart => text.push_str("undo-start\n"),
                Record::UndoDone(i) => text.push_str(&format!("undo-done {i}\n")),
            }
        }
        self.file
            .write_all(text.as_bytes())
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
pub(crate) enum Record {
    /// Op i is complete.
    Done(usize),
    /// An undo has begun.
    UndoStart,
    /// The inverse of op i is complete.
    UndoDone(usize),
}

/// Parses journal text (records of `path`); a last line without its newline is ignored.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Progress, JournalError> {
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
        if line == "undo-start" {
            p.undoing = true;
            continue;
        }
        let (word, num) = line.split_once(' ').ok_or_else(corrupt)?;
        let i: usize = num.parse().map_err(|_| corrupt())?;
        match word {
            "done" => {
                p.done.insert(i);
            }
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
        j.commit(&[Record::Done(0), Record::Done(1)]).unwrap();
        drop(j);
        // A torn record, as a crash in mid-write leaves it.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"do").unwrap();
        drop(f);
        let got = Journal::read(&p).unwrap();
        assert_eq!(got.done.iter().copied().collect::<Vec<_>>(), vec![0, 1]);
        assert!(!got.undoing);
        // Reopening cuts the torn record off; later records parse.
        let mut j = Journal::open(&p).unwrap();
        j.commit(&[Record::UndoStart]).unwrap();
        assert!(Journal::read(&p).unwrap().undoing);
        j.commit(&[Record::UndoDone(0)]).unwrap();
        let got = Journal::read(&p).unwrap();
        assert!(got.undone.contains(&0));
        assert_eq!(got.done.len(), 2);
    }

    #[test]
    fn garbage_is_reported_with_its_line() {
        let err = parse(Path::new("j"), "done 1\nbogus 2\n").unwrap_err();
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
