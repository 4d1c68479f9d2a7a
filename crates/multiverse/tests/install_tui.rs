//! The interactive installer (`multiverse install` without `--answers`) as a person uses it, in
//! tmux: the real binary proposes defaults from a fixture sysfs (`MULTIVERSE_INSTALL_SYS`), every
//! field is filled from the keyboard, and the answer file it writes equals, as TOML, the one a
//! person would write for an unattended install with the same choices. A short or mismatched
//! passphrase, an answer the machine check refuses, `Esc` and `Ctrl-C` write nothing.
#![allow(clippy::unwrap_used)]

mod common;

use common::{MV, SPEC_WORDS};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux(String);

impl Tmux {
    /// A tmux server of its own (`-L`), running `multiverse install` in a 120×40 window; the shell
    /// prints `exit=N` when it ends and keeps the window open.
    fn start(sys: &Path, out: &Path) -> Tmux {
        let t = Tmux(format!(
            "mv-install-tui-{}-{}",
            std::process::id(),
            out.parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .unwrap()
                .to_string_lossy()
        ));
        let script = format!(
            "env {}={} {MV} install --no-install --write-answers {}; echo exit=$?; sleep 600",
            "MULTIVERSE_INSTALL_SYS",
            sys.display(),
            out.display()
        );
        mv_testkit::run_ok(
            t.cmd()
                .args(["new-session", "-d", "-x", "120", "-y", "40", "-s", "t"])
                .arg(script)
                .env_remove("TMUX"),
        );
        t.wait("the questions", |s| s.contains("Write answers"));
        t
    }
    fn cmd(&self) -> Command {
        let mut c = Command::new(mv_testkit::require_tool("tmux"));
        c.args(["-L", &self.0]);
        c
    }
    fn capture(&self) -> String {
        mv_testkit::run_ok(self.cmd().args(["capture-pane", "-p", "-t", "t"]))
    }
    /// Named keys (`Down`, `C-u`, `Enter`), one tmux key each.
    fn keys(&self, keys: &[&str]) {
        mv_testkit::run_ok(self.cmd().args(["send-keys", "-t", "t"]).args(keys));
    }
    /// Literal text.
    fn text(&self, s: &str) {
        mv_testkit::run_ok(self.cmd().args(["send-keys", "-t", "t", "-l", s]));
    }
    fn wait(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.capture();
            if f(&s) {
                return s;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    /// The row the cursor is on (the line starting with `> `).
    fn cursor_row(screen: &str) -> String {
        screen
            .lines()
            .find(|l| l.starts_with("> "))
            .unwrap_or_else(|| panic!("no cursor on the screen:\n{screen}"))
            .to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// A sysfs with one 8 GiB fixed disk `vdb`, a 1 GiB removable `sdb`, a NIC `eth0` at
/// 0000:00:03.0 and a GPU at 0000:00:04.0.
fn fixture_sys(root: &Path) -> PathBuf {
    let sys = root.join("sys");
    for (name, sectors, removable) in [("vdb", 16_777_216u64, "0"), ("sdb", 2_097_152, "1")] {
        let d = sys.join("class/block").join(name);
        std::fs::create_dir_all(d.join("device")).unwrap();
        std::fs::write(d.join("size"), format!("{sectors}\n")).unwrap();
        std::fs::write(d.join("removable"), format!("{removable}\n")).unwrap();
        std::fs::write(d.join("device/model"), "QEMU HARDDISK\n").unwrap();
    }
    for (addr, class) in [("0000:00:03.0", "0x020000"), ("0000:00:04.0", "0x030000")] {
        let d = sys.join("devices/pci0000:00").join(addr);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("class"), format!("{class}\n")).unwrap();
        std::fs::write(d.join("vendor"), "0x1af4\n").unwrap();
        std::fs::write(d.join("device"), "0x1050\n").unwrap();
        std::fs::create_dir_all(sys.join("bus/pci/devices")).unwrap();
        std::os::unix::fs::symlink(
            format!("../../../devices/pci0000:00/{addr}"),
            sys.join("bus/pci/devices").join(addr),
        )
        .unwrap();
    }
    std::fs::create_dir_all(sys.join("class/net/eth0")).unwrap();
    std::os::unix::fs::symlink(
        "../../../devices/pci0000:00/0000:00:03.0",
        sys.join("class/net/eth0/device"),
    )
    .unwrap();
    sys
}

/// A sparse 6 GiB target disk image.
fn sparse_disk(p: &Path) {
    std::fs::File::create(p).unwrap().set_len(6 << 30).unwrap();
}

fn toml_of(text: &str) -> toml::Table {
    text.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("not TOML ({e}):\n{text}"))
}

/// The files in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn every_field_typed_in_tmux_writes_the_unattended_answer_file() {
    let d = tempfile::tempdir().unwrap();
    let sys = fixture_sys(d.path());
    let disk = d.path().join("disk.img");
    sparse_disk(&disk);
    let source = d.path().join("host.img");
    std::fs::write(&source, b"a host image").unwrap();
    let token = d.path().join("token.img");
    std::fs::write(&token, vec![0u8; 4096]).unwrap();
    let words = d.path().join("words.txt");
    std::fs::write(&words, format!("{SPEC_WORDS}\n")).unwrap();
    let out_dir = d.path().join("answers");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("install.toml");
    let pass = "correct horse battery";

    let t = Tmux::start(&sys, &out);
    let first = t.capture();
    // Proposals from the fixture: the fixed disk, the removable token, the NIC, the GPU.
    assert!(Tmux::cursor_row(&first).contains("/dev/vdb"), "{first}");
    assert!(first.contains("8.0 GiB QEMU HARDDISK"), "{first}");
    assert!(first.contains("/dev/sdb"), "{first}");
    assert!(
        first.contains("eth0") && first.contains("0000:00:03.0"),
        "{first}"
    );
    assert!(first.contains("GPU 0000:00:04.0"), "{first}");
    assert!(first.contains("[x] star.router.multiverse"), "{first}");

    t.keys(&["C-u"]);
    t.text(&disk.display().to_string());
    t.keys(&["Down"]);
    t.text(&source.display().to_string());
    t.keys(&["Tab"]);
    t.text(pass);
    t.keys(&["Down"]);
    t.text(pass);
    t.keys(&["Down", "C-u"]);
    t.text("mvhost");
    t.keys(&["Down", "C-u"]);
    t.text("de");
    t.keys(&["Down", "C-u"]);
    t.text("Europe/Berlin");
    t.keys(&["Down", "C-u"]);
    t.text(&token.display().to_string());
    t.keys(&["Down"]); // uplink: the proposed eth0
    t.keys(&["Down"]);
    t.text("0000:00:04.0");
    t.keys(&["Down", "Right"]); // topology: lab
                                // Machines: keep all but the browser (the sixth).
    t.keys(&["Down", "Down", "Down", "Down", "Down", "Down", "Space"]);
    t.keys(&["Down", "Space"]); // services: ssh
    t.keys(&["Down"]);
    t.text(&words.display().to_string());
    t.keys(&["Down", "Right"]); // console: ttyS0
    t.keys(&["Down", "Right"]); // erase: yes
    t.keys(&["Down", "Right"]); // pbkdf: pbkdf2
    t.keys(&["Down"]);
    t.text("2000");
    t.keys(&["Down", "C-u"]);
    t.text("1024");
    let before = t.wait("the last answer", |s| {
        s.lines()
            .any(|l| l.starts_with("> KDF memory KiB") && l.ends_with(" 1024"))
    });
    assert!(
        !before.contains(pass),
        "the passphrase is on the screen:\n{before}"
    );
    assert!(before.contains(&"*".repeat(pass.len())), "{before}");
    assert!(before.contains("[ ] browser.app.multiverse"), "{before}");
    assert!(before.contains("[x] ssh"), "{before}");
    t.keys(&["Down", "Enter"]);
    let end = t.wait("the installer to exit", |s| s.contains("exit="));
    assert!(end.contains("exit=0"), "{end}");
    assert!(end.contains(&format!("wrote {}", out.display())), "{end}");

    let pp = out_dir.join("install.toml.passphrase");
    assert_eq!(
        listing(&out_dir),
        ["install.toml", "install.toml.passphrase"]
    );
    assert_eq!(std::fs::read_to_string(&pp).unwrap(), pass);
    assert_eq!(
        std::fs::metadata(&pp).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let expected = format!(
        r#"# The same choices, written by hand for `multiverse install --answers`.
disk = "{disk}"
source = "{source}"
passphrase_file = "{pp}"
hostname = "mvhost"
keymap = "de"
timezone = "Europe/Berlin"
token = "{token}"
uplink = "eth0"
passthrough = ["0000:00:04.0"]
topology = "lab"
machines = [
    "universe.router.multiverse",
    "galaxy.router.multiverse",
    "star.router.multiverse",
    "controller.multiverse",
    "mail.service.multiverse",
]
services = ["ssh"]
words_file = "{words}"
console = "ttyS0,115200"
erase = true
kdf_memory_kib = 1024

[luks]
pbkdf = "pbkdf2"
iterations = 2000
"#,
        disk = disk.display(),
        source = source.display(),
        pp = pp.display(),
        token = token.display(),
        words = words.display(),
    );
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(toml_of(&written), toml_of(&expected), "written:\n{written}");
    // And the unattended path accepts the hand-written file as it is.
    let hand = d.path().join("hand.toml");
    std::fs::write(&hand, &expected).unwrap();
    let sys_for_check = mv_install::System {
        sys,
        ..mv_install::System::default()
    };
    mv_install::Answers::load(&hand)
        .unwrap()
        .check(&sys_for_check)
        .unwrap();
}

#[test]
fn bad_passphrases_and_refused_answers_write_nothing_and_esc_quits() {
    let d = tempfile::tempdir().unwrap();
    let sys = fixture_sys(d.path());
    let source = d.path().join("host.img");
    std::fs::write(&source, b"a host image").unwrap();
    let out_dir = d.path().join("answers");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("install.toml");
    let missing = d.path().join("missing.img");

    let t = Tmux::start(&sys, &out);
    t.keys(&["C-u"]);
    t.text(&missing.display().to_string());
    t.keys(&["Down"]);
    t.text(&source.display().to_string());
    t.keys(&["Down"]);
    t.text("short");
    t.keys(&["Down"]);
    t.text("short");
    t.keys(&["End", "Enter"]);
    let s = t.wait("the short passphrase refused", |s| {
        s.contains("passphrase: at least 8 characters")
    });
    assert!(Tmux::cursor_row(&s).starts_with("> Passphrase  "), "{s}");
    assert!(listing(&out_dir).is_empty());

    t.keys(&["C-u"]);
    t.text("long enough 1");
    t.keys(&["Down", "C-u"]);
    t.text("long enough 2");
    t.keys(&["End", "Enter"]);
    let s = t.wait("the mismatch refused", |s| s.contains("do not match"));
    assert!(
        Tmux::cursor_row(&s).starts_with("> Passphrase again"),
        "{s}"
    );
    assert!(listing(&out_dir).is_empty());

    // Matching now; the machine check refuses the missing disk and names its line.
    t.keys(&["C-u"]);
    t.text("long enough 1");
    t.keys(&["End", "Enter"]);
    let want = format!("{}:3: disk: {}", out.display(), missing.display());
    let s = t.wait("the missing disk refused", |s| s.contains(&want));
    assert!(Tmux::cursor_row(&s).starts_with("> Disk"), "{s}");
    assert!(!s.contains("long enough"), "{s}");
    assert!(listing(&out_dir).is_empty(), "{:?}", listing(&out_dir));

    t.keys(&["Escape"]);
    let end = t.wait("the installer to exit", |s| s.contains("exit="));
    assert!(end.contains("exit=1"), "{end}");
    assert!(end.contains("cancelled, nothing written"), "{end}");
    assert!(listing(&out_dir).is_empty());
}

#[test]
fn ctrl_c_quits_without_writing() {
    let d = tempfile::tempdir().unwrap();
    let sys = fixture_sys(d.path());
    let out_dir = d.path().join("answers");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("install.toml");
    let t = Tmux::start(&sys, &out);
    t.keys(&["C-c"]);
    let end = t.wait("the installer to exit", |s| s.contains("exit="));
    assert!(end.contains("exit=1"), "{end}");
    assert!(end.contains("cancelled, nothing written"), "{end}");
    assert!(listing(&out_dir).is_empty());
}
