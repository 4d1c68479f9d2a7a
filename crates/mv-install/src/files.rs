//! The files the installer writes into the new system, rendered as text from the checked answers
//! and the disk's identifiers. Pure: nothing here touches a disk, so golden tests pin every file.
//!
//! Main entry: [`target_files`]. The lockdown (which units are disabled) is [`DISABLED_UNITS`].

use crate::answers::Checked;
use std::path::PathBuf;

/// The identifiers the installer gives the new disk (derived from the install id, so a rerun
/// after a crash makes the same ones).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "test-hooks"), allow(unreachable_pub))] // `golden` re-exports it
pub struct DiskIds {
    /// GPT disk GUID.
    pub label_id: String,
    /// ESP partition GUID.
    pub esp_part: String,
    /// /boot partition GUID.
    pub boot_part: String,
    /// LUKS partition GUID.
    pub luks_part: String,
    /// The LUKS header UUID.
    pub luks_uuid: String,
    /// FAT volume id of the ESP (8 hex digits).
    pub esp_volid: String,
    /// ext4 UUID of /boot.
    pub boot_fs: String,
    /// ext4 UUID of /.
    pub root_fs: String,
}

/// The device-mapper name of the opened root (as in /etc/crypttab and guard-boot.conf).
pub(crate) const MAPPER_NAME: &str = "cryptroot";

/// The FAT label of the token's file system.
pub(crate) const TOKEN_LABEL: &str = "MVTOKEN";

/// The file holding the hidden key on the token.
pub(crate) const TOKEN_IMAGE: &str = "multiverse.png";

/// Units a locked-down host never starts at boot (unless the answer file keeps a service).
/// `ssh` appears under both of Debian's names.
pub(crate) const DISABLED_UNITS: &[(&str, &str)] = &[
    ("ssh", "ssh.service"),
    ("ssh", "sshd.service"),
    ("", "networking.service"),
    ("", "multiverse-seed.service"),
    ("", "multiverse-ssh-relay.service"),
    ("", "dnsmasq.service"),
    ("", "tor.service"),
];

/// The kernel command line the host boots with: the IOMMU on, freed memory zeroed (what the
/// kill switch's memory wipe relies on), the console where the answer file put it.
pub(crate) fn kernel_cmdline(a: &Checked, intel: bool) -> String {
    let mut v: Vec<&str> = vec![
        if intel {
            "intel_iommu=on"
        } else {
            "amd_iommu=on"
        },
        "iommu=pt",
        "init_on_free=1",
        "page_poison=1",
    ];
    if !a.passthrough.is_empty() || a.uplink.is_some() {
        v.push("vfio-pci.disable_vga=1");
    }
    let mut s = v.join(" ");
    if let Some(c) = &a.console {
        s.push_str(&format!(" console=tty0 console={c}"));
    }
    s
}

