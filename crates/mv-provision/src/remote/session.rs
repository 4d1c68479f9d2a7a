//! [`Session`]: the host's side of an SSH login to a machine with the identity's keys, both ways.
//!
//! A session is a private [`Scratch`] folder (a fresh, unpredictable name, mode 0700 from
//! creation, removed on drop) holding the person's derived login key (0600) and a `known_hosts`
//! that lists exactly the machine's derived host keys, so no trust-on-first-use prompt is ever
//! shown; and the `ssh` command lines that use them ([`Session::argv`]). Other scratch files of the
//! same run (the shadow copy of [`crate::remote`]) go in [`Session::dir`].
//!
//! What this is not: a connection. Nothing here runs `ssh` except [`Session::run`], which runs one
//! command on the machine and returns its output.

use crate::apply::Target;
use crate::model::Os;
use mv_core::fsutil::FsError;
use mv_core::{Classify, ErrorClass, IdentityName, MachineName};
use mv_identity::{KeyError, Root};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The private scratch folder of an SSH run (login key, known_hosts, shadow copy), removed when
/// dropped.
#[derive(Debug)]
pub struct Scratch(tempfile::TempDir);

impl Scratch {
    /// Makes a new folder `multiverse-ssh.XXXXXX` in the temporary folder (`$TMPDIR` or `/tmp`):
    /// a random name created with mode 0700 that must not exist yet, so nobody else can have
    /// made it, own it or see into it. Failing to make it is an error, never a fallback.
    pub fn new() -> std::io::Result<Self> {
        Self::new_in(&std::env::temp_dir())
    }

    /// [`Scratch::new`] in `parent`.
    pub fn new_in(parent: &Path) -> std::io::Result<Self> {
        Self::with_prefix(parent, "multiverse-ssh.")
    }

    /// A private folder `PREFIXXXXXXX` in `parent` (mode 0700 from creation, a random name that
    /// must not exist yet), for scratch files of other runs (key files of a rotation, checks).
    pub fn with_prefix(parent: &Path, prefix: &str) -> std::io::Result<Self> {
        tempfile::Builder::new()
            .prefix(prefix)
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .map(Scratch)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Why a [`Session`] could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The login key could not be derived or encoded.
    #[error("cannot derive the login key")]
    LoginKey(#[source] KeyError),
    /// The login key could not be written in OpenSSH's format.
    #[error("cannot encode the login key: {0}")]
    Encode(String),
    /// The machine's host keys could not be derived.
    #[error("cannot derive host keys")]
    HostKeys(#[source] KeyError),
    /// The private folder could not be made.
    #[error("cannot make a private folder in {}", dir.display())]
    Scratch {
        /// Where it was to be made.
        dir: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// A file of the session could not be written.
    #[error(transparent)]
    Write(#[from] FsError),
}

impl Classify for SessionError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failure
    }
}

/// How `ssh` checks the machine's host key against the session's known_hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// Only a listed key is accepted (`StrictHostKeyChecking yes`).
    Strict,
    /// A key not listed yet is accepted (first contact with a machine not provisioned yet).
    AcceptNew,
}

/// How `ssh` reaches the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Over the network, `user@host` on `port`.
    Direct {
        /// The host name or address.
        host: String,
        /// The SSH port.
        port: u16,
    },
    /// Through a `ProxyCommand` (the machine's virtio-serial channel, or Tor), to `host` (the
    /// name ssh is given and known_hosts lists).
    Proxy {
        /// The `ProxyCommand`.
        command: String,
        /// The host name.
        host: String,
        /// Seconds ssh waits for the session to start (`ConnectTimeout`), if any.
        connect_timeout: Option<u32>,
    },
}

impl Route {
    /// The pattern the machine's host keys are listed under in known_hosts: the host name, or
    /// `[host]:port` for another port than 22.
    pub fn known_hosts_pattern(&self) -> String {
        match self {
            Route::Direct { host, port } if *port != 22 => format!("[{host}]:{port}"),
            Route::Direct { host, .. } | Route::Proxy { host, .. } => host.clone(),
        }
    }
}

/// A login to one machine: the derived keys in a private folder, removed on drop. See the module
/// documentation.
#[derive(Debug)]
pub struct Session {
    scratch: Scratch,
    key: PathBuf,
    known_hosts: PathBuf,
}

impl Session {
    /// `person`'s login key and `machine`'s host keys as `root` derives them (at its epochs), the
    /// host keys listed in known_hosts under `pattern` ([`Route::known_hosts_pattern`]).
    pub fn new(
        root: &Root,
        person: &IdentityName,
        machine: &MachineName,
        pattern: &str,
    ) -> Result<Self, SessionError> {
        let key = root.ssh_ed25519(person).map_err(SessionError::LoginKey)?;
        let key_text = key
            .to_openssh(mv_identity::ssh_key::LineEnding::LF)
            .map_err(|e| SessionError::Encode(e.to_string()))?;
        let id = IdentityName::Machine(machine.clone());
        let mut known = String::new();
        for k in [root.ssh_host_ed25519(&id), root.ssh_host_ecdsa_p256(&id)] {
            let k = k.map_err(SessionError::HostKeys)?;
            known.push_str(&format!("{pattern} {}\n", mv_identity::public_line(&k)));
        }
        // A fresh private folder (mkdtemp, 0700): nobody else can read the key or swap known_hosts.
        let scratch = Scratch::new().map_err(|source| SessionError::Scratch {
            dir: std::env::temp_dir(),
            source,
        })?;
        let key_path = scratch.path().join("id_ed25519");
        mv_core::fsutil::write_secret(&key_path, key_text.as_bytes())?;
        let known_hosts = scratch.path().join("known_hosts");
        mv_core::fsutil::write_public(&known_hosts, known.as_bytes())?;
        Ok(Session {
            scratch,
            key: key_path,
            known_hosts,
        })
    }

