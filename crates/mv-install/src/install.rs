//! The installation itself: a fixed list of [`Step`]s run in order, each recorded in a journal
//! when done, so that a run killed at any point is finished by running it again, and a run after
//! the last step changes nothing.
//!
//! The journal (`<state>/journal.json`, written atomically) holds the SHA-256 of the answer file
//! (a rerun with other answers is refused), the disk and the steps done. The identity made for a
//! new install is sealed into `<state>/identity/` at its step, so a rerun uses the same words.
//! Every identifier of the new disk (GPT GUIDs, LUKS and file system UUIDs) derives from the
//! [`install_id`], itself derived from the host's public key: a rerun, a reinstall or a rebuild
//! from the words makes the same partition table.
//!
//! Steps that only set up the session (loop device, opened LUKS volume, mounts, bind mounts) are
//! not journaled: [`Session`] makes them on demand, idempotently, and undoes them at the end.
//!
//! What this is not: the checks of the answers (`answers`) or the file contents (`files`).

use crate::answers::{Checked, Pbkdf, Source, TopologyKind};
use crate::files::{self, DiskIds, MAPPER_NAME, TOKEN_IMAGE, TOKEN_LABEL};
use crate::host::{Cmd, Host, HostError, SECRET_FD};
use mv_core::secret::SecretBytes;
use mv_identity::{IdentityStore, KdfParams, Root};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Make (or restore) the identity and seal it in the state folder.
    Identity,
    /// GPT: ESP, /boot, LUKS.
    Partition,
    /// LUKS2: the identity's key in one keyslot, the passphrase in another.
    Luks,
    /// FAT on the ESP, ext4 on /boot and on the opened root.
    Filesystems,
    /// The Debian system from the source.
    Copy,
    /// Host name, fstab, crypttab, the boot hook, vfio, limits, udev, the lockdown.
    Configure,
    /// `/var/multiverse`: multiverse.toml, the sealed identity, public keys, the guard armed.
    Tree,
    /// The initramfs with cryptsetup and the token hook.
    Initramfs,
    /// GRUB for UEFI on the ESP.
    Bootloader,
    /// The token: FAT labelled MVTOKEN holding the key hidden in an image.
    Token,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 10] = [
        Step::Identity,
        Step::Partition,
        Step::Luks,
        Step::Filesystems,
        Step::Copy,
        Step::Configure,
        Step::Tree,
        Step::Initramfs,
        Step::Bootloader,
        Step::Token,
    ];

    /// Its name in the journal and on screen.
    pub fn name(self) -> &'static str {
        match self {
            Step::Identity => "identity",
            Step::Partition => "partition",
            Step::Luks => "luks",
            Step::Filesystems => "filesystems",
            Step::Copy => "copy",
            Step::Configure => "configure",
            Step::Tree => "tree",
            Step::Initramfs => "initramfs",
            Step::Bootloader => "bootloader",
            Step::Token => "token",
        }
    }

    /// The step called `name`.
    pub fn parse(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Environment variable for crash tests: abort the process in the middle of the named step (after
/// its first command), as abruptly as `kill -9`. Only with the `test-hooks` feature (the tests'
/// builds, `crates/multiverse/tests/install_lab.rs`): no environment variable can abort a product
/// build.
#[cfg(feature = "test-hooks")]
pub const CRASH_ENV: &str = "MV_INSTALL_CRASH_IN";

/// Why the installation stopped.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A command or write failed.
    #[error("step {step}: {source}")]
    Host {
        /// The step.
        step: &'static str,
        /// What failed.
        source: HostError,
    },
    /// The journal belongs to another answer file or disk.
    #[error(
        "{journal} records an unfinished install with other answers (answer file or disk changed)"
    )]
    OtherInstall {
        /// The journal.
        journal: PathBuf,
    },
    /// The journal cannot be read or written.
    #[error("journal {path}: {message}")]
    Journal {
        /// The journal.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The disk holds data and the answers do not say to erase it.
    #[error(
        "{disk} already holds a partition table ({what}); the installer erases the whole disk"
    )]
    NotBlank {
        /// The disk.
        disk: PathBuf,
        /// What is there.
        what: String,
    },
    /// The source lacks something the host needs.
    #[error("the source {source_path} lacks {missing}")]
    SourceIncomplete {
        /// The source.
        source_path: PathBuf,
        /// What is missing.
        missing: String,
    },
    /// The identity could not be made, read or sealed.
    #[error("identity: {0}")]
    Identity(String),
    /// Something else the step found wrong.
    #[error("step {step}: {message}")]
    Step {
        /// The step.
        step: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// How an install ran.
#[derive(Debug, Default)]
pub struct Report {
    /// Steps run now.
    pub ran: Vec<Step>,
    /// Steps already done by an earlier run.
    pub skipped: Vec<Step>,
    /// The recovery words of a new identity (shown once), when this run made it.
    pub new_words: Option<mv_core::secret::SecretString>,
}

/// Where the installer keeps its own state and finds what it copies.
#[derive(Debug, Clone)]
pub struct Options {
    /// The journal and the sealed identity of the install in progress.
    pub state_dir: PathBuf,
    /// Where the target is mounted while installing.
    pub mount_dir: PathBuf,
    /// The multiverse binaries copied into the new system's /usr/local/bin.
    pub binaries: Vec<PathBuf>,
    /// sysfs (to find the token's USB ids).
    pub sys: PathBuf,
    /// Whether the host CPU is Intel (decides intel_iommu=on or amd_iommu=on).
    pub intel: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct JournalFile {
    answers_sha256: String,
    disk: PathBuf,
    done: Vec<Step>,
}

/// The journal on disk.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    file: JournalFile,
}

impl Journal {
    /// Reads the journal of an earlier run, if any.
    pub(crate) fn read(state_dir: &Path) -> Result<Option<Journal>, InstallError> {
        let path = state_dir.join("journal.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(InstallError::Journal {
                    path,
                    message: e.to_string(),
                })
            }
        };
        let file: JournalFile = serde_json::from_str(&text).map_err(|e| InstallError::Journal {
            path: path.clone(),
            message: format!("{e}; remove it to start over (the disk is erased again)"),
        })?;
        Ok(Some(Journal { path, file }))
    }

    /// Whether `step` is recorded as done.
    pub(crate) fn is_done(&self, step: Step) -> bool {
        self.file.done.contains(&step)
    }

    /// Whether every step is done.
    pub(crate) fn complete(&self) -> bool {
        Step::ALL.iter().all(|s| self.is_done(*s))
    }

    fn save(&self) -> Result<(), InstallError> {
        let text = serde_json::to_string_pretty(&self.file).map_err(|e| InstallError::Journal {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| InstallError::Journal {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        }
        mv_core::fsutil::write_atomic(&self.path, text.as_bytes(), 0o600)
            .map(|_| ())
            .map_err(|e| InstallError::Journal {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }
}

/// A UUID made from the install id and a label (version 4 and variant bits set, so tools accept it).
fn derived_uuid(install_id: &str, label: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"multiverse-install-v1\0");
    h.update(install_id.as_bytes());
    h.update(b"\0");
    h.update(label.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

/// Every identifier of the disk, from the install id.
#[cfg_attr(not(feature = "test-hooks"), allow(unreachable_pub))] // `golden` re-exports it
pub fn disk_ids(install_id: &str) -> DiskIds {
    let esp = derived_uuid(install_id, "esp-volid");
    DiskIds {
        label_id: derived_uuid(install_id, "gpt"),
        esp_part: derived_uuid(install_id, "esp"),
        boot_part: derived_uuid(install_id, "boot"),
        luks_part: derived_uuid(install_id, "luks"),
        luks_uuid: derived_uuid(install_id, "luks-header"),
        esp_volid: esp[..8].to_string(),
        boot_fs: derived_uuid(install_id, "boot-fs"),
        root_fs: derived_uuid(install_id, "root-fs"),
    }
}

/// The partition device `n` of `disk` (`/dev/sda` → `/dev/sda2`, `/dev/nvme0n1` → `/dev/nvme0n1p2`).
pub(crate) fn partition(disk: &Path, n: u32) -> PathBuf {
    let s = disk.display().to_string();
    if s.chars().last().is_some_and(|c| c.is_ascii_digit()) {
        PathBuf::from(format!("{s}p{n}"))
    } else {
        PathBuf::from(format!("{s}{n}"))
    }
}

/// The sfdisk script of the new disk.
#[cfg_attr(not(feature = "test-hooks"), allow(unreachable_pub))] // `golden` re-exports it
pub fn sfdisk_script(ids: &DiskIds) -> String {
    format!(
        "label: gpt\nlabel-id: {}\nfirst-lba: 2048\n\
         start=2048, size=512MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid={}, name=\"multiverse-esp\"\n\
         size=512MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid={}, name=\"multiverse-boot\"\n\
         type=CA7D7CCB-63ED-4C53-861C-1742536059CC, uuid={}, name=\"multiverse-root\"\n",
        ids.label_id.to_uppercase(),
        ids.esp_part.to_uppercase(),
        ids.boot_part.to_uppercase(),
        ids.luks_part.to_uppercase(),
    )
}

/// Marks a crash point: aborts the process here if [`CRASH_ENV`] names `step`.
#[cfg(feature = "test-hooks")]
fn crash_point(step: Step) {
    if std::env::var(CRASH_ENV).ok().as_deref() == Some(step.name()) {
        std::process::abort();
    }
}

/// Marks a crash point: nothing, without the `test-hooks` feature.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
fn crash_point(_step: Step) {}

/// The session: what is attached, opened and mounted while the steps run, undone by [`Session::close`].
struct Session<'h> {
    host: &'h mut dyn Host,
    a: &'h Checked,
    o: &'h Options,
    ids: DiskIds,
    install_id: String,
    /// The disk as a block device (a loop device for an image file).
    disk_dev: Option<PathBuf>,
    loops: Vec<PathBuf>,
    opened: bool,
    mounts: Vec<PathBuf>,
    root: Option<Root>,
    /// The source's root, once mounted.
    source: Option<PathBuf>,
}

impl Session<'_> {
    fn run(&mut self, step: Step, cmd: Cmd) -> Result<crate::host::Ran, InstallError> {
        self.host.run(cmd).map_err(|source| InstallError::Host {
            step: step.name(),
            source,
        })
    }

    fn target(&self) -> PathBuf {
        self.o.mount_dir.join("target")
    }

    fn disk(&mut self, step: Step) -> Result<PathBuf, InstallError> {
        if let Some(d) = &self.disk_dev {
            return Ok(d.clone());
        }
        let is_file = std::fs::metadata(&self.a.disk).is_ok_and(|m| m.is_file());
        let dev = if is_file {
            let dev = self.attach_loop(step, &self.a.disk.clone(), false)?;
            self.loops.push(dev.clone());
            dev
        } else {
            self.a.disk.clone()
        };
        self.disk_dev = Some(dev.clone());
        Ok(dev)
    }

    fn attach_loop(
        &mut self,
        step: Step,
        file: &Path,
        read_only: bool,
    ) -> Result<PathBuf, InstallError> {
        let mut argv = vec!["losetup", "--find", "--show", "--partscan"];
        if read_only {
            argv.push("--read-only");
        }
        let f = file.display().to_string();
        argv.push(&f);
        let out = self.run(step, Cmd::new(argv))?;
        let dev = out.stdout.trim();
        let dev = if dev.is_empty() { "/dev/loopN" } else { dev };
        self.settle(step)?;
        Ok(PathBuf::from(dev))
    }

    fn settle(&mut self, step: Step) -> Result<(), InstallError> {
        self.run(
            step,
            Cmd::new(["udevadm", "settle", "--timeout=30"]).ok_codes(&[1]),
        )?;
        Ok(())
    }

    fn luks_key(&self) -> Result<SecretBytes, InstallError> {
        let root = self
            .root
            .as_ref()
            .ok_or_else(|| InstallError::Identity("the identity was not loaded".into()))?;
        Ok(root.luks_key(&host_identity_name(&self.a.hostname)?))
    }

    fn passphrase_bytes(&self) -> SecretBytes {
        SecretBytes::new(self.a.passphrase.expose().as_bytes().to_vec())
    }

    fn open(&mut self, step: Step) -> Result<PathBuf, InstallError> {
        let mapper = PathBuf::from("/dev/mapper").join(MAPPER_NAME);
        if self.opened || (!self.host.is_dry() && mapper.exists()) {
            self.opened = true;
            return Ok(mapper);
        }
        let disk = self.disk(step)?;
        let key = self.luks_key()?;
        let dev = partition(&disk, 3);
        self.run(
            step,
            Cmd::new(mv_guard::luks::open_argv(&dev, MAPPER_NAME)).stdin(key),
        )?;
        self.opened = true;
        Ok(mapper)
    }

    fn mount(&mut self, step: Step, dev: &Path, at: &Path, opts: &str) -> Result<(), InstallError> {
        if self.mounts.iter().any(|m| m == at) {
            return Ok(());
        }
        if !self.host.is_dry() {
            std::fs::create_dir_all(at).map_err(|e| InstallError::Step {
                step: step.name(),
                message: format!("cannot create {}: {e}", at.display()),
            })?;
            if is_mountpoint(at) {
                // Left by a killed run: ours, reuse it.
                self.mounts.push(at.to_path_buf());
                return Ok(());
            }
        }
        let d = dev.display().to_string();
        let t = at.display().to_string();
        self.run(step, Cmd::new(["mount", "-o", opts, &d, &t]))?;
        self.mounts.push(at.to_path_buf());
        Ok(())
    }

    fn mount_target(&mut self, step: Step) -> Result<PathBuf, InstallError> {
        let mapper = self.open(step)?;
        let disk = self.disk(step)?;
        let t = self.target();
        self.mount(step, &mapper, &t, "rw")?;
        self.mount(step, &partition(&disk, 2), &t.join("boot"), "rw")?;
        self.mount(
            step,
            &partition(&disk, 1),
            &t.join("boot/efi"),
            "rw,umask=0077",
        )?;
        Ok(t)
    }

    fn bind_system(&mut self, step: Step) -> Result<(), InstallError> {
        let t = self.target();
        for what in ["dev", "dev/pts", "proc", "sys"] {
            let at = t.join(what);
            if self.mounts.iter().any(|m| m == &at) {
                continue;
            }
            if !self.host.is_dry() && is_mountpoint(&at) {
                self.mounts.push(at);
                continue;
            }
            let src = Path::new("/").join(what);
            let (s, a) = (src.display().to_string(), at.display().to_string());
            self.run(step, Cmd::new(["mount", "--bind", &s, &a]))?;
            self.mounts.push(at);
        }
        Ok(())
    }

    fn chroot(&mut self, step: Step, argv: &[&str]) -> Result<crate::host::Ran, InstallError> {
        self.bind_system(step)?;
        let t = self.target().display().to_string();
        let mut v = vec!["chroot", t.as_str()];
        v.extend_from_slice(argv);
        self.run(step, Cmd::new(v))
    }

    /// Undoes mounts, the LUKS mapping and loop devices, newest first.
    fn close(&mut self) -> Result<(), InstallError> {
        let step = Step::Token;
        let _ = self.host.run(Cmd::new(["sync"]));
        while let Some(m) = self.mounts.pop() {
            let s = m.display().to_string();
            self.run(step, Cmd::new(["umount", &s]))?;
        }
        if self.opened {
            self.run(step, Cmd::new(["cryptsetup", "close", MAPPER_NAME]))?;
            self.opened = false;
        }
        while let Some(l) = self.loops.pop() {
            let s = l.display().to_string();
            self.run(step, Cmd::new(["losetup", "--detach", &s]))?;
        }
        Ok(())
    }
}

fn is_mountpoint(p: &Path) -> bool {
    let Ok(canon) = std::fs::canonicalize(p) else {
        return false;
    };
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        m.lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .any(|at| Path::new(&at.replace("\\040", " ")) == canon)
    })
}

