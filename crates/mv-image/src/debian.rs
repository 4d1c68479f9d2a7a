//! The Debian image: `mmdebstrap` into a folder, then plain-file configuration for a fast, serial
//! console boot under SeaBIOS + GRUB.
//!
//! Package set: `--variant=apt` (Essential + apt) plus [`BASE_PACKAGES`] (init, udev, the kernel,
//! its initramfs tool, iproute2) plus the build's include list, by default [`DEFAULT_INCLUDE`]:
//! what the provisioning recipes install on router, service and application machines
//! (`crates/mv-provision/recipes/*.toml`), so that provisioning a disk before its first boot needs
//! no network. Services those packages enable on install (dnsmasq, tor) are disabled again here:
//! provisioning enables what each machine's recipe names.
//!
//! Boot speed: the initramfs holds only the modules a virtio guest needs (`MODULES=list`:
//! virtio_pci, virtio_blk, and virtio_console so the agent's port exists before udev's slow
//! coldplug; ext4 is built into the kernel), written before the kernel is installed
//! so it is generated once; it runs no udev ([`INITRAMFS_HOOK`]: the modules are loaded by name
//! and `blkid` finds the root); root is `PARTUUID=` (no wait for a `/dev/vda1` device unit, no
//! fstab entry for `/`); the systemd generators a virtio guest has no use for are masked
//! ([`MASKED_GENERATORS`]), as are `e2scrub_reap`, `getty-static` and the apt timers; the serial
//! getty on ttyS0 comes from `console=ttyS0`. Documentation, man pages and translations are not
//! unpacked. Where the time goes, measured: `docs/images.md`.
//!
//! What this is not: provisioning. No SSH host keys (removed), an empty `/etc/machine-id` (made
//! at first boot), no passwords.

use crate::{io_err, put, symlink, BuildOptions, ImageError, Kernel, Populated, Runner, Step};
use std::path::Path;

/// Tools a Debian build needs on the host, with their packages.
pub(crate) const TOOLS: &[(&str, &str)] = &[("mmdebstrap", "mmdebstrap")];

/// Always installed: what boots and what the image's own configuration relies on.
pub(crate) const BASE_PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "initramfs-tools",
    "zstd",
    "iproute2",
    // systemd-logind needs a bus; it is what turns libvirt's ACPI power button into a clean
    // shutdown (`multiverse down` never pulls the plug).
    "dbus",
];

/// The default `--include` list: the Debian packages of the provisioning recipes for machines
/// that boot this image (base, router, router-star, router-galaxy with WireGuard or OpenVPN,
/// service, application, and the controller of the lab topology), plus a DHCP client for
/// `iface … inet dhcp`, so every seed applies with no mirror, whichever VPN galaxy runs. Host
/// packages are not included (the host is not built from this image).
pub(crate) const DEFAULT_INCLUDE: &[&str] = &[
    "openssh-server",
    "openssh-client",
    "gnupg",
    "pass",
    "tmux",
    "ifupdown",
    "isc-dhcp-client",
    "ca-certificates",
    "nftables",
    "dnsmasq",
    "tor",
    "wireguard-tools",
    "openvpn",
];

/// Units masked in the image (symlinks to /dev/null): nothing at boot waits on them.
pub(crate) const MASKED: &[&str] = &[
    "e2scrub_reap.service",
    "e2scrub_all.timer",
    "getty-static.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
];

/// Units also masked in cloud-kernel (virtio guest) images: in the first second of systemd they
/// each cost a process (`modprobe`, `mount`) on the guest's one vCPU while the agent starts, and a
/// virtio guest uses none of them: no DRM, device-mapper, FUSE, loop devices, configfs,
/// hugepages, pstore, debugfs or tracefs at boot. `/dev/net/tun` still autoloads its module
/// (`kmod-static-nodes` is kept), and each can be unmasked (`systemctl unmask`) where a recipe
/// needs it.
pub(crate) const MASKED_IN_GUESTS: &[&str] = &[
    "modprobe@drm.service",
    "modprobe@dm_mod.service",
    "modprobe@efi_pstore.service",
    "modprobe@fuse.service",
    "modprobe@loop.service",
    "modprobe@configfs.service",
    "dev-hugepages.mount",
    "sys-fs-fuse-connections.mount",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
];

