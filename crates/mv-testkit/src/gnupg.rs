//! `gnupg`: a throw-away `GNUPGHOME` for tests that check our keys with the real `gpg`.
//!
//! [`Home::new`] creates the folder (mode 0700, as gpg insists) and [`Home::gpg`] builds a
//! `gpg --batch --no-tty` command bound to it. On drop, `gpgconf --kill all` stops the agent that
//! gpg started for this home (also when the test panics), so no `gpg-agent` outlives the test.
//!
//! What this is not: a key generator or a keyring model; tests run gpg themselves.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A private `GNUPGHOME`; its gpg-agent is stopped on drop.
#[derive(Debug)]
pub struct Home {
    dir: PathBuf,
    gpg: PathBuf,
    gpgconf: PathBuf,
}

impl Home {
    /// Creates `dir` (0700) as a GNUPGHOME. Panics (through [`crate::require_tool`]) when gpg or
    /// gpgconf is missing.
    pub fn new(dir: &Path) -> Home {
        let home = Home {
            dir: dir.to_path_buf(),
            gpg: crate::require_tool("gpg"),
            gpgconf: crate::require_tool("gpgconf"),
        };
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        home
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `gpg --batch --no-tty` with `GNUPGHOME` set to this home.
    pub fn gpg(&self) -> Command {
        let mut c = Command::new(&self.gpg);
        c.env("GNUPGHOME", &self.dir).args(["--batch", "--no-tty"]);
        c
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        // Stop the agent this GNUPGHOME started; nothing to do when gpg never started one.
        let _ = Command::new(&self.gpgconf)
            .args(["--kill", "all"])
            .env("GNUPGHOME", &self.dir)
            .status();
    }
}