/// The host's identity name: `<hostname>.multiverse` unless the host name already has a domain.
pub(crate) fn host_identity_name(
    hostname: &str,
) -> Result<mv_core::name::IdentityName, InstallError> {
    let full = if hostname.contains('.') {
        hostname.to_string()
    } else {
        format!("{hostname}.multiverse")
    };
    mv_core::name::IdentityName::parse(&full)
        .map_err(|e| InstallError::Identity(format!("host name {full}: {e}")))
}

fn kdf(a: &Checked) -> Result<KdfParams, InstallError> {
    let d = KdfParams::DEFAULT;
    KdfParams::new(a.kdf_memory_kib, d.iterations(), d.parallelism())
        .map_err(|e| InstallError::Identity(e.to_string()))
}

/// Runs (or with a [`crate::host::DryRun`] host, shows) the installation.
pub fn install(a: &Checked, o: &Options, host: &mut dyn Host) -> Result<Report, InstallError> {
    let answers_sha256 = mv_core::fsutil::sha256_file(&a.answers_path).unwrap_or_default();
    let existing = Journal::read(&o.state_dir)?;
    let mut journal = match existing {
        Some(j) => {
            if j.file.answers_sha256 != answers_sha256 || j.file.disk != a.disk {
                if j.complete() {
                    // A finished install of another disk or answer file: start a new one.
                    new_journal(o, a, &answers_sha256)?
                } else {
                    return Err(InstallError::OtherInstall { journal: j.path });
                }
            } else {
                j
            }
        }
        None => new_journal(o, a, &answers_sha256)?,
    };
    let mut report = Report::default();
    if journal.complete() {
        report.skipped = Step::ALL.to_vec();
        host.say(&format!(
            "{} is already installed (journal {}); nothing to do",
            a.disk.display(),
            journal.path.display()
        ));
        return Ok(report);
    }
    // Set by the identity step, which always runs first.
    let mut s = Session {
        host,
        a,
        o,
        ids: disk_ids(""),
        install_id: String::new(),
        disk_dev: None,
        loops: Vec::new(),
        opened: false,
        mounts: Vec::new(),
        root: None,
        source: None,
    };
    let result = if journal.is_done(Step::Copy) {
        Ok(())
    } else {
        preflight_source(&mut s)
    }
    .and_then(|()| run_steps(&mut s, &mut journal, &mut report));
    // Undo the session even when a step failed: nothing stays mounted or open.
    let closed = s.close();
    result?;
    closed?;
    Ok(report)
}

