//! The lab image: a Debian bookworm root filesystem with the generic kernel and the host-level
//! tools (cryptsetup, initramfs-tools, USB and PCI tools, UEFI boot loaders), built once into the
//! tests' cache folder and booted by direct kernel boot.
//!
//! The build reuses `mv-image`'s package step ([`mv_image::mmdebstrap_step`]: the same
//! mirror, dpkg excludes and persistent `.deb` cache as the genesis image) and then, with nothing
//! mounted:
//!
//! ```text
//! mmdebstrap → rootfs/ (+ plain-file configuration: a root shell on ttyS0, masked units)
//!            → vmlinuz + initrd.img copied out of rootfs/boot
//!            → mke2fs -t ext4 -d rootfs root.ext4 (a raw filesystem, no partition table)
//! ```
//!
//! Cache layout: `<cache>/lab-image/<key>/{root.ext4, vmlinuz, initrd.img, image.json}`, where
//! `<key>` is the first 16 hex digits of the SHA-256 of the recipe ([`ImageSpec::key`]: the
//! mmdebstrap command line, every configuration text, the size and [`LAB_BUILDER`]). `image.json`
//! is written last: a folder without it is not an image. A build runs in a hidden folder of
//! `lab-image/` and is renamed into place, under `flock` on `<cache>/.image.lock` (the lock the
//! genesis image's tests take, since both share the package cache); a successful build removes
//! older keys of the same package list ([`ImageSpec::variant`]) and failed builds' leftovers.
//! The files are never written afterwards: [`crate::Lab`] boots `root.ext4` with `snapshot=on`.
//!
//! What this is not: the genesis image (`images/debian.qcow2`, BIOS + GRUB, cloud kernel), nor a
//! provisioned host. The lab image has no network configuration, an empty root password and a root
//! shell on the serial console: it exists only inside tests.

use crate::LabError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Bumped whenever the lab image's configuration changes in a way the recipe text does not show.
pub(crate) const LAB_BUILDER: u32 = 1;

/// The packages of the lab image, beyond `mv-image`'s bootable base (systemd, udev,
/// initramfs-tools, zstd, iproute2, dbus) and the generic kernel (`linux-image-amd64`).
pub const LAB_PACKAGES: &[&str] = &[
    "cryptsetup",
    "cryptsetup-initramfs",
    "initramfs-tools",
    "dosfstools",
    "mtools",
    "fdisk",
    "gdisk",
    "e2fsprogs",
    "usbutils",
    "pciutils",
    "keyutils",
    "systemd-boot",
    "grub-efi-amd64-bin",
    "kmod",
    "udev",
    "iproute2",
    "procps",
    "psmisc",
];

/// Size of the root filesystem (sparse: the cache holds only what is used).
pub(crate) const ROOT_SIZE: u64 = 4 << 30;

/// Modules the lab's initramfs holds (`MODULES=list`): what mounts a virtio root.
pub(crate) const INITRAMFS_MODULES: &[&str] =
    &["virtio_pci", "virtio_blk", "ext4", "crc32c_generic"];

/// The initramfs configuration.
pub(crate) const INITRAMFS_CONF: &str =
    "# Multiverse lab image: only what mounts a virtio root.\nMODULES=list\nCOMPRESS=zstd\n";

/// The root shell on the serial console: `bash -l` on ttyS0 (its controlling terminal), started
/// by systemd at once: no getty, no `login` and PAM (7 s under TCG), no wait for udev's
/// `dev-ttyS0.device` or for `multi-user.target` (the kernel mounted the root read-write, and
/// ttyS0 exists from the kernel's start). `Lab::boot` runs `udevadm settle` before handing the
/// shell over, since udev is still working through the boot's devices then.
pub(crate) const SHELL_UNIT: &str = "[Unit]
Description=Multiverse lab: root shell on the serial console
DefaultDependencies=no
Before=shutdown.target
Conflicts=shutdown.target

