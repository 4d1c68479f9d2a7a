//! The answer file: everything `multiverse install` needs to know, read and checked before anything
//! is touched.
//!
//! [`Answers::load`] parses the TOML (unknown fields are errors), then [`Answers::check`] holds every
//! answer against the machine it will run on ([`System`]: sysfs, procfs and the paths named) and
//! returns [`Checked`]: resolved paths, the uplink as a PCI address, the passphrase read once. Each
//! problem is one [`AnswerError`] whose Display is `FILE:LINE: what`, so a person can go straight to
//! the line. Nothing in this module writes anything.
//!
//! Every field is documented in `docs/install.md`; the example is `contrib/install/answers.toml`.
//!
//! What this is not: the plan or its execution (`plan`, `install`).

use mv_core::secret::SecretString;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The smallest disk the installer accepts: ESP + /boot + a root that holds the Debian host image
/// with room to grow.
pub(crate) const MIN_DISK_BYTES: u64 = 4 << 30;

/// The largest passphrase file read (a passphrase is one line).
pub(crate) const MAX_PASSPHRASE_FILE: u64 = 4096;

/// The shortest passphrase accepted: it guards the LUKS keyslot that works without the token.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

/// Services a locked-down host may be asked to keep; everything else stays disabled.
pub(crate) const KNOWN_SERVICES: &[&str] = &["ssh"];

/// What kind of mistake an answer is, for callers that react to kinds (exit codes, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Not TOML, an unknown field, a wrong type.
    Syntax,
    /// A value that can never be right (a bad hostname, an unknown service).
    Value,
    /// A path or device that is not there or not of the right kind.
    Missing,
    /// The target disk is smaller than 4 GiB (`MIN_DISK_BYTES`).
    TooSmall,
    /// The target is mounted, or the same device as the source or the token.
    InUse,
}

/// One problem with the answer file: Display is `FILE:LINE: what`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}:{line}: {message}", path.display())]
pub struct AnswerError {
    /// The answer file.
    pub path: PathBuf,
    /// 1-based line of the offending value (1 when the whole file is at fault).
    pub line: usize,
    /// Its kind.
    pub problem: Problem,
    /// What is wrong, naming the field.
    pub message: String,
}

/// How the LUKS keyslots are stretched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pbkdf {
    /// cryptsetup's default for LUKS2 (memory-hard); right for a real host.
    #[default]
    Argon2id,
    /// PBKDF2 with a fixed iteration count: for tests and very slow machines only.
    Pbkdf2,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAnswers {
    disk: Spanned<String>,
    source: Spanned<String>,
    passphrase_file: Spanned<String>,
    #[serde(default)]
    hostname: Option<Spanned<String>>,
    #[serde(default)]
    keymap: Option<Spanned<String>>,
    #[serde(default)]
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    token: Option<Spanned<String>>,
    #[serde(default)]
    uplink: Option<Spanned<String>>,
    #[serde(default)]
    passthrough: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    topology: Option<Spanned<String>>,
    #[serde(default)]
    machines: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    words_file: Option<Spanned<String>>,
    #[serde(default)]
    services: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    luks: Option<FileLuks>,
    #[serde(default)]
    kdf_memory_kib: Option<Spanned<u32>>,
    #[serde(default)]
    console: Option<Spanned<String>>,
    #[serde(default)]
    erase: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLuks {
    #[serde(default)]
    pbkdf: Option<Spanned<Pbkdf>>,
    #[serde(default)]
    iterations: Option<Spanned<u32>>,
}

/// Which built-in topology the host's `multiverse.toml` starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopologyKind {
    /// docs/design.md's topology: Alpine routers, universe's NIC passed through.
    Default,
    /// Debian everywhere, universe on a virtio NIC (hosts without passthrough, the lab).
    Lab,
}

/// The answer file as written, values with their lines; see [`Answers::check`].
#[derive(Debug)]
pub struct Answers {
    path: PathBuf,
    text: String,
    file: FileAnswers,
}

/// What the machine looks like to the checks: where sysfs, procfs and zoneinfo are. Tests point
/// these at fixtures.
#[derive(Debug, Clone)]
pub struct System {
    /// `/sys`.
    pub sys: PathBuf,
    /// `/proc`.
    pub proc_root: PathBuf,
    /// `/usr/share/zoneinfo`.
    pub zoneinfo: PathBuf,
}

impl Default for System {
    fn default() -> Self {
        System {
            sys: "/sys".into(),
            proc_root: "/proc".into(),
            zoneinfo: "/usr/share/zoneinfo".into(),
        }
    }
}

