//! mv-image: builds bootable base images (`multiverse image build debian|alpine`) with nothing
//! mounted and no loop, nbd or device-mapper device, so it runs in CI containers too.
//!
//! A build is: the distribution's bootstrapper installs packages into a folder (`mmdebstrap` for
//! Debian, `apk.static --root` for Alpine) → the folder is configured as plain files (boot loader
//! config, masked units, first-boot stage, no host keys, empty machine-id) → `mke2fs -d` writes
//! the ext4 root from the folder → `sfdisk` + `dd` assemble an MBR disk with GRUB's i386-pc boot
//! code (module `disk`) → `qemu-img convert` to qcow2 → `qemu-img check`, SHA-256 and a
//! [`Manifest`] → rename into `images/`.
//!
//! Everything happens in a hidden folder inside `images/` (same filesystem, so the final renames
//! are atomic); a failed build removes it, so a failure leaves no image and no manifest, and a
//! half-built image never replaces a good one.
//!
//! Main types: [`BuildOptions`] (what to build), [`build`] (does it, with a [`Runner`] and a
//! function that receives its [`BuildProgress`]), [`Built`], [`ImageError`], [`Manifest`].
//! This crate never prints: the caller draws the progress and reports the result.
//!
//! What this is not: provisioning. A base image holds no machine's identity (no SSH host keys,
//! an empty machine-id, a locked root); `mv-provision` and the first-boot stage add those.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod alpine;
mod debian;
mod disk;
mod manifest;
mod progress;
mod run;

pub use debian::{mmdebstrap_step, packages as debian_packages};
pub use manifest::{dpkg_packages, Manifest};
pub use progress::{BuildProgress, PHASES};
pub use run::{RunOutput, Runner, SystemRunner};

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Bumped whenever the image's layout, boot chain or configuration changes: part of every build
/// key, so caches rebuild. 3: `virtio_console` in the initramfs. 4: no udev in the initramfs,
/// unused systemd generators masked. 5: GRUB boots the kernel with `linux16`.
pub const BUILDER_VERSION: u32 = 5;

/// The guest-side first-boot stage (written by the provisioning side), installed as
/// `/etc/systemd/system/multiverse-seed.service` in the Debian image (the Alpine image's OpenRC
/// counterparts are [`alpine::GUEST_FILES`]).
pub(crate) const SEED_UNIT: &str = include_str!("../guest/multiverse-seed.service");
/// Its script, installed as `/usr/lib/multiverse/multiverse-seed` (0755).
pub(crate) const SEED_SCRIPT: &str = include_str!("../guest/multiverse-seed");
/// `multiverse ssh`'s guest end (virtio-serial to sshd), installed as
/// `/etc/systemd/system/multiverse-ssh-relay.service`.
pub(crate) const SSH_RELAY_UNIT: &str = include_str!("../guest/multiverse-ssh-relay.service");
/// The guest units installed and enabled (per their `[Install]` section): (file name, text).
pub(crate) const GUEST_UNITS: &[(&str, &str)] = &[
    ("multiverse-seed.service", SEED_UNIT),
    ("multiverse-ssh-relay.service", SSH_RELAY_UNIT),
];

/// Which distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    /// Debian (mmdebstrap).
    Debian,
    /// Alpine (apk.static).
    Alpine,
}

impl Os {
    /// Parses "debian" or "alpine".
    pub fn parse(s: &str) -> Result<Os, ImageError> {
        match s {
            "debian" => Ok(Os::Debian),
            "alpine" => Ok(Os::Alpine),
            other => Err(ImageError::UnknownOs(other.to_string())),
        }
    }
    /// "debian" / "alpine".
    pub fn as_str(self) -> &'static str {
        match self {
            Os::Debian => "debian",
            Os::Alpine => "alpine",
        }
    }
    /// The default release.
    pub fn default_release(self) -> &'static str {
        match self {
            Os::Debian => "bookworm",
            Os::Alpine => "v3.20",
        }
    }
    /// The default package mirror.
    pub fn default_mirror(self) -> &'static str {
        match self {
            Os::Debian => "http://deb.debian.org/debian",
            Os::Alpine => "https://dl-cdn.alpinelinux.org/alpine",
        }
    }
}