fn new_journal(o: &Options, a: &Checked, answers_sha256: &str) -> Result<Journal, InstallError> {
    Ok(Journal {
        path: o.state_dir.join("journal.json"),
        file: JournalFile {
            answers_sha256: answers_sha256.to_string(),
            disk: a.disk.clone(),
            done: Vec::new(),
        },
    })
}

fn run_steps(
    s: &mut Session<'_>,
    journal: &mut Journal,
    report: &mut Report,
) -> Result<(), InstallError> {
    let dry = s.host.is_dry();
    for step in Step::ALL {
        if journal.is_done(step) && step != Step::Identity {
            report.skipped.push(step);
            continue;
        }
        if !journal.is_done(step) {
            s.host.say(&format!("== {}", step.name()));
        }
        let started = std::time::Instant::now();
        match step {
            Step::Identity => identity(s, journal.is_done(step), report)?,
            Step::Partition => partition_step(s)?,
            Step::Luks => luks_step(s)?,
            Step::Filesystems => filesystems_step(s)?,
            Step::Copy => copy_step(s)?,
            Step::Configure => configure_step(s)?,
            Step::Tree => tree_step(s)?,
            Step::Initramfs => initramfs_step(s)?,
            Step::Bootloader => bootloader_step(s)?,
            Step::Token => token_step(s)?,
        }
        if journal.is_done(step) {
            report.skipped.push(step);
            continue;
        }
        report.ran.push(step);
        if !dry {
            journal.file.done.push(step);
            journal.save()?;
            // Where the time goes (bench/install.sh reads these lines).
            s.host.say(&format!(
                "   {} done in {:.1} s",
                step.name(),
                started.elapsed().as_secs_f64()
            ));
        }
    }
    Ok(())
}