/// What the installation source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A folder holding a root file system (e.g. a mounted image).
    Dir(PathBuf),
    /// A block device or raw image file with a partition table; the root is its ext4 partition.
    Disk(PathBuf),
}

/// Every answer, checked and resolved.
#[derive(Debug)]
pub struct Checked {
    /// The answer file.
    pub answers_path: PathBuf,
    /// The whole target disk (erased).
    pub disk: PathBuf,
    /// Its size in bytes.
    pub disk_bytes: u64,
    /// Where the system comes from.
    pub source: Source,
    /// The LUKS passphrase keyslot, the identity's seal and the token image's passphrase.
    pub passphrase: SecretString,
    /// Short host name.
    pub hostname: String,
    /// Console keymap (`/etc/default/keyboard` XKBLAYOUT).
    pub keymap: String,
    /// `Area/City` or `UTC`.
    pub timezone: String,
    /// The USB token (whole device), when one is armed.
    pub token: Option<PathBuf>,
    /// The uplink NIC as a PCI address (passed to universe, bound to vfio-pci).
    pub uplink: Option<String>,
    /// More devices for vfio-pci (GPU, USB controller), PCI addresses.
    pub passthrough: Vec<String>,
    /// Which topology `multiverse.toml` starts from.
    pub topology: TopologyKind,
    /// The machines kept (full names); empty means all of the topology's.
    pub machines: Vec<String>,
    /// Restore the identity from these words instead of making a new one.
    pub words_file: Option<PathBuf>,
    /// Services kept enabled (a subset of the services the form offers).
    pub services: BTreeSet<String>,
    /// LUKS keyslot stretching.
    pub pbkdf: Pbkdf,
    /// PBKDF2 iterations when `pbkdf = "pbkdf2"`.
    pub pbkdf2_iterations: u32,
    /// Argon2id memory (KiB) of the identity's seal and of the hidden-key image.
    pub kdf_memory_kib: u32,
    /// A serial console for the kernel and GRUB (`ttyS0,115200`), besides the screen.
    pub console: Option<String>,
    /// Whether a disk that already holds a partition table may be erased.
    pub erase: bool,
}

use mv_core::line_at as line_of;

impl Answers {
    /// Reads and parses `path` (not yet checked against the machine).
    pub fn load(path: &Path) -> Result<Answers, AnswerError> {
        let bytes = std::fs::read(path).map_err(|e| AnswerError {
            path: path.to_path_buf(),
            line: 1,
            problem: Problem::Missing,
            message: format!("cannot read the answer file: {e}"),
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            AnswerError {
                path: path.to_path_buf(),
                line: line_of(&String::from_utf8_lossy(e.as_bytes()), at),
                problem: Problem::Syntax,
                message: format!("not UTF-8 text (invalid byte at offset {at})"),
            }
        })?;
        Answers::parse(&text, path)
    }

