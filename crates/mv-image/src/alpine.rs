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
//!
//! First boot: the OpenRC counterpart of the Debian image's systemd stage, from
//! `guest/openrc/` ([`GUEST_FILES`], linked into runlevels by [`GUEST_RUNLEVELS`]): the seed
//! service in the boot runlevel, before the network; the SSH relay and the agent in the default
//! runlevel. The agent's script is the one provisioning writes (base recipe,
//! `contrib/openrc/multiverse-agent`): until a seed wrote it the link dangles and OpenRC skips
//! it, as systemd does with the Debian image's agent link. The scripts are checked with `sh -n`,
//! `openrc-run … depend` and a run of the stage against a fake root (`tests/openrc.rs`), never
//! on a booted Alpine.

use crate::{io_err, put, symlink, BuildOptions, ImageError, Populated, Runner, Step};
use std::path::Path;

/// Tools an Alpine build needs on the host, with their packages.
pub(crate) const TOOLS: &[(&str, &str)] = &[("apk.static", "apk-tools-static (Alpine)")];

/// Always installed.
pub(crate) const BASE_PACKAGES: &[&str] = &["alpine-base", "linux-virt", "mkinitfs", "e2fsprogs"];

/// The default include list: the provisioning recipes' Alpine packages for routers, services and
/// applications.
pub(crate) const DEFAULT_INCLUDE: &[&str] = &[
    "openssh",
    "ca-certificates",
    "iproute2",
    "nftables",
    "dnsmasq",
    "tor",
    "wireguard-tools",
];

/// OpenRC services per runlevel, as `setup-alpine` enables them.
pub(crate) const RUNLEVELS: &[(&str, &[&str])] = &[
    ("sysinit", &["devfs", "dmesg", "mdev", "hwdrivers"]),
    (
        "boot",
        &[
            "modules", "sysctl", "hostname", "bootmisc", "syslog", "hwclock",
        ],
    ),
    ("shutdown", &["killprocs", "savecache", "mount-ro"]),
];

/// The first-boot service, `/etc/init.d/multiverse-seed`.
pub(crate) const SEED_SERVICE: &str = include_str!("../guest/openrc/multiverse-seed");
/// The stage it runs, `/usr/lib/multiverse/multiverse-seed` (the same path as on Debian, another
/// script: the Debian one's bytes are part of the Debian image's build key).
pub(crate) const SEED_SCRIPT: &str = include_str!("../guest/openrc/multiverse-seed-stage");
/// `multiverse ssh`'s guest end, `/etc/init.d/multiverse-ssh-relay`.
pub(crate) const SSH_RELAY_SERVICE: &str = include_str!("../guest/openrc/multiverse-ssh-relay");

/// The guest files the image adds: (path in the root, text), each 0755.
pub(crate) const GUEST_FILES: &[(&str, &str)] = &[
    ("etc/init.d/multiverse-seed", SEED_SERVICE),
    ("usr/lib/multiverse/multiverse-seed", SEED_SCRIPT),
    ("etc/init.d/multiverse-ssh-relay", SSH_RELAY_SERVICE),
];

/// The runlevel links the image adds for them, and for the agent the seed installs:
/// (runlevel, service), each `/etc/runlevels/LEVEL/NAME -> /etc/init.d/NAME`.
pub(crate) const GUEST_RUNLEVELS: &[(&str, &str)] = &[
    ("boot", "multiverse-seed"),
    ("default", "multiverse-ssh-relay"),
    ("default", "multiverse-agent"),
];

/// Kernel command line after `root=… console=ttyS0`: the modules Alpine's initramfs must load to
/// find the root.
pub(crate) const CMDLINE_EXTRA: &str = "modules=virtio_pci,virtio_blk,ext4 quiet";

/// The packages, sorted and without duplicates.
pub(crate) fn packages(opts: &BuildOptions) -> Vec<String> {
    let mut v: Vec<String> = BASE_PACKAGES.iter().map(|s| s.to_string()).collect();
    v.extend(opts.include.iter().cloned());
    v.sort();
    v.dedup();
    v
}

