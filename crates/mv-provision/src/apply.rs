//! Planning and applying a [`Desired`] state on a machine's root filesystem.
//!
//! [`Target`] is a mounted root folder (`--target DIR`) of a known OS. [`plan`] compares the desired
//! state with it and returns a [`Plan`]: packages to install (with the exact command lines),
//! folders, files (with a diff, never for secrets), account changes and service links. [`apply`]
//! carries a plan out in an order that never leaves a half-provisioned machine:
//!
//! 1. packages: a simulated install first (`apt-get install -s`, `apk add --simulate`), so a package
//!    that does not exist fails before anything changed; then the real install in a chroot, with a
//!    `policy-rc.d` that keeps Debian maintainer scripts from starting daemons on the build host;
//! 2. re-plan (packages ship default configs that we then replace);
//! 3. stage every file, including the new passwd/group/shadow, into a staging folder inside the
//!    target (same filesystem), with its final mode and owner; any failure here removes the staging
//!    folder and the target is as before;
//! 4. commit: create folders, rename staged files into place, create service links; then remove
//!    what the previous apply managed and the machine no longer wants (service links, files,
//!    empty folders); last, the new [`crate::state`] file, so a crash before it leaves the old
//!    state, whose removals a rerun finds done.
//!
//! Converging: [`plan`] reads the target's [`crate::state::STATE_PATH`] (what the previous apply
//! wrote and enabled) and plans removals for what the new desired state drops: a service's
//! recorded links, a file whose bytes still match the recorded SHA-256 (an edited one is left in
//! place, as a [`Change::Kept`] warning), a folder once empty. Packages are never removed. No
//! state file (a machine provisioned before it existed) removes nothing; an unreadable one is
//! [`ApplyError::State`] before anything changed. On a running Debian system (`/`, or over SSH)
//! a disabled service is also stopped, with `systemctl stop --no-block` after the commit: in the
//! guest's seed boot that queues the stop before the seed script starts the new services, and
//! never waits on the boot's ordering.
//!
//! Reloading: a desired file names the services that read it ([`DesiredFile::reload`], from the
//! recipe's `reload`). On a running system, when such a file is created or changed (contents,
//! mode or owner; never when it already matches), each of its services is reloaded once after the
//! commit and the stops, in the order the recipes enable them ([`Change::Reload`],
//! [`Target::reload_command`]): Debian `systemctl try-reload-or-restart --no-block -- UNIT`
//! (`try-restart` for a service marked `restart`, whose reload does not re-read its files),
//! Alpine `rc-service --ifstarted NAME restart` (an OpenRC script's `reload` is optional, and
//! dnsmasq's would not re-read its config). Both leave a service that is not running
//! alone, which is what the guest's first boot wants: its seed applies on `/` before the services
//! start, and they start reading the new files. A failed reload is a warning ([`Change::Kept`]):
//! the files are committed already. A chroot runs nothing.
//!
//! Every read and write of a local target goes through [`mv_core::confined::RootDir`]: the
//! target is another system's `/`, and its symlinks resolve inside it (an absolute link to
//! `/etc/ssh` is the target's `/etc/ssh`, never the host's), the staging folder is made, filled
//! and renamed from through the root's descriptor, and modes and owners are set on descriptors.
//!
//! Services are enabled the way `systemctl enable` and `rc-update add` do it, by symlinks, so no
//! init system has to run in the target. Commands run through a [`Runner`], which tests replace to
//! assert the exact command lines (Alpine: no `apk` exists here).

use crate::accounts::{plan_accounts, Accounts, AccountsError};
use crate::model::Os;
use crate::pkgdb;
use crate::recipe::ServiceSpec;
use crate::render::{Contents, Desired, DesiredFile};
use crate::state::{self, ManagedFile, ManagedLink, ManagedService, State, StateError};
use mv_core::confined::RootDir;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why planning or applying failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The target folder does not exist or is not a folder.
    #[error("target {0} is not a folder")]
    NoTarget(PathBuf),
    /// The target holds another OS than the machine's.
    #[error("target {path} is not a {expected} root filesystem (no {marker})")]
    WrongOs {
        /// The target.
        path: PathBuf,
        /// The machine's OS.
        expected: Os,
        /// The file that marks that OS.
        marker: &'static str,
    },
    /// Reading the target failed.
    #[error("cannot read {path} in the target")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing the target failed (the target is left as before when this happens while staging).
    #[error("cannot write {path} in the target")]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Accounts could not be planned.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    /// A file's owner does not exist on the target.
    #[error("owner {owner} of {path} is not a user of the target")]
    UnknownOwner {
        /// The file.
        path: String,
        /// The owner.
        owner: String,
    },
    /// The package manager refused the packages (nothing was changed).
    #[error("the package manager refused to install {packages}: {message}")]
    Packages {
        /// The packages asked for.
        packages: String,
        /// The package manager's own words (its `E:`/`ERROR:` lines).
        message: String,
    },
    /// The package manager failed during the install itself.
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr (last lines).
        message: String,
    },
    /// A command could not be started.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The target's provision state file cannot be read or is not one (nothing was changed).
    #[error("provision state {path}")]
    State {
        /// The state file (host path, for messages).
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: StateError,
    },
    /// A service has no unit file or init script in the target.
    #[error("service {name} has no {what} in the target; is its package in the recipe?")]
    ServiceMissing {
        /// Service name.
        name: String,
        /// `systemd unit file` or `OpenRC script /etc/init.d/NAME`.
        what: String,
    },
}