    /// Parses `text`; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Answers, AnswerError> {
        let file: FileAnswers = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            AnswerError {
                path: path.to_path_buf(),
                line: line_of(text, span.start),
                problem: Problem::Syntax,
                message: e.message().trim_end_matches('.').replace('\n', " "),
            }
        })?;
        Ok(Answers {
            path: path.to_path_buf(),
            text: text.to_string(),
            file,
        })
    }

    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        problem: Problem,
        message: String,
    ) -> Result<T, AnswerError> {
        Err(AnswerError {
            path: self.path.clone(),
            line: line_of(&self.text, span.start),
            problem,
            message,
        })
    }

    /// Holds every answer against `sys`; the first problem found is returned.
    pub fn check(&self, sys: &System) -> Result<Checked, AnswerError> {
        let f = &self.file;
        let disk = self.check_disk(sys)?;
        let disk_bytes = disk.1;
        let disk = disk.0;
        let source = self.check_source(&disk)?;
        let passphrase = self.read_passphrase()?;

        let hostname = match &f.hostname {
            Some(h) => {
                if !valid_hostname(h.get_ref()) {
                    return self.err(
                        h.span(),
                        Problem::Value,
                        format!(
                            "hostname: `{}` is not a host name (letters, digits and inner hyphens, at most 63)",
                            h.get_ref()
                        ),
                    );
                }
                h.get_ref().clone()
            }
            None => "host".to_string(),
        };
        let keymap = match &f.keymap {
            Some(k) => {
                let v = k.get_ref();
                if v.is_empty()
                    || v.len() > 32
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return self.err(
                        k.span(),
                        Problem::Value,
                        format!("keymap: `{v}` is not a keymap name (e.g. us, de, fr-latin1)"),
                    );
                }
                v.clone()
            }
            None => "us".to_string(),
        };
        let timezone = match &f.timezone {
            Some(t) => {
                let v = t.get_ref();
                let shape_ok = !v.is_empty()
                    && !v.starts_with('/')
                    && v.split('/').all(|part| {
                        !part.is_empty()
                            && part != ".."
                            && part != "."
                            && part
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || "_-+".contains(c))
                    });
                // UTC needs no tzdata; others must exist where this machine keeps zones (a live
                // system without tzdata checks the shape only; the copy step checks the target).
                let utc = matches!(v.as_str(), "UTC" | "Etc/UTC");
                let known = utc || !sys.zoneinfo.is_dir() || sys.zoneinfo.join(v).is_file();
                if !shape_ok || !known {
                    return self.err(
                        t.span(),
                        Problem::Value,
                        format!(
                            "timezone: `{v}` is not a time zone under {} (e.g. Europe/Berlin, UTC)",
                            sys.zoneinfo.display()
                        ),
                    );
                }
                v.clone()
            }
            None => "UTC".to_string(),
        };
        let token = match &f.token {
            Some(t) => {
                let p = PathBuf::from(t.get_ref());
                match std::fs::metadata(&p) {
                    Ok(m) if m.file_type().is_block_device() || m.is_file() => {}
                    Ok(_) => {
                        return self.err(
                            t.span(),
                            Problem::Missing,
                            format!("token: {} is not a block device", p.display()),
                        )
                    }
                    Err(e) => {
                        return self.err(
                            t.span(),
                            Problem::Missing,
                            format!("token: {}: {e}", p.display()),
                        )
                    }
                }
                if same_file(&p, &disk) {
                    return self.err(
                        t.span(),
                        Problem::InUse,
                        format!("token: {} is the target disk", p.display()),
                    );
                }
                Some(p)
            }
            None => None,
        };
        let uplink = match &f.uplink {
            Some(u) => match resolve_nic(sys, u.get_ref()) {
                Some(addr) => Some(addr),
                None => {
                    return self.err(u.span(), Problem::Missing, format!(
                        "uplink: no network interface or PCI device `{}` on this machine (see `ip link` or `lspci -D`)",
                        u.get_ref()
                    ))
                }
            },
            None => None,
        };
        let mut passthrough = Vec::new();
        if let Some(list) = &f.passthrough {
            for a in list.get_ref() {
                if !is_pci_addr(a) || !sys.sys.join("bus/pci/devices").join(a).exists() {
                    return self.err(list.span(), Problem::Missing, format!("passthrough: no PCI device `{a}` on this machine (addresses as `lspci -D` prints them)"));
                }
                passthrough.push(a.clone());
            }
        }
        let topology = match f
            .topology
            .as_ref()
            .map(|t| (t.get_ref().as_str(), t.span()))
        {
            None | Some(("default", _)) => TopologyKind::Default,
            Some(("lab", _)) => TopologyKind::Lab,
            Some((other, span)) => {
                return self.err(
                    span,
                    Problem::Value,
                    format!("topology: `{other}` is not `default` or `lab`"),
                )
            }
        };
        let machines = match &f.machines {
            Some(list) => {
                let known = known_machines(topology);
                let mut out = Vec::new();
                for m in list.get_ref() {
                    let full = known
                        .iter()
                        .find(|k| *k == m || k.split('.').next() == Some(m.as_str()));
                    match full {
                        Some(full) => out.push(full.clone()),
                        None => {
                            return self.err(
                                list.span(),
                                Problem::Value,
                                format!(
                                "machines: `{m}` is not a machine of the {} topology (one of: {})",
                                if topology == TopologyKind::Lab { "lab" } else { "default" },
                                known.join(", ")
                            ),
                            )
                        }
                    }
                }
                out
            }
            None => Vec::new(),
        };
        let words_file = match &f.words_file {
            Some(w) => {
                let p = PathBuf::from(w.get_ref());
                match std::fs::read_to_string(&p) {
                    Ok(text) => {
                        let words = zeroize::Zeroizing::new(text);
                        if mv_identity::Root::from_mnemonic(words.trim()).is_err() {
                            return self.err(
                                w.span(),
                                Problem::Value,
                                format!(
                                    "words_file: {} does not hold 24 valid recovery words",
                                    p.display()
                                ),
                            );
                        }
                    }
                    Err(e) => {
                        return self.err(
                            w.span(),
                            Problem::Missing,
                            format!("words_file: {}: {e}", p.display()),
                        )
                    }
                }
                Some(p)
            }
            None => None,
        };
        let mut services = BTreeSet::new();
        if let Some(list) = &f.services {
            for s in list.get_ref() {
                if !KNOWN_SERVICES.contains(&s.as_str()) {
                    return self.err(list.span(), Problem::Value, format!(
                        "services: `{s}` is not a service the installer knows (one of: {}); a locked-down host listens on nothing else",
                        KNOWN_SERVICES.join(", ")
                    ));
                }
                services.insert(s.clone());
            }
        }
        let (pbkdf, pbkdf2_iterations) = match &f.luks {
            Some(l) => {
                let p = l.pbkdf.as_ref().map(|p| *p.get_ref()).unwrap_or_default();
                let it = match &l.iterations {
                    Some(i) if p != Pbkdf::Pbkdf2 => {
                        return self.err(
                            i.span(),
                            Problem::Value,
                            "luks.iterations: only meaningful with pbkdf = \"pbkdf2\"".into(),
                        )
                    }
                    Some(i) if *i.get_ref() < 1000 => {
                        return self.err(
                            i.span(),
                            Problem::Value,
                            format!(
                                "luks.iterations: {} is below cryptsetup's minimum of 1000",
                                i.get_ref()
                            ),
                        )
                    }
                    Some(i) => *i.get_ref(),
                    None => 1000,
                };
                (p, it)
            }
            None => (Pbkdf::Argon2id, 1000),
        };
        let kdf_memory_kib = match &f.kdf_memory_kib {
            Some(m) if !(8..=(1 << 20)).contains(m.get_ref()) => {
                return self.err(
                    m.span(),
                    Problem::Value,
                    format!("kdf_memory_kib: {} is outside 8..=1048576", m.get_ref()),
                )
            }
            Some(m) => *m.get_ref(),
            None => 262_144,
        };
        let console = match &f.console {
            Some(c) => {
                let v = c.get_ref();
                let (dev, speed) = v.split_once(',').unwrap_or((v.as_str(), "115200"));
                let dev_ok = (dev.starts_with("ttyS")
                    || dev.starts_with("ttyAMA")
                    || dev.starts_with("hvc"))
                    && dev.len() <= 10
                    && dev.chars().all(|c| c.is_ascii_alphanumeric());
                if !dev_ok || speed.parse::<u32>().is_err() {
                    return self.err(
                        c.span(),
                        Problem::Value,
                        format!("console: `{v}` is not a serial console (e.g. ttyS0,115200)"),
                    );
                }
                Some(format!("{dev},{speed}"))
            }
            None => None,
        };
        Ok(Checked {
            answers_path: self.path.clone(),
            disk,
            disk_bytes,
            source,
            passphrase,
            hostname,
            keymap,
            timezone,
            token,
            uplink,
            passthrough,
            topology,
            machines,
            words_file,
            services,
            pbkdf,
            pbkdf2_iterations,
            kdf_memory_kib,
            console,
            erase: f.erase.as_ref().is_some_and(|e| *e.get_ref()),
        })
    }

    fn check_disk(&self, sys: &System) -> Result<(PathBuf, u64), AnswerError> {
        let d = &self.file.disk;
        let p = PathBuf::from(d.get_ref());
        if !p.is_absolute() {
            return self.err(
                d.span(),
                Problem::Value,
                format!(
                    "disk: `{}` is not an absolute path (e.g. /dev/nvme0n1)",
                    p.display()
                ),
            );
        }
        let meta = match std::fs::metadata(&p) {
            Ok(m) => m,
            Err(e) => {
                return self.err(
                    d.span(),
                    Problem::Missing,
                    format!("disk: {}: {e}", p.display()),
                )
            }
        };
        let size = if meta.file_type().is_block_device() {
            block_size(sys, &p).unwrap_or(0)
        } else if meta.is_file() {
            meta.len()
        } else {
            return self.err(
                d.span(),
                Problem::Missing,
                format!(
                    "disk: {} is neither a block device nor a disk image file",
                    p.display()
                ),
            );
        };
        if size < MIN_DISK_BYTES {
            return self.err(
                d.span(),
                Problem::TooSmall,
                format!(
                    "disk: {} holds {:.1} GiB; the installer needs at least {} GiB",
                    p.display(),
                    size as f64 / f64::from(1u32 << 30),
                    MIN_DISK_BYTES >> 30
                ),
            );
        }
        if let Some(m) = mounted_from(sys, &p) {
            return self.err(
                d.span(),
                Problem::InUse,
                format!(
                    "disk: {} is in use ({m} is mounted); unmount it first",
                    p.display()
                ),
            );
        }
        Ok((p, size))
    }

    fn check_source(&self, disk: &Path) -> Result<Source, AnswerError> {
        let s = &self.file.source;
        let p = PathBuf::from(s.get_ref());
        let meta = match std::fs::metadata(&p) {
            Ok(m) => m,
            Err(e) => {
                return self.err(
                    s.span(),
                    Problem::Missing,
                    format!("source: {}: {e}", p.display()),
                )
            }
        };
        if same_file(&p, disk) {
            return self.err(
                s.span(),
                Problem::InUse,
                format!("source: {} is the target disk", p.display()),
            );
        }
        if meta.is_dir() {
            if !p.join("etc/os-release").is_file() && !p.join("usr/lib/os-release").is_file() {
                return self.err(
                    s.span(),
                    Problem::Missing,
                    format!(
                        "source: {} holds no root file system (no etc/os-release)",
                        p.display()
                    ),
                );
            }
            return Ok(Source::Dir(p));
        }
        if meta.file_type().is_block_device() || meta.is_file() {
            return Ok(Source::Disk(p));
        }
        self.err(
            s.span(),
            Problem::Missing,
            format!(
                "source: {} is not a folder, a disk or an image file",
                p.display()
            ),
        )
    }

    fn read_passphrase(&self) -> Result<SecretString, AnswerError> {
        let f = &self.file.passphrase_file;
        let p = PathBuf::from(f.get_ref());
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) => {
                return self.err(
                    f.span(),
                    Problem::Missing,
                    format!("passphrase_file: {}: {e}", p.display()),
                )
            }
        };
        if !meta.is_file() {
            return self.err(
                f.span(),
                Problem::Missing,
                format!("passphrase_file: {} is not a regular file", p.display()),
            );
        }
        if meta.len() > MAX_PASSPHRASE_FILE {
            return self.err(
                f.span(),
                Problem::Value,
                format!(
                    "passphrase_file: {} is {} bytes; a passphrase file holds one line",
                    p.display(),
                    meta.len()
                ),
            );
        }
        let bytes = match mv_core::fsutil::read_regular(&p) {
            Ok((_, b)) => b,
            Err(e) => {
                return self.err(
                    f.span(),
                    Problem::Missing,
                    format!("passphrase_file: {}: {e}", p.display()),
                )
            }
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return self.err(
                f.span(),
                Problem::Value,
                format!("passphrase_file: {} is not UTF-8 text", p.display()),
            );
        };
        let line = text.strip_suffix('\n').unwrap_or(text);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.contains('\n') {
            return self.err(
                f.span(),
                Problem::Value,
                format!("passphrase_file: {} holds more than one line", p.display()),
            );
        }
        if line.chars().any(char::is_control) {
            return self.err(
                f.span(),
                Problem::Value,
                format!("passphrase_file: {} holds control characters", p.display()),
            );
        }
        if line.chars().count() < MIN_PASSPHRASE_CHARS {
            return self.err(f.span(), Problem::Value, format!("passphrase_file: the passphrase in {} is shorter than {MIN_PASSPHRASE_CHARS} characters", p.display()));
        }
        Ok(SecretString::new(line.to_string()))
    }
}

