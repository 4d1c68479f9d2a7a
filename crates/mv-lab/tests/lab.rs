//! The lab, for real: two boots under TCG (about a minute each here).
//!
//! 1. The lab image with a blank disk, a second blank disk, the USB token, a vIOMMU, an extra
//!    NIC and a shared folder: the guest sees every device; LUKS and device-mapper work on the
//!    blank disk; the shared folder is readable; QMP `device_del` makes the token vanish in the
//!    guest; a memory dump finds a marker written into the guest's RAM. Inside the guest, the
//!    second disk gets a GPT with an ESP holding systemd-boot and the lab kernel (what the
//!    installer will do).
//! 2. That disk under OVMF (UEFI), with the lab root attached as a throw-away disk: the firmware
//!    boots systemd-boot, the kernel finds its root, and the shell answers.
//!
//! Timings (boot to shell, command round trip) are printed for docs/lab.md.

use mv_lab::{file_contains, Boot, Disk, Lab, LabSpec};
use std::path::Path;
use std::time::{Duration, Instant};

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[test]
fn the_lab_boots_drives_its_devices_and_boots_a_uefi_disk_it_made() {
    let t0 = Instant::now();
    let image = mv_lab::lab_image().unwrap();
    eprintln!(
        "lab image ready in {:.1} s: {}",
        secs(t0.elapsed()),
        image.dir.display()
    );

    let work = tempfile::tempdir().unwrap();
    let shared = work.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("hello.txt"), "hello from the host\n").unwrap();
    // The token: 16 MiB, with a recognisable first sector.
    let token = work.path().join("token.img");
    let mut bytes = vec![0u8; 16 << 20];
    bytes[..12].copy_from_slice(b"MVLAB-TOKEN\n");
    std::fs::write(&token, &bytes).unwrap();

    let spec = LabSpec {
        iommu: true,
        nic: true,
        dir: Some(work.path().join("lab1")),
        ..LabSpec::default()
    }
    .blank_disk(256 << 20)
    .blank_disk(256 << 20)
    .token(&token)
    .share(&shared);
    let mut lab = Lab::boot(spec).unwrap();
    let boot = lab.boot_time().unwrap();
    eprintln!("boot to shell: {:.1} s", secs(boot));

    eprintln!(
        "{}",
        lab.run("systemd-analyze; systemd-analyze blame | head -n 12")
            .unwrap()
            .stdout
    );

    // Round trip of a trivial command.
    let n = 10;
    let t = Instant::now();
    for _ in 0..n {
        assert_eq!(lab.run("true").unwrap().status, 0);
    }
    eprintln!(
        "command round trip: {:.0} ms",
        secs(t.elapsed()) * 1000.0 / n as f64
    );

    // Output and exit status, stderr merged, multi-line commands, a syntax error.
    let out = lab.run("echo out; echo err >&2\nexit 3").unwrap();
    assert_eq!(out.status, 3);
    assert_eq!(out.stdout, "out\nerr\n");
    assert_ne!(lab.run("if then fi (").unwrap().status, 0);
    let long = "x".repeat(5000);
    assert_eq!(
        lab.run_ok(&format!("v={long}; echo ${{#v}}")).unwrap(),
        "5000\n"
    );

    // Devices: the blank disks, the token (as sda over USB), the NIC, the IOMMU.
    let lsblk = lab.run_ok("lsblk -dno NAME,SIZE,TRAN").unwrap();
    eprintln!("lsblk:\n{lsblk}");
    assert!(lsblk.contains("vdb") && lsblk.contains("vdc"), "{lsblk}");
    assert!(
        lsblk
            .lines()
            .any(|l| l.starts_with("sda") && l.contains("usb")),
        "{lsblk}"
    );
    assert_eq!(lab.run_ok("head -c 11 /dev/sda").unwrap(), "MVLAB-TOKEN");
    assert!(lab.run_ok("lsusb").unwrap().contains("QEMU"));
    assert!(lab.run_ok("lspci").unwrap().contains("82574L"));
    let groups: usize = lab
        .run_ok("ls /sys/kernel/iommu_groups | wc -l")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(groups > 0, "no IOMMU groups");

    // The shared folder.
    assert_eq!(
        lab.run_ok("cat /mnt/host/hello.txt").unwrap(),
        "hello from the host\n"
    );

    // LUKS and device-mapper on the blank disk.
    let luks = lab
        .run_ok(
            "set -e
             printf lab-secret >/tmp/key
             cryptsetup luksFormat --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file /tmp/key /dev/vdb
             cryptsetup open --key-file /tmp/key /dev/vdb labtest
             dmsetup info labtest
             cryptsetup luksSuspend labtest
             dmsetup info labtest",
        )
        .unwrap();
    let states: Vec<&str> = luks
        .lines()
        .filter_map(|l| l.strip_prefix("State:"))
        .map(str::trim)
        .collect();
    assert_eq!(states, ["ACTIVE", "SUSPENDED"], "{luks}");

    // The token removed through QMP vanishes in the guest, with a udev remove event.
    lab.run_ok("udevadm monitor --udev --subsystem-match=block >/tmp/udev.log 2>&1 & sleep 1")
        .unwrap();
    let pulled = lab.remove_token().unwrap();
    let deleted = lab
        .wait_device_deleted(mv_lab::TOKEN_ID, Duration::from_secs(30))
        .unwrap();
    eprintln!(
        "DEVICE_DELETED {:.0} ms after device_del",
        secs(deleted.at.duration_since(pulled)) * 1000.0
    );
    let gone = lab
        .run_ok(
            "for i in $(seq 100); do [ -e /sys/block/sda ] || break; sleep 0.1; done
             [ ! -e /sys/block/sda ] && echo gone; sleep 1; grep -c 'remove.*sda' /tmp/udev.log",
        )
        .unwrap();
    assert!(gone.starts_with("gone\n"), "{gone}");
    eprintln!(
        "token gone in the guest {:.1} s after device_del",
        secs(pulled.elapsed())
    );

    // A marker computed in the guest (the typed text never holds it) is in its memory dump.
    lab.run_ok("printf 'MVLAB-%s-MEMORY' $((21000 + 345)) >/dev/shm/marker")
        .unwrap();
    let dump = work.path().join("memory.elf");
    let t = Instant::now();
    lab.dump_memory(&dump).unwrap();
    eprintln!("dump-guest-memory (1 GiB): {:.1} s", secs(t.elapsed()));
    assert!(file_contains(&dump, b"MVLAB-21345-MEMORY").unwrap());
    assert!(!file_contains(&dump, b"MVLAB-21346-MEMORY").unwrap());
    std::fs::remove_file(&dump).unwrap();

    // An ESP with systemd-boot and the lab's kernel on the second disk, made in the guest.
    lab.run_ok(
        "set -e
         sfdisk -q /dev/vdc <<'EOF'
label: gpt
start=2048, size=200000, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
EOF
         udevadm settle
         mkfs.vfat -F 32 -n ESP /dev/vdc1 >/dev/null
         mkdir -p /mnt/esp
         mount /dev/vdc1 /mnt/esp
         mkdir -p /mnt/esp/EFI/BOOT /mnt/esp/loader/entries
         cp /usr/lib/systemd/boot/efi/systemd-bootx64.efi /mnt/esp/EFI/BOOT/BOOTX64.EFI
         cp /boot/vmlinuz-* /mnt/esp/vmlinuz
         cp /boot/initrd.img-* /mnt/esp/initrd.img
         printf 'default lab.conf\\ntimeout 0\\n' >/mnt/esp/loader/loader.conf
         printf 'title lab\\nlinux /vmlinuz\\ninitrd /initrd.img\\noptions %s\\n' \"$(sed 's/ quiet//' /proc/cmdline)\" >/mnt/esp/loader/entries/lab.conf
         umount /mnt/esp
         sync",
    )
    .unwrap();
    let esp_disk = lab.disk(1).to_path_buf();
    let pid = lab.pid();
    lab.power_off().unwrap();
    drop(lab);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU {pid} still runs"
    );

    // Boot that disk under OVMF, the lab root attached as a throw-away second disk.
    let spec = LabSpec {
        boot: Boot::Uefi { disk: esp_disk },
        disks: vec![Disk::File {
            path: image.root.clone(),
            snapshot: true,
        }],
        dir: Some(work.path().join("lab2")),
        ..LabSpec::default()
    };
    let mut lab = Lab::boot(spec).unwrap();
    // Nothing is typed before the kernel runs: firmware and boot loader would take keys as a
    // menu. (The entry's command line has no `quiet`, so the kernel says when it starts.)
    lab.wait_for("Linux version", Duration::from_secs(300))
        .unwrap();
    lab.attach_shell(Duration::from_secs(60)).unwrap();
    eprintln!(
        "UEFI (OVMF, systemd-boot) to shell: {:.1} s",
        secs(lab.boot_time().unwrap())
    );
    assert_eq!(
        lab.run_ok("[ -d /sys/firmware/efi ] && echo uefi").unwrap(),
        "uefi\n"
    );
    let pid = lab.pid();
    lab.power_off().unwrap();
    drop(lab);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU {pid} still runs"
    );
}
