//! The Alpine image: `apk.static --root … --initdb add alpine-base linux-virt …` into a folder,
//! then the same disk assembly as Debian (ext4 by `mke2fs -d`, GRUB i386-pc in the MBR gap).
//!
//! UNTESTED on a real mirror: no Alpine mirror is reachable from the machines this was written
//! on. `tests/alpine.rs` asserts the exact command lines with a recording runner; see
//! docs/images.md for what a first real run should check.
//!
//! Needs on the host: `apk.static` (from Alpine's `apk-tools-static` package) on `PATH`, and
//! Alpine's signing keys (the `alpine-keys` package's `/etc/apk/keys/*.rsa.pub`) in
//! `<cache>/keys/`: packages are verified, never installed with `--allow-untrusted`.
//!
//! Boot: GRUB reads `/boot/vmlinuz-virt` and `/boot/initramfs-virt`, the fixed names Alpine's
//! kernel package and mkinitfs keep current on upgrade. OpenRC: a getty on ttyS0 in
//! `/etc/inittab`, the standard sysinit/boot/shutdown runlevels linked as `setup-alpine` does.
//! The systemd first-boot stage of the Debian image has no OpenRC counterpart yet.

use crate::{io_err, put, symlink, BuildOptions, ImageError, Populated, Runner, Step};
use std::path::Path;

/// Tools an Alpine build needs on the host, with their packages.
pub const TOOLS: &[(&str, &str)] = &[("apk.static", "apk-tools-static (Alpine)")];

/// Always installed.
pub const BASE_PACKAGES: &[&str] = &["alpine-base", "linux-virt", "mkinitfs", "e2fsprogs"];

/// The default include list: the provisioning recipes' Alpine packages for routers, services and
/// applications.
pub const DEFAULT_INCLUDE: &[&str] = &[
    "openssh",
    "ca-certificates",
    "iproute2",
    "nftables",
    "dnsmasq",
    "tor",
    "wireguard-tools",
];

/// OpenRC services per runlevel, as `setup-alpine` enables them.
pub const RUNLEVELS: &[(&str, &[&str])] = &[
    ("sysinit", &["devfs", "dmesg", "mdev", "hwdrivers"]),
    (
        "boot",
        &[
            "modules", "sysctl", "hostname", "bootmisc", "syslog", "hwclock",
        ],
    ),
    ("shutdown", &["killprocs", "savecache", "mount-ro"]),
];

/// Kernel command line after `root=… console=ttyS0`: the modules Alpine's initramfs must load to
/// find the root.
pub const CMDLINE_EXTRA: &str = "modules=virtio_pci,virtio_blk,ext4 quiet";

/// The packages, sorted and without duplicates.
pub fn packages(opts: &BuildOptions) -> Vec<String> {
    let mut v: Vec<String> = BASE_PACKAGES.iter().map(|s| s.to_string()).collect();
    v.extend(opts.include.iter().cloned());
    v.sort();
    v.dedup();
    v
}

/// The repositories: main and community of the release.
pub fn repositories(opts: &BuildOptions) -> Vec<String> {
    let m = opts.mirror.trim_end_matches('/');
    vec![
        format!("{m}/{}/main", opts.release),
        format!("{m}/{}/community", opts.release),
    ]
}

/// The apk.static command line.
pub fn apk_step(opts: &BuildOptions, rootfs: &Path) -> Step {
    let mut argv: Vec<String> = vec![
        "apk.static".into(),
        "--arch".into(),
        opts.arch.clone(),
        "--root".into(),
        rootfs.display().to_string(),
        "--initdb".into(),
        "--keys-dir".into(),
        opts.cache.join("keys").display().to_string(),
        "--cache-dir".into(),
        opts.cache.join("apk").display().to_string(),
    ];
    for r in repositories(opts) {
        argv.push("--repository".into());
        argv.push(r);
    }
    argv.extend([
        "--update-cache".into(),
        "--no-progress".into(),
        "add".into(),
    ]);
    argv.extend(packages(opts));
    Step {
        name: "apk.static (packages into a folder)".into(),
        argv,
        stdin: None,
    }
}

/// Installs the packages into `rootfs`.
pub(crate) fn populate(
    opts: &BuildOptions,
    _work: &Path,
    rootfs: &Path,
    runner: &dyn Runner,
) -> Result<Populated, ImageError> {
    std::fs::create_dir_all(opts.cache.join("apk")).map_err(io_err("create the apk cache"))?;
    apk_step(opts, rootfs).run(runner)?;
    put(
        rootfs,
        "etc/apk/repositories",
        &(repositories(opts).join("\n") + "\n"),
        0o644,
    )?;
    let packages =
        crate::manifest::apk_packages(rootfs).map_err(io_err("read the package list"))?;
    Ok(Populated {
        packages,
        kernel: "/boot/vmlinuz-virt".into(),
        initrd: Some("/boot/initramfs-virt".into()),
        cmdline_extra: CMDLINE_EXTRA.into(),
    })
}

/// Plain-file configuration of the installed root.
pub(crate) fn configure(rootfs: &Path) -> Result<(), ImageError> {
    for (level, services) in RUNLEVELS {
        for s in *services {
            symlink(
                rootfs,
                &format!("etc/runlevels/{level}/{s}"),
                &format!("/etc/init.d/{s}"),
            )?;
        }
    }
    let inittab = rootfs.join("etc/inittab");
    let mut text = std::fs::read_to_string(&inittab).unwrap_or_default();
    if !text.contains("ttyS0") {
        text.push_str("ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100\n");
    }
    put(rootfs, "etc/inittab", &text, 0o644)?;
    put(rootfs, "etc/hostname", "alpine\n", 0o644)?;
    put(
        rootfs,
        "etc/fstab",
        "# Multiverse base image: the kernel mounts / (root=PARTUUID=… rw, see /boot/grub/grub.cfg).\n",
        0o644,
    )?;
    if let Ok(rd) = std::fs::read_dir(rootfs.join("etc/ssh")) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                std::fs::remove_file(e.path()).map_err(io_err("remove SSH host keys"))?;
            }
        }
    }
    Ok(())
}
