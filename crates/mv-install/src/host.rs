//! How the installer touches the machine: every command line and every file it writes goes through
//! a [`Host`], so that `--dry-run` ([`DryRun`]) prints exactly what a real run ([`RealHost`]) does,
//! and tests can record it.
//!
//! Secrets never reach argv: a [`Cmd`] carries at most one secret for stdin and one for a file
//! descriptor that argv names as `{secret-fd}` (a memfd, so it never touches a disk).
//!
//! What this is not: a shell. argv vectors only; no string is interpreted by `sh`.

use mv_core::secret::SecretBytes;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The argv placeholder replaced by `/dev/fd/N` of [`Cmd::fd_secret`].
pub(crate) const SECRET_FD: &str = "{secret-fd}";

/// One command line.
#[derive(Debug, Default)]
pub struct Cmd {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Written to its stdin (then closed).
    pub stdin: Option<SecretBytes>,
    /// Handed over as an inherited memfd named by `SECRET_FD` in argv.
    pub fd_secret: Option<SecretBytes>,
    /// Exit codes other than 0 that count as an answer rather than a failure.
    pub ok_codes: Vec<i32>,
    /// Whether stdin is a plain text (shown in the plan) rather than a key.
    pub stdin_is_text: bool,
}

impl Cmd {
    /// A command line from words.
    pub fn new<I, S>(argv: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Cmd::default()
        }
    }

    /// With `secret` on stdin.
    pub fn stdin(mut self, secret: SecretBytes) -> Cmd {
        self.stdin = Some(secret);
        self
    }

    /// With a text that is no secret (an sfdisk script) on stdin; the plan shows it.
    pub fn stdin_text(mut self, text: &str) -> Cmd {
        self.stdin = Some(SecretBytes::new(text.as_bytes().to_vec()));
        self.stdin_is_text = true;
        self
    }

    /// With `secret` behind `{secret-fd}`.
    pub fn fd(mut self, secret: SecretBytes) -> Cmd {
        self.fd_secret = Some(secret);
        self
    }

    /// Also accepting these exit codes.
    pub fn ok_codes(mut self, codes: &[i32]) -> Cmd {
        self.ok_codes = codes.to_vec();
        self
    }

    /// The command as a person reads it (secrets shown as where they come from).
    pub fn display(&self) -> String {
        let mut s = self.argv.join(" ");
        match &self.stdin {
            Some(text) if self.stdin_is_text => {
                let t = String::from_utf8_lossy(text.expose());
                s.push_str(&format!(" <<EOF\n{}EOF", t));
            }
            Some(_) => s.push_str("  (key on stdin)"),
            None => {}
        }
        s
    }
}

/// What a command said.
#[derive(Debug, Default, Clone)]
pub struct Ran {
    /// Its exit code.
    pub code: i32,
    /// Its standard output.
    pub stdout: String,
}

/// A command that failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The program could not start.
    #[error("cannot run `{cmd}`: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        source: std::io::Error,
    },
    /// It exited with an unexpected code.
    #[error("`{cmd}` failed (exit {code}): {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Its exit code (-1: killed by a signal).
        code: i32,
        /// The tail of what it said.
        stderr: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The machine as the installer sees it.
pub trait Host {
    /// Runs a command; a code outside 0 and `ok_codes` is an error.
    fn run(&mut self, cmd: Cmd) -> Result<Ran, HostError>;
    /// Writes a file (creating its folder), `mode` from creation.
    fn write(&mut self, path: &Path, contents: &[u8], mode: u32) -> Result<(), HostError>;
    /// Makes `link` a symlink to `target`, replacing what is there.
    fn symlink(&mut self, target: &Path, link: &Path) -> Result<(), HostError>;
    /// Removes a file or symlink if present.
    fn remove(&mut self, path: &Path) -> Result<(), HostError>;
    /// Whether this host only pretends (dry-run).
    fn is_dry(&self) -> bool;
    /// Says what happens (a step's progress).
    fn say(&mut self, line: &str);
}

/// Runs everything for real.
#[derive(Debug, Default)]
pub struct RealHost {
    /// Print each command before running it.
    pub verbose: bool,
}

