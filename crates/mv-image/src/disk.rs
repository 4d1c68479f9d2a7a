//! The disk, from a root folder to a bootable raw file, with nothing mounted and no loop device:
//!
//! ```text
//! sector 0        MBR: GRUB's boot.img (first 440 bytes), disk id, one partition (bootable)
//! sectors 1..2047 GRUB's i386-pc core.img (biosdisk, part_msdos, ext2, normal, linux, …),
//!                 its prefix (hd0,msdos1)/boot/grub
//! 1 MiB .. end    partition 1: ext4 (label mvroot) made by `mke2fs -d ROOT` as a separate file
//!                 and copied in by `dd conv=notrunc,sparse`
//! ```
//!
//! SeaBIOS runs boot.img, which loads core.img from sector 1 (its default: no `grub-bios-setup`
//! is needed, because grub-mkimage already writes core.img's own sector count into its first
//! sector); core.img reads `/boot/grub/grub.cfg` from the ext4 root, which loads `/vmlinuz` and
//! `/initrd.img`. Debian maintains those two symlinks on every kernel install or removal, so a
//! guest upgrades its own kernel with apt and nothing else. The boot loader never needs to be
//! reinstalled: core.img only depends on the partition layout.
//!
//! What this is not: a UEFI boot path (the domains that boot base images use SeaBIOS; OVMF is for
//! the controller), nor a partitioner for anything but this one layout.

use crate::Step;
use std::path::Path;

/// Bytes per sector.
pub(crate) const SECTOR: u64 = 512;
/// First sector of the root partition (1 MiB).
pub(crate) const ROOT_START: u64 = 2048;
/// The filesystem label of the root partition.
pub(crate) const ROOT_LABEL: &str = "mvroot";
/// Where GRUB's i386-pc files live on the build host.
pub(crate) const GRUB_I386_PC: &str = "/usr/lib/grub/i386-pc";
/// Modules built into core.img: everything grub.cfg uses, so nothing is loaded from the root.
pub(crate) const GRUB_MODULES: &[&str] = &[
    "biosdisk",
    "part_msdos",
    "ext2",
    "normal",
    "configfile",
    "linux",
    "linux16",
    "boot",
    "echo",
    "test",
    "serial",
    "terminal",
];
/// GRUB's prefix: where core.img looks for grub.cfg.
pub(crate) const GRUB_PREFIX: &str = "(hd0,msdos1)/boot/grub";

/// `sfdisk` input: a DOS label with disk id `disk_id` and one bootable Linux partition from 1 MiB
/// to the end.
pub(crate) fn sfdisk_script(disk_id: u32) -> String {
    format!(
        "label: dos\nlabel-id: 0x{disk_id:08x}\nunit: sectors\n\nstart={ROOT_START}, type=83, bootable\n"
    )
}