/// systemd generators masked in cloud-kernel (virtio guest) images (`/etc/systemd/system-generators/NAME` → /dev/null):
/// each is a process systemd runs before it loads a single unit, on every boot, and a guest has
/// nothing for them to find: no crypttab, integritytab or veritytab, no GPT root to discover, no
/// hibernation image, no `/etc/rc.local`, no offline system update, and no SysV-only service (every
/// init script in the image ships a native unit too). Kept: `systemd-fstab-generator` (mounts a
/// recipe may add), `systemd-getty-generator` (the serial console), `systemd-debug-generator` and
/// `systemd-run-generator` (kernel command line rescue switches), and the tor and OpenVPN
/// generators (their instances).
pub(crate) const MASKED_GENERATORS: &[&str] = &[
    "systemd-cryptsetup-generator",
    "systemd-gpt-auto-generator",
    "systemd-hibernate-resume-generator",
    "systemd-integritysetup-generator",
    "systemd-veritysetup-generator",
    "systemd-rc-local-generator",
    "systemd-system-update-generator",
    "systemd-sysv-generator",
];

/// In cloud-kernel (virtio guest) images only: an initramfs-tools hook that takes udev (and with it dmsetup, the keymap and the resume
/// search) out of the guest's initramfs. It runs after the packages' own hooks (mkinitramfs runs
/// `/etc/initramfs-tools/hooks` last) and before the scripts' order is written, so the boot
/// script never calls what was removed; it is in `/etc`, so every initramfs a kernel upgrade
/// generates is as small. Without udev the initramfs loads `/conf/modules` by name and resolves
/// `root=PARTUUID=` with `blkid` (kept), which is all a virtio disk needs.
pub(crate) const INITRAMFS_HOOK: &str = r#"#!/bin/sh
# Multiverse base image: a virtio guest's initramfs needs no udev. The modules it needs are loaded
# by name (/conf/modules) and blkid (kept) finds root=PARTUUID=; udev's start, coldplug and settle,
# and dmsetup, cost seconds under TCG. Delete this file to get initramfs-tools' default back.
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
for f in scripts/init-top/udev scripts/init-bottom/udev scripts/init-top/keymap          scripts/local-premount/resume usr/lib/systemd/systemd-udevd usr/bin/udevadm          usr/sbin/dmsetup usr/lib/x86_64-linux-gnu/libdevmapper.so.1.02.1; do
    rm -f "${DESTDIR}/${f}"
done
rm -rf "${DESTDIR}/usr/lib/udev" "${DESTDIR}/etc/udev"
"#;

/// Enablement links that package installation made and provisioning decides instead.
pub(crate) const DISABLED: &[&str] = &[
    "multi-user.target.wants/dnsmasq.service",
    "multi-user.target.wants/tor.service",
    "multi-user.target.wants/nftables.service",
    "multi-user.target.wants/openvpn.service",
    "getty.target.wants/getty@tty1.service",
];

/// Modules in the initramfs (`MODULES=list`); their dependencies come along.
pub(crate) const INITRAMFS_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "virtio_console"];

/// Kernel command line after `root=… console=ttyS0`: eth0, eth1… as provisioning names them.
pub(crate) const CMDLINE_EXTRA: &str = "net.ifnames=0 quiet";

/// Added for cloud-kernel (virtio guest) images: no IO-APIC timer check (a VM's timer is
/// emulated; cloud images commonly pass it) and no crypto self-tests at boot (they test the
/// kernel's own code, which the distribution tested; about 0.25 s under TCG).
pub(crate) const CMDLINE_GUEST: &str = "no_timer_check cryptomgr.notests";

/// The `dpkg` path excludes: no documentation (copyright files stay), man pages or translations.
pub(crate) const DPKG_EXCLUDES: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
];

/// The kernel package for `kernel`.
pub(crate) fn kernel_package(kernel: Kernel) -> &'static str {
    match kernel {
        Kernel::Cloud => "linux-image-cloud-amd64",
        Kernel::Generic => "linux-image-amd64",
    }
}

/// The package list given to mmdebstrap: base packages, the kernel, the include list (sorted,
/// without duplicates).
pub fn packages(opts: &BuildOptions) -> Vec<String> {
    let mut v: Vec<String> = BASE_PACKAGES.iter().map(|s| s.to_string()).collect();
    v.push(kernel_package(opts.kernel).to_string());
    v.extend(opts.include.iter().cloned());
    v.sort();
    v.dedup();
    v
}