/// The install id: public, derived from the host's SSH host key, so the same words on the same
/// host name make the same partition table and UUIDs (a rerun after a crash, a reinstall, a
/// rebuild from the words).
pub(crate) fn install_id(root: &Root, hostname: &str) -> Result<String, InstallError> {
    let id = root
        .public_identity(&host_identity_name(hostname)?)
        .map_err(|e| InstallError::Identity(e.to_string()))?;
    let mut h = Sha256::new();
    h.update(b"multiverse-install-id-v1\0");
    h.update(id.ssh_host_ed25519.as_bytes());
    Ok(hex::encode(&h.finalize()[..16]))
}

/// Makes, restores or reloads the identity (always loaded: later steps derive keys from it), and
/// sets the disk's identifiers from it.
fn identity(s: &mut Session<'_>, done: bool, report: &mut Report) -> Result<(), InstallError> {
    load_identity(s, done, report)?;
    let root = s
        .root
        .as_ref()
        .ok_or_else(|| InstallError::Identity("not loaded".into()))?;
    s.install_id = install_id(root, &s.a.hostname)?;
    s.ids = disk_ids(&s.install_id);
    Ok(())
}

fn load_identity(s: &mut Session<'_>, done: bool, report: &mut Report) -> Result<(), InstallError> {
    let state = s.o.state_dir.clone();
    let pass = s.a.passphrase.expose().as_bytes().to_vec();
    let pass = zeroize::Zeroizing::new(pass);
    if IdentityStore::exists(&state) {
        let store =
            IdentityStore::load(&state).map_err(|e| InstallError::Identity(e.to_string()))?;
        let root = store.unseal_bare(&pass).map_err(|e| {
            InstallError::Identity(format!("{e} (the passphrase of this install changed?)"))
        })?;
        if let Some(w) = &s.a.words_file {
            let words = zeroize::Zeroizing::new(std::fs::read_to_string(w).unwrap_or_default());
            let from_words = Root::from_mnemonic(words.trim())
                .map_err(|e| InstallError::Identity(format!("{}: {e}", w.display())))?;
            if !from_words.same_secret(&root) {
                return Err(InstallError::Identity(format!(
                    "{} holds another identity than the install in progress",
                    w.display()
                )));
            }
        }
        s.root = Some(root);
        return Ok(());
    }
    if done {
        return Err(InstallError::Identity(format!(
            "the journal says the identity was made, but {} is gone",
            IdentityStore::sealed_path(&state).display()
        )));
    }
    let (root, new) = match &s.a.words_file {
        Some(w) => {
            let words = zeroize::Zeroizing::new(
                std::fs::read_to_string(w)
                    .map_err(|e| InstallError::Identity(format!("{}: {e}", w.display())))?,
            );
            let r = Root::from_mnemonic(words.trim())
                .map_err(|e| InstallError::Identity(format!("{}: {e}", w.display())))?;
            (r, false)
        }
        None => (Root::generate(), true),
    };
    if s.host.is_dry() {
        s.host.say(&format!(
            "would {} the identity and seal it in {}",
            if new { "make" } else { "restore" },
            IdentityStore::sealed_path(&state).display()
        ));
    } else {
        IdentityStore::create(&state, &root, &pass, kdf(s.a)?, true)
            .map_err(|e| InstallError::Identity(e.to_string()))?;
        crash_point(Step::Identity);
        if new {
            report.new_words = Some(root.mnemonic());
        }
    }
    s.root = Some(root);
    Ok(())
}