/// The output of a command run by a [`Runner`].
#[derive(Debug, Clone, Default)]
pub struct RunOutput {
    /// Exit status was 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs commands; the real one spawns processes, tests record them.
pub trait Runner {
    /// Runs `argv` with extra environment `env`.
    fn run(&self, argv: &[String], env: &[(&str, &str)]) -> Result<RunOutput, std::io::Error>;
}

/// Spawns real processes.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&self, argv: &[String], env: &[(&str, &str)]) -> Result<RunOutput, std::io::Error> {
        let (prog, args) = argv.split_first().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command")
        })?;
        let mut cmd = std::process::Command::new(prog);
        cmd.args(args).stdin(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output()?;
        Ok(RunOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// A mounted root filesystem of a machine.
#[derive(Debug, Clone)]
pub struct Target {
    root: PathBuf,
    os: Os,
    /// For a machine reached over SSH: the `ssh ... root@host` prefix; `root` is then a local
    /// shadow copy of the machine's relevant files (see [`crate::remote`]).
    ssh: Option<Vec<String>>,
    /// The opened root of a local target (a remote one's shadow is reopened after each fetch).
    dir: Option<Arc<RootDir>>,
    /// A running system (`/`, or a machine over SSH), where services are stopped and reloaded.
    running: bool,
}

fn os_marker(os: Os) -> &'static str {
    match os {
        Os::Debian => "etc/debian_version",
        Os::Alpine => "etc/alpine-release",
    }
}

impl Target {
    /// Opens `root` as a target of `os`, checking the OS marker file.
    pub fn open(root: &Path, os: Os) -> Result<Self, ApplyError> {
        if !root.is_dir() {
            return Err(ApplyError::NoTarget(root.to_path_buf()));
        }
        let dir = RootDir::open(root).map_err(|_| ApplyError::NoTarget(root.to_path_buf()))?;
        let marker = os_marker(os);
        if !dir.metadata(marker).is_ok_and(|m| m.is_file()) {
            return Err(ApplyError::WrongOs {
                path: root.to_path_buf(),
                expected: os,
                marker,
            });
        }
        Ok(Target {
            root: root.to_path_buf(),
            os,
            ssh: None,
            dir: Some(Arc::new(dir)),
            running: root == Path::new("/"),
        })
    }

    /// A running machine reached with `ssh` (the full `ssh -i KEY ... root@host` argv), whose
    /// relevant files are mirrored into the empty local folder `shadow` by [`Target::refresh`].
    pub(crate) fn over_ssh(ssh: Vec<String>, shadow: &Path, os: Os) -> Self {
        Target {
            root: shadow.to_path_buf(),
            os,
            ssh: Some(ssh),
            dir: None,
            running: true,
        }
    }

    /// The ssh prefix of a remote target.
    pub(crate) fn ssh(&self) -> Option<&[String]> {
        self.ssh.as_deref()
    }

    /// The target's OS.
    pub(crate) fn os(&self) -> Os {
        self.os
    }

    /// For a remote target, mirrors what `desired` touches into the shadow folder (and checks the
    /// OS marker); a local target needs nothing.
    pub fn refresh(&self, desired: &Desired, runner: &dyn Runner) -> Result<(), ApplyError> {
        match &self.ssh {
            None => Ok(()),
            Some(ssh) => {
                crate::remote::fetch(self, ssh, desired, runner)?;
                let marker = os_marker(self.os);
                if self.dir()?.metadata(marker).is_ok_and(|m| m.is_file()) {
                    Ok(())
                } else {
                    Err(ApplyError::WrongOs {
                        path: PathBuf::from(ssh.last().cloned().unwrap_or_default()),
                        expected: self.os,
                        marker,
                    })
                }
            }
        }
    }

    /// The target's root folder.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Host path of an absolute path inside the target, for messages only: opening it would
    /// follow the target's symlinks on the host. Reads and writes go through [`Target::dir`].
    pub(crate) fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// The target's root, opened: every path resolves inside it.
    pub(crate) fn dir(&self) -> Result<Arc<RootDir>, ApplyError> {
        match &self.dir {
            Some(d) => Ok(d.clone()),
            None => RootDir::open(&self.root)
                .map(Arc::new)
                .map_err(|source| ApplyError::Read {
                    path: self.root.clone(),
                    source,
                }),
        }
    }

    fn read_opt(&self, p: &str) -> Result<Option<Vec<u8>>, ApplyError> {
        self.dir()?.read_opt(p).map_err(|source| ApplyError::Read {
            path: self.path(p),
            source,
        })
    }

    fn read_text(&self, p: &str) -> Result<String, ApplyError> {
        Ok(self
            .read_opt(p)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default())
    }

    /// The target's provision state: `None` when there is none (never provisioned, or by a
    /// version before the state file). The final component is never followed: a link there is
    /// an error, like a file too large or not a state.
    pub(crate) fn read_state(&self) -> Result<Option<State>, ApplyError> {
        // Over SSH, named as on the machine (`root@host:/var/lib/…`), not in the shadow copy.
        let path = match &self.ssh {
            Some(ssh) => PathBuf::from(format!(
                "{}:{}",
                ssh.last().map(String::as_str).unwrap_or_default(),
                state::STATE_PATH
            )),
            None => self.path(state::STATE_PATH),
        };
        let bad = |source| ApplyError::State {
            path: path.clone(),
            source,
        };
        let dir = self.dir()?;
        let meta = match dir.symlink_metadata(state::STATE_PATH) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(bad(StateError::Unreadable(e))),
        };
        if !meta.file_type().is_file() {
            return Err(bad(StateError::NotAFile));
        }
        if meta.len() > state::MAX_BYTES as u64 {
            return Err(bad(StateError::TooLarge(meta.len() as usize)));
        }
        let bytes = dir
            .read(state::STATE_PATH)
            .map_err(|e| bad(StateError::Unreadable(e)))?;
        state::parse(&bytes).map(Some).map_err(bad)
    }

    /// True when the target is a running system (`/`, or a machine over SSH), where a disabled
    /// service is also stopped and a service whose files changed is reloaded.
    pub(crate) fn is_running_system(&self) -> bool {
        self.running
    }

    /// The command that stops `service` on a running Debian system (`None` elsewhere: a chroot
    /// runs nothing, and OpenRC services stop at the next boot).
    pub(crate) fn stop_command(&self, service: &str) -> Option<Vec<String>> {
        if self.os != Os::Debian || !self.is_running_system() {
            return None;
        }
        let mut argv = self.chroot_prefix();
        argv.extend(["systemctl", "stop", "--no-block", "--"].map(String::from));
        argv.push(unit_name(service));
        Some(argv)
    }

    /// The command that makes `service` re-read its changed files on a running system, and what
    /// it does to a started service (`reload` or `restart`); `None` elsewhere (a chroot runs
    /// nothing). A service that is not running is left alone on both OSes.
    pub(crate) fn reload_command(
        &self,
        service: &ServiceSpec,
    ) -> Option<(&'static str, Vec<String>)> {
        if !self.is_running_system() {
            return None;
        }
        let mut argv = self.chroot_prefix();
        let how = match self.os {
            Os::Debian => {
                // systemd restarts a unit that has no ExecReload (openvpn-client@).
                let (how, verb) = if service.restart {
                    ("restart", "try-restart")
                } else {
                    ("reload", "try-reload-or-restart")
                };
                argv.extend(["systemctl", verb, "--no-block", "--"].map(String::from));
                argv.push(unit_name(&service.name));
                how
            }
            Os::Alpine => {
                argv.extend(["rc-service", "--ifstarted"].map(String::from));
                argv.push(service.name.clone());
                argv.push("restart".to_string());
                "restart"
            }
        };
        Some((how, argv))
    }

    /// Packages installed in the target.
    pub(crate) fn installed(&self) -> Result<BTreeSet<String>, ApplyError> {
        Ok(match self.os {
            Os::Debian => pkgdb::dpkg_installed(&self.read_text("/var/lib/dpkg/status")?),
            Os::Alpine => pkgdb::apk_installed(&self.read_text("/lib/apk/db/installed")?),
        })
    }

    /// The target's accounts.
    pub(crate) fn accounts(&self) -> Result<Accounts, ApplyError> {
        Ok(Accounts::parse(
            &self.read_text("/etc/passwd")?,
            &self.read_text("/etc/group")?,
            &self.read_text("/etc/shadow")?,
        ))
    }

    fn chroot_prefix(&self) -> Vec<String> {
        if let Some(ssh) = &self.ssh {
            ssh.clone()
        } else if self.running {
            vec![]
        } else {
            vec!["chroot".to_string(), self.root.display().to_string()]
        }
    }

    /// The command lines that install `packages`: (simulation, installation).
    pub(crate) fn package_commands(&self, packages: &[String]) -> (Vec<String>, Vec<String>) {
        let mut sim = self.chroot_prefix();
        let mut real = self.chroot_prefix();
        if self.ssh.is_some() && self.os == Os::Debian {
            // The local environment does not travel over ssh.
            for v in [&mut sim, &mut real] {
                v.extend(["env", "DEBIAN_FRONTEND=noninteractive"].map(String::from));
            }
        }
        let words = |v: &mut Vec<String>, w: &[&str]| v.extend(w.iter().map(|s| s.to_string()));
        match self.os {
            Os::Debian => {
                words(
                    &mut sim,
                    &[
                        "apt-get",
                        "install",
                        "--simulate",
                        "-q",
                        "-y",
                        "--no-install-recommends",
                    ],
                );
                words(
                    &mut real,
                    &[
                        "apt-get",
                        "install",
                        "-q",
                        "-y",
                        "--no-install-recommends",
                        "-o",
                        "Dpkg::Options::=--force-confold",
                    ],
                );
            }
            Os::Alpine => {
                words(
                    &mut sim,
                    &[
                        "apk",
                        "add",
                        "--simulate",
                        "--update-cache",
                        "--no-progress",
                    ],
                );
                words(&mut real, &["apk", "add", "--no-progress"]);
            }
        }
        sim.extend(packages.iter().cloned());
        real.extend(packages.iter().cloned());
        (sim, real)
    }

    /// The symlinks (link, pointing to) that enable `svc`, or `None` when its unit or script is
    /// not (yet) in the target.
    fn service_links(
        &self,
        svc: &ServiceSpec,
    ) -> Result<Option<Vec<(String, String)>>, ApplyError> {
        match self.os {
            Os::Alpine => {
                let script = format!("/etc/init.d/{}", svc.name);
                if self.dir()?.metadata(&script).is_err() {
                    return Ok(None);
                }
                Ok(Some(vec![(
                    format!("/etc/runlevels/{}/{}", svc.runlevel, svc.name),
                    script,
                )]))
            }
            Os::Debian => {
                let unit = unit_name(&svc.name);
                // `wg-quick@wg0.service` is enabled from the template `wg-quick@.service`.
                let file_name = match unit.split_once('@') {
                    Some((prefix, rest)) => match rest.rsplit_once('.') {
                        Some((_, suffix)) => format!("{prefix}@.{suffix}"),
                        None => unit.clone(),
                    },
                    None => unit.clone(),
                };
                let mut found = None;
                for dir in [
                    "/etc/systemd/system",
                    "/lib/systemd/system",
                    "/usr/lib/systemd/system",
                ] {
                    let p = format!("{dir}/{file_name}");
                    if let Some(bytes) = self.read_opt(&p)? {
                        found = Some((p, String::from_utf8_lossy(&bytes).into_owned()));
                        break;
                    }
                }
                let Some((unit_path, text)) = found else {
                    return Ok(None);
                };
                let mut links = Vec::new();
                for (key, value) in install_section(&text) {
                    for v in value.split_whitespace() {
                        match key.as_str() {
                            "WantedBy" => links.push((
                                format!("/etc/systemd/system/{v}.wants/{unit}"),
                                unit_path.clone(),
                            )),
                            "RequiredBy" => links.push((
                                format!("/etc/systemd/system/{v}.requires/{unit}"),
                                unit_path.clone(),
                            )),
                            "Alias" => {
                                links.push((format!("/etc/systemd/system/{v}"), unit_path.clone()))
                            }
                            _ => {}
                        }
                    }
                }
                Ok(Some(links))
            }
        }
    }
}

/// The systemd unit of a recipe's service name (`sshd` → `sshd.service`).
fn unit_name(name: &str) -> String {
    if name.contains('.') {
        name.to_string()
    } else {
        format!("{name}.service")
    }
}