/// The apt sources: the release, its updates and its security suite (when the mirror is a
/// standard `…/debian` one, security is the sibling `…/debian-security`).
pub(crate) fn sources(opts: &BuildOptions) -> Vec<String> {
    let m = opts.mirror.trim_end_matches('/');
    let r = &opts.release;
    let mut v = vec![
        format!("deb {m} {r} main"),
        format!("deb {m} {r}-updates main"),
    ];
    if let Some(base) = m.strip_suffix("/debian") {
        v.push(format!("deb {base}/debian-security {r}-security main"));
    }
    v
}

/// The mmdebstrap command line. `stage` holds the initramfs configuration copied in before the
/// kernel is installed; `cache` is the persistent .deb cache (synced in before, out after).
pub fn mmdebstrap_step(opts: &BuildOptions, stage: &Path, rootfs: &Path) -> Step {
    let cache = opts.cache.display().to_string();
    let mut argv: Vec<String> = vec![
        "mmdebstrap".into(),
        "--mode=root".into(),
        "--variant=apt".into(),
        "--arch=amd64".into(),
        "--format=directory".into(),
        format!("--include={}", packages(opts).join(",")),
    ];
    for d in DPKG_EXCLUDES {
        argv.push(format!("--dpkgopt={d}"));
    }
    argv.extend([
        // Keep downloaded packages for the next build.
        "--skip=download/empty".into(),
        "--skip=essential/unlink".into(),
        "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/".into(),
        format!("--setup-hook=sync-in {cache} /var/cache/apt/archives/"),
        "--essential-hook=mkdir -p \"$1\"/etc/initramfs-tools/conf.d \"$1\"/etc/initramfs-tools/hooks \"$1\"/usr/share/initramfs-tools/modules.d".into(),
        format!(
            "--essential-hook=copy-in {} /etc/initramfs-tools/conf.d/",
            stage.join("conf.d/multiverse").display()
        ),
        format!(
            "--essential-hook=copy-in {} /usr/share/initramfs-tools/modules.d/",
            stage.join("modules.d/multiverse").display()
        ),
    ]);
    if opts.kernel == Kernel::Cloud {
        argv.push(format!(
            "--essential-hook=copy-in {} /etc/initramfs-tools/hooks/",
            stage.join("hooks/multiverse").display()
        ));
    }
    argv.extend([
        format!("--customize-hook=sync-out /var/cache/apt/archives {cache}"),
        "--customize-hook=rm -f \"$1\"/var/cache/apt/archives/*.deb \"$1\"/var/cache/apt/*.bin"
            .into(),
        opts.release.clone(),
        rootfs.display().to_string(),
    ]);
    argv.extend(sources(opts));
    Step {
        name: "mmdebstrap (packages into a folder)".into(),
        argv,
        stdin: None,
    }
}

/// Installs the packages into `rootfs`; returns the package list and boot files.
pub(crate) fn populate(
    opts: &BuildOptions,
    work: &Path,
    rootfs: &Path,
    runner: &dyn Runner,
) -> Result<Populated, ImageError> {
    let stage = work.join("stage");
    put(
        &stage,
        "conf.d/multiverse",
        "# Multiverse base image: only the modules a virtio guest needs (ext4 is built in).\nMODULES=list\nCOMPRESS=zstd\n",
        0o644,
    )?;
    put(
        &stage,
        "modules.d/multiverse",
        &(INITRAMFS_MODULES.join("\n") + "\n"),
        0o644,
    )?;
    if opts.kernel == Kernel::Cloud {
        put(&stage, "hooks/multiverse", INITRAMFS_HOOK, 0o755)?;
    }
    mmdebstrap_step(opts, &stage, rootfs).run(runner)?;
    let packages =
        crate::manifest::dpkg_packages(rootfs).map_err(io_err("read the package list"))?;
    Ok(Populated {
        packages,
        kernel: "/vmlinuz".into(),
        initrd: Some("/initrd.img".into()),
        cmdline_extra: match opts.kernel {
            Kernel::Cloud => format!("{CMDLINE_EXTRA} {CMDLINE_GUEST}"),
            Kernel::Generic => CMDLINE_EXTRA.into(),
        },
    })
}

/// The unit that prints `systemd-analyze` to the console once boot finished, when the host asks
/// for it with `-fw_cfg name=opt/org.multiverse-os/boot-report,string=1` (tests, bench/boot.sh);
/// otherwise it exits at once.
pub(crate) const BOOT_REPORT_UNIT: &str = "[Unit]
Description=Multiverse: print systemd-analyze to the console when the host asks (fw_cfg)
DefaultDependencies=no
After=sysinit.target