/// The repositories: main and community of the release.
pub(crate) fn repositories(opts: &BuildOptions) -> Vec<String> {
    let m = opts.mirror.trim_end_matches('/');
    vec![
        format!("{m}/{}/main", opts.release),
        format!("{m}/{}/community", opts.release),
    ]
}

/// The apk.static command line.
pub(crate) fn apk_step(opts: &BuildOptions, rootfs: &Path) -> Step {
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
    for (path, text) in GUEST_FILES {
        put(rootfs, path, text, 0o755)?;
    }
    for (level, s) in GUEST_RUNLEVELS {
        symlink(
            rootfs,
            &format!("etc/runlevels/{level}/{s}"),
            &format!("/etc/init.d/{s}"),
        )?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_first_boot_stage_lands_in_the_root_with_its_runlevel_links() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        configure(root).unwrap();
        for (path, text, service) in [
            (
                "etc/init.d/multiverse-seed",
                include_str!("../guest/openrc/multiverse-seed"),
                true,
            ),
            (
                "usr/lib/multiverse/multiverse-seed",
                include_str!("../guest/openrc/multiverse-seed-stage"),
                false,
            ),
            (
                "etc/init.d/multiverse-ssh-relay",
                include_str!("../guest/openrc/multiverse-ssh-relay"),
                true,
            ),
        ] {
            let p = root.join(path);
            assert_eq!(std::fs::read_to_string(&p).unwrap(), text, "{path}");
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o755, "{path}");
            let shebang = if service {
                "#!/sbin/openrc-run\n"
            } else {
                "#!/bin/sh\n"
            };
            assert!(text.starts_with(shebang), "{path}");
        }
        // The Debian stage is not the Alpine one (it calls systemctl).
        assert!(!SEED_SCRIPT.contains("systemctl") && crate::SEED_SCRIPT.contains("systemctl"));
        let link = |p: &str| {
            std::fs::read_link(root.join(p))
                .unwrap_or_else(|e| panic!("{p}: {e}"))
                .display()
                .to_string()
        };
        assert_eq!(
            link("etc/runlevels/boot/multiverse-seed"),
            "/etc/init.d/multiverse-seed"
        );
        assert_eq!(
            link("etc/runlevels/default/multiverse-ssh-relay"),
            "/etc/init.d/multiverse-ssh-relay"
        );
        // The agent's link dangles until a seed writes its script.
        assert_eq!(
            link("etc/runlevels/default/multiverse-agent"),
            "/etc/init.d/multiverse-agent"
        );
        assert!(!root.join("etc/init.d/multiverse-agent").exists());
        // Nowhere else: not in sysinit (before the root's mounts), not twice.
        let mut linked: Vec<String> = Vec::new();
        for level in ["sysinit", "boot", "default", "shutdown"] {
            for e in std::fs::read_dir(root.join("etc/runlevels").join(level)).unwrap() {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                if name.starts_with("multiverse") {
                    linked.push(format!("{level}/{name}"));
                }
            }
        }
        linked.sort();
        assert_eq!(
            linked,
            [
                "boot/multiverse-seed",
                "default/multiverse-agent",
                "default/multiverse-ssh-relay"
            ]
        );
    }

    #[test]
    fn the_alpine_build_key_covers_the_openrc_files_and_the_debian_key_does_not() {
        let d = Path::new("/x/images");
        let other: &[(&str, &str)] = &[("etc/init.d/multiverse-seed", "#!/sbin/openrc-run\n")];
        let a = BuildOptions::new(crate::Os::Alpine, d);
        assert_eq!(a.build_key(), a.key_with(GUEST_FILES, GUEST_RUNLEVELS));
        assert_ne!(a.build_key(), a.key_with(other, GUEST_RUNLEVELS));
        assert_ne!(
            a.build_key(),
            a.key_with(GUEST_FILES, &GUEST_RUNLEVELS[1..])
        );
        let d = BuildOptions::new(crate::Os::Debian, d);
        assert_eq!(d.build_key(), d.key_with(other, &[]));
    }
}