/// Which Debian kernel flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernel {
    /// `linux-image-cloud-amd64`: virtio and KVM/Xen/Hyper-V drivers only; smaller, boots faster.
    Cloud,
    /// `linux-image-amd64`: every driver (needed for passed-through hardware).
    Generic,
}

impl Kernel {
    /// Parses "cloud" or "generic".
    pub fn parse(s: &str) -> Result<Kernel, ImageError> {
        match s {
            "cloud" => Ok(Kernel::Cloud),
            "generic" => Ok(Kernel::Generic),
            other => Err(ImageError::BadOption(format!(
                "unknown kernel {other:?}: use cloud or generic"
            ))),
        }
    }
    /// "cloud" / "generic".
    pub fn as_str(self) -> &'static str {
        match self {
            Kernel::Cloud => "cloud",
            Kernel::Generic => "generic",
        }
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Distribution.
    pub os: Os,
    /// `images/<name>.qcow2`.
    pub name: String,
    /// bookworm, v3.20, …
    pub release: String,
    /// Only x86_64 today.
    pub arch: String,
    /// Virtual disk size in bytes.
    pub size: u64,
    /// Debian kernel flavour (Alpine always uses linux-virt).
    pub kernel: Kernel,
    /// Packages beyond the bootable minimum ([`BuildOptions::new`] starts with what the
    /// provisioning recipes install; [`debian_packages`] is Debian's full list).
    pub include: Vec<String>,
    /// Package mirror.
    pub mirror: String,
    /// Persistent package cache (downloaded .deb / .apk files), reused by later builds.
    pub cache: PathBuf,
    /// The tree's `images/` folder.
    pub images_dir: PathBuf,
    /// Replace an existing image of that name.
    pub force: bool,
}

impl BuildOptions {
    /// The defaults for `os` into `images_dir`: name = the OS, default release, x86_64, 4 GiB,
    /// the cloud kernel, the default package list, the default mirror, the cache in
    /// `images/.cache/<os>-<release>-<arch>/`.
    pub fn new(os: Os, images_dir: &Path) -> Self {
        let release = os.default_release().to_string();
        let arch = "x86_64".to_string();
        BuildOptions {
            os,
            name: os.as_str().to_string(),
            cache: default_cache(images_dir, os, &release, &arch),
            release,
            arch,
            size: 4 << 30,
            kernel: Kernel::Cloud,
            include: match os {
                Os::Debian => debian::DEFAULT_INCLUDE
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                Os::Alpine => alpine::DEFAULT_INCLUDE
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            },
            mirror: os.default_mirror().to_string(),
            images_dir: images_dir.to_path_buf(),
            force: false,
        }
    }

    /// `images/<name>.qcow2`.
    pub fn image_path(&self) -> PathBuf {
        self.images_dir.join(format!("{}.qcow2", self.name))
    }

    /// SHA-256 (hex) over everything that decides the image's content: builder version, OS,
    /// release, arch, kernel, size, mirror, the sorted package list and the first-boot files.
    /// Two builds with the same key make equivalent images (package versions may have moved on in
    /// the mirror; the manifest records the exact ones). An Alpine key also covers the OpenRC
    /// first-boot files and their runlevel links; a Debian key does not (its document is the same
    /// as before Alpine had them, so Debian images did not rebuild).
    pub fn build_key(&self) -> String {
        self.key_with(alpine::GUEST_FILES, alpine::GUEST_RUNLEVELS)
    }

    /// [`BuildOptions::build_key`] with the given OpenRC files and runlevel links.
    pub(crate) fn key_with(
        &self,
        openrc_files: &[(&str, &str)],
        openrc_runlevels: &[(&str, &str)],
    ) -> String {
        let mut include = self.include.clone();
        include.sort();
        include.dedup();
        let mut doc = serde_json::json!({
            "builder": BUILDER_VERSION,
            "os": self.os,
            "release": self.release,
            "arch": self.arch,
            "kernel": self.kernel,
            "size": self.size,
            "mirror": self.mirror,
            "include": include,
            "seed_unit": SEED_UNIT,
            "ssh_relay_unit": SSH_RELAY_UNIT,
            "seed_script": SEED_SCRIPT,
        });
        if self.os == Os::Alpine {
            doc["openrc_files"] = serde_json::json!(openrc_files);
            doc["openrc_runlevels"] = serde_json::json!(openrc_runlevels);
        }
        hex::encode(Sha256::digest(doc.to_string().as_bytes()))
    }