[Service]
Type=simple
ExecStart=/usr/lib/multiverse/boot-report
StandardOutput=tty
TTYPath=/dev/console

[Install]
WantedBy=multi-user.target
";

/// Its script.
pub(crate) const BOOT_REPORT_SCRIPT: &str = "#!/bin/sh
# Prints where boot time went, once boot is finished, if the host set the fw_cfg entry
# opt/org.multiverse-os/boot-report. Otherwise does nothing.
f=/sys/firmware/qemu_fw_cfg/by_name/opt/org.multiverse-os/boot-report/raw
[ -e \"$f\" ] || modprobe -q qemu_fw_cfg 2>/dev/null || true
[ -e \"$f\" ] || exit 0
systemctl is-system-running --wait >/dev/null 2>&1 || true
echo 'multiverse-boot-report: begin'
systemd-analyze || true
systemd-analyze blame --no-pager | head -n 15 || true
systemd-analyze critical-chain --no-pager || true
echo 'multiverse-boot-report: end'
";

/// Drop-in for ssh.service: start only once provisioning wrote a host key.
pub(crate) const SSH_DROP_IN: &str = "# Multiverse base image: the base has no host keys (each machine gets its derived ones when it is
# provisioned); until then sshd is skipped instead of failing.
[Unit]
ConditionPathExists=/etc/ssh/ssh_host_ed25519_key
";

/// Plain-file configuration of the installed root. A cloud-kernel image is a virtio guest's and
/// gets the guest boot path ([`MASKED_IN_GUESTS`], [`MASKED_GENERATORS`], [`INITRAMFS_HOOK`]); a generic one (the
/// host, or a machine with passed-through hardware) keeps systemd's generators: a host needs its
/// cryptsetup generator and udev in its initramfs.
pub(crate) fn configure(rootfs: &Path, kernel: Kernel) -> Result<(), ImageError> {
    let sys = "etc/systemd/system";
    // No identity in the base image.
    if let Ok(rd) = std::fs::read_dir(rootfs.join("etc/ssh")) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                std::fs::remove_file(e.path()).map_err(io_err("remove SSH host keys"))?;
            }
        }
    }
    put(rootfs, "etc/machine-id", "", 0o444)?;
    let _ = std::fs::remove_file(rootfs.join("var/lib/dbus/machine-id"));
    put(rootfs, "etc/hostname", "debian\n", 0o644)?;
    put(
        rootfs,
        "etc/fstab",
        "# Multiverse base image: the kernel mounts / (root=PARTUUID=… rw on its command line, see\n\
         # /boot/grub/grub.cfg); no entry here, so boot waits for no device unit.\n",
        0o644,
    )?;
    for unit in MASKED {
        symlink(rootfs, &format!("{sys}/{unit}"), "/dev/null")?;
    }
    if kernel == Kernel::Cloud {
        for unit in MASKED_IN_GUESTS {
            symlink(rootfs, &format!("{sys}/{unit}"), "/dev/null")?;
        }
        for generator in MASKED_GENERATORS {
            symlink(
                rootfs,
                &format!("etc/systemd/system-generators/{generator}"),
                "/dev/null",
            )?;
        }
    }
    for link in DISABLED {
        let _ = std::fs::remove_file(rootfs.join(sys).join(link));
    }
    // The first-boot stage: enabled where its [Install] section says.
    for (name, text) in crate::GUEST_UNITS {
        put(rootfs, &format!("{sys}/{name}"), text, 0o644)?;
        for target in wanted_by(text) {
            symlink(
                rootfs,
                &format!("{sys}/{target}.wants/{name}"),
                &format!("/etc/systemd/system/{name}"),
            )?;
        }
    }
    put(
        rootfs,
        "usr/lib/multiverse/multiverse-seed",
        crate::SEED_SCRIPT,
        0o755,
    )?;
    // An unprovisioned machine has no host keys: sshd is skipped rather than failing.
    put(
        rootfs,
        &format!("{sys}/ssh.service.d/multiverse.conf"),
        SSH_DROP_IN,
        0o644,
    )?;
    put(
        rootfs,
        &format!("{sys}/multiverse-boot-report.service"),
        BOOT_REPORT_UNIT,
        0o644,
    )?;
    put(
        rootfs,
        "usr/lib/multiverse/boot-report",
        BOOT_REPORT_SCRIPT,
        0o755,
    )?;
    symlink(
        rootfs,
        &format!("{sys}/multi-user.target.wants/multiverse-boot-report.service"),
        "/etc/systemd/system/multiverse-boot-report.service",
    )?;
    // The agent, enabled ahead of its unit: provisioning writes the unit (base recipe) and the
    // seed starts it on the first boot; from the next boot on this link puts it in the boot's
    // first transaction, where its own ordering (no default dependencies, after the root is
    // writable) starts it seconds after systemd, instead of when udev reaches its port or the
    // seed has run. Until a seed wrote the unit the link dangles, and systemd skips it.
    symlink(
        rootfs,
        &format!("{sys}/multi-user.target.wants/{AGENT_UNIT}"),
        &format!("/etc/systemd/system/{AGENT_UNIT}"),
    )?;
    Ok(())
}

