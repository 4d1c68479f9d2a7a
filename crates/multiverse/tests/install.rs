//! `multiverse install` on this machine: the answer file's checks (exit 2, `FILE:LINE`, the disk
//! untouched), `--dry-run`'s plan, and the refusal to erase a disk that holds a partition table.
//! The install itself needs device-mapper and runs in the lab VM (`tests/install_lab.rs`).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const MV: &str = env!("CARGO_BIN_EXE_multiverse");

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(6 << 30)
            .unwrap();
        std::fs::write(dir.path().join("pass"), "correct horse battery\n").unwrap();
        // A root file system stand-in: the checks only look for os-release.
        std::fs::create_dir_all(dir.path().join("src/etc")).unwrap();
        std::fs::write(dir.path().join("src/etc/os-release"), "ID=debian\n").unwrap();
        Setup { dir }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A valid answer file with `extra` lines appended (later keys of the same name are errors,
    /// so `extra` only adds fields).
    fn answers(&self, extra: &str) -> PathBuf {
        self.answers_with(&self.p("disk.img"), &self.p("pass"), extra)
    }

    fn answers_with(&self, disk: &Path, pass: &Path, extra: &str) -> PathBuf {
        let text = format!(
            "# test answers\ndisk = \"{}\"\nsource = \"{}\"\npassphrase_file = \"{}\"\nhostname = \"lab\"\n{extra}",
            disk.display(),
            self.p("src").display(),
            pass.display()
        );
        let path = self.p("answers.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn install(&self, answers: &Path, dry: bool) -> Output {
        let mut c = Command::new(MV);
        if dry {
            c.arg("--dry-run");
        }
        c.args(["install", "--answers"])
            .arg(answers)
            .arg("--state")
            .arg(self.p("state"))
            .arg("--mount-dir")
            .arg(self.p("mnt"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// What can change on a disk image: its length, its allocated blocks, and the bytes where a
/// partition table, a LUKS header or a file system would go (the first 4 MiB, the last 1 MiB).
fn disk_digest(p: &Path) -> String {
    use sha2::Digest;
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(p).unwrap();
    let mut f = std::fs::File::open(p).unwrap();
    let mut head = vec![0u8; 4 << 20];
    f.read_exact(&mut head).unwrap();
    let mut tail = vec![0u8; 1 << 20];
    f.seek(SeekFrom::End(-(1 << 20))).unwrap();
    f.read_exact(&mut tail).unwrap();
    let mut h = sha2::Sha256::new();
    h.update(&head);
    h.update(&tail);
    format!("{} {} {:x}", meta.len(), meta.blocks(), h.finalize())
}

/// Exit 2, one `answers.toml:LINE: ` error naming `field`, and the disk and the state untouched.
fn assert_refused(s: &Setup, answers: &Path, line: usize, field: &str) {
    let before = disk_digest(&s.p("disk.img"));
    let out = s.install(answers, false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let want = format!("{}:{line}: {field}", answers.display());
    assert!(err.contains(&want), "expected `{want}` in:\n{err}");
    assert_eq!(disk_digest(&s.p("disk.img")), before, "the disk changed");
    assert!(!s.p("state").exists(), "the installer wrote its state");
}

#[test]
fn bad_answer_files_are_one_line_with_file_and_line_and_touch_nothing() {
    let s = Setup::new();
    // A missing disk.
    let a = s.answers_with(&s.p("no-such-disk"), &s.p("pass"), "");
    assert_refused(&s, &a, 2, "disk: ");
    // A disk too small.
    let small = s.p("small.img");
    std::fs::File::create(&small)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let a = s.answers_with(&small, &s.p("pass"), "");
    assert_refused(&s, &a, 2, "disk: ");
    let err = String::from_utf8_lossy(&s.install(&a, false).stderr).to_string();
    assert!(err.contains("at least 4 GiB"), "{err}");
    // An unknown NIC.
    let a = s.answers("uplink = \"enp99s0\"\n");
    assert_refused(&s, &a, 6, "uplink: ");
    // A malformed passphrase file: two lines, too short, not UTF-8.
    for (bytes, what) in [
        (&b"first line\nsecond line\n"[..], "more than one line"),
        (&b"short\n"[..], "shorter than 8"),
        (&b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\n"[..], "not UTF-8"),
    ] {
        std::fs::write(s.p("badpass"), bytes).unwrap();
        let a = s.answers_with(&s.p("disk.img"), &s.p("badpass"), "");
        assert_refused(&s, &a, 4, "passphrase_file: ");
        let err = String::from_utf8_lossy(&s.install(&a, false).stderr).to_string();
        assert!(err.contains(what), "{what}: {err}");
        assert!(
            !err.contains("second line"),
            "the passphrase was printed: {err}"
        );
    }
    // An unknown field, a service the installer does not know, a machine not in the topology,
    // a time zone that does not exist.
    assert_refused(
        &s,
        &s.answers("colour = \"blue\"\n"),
        6,
        "unknown field `colour`",
    );
    assert_refused(&s, &s.answers("services = [\"telnet\"]\n"), 6, "services: ");
    assert_refused(&s, &s.answers("machines = [\"nosuch\"]\n"), 6, "machines: ");
    assert_refused(
        &s,
        &s.answers("timezone = \"Mars/Olympus\"\n"),
        6,
        "timezone: ",
    );
    // The source is the disk itself.
    let text = std::fs::read_to_string(s.answers("")).unwrap().replace(
        &format!("source = \"{}\"", s.p("src").display()),
        &format!("source = \"{}\"", s.p("disk.img").display()),
    );
    std::fs::write(s.p("answers.toml"), text).unwrap();
    assert_refused(&s, &s.p("answers.toml"), 3, "source: ");
}

#[test]
fn dry_run_prints_the_commands_of_a_blank_disk_and_no_secret() {
    let s = Setup::new();
    let a = s.answers("console = \"ttyS0\"\n[luks]\npbkdf = \"pbkdf2\"\niterations = 1000\n");
    let before = disk_digest(&s.p("disk.img"));
    let out = s.install(&a, true);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for want in [
        "run    wipefs --all --quiet",
        "label: gpt",
        "name=\"multiverse-root\"",
        "cryptsetup luksFormat --batch-mode --type luks2",
        "--key-slot 0 --key-file -",
        "cryptsetup luksAddKey --batch-mode --key-slot 1 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file {secret-fd} --new-keyfile -",
        "mkfs.ext4 -q -F -U",
        "/etc/crypttab",
        "grub-install --target=x86_64-efi",
        "update-initramfs",
        "remove ",
        "ssh.service",
    ] {
        assert!(text.contains(want), "`{want}` missing from the plan:\n{text}");
    }
    assert!(
        !text.contains("correct horse"),
        "the passphrase is in the plan"
    );
    assert!(text.contains("would run 10 steps"), "{text}");
    assert_eq!(
        disk_digest(&s.p("disk.img")),
        before,
        "dry-run changed the disk"
    );
    assert!(!s.p("state").exists(), "dry-run wrote the journal");
    // The uplink and a kept service change the plan: ssh stays enabled.
    let a = s.answers("services = [\"ssh\"]\n");
    let out = s.install(&a, true);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        !text.contains("ssh.service"),
        "ssh was disabled although kept:\n{text}"
    );
}

#[test]
fn a_disk_with_a_partition_table_is_not_erased_without_erase_true() {
    mv_testkit::require_tool("sfdisk");
    mv_testkit::require_tool("losetup");
    let s = Setup::new();
    let out = Command::new("sfdisk")
        .arg("--quiet")
        .arg(s.p("disk.img"))
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"label: gpt\n,100M\n,\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    let before = disk_digest(&s.p("disk.img"));
    let a = s.answers("");
    // A source that is no host system is refused before the disk is looked at.
    let out = s.install(&a, false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("lacks package cryptsetup") && err.contains("a kernel in /boot"),
        "{err}"
    );
    assert_eq!(disk_digest(&s.p("disk.img")), before, "the disk changed");
    // With what a host needs in the source, the partition table stops it.
    for (path, _) in mv_install::SOURCE_NEEDS {
        let p = s.p("src").join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }
    std::fs::create_dir_all(s.p("src/boot")).unwrap();
    std::fs::write(s.p("src/boot/vmlinuz-6.1.0-test"), "").unwrap();
    let out = s.install(&a, false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("already holds a partition table (gpt, 2 partitions)"),
        "{err}"
    );
    assert!(err.contains("erase = true"), "no hint: {err}");
    assert_eq!(disk_digest(&s.p("disk.img")), before, "the disk changed");
    // Nothing stays attached.
    let loops = Command::new("losetup")
        .arg("-j")
        .arg(s.p("disk.img"))
        .output()
        .unwrap();
    assert!(
        loops.stdout.is_empty(),
        "a loop device stayed: {}",
        String::from_utf8_lossy(&loops.stdout)
    );
}