/// Every file of the new system the installer writes: (path under the target root, contents, mode).
#[cfg_attr(not(feature = "test-hooks"), allow(unreachable_pub))] // `golden` re-exports it
pub fn target_files(a: &Checked, ids: &DiskIds, intel: bool) -> Vec<(PathBuf, String, u32)> {
    let host = &a.hostname;
    let mut out: Vec<(PathBuf, String, u32)> = Vec::new();
    let mut put = |p: &str, s: String, mode: u32| out.push((PathBuf::from(p), s, mode));
    put("etc/hostname", format!("{host}\n"), 0o644);
    put(
        "etc/hosts",
        format!(
            "127.0.0.1\tlocalhost\n127.0.1.1\t{host}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        ),
        0o644,
    );
    put(
        "etc/fstab",
        format!(
            "# Written by `multiverse install`.\n\
             UUID={root}\t/\text4\terrors=remount-ro\t0\t1\n\
             UUID={boot}\t/boot\text4\tdefaults,nodev,nosuid\t0\t2\n\
             UUID={esp}\t/boot/efi\tvfat\tumask=0077,nodev,nosuid,noexec\t0\t2\n",
            root = ids.root_fs,
            boot = ids.boot_fs,
            esp = format_volid(&ids.esp_volid),
        ),
        0o644,
    );
    put(
        "etc/crypttab",
        format!(
            "# Written by `multiverse install`: the token's hidden key opens it at boot\n\
             # (/etc/multiverse/guard-boot.conf); this line is the passphrase fallback.\n\
             {MAPPER_NAME}\tUUID={}\tnone\tluks,discard\n",
            ids.luks_uuid
        ),
        0o644,
    );
    put(
        "etc/multiverse/guard-boot.conf",
        format!(
            "# Read by the initramfs script multiverse-guard (written by `multiverse install`).\n\
             MV_LUKS_DEVICE=/dev/disk/by-uuid/{}\n\
             MV_MAPPER_NAME={MAPPER_NAME}\n\
             MV_TOKEN=/dev/disk/by-label/{TOKEN_LABEL}\n\
             MV_KDF_MEMORY={}\n\
             MV_TOKEN_WAIT={}\n",
            ids.luks_uuid,
            a.kdf_memory_kib,
            if a.token.is_some() { 30 } else { 0 }
        ),
        0o644,
    );
    put(
        "etc/default/keyboard",
        format!(
            "XKBMODEL=\"pc105\"\nXKBLAYOUT=\"{}\"\nXKBVARIANT=\"\"\nXKBOPTIONS=\"\"\nBACKSPACE=\"guess\"\n",
            a.keymap
        ),
        0o644,
    );
    put("etc/timezone", format!("{}\n", a.timezone), 0o644);
    put(
        "etc/initramfs-tools/conf.d/multiverse.conf",
        "# Written by `multiverse install`, which runs on the host's own hardware: the drivers loaded\n\
         # now (its disk, dm-crypt, USB) go in, and the token hook adds vfat and usb-storage. The\n\
         # image's virtio-only list would not boot a real host; `most` is slow to build and boot.\n\
         MODULES=dep\n"
            .to_string(),
        0o644,
    );
    put(
        "etc/cryptsetup-initramfs/conf-hook",
        "# Written by `multiverse install`.\nCRYPTSETUP=y\n".to_string(),
        0o644,
    );
    put(
        "etc/initramfs-tools/hooks/multiverse-guard",
        include_str!("../../../contrib/initramfs-tools/hooks/multiverse-guard").to_string(),
        0o755,
    );
    put(
        "etc/initramfs-tools/scripts/local-top/multiverse-guard",
        include_str!("../../../contrib/initramfs-tools/scripts/local-top/multiverse-guard")
            .to_string(),
        0o755,
    );
    let serial = a.console.is_some();
    put(
        "etc/default/grub.d/multiverse.cfg",
        format!(
            "# Written by `multiverse install`.\n\
             GRUB_CMDLINE_LINUX=\"{}\"\n\
             GRUB_CMDLINE_LINUX_DEFAULT=\"\"\n\
             GRUB_TIMEOUT=1\n\
             GRUB_DISABLE_OS_PROBER=true\n{}",
            kernel_cmdline(a, intel),
            if serial {
                "GRUB_TERMINAL=\"console serial\"\nGRUB_SERIAL_COMMAND=\"serial --speed=115200\"\n"
            } else {
                ""
            }
        ),
        0o644,
    );
    put(
        "etc/security/limits.d/multiverse-kvm.conf",
        "# Written by `multiverse install`: QEMU with passed-through devices locks guest memory.\n\
         @kvm\tsoft\tmemlock\tunlimited\n@kvm\thard\tmemlock\tunlimited\n\
         @libvirt-qemu\tsoft\tmemlock\tunlimited\n@libvirt-qemu\thard\tmemlock\tunlimited\n"
            .to_string(),
        0o644,
    );
    put(
        &format!("etc/udev/rules.d/{}", mv_host::HOST_RULES_FILE),
        mv_host::host_rules("kvm"),
        0o644,
    );
    let mut ids_vfio: Vec<String> = Vec::new();
    ids_vfio.extend(a.uplink.iter().cloned());
    ids_vfio.extend(a.passthrough.iter().cloned());
    if !ids_vfio.is_empty() {
        put(
            "etc/modules-load.d/multiverse-vfio.conf",
            "# Written by `multiverse install`.\nvfio\nvfio_iommu_type1\nvfio_pci\n".to_string(),
            0o644,
        );
    }
    put(
        "etc/sysctl.d/60-multiverse-host.conf",
        "# Written by `multiverse install`: a locked-down host forwards nothing and answers\n\
         # nothing on machine networks (the bridges carry no address either).\n\
         net.ipv4.ip_forward=0\nnet.ipv6.conf.all.forwarding=0\n\
         net.ipv6.conf.default.accept_ra=0\nnet.ipv6.conf.all.accept_ra=0\n\
         net.ipv6.conf.default.autoconf=0\nnet.ipv6.conf.all.autoconf=0\n\
         kernel.sysrq=1\n"
            .to_string(),
        0o644,
    );
    put(
        "etc/network/interfaces",
        "# Written by `multiverse install`: the host has no address on any network; only lo.\n\
         auto lo\niface lo inet loopback\n"
            .to_string(),
        0o644,
    );
    out
}

/// `ABCD1234` → `ABCD-1234`, as blkid prints a FAT volume id.
pub(crate) fn format_volid(v: &str) -> String {
    let up = v.to_ascii_uppercase();
    if up.len() == 8 {
        format!("{}-{}", &up[..4], &up[4..])
    } else {
        up
    }
}