[Service]
ExecStart=-/bin/bash -l
WorkingDirectory=/root
Environment=HOME=/root TERM=linux
StandardInput=tty-force
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TTYReset=yes
TTYVHangup=yes
Restart=always
RestartSec=0
KillMode=process
IgnoreSIGPIPE=no
SendSIGHUP=yes

[Install]
WantedBy=sysinit.target
";

/// Modules never loaded by udev in the lab (`blacklist` stops loading by alias only; an
/// explicit `modprobe` still works): devices of q35 or `-cpu max` that no test uses, whose
/// loading costs seconds of boot under TCG.
pub(crate) const MODPROBE_BLACKLIST: &str =
    "# Multiverse lab image: nothing here is used by the lab's tests.
blacklist kvm_amd
blacklist kvm_intel
blacklist kvm
blacklist ccp
blacklist iTCO_wdt
blacklist iTCO_vendor_support
blacklist intel_pmc_bxt
blacklist i2c_i801
blacklist lpc_ich
blacklist pcspkr
blacklist serio_raw
blacklist psmouse
blacklist ahci
";

/// Units masked in the lab image: nothing at boot waits on them. Measured under TCG at load 4:
/// boot to shell 117 s with the first eight only, 76 s with all (`docs/lab.md`). Nothing in the
/// lab logs in (see [`SHELL_UNIT`]), so logind and D-Bus are not needed.
pub(crate) const MASKED: &[&str] = &[
    "e2scrub_reap.service",
    "e2scrub_all.timer",
    "getty-static.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "fstrim.timer",
    "getty@tty1.service",
    "systemd-timesyncd.service",
    "serial-getty@ttyS0.service",
    "modprobe@drm.service",
    "modprobe@efi_pstore.service",
    "modprobe@fuse.service",
    "modprobe@configfs.service",
    "dev-hugepages.mount",
    "dev-mqueue.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount",
    "sys-kernel-config.mount",
    "systemd-journal-flush.service",
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
    "systemd-logind.service",
    "dbus.service",
    "dbus.socket",
];

/// A fixed machine id: an empty one would make every boot a systemd "first boot".
pub(crate) const MACHINE_ID: &str = "6d756c746976657273652d6c61622d31\n";

/// The kernel command line after `root=UUID=…`.
/// `systemd.show_status=false`: no "A start job is running…" lines in the middle of a command's
/// output on the console.
pub(crate) const CMDLINE: &str =
    "rootfstype=ext4 rw console=ttyS0,115200n8 net.ifnames=0 quiet systemd.show_status=false";

/// What to put in a lab image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSpec {
    /// Packages beyond [`LAB_PACKAGES`] (e.g. `qemu-system-x86` for a nested guest). Another
    /// list is another image, cached beside the default one.
    pub extra_packages: Vec<String>,
}

impl ImageSpec {
    /// `mv-image`'s options for the package step: generic kernel, the lab's package list, the
    /// shared package cache.
    fn build_options(&self, cache: &Path) -> mv_image::BuildOptions {
        let mut o = mv_image::BuildOptions::new(mv_image::Os::Debian, &cache.join("lab-image"));
        o.kernel = mv_image::Kernel::Generic;
        o.include = LAB_PACKAGES.iter().map(|s| s.to_string()).collect();
        o.include.extend(self.extra_packages.iter().cloned());
        o.include.sort();
        o.include.dedup();
        o.cache = package_cache(cache);
        o.name = "lab".into();
        o
    }

    /// Which package list this is (16 hex digits of the SHA-256 of the sorted extra packages):
    /// a new build removes older images of the same variant only.
    pub fn variant(&self) -> String {
        let mut extra = self.extra_packages.clone();
        extra.sort();
        extra.dedup();
        hex::encode(&Sha256::digest(extra.join(",").as_bytes())[..8])
    }