/// `key=value` pairs of a unit file's `[Install]` section.
pub(crate) fn install_section(unit: &str) -> Vec<(String, String)> {
    let mut in_install = false;
    let mut out = Vec::new();
    for line in unit.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_install = l == "[Install]";
            continue;
        }
        if in_install {
            if let Some((k, v)) = l.split_once('=') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    out
}

/// One change a plan makes.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Install packages.
    Packages {
        /// Package names.
        packages: Vec<String>,
        /// The simulated install run first.
        check_command: Vec<String>,
        /// The install command.
        command: Vec<String>,
    },
    /// Create a folder or fix its mode/owner.
    Dir {
        /// Path in the target.
        path: String,
        /// Mode.
        mode: u32,
        /// Owner.
        owner: String,
        /// Whether it is created.
        create: bool,
    },
    /// Write a file or fix its mode/owner.
    File {
        /// Path in the target.
        path: String,
        /// Mode.
        mode: u32,
        /// Owner.
        owner: String,
        /// `create`, `update`, `mode`, or `owner`.
        action: String,
        /// Whether the contents are secret (no diff then).
        secret: bool,
        /// Unified diff current → provisioned (public files only).
        #[serde(skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
    },
    /// A user or group change.
    Account {
        /// What changes (`create user user (uid 1000...)`).
        what: String,
    },
    /// Enable a service (one symlink).
    Service {
        /// Service name.
        name: String,
        /// The link.
        link: String,
        /// What it points to.
        to: String,
    },
    /// Enable a service whose unit arrives with a package in this same plan.
    ServiceAfterInstall {
        /// Service name.
        name: String,
    },
    /// Disable a service the previous apply enabled and no recipe wants now (one recorded link).
    Disable {
        /// Service name.
        name: String,
        /// The link removed.
        link: String,
    },
    /// Stop a disabled service (running Debian systems only).
    Stop {
        /// Service name.
        name: String,
        /// The command.
        command: Vec<String>,
    },
    /// Make a running service re-read files this apply changed (running systems only, after the
    /// commit).
    Reload {
        /// Service name.
        service: String,
        /// `reload` or `restart`: what the command does to it if it is running.
        how: String,
        /// The changed files it reads.
        because: Vec<String>,
        /// The command.
        command: Vec<String>,
    },
    /// Remove a file the previous apply wrote and no recipe wants now.
    Remove {
        /// Path in the target.
        path: String,
    },
    /// Remove a folder the previous apply created, now empty and wanted by no recipe.
    RemoveDir {
        /// Path in the target.
        path: String,
    },
    /// A warning: something the previous apply made, no longer wanted, that is left as it is.
    Kept {
        /// Path in the target (or `service NAME`).
        path: String,
        /// Why (`changed since multiverse wrote it`).
        reason: String,
    },
    /// Write the provision state file (what this apply manages).
    State {
        /// Path in the target.
        path: String,
        /// Whether it is created (a machine provisioned before state files existed, or new).
        create: bool,
    },
}

impl Change {
    /// One line for people.
    pub fn summary(&self) -> String {
        match self {
            Change::Packages { packages, .. } => {
                format!("install packages: {}", packages.join(" "))
            }
            Change::Dir {
                path,
                mode,
                owner,
                create,
            } => format!(
                "{} folder {path} ({mode:04o} {owner})",
                if *create { "create" } else { "fix" }
            ),
            Change::File {
                path,
                mode,
                owner,
                action,
                secret,
                ..
            } => format!(
                "{action} {path} ({mode:04o} {owner}{})",
                if *secret { ", secret" } else { "" }
            ),
            Change::Account { what } => what.clone(),
            Change::Service { name, link, .. } => format!("enable service {name} ({link})"),
            Change::ServiceAfterInstall { name } => {
                format!("enable service {name} (once its package is installed)")
            }
            Change::Disable { name, link } => format!("disable service {name} ({link})"),
            Change::Stop { name, .. } => format!("stop service {name}"),
            Change::Reload {
                service,
                how,
                because,
                ..
            } => {
                let first = because.first().map(String::as_str).unwrap_or_default();
                match because.len() {
                    0 | 1 => format!("{how} service {service} ({first} changed)"),
                    n => format!(
                        "{how} service {service} ({first} and {} more changed)",
                        n - 1
                    ),
                }
            }
            Change::Remove { path } => format!("remove {path} (no longer wanted)"),
            Change::RemoveDir { path } => format!("remove folder {path} (empty, no longer wanted)"),
            Change::Kept { path, reason } => format!("left in place: {path}: {reason}"),
            Change::State { path, create } => format!(
                "{} {path} (what multiverse manages here)",
                if *create { "record" } else { "update" }
            ),
        }
    }

    /// True for a warning line rather than a change.
    pub fn is_warning(&self) -> bool {
        matches!(self, Change::Kept { .. })
    }
}

/// What would change on a target.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The machine.
    pub machine: String,
    /// Its OS.
    pub os: Os,
    /// The target root.
    pub target: String,
    /// The changes, in the order they are applied.
    pub changes: Vec<Change>,
    #[serde(skip)]
    staged: Staged,
}