    fn validate(&self) -> Result<(), ImageError> {
        if self.name.is_empty()
            || self.name.starts_with('.')
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(ImageError::BadOption(format!(
                "invalid image name {:?}: use letters, digits, '.', '_' and '-', not starting with '.'",
                self.name
            )));
        }
        if self.arch != "x86_64" {
            return Err(ImageError::BadOption(format!(
                "unsupported arch {:?}: only x86_64 is built today",
                self.arch
            )));
        }
        if self.size < 512 << 20 {
            return Err(ImageError::BadOption(format!(
                "size {} is too small: at least 512M",
                self.size
            )));
        }
        if !self.size.is_multiple_of(1 << 20) {
            return Err(ImageError::BadOption(
                "size must be a whole number of MiB".into(),
            ));
        }
        let word = |s: &str| {
            !s.is_empty()
                && !s.starts_with('-')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '='))
        };
        if let Some(bad) = self.include.iter().find(|p| !word(p)) {
            return Err(ImageError::BadOption(format!(
                "invalid package name {bad:?}"
            )));
        }
        if !word(&self.release) {
            return Err(ImageError::BadOption(format!(
                "invalid release {:?}",
                self.release
            )));
        }
        Ok(())
    }
}

/// `images/.cache/<os>-<release>-<arch>/`.
pub fn default_cache(images_dir: &Path, os: Os, release: &str, arch: &str) -> PathBuf {
    images_dir
        .join(".cache")
        .join(format!("{}-{release}-{arch}", os.as_str()))
}

/// Parses a size like `4G`, `512M`, `2048M`, `1T` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, ImageError> {
    let bad = || ImageError::BadOption(format!("invalid size {s:?}: use e.g. 4G or 512M"));
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(bad()),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(mult).filter(|v| *v > 0).ok_or_else(bad)
}

/// Why a build failed. Display is one line naming the step.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Not an OS the builder knows.
    #[error("unknown OS {0:?}: image build knows debian and alpine")]
    UnknownOs(String),
    /// A bad option value.
    #[error("{0}")]
    BadOption(String),
    /// The image exists and `force` was not given.
    #[error("image {name} already exists at {}", path.display())]
    Exists {
        /// Name.
        name: String,
        /// Its file.
        path: PathBuf,
    },
    /// A tool the build needs is not installed.
    #[error("{tool} is not installed (package {package})")]
    MissingTool {
        /// The command.
        tool: String,
        /// Where it comes from.
        package: String,
    },
    /// A command failed.
    #[error("step {step} failed: {detail}")]
    Step {
        /// Which step.
        step: String,
        /// The last meaningful line of its error output.
        detail: String,
    },
    /// A file operation failed.
    #[error("step {step} failed: {source}")]
    Io {
        /// Which step.
        step: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    /// Whether this is bad input (exit code 2) rather than a failure.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ImageError::UnknownOs(_) | ImageError::BadOption(_) | ImageError::Exists { .. }
        )
    }
}

// The person's option values and an existing image are theirs to change; every other step
// failing is a failure.
impl mv_core::Classify for ImageError {
    fn class(&self) -> mv_core::ErrorClass {
        if self.is_usage() {
            mv_core::ErrorClass::Usage
        } else {
            mv_core::ErrorClass::Failure
        }
    }
}

pub(crate) fn io_err(step: &str) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Step {
        step: step.to_string(),
        detail: source.to_string(),
    }
}

/// One command of a build: a name for error messages, its argv, and optional stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Shown in the error line: "step NAME failed: …".
    pub name: String,
    /// The command line.
    pub argv: Vec<String>,
    /// Written to its stdin.
    pub stdin: Option<String>,
}