fn partition_step(s: &mut Session<'_>) -> Result<(), InstallError> {
    let step = Step::Partition;
    let disk = s.disk(step)?;
    let d = disk.display().to_string();
    // A disk that holds anything but this install's own table needs `erase = true`.
    let dump = s.run(step, Cmd::new(["sfdisk", "--dump", &d]).ok_codes(&[1]))?;
    let ours = dump
        .stdout
        .to_lowercase()
        .contains(&s.ids.label_id.to_lowercase());
    if dump.code == 0 && !dump.stdout.trim().is_empty() && !ours && !s.a.erase {
        let parts = dump.stdout.lines().filter(|l| l.starts_with('/')).count();
        let label = dump
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("label: "))
            .unwrap_or("unknown")
            .to_string();
        return Err(InstallError::NotBlank {
            disk: s.a.disk.clone(),
            what: format!("{label}, {parts} partitions"),
        });
    }
    s.run(step, Cmd::new(["wipefs", "--all", "--quiet", &d]))?;
    crash_point(step);
    let script = sfdisk_script(&s.ids);
    s.run(
        step,
        Cmd::new([
            "sfdisk",
            "--quiet",
            "--wipe",
            "always",
            "--wipe-partitions",
            "always",
            &d,
        ])
        .stdin_text(&script),
    )?;
    if s.loops.contains(&disk) {
        s.run(step, Cmd::new(["partx", "--update", &d]).ok_codes(&[1]))?;
    } else {
        s.run(
            step,
            Cmd::new(["blockdev", "--rereadpt", &d]).ok_codes(&[1]),
        )?;
    }
    s.settle(step)
}

fn luks_step(s: &mut Session<'_>) -> Result<(), InstallError> {
    let step = Step::Luks;
    let disk = s.disk(step)?;
    let dev = partition(&disk, 3);
    let d = dev.display().to_string();
    let key = s.luks_key()?;
    let mut format: Vec<String> = [
        "cryptsetup",
        "luksFormat",
        "--batch-mode",
        "--type",
        "luks2",
        "--uuid",
    ]
    .iter()
    .map(|w| w.to_string())
    .collect();
    format.push(s.ids.luks_uuid.clone());
    // The identity's key is 64 random bytes: nothing to stretch (as `guard enroll` does).
    format.extend(
        [
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-slot",
            "0",
            "--key-file",
            "-",
        ]
        .map(String::from),
    );
    format.push(d.clone());
    s.run(
        step,
        Cmd {
            argv: format,
            ..Cmd::default()
        }
        .stdin(key),
    )?;
    crash_point(step);
    let mut add: Vec<String> = [
        "cryptsetup",
        "luksAddKey",
        "--batch-mode",
        "--key-slot",
        "1",
    ]
    .iter()
    .map(|w| w.to_string())
    .collect();
    match s.a.pbkdf {
        Pbkdf::Argon2id => add.extend(["--pbkdf", "argon2id"].map(String::from)),
        Pbkdf::Pbkdf2 => {
            add.extend(["--pbkdf", "pbkdf2", "--pbkdf-force-iterations"].map(String::from));
            add.push(s.a.pbkdf2_iterations.to_string());
        }
    }
    add.extend(["--key-file", SECRET_FD, "--new-keyfile", "-"].map(String::from));
    add.push(d);
    let key = s.luks_key()?;
    let pass = s.passphrase_bytes();
    s.run(
        step,
        Cmd {
            argv: add,
            ..Cmd::default()
        }
        .fd(key)
        .stdin(pass),
    )?;
    Ok(())
}

fn filesystems_step(s: &mut Session<'_>) -> Result<(), InstallError> {
    let step = Step::Filesystems;
    let disk = s.disk(step)?;
    let mapper = s.open(step)?;
    let esp = partition(&disk, 1).display().to_string();
    let boot = partition(&disk, 2).display().to_string();
    let root = mapper.display().to_string();
    s.run(
        step,
        Cmd::new([
            "mkfs.vfat",
            "-F",
            "32",
            "-i",
            &s.ids.esp_volid.clone(),
            "-n",
            "ESP",
            &esp,
        ]),
    )?;
    crash_point(step);
    let (bu, ru) = (s.ids.boot_fs.clone(), s.ids.root_fs.clone());
    s.run(
        step,
        Cmd::new(["mkfs.ext4", "-q", "-F", "-U", &bu, "-L", "boot", &boot]),
    )?;
    s.run(
        step,
        Cmd::new(["mkfs.ext4", "-q", "-F", "-U", &ru, "-L", "root", &root]),
    )?;
    Ok(())
}

/// What a host system must hold; checked in the source before copying.
pub const SOURCE_NEEDS: &[(&str, &str)] = &[
    ("sbin/cryptsetup", "cryptsetup"),
    (
        "usr/share/initramfs-tools/hooks/cryptroot",
        "cryptsetup-initramfs",
    ),
    ("usr/lib/grub/x86_64-efi/modinfo.sh", "grub-efi-amd64-bin"),
    ("usr/sbin/grub-install", "grub2-common"),
    ("usr/sbin/mkfs.fat", "dosfstools"),
    ("usr/sbin/update-initramfs", "initramfs-tools"),
    // The kill switch's `clear-keyring` step (`keyctl clear @u`, `@us`).
    ("usr/bin/keyctl", "keyutils"),
];