impl Plan {
    /// True when the target already matches.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// What the commit step writes: kept out of the serialised plan (it holds secrets).
#[derive(Debug, Clone, Default)]
pub(crate) struct Staged {
    pub(crate) packages: Vec<String>,
    /// (path in the target, mode, uid, gid).
    pub(crate) dirs: Vec<(String, u32, u32, u32)>,
    pub(crate) files: Vec<StagedFile>,
    /// (link in the target, its text).
    pub(crate) links: Vec<(String, String)>,
    /// Removals, done after everything above: service links, files, then folders (deepest first).
    pub(crate) unlinks: Vec<String>,
    pub(crate) removes: Vec<String>,
    pub(crate) rmdirs: Vec<String>,
    /// Services to stop after the commit: (name, command).
    pub(crate) stops: Vec<(String, Vec<String>)>,
    /// Services to reload after the stops: (name, command).
    pub(crate) reloads: Vec<(String, Vec<String>)>,
    /// The new state file's bytes, written last.
    pub(crate) state: Option<Vec<u8>>,
}

impl Staged {
    /// A path whose owner was still to be made by a package when this was planned.
    fn pending_owner(&self) -> Option<String> {
        let pending = |uid: u32, gid: u32| (uid, gid) == PENDING_OWNER;
        self.dirs
            .iter()
            .find(|(_, _, u, g)| pending(*u, *g))
            .map(|d| d.0.clone())
            .or_else(|| {
                self.files
                    .iter()
                    .find(|f| pending(f.uid, f.gid))
                    .map(|f| f.dest.clone())
            })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StagedFile {
    /// Path in the target.
    pub(crate) dest: String,
    pub(crate) contents: Contents,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

fn diff(old: &str, new: &str, path: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header(
            &format!("{path} (current)"),
            &format!("{path} (provisioned)"),
        )
        .to_string()
}

fn default_shell(os: Os) -> &'static str {
    match os {
        Os::Alpine => "/bin/ash",
        Os::Debian => "/bin/bash",
    }
}

/// The ids planned for an owner that a package still to be installed creates.
const PENDING_OWNER: (u32, u32) = (u32::MAX, u32::MAX);

/// The desired packages `target` lacks.
fn missing_packages(desired: &Desired, target: &Target) -> Result<Vec<String>, ApplyError> {
    let installed = target.installed()?;
    Ok(desired
        .packages
        .iter()
        .filter(|p| !installed.contains(*p))
        .cloned()
        .collect())
}

/// The packages part of [`plan`] alone.
fn plan_packages(desired: &Desired, target: &Target) -> Result<Plan, ApplyError> {
    let mut plan = Plan {
        machine: desired.machine.clone(),
        os: desired.os,
        target: target.root.display().to_string(),
        changes: Vec::new(),
        staged: Staged::default(),
    };
    let missing = missing_packages(desired, target)?;
    if !missing.is_empty() {
        let (check_command, command) = target.package_commands(&missing);
        plan.changes.push(Change::Packages {
            packages: missing.clone(),
            check_command,
            command,
        });
        plan.staged.packages = missing;
    }
    Ok(plan)
}

/// Compares `desired` with `target`.
pub fn plan(desired: &Desired, target: &Target) -> Result<Plan, ApplyError> {
    let mut changes = Vec::new();
    let mut staged = Staged::default();
    let dir = target.dir()?;
    // What the previous apply managed: read first, so a bad state file changes nothing.
    let old_state = target.read_state()?;
    let old = old_state.clone().unwrap_or_default();
    let mut created_dirs = BTreeSet::new();

    // Packages.
    let packages = plan_packages(desired, target)?;
    changes.extend(packages.changes);
    staged.packages = packages.staged.packages;

    // Accounts (before files: new users own files).
    let current = target.accounts()?;
    let (next, account_changes) =
        plan_accounts(&current, &desired.users, default_shell(target.os))?;
    for what in account_changes {
        changes.push(Change::Account { what });
    }
    // An owner a missing package will create (tor's `debian-tor`) is planned as "to be made";
    // `apply` plans again once the packages are in, and never commits such a plan.
    let packages_pending = !staged.packages.is_empty();
    let owner_ids = |owner: &str, path: &str| match next.ids_of(owner) {
        Some(ids) => Ok(ids),
        None if packages_pending => Ok(PENDING_OWNER),
        None => Err(ApplyError::UnknownOwner {
            path: path.to_string(),
            owner: owner.to_string(),
        }),
    };

    // Folders.
    for d in &desired.dirs {
        let (uid, gid) = owner_ids(&d.owner, &d.path)?;
        // Followed inside the target: a folder linked elsewhere in it is that folder.
        let meta = dir.metadata(&d.path).ok();
        let right = meta.as_ref().is_some_and(|m| {
            m.is_dir() && m.mode() & 0o7777 == d.mode && m.uid() == uid && m.gid() == gid
        });
        if meta.is_none() {
            created_dirs.insert(d.path.clone());
        }
        if !right {
            changes.push(Change::Dir {
                path: d.path.clone(),
                mode: d.mode,
                owner: d.owner.clone(),
                create: meta.is_none(),
            });
            staged.dirs.push((d.path.clone(), d.mode, uid, gid));
        }
    }

    // Files, then the account files themselves.
    let mut files: Vec<DesiredFile> = desired.files.clone();
    if next != current {
        let shadow_meta = dir.metadata("/etc/shadow").ok();
        for (path, text, default_mode) in [
            ("/etc/passwd", next.passwd.render(), 0o644),
            ("/etc/group", next.group.render(), 0o644),
            ("/etc/shadow", next.shadow.render(), 0o640),
        ] {
            let mode = dir
                .metadata(path)
                .map(|m| m.mode() & 0o7777)
                .unwrap_or(default_mode);
            let contents = if path == "/etc/shadow" {
                Contents::Secret(mv_core::secret::SecretBytes::new(text.into_bytes()))
            } else {
                Contents::Public(text)
            };
            files.push(DesiredFile {
                path: path.to_string(),
                contents,
                mode,
                owner: "root".to_string(),
                origin: "accounts".to_string(),
                // Read at each login, by whoever logs in.
                reload: vec![],
            });
        }
        // Keep shadow's group (`shadow` on Debian and Alpine).
        if let (Some(m), Some(f)) = (shadow_meta, files.last_mut()) {
            if f.path == "/etc/shadow" {
                f.owner = format!("root:{}", m.gid());
            }
        }
    }
    // Service → the changed files it reads.
    let mut reasons: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for f in &files {
        let (uid, gid) = match f.owner.split_once(':') {
            Some((u, g)) => (owner_ids(u, &f.path)?.0, g.parse().unwrap_or(0)),
            None => owner_ids(&f.owner, &f.path)?,
        };
        let current = target.read_opt(&f.path)?;
        let meta = dir.symlink_metadata(&f.path).ok();
        let action = match (&current, &meta) {
            (None, _) => Some("create"),
            (Some(old), _) if old.as_slice() != f.contents.bytes() => Some("update"),
            (_, Some(m)) if m.file_type().is_symlink() => Some("update"),
            (_, Some(m)) if m.mode() & 0o7777 != f.mode => Some("mode"),
            (_, Some(m)) if m.uid() != uid || m.gid() != gid => Some("owner"),
            _ => None,
        };
        let Some(action) = action else { continue };
        for svc in &f.reload {
            reasons
                .entry(svc.as_str())
                .or_default()
                .push(f.path.clone());
        }
        let d = match (&f.contents, action) {
            (Contents::Public(new), "create" | "update") => {
                let old = current
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                Some(diff(&old, new, &f.path))
            }
            _ => None,
        };
        changes.push(Change::File {
            path: f.path.clone(),
            mode: f.mode,
            owner: f.owner.clone(),
            action: action.to_string(),
            secret: f.contents.is_secret(),
            diff: d,
        });
        staged.files.push(StagedFile {
            dest: f.path.clone(),
            contents: f.contents.clone(),
            mode: f.mode,
            uid,
            gid,
        });
    }

    // Services.
    let mut enabled = Vec::new();
    for svc in &desired.services {
        match target.service_links(svc)? {
            Some(links) => {
                enabled.push(ManagedService {
                    name: svc.name.clone(),
                    links: links
                        .iter()
                        .map(|(link, to)| ManagedLink {
                            link: link.clone(),
                            to: to.clone(),
                        })
                        .collect(),
                });
                for (link, to) in links {
                    let ok = dir.read_link(&link).is_ok_and(|t| t == Path::new(&to));
                    if !ok {
                        changes.push(Change::Service {
                            name: svc.name.clone(),
                            link: link.clone(),
                            to: to.clone(),
                        });
                        staged.links.push((link, to));
                    }
                }
            }
            None if !staged.packages.is_empty() => changes.push(Change::ServiceAfterInstall {
                name: svc.name.clone(),
            }),
            None => {
                return Err(ApplyError::ServiceMissing {
                    name: svc.name.clone(),
                    what: match target.os {
                        Os::Debian => "systemd unit file".to_string(),
                        Os::Alpine => format!("OpenRC script /etc/init.d/{}", svc.name),
                    },
                })
            }
        }
    }

    // What the previous apply managed and nothing wants now.
    let wanted_services: BTreeSet<&str> =
        desired.services.iter().map(|s| s.name.as_str()).collect();
    let wanted_files: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let wanted_dirs: BTreeSet<&str> = desired.dirs.iter().map(|d| d.path.as_str()).collect();
    let wanted_links: BTreeSet<&str> = enabled
        .iter()
        .flat_map(|s| s.links.iter().map(|l| l.link.as_str()))
        .collect();
    plan_removals(
        target,
        &old,
        &Wanted {
            services: &wanted_services,
            links: &wanted_links,
            files: &wanted_files,
            dirs: &wanted_dirs,
        },
        &mut changes,
        &mut staged,
    )?;

    // The new state: every desired file as it will be, every desired service with its links (a
    // service whose unit is still to be installed keeps what was recorded), and the folders
    // created now or before.
    let mut new_state = State {
        version: state::VERSION,
        files: desired
            .files
            .iter()
            .map(|f| ManagedFile {
                path: f.path.clone(),
                sha256: state::sha256_hex(f.contents.bytes()),
            })
            .collect(),
        dirs: desired
            .dirs
            .iter()
            .filter(|d| created_dirs.contains(&d.path) || old.dirs.contains(&d.path))
            .map(|d| d.path.clone())
            .collect(),
        services: enabled,
    };
    for svc in &desired.services {
        if !new_state.services.iter().any(|s| s.name == svc.name) {
            if let Some(s) = old.services.iter().find(|s| s.name == svc.name) {
                new_state.services.push(s.clone());
            }
        }
    }
    new_state.files.dedup_by(|a, b| a.path == b.path);
    new_state.dirs.dedup();
    let bytes = new_state.to_bytes();
    let current = if old_state.is_some() {
        target.read_opt(state::STATE_PATH)?
    } else {
        None
    };
    if current.as_deref() != Some(bytes.as_slice()) {
        changes.push(Change::State {
            path: state::STATE_PATH.to_string(),
            create: old_state.is_none(),
        });
        staged.state = Some(bytes);
    }

    // Reloads, last: they run after the commit. Once per service, in the recipes' order.
    for svc in &desired.services {
        let Some(because) = reasons.remove(svc.name.as_str()) else {
            continue;
        };
        if let Some((how, command)) = target.reload_command(svc) {
            changes.push(Change::Reload {
                service: svc.name.clone(),
                how: how.to_string(),
                because,
                command: command.clone(),
            });
            staged.reloads.push((svc.name.clone(), command));
        }
    }

    Ok(Plan {
        machine: desired.machine.clone(),
        os: desired.os,
        target: target.root.display().to_string(),
        changes,
        staged,
    })
}

/// What the new desired state wants, by name.
struct Wanted<'a> {
    services: &'a BTreeSet<&'a str>,
    /// Links a wanted service is enabled by (another name for the same unit keeps them).
    links: &'a BTreeSet<&'a str>,
    files: &'a BTreeSet<&'a str>,
    dirs: &'a BTreeSet<&'a str>,
}

/// The reason an edited managed file is left.
const CHANGED: &str = "changed since multiverse wrote it";

/// Plans the removal of what `old` lists and `wanted` does not: links that still point where
/// they were made to, files whose bytes still match, folders that will then be empty.
fn plan_removals(
    target: &Target,
    old: &State,
    wanted: &Wanted<'_>,
    changes: &mut Vec<Change>,
    staged: &mut Staged,
) -> Result<(), ApplyError> {
    let dir = target.dir()?;
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    // Everything removed, to tell which folders end up empty.
    let mut removed: BTreeSet<String> = BTreeSet::new();

    for svc in &old.services {
        if wanted.services.contains(svc.name.as_str()) {
            continue;
        }
        let mut disabled = false;
        for l in svc
            .links
            .iter()
            .filter(|l| !wanted.links.contains(l.link.as_str()))
        {
            match dir.read_link(&l.link) {
                Ok(text) if text == Path::new(&l.to) => {
                    changes.push(Change::Disable {
                        name: svc.name.clone(),
                        link: l.link.clone(),
                    });
                    staged.unlinks.push(l.link.clone());
                    removed.insert(l.link.clone());
                    disabled = true;
                }
                Err(e) if gone(&e) => {}
                _ => changes.push(Change::Kept {
                    path: l.link.clone(),
                    reason: "no longer the link multiverse made".to_string(),
                }),
            }
        }
        if disabled {
            if let Some(command) = target.stop_command(&svc.name) {
                changes.push(Change::Stop {
                    name: svc.name.clone(),
                    command: command.clone(),
                });
                staged.stops.push((svc.name.clone(), command));
            }
        }
    }

    for f in &old.files {
        if wanted.files.contains(f.path.as_str()) {
            continue;
        }
        let meta = match dir.symlink_metadata(&f.path) {
            Ok(m) => m,
            Err(e) if gone(&e) => continue,
            Err(source) => {
                return Err(ApplyError::Read {
                    path: target.path(&f.path),
                    source,
                })
            }
        };
        let same = meta.file_type().is_file()
            && target
                .read_opt(&f.path)?
                .is_some_and(|b| state::sha256_hex(&b) == f.sha256);
        if same {
            changes.push(Change::Remove {
                path: f.path.clone(),
            });
            staged.removes.push(f.path.clone());
            removed.insert(f.path.clone());
        } else {
            changes.push(Change::Kept {
                path: f.path.clone(),
                reason: CHANGED.to_string(),
            });
        }
    }

    // Deepest first, so a folder inside another is gone before its parent is looked at.
    let mut dirs: Vec<&String> = old
        .dirs
        .iter()
        .filter(|d| !wanted.dirs.contains(d.as_str()))
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
    for d in dirs {
        match dir.symlink_metadata(d) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                changes.push(Change::Kept {
                    path: d.clone(),
                    reason: "no longer a folder".to_string(),
                });
                continue;
            }
            Err(e) if gone(&e) => continue,
            Err(source) => {
                return Err(ApplyError::Read {
                    path: target.path(d),
                    source,
                })
            }
        }
        let names = dir.read_dir(d).map_err(|source| ApplyError::Read {
            path: target.path(d),
            source,
        })?;
        let empty = names.iter().all(|n| {
            let child = format!("{}/{}", d.trim_end_matches('/'), n.to_string_lossy());
            removed.contains(&child)
        });
        if empty {
            changes.push(Change::RemoveDir { path: d.clone() });
            staged.rmdirs.push(d.clone());
            removed.insert(d.clone());
        } else {
            changes.push(Change::Kept {
                path: d.clone(),
                reason: "folder not empty".to_string(),
            });
        }
    }
    Ok(())
}

