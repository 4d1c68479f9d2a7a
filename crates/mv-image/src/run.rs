//! How the builder runs tools: a [`Runner`] takes one command line (and optional stdin) and says
//! whether it succeeded. [`SystemRunner`] spawns real processes; tests pass a recording runner to
//! assert the exact command lines (see `tests/alpine.rs`).
//!
//! What this is not: a shell. Every command is an argv vector; no string is ever interpreted by
//! `sh`, so paths with spaces or quotes reach the tools unchanged.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// What a finished command reported.
#[derive(Debug, Clone, Default)]
pub struct RunOutput {
    /// Exit status 0.
    pub success: bool,
    /// Its standard error (and, for failures, the tail of its output), for the error line.
    pub stderr: String,
}

/// Runs one command line.
pub trait Runner {
    /// Runs `argv`, writing `stdin` to it when given.
    fn run(&self, argv: &[String], stdin: Option<&str>) -> std::io::Result<RunOutput>;

    /// Whether `tool` can be run (found on `PATH`, or an existing absolute path).
    fn has_tool(&self, tool: &str) -> bool {
        which(tool)
    }
}

/// Whether `tool` is an executable file on `PATH` (or an absolute path that exists).
pub(crate) fn which(tool: &str) -> bool {
    if tool.contains('/') {
        return Path::new(tool).is_file();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| d.join(tool).is_file())
}

/// Spawns real processes; stdout and stderr are captured (mmdebstrap is verbose).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&self, argv: &[String], stdin: Option<&str>) -> std::io::Result<RunOutput> {
        let (prog, args) = argv.split_first().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command")
        })?;
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Tools in the target (maintainer scripts) must not ask questions.
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C.UTF-8");
        let mut child = cmd.spawn()?;
        let writer = match (stdin, child.stdin.take()) {
            (Some(text), Some(mut pipe)) => {
                let text = text.to_string();
                Some(std::thread::spawn(move || {
                    let _ = pipe.write_all(text.as_bytes());
                }))
            }
            _ => None,
        };
        let out = child.wait_with_output()?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            // Some tools (mmdebstrap's apt) report on stdout: keep its tail too.
            let stdout = String::from_utf8_lossy(&out.stdout);
            let tail: Vec<&str> = stdout.lines().rev().take(5).collect();
            for l in tail.into_iter().rev() {
                stderr.push('\n');
                stderr.push_str(l);
            }
        }
        Ok(RunOutput {
            success: out.status.success(),
            stderr,
        })
    }
}