fn source_root(s: &mut Session<'_>, step: Step) -> Result<PathBuf, InstallError> {
    if let Some(src) = &s.source {
        return Ok(src.clone());
    }
    let src = mount_source(s, step)?;
    s.source = Some(src.clone());
    Ok(src)
}

fn mount_source(s: &mut Session<'_>, step: Step) -> Result<PathBuf, InstallError> {
    match s.a.source.clone() {
        Source::Dir(d) => Ok(d),
        Source::Disk(p) => {
            let dev = if std::fs::metadata(&p).is_ok_and(|m| m.is_file()) {
                let l = s.attach_loop(step, &p, true)?;
                s.loops.push(l.clone());
                l
            } else {
                p.clone()
            };
            // The root is the largest ext4 partition.
            let d = dev.display().to_string();
            let out = s.run(
                step,
                Cmd::new([
                    "lsblk",
                    "--bytes",
                    "--pairs",
                    "--noheadings",
                    "--output",
                    "PATH,FSTYPE,SIZE",
                    &d,
                ]),
            )?;
            let mut best: Option<(u64, String)> = None;
            for line in out.stdout.lines() {
                let field = |k: &str| {
                    line.split(&format!("{k}=\""))
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .unwrap_or("")
                        .to_string()
                };
                if field("FSTYPE") == "ext4" {
                    let size: u64 = field("SIZE").parse().unwrap_or(0);
                    if best.as_ref().is_none_or(|(b, _)| size > *b) {
                        best = Some((size, field("PATH")));
                    }
                }
            }
            let part = match (best, s.host.is_dry()) {
                (Some((_, p)), _) => PathBuf::from(p),
                (None, true) => partition(&dev, 1),
                (None, false) => {
                    return Err(InstallError::SourceIncomplete {
                        source_path: p,
                        missing: "an ext4 root partition".into(),
                    })
                }
            };
            let at = s.o.mount_dir.join("source");
            s.mount(step, &part, &at, "ro")?;
            Ok(at)
        }
    }
}

/// Pre-flight: the source is mounted and holds what a host needs, before the disk is touched.
fn preflight_source(s: &mut Session<'_>) -> Result<(), InstallError> {
    let step = Step::Copy;
    let src = source_root(s, step)?;
    if s.host.is_dry() {
        return Ok(());
    }
    let missing: Vec<&str> = SOURCE_NEEDS
        .iter()
        .filter(|(p, _)| !src.join(p).exists() && !src.join("usr").join(p).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    let kernel = std::fs::read_dir(src.join("boot"))
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        })
        .unwrap_or(false);
    if !missing.is_empty() || !kernel {
        let mut m: Vec<String> = missing.iter().map(|p| format!("package {p}")).collect();
        if !kernel {
            m.push("a kernel in /boot".into());
        }
        return Err(InstallError::SourceIncomplete {
            source_path: match &s.a.source {
                Source::Dir(d) | Source::Disk(d) => d.clone(),
            },
            missing: m.join(", "),
        });
    }
    Ok(())
}

fn copy_step(s: &mut Session<'_>) -> Result<(), InstallError> {
    let step = Step::Copy;
    let src = source_root(s, step)?;
    let t = s.mount_target(step)?;
    let (from, to) = (format!("{}/.", src.display()), format!("{}/", t.display()));
    s.run(
        step,
        Cmd::new(["cp", "-a", "--one-file-system", "--", &from, &to]),
    )?;
    crash_point(step);
    // The binaries of this build (the host's CLI, the agent); the seed image's copies are older.
    for b in &s.o.binaries.clone() {
        if let Some(name) = b.file_name() {
            let dest = t.join("usr/local/bin").join(name);
            let (f, d) = (b.display().to_string(), dest.display().to_string());
            s.run(step, Cmd::new(["install", "-D", "-m", "0755", &f, &d]))?;
        }
    }
    Ok(())
}

fn configure_step(s: &mut Session<'_>) -> Result<(), InstallError> {
    let step = Step::Configure;
    let t = s.mount_target(step)?;
    let err = |source| InstallError::Host {
        step: step.name(),
        source,
    };
    for (rel, text, mode) in files::target_files(s.a, &s.ids, s.o.intel) {
        s.host
            .write(&t.join(rel), text.as_bytes(), mode)
            .map_err(err)?;
    }
    crash_point(step);
    let zone = Path::new("/usr/share/zoneinfo").join(&s.a.timezone);
    let utc = matches!(s.a.timezone.as_str(), "UTC" | "Etc/UTC");
    if !utc && !s.host.is_dry() && !t.join(zone.strip_prefix("/").unwrap_or(&zone)).is_file() {
        return Err(InstallError::SourceIncomplete {
            source_path: t.clone(),
            missing: format!("the time zone {} (package tzdata)", s.a.timezone),
        });
    }
    s.host
        .symlink(&zone, &t.join("etc/localtime"))
        .map_err(err)?;
    // vfio-pci claims the uplink and passed-through devices at boot.
    let mut devices: Vec<String> = s.a.uplink.iter().cloned().collect();
    devices.extend(s.a.passthrough.iter().cloned());
    for addr in devices {
        let Ok(pci) = addr.parse::<mv_host::PciAddress>() else {
            continue;
        };
        match mv_host::vfio_plan(&s.o.sys, &t.join("etc"), pci) {
            Ok(p) => {
                let (path, text) = &p.config;
                s.host.write(path, text.as_bytes(), 0o644).map_err(err)?;
            }
            Err(e) => {
                return Err(InstallError::Step {
                    step: step.name(),
                    message: format!("vfio for {addr}: {e}"),
                })
            }
        }
    }
    // The lockdown: nothing listens, nothing gets an address, unless the answers keep it.
    for (service, unit) in files::DISABLED_UNITS {
        if !service.is_empty() && s.a.services.contains(*service) {
            continue;
        }
        for wants in [
            "multi-user.target.wants",
            "sockets.target.wants",
            "network-online.target.wants",
        ] {
            s.host
                .remove(&t.join("etc/systemd/system").join(wants).join(unit))
                .map_err(err)?;
        }
    }
    s.host
        .write(&t.join("etc/machine-id"), b"", 0o444)
        .map_err(err)?;
    s.host
        .remove(&t.join("var/lib/dbus/machine-id"))
        .map_err(err)?;
    set_root_password(s, &t)
}