/// Puts a chroot target's own `/etc/resolv.conf` back when dropped.
struct BorrowedResolver {
    dir: Arc<RootDir>,
}

const RESOLV: &str = "/etc/resolv.conf";
const RESOLV_SAVED: &str = "/etc/.resolv.conf.multiverse-saved";

impl Drop for BorrowedResolver {
    fn drop(&mut self) {
        let _ = self.dir.rename(RESOLV_SAVED, RESOLV);
    }
}

/// For a chroot (not `/`, not SSH) whose resolv.conf differs from the host's, moves it aside and
/// copies the host's in; the guard restores it, so the target ends as it was.
fn borrow_resolver(target: &Target) -> Result<Option<BorrowedResolver>, ApplyError> {
    if target.ssh.is_some() || target.root == Path::new("/") {
        return Ok(None);
    }
    let host = fs::read("/etc/resolv.conf").unwrap_or_default();
    let dir = target.dir()?;
    let ours = dir.symlink_metadata(RESOLV).ok();
    if ours.is_none() || host.is_empty() || dir.read(RESOLV).is_ok_and(|b| b == host) {
        return Ok(None);
    }
    dir.rename(RESOLV, RESOLV_SAVED)
        .map_err(|source| ApplyError::Write {
            path: target.path(RESOLV),
            source,
        })?;
    let guard = BorrowedResolver { dir: dir.clone() };
    dir.write_new(RESOLV, &host, 0o644, None)
        .map_err(|source| ApplyError::Write {
            path: target.path(RESOLV),
            source,
        })?;
    Ok(Some(guard))
}

/// Removes a file or folder of the target when dropped (the temporary policy-rc.d, the staging
/// folder).
struct Cleanup {
    dir: Arc<RootDir>,
    path: String,
    tree: bool,
}
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = if self.tree {
            self.dir.remove_dir_all(&self.path)
        } else {
            self.dir.remove_file(&self.path)
        };
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("; ")
}

fn install_packages(
    target: &Target,
    packages: &[String],
    runner: &dyn Runner,
) -> Result<(), ApplyError> {
    let (sim, real) = target.package_commands(packages);
    let env: &[(&str, &str)] = &[("DEBIAN_FRONTEND", "noninteractive"), ("LC_ALL", "C")];
    let run = |argv: &[String]| {
        runner.run(argv, env).map_err(|source| ApplyError::Spawn {
            program: argv.first().cloned().unwrap_or_default(),
            source,
        })
    };
    let mut _policy = None;
    if target.os == Os::Debian && target.ssh.is_none() {
        // Package lists: a fresh debootstrap has none.
        let has_lists = target
            .dir()?
            .read_dir("/var/lib/apt/lists")
            .map(|names| {
                names
                    .iter()
                    .any(|n| n.to_string_lossy().ends_with("_Packages"))
            })
            .unwrap_or(false);
        if !has_lists {
            let mut update = target.chroot_prefix();
            update.extend(["apt-get", "update", "-q"].map(String::from));
            let out = run(&update)?;
            if !out.success {
                return Err(ApplyError::Command {
                    command: update.join(" "),
                    message: last_lines(&out.stderr, 3),
                });
            }
        }
    }
    let out = run(&sim)?;
    if !out.success {
        let mut msg: Vec<&str> = out
            .stderr
            .lines()
            .chain(out.stdout.lines())
            .filter(|l| {
                l.starts_with("E:") || l.starts_with("ERROR:") || l.contains("(no such package)")
            })
            .map(str::trim)
            .collect();
        if msg.is_empty() {
            msg.push(out.stderr.trim());
        }
        return Err(ApplyError::Packages {
            packages: packages.join(" "),
            message: msg.join("; "),
        });
    }
    if target.os == Os::Debian && target.root != Path::new("/") && target.ssh.is_none() {
        // Maintainer scripts must not start tor, dnsmasq or sshd on the machine doing the build.
        let p = "/usr/sbin/policy-rc.d";
        let dir = target.dir()?;
        if dir.metadata(p).is_err() {
            dir.write_new(
                p,
                b"#!/bin/sh\n# multiverse provision: no daemons start in a chroot\nexit 101\n",
                0o755,
                None,
            )
            .map_err(|source| ApplyError::Write {
                path: target.path(p),
                source,
            })?;
            _policy = Some(Cleanup {
                dir,
                path: p.to_string(),
                tree: false,
            });
        }
    }
    // A provisioned router's resolv.conf points at its own dnsmasq, which does not run in a
    // chroot: borrow the build machine's resolver while the package manager downloads.
    let _resolver = borrow_resolver(target)?;
    let out = run(&real)?;
    if !out.success {
        return Err(ApplyError::Command {
            command: real.join(" "),
            message: last_lines(&out.stderr, 4),
        });
    }
    Ok(())
}

/// The report of an apply.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// What was changed, in order (empty: "no changes").
    pub changes: Vec<Change>,
}

