//! `multiverse install` for real, in the lab VM (`mv-lab`): this machine has no device-mapper, no
//! USB and no initramfs; the lab's Debian guest has all three.
//!
//! One test, because every boot costs about a minute under TCG:
//! 1. The lab boots with a blank 6 GiB disk (vdb), the host image as the installation source
//!    (vdc, read-only: `multiverse image build debian --name host --kernel generic --include …`,
//!    cached in the tests' cache folder), a blank USB stick as the token, a vIOMMU and an extra
//!    NIC; the answer file, the passphrase and the binaries come in over the shared folder.
//! 2. `multiverse install --answers` runs unattended; its result is checked in the lab
//!    (partition table, LUKS keyslots 0 and 1 opening with the identity's key and the
//!    passphrase, the token's FAT holding the image), and a second run changes nothing.
//! 3. The installed disk boots under OVMF with the token: the initramfs asks for the image
//!    passphrase on the console, reveals the key, opens LUKS and reaches a login prompt; root
//!    logs in with the identity's password; `multiverse host check` runs, nothing listens
//!    (`ss -tlnup`), and no interface but lo has an address.
//! 4. Without the token, the same disk falls back to cryptsetup's passphrase prompt and boots.

use mv_lab::{Boot, Disk, Lab, LabSpec, UsbStick};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MV: &str = env!("CARGO_BIN_EXE_multiverse");
const PASSPHRASE: &str = "lab passphrase 1";
const HOST_PACKAGES: &str = "cryptsetup,cryptsetup-initramfs,grub-efi-amd64-bin,grub2-common,dosfstools";

fn cache_dir() -> PathBuf {
    mv_lab::image::test_cache_dir()
}