impl Step {
    /// A step without stdin.
    pub fn new<I, S>(name: &str, argv: I) -> Step
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Step {
            name: name.to_string(),
            argv: argv.into_iter().map(Into::into).collect(),
            stdin: None,
        }
    }
    /// With stdin.
    pub fn stdin(mut self, text: String) -> Step {
        self.stdin = Some(text);
        self
    }
    /// Runs it; a failure is [`ImageError::Step`] with the last meaningful line of stderr.
    pub fn run(&self, runner: &dyn Runner) -> Result<(), ImageError> {
        let out = runner
            .run(&self.argv, self.stdin.as_deref())
            .map_err(io_err(&self.name))?;
        if out.success {
            return Ok(());
        }
        Err(ImageError::Step {
            step: self.name.clone(),
            detail: last_error_line(&out.stderr),
        })
    }
}

/// The line of a tool's output that says what went wrong: the last line containing "error",
/// "E:" or "No space", else the last non-empty line.
pub(crate) fn last_error_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let pick = lines
        .iter()
        .rev()
        .find(|l| {
            let low = l.to_ascii_lowercase();
            low.contains("no space") || low.starts_with("e:") || low.contains("error")
        })
        .or_else(|| lines.last())
        .copied()
        .unwrap_or("exited with an error and printed nothing");
    let mut s: String = pick.chars().take(300).collect();
    if s.len() < pick.len() {
        s.push('…');
    }
    s
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Built {
    /// `images/<name>.qcow2`.
    pub image: PathBuf,
    /// `images/<name>.manifest.json`.
    pub manifest_path: PathBuf,
    /// What it holds.
    pub manifest: Manifest,
}

/// The build folder: removed on drop unless the build finished (its contents were renamed away).
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What an OS-specific populate step hands back.
pub(crate) struct Populated {
    pub packages: std::collections::BTreeMap<String, String>,
    /// Path of the kernel inside the root, as GRUB reads it.
    pub kernel: String,
    /// Path of the initrd, if any.
    pub initrd: Option<String>,
    /// Extra kernel command line arguments after root= and console=.
    pub cmdline_extra: String,
}