/// The kernel's `root=` for partition 1 of a DOS disk with id `disk_id`. The kernel resolves
/// `PARTUUID=` itself (no initramfs or udev needed), so no `/dev/vda1` name is waited for.
pub(crate) fn root_partuuid(disk_id: u32) -> String {
    format!("PARTUUID={disk_id:08x}-01")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The commands that turn `rootfs` into `raw` (a file already `size` bytes long, sparse):
/// mke2fs into `root_img`, sfdisk, dd of the filesystem, grub-mkimage, dd of boot.img and
/// core.img. `fs_uuid` is the ext4 UUID.
pub(crate) fn assemble_steps(
    rootfs: &Path,
    root_img: &Path,
    raw: &Path,
    core_img: &Path,
    size: u64,
    disk_id: u32,
    fs_uuid: &str,
) -> Vec<Step> {
    let fs_kib = (size - ROOT_START * SECTOR) / 1024;
    vec![
        Step::new(
            "mke2fs (root filesystem from the folder)",
            [
                "mke2fs",
                "-q",
                "-F",
                "-t",
                "ext4",
                // GRUB 2.06 cannot read ext4 with these (newer e2fsprogs enable them).
                "-O",
                "^metadata_csum_seed,^orphan_file",
                "-L",
                ROOT_LABEL,
                "-U",
                fs_uuid,
                "-E",
                "root_owner=0:0",
                "-d",
                &s(rootfs),
                &s(root_img),
                &format!("{fs_kib}k"),
            ],
        ),
        Step::new(
            "sfdisk (partition table)",
            [
                "sfdisk",
                "--quiet",
                "--no-reread",
                "--no-tell-kernel",
                &s(raw),
            ],
        )
        .stdin(sfdisk_script(disk_id)),
        Step::new(
            "dd (root filesystem into the disk)",
            [
                "dd",
                &format!("if={}", s(root_img)),
                &format!("of={}", s(raw)),
                "bs=1M",
                &format!("seek={}", ROOT_START * SECTOR / (1 << 20)),
                "conv=notrunc,sparse",
                "status=none",
            ],
        ),
        Step::new("grub-mkimage (boot loader core)", {
            let mut v = vec![
                "grub-mkimage".to_string(),
                "-O".into(),
                "i386-pc".into(),
                "-d".into(),
                GRUB_I386_PC.into(),
                "-o".into(),
                s(core_img),
                "-p".into(),
                GRUB_PREFIX.into(),
            ];
            v.extend(GRUB_MODULES.iter().map(|m| m.to_string()));
            v
        }),
        Step::new(
            "dd (boot.img into the MBR)",
            [
                "dd",
                &format!("if={GRUB_I386_PC}/boot.img"),
                &format!("of={}", s(raw)),
                "bs=440",
                "count=1",
                "conv=notrunc",
                "status=none",
            ],
        ),
        Step::new(
            "dd (core.img after the MBR)",
            [
                "dd",
                &format!("if={}", s(core_img)),
                &format!("of={}", s(raw)),
                "bs=512",
                "seek=1",
                "conv=notrunc",
                "status=none",
            ],
        ),
    ]
}

/// `grub.cfg` for the root filesystem: no menu, no timeout, straight into the kernel.
///
/// The kernel is loaded with `linux16`/`initrd16` (the 16-bit boot protocol), not `linux`. With
/// `linux` (the 32-bit protocol) GRUB reserves the kernel's whole `init_size` (54 MB for Debian's
/// 6.1 cloud kernel) at its preferred address, finds it taken by its own heap, loads the file
/// elsewhere and, at `boot`, moves all 54 MB with one `rep movsb`: under TCG that is one emulated
/// byte at a time, 2.9 s of every boot. `linux16` places the file at 1 MiB, where the kernel's own
/// decompressor moves only the compressed image, 8 bytes at a time. Both protocols are the
/// kernel's documented boot protocol (Documentation/arch/x86/boot.rst); on KVM either copy is
/// native and the choice costs nothing.
pub(crate) fn grub_cfg(kernel: &str, initrd: Option<&str>, cmdline: &str) -> String {
    let mut out = String::from(
        "# Multiverse base image: read by GRUB's core.img (in the MBR gap) from the root filesystem.\n\
         # The kernel and initrd are the symlinks the distribution keeps pointing at the newest kernel,\n\
         # so kernel upgrades inside the guest need no boot loader update. Edit the command line here.\n\
         # linux16/initrd16 (the 16-bit boot protocol) spare GRUB a 54 MB byte-by-byte copy at boot,\n\
         # seconds under emulation (docs/images.md, \"Boot chain\").\n\
         set timeout=0\n",
    );
    out.push_str(&format!("linux16 {kernel} {cmdline}\n"));
    if let Some(i) = initrd {
        out.push_str(&format!("initrd16 {i}\n"));
    }
    out.push_str("boot\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sfdisk_script_names_the_disk_id_and_one_partition() {
        assert_eq!(
            sfdisk_script(0x1234abcd),
            "label: dos\nlabel-id: 0x1234abcd\nunit: sectors\n\nstart=2048, type=83, bootable\n"
        );
        assert_eq!(root_partuuid(0x1234abcd), "PARTUUID=1234abcd-01");
    }

    #[test]
    fn grub_cfg_boots_through_the_16_bit_protocol_whose_commands_core_img_holds() {
        let cfg = grub_cfg("/vmlinuz", Some("/initrd.img"), "root=PARTUUID=1-01 quiet");
        let commands: Vec<&str> = cfg
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        assert_eq!(commands, ["set", "linux16", "initrd16", "boot"]);
        assert!(cfg.contains("linux16 /vmlinuz root=PARTUUID=1-01 quiet\n"));
        // core.img embeds every module grub.cfg needs: nothing is loaded from the root, which
        // holds no GRUB modules.
        assert!(GRUB_MODULES.contains(&"linux16"));
        let without_initrd = grub_cfg("/vmlinuz", None, "ro");
        assert!(!without_initrd.lines().any(|l| l.starts_with("initrd")));
    }
}