/// The host image the installer copies, built once per cache (with `--if-needed`).
fn cached_host_image() -> PathBuf {
    for tool in ["mmdebstrap", "mke2fs", "sfdisk", "qemu-img", "flock"] {
        mv_testkit::require_tool(tool);
    }
    let cache = cache_dir();
    let tree = cache.join("host-tree");
    std::fs::create_dir_all(&tree).unwrap();
    let started = Instant::now();
    let out = Command::new("flock")
        .arg(cache.join(".image.lock"))
        .arg(MV)
        .arg("--root")
        .arg(&tree)
        .args([
            "image", "build", "debian", "--name", "host", "--kernel", "generic",
        ])
        .args(["--include", HOST_PACKAGES, "--if-needed"])
        .env(
            "MULTIVERSE_IMAGE_CACHE",
            mv_lab::image::package_cache(&cache),
        )
        .env_remove("MULTIVERSE_ROOT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "host image build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "host image ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    tree.join("images/host.qcow2")
}

/// The identity the install restores: fixed words, so the test knows the host's password.
fn words() -> String {
    let root = mv_identity::Root::from_bytes([7u8; 32]);
    root.mnemonic().expose().clone()
}

fn host_password() -> String {
    let root = mv_identity::Root::from_bytes([7u8; 32]);
    let name = mv_core::name::IdentityName::parse("lab.multiverse").unwrap();
    root.password(&name).expose().clone()
}

fn share_dir(dir: &Path) -> PathBuf {
    let share = dir.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let bin_dir = Path::new(MV).parent().unwrap();
    for b in ["multiverse", "multiverse-virt", "multiverse-agent"] {
        let src = bin_dir.join(b);
        if src.is_file() {
            std::fs::copy(&src, share.join(b)).unwrap();
        }
    }
    std::fs::write(share.join("pass"), format!("{PASSPHRASE}\n")).unwrap();
    std::fs::write(share.join("words"), words()).unwrap();
    std::fs::write(
        share.join("answers.toml"),
        "# The lab's unattended install.\n\
         disk = \"/dev/vdb\"\n\
         source = \"/dev/vdc\"\n\
         passphrase_file = \"/mnt/host/pass\"\n\
         words_file = \"/mnt/host/words\"\n\
         hostname = \"lab\"\n\
         timezone = \"UTC\"\n\
         token = \"/dev/sda\"\n\
         uplink = \"eth0\"\n\
         topology = \"lab\"\n\
         console = \"ttyS0\"\n\
         kdf_memory_kib = 8192\n\
         [luks]\npbkdf = \"pbkdf2\"\niterations = 1000\n",
    )
    .unwrap();
    share
}

fn lab_ok(lab: &Lab, cmd: &str) -> String {
    match lab.run(cmd) {
        Ok(o) if o.success() => o.stdout,
        Ok(o) => panic!("`{cmd}` failed ({}):\n{}", o.status, o.stdout),
        Err(e) => panic!("`{cmd}`: {e}"),
    }
}

/// Boots the installed disk and waits for the login prompt, typing `passphrase_at` the prompt
/// that contains `prompt`. Returns the seconds from power-on to the prompt and to login.
fn boot_installed(disk: &Path, dir: &Path, token: Option<&Path>, prompt: &str) -> (Lab, f64, f64) {
    let mut spec = LabSpec {
        boot: Boot::Uefi {
            disk: disk.to_path_buf(),
        },
        memory_mib: 1024,
        iommu: true,
        nic: true,
        dir: Some(dir.to_path_buf()),
        ..LabSpec::default()
    };
    if let Some(t) = token {
        spec.usb.push(UsbStick::token(t));
    }
    let started = Instant::now();
    let lab = Lab::boot(spec).expect("boot the installed disk");
    let at_prompt = lab
        .wait_for(prompt, Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("no `{prompt}` prompt: {e}"));
    let prompt_s = started.elapsed().as_secs_f64();
    assert!(!at_prompt.is_empty());
    std::thread::sleep(Duration::from_millis(500));
    lab.send(&format!("{PASSPHRASE}\n")).unwrap();
    lab.wait_for("login:", Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("no login prompt after unlocking: {e}"));
    let login_s = started.elapsed().as_secs_f64();
    (lab, prompt_s, login_s)
}

fn log_in(lab: &mut Lab) {
    lab.send("root\n").unwrap();
    lab.wait_for("Password:", Duration::from_secs(60)).unwrap();
    lab.send(&format!("{}\n", host_password())).unwrap();
    lab.attach_shell(Duration::from_secs(120))
        .expect("root's derived password logs in");
}

#[test]
fn unattended_install_in_the_lab_boots_with_the_token_and_with_the_passphrase() {
    for tool in ["qemu-system-x86_64", "mkfs.vfat"] {
        mv_testkit::require_tool(tool);
    }
    let host_image = cached_host_image();
    let dir = tempfile::Builder::new()
        .prefix("mv-install-lab.")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let share = share_dir(dir.path());
    let token = dir.path().join("token.img");
    std::fs::File::create(&token)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();

    // 1-2. Install.
    let lab_dir = dir.path().join("installer");
    let mut spec = LabSpec {
        memory_mib: 1536,
        iommu: true,
        nic: true,
        dir: Some(lab_dir.clone()),
        ..LabSpec::default()
    }
    .blank_disk(6 << 30)
    .token(&token)
    .share(&share);
    spec.disks.push(Disk::File {
        path: host_image.clone(),
        snapshot: true,
    });
    let mut lab = Lab::boot(spec).expect("boot the lab");
    let started = Instant::now();
    let out = lab
        .run_timeout(
            "/mnt/host/multiverse install --answers /mnt/host/answers.toml 2>&1",
            Duration::from_secs(45 * 60),
        )
        .expect("install runs");
    let install_s = started.elapsed().as_secs_f64();
    assert!(
        out.success(),
        "install failed ({}):\n{}",
        out.status,
        out.stdout
    );
    assert!(
        out.stdout.contains("installed lab on /dev/vdb"),
        "{}",
        out.stdout
    );
    eprintln!("install: {install_s:.0} s");
    let table = lab_ok(&lab, "sfdisk --dump /dev/vdb");
    for want in [
        "multiverse-esp",
        "multiverse-boot",
        "multiverse-root",
        "label: gpt",
    ] {
        assert!(table.contains(want), "{want}: {table}");
    }
    let dump = lab_ok(&lab, "cryptsetup luksDump /dev/vdb3");
    assert!(dump.contains("Version:       \t2"), "not LUKS2: {dump}");
    for slot in ["  0: luks2", "  1: luks2"] {
        assert!(dump.contains(slot), "keyslot `{slot}` missing: {dump}");
    }
    lab_ok(
        &lab,
        "tr -d '\\n' < /mnt/host/pass | cryptsetup open --test-passphrase --key-slot 1 --key-file - /dev/vdb3",
    );
    lab_ok(
        &lab,
        "mkdir -p /t && mount -o ro /dev/sda /t && ls /t/multiverse.png && umount /t",
    );
    // The identity's key in slot 0: revealed from the token's image with the passphrase.
    lab_ok(
        &lab,
        "mkdir -p /t && mount -o ro /dev/sda /t && /mnt/host/multiverse guard unlock --token-dir /t \
         --luks /dev/vdb3 --test --kdf-memory 8192 --passphrase-file /mnt/host/pass; r=$?; umount /t; exit $r",
    );
    // A second run on the installed disk changes nothing.
    let again = lab_ok(
        &lab,
        "/mnt/host/multiverse install --answers /mnt/host/answers.toml 2>&1",
    );
    assert!(again.contains("already installed"), "{again}");
    lab.power_off().unwrap();
    drop(lab);
    let disk = lab_dir.join("disk0.raw");

    // 3. Boot with the token: the hook asks for the image passphrase.
    let (mut lab, prompt_s, login_s) = boot_installed(
        &disk,
        &dir.path().join("boot1"),
        Some(&token),
        "Image passphrase",
    );
    eprintln!(
        "boot with token: passphrase prompt at {prompt_s:.0} s, login prompt at {login_s:.0} s"
    );
    log_in(&mut lab);
    let mounts = lab_ok(&lab, "findmnt -no SOURCE /");
    assert!(
        mounts.contains("/dev/mapper/cryptroot"),
        "root is not the LUKS volume: {mounts}"
    );
    let listening = lab_ok(&lab, "ss -H -tlnup");
    assert!(
        listening.trim().is_empty(),
        "something listens on the locked-down host:\n{listening}"
    );
    let addrs = lab_ok(&lab, "ip -o addr show | awk '$2 != \"lo\"'");
    assert!(
        addrs.trim().is_empty(),
        "an interface has an address:\n{addrs}"
    );
    let cmdline = lab_ok(&lab, "cat /proc/cmdline");
    assert!(cmdline.contains("init_on_free=1"), "{cmdline}");
    let check = lab.run("multiverse host check 2>&1").unwrap();
    eprintln!(
        "host check in the installed host ({}):\n{}",
        check.status, check.stdout
    );
    lab_ok(
        &lab,
        "test -s /var/multiverse/multiverse.toml && test -s /var/multiverse/identity/root.sealed",
    );
    lab.power_off().unwrap();
    drop(lab);

    // 4. Without the token: cryptsetup's own passphrase prompt.
    let (mut lab, prompt_s, login_s) = boot_installed(
        &disk,
        &dir.path().join("boot2"),
        None,
        "Please unlock disk cryptroot",
    );
    eprintln!("boot without token: prompt at {prompt_s:.0} s, login prompt at {login_s:.0} s");
    log_in(&mut lab);
    lab.power_off().unwrap();
}