/// Applies `desired` to `target`: packages first, then everything else staged and committed.
pub fn apply(
    desired: &Desired,
    target: &Target,
    runner: &dyn Runner,
) -> Result<Applied, ApplyError> {
    target.refresh(desired, runner)?;
    // A file or folder may belong to a user its package creates (tor's `debian-tor`): until the
    // packages are in, only they are planned.
    let first = plan(desired, target)?;
    if first.is_empty() {
        return Ok(Applied { changes: vec![] });
    }
    let mut done = Vec::new();
    if !first.staged.packages.is_empty() {
        install_packages(target, &first.staged.packages, runner)?;
        done.extend(
            first
                .changes
                .iter()
                .filter(|c| matches!(c, Change::Packages { .. }))
                .cloned(),
        );
    }
    // Packages drop their own default configs: plan again against what is there now.
    target.refresh(desired, runner)?;
    let second = plan(desired, target)?;
    if let Some(Change::ServiceAfterInstall { name }) = second
        .changes
        .iter()
        .find(|c| matches!(c, Change::ServiceAfterInstall { .. }))
    {
        return Err(ApplyError::ServiceMissing {
            name: name.clone(),
            what: "unit file or init script after installing its packages".to_string(),
        });
    }
    if let Some(path) = second.staged.pending_owner() {
        // Still unknown with every package in: the recipe names a user nothing creates.
        return Err(ApplyError::UnknownOwner {
            path,
            owner: "(created by no installed package)".to_string(),
        });
    }
    let warnings = match &target.ssh {
        None => {
            commit(target, &second.staged)?;
            let mut warnings = stop_services(&second.staged, runner);
            warnings.extend(reload_services(&second.staged, runner));
            warnings
        }
        Some(ssh) => {
            // Over SSH the stops and reloads run in the commit's own session (see
            // `remote::commit`): the failures come back by index.
            let failed = crate::remote::commit(target, ssh, &second.staged, runner)?;
            let stops = second.staged.stops.len();
            failed
                .into_iter()
                .filter_map(|(i, why)| {
                    if i < stops {
                        let (name, argv) = &second.staged.stops[i];
                        Some(PostCommit::Stop.warning(name, argv, why))
                    } else {
                        let (name, argv) = second.staged.reloads.get(i - stops)?;
                        Some(PostCommit::Reload.warning(name, argv, why))
                    }
                })
                .collect()
        }
    };
    done.extend(
        second
            .changes
            .into_iter()
            .filter(|c| !matches!(c, Change::Packages { .. })),
    );
    done.extend(warnings);
    Ok(Applied { changes: done })
}

fn commit(target: &Target, staged: &Staged) -> Result<(), ApplyError> {
    let dir = target.dir()?;
    let staging = format!("/.multiverse-provision.{}", std::process::id());
    let werr = |p: &str| {
        let path = target.path(p);
        move |source| ApplyError::Write { path, source }
    };
    let parent_of = |p: &str| {
        Path::new(p)
            .parent()
            .map_or_else(|| "/".to_string(), |d| d.display().to_string())
    };
    // Made, never reused: something already there (a planted link) is an error.
    dir.create_dir(&staging, 0o700).map_err(werr(&staging))?;
    let guard = Cleanup {
        dir: dir.clone(),
        path: staging.clone(),
        tree: true,
    };

    // 1. Stage: every file with its final bytes, mode and owner. Secrets are 0600-or-stricter
    //    from creation because the mode is set at open.
    let mut ready = Vec::new();
    for (i, f) in staged.files.iter().enumerate() {
        let tmp = format!("{staging}/{i}");
        dir.write_new(&tmp, f.contents.bytes(), f.mode, Some((f.uid, f.gid)))
            .map_err(werr(&tmp))?;
        ready.push((tmp, &f.dest));
    }
    let state_tmp = format!("{staging}/state");
    if let Some(bytes) = &staged.state {
        dir.write_new(&state_tmp, bytes, 0o600, Some((0, 0)))
            .map_err(werr(&state_tmp))?;
    }
    // 2. Commit: folders, renames, links, each resolved inside the target.
    for (d, mode, uid, gid) in &staged.dirs {
        dir.create_dir_all(d, 0o755).map_err(werr(d))?;
        dir.set_owner(d, *uid, *gid).map_err(werr(d))?;
        dir.set_mode(d, *mode).map_err(werr(d))?;
    }
    for (tmp, dest) in ready {
        let parent = parent_of(dest);
        dir.create_dir_all(&parent, 0o755).map_err(werr(&parent))?;
        // A symlink at the destination (Debian's /etc/resolv.conf can be one) is replaced, not followed.
        dir.rename(&tmp, dest).map_err(werr(dest))?;
        let _ = dir.sync_dir(&parent);
    }
    for (link, to) in &staged.links {
        let parent = parent_of(link);
        dir.create_dir_all(&parent, 0o755).map_err(werr(&parent))?;
        let name = Path::new(link)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = format!("{parent}/.{name}.mvlink");
        let _ = dir.remove_file(&tmp);
        dir.symlink(to, &tmp).map_err(werr(&tmp))?;
        dir.rename(&tmp, link).map_err(werr(link))?;
    }
    // 3. What the previous apply made and nothing wants now (gone already is fine: a rerun
    //    after a crash).
    let ok_gone = |r: std::io::Result<()>, p: &str| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(werr(p)(e)),
        _ => Ok(()),
    };
    for p in staged.unlinks.iter().chain(&staged.removes) {
        ok_gone(dir.remove_file(p), p)?;
        let _ = dir.sync_dir(parent_of(p));
    }
    for d in &staged.rmdirs {
        // Planned empty; something written there since stays, with its folder.
        match dir.remove_dir(d) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
            r => ok_gone(r, d)?,
        }
    }
    // 4. The state, last.
    if staged.state.is_some() {
        let parent = parent_of(state::STATE_PATH);
        dir.create_dir_all(&parent, 0o755).map_err(werr(&parent))?;
        dir.rename(&state_tmp, state::STATE_PATH)
            .map_err(werr(state::STATE_PATH))?;
        let _ = dir.sync_dir(&parent);
    }
    drop(guard);
    Ok(())
}

/// What is done to a service after the commit, and what its failure leaves behind.
#[derive(Clone, Copy)]
enum PostCommit {
    /// Stopping a service the commit disabled (it will not start at the next boot either way).
    Stop,
    /// Reloading a service whose files changed (it reads them at its next start either way).
    Reload,
}

impl PostCommit {
    /// The warning for a failed command: the files are in place, the service may lag behind.
    fn warning(self, name: &str, argv: &[String], why: String) -> Change {
        let what = match self {
            PostCommit::Stop => "disabled but maybe still running",
            PostCommit::Reload => "its files changed but it was not reloaded",
        };
        Change::Kept {
            path: format!("service {name}"),
            reason: format!("{what}: `{}`: {why}", argv.join(" ")),
        }
    }
}

/// Runs the post-commit commands of `kind` (`staged.stops` or `staged.reloads`); each failure is
/// a warning, never a failed apply.
fn run_post_commit(
    kind: PostCommit,
    commands: &[(String, Vec<String>)],
    runner: &dyn Runner,
) -> Vec<Change> {
    let mut warnings = Vec::new();
    for (name, argv) in commands {
        let why = match runner.run(argv, &[]) {
            Ok(out) if out.success => continue,
            Ok(out) => last_lines(&out.stderr, 2),
            Err(e) => e.to_string(),
        };
        warnings.push(kind.warning(name, argv, why));
    }
    warnings
}

/// Stops the services a commit disabled.
fn stop_services(staged: &Staged, runner: &dyn Runner) -> Vec<Change> {
    run_post_commit(PostCommit::Stop, &staged.stops, runner)
}

/// Reloads the services whose files the commit changed.
fn reload_services(staged: &Staged, runner: &dyn Runner) -> Vec<Change> {
    run_post_commit(PostCommit::Reload, &staged.reloads, runner)
}

// A malformed state file on the target is for the person to resolve (delete it to adopt the
// machine); everything else is the target or a tool failing.
impl mv_core::Classify for ApplyError {
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            ApplyError::State { .. } => mv_core::ErrorClass::Usage,
            _ => mv_core::ErrorClass::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::DesiredDir;