/// Builds the image `opts` describes into `opts.images_dir`.
pub fn build(
    opts: &BuildOptions,
    runner: &dyn Runner,
    progress: &dyn Fn(BuildProgress),
) -> Result<Built, ImageError> {
    opts.validate()?;
    let image = opts.image_path();
    let manifest_path = manifest::path_for(&image);
    if image.exists() && !opts.force {
        return Err(ImageError::Exists {
            name: opts.name.clone(),
            path: image,
        });
    }
    let mut needed: Vec<(&str, &str)> = vec![
        ("mke2fs", "e2fsprogs"),
        ("sfdisk", "fdisk"),
        ("dd", "coreutils"),
        ("grub-mkimage", "grub-common"),
        ("qemu-img", "qemu-utils"),
        ("/usr/lib/grub/i386-pc/boot.img", "grub-pc-bin"),
    ];
    needed.extend(match opts.os {
        Os::Debian => debian::TOOLS,
        Os::Alpine => alpine::TOOLS,
    });
    for (tool, package) in needed {
        if !runner.has_tool(tool) {
            return Err(ImageError::MissingTool {
                tool: tool.to_string(),
                package: package.to_string(),
            });
        }
    }
    let started = Instant::now();
    std::fs::create_dir_all(&opts.images_dir).map_err(io_err("create images folder"))?;
    std::fs::create_dir_all(&opts.cache).map_err(io_err("create package cache folder"))?;
    let work = WorkDir(opts.images_dir.join(format!(
        ".build-{}.{}",
        opts.name,
        std::process::id()
    )));
    let _ = std::fs::remove_dir_all(&work.0);
    std::fs::create_dir(&work.0).map_err(io_err("create build folder"))?;
    let rootfs = work.0.join("rootfs");
    std::fs::create_dir(&rootfs).map_err(io_err("create build folder"))?;

    let disk_id = random_u32().max(1);
    let fs_uuid = random_uuid();
    let cmdline_root = format!(
        "root={} rootfstype=ext4 rw console=ttyS0,115200n8",
        disk::root_partuuid(disk_id)
    );

    progress(BuildProgress::Phase(0));
    let pop = match opts.os {
        Os::Debian => debian::populate(opts, &work.0, &rootfs, runner)?,
        Os::Alpine => alpine::populate(opts, &work.0, &rootfs, runner)?,
    };
    progress(BuildProgress::Phase(1));
    let cmdline = format!("{cmdline_root} {}", pop.cmdline_extra)
        .trim()
        .to_string();
    let grub_dir = rootfs.join("boot/grub");
    std::fs::create_dir_all(&grub_dir).map_err(io_err("write boot/grub/grub.cfg"))?;
    std::fs::write(
        grub_dir.join("grub.cfg"),
        disk::grub_cfg(&pop.kernel, pop.initrd.as_deref(), &cmdline),
    )
    .map_err(io_err("write boot/grub/grub.cfg"))?;
    match opts.os {
        Os::Debian => debian::configure(&rootfs, opts.kernel)?,
        Os::Alpine => alpine::configure(&rootfs)?,
    }

    progress(BuildProgress::Phase(2));
    let raw = work.0.join("disk.raw");
    let root_img = work.0.join("root.ext4");
    let core_img = work.0.join("core.img");
    let qcow = work.0.join("image.qcow2");
    std::fs::File::create(&raw)
        .and_then(|f| f.set_len(opts.size))
        .map_err(io_err("create the disk file"))?;
    let steps = disk::assemble_steps(
        &rootfs, &root_img, &raw, &core_img, opts.size, disk_id, &fs_uuid,
    );
    for (i, step) in steps.iter().enumerate() {
        if i == 1 {
            progress(BuildProgress::Phase(3));
            // The root folder is in the filesystem image now: free its space early.
            let _ = std::fs::remove_dir_all(&rootfs);
        }
        if step.argv.first().map(String::as_str) == Some("dd")
            && step
                .argv
                .iter()
                .any(|a| a == "seek=1" && step.argv.iter().any(|b| b == "bs=512"))
        {
            check_core_size(&core_img)?;
        }
        step.run(runner)?;
    }
    let _ = std::fs::remove_file(&root_img);

    progress(BuildProgress::Phase(4));
    Step::new(
        "qemu-img convert (qcow2)",
        [
            "qemu-img",
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            &raw.display().to_string(),
            &qcow.display().to_string(),
        ],
    )
    .run(runner)?;
    let _ = std::fs::remove_file(&raw);

    progress(BuildProgress::Phase(5));
    Step::new(
        "qemu-img check",
        [
            "qemu-img",
            "check",
            "-q",
            "-f",
            "qcow2",
            &qcow.display().to_string(),
        ],
    )
    .run(runner)?;
    let sha256 = mv_core::fsutil::sha256_file(&qcow).map_err(io_err("checksum the image"))?;
    let built_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let manifest = manifest::Manifest {
        format: manifest::FORMAT.to_string(),
        name: opts.name.clone(),
        os: opts.os.as_str().to_string(),
        release: opts.release.clone(),
        arch: opts.arch.clone(),
        kernel: match opts.os {
            Os::Debian => opts.kernel.as_str().to_string(),
            Os::Alpine => "virt".to_string(),
        },
        size: opts.size,
        packages: pop.packages,
        sha256,
        built_at,
        build_seconds: started.elapsed().as_secs(),
        boot_chain: vec![
            "SeaBIOS (legacy BIOS, q35)".into(),
            "MBR: GRUB 2 boot.img".into(),
            format!(
                "GRUB i386-pc core.img in sectors 1-2047, prefix {}",
                disk::GRUB_PREFIX
            ),
            "/boot/grub/grub.cfg on the ext4 root".into(),
            match pop.initrd {
                Some(ref i) => format!("linux16 {} + initrd16 {}", pop.kernel, i),
                None => format!("linux16 {}", pop.kernel),
            },
        ],
        cmdline,
        build_key: opts.build_key(),
        builder: BUILDER_VERSION,
    };
    let staged_manifest = work.0.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| io_err("write the manifest")(std::io::Error::other(e)))?;
    std::fs::write(&staged_manifest, text + "\n").map_err(io_err("write the manifest"))?;
    for f in [&qcow, &staged_manifest] {
        std::fs::File::open(f)
            .and_then(|f| f.sync_all())
            .map_err(io_err("sync the image"))?;
    }
    // Image first, manifest second: a crash between leaves a manifest whose sha256 does not
    // match, which every reader checks.
    std::fs::rename(&qcow, &image).map_err(io_err("install the image"))?;
    std::fs::rename(&staged_manifest, &manifest_path).map_err(io_err("install the manifest"))?;
    if let Ok(d) = std::fs::File::open(&opts.images_dir) {
        let _ = d.sync_all();
    }
    progress(BuildProgress::Finish);
    Ok(Built {
        image,
        manifest_path,
        manifest,
    })
}