/// The full names of the machines of a built-in topology.
pub(crate) fn known_machines(kind: TopologyKind) -> Vec<String> {
    let text = topology_text(kind);
    mv_machines::Topology::parse(text, Path::new("<built-in>"))
        .map(|t| {
            t.machines
                .iter()
                .filter(|m| m.is_vm())
                .map(|m| m.name.to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The text of a built-in topology.
pub(crate) fn topology_text(kind: TopologyKind) -> &'static str {
    match kind {
        TopologyKind::Default => mv_machines::DEFAULT_TOML,
        TopologyKind::Lab => mv_machines::LAB_TOML,
    }
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 63
        && !h.starts_with('-')
        && !h.ends_with('-')
        && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Whether `s` looks like `0000:03:00.0`.
pub(crate) fn is_pci_addr(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && s.chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// An interface name or PCI address → the NIC's PCI address.
pub(crate) fn resolve_nic(sys: &System, name: &str) -> Option<String> {
    if is_pci_addr(name) {
        let dev = sys.sys.join("bus/pci/devices").join(name);
        return dev.exists().then(|| name.to_string());
    }
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return None;
    }
    let link = std::fs::read_link(sys.sys.join("class/net").join(name).join("device")).ok()?;
    let addr = link.file_name()?.to_str()?.to_string();
    is_pci_addr(&addr).then_some(addr)
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => {
            (x.dev() == y.dev() && x.ino() == y.ino())
                || (x.file_type().is_block_device()
                    && x.rdev() == y.rdev()
                    && y.file_type().is_block_device())
        }
        _ => false,
    }
}

/// The size of a block device, from sysfs (`/sys/class/block/NAME/size` in 512-byte sectors).
fn block_size(sys: &System, dev: &Path) -> Option<u64> {
    let real = std::fs::canonicalize(dev).ok()?;
    let name = real.file_name()?.to_str()?;
    let text = std::fs::read_to_string(sys.sys.join("class/block").join(name).join("size")).ok()?;
    text.trim().parse::<u64>().ok().map(|s| s * 512)
}

/// A mount whose source is `dev` or one of its partitions (`/dev/sda` → `/dev/sda1`, `/dev/nvme0n1p2`).
fn mounted_from(sys: &System, dev: &Path) -> Option<String> {
    let real = std::fs::canonicalize(dev).ok()?;
    let real = real.to_str()?.to_string();
    let mounts = std::fs::read_to_string(sys.proc_root.join("self/mounts")).ok()?;
    mounts.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let src = it.next()?;
        let at = it.next()?;
        let src_real = std::fs::canonicalize(src).ok()?;
        let src_real = src_real.to_str()?;
        let is_part = src_real == real
            || src_real.strip_prefix(&real).is_some_and(|rest| {
                rest.trim_start_matches('p')
                    .chars()
                    .all(|c| c.is_ascii_digit())
                    && !rest.is_empty()
            });
        is_part.then(|| format!("{src_real} on {at}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses() {
        assert!(is_pci_addr("0000:03:00.0"));
        assert!(is_pci_addr("0000:af:1f.7"));
        assert!(!is_pci_addr("03:00.0"));
        assert!(!is_pci_addr("0000:03:00:0"));
        assert!(!is_pci_addr("zzzz:03:00.0"));
    }

    #[test]
    fn host_names() {
        assert!(valid_hostname("host"));
        assert!(valid_hostname("mv-1"));
        assert!(!valid_hostname("-a"));
        assert!(!valid_hostname("a.b"));
        assert!(!valid_hostname(""));
        assert!(!valid_hostname(&"a".repeat(64)));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = Answers::parse("disk = \"/dev/x\"\nsource = 3\n", Path::new("a.toml")).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.to_string().starts_with("a.toml:2: "), "{e}");
        let e = Answers::parse(
            "disk = \"/d\"\nsource = \"/s\"\npassphrase_file = \"/p\"\ncolour = 1\n",
            Path::new("a.toml"),
        )
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("colour"), "{e}");
    }

    proptest::proptest! {
        /// Any text is answers or one error whose line lies inside the text; never a panic.
        #[test]
        fn any_text_is_answers_or_one_error_inside_it(text in "(?s).{0,400}") {
            if let Err(e) = Answers::parse(&text, Path::new("p.toml")) {
                proptest::prop_assert!(e.line >= 1 && e.line <= text.lines().count().max(1) + 1);
                proptest::prop_assert!(e.to_string().starts_with("p.toml:"));
            }
        }

        /// Valid files with fields in any order and odd values parse or fail on their line.
        #[test]
        fn field_lines_are_named(host in "[ -~]{0,20}", line in 0usize..4) {
            let mut lines = vec![
                "disk = \"/d\"".to_string(),
                "source = \"/s\"".to_string(),
                "passphrase_file = \"/p\"".to_string(),
            ];
            lines.insert(line.min(3), format!("hostname = {host:?}"));
            let text = lines.join("\n");
            match Answers::parse(&text, Path::new("p.toml")) {
                Ok(_) => {}
                Err(e) => proptest::prop_assert_eq!(e.line, line.min(3) + 1, "{}", e),
            }
        }
    }

    #[test]
    fn every_topology_has_machines() {
        assert!(known_machines(TopologyKind::Default)
            .iter()
            .any(|m| m == "star.router.multiverse"));
        assert!(known_machines(TopologyKind::Lab)
            .iter()
            .any(|m| m == "controller.multiverse"));
    }
}