    /// The recipe's key (64 hex digits): SHA-256 over the mmdebstrap command line (with fixed
    /// placeholder paths), every configuration text, the size and `LAB_BUILDER`.
    pub fn key(&self) -> String {
        let o = self.build_options(Path::new("/CACHE"));
        let step = mv_image::mmdebstrap_step(&o, Path::new("/STAGE"), Path::new("/ROOTFS"));
        let doc = serde_json::json!({
            "lab_builder": LAB_BUILDER,
            "mmdebstrap": step.argv,
            "initramfs_conf": INITRAMFS_CONF,
            "initramfs_modules": INITRAMFS_MODULES,
            "shell_unit": SHELL_UNIT,
            "modprobe_blacklist": MODPROBE_BLACKLIST,
            "masked": MASKED,
            "machine_id": MACHINE_ID,
            "cmdline": CMDLINE,
            "size": ROOT_SIZE,
        });
        hex::encode(Sha256::digest(doc.to_string().as_bytes()))
    }
}

/// A built lab image in the cache. Never write to its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabImage {
    /// `<cache>/lab-image/<key>/`.
    pub dir: PathBuf,
    /// The root filesystem (raw ext4, no partition table).
    pub root: PathBuf,
    /// The kernel.
    pub kernel: PathBuf,
    /// Its initramfs.
    pub initrd: PathBuf,
    /// The kernel command line that boots `root` with a console on ttyS0.
    pub cmdline: String,
    /// [`ImageSpec::key`].
    pub key: String,
}