    /// A Debian root with nothing to install and a unit per service name given.
    fn debian(units: &[&str]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let r = t.path();
        for d in ["etc", "var/lib/dpkg", "lib/systemd/system"] {
            fs::create_dir_all(r.join(d)).unwrap_or_else(|e| panic!("{e}"));
        }
        let w = |p: &str, text: &str| {
            fs::write(r.join(p), text).unwrap_or_else(|e| panic!("{p}: {e}"));
        };
        w("etc/debian_version", "12.8\n");
        w("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
        w("etc/group", "root:x:0:\n");
        w("etc/shadow", "root:*:19000:0:99999:7:::\n");
        w("var/lib/dpkg/status", "");
        for u in units {
            w(
                &format!("lib/systemd/system/{u}"),
                "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
            );
        }
        t
    }

    fn desired(files: &[(&str, &str)], dirs: &[&str], services: &[&str]) -> Desired {
        Desired {
            machine: "m.multiverse".into(),
            os: Os::Debian,
            recipes: vec![],
            packages: vec![],
            services: services
                .iter()
                .map(|n| ServiceSpec {
                    name: n.to_string(),
                    runlevel: "default".into(),
                    restart: false,
                })
                .collect(),
            dirs: dirs
                .iter()
                .map(|d| DesiredDir {
                    path: d.to_string(),
                    mode: 0o700,
                    owner: "root".into(),
                })
                .collect(),
            files: files
                .iter()
                .map(|(p, text)| DesiredFile {
                    path: p.to_string(),
                    contents: Contents::Public(text.to_string()),
                    mode: 0o600,
                    owner: "root".into(),
                    origin: "test".into(),
                    reload: vec![],
                })
                .collect(),
            users: vec![],
        }
    }

    fn summaries(changes: &[Change]) -> Vec<String> {
        changes.iter().map(Change::summary).collect()
    }

    const WG_LINK: &str = "/etc/systemd/system/multi-user.target.wants/wg-quick@wg0.service";

    #[test]
    fn dropped_service_file_and_folder_are_removed_then_nothing_changes() {
        let t = debian(&["wg-quick@.service", "openvpn-client@.service"]);
        let target = Target::open(t.path(), Os::Debian).unwrap_or_else(|e| panic!("{e}"));
        let before = desired(
            &[("/etc/wireguard/wg0.key", "k"), ("/etc/hs/dir/key", "s")],
            &["/etc/hs", "/etc/hs/dir"],
            &["wg-quick@wg0"],
        );
        let done = apply(&before, &target, &SystemRunner).unwrap_or_else(|e| panic!("{e}"));
        assert!(summaries(&done.changes)
            .iter()
            .any(|s| s.starts_with("record /var/lib/multiverse/provision-state.json")));
        let st = target
            .read_state()
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_default();
        assert_eq!(st.dirs, ["/etc/hs", "/etc/hs/dir"]);
        let meta = fs::symlink_metadata(t.path().join("var/lib/multiverse/provision-state.json"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert!(t.path().join(WG_LINK.trim_start_matches('/')).is_symlink());

        let after = desired(&[], &[], &["openvpn-client@galaxy"]);
        let p = plan(&after, &target).unwrap_or_else(|e| panic!("{e}"));
        let lines = summaries(&p.changes);
        for want in [
            format!("disable service wg-quick@wg0 ({WG_LINK})"),
            "remove /etc/wireguard/wg0.key (no longer wanted)".to_string(),
            "remove /etc/hs/dir/key (no longer wanted)".to_string(),
            "remove folder /etc/hs/dir (empty, no longer wanted)".to_string(),
            "remove folder /etc/hs (empty, no longer wanted)".to_string(),
        ] {
            assert!(lines.contains(&want), "{want} not in {lines:#?}");
        }
        // A chroot runs nothing: no stop.
        assert!(!p.changes.iter().any(|c| matches!(c, Change::Stop { .. })));
        apply(&after, &target, &SystemRunner).unwrap_or_else(|e| panic!("{e}"));
        for gone in [WG_LINK, "/etc/wireguard/wg0.key", "/etc/hs"] {
            assert!(
                fs::symlink_metadata(t.path().join(gone.trim_start_matches('/'))).is_err(),
                "{gone}"
            );
        }
        // The folder holding the removed key stays (not one multiverse created).
        assert!(t.path().join("etc/wireguard").is_dir());
        let again = apply(&after, &target, &SystemRunner).unwrap_or_else(|e| panic!("{e}"));
        assert!(again.changes.is_empty(), "{:#?}", again.changes);
    }

    #[test]
    fn an_edited_file_a_moved_link_and_a_full_folder_are_left_with_a_warning() {
        let t = debian(&["tor.service"]);
        let target = Target::open(t.path(), Os::Debian).unwrap_or_else(|e| panic!("{e}"));
        let before = desired(&[("/etc/a", "a"), ("/srv/x/f", "f")], &["/srv/x"], &["tor"]);
        apply(&before, &target, &SystemRunner).unwrap_or_else(|e| panic!("{e}"));
        fs::write(t.path().join("etc/a"), "edited by hand").unwrap_or_else(|e| panic!("{e}"));
        fs::write(t.path().join("srv/x/mine"), "").unwrap_or_else(|e| panic!("{e}"));
        let link = t
            .path()
            .join("etc/systemd/system/multi-user.target.wants/tor.service");
        fs::remove_file(&link).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("/dev/null", &link).unwrap_or_else(|e| panic!("{e}"));
        let after = desired(&[], &[], &[]);
        let done = apply(&after, &target, &SystemRunner).unwrap_or_else(|e| panic!("{e}"));
        let lines = summaries(&done.changes);
        for want in [
            "left in place: /etc/a: changed since multiverse wrote it",
            "left in place: /srv/x: folder not empty",
            "remove /srv/x/f (no longer wanted)",
        ] {
            assert!(lines.iter().any(|l| l == want), "{want} not in {lines:#?}");
        }
        assert!(lines.iter().any(|l| l.starts_with(
            "left in place: /etc/systemd/system/multi-user.target.wants/tor.service"
        )));
        assert_eq!(
            fs::read_to_string(t.path().join("etc/a")).unwrap_or_default(),
            "edited by hand"
        );
        assert!(link.is_symlink());
        // Handed over: the next apply neither warns nor changes.
        let again = apply(&after, &target, &SystemRunner).unwrap_or_else(|e| panic!("{e}"));
        assert!(again.changes.is_empty(), "{:#?}", again.changes);
    }

    #[test]
    fn no_state_removes_nothing_and_a_bad_state_changes_nothing() {
        let t = debian(&[]);
        let target = Target::open(t.path(), Os::Debian).unwrap_or_else(|e| panic!("{e}"));
        fs::write(t.path().join("etc/old"), "x").unwrap_or_else(|e| panic!("{e}"));
        let d = desired(&[("/etc/new", "n")], &[], &[]);
        let p = plan(&d, &target).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            summaries(&p.changes),
            [
                "create /etc/new (0600 root)",
                "record /var/lib/multiverse/provision-state.json (what multiverse manages here)"
            ]
        );
        let state = t.path().join("var/lib/multiverse/provision-state.json");
        fs::create_dir_all(state.parent().unwrap_or(t.path())).unwrap_or_else(|e| panic!("{e}"));
        for bad in [&b"{"[..], b"{\"version\": 2}", b"{\"version\":1,\"files\":[{\"path\":\"/../x\",\"sha256\":\"\"}],\"dirs\":[],\"services\":[]}"] {
            fs::write(&state, bad).unwrap_or_else(|e| panic!("{e}"));
            let e = apply(&d, &target, &SystemRunner).err();
            assert!(
                matches!(e, Some(ApplyError::State { ref path, .. }) if *path == state),
                "{e:?}"
            );
            assert!(!t.path().join("etc/new").exists());
        }
        // A link in its place is not followed.
        fs::remove_file(&state).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("/etc/old", &state).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            plan(&d, &target),
            Err(ApplyError::State {
                source: StateError::NotAFile,
                ..
            })
        ));
    }

    #[test]
    fn stop_only_on_a_running_debian_system() {
        let t = debian(&[]);
        let chroot = Target::open(t.path(), Os::Debian).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(chroot.stop_command("wg-quick@wg0"), None);
        let ssh = Target::over_ssh(vec!["ssh".into(), "root@h".into()], t.path(), Os::Debian);
        assert_eq!(
            ssh.stop_command("wg-quick@wg0"),
            Some(
                [
                    "ssh",
                    "root@h",
                    "systemctl",
                    "stop",
                    "--no-block",
                    "--",
                    "wg-quick@wg0.service"
                ]
                .map(String::from)
                .to_vec()
            )
        );
        let alpine = Target::over_ssh(vec!["ssh".into()], t.path(), Os::Alpine);
        assert_eq!(alpine.stop_command("tor"), None);
    }

    /// Records the commands it is given; fails them all when `fail`.
    #[derive(Default)]
    struct Recorder {
        calls: std::cell::RefCell<Vec<Vec<String>>>,
        fail: bool,
    }

    impl Runner for Recorder {
        fn run(&self, argv: &[String], _env: &[(&str, &str)]) -> std::io::Result<RunOutput> {
            self.calls.borrow_mut().push(argv.to_vec());
            Ok(RunOutput {
                success: !self.fail,
                stderr: if self.fail {
                    "Failed to reload ssh.service: Access denied\n".into()
                } else {
                    String::new()
                },
                ..Default::default()
            })
        }
    }