/// The agent's unit, as the base recipe installs it.
pub(crate) const AGENT_UNIT: &str = "multiverse-agent.service";

/// The targets of a unit's `WantedBy=` lines.
pub(crate) fn wanted_by(unit: &str) -> Vec<String> {
    let mut in_install = false;
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_install = line == "[Install]";
        } else if in_install {
            if let Some(v) = line.strip_prefix("WantedBy=") {
                out.extend(v.split_whitespace().map(str::to_string));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_unit_is_enabled_where_it_says() {
        assert!(!wanted_by(crate::SEED_UNIT).is_empty());
        assert_eq!(
            wanted_by("[Unit]\nWantedBy=no\n[Install]\nWantedBy=a.target b.target\n"),
            ["a.target", "b.target"]
        );
    }

    #[test]
    fn only_a_cloud_kernel_image_gets_the_guest_initramfs_hook() {
        let mut o = BuildOptions::new(crate::Os::Debian, Path::new("/i"));
        let hook_copied = |o: &BuildOptions| {
            mmdebstrap_step(o, Path::new("/s"), Path::new("/r"))
                .argv
                .iter()
                .any(|a| {
                    a == "--essential-hook=copy-in /s/hooks/multiverse /etc/initramfs-tools/hooks/"
                })
        };
        assert!(hook_copied(&o));
        o.kernel = Kernel::Generic;
        assert!(!hook_copied(&o));
    }

    /// The hook, run by `sh` on an initramfs tree shaped like bookworm's: udev, its scripts and
    /// dmsetup go; `blkid`, `kmod` and the other scripts stay.
    #[test]
    fn the_initramfs_hook_removes_udev_and_keeps_blkid() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("dest");
        let files = [
            "scripts/init-top/udev",
            "scripts/init-bottom/udev",
            "scripts/init-top/keymap",
            "scripts/init-top/blacklist",
            "scripts/local-premount/resume",
            "scripts/local",
            "usr/lib/systemd/systemd-udevd",
            "usr/bin/udevadm",
            "usr/lib/udev/rules.d/50-udev-default.rules",
            "usr/sbin/dmsetup",
            "usr/sbin/blkid",
            "usr/bin/kmod",
        ];
        for f in files {
            put(&dest, f, "x", 0o755).unwrap();
        }
        let hook = d.path().join("hook");
        std::fs::write(&hook, INITRAMFS_HOOK).unwrap();
        let prereqs = std::process::Command::new("sh")
            .arg(&hook)
            .arg("prereqs")
            .env("DESTDIR", &dest)
            .output()
            .unwrap();
        assert!(prereqs.status.success());
        assert!(
            dest.join("usr/bin/udevadm").exists(),
            "prereqs must not act"
        );
        let st = std::process::Command::new("sh")
            .arg(&hook)
            .env("DESTDIR", &dest)
            .status()
            .unwrap();
        assert!(st.success());
        let left: Vec<&str> = files
            .iter()
            .copied()
            .filter(|f| dest.join(f).exists())
            .collect();
        assert_eq!(
            left,
            [
                "scripts/init-top/blacklist",
                "scripts/local",
                "usr/sbin/blkid",
                "usr/bin/kmod"
            ]
        );
    }

    #[test]
    fn security_suite_is_the_sibling_of_a_debian_mirror() {
        let o = BuildOptions::new(crate::Os::Debian, Path::new("/i"));
        assert_eq!(
            sources(&o),
            [
                "deb http://deb.debian.org/debian bookworm main",
                "deb http://deb.debian.org/debian bookworm-updates main",
                "deb http://deb.debian.org/debian-security bookworm-security main"
            ]
        );
    }
}