fn memfd_with(secret: &SecretBytes) -> std::io::Result<std::fs::File> {
    // Not close-on-exec: the child inherits it and reads it as /dev/fd/N.
    let fd = rustix::fs::memfd_create("multiverse-install", rustix::fs::MemfdFlags::empty())
        .map_err(std::io::Error::from)?;
    let mut f = std::fs::File::from(fd);
    f.write_all(secret.expose())?;
    Ok(f)
}

impl Host for RealHost {
    fn run(&mut self, cmd: Cmd) -> Result<Ran, HostError> {
        let shown = cmd.display();
        if self.verbose {
            eprintln!("+ {shown}");
        }
        let spawn_err = |source| HostError::Spawn {
            cmd: shown.clone(),
            source,
        };
        let memfd = match &cmd.fd_secret {
            Some(s) => Some(memfd_with(s).map_err(spawn_err)?),
            None => None,
        };
        let fd_path = memfd.as_ref().map(|f| {
            use std::os::fd::AsRawFd;
            format!("/dev/fd/{}", f.as_raw_fd())
        });
        let argv: Vec<String> = cmd
            .argv
            .iter()
            .map(|a| match (&fd_path, a.as_str()) {
                (Some(p), SECRET_FD) => p.clone(),
                _ => a.clone(),
            })
            .collect();
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| spawn_err(std::io::ErrorKind::InvalidInput.into()))?;
        let mut child = Command::new(prog)
            .args(args)
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C.UTF-8")
            .spawn()
            .map_err(spawn_err)?;
        if let (Some(secret), Some(mut pipe)) = (&cmd.stdin, child.stdin.take()) {
            // A refusal before reading stdin shows up in the exit code.
            let _ = pipe.write_all(secret.expose());
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        drop(memfd);
        let code = out.status.code().unwrap_or(-1);
        if code == 0 || cmd.ok_codes.contains(&code) {
            return Ok(Ran {
                code,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            });
        }
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        Err(HostError::Failed {
            cmd: shown,
            code,
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        })
    }

    fn write(&mut self, path: &Path, contents: &[u8], mode: u32) -> Result<(), HostError> {
        let err = |source| HostError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        mv_core::fsutil::write_atomic(path, contents, mode)
            .map(|_| ())
            .map_err(|e| err(std::io::Error::other(e.to_string())))
    }

    fn symlink(&mut self, target: &Path, link: &Path) -> Result<(), HostError> {
        let err = |source| HostError::Write {
            path: link.to_path_buf(),
            source,
        };
        if let Some(dir) = link.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        if std::fs::read_link(link).is_ok_and(|t| t == target) {
            return Ok(());
        }
        match std::fs::remove_file(link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        std::os::unix::fs::symlink(target, link).map_err(err)
    }

    fn remove(&mut self, path: &Path) -> Result<(), HostError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(HostError::Write {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn is_dry(&self) -> bool {
        false
    }

    fn say(&mut self, line: &str) {
        eprintln!("{line}");
    }
}

/// Runs nothing: records every command and write, as the plan `--dry-run` prints. Commands that
/// ask a question get the answer a blank disk would give (exit 1, nothing printed).
#[derive(Debug, Default)]
pub struct DryRun {
    /// One line per command, write, link or removal, in order.
    pub lines: Vec<String>,
}

impl Host for DryRun {
    fn run(&mut self, cmd: Cmd) -> Result<Ran, HostError> {
        self.lines.push(format!("run    {}", cmd.display()));
        let code = cmd.ok_codes.first().copied().unwrap_or(0);
        Ok(Ran {
            code,
            stdout: String::new(),
        })
    }

    fn write(&mut self, path: &Path, contents: &[u8], mode: u32) -> Result<(), HostError> {
        self.lines.push(format!(
            "write  {} ({} bytes, mode {mode:04o})",
            path.display(),
            contents.len()
        ));
        Ok(())
    }

    fn symlink(&mut self, target: &Path, link: &Path) -> Result<(), HostError> {
        self.lines
            .push(format!("link   {} -> {}", link.display(), target.display()));
        Ok(())
    }

    fn remove(&mut self, path: &Path) -> Result<(), HostError> {
        self.lines.push(format!("remove {}", path.display()));
        Ok(())
    }

    fn is_dry(&self) -> bool {
        true
    }

    fn say(&mut self, line: &str) {
        self.lines.push(format!("# {line}"));
    }
}