    /// sshd's key and config (reloading ssh), dnsmasq's config (restarting dnsmasq), a file
    /// reloading nothing; ssh and dnsmasq enabled, dnsmasq marked `restart`.
    fn with_reloads() -> Desired {
        let mut d = desired(
            &[
                ("/etc/ssh/sshd_config", "Port 22\n"),
                ("/etc/motd", "hello\n"),
                ("/etc/dnsmasq.conf", "no-resolv\n"),
                ("/etc/ssh/ssh_host_ed25519_key", "KEY\n"),
            ],
            &[],
            &["dnsmasq", "ssh"],
        );
        for f in &mut d.files {
            f.reload = match f.path.as_str() {
                "/etc/motd" => vec![],
                "/etc/dnsmasq.conf" => vec!["dnsmasq".into()],
                _ => vec!["ssh".into()],
            };
        }
        d.services[0].restart = true;
        d
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Over SSH the reloads run in the commit's own session, after the files are extracted (a
    /// new connection could meet a host key the caller does not know yet: sshd's keys may be
    /// among the files), each in order; one that fails comes back as a warning with its reason.
    #[test]
    fn reloads_over_ssh_run_in_the_commits_session() {
        struct Session {
            scripts: std::cell::RefCell<Vec<String>>,
        }
        impl Runner for Session {
            fn run(&self, argv: &[String], _env: &[(&str, &str)]) -> std::io::Result<RunOutput> {
                self.scripts.borrow_mut().push(argv.join(" "));
                Ok(RunOutput {
                    success: true,
                    // The second command (ssh's reload) failed on the machine.
                    stdout: "multiverse-post-commit-failed 1 Access denied \n".into(),
                    ..Default::default()
                })
            }
        }
        let t = debian(&["ssh.service", "dnsmasq.service"]);
        let ssh = vec!["ssh".to_string(), "root@h".to_string()];
        let target = Target::over_ssh(ssh.clone(), t.path(), Os::Debian);
        let p = plan(&with_reloads(), &target).unwrap_or_else(|e| panic!("{e}"));
        let r = Session {
            scripts: Default::default(),
        };
        let failed =
            crate::remote::commit(&target, &ssh, &p.staged, &r).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(failed, [(1, "Access denied".to_string())]);
        let scripts = r.scripts.into_inner();
        assert_eq!(scripts.len(), 1, "one session: {scripts:#?}");
        let script = &scripts[0];
        let extract = script
            .find("tar -C / -xpf -")
            .unwrap_or_else(|| panic!("{script}"));
        let dnsmasq = script
            .find("systemctl'\\'' '\\''try-restart")
            .unwrap_or_else(|| panic!("{script}"));
        let ssh_reload = script
            .find("systemctl'\\'' '\\''try-reload-or-restart")
            .unwrap_or_else(|| panic!("{script}"));
        assert!(extract < dnsmasq && dnsmasq < ssh_reload, "{script}");
    }

    /// A Debian machine over SSH: one reload per service, after everything else, in the order
    /// the recipes enable them, through the ssh prefix; `try-restart` for a `restart` service.
    #[test]
    fn reload_commands_over_ssh_on_debian() {
        let t = debian(&["ssh.service", "dnsmasq.service"]);
        let ssh = vec!["ssh".to_string(), "root@h".to_string()];
        let target = Target::over_ssh(ssh, t.path(), Os::Debian);
        let p = plan(&with_reloads(), &target).unwrap_or_else(|e| panic!("{e}"));
        let lines = summaries(&p.changes);
        assert_eq!(
            lines[lines.len() - 2..],
            [
                "restart service dnsmasq (/etc/dnsmasq.conf changed)",
                "reload service ssh (/etc/ssh/sshd_config and 1 more changed)"
            ]
        );
        let Some(Change::Reload { because, .. }) = p.changes.last() else {
            panic!("{lines:#?}")
        };
        assert_eq!(
            because,
            &["/etc/ssh/sshd_config", "/etc/ssh/ssh_host_ed25519_key"]
        );
        let r = Recorder::default();
        assert!(reload_services(&p.staged, &r).is_empty());
        assert_eq!(
            r.calls.into_inner(),
            [
                strings(&[
                    "ssh",
                    "root@h",
                    "systemctl",
                    "try-restart",
                    "--no-block",
                    "--",
                    "dnsmasq.service"
                ]),
                strings(&[
                    "ssh",
                    "root@h",
                    "systemctl",
                    "try-reload-or-restart",
                    "--no-block",
                    "--",
                    "ssh.service"
                ]),
            ]
        );
    }

    /// An Alpine machine over SSH: `rc-service --ifstarted NAME restart`, `restart` or not.
    #[test]
    fn reload_commands_over_ssh_on_alpine() {
        let t = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let init = t.path().join("etc/init.d");
        fs::create_dir_all(&init).unwrap_or_else(|e| panic!("{e}"));
        for s in ["sshd", "dnsmasq"] {
            fs::write(init.join(s), "#!/sbin/openrc-run\n").unwrap_or_else(|e| panic!("{e}"));
        }
        fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/ash\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        fs::write(t.path().join("etc/group"), "root:x:0:\n").unwrap_or_else(|e| panic!("{e}"));
        let mut d = with_reloads();
        d.os = Os::Alpine;
        d.services[1].name = "sshd".into();
        for f in &mut d.files {
            for s in &mut f.reload {
                if s == "ssh" {
                    *s = "sshd".into();
                }
            }
        }
        let target = Target::over_ssh(vec!["ssh".into(), "root@h".into()], t.path(), Os::Alpine);
        let p = plan(&d, &target).unwrap_or_else(|e| panic!("{e}"));
        let r = Recorder::default();
        assert!(reload_services(&p.staged, &r).is_empty());
        assert_eq!(
            r.calls.into_inner(),
            [
                strings(&[
                    "ssh",
                    "root@h",
                    "rc-service",
                    "--ifstarted",
                    "dnsmasq",
                    "restart"
                ]),
                strings(&[
                    "ssh",
                    "root@h",
                    "rc-service",
                    "--ifstarted",
                    "sshd",
                    "restart"
                ]),
            ]
        );
        assert!(summaries(&p.changes)
            .contains(&"restart service sshd (/etc/ssh/sshd_config and 1 more changed)".into()));
    }

    /// A chroot (a mounted folder) runs nothing, however much changed.
    #[test]
    fn no_reload_in_a_mounted_folder() {
        let t = debian(&["ssh.service", "dnsmasq.service"]);
        let target = Target::open(t.path(), Os::Debian).unwrap_or_else(|e| panic!("{e}"));
        assert!(target.reload_command(&with_reloads().services[0]).is_none());
        let r = Recorder::default();
        let done = apply(&with_reloads(), &target, &r).unwrap_or_else(|e| panic!("{e}"));
        assert!(!done
            .changes
            .iter()
            .any(|c| matches!(c, Change::Reload { .. })));
        assert!(r.calls.into_inner().is_empty());
    }

    /// The running system itself (`/`, as the seed applies it): a reload when a file it reads is
    /// created or changed, none when the files already match or only an unrelated one changed.
    #[test]
    fn reload_only_when_its_files_changed() {
        let t = debian(&["ssh.service", "dnsmasq.service"]);
        let mut target = Target::open(t.path(), Os::Debian).unwrap_or_else(|e| panic!("{e}"));
        target.running = true; // stands in for `/`: no command prefix
        let mut d = with_reloads();
        let r = Recorder::default();
        apply(&d, &target, &r).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.calls.take(),
            [
                strings(&[
                    "systemctl",
                    "try-restart",
                    "--no-block",
                    "--",
                    "dnsmasq.service"
                ]),
                strings(&[
                    "systemctl",
                    "try-reload-or-restart",
                    "--no-block",
                    "--",
                    "ssh.service"
                ]),
            ]
        );
        let again = apply(&d, &target, &r).unwrap_or_else(|e| panic!("{e}"));
        assert!(again.changes.is_empty(), "{:#?}", again.changes);
        d.files[1].contents = Contents::Public("changed motd\n".into());
        apply(&d, &target, &r).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.calls.take().is_empty());
        d.files[0].contents = Contents::Public("Port 2222\n".into());
        let done = apply(&d, &target, &r).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            summaries(&done.changes)
                .iter()
                .filter(|l| l.contains(" service "))
                .collect::<Vec<_>>(),
            ["reload service ssh (/etc/ssh/sshd_config changed)"]
        );
        assert_eq!(r.calls.take().len(), 1);
    }

    /// A reload that fails is a warning: the apply succeeds and the files are in place.
    #[test]
    fn a_failed_reload_is_a_warning() {
        let t = debian(&["ssh.service", "dnsmasq.service"]);
        let mut target = Target::open(t.path(), Os::Debian).unwrap_or_else(|e| panic!("{e}"));
        target.running = true;
        let r = Recorder {
            fail: true,
            ..Default::default()
        };
        let done = apply(&with_reloads(), &target, &r).unwrap_or_else(|e| panic!("{e}"));
        let warnings: Vec<String> = done
            .changes
            .iter()
            .filter(|c| c.is_warning())
            .map(Change::summary)
            .collect();
        assert_eq!(
            warnings,
            [
                "left in place: service dnsmasq: its files changed but it was not reloaded: `systemctl try-restart --no-block -- dnsmasq.service`: Failed to reload ssh.service: Access denied",
                "left in place: service ssh: its files changed but it was not reloaded: `systemctl try-reload-or-restart --no-block -- ssh.service`: Failed to reload ssh.service: Access denied",
            ]
        );
        assert_eq!(
            fs::read_to_string(t.path().join("etc/ssh/sshd_config")).unwrap_or_default(),
            "Port 22\n"
        );
        assert!(t
            .path()
            .join("var/lib/multiverse/provision-state.json")
            .is_file());
    }

    #[test]
    fn install_section_keys() {
        let u = "[Unit]\nWantedBy=no\n[Install]\nWantedBy=multi-user.target network-online.target\nAlias=sshd.service\n";
        assert_eq!(
            install_section(u),
            [
                (
                    "WantedBy".to_string(),
                    "multi-user.target network-online.target".to_string()
                ),
                ("Alias".to_string(), "sshd.service".to_string())
            ]
        );
    }
}