/// Root's password on the console is the identity's password for the host (as every machine's is
/// for itself): `multiverse identity show host.multiverse` prints it, the words bring it back.
fn set_root_password(s: &mut Session<'_>, t: &Path) -> Result<(), InstallError> {
    let step = Step::Configure;
    let shadow = t.join("etc/shadow");
    if s.host.is_dry() {
        s.host.say(&format!(
            "would set root's password in {} to the identity's password for the host",
            shadow.display()
        ));
        return Ok(());
    }
    let root = s
        .root
        .as_ref()
        .ok_or_else(|| InstallError::Identity("not loaded".into()))?;
    let pw = root.password(&host_identity_name(&s.a.hostname)?);
    let hash =
        mv_provision::hash_password("root", pw.expose()).map_err(|e| InstallError::Step {
            step: step.name(),
            message: e.to_string(),
        })?;
    let text = std::fs::read_to_string(&shadow).map_err(|e| InstallError::Step {
        step: step.name(),
        message: format!("{}: {e}", shadow.display()),
    })?;
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(':').collect();
            if f.first() == Some(&"root") && f.len() > 2 {
                found = true;
                f[1] = &hash;
                f.join(":")
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        return Err(InstallError::Step {
            step: step.name(),
            message: format!("{} has no root entry", shadow.display()),
        });
    }
    s.host
        .write(&shadow, (lines.join("\n") + "\n").as_bytes(), 0o640)
        .map_err(|source| InstallError::Host {
            step: step.name(),
            source,
        })
}

fn tree_step(s: &mut Session<'_>) -> Result<(), InstallError> {
    let step = Step::Tree;
    let t = s.mount_target(step)?;
    let tree = t.join("var/multiverse");
    let err = |source| InstallError::Host {
        step: step.name(),
        source,
    };
    let text = topology_for(s.a)?;
    s.host
        .write(
            &mv_core::layout::Tree::new(&tree).config_file(),
            text.as_bytes(),
            0o644,
        )
        .map_err(err)?;
    crash_point(step);
    let sealed_from = IdentityStore::sealed_path(&s.o.state_dir);
    let sealed_to = IdentityStore::sealed_path(&tree);
    if s.host.is_dry() {
        s.host.say(&format!(
            "would copy the sealed identity to {}",
            sealed_to.display()
        ));
    } else {
        let bytes = std::fs::read(&sealed_from)
            .map_err(|e| InstallError::Identity(format!("{}: {e}", sealed_from.display())))?;
        s.host.write(&sealed_to, &bytes, 0o600).map_err(err)?;
        std::fs::set_permissions(
            IdentityStore::dir(&tree),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(|e| {
            err(HostError::Write {
                path: IdentityStore::dir(&tree),
                source: e,
            })
        })?;
        // The public keys of every machine and of the host, as `identity new` records them.
        let topo =
            mv_machines::Topology::parse(&text, Path::new("multiverse.toml")).map_err(|e| {
                InstallError::Step {
                    step: step.name(),
                    message: e.to_string(),
                }
            })?;
        let root = s
            .root
            .as_ref()
            .ok_or_else(|| InstallError::Identity("not loaded".into()))?;
        let mut rec = mv_identity::PublicRecord::default();
        let mut names: Vec<mv_core::name::IdentityName> = topo
            .machines
            .iter()
            .map(|m| mv_core::name::IdentityName::Machine(m.name.clone()))
            .collect();
        names.push(host_identity_name(&s.a.hostname)?);
        for n in names {
            let id = root
                .public_identity(&n)
                .map_err(|e| InstallError::Identity(e.to_string()))?;
            rec.merge([id]);
        }
        rec.save(&tree)
            .map_err(|e| InstallError::Identity(e.to_string()))?;
    }
    // Arm the guard for the token, and start its watcher at boot.
    if let Some(token) = s.a.token.clone() {
        let spec = usb_token_spec(&s.o.sys, &token);
        match spec {
            Some(spec) => {
                let cfg = mv_guard::GuardConfig {
                    armed: true,
                    token: Some(spec),
                    ..mv_guard::GuardConfig::default()
                };
                let text = cfg.to_toml().map_err(|e| InstallError::Step {
                    step: step.name(),
                    message: e.to_string(),
                })?;
                s.host
                    .write(
                        &mv_core::layout::Tree::new(&tree).guard_config(),
                        text.as_bytes(),
                        0o600,
                    )
                    .map_err(err)?;
            }
            None => s.host.say(&format!(
                "{} is not a USB device: the kill switch is not armed (arm it later with `multiverse guard arm`)",
                token.display()
            )),
        }
        s.host
            .symlink(
                Path::new("/etc/systemd/system/multiverse-guard.service"),
                &t.join("etc/systemd/system/multi-user.target.wants/multiverse-guard.service"),
            )
            .map_err(err)?;
        s.host
            .write(
                &t.join("etc/systemd/system/multiverse-guard.service"),
                GUARD_UNIT.as_bytes(),
                0o644,
            )
            .map_err(err)?;
    }
    Ok(())
}

/// The watcher's unit on an installed host: the one `contrib/systemd` ships.
const GUARD_UNIT: &str = include_str!("../../../contrib/systemd/multiverse-guard.service");

/// `VID:PID:SERIAL` of the USB device behind a block device, from sysfs.
pub(crate) fn usb_token_spec(sys: &Path, dev: &Path) -> Option<String> {
    let real = std::fs::canonicalize(dev).ok()?;
    let name = real.file_name()?.to_str()?.to_string();
    let mut dir = std::fs::canonicalize(sys.join("class/block").join(&name).join("device")).ok()?;
    for _ in 0..12 {
        let vid = std::fs::read_to_string(dir.join("idVendor")).ok();
        let pid = std::fs::read_to_string(dir.join("idProduct")).ok();
        if let (Some(v), Some(p)) = (vid, pid) {
            let serial = std::fs::read_to_string(dir.join("serial")).ok();
            return Some(match serial {
                Some(s) if !s.trim().is_empty() => {
                    format!("{}:{}:{}", v.trim(), p.trim(), s.trim())
                }
                _ => format!("{}:{}", v.trim(), p.trim()),
            });
        }
        dir = dir.parent()?.to_path_buf();
    }
    None
}

/// The host's `multiverse.toml`: the chosen topology, the machines kept, the uplink set.
pub(crate) fn topology_for(a: &Checked) -> Result<String, InstallError> {
    let base = crate::answers::topology_text(a.topology);
    let mut text = base.to_string();
    if !a.machines.is_empty() {
        for m in crate::answers::known_machines(a.topology) {
            if a.machines.contains(&m) {
                continue;
            }
            let name = mv_core::name::MachineName::parse(&m).map_err(|e| InstallError::Step {
                step: "tree",
                message: e.to_string(),
            })?;
            if let Some(t) =
                mv_machines::remove_machine(&text, "multiverse.toml", &name).map_err(|e| {
                    InstallError::Step {
                        step: "tree",
                        message: e.to_string(),
                    }
                })?
            {
                text = t;
            }
        }
    }
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| InstallError::Step {
                step: "tree",
                message: e.to_string(),
            })?;
    if let (Some(uplink), TopologyKind::Default) = (&a.uplink, a.topology) {
        if let Some(machines) = doc
            .get_mut("machines")
            .and_then(|m| m.as_array_of_tables_mut())
        {
            for m in machines.iter_mut() {
                let universe = m
                    .get("router")
                    .and_then(|r| r.as_inline_table())
                    .and_then(|r| r.get("role"))
                    .and_then(|r| r.as_str())
                    == Some("universe");
                if universe {
                    let mut arr = toml_edit::Array::new();
                    arr.push(uplink.as_str());
                    m["pci"] = toml_edit::value(arr);
                }
            }
        }
    }
    let text = doc.to_string();
    // What the host reads must be valid: the same check `multiverse render` makes.
    mv_machines::Topology::parse(&text, Path::new("multiverse.toml")).map_err(|e| {
        InstallError::Step {
            step: "tree",
            message: format!("the host's multiverse.toml would be invalid: {e}"),
        }
    })?;
    Ok(text)
}