fn check_core_size(core: &Path) -> Result<(), ImageError> {
    let len = std::fs::metadata(core)
        .map_err(io_err("grub-mkimage (boot loader core)"))?
        .len();
    let room = (disk::ROOT_START - 1) * disk::SECTOR;
    if len > room {
        return Err(ImageError::Step {
            step: "grub-mkimage (boot loader core)".into(),
            detail: format!("core.img is {len} bytes, more than the {room} before the partition"),
        });
    }
    Ok(())
}

/// Whether `image` is intact and what `opts` would build: its manifest exists, names the same
/// build key, and the file's SHA-256 matches it.
pub fn is_current(opts: &BuildOptions) -> bool {
    let image = opts.image_path();
    let Some(m) = manifest::read(&manifest::path_for(&image)) else {
        return false;
    };
    m.build_key == opts.build_key()
        && mv_core::fsutil::sha256_file(&image).is_ok_and(|h| h == m.sha256)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    if b.iter().all(|x| *x == 0) {
        // No /dev/urandom: time and pid still make distinct disks.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(1)
            ^ u128::from(std::process::id());
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> ((i % 16) * 8)) as u8;
        }
    }
    b
}

fn random_u32() -> u32 {
    u32::from_le_bytes(random_bytes::<4>())
}

fn random_uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Writes `text` to `root/rel` (parents created) with `mode`.
pub(crate) fn put(root: &Path, rel: &str, text: &str, mode: u32) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(rel.trim_start_matches('/'));
    let step = format!("write {rel}");
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err(&step)(e))?;
    }
    let _ = std::fs::remove_file(&p);
    std::fs::write(&p, text).map_err(|e| io_err(&step)(e))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_err(&step)(e))
}

/// Makes `root/link` a symlink to `target` (replacing what was there).
pub(crate) fn symlink(root: &Path, link: &str, target: &str) -> Result<(), ImageError> {
    let p = root.join(link.trim_start_matches('/'));
    let step = format!("link {link}");
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err(&step)(e))?;
    }
    let _ = std::fs::remove_file(&p);
    std::os::unix::fs::symlink(target, &p).map_err(|e| io_err(&step)(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert!(parse_size("4X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("0G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn error_line_prefers_the_error() {
        assert_eq!(
            last_error_line("I: a\nE: cannot fetch\nI: cleanup\n"),
            "E: cannot fetch"
        );
        assert_eq!(last_error_line("one\ntwo\n"), "two");
        assert_eq!(
            last_error_line(""),
            "exited with an error and printed nothing"
        );
    }

    #[test]
    fn build_key_ignores_package_order_but_not_packages() {
        let d = Path::new("/x/images");
        let a = BuildOptions::new(Os::Debian, d);
        let mut b = a.clone();
        b.include.reverse();
        assert_eq!(a.build_key(), b.build_key());
        b.include.push("htop".into());
        assert_ne!(a.build_key(), b.build_key());
    }

    #[test]
    fn bad_names_and_packages_are_refused() {
        let mut o = BuildOptions::new(Os::Debian, Path::new("/x"));
        o.name = "../evil".into();
        assert!(o.validate().is_err());
        o.name = "ok".into();
        o.include.push("--allow-unauthenticated".into());
        assert!(o.validate().is_err());
    }
}