/// What `image.json` records.
fn manifest(
    key: &str,
    variant: &str,
    uuid: &str,
    packages: &serde_json::Value,
    seconds: u64,
) -> String {
    let doc = serde_json::json!({
        "key": key,
        "variant": variant,
        "root_uuid": uuid,
        "cmdline": format!("root=UUID={uuid} {CMDLINE}"),
        "build_seconds": seconds,
        "packages": packages,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

/// The tests' cache folder: `MULTIVERSE_TEST_CACHE`, default `/var/cache/multiverse-tests` (the
/// same folder `crates/multiverse/tests/common` uses).
pub fn test_cache_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("MULTIVERSE_TEST_CACHE")
            .unwrap_or_else(|_| "/var/cache/multiverse-tests".into()),
    )
}

/// The persistent `.deb` cache, shared with the genesis image's tests.
pub(crate) fn package_cache(cache: &Path) -> PathBuf {
    cache.join("image-packages/debian-bookworm-x86_64")
}

/// The default lab image ([`ImageSpec::default`]) from the tests' cache, built on first use.
/// Memoised per process.
pub fn lab_image() -> Result<LabImage, LabError> {
    static IMAGE: std::sync::OnceLock<LabImage> = std::sync::OnceLock::new();
    if let Some(i) = IMAGE.get() {
        return Ok(i.clone());
    }
    let built = cached_image(&ImageSpec::default(), &test_cache_dir())?;
    Ok(IMAGE.get_or_init(|| built).clone())
}

/// The image `spec` describes in the cache folder `cache`, built if missing (see the module
/// documentation for the layout and the lock).
pub fn cached_image(spec: &ImageSpec, cache: &Path) -> Result<LabImage, LabError> {
    let key = spec.key();
    let base = cache.join("lab-image");
    let dir = base.join(&key[..16]);
    if let Some(i) = read_image(&dir, &key) {
        return Ok(i);
    }
    std::fs::create_dir_all(&base).map_err(LabError::io("create the lab image folder"))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache.join(".image.lock"))
        .map_err(LabError::io("open the image lock"))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| LabError::io("lock the image cache")(e.into()))?;
    // Someone else may have built it while we waited.
    if let Some(i) = read_image(&dir, &key) {
        return Ok(i);
    }
    build(spec, cache, &dir, &key)?;
    // Older recipes of the same package list go, and failed builds' leftovers (every build
    // holds the lock, so none is running); images of other package lists stay.
    let variant = spec.variant();
    if let Ok(rd) = std::fs::read_dir(&base) {
        for e in rd.flatten() {
            let p = e.path();
            let theirs = std::fs::read_to_string(p.join("image.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["variant"].as_str().map(str::to_string));
            let stale = match theirs {
                Some(v) => v == variant,
                None => true,
            };
            if p != dir && stale {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
    }
    read_image(&dir, &key).ok_or_else(|| LabError::Image {
        step: "read the built image".into(),
        detail: format!("{} has no valid image.json", dir.display()),
    })
}

fn read_image(dir: &Path, key: &str) -> Option<LabImage> {
    let text = std::fs::read_to_string(dir.join("image.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    if v["key"].as_str()? != key {
        return None;
    }
    let img = LabImage {
        dir: dir.to_path_buf(),
        root: dir.join("root.ext4"),
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        cmdline: v["cmdline"].as_str()?.to_string(),
        key: key.to_string(),
    };
    [&img.root, &img.kernel, &img.initrd]
        .iter()
        .all(|p| p.is_file())
        .then_some(img)
}

/// Removes the build folder unless it was renamed away.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(step: &mv_image::Step) -> Result<(), LabError> {
    step.run(&mv_image::SystemRunner)
        .map_err(|e| LabError::Image {
            step: step.name.clone(),
            detail: e.to_string(),
        })
}

fn put(root: &Path, rel: &str, text: &str, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(rel);
    let what = "configure the lab root";
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(LabError::io(what))?;
    }
    let _ = std::fs::remove_file(&p);
    std::fs::write(&p, text).map_err(LabError::io(what))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(LabError::io(what))
}

fn mask(root: &Path, unit: &str) -> Result<(), LabError> {
    let p = root.join("etc/systemd/system").join(unit);
    let _ = std::fs::remove_file(&p);
    std::os::unix::fs::symlink("/dev/null", &p).map_err(LabError::io("mask a unit"))
}

fn build(spec: &ImageSpec, cache: &Path, dest: &Path, key: &str) -> Result<(), LabError> {
    let started = Instant::now();
    let opts = spec.build_options(cache);
    std::fs::create_dir_all(&opts.cache).map_err(LabError::io("create the package cache"))?;
    let work = Scratch(
        dest.parent()
            .unwrap_or(dest)
            .join(format!(".build-{}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&work.0);
    let stage = work.0.join("stage");
    let rootfs = work.0.join("rootfs");
    let out = work.0.join("out");
    for d in [&stage, &rootfs, &out] {
        std::fs::create_dir_all(d).map_err(LabError::io("create the build folder"))?;
    }
    put(&stage, "conf.d/multiverse", INITRAMFS_CONF, 0o644)?;
    put(
        &stage,
        "modules.d/multiverse",
        &(INITRAMFS_MODULES.join("\n") + "\n"),
        0o644,
    )?;
    run(&mv_image::mmdebstrap_step(&opts, &stage, &rootfs))?;

    // Plain-file configuration.
    put(&rootfs, "etc/hostname", "lab\n", 0o644)?;
    put(
        &rootfs,
        "etc/hosts",
        "127.0.0.1 localhost\n127.0.1.1 lab\n",
        0o644,
    )?;
    put(
        &rootfs,
        "etc/fstab",
        "# Multiverse lab image: the kernel mounts / (root=UUID=… rw); nothing else.\n",
        0o644,
    )?;
    put(&rootfs, "etc/machine-id", MACHINE_ID, 0o444)?;
    put(
        &rootfs,
        "etc/systemd/system/mvlab-shell.service",
        SHELL_UNIT,
        0o644,
    )?;
    std::fs::create_dir_all(rootfs.join("etc/systemd/system/sysinit.target.wants"))
        .map_err(LabError::io("enable the shell"))?;
    std::os::unix::fs::symlink(
        "/etc/systemd/system/mvlab-shell.service",
        rootfs.join("etc/systemd/system/sysinit.target.wants/mvlab-shell.service"),
    )
    .map_err(LabError::io("enable the shell"))?;
    put(
        &rootfs,
        "etc/modprobe.d/mvlab.conf",
        MODPROBE_BLACKLIST,
        0o644,
    )?;
    for unit in MASKED {
        mask(&rootfs, unit)?;
    }
    let _ = std::fs::remove_file(
        rootfs.join("etc/systemd/system/getty.target.wants/getty@tty1.service"),
    );
    std::fs::create_dir_all(rootfs.join("mnt/host")).map_err(LabError::io("create /mnt/host"))?;
    // An empty root password: the console is the only way in, and only tests boot this image.
    let shadow = rootfs.join("etc/shadow");
    let text = std::fs::read_to_string(&shadow).map_err(LabError::io("read /etc/shadow"))?;
    let text: String = text
        .lines()
        .map(|l| match l.strip_prefix("root:") {
            Some(rest) => {
                let after = rest.split_once(':').map(|(_, a)| a).unwrap_or("");
                format!("root::{after}\n")
            }
            None => format!("{l}\n"),
        })
        .collect();
    put(&rootfs, "etc/shadow", &text, 0o640)?;

    // Kernel and initramfs, for direct kernel boot.
    let boot = rootfs.join("boot");
    let mut kernel = None;
    let mut initrd = None;
    for e in std::fs::read_dir(&boot)
        .map_err(LabError::io("read /boot"))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("vmlinuz-") {
            kernel = Some(e.path());
        } else if name.starts_with("initrd.img-") {
            initrd = Some(e.path());
        }
    }
    let (Some(kernel), Some(initrd)) = (kernel, initrd) else {
        return Err(LabError::Image {
            step: "find the kernel".into(),
            detail: format!("no vmlinuz-* and initrd.img-* in {}", boot.display()),
        });
    };
    std::fs::copy(&kernel, out.join("vmlinuz")).map_err(LabError::io("copy the kernel"))?;
    std::fs::copy(&initrd, out.join("initrd.img")).map_err(LabError::io("copy the initramfs"))?;
    let packages = mv_image::dpkg_packages(&rootfs)
        .map(|p| serde_json::json!(p))
        .unwrap_or_default();

    let uuid = uuid_from(key);
    let root_img = out.join("root.ext4");
    run(&mv_image::Step::new(
        "mke2fs (lab root filesystem from the folder)",
        [
            "mke2fs".to_string(),
            "-q".into(),
            "-F".into(),
            "-t".into(),
            "ext4".into(),
            "-L".into(),
            "labroot".into(),
            "-U".into(),
            uuid.clone(),
            "-d".into(),
            rootfs.display().to_string(),
            root_img.display().to_string(),
            format!("{}k", ROOT_SIZE / 1024),
        ],
    ))?;
    let _ = std::fs::remove_dir_all(&rootfs);
    put(
        &out,
        "image.json",
        &manifest(
            key,
            &spec.variant(),
            &uuid,
            &packages,
            started.elapsed().as_secs(),
        ),
        0o644,
    )?;
    for f in ["root.ext4", "vmlinuz", "initrd.img", "image.json"] {
        std::fs::File::open(out.join(f))
            .and_then(|f| f.sync_all())
            .map_err(LabError::io("sync the lab image"))?;
    }
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&out, dest).map_err(LabError::io("install the lab image"))?;
    Ok(())
}

/// A filesystem UUID derived from the key: the same recipe gives the same command line.
fn uuid_from(key: &str) -> String {
    let h = &key.as_bytes()[..32];
    let s = |a: usize, b: usize| String::from_utf8_lossy(&h[a..b]).into_owned();
    format!(
        "{}-{}-4{}-8{}-{}",
        s(0, 8),
        s(8, 12),
        s(13, 16),
        s(17, 20),
        s(20, 32)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_packages_not_their_order() {
        let a = ImageSpec::default();
        let b = ImageSpec {
            extra_packages: vec!["qemu-system-x86".into()],
        };
        assert_ne!(a.key(), b.key());
        let c = ImageSpec {
            extra_packages: vec!["b".into(), "a".into()],
        };
        let d = ImageSpec {
            extra_packages: vec!["a".into(), "b".into()],
        };
        assert_eq!(c.key(), d.key());
        assert_eq!(a.key().len(), 64);
    }

    #[test]
    fn uuid_has_the_right_shape() {
        let u = uuid_from(&ImageSpec::default().key());
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
    }
}