fn initramfs_step(s: &mut Session<'_>) -> Result<(), InstallError> {
    let step = Step::Initramfs;
    s.mount_target(step)?;
    s.bind_system(step)?;
    crash_point(step);
    s.chroot(step, &["update-initramfs", "-c", "-k", "all"])
        .or_else(|_| s.chroot(step, &["update-initramfs", "-u", "-k", "all"]))?;
    Ok(())
}

fn bootloader_step(s: &mut Session<'_>) -> Result<(), InstallError> {
    let step = Step::Bootloader;
    s.mount_target(step)?;
    s.chroot(
        step,
        &[
            "grub-install",
            "--target=x86_64-efi",
            "--efi-directory=/boot/efi",
            "--boot-directory=/boot",
            "--bootloader-id=multiverse",
            "--removable",
            "--no-nvram",
        ],
    )?;
    crash_point(step);
    s.chroot(step, &["update-grub"])?;
    Ok(())
}

fn token_step(s: &mut Session<'_>) -> Result<(), InstallError> {
    let step = Step::Token;
    let Some(token) = s.a.token.clone() else {
        s.host
            .say("no token in the answers: the disk opens with the passphrase only");
        return Ok(());
    };
    let d = token.display().to_string();
    s.run(step, Cmd::new(["wipefs", "--all", "--quiet", &d]))?;
    s.run(step, Cmd::new(["mkfs.vfat", "-I", "-n", TOKEN_LABEL, &d]))?;
    crash_point(step);
    let at = s.o.mount_dir.join("token");
    s.mount(step, &token, &at, "rw")?;
    let key = s.luks_key()?;
    let params = kdf(s.a)?;
    // A picture made for this install: nothing about it marks it as holding a key.
    let seed = u64::from_str_radix(&s.install_id[..16], 16).unwrap_or(1);
    let mut cover = mv_guard::synthetic_photo(768, 512, mv_guard::Layout::Rgb, 8, seed);
    mv_guard::container::hide(
        &mut cover,
        key.expose(),
        s.a.passphrase.expose().as_bytes(),
        params,
    )
    .map_err(|e| InstallError::Step {
        step: step.name(),
        message: e.to_string(),
    })?;
    let png = cover.encode().map_err(|e| InstallError::Step {
        step: step.name(),
        message: e.to_string(),
    })?;
    s.host
        .write(&at.join(TOKEN_IMAGE), &png, 0o600)
        .map_err(|source| InstallError::Host {
            step: step.name(),
            source,
        })?;
    Ok(())
}