    /// The private folder (for other scratch files of the same session).
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// `ssh` options: no user config, this key alone, no prompt, and the host key checked against
    /// this known_hosts as `check` says.
    pub fn options(&self, check: HostKeyCheck) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.key.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            format!(
                "StrictHostKeyChecking={}",
                match check {
                    HostKeyCheck::Strict => "yes",
                    HostKeyCheck::AcceptNew => "accept-new",
                }
            ),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    /// The whole command line, `ssh` first, that logs in to the machine as `user` by `route`
    /// (no remote command: append `--` and one).
    pub fn argv(&self, route: &Route, user: &str, check: HostKeyCheck) -> Vec<String> {
        let mut argv = vec!["ssh".to_string()];
        argv.extend(self.options(check));
        match route {
            Route::Direct { host, port } => {
                argv.extend(["-p".to_string(), port.to_string(), format!("{user}@{host}")]);
            }
            Route::Proxy {
                command,
                host,
                connect_timeout,
            } => {
                argv.extend(["-o".to_string(), format!("ProxyCommand={command}")]);
                if let Some(secs) = connect_timeout {
                    argv.extend(["-o".to_string(), format!("ConnectTimeout={secs}")]);
                }
                argv.extend(["-l".to_string(), user.to_string(), host.clone()]);
            }
        }
        argv
    }

    /// A provisioning target: the machine by `route`, logged in as root, its shadow copy in this
    /// session's folder.
    pub fn target(&self, route: &Route, check: HostKeyCheck, os: Os) -> Target {
        Target::over_ssh(
            self.argv(route, "root", check),
            &self.dir().join("shadow"),
            os,
        )
    }

    /// Runs `command` on the machine of an SSH `target` (stdin closed); its stdout, or what failed.
    pub fn run(target: &Target, command: &str) -> Result<String, String> {
        let Some((ssh, options)) = target.ssh().and_then(|s| s.split_first()) else {
            return Err("not an SSH target".into());
        };
        let out = std::process::Command::new(ssh)
            .args(options)
            .arg("--")
            .arg(command)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run ssh: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "ssh {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_session_is_private_and_pins_the_derived_host_keys() {
        let root = Root::from_bytes([3; 32]);
        let person = IdentityName::parse("@user").unwrap();
        let machine = MachineName::parse("a.service.multiverse").unwrap();
        let s = Session::new(&root, &person, &machine, "[h]:2222").unwrap();
        let mode = fs::metadata(s.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let known = fs::read_to_string(s.dir().join("known_hosts")).unwrap();
        assert_eq!(known.lines().count(), 2);
        assert!(known.lines().all(|l| l.starts_with("[h]:2222 ")));
        let direct = Route::Direct {
            host: "h".into(),
            port: 2222,
        };
        assert_eq!(direct.known_hosts_pattern(), "[h]:2222");
        let argv = s.argv(&direct, "root", HostKeyCheck::AcceptNew);
        assert_eq!(argv[0], "ssh");
        assert!(argv.contains(&"StrictHostKeyChecking=accept-new".to_string()));
        assert_eq!(argv[argv.len() - 3..], ["-p", "2222", "root@h"]);
        let dir = s.dir().to_path_buf();
        drop(s);
        assert!(!dir.exists());
    }
}
