//! `multiverse guard` driven through the real binary: hide/reveal across image kinds, real LUKS2
//! headers with cryptsetup, and the watcher fed synthetic uevents through a unix socket and
//! through the kernel's own netlink path inside a private network namespace.
#![allow(clippy::unwrap_used)]

mod common;

use common::MV;
use mv_guard::Uevent;
use mv_guard::{synthetic_photo, Layout};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Cheap Argon2 for tests (the value must match between hide and reveal).
const KDF: &str = "64";

fn bin() -> Command {
    let mut c = Command::new(MV);
    // No session cache: identity commands here must not start an agent in the user's folder.
    c.env_remove("MULTIVERSE_PASSPHRASE")
        .env_remove("MULTIVERSE_ROOT")
        .env("MULTIVERSE_PASS_CACHE_TTL", "0");
    c
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pass"), "correct horse battery staple\n").unwrap();
        std::fs::write(dir.path().join("wrong"), "incorrect\n").unwrap();
        Env { dir }
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bin();
        c.arg("--root").arg(self.p("tree")).args(args);
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }
    /// Starts `guard watch --json` (after `--dry-run` when asked) reading uevents from the unix
    /// socket `sock`, with the fixture sysfs of `fixture_sys`.
    fn watch_unix(&self, sock: &Path, dry_run: bool) -> Watcher {
        let source = format!("unix:{}", sock.display());
        let sys = self.p("sys");
        let mut args = vec!["--json", "guard", "watch", "--source", &source, "--sys"];
        args.push(sys.to_str().unwrap());
        if dry_run {
            args.insert(0, "--dry-run");
        }
        let mut cmd = self.cmd(&args);
        cmd.stdin(Stdio::null());
        Watcher::start(cmd)
    }
    /// `guard hide` of the key file `key` into `cover`, written to `out`, sealed with the
    /// passphrase file `pass` and the cheap [`KDF`].
    fn hide(&self, cover: &Path, out: &Path) -> Output {
        self.run(&[
            "guard",
            "hide",
            "--cover",
            cover.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--key",
            self.p("key").to_str().unwrap(),
            "--passphrase-file",
            self.p("pass").to_str().unwrap(),
            "--kdf-memory",
            KDF,
        ])
    }
    fn cover(&self, name: &str, w: u32, h: u32, layout: Layout, depth: u8) -> PathBuf {
        let c = synthetic_photo(w, h, layout, depth, 5);
        let p = self.p(name);
        std::fs::write(&p, c.encode().unwrap()).unwrap();
        p
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts that the command's stdout contains `needle`, showing all it said if not.
fn assert_out_has(o: &Output, needle: &str) {
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(needle),
        "{}",
        text(o)
    );
}

/// Asserts that the command's stderr contains `needle`, showing all it said if not.
fn assert_err_has(o: &Output, needle: &str) {
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(needle),
        "{}",
        text(o)
    );
}

#[test]
fn hide_and_reveal_round_trip_across_image_kinds() {
    let e = Env::new();
    let key: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(151)).collect();
    std::fs::write(e.p("key"), &key).unwrap();
    for (i, (layout, depth)) in [
        (Layout::Grey, 8),
        (Layout::Grey, 16),
        (Layout::GreyAlpha, 8),
        (Layout::Rgb, 8),
        (Layout::Rgb, 16),
        (Layout::Rgba, 8),
        (Layout::Rgba, 16),
    ]
    .into_iter()
    .enumerate()
    {
        let cover = e.cover(&format!("c{i}.png"), 320, 240, layout, depth);
        let out = e.p(&format!("o{i}.png"));
        let pass = e.p("pass");
        let o = e.hide(&cover, &out);
        assert!(o.status.success(), "{layout:?} {depth}: {}", text(&o));
        // Same kind of PNG out as in.
        let back = mv_guard::Cover::read(&out).unwrap();
        assert_eq!((back.layout, back.depth), (layout, depth));
        // Idempotent: a second run says so and leaves the file alone.
        let before = std::fs::read(&out).unwrap();
        let o = e.hide(&cover, &out);
        assert_out_has(&o, "unchanged");
        assert_eq!(std::fs::read(&out).unwrap(), before);

        let o = e.run(&[
            "guard",
            "reveal",
            "--image",
            out.to_str().unwrap(),
            "--passphrase-file",
            pass.to_str().unwrap(),
            "--kdf-memory",
            KDF,
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(o.stdout, key, "{layout:?} {depth}");
    }
}

#[test]
fn wrong_passphrase_tampering_jpeg_and_capacity_are_clear_errors() {
    let e = Env::new();
    std::fs::write(e.p("key"), [7u8; 64]).unwrap();
    let cover = e.cover("c.png", 512, 512, Layout::Rgb, 8);
    let out = e.p("o.png");
    let o = e.hide(&cover, &out);
    assert!(o.status.success(), "{}", text(&o));
    let reveal = |img: &Path, pass: &str| {
        e.run(&[
            "guard",
            "reveal",
            "--image",
            img.to_str().unwrap(),
            "--passphrase-file",
            e.p(pass).to_str().unwrap(),
            "--kdf-memory",
            KDF,
        ])
    };
    let o = reveal(&out, "wrong");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_err_has(&o, "wrong passphrase");
    assert!(o.stdout.is_empty());

    // Tamper: brighten a 64x64 block by one level (every low bit in it flips).
    let mut c = mv_guard::Cover::read(&out).unwrap();
    for y in 200..264usize {
        for x in 200..264usize {
            for ch in 0..3 {
                let s = &mut c.samples[(y * 512 + x) * 3 + ch];
                *s = if *s == 255 { 254 } else { *s + 1 };
            }
        }
    }
    let tampered = e.p("t.png");
    std::fs::write(&tampered, c.encode().unwrap()).unwrap();
    let o = reveal(&tampered, "pass");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_err_has(&o, "damaged");

    // A JPEG cover is refused with the reason.
    std::fs::write(
        e.p("photo.jpg"),
        [0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F'],
    )
    .unwrap();
    let o = e.hide(&e.p("photo.jpg"), &e.p("x.png"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_err_has(&o, "lossy");
    assert!(!e.p("x.png").exists());

    // Too small a cover: the capacity check names the numbers.
    let small = e.cover("small.png", 64, 64, Layout::Rgb, 8);
    let o = e.hide(&small, &e.p("x.png"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_err_has(&o, "12288 usable samples");
}

/// `cryptsetup open --test-passphrase` of the LUKS header `disk` with `key` on stdin.
fn luks_test_key(cryptsetup: &Path, disk: &Path, key: &[u8]) -> Output {
    let mut cs = Command::new(cryptsetup)
        .args(["open", "--test-passphrase", "--key-file", "-"])
        .arg(disk)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cs.stdin.take().unwrap().write_all(key).unwrap();
    cs.wait_with_output().unwrap()
}

#[test]
fn enroll_then_the_revealed_key_opens_a_real_luks2_header() {
    let cryptsetup = mv_testkit::require_tool("cryptsetup");
    let e = Env::new();
    let disk = e.p("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(20 * 1024 * 1024)
        .unwrap();
    std::fs::write(e.p("old.key"), b"the installer's passphrase").unwrap();
    mv_testkit::run_ok(
        Command::new(&cryptsetup)
            .args([
                "luksFormat",
                "--batch-mode",
                "--type",
                "luks2",
                "--pbkdf",
                "pbkdf2",
            ])
            .args(["--pbkdf-force-iterations", "1000", "--key-file"])
            .arg(e.p("old.key"))
            .arg(&disk),
    );
    let key: Vec<u8> = (0..64u8).map(|i| i ^ 0x3C).collect();
    std::fs::write(e.p("luks.key"), &key).unwrap();
    let cover = e.cover("c.png", 400, 300, Layout::Rgb, 8);
    let (old, token, luks_key, pass) = (
        e.p("old.key"),
        e.p("token.png"),
        e.p("luks.key"),
        e.p("pass"),
    );
    let enroll = |dry: bool| {
        let mut args = vec![
            "guard",
            "enroll",
            "--luks",
            disk.to_str().unwrap(),
            "--existing-key-file",
            old.to_str().unwrap(),
            "--fast-slot",
            "--cover",
            cover.to_str().unwrap(),
            "--out",
            token.to_str().unwrap(),
            "--key",
            luks_key.to_str().unwrap(),
            "--passphrase-file",
            pass.to_str().unwrap(),
            "--kdf-memory",
            KDF,
        ];
        if dry {
            args.insert(0, "--dry-run");
        }
        e.run(&args)
    };
    let o = enroll(true);
    assert!(o.status.success(), "{}", text(&o));
    let disk_s = disk.display().to_string();
    assert_out_has(&o, &format!(
        "would run: cryptsetup luksAddKey --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file {} {disk_s} - (new key on stdin)",
        e.p("old.key").display()
    ));
    assert!(!e.p("token.png").exists(), "dry-run wrote nothing");

    let o = enroll(false);
    assert!(o.status.success(), "{}", text(&o));
    let o = enroll(false);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("already opens a keyslot; unchanged") && out.contains("unchanged"),
        "{out}"
    );

    // The revealed key, piped, opens the header (the exact use).
    let o = e.run(&[
        "guard",
        "reveal",
        "--image",
        e.p("token.png").to_str().unwrap(),
        "--passphrase-file",
        e.p("pass").to_str().unwrap(),
        "--kdf-memory",
        KDF,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let cs = luks_test_key(&cryptsetup, &disk, &o.stdout);
    assert!(cs.status.success(), "{}", text(&cs));

    // `guard unlock --test` finds the image on the "token" folder and checks it.
    std::fs::create_dir(e.p("stick")).unwrap();
    std::fs::copy(e.p("c.png"), e.p("stick/a-holiday.png")).unwrap();
    std::fs::copy(e.p("token.png"), e.p("stick/b-cat.png")).unwrap();
    let o = e.run(&[
        "guard",
        "unlock",
        "--token-dir",
        e.p("stick").to_str().unwrap(),
        "--luks",
        &disk_s,
        "--test",
        "--passphrase-file",
        e.p("pass").to_str().unwrap(),
        "--kdf-memory",
        KDF,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_out_has(&o, "the hidden key opens");

    // The real open (device-mapper is absent here) as its exact command line.
    let o = e.run(&[
        "--dry-run",
        "guard",
        "unlock",
        "--image",
        e.p("token.png").to_str().unwrap(),
        "--luks",
        &disk_s,
        "--name",
        "cr_root",
        "--passphrase-file",
        e.p("pass").to_str().unwrap(),
        "--kdf-memory",
        KDF,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("would run: cryptsetup open --key-file - {disk_s} cr_root (key on stdin)")
    );

    // A different key does not open it: the check can fail.
    assert!(!luks_test_key(&cryptsetup, &disk, &[0u8; 64])
        .status
        .success());
}

#[test]
fn arm_disarm_status_are_idempotent_and_validate_the_token() {
    let e = Env::new();
    let o = e.run(&["guard", "arm", "--token", "10:07"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = e.run(&["--dry-run", "guard", "arm", "--token", "1050:0407:CC01"]);
    assert!(o.status.success());
    assert!(!e.p("tree/guard/guard.toml").exists());
    let o = e.run(&["guard", "arm", "--token", "1050:0407:CC01"]);
    assert_out_has(&o, "armed for token 1050:0407:CC01");
    let o = e.run(&["guard", "arm", "--token", "1050:0407:CC01"]);
    assert_out_has(&o, "unchanged");
    let o = e.run(&[
        "--json",
        "guard",
        "status",
        "--sys",
        e.p("nosys").to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["armed"], true);
    assert_eq!(v["token"], "1050:0407:CC01");
    assert_eq!(v["token_present"], serde_json::json!([]));
    assert_eq!(v["watcher_pid"], serde_json::Value::Null);
    assert_eq!(
        v["steps"],
        serde_json::json!([
            "undefine-secrets",
            "drop-secrets",
            "clear-keyring",
            "destroy-domains",
            "luks-suspend",
            "clear-memory",
            "power-off"
        ])
    );
    let o = e.run(&["guard", "disarm"]);
    assert_out_has(&o, "disarmed");
    let o = e.run(&["guard", "disarm"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("not armed; unchanged"),
        "{}",
        text(&o)
    );
    let o = e.run(&["guard", "udev-rule", "--token", "CC01"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("ENV{ID_SERIAL_SHORT}==\"CC01\""));
}

// ---- the watcher ----

/// A fixture sysfs: the token, a decoy with the same VID:PID and another serial, a keyboard, and
/// two open LUKS mappings plus an LVM one.
fn fixture_sys(root: &Path) {
    for (port, vid, pid, serial) in [
        ("1-1", "1050", "0407", Some("TOKEN42")),
        ("1-2", "1050", "0407", Some("DECOY99")),
        ("1-3", "046d", "c52b", None),
    ] {
        let dev = root.join("devices/pci0000:00/0000:00:14.0/usb1").join(port);
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("idVendor"), format!("{vid}\n")).unwrap();
        std::fs::write(dev.join("idProduct"), format!("{pid}\n")).unwrap();
        if let Some(s) = serial {
            std::fs::write(dev.join("serial"), format!("{s}\n")).unwrap();
        }
        std::fs::create_dir_all(root.join("bus/usb/devices")).unwrap();
        symlink(
            format!("../../../devices/pci0000:00/0000:00:14.0/usb1/{port}"),
            root.join("bus/usb/devices").join(port),
        )
        .unwrap();
    }
    for (dm, uuid, name) in [
        ("dm-0", "CRYPT-LUKS2-0123-cr_root", "cr_root"),
        ("dm-1", "LVM-abc", "vg0-swap"),
        ("dm-2", "CRYPT-LUKS2-4567-cr_data", "cr_data"),
    ] {
        let p = root.join("block").join(dm).join("dm");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("uuid"), format!("{uuid}\n")).unwrap();
        std::fs::write(p.join("name"), format!("{name}\n")).unwrap();
    }
}

const USB: &str = "/devices/pci0000:00/0000:00:14.0/usb1";

/// The guard.toml of the watcher tests: the default chain, with secrets in the temp dir and
/// libvirt's test driver (which always has one running domain, `test`).
fn arm_for_watch(e: &Env) {
    let o = e.run(&["guard", "arm", "--token", "1050:0407:TOKEN42"]);
    assert!(o.status.success(), "{}", text(&o));
    let path = e.p("tree/guard/guard.toml");
    let t = std::fs::read_to_string(&path)
        .unwrap()
        .replace("/run/multiverse/secrets", e.p("secrets").to_str().unwrap())
        .replace(
            "/etc/multiverse/agent.token",
            e.p("agent.token").to_str().unwrap(),
        )
        .replace("qemu:///system", "test:///default");
    std::fs::write(&path, t).unwrap();
}

fn expected_chain(e: &Env) -> Vec<String> {
    let mut chain: Vec<String> = vec![
        // The test driver holds no libvirt secrets.
        "(nothing to do)".into(),
        format!("{} pass lock --all", common::MV),
        "kill-processes -KILL --exe multiverse-agent".into(),
        format!("wipe-and-remove {}", e.p("secrets").display()),
        format!("wipe-and-remove {}", e.p("agent.token").display()),
        "keyctl clear @u".into(),
        "keyctl clear @us".into(),
        "virsh -c test:///default destroy test".into(),
        "cryptsetup luksSuspend cr_data".into(),
        "cryptsetup luksSuspend cr_root".into(),
        "echo 3 > /proc/sys/vm/drop_caches".into(),
        "echo 1 > /proc/sys/vm/compact_memory".into(),
    ];
    // Without init_on_free=1 on this kernel's command line, the chain also fills free memory.
    if mv_guard::chain::init_on_free(Path::new("/proc")) != Some(true) {
        chain.push("wipe-free-memory --reserve-mib 0".into());
    }
    chain.extend([
        "echo 1 > /proc/sys/kernel/sysrq".into(),
        "echo o > /proc/sysrq-trigger".into(),
        "poweroff -f".into(),
    ]);
    chain
}

struct Watcher {
    child: Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl Watcher {
    fn start(mut cmd: Command) -> Watcher {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        Watcher { child, lines: rx }
    }
    fn next(&self) -> serde_json::Value {
        self.lines
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("watcher output")
    }
    /// Collects events until the process exits.
    fn rest(&mut self) -> Vec<serde_json::Value> {
        let v: Vec<_> = self.lines.iter().collect();
        assert!(self.child.wait().unwrap().success());
        v
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn decoys_then_token() -> Vec<Uevent> {
    vec![
        // Another device leaves.
        Uevent::usb("remove", &format!("{USB}/1-3"), 0x046d, 0xc52b, 101),
        // The same VID:PID with another serial leaves.
        Uevent::usb("remove", &format!("{USB}/1-2"), 0x1050, 0x0407, 102),
        // An interface of the token (not the device) leaves.
        {
            let mut u = Uevent::usb("remove", &format!("{USB}/1-1/1-1:1.0"), 0x1050, 0x0407, 103);
            u.vars.insert("DEVTYPE".into(), "usb_interface".into());
            u
        },
        // A device is added (same VID:PID): add events never fire.
        Uevent::usb("add", &format!("{USB}/1-4"), 0x1050, 0x0407, 104),
        // A token-like device never seen before leaves.
        Uevent::usb("remove", &format!("{USB}/1-9"), 0x1050, 0x0407, 105),
        // The armed token leaves.
        Uevent::usb("remove", &format!("{USB}/1-1"), 0x1050, 0x0407, 106),
    ]
}

fn check_run(e: &Env, events: &[serde_json::Value], expect_seq: bool) {
    let uevents: Vec<&serde_json::Value> =
        events.iter().filter(|v| v["event"] == "uevent").collect();
    // The interface event is not about a USB device: the watcher drops it without a line.
    assert_eq!(uevents.len(), 5, "{events:#?}");
    let decisions: Vec<&str> = uevents
        .iter()
        .map(|v| v["decision"].as_str().unwrap())
        .collect();
    assert_eq!(
        decisions,
        vec!["ignore", "ignore", "ignore", "ignore", "fire"]
    );
    let whys: Vec<&str> = uevents[..4]
        .iter()
        .map(|v| v["why"].as_str().unwrap())
        .collect();
    assert_eq!(
        whys,
        vec![
            "removed device is not the token",
            "removed device is not the token",
            "added device is not the token",
            "removed device was never seen",
        ]
    );
    if expect_seq {
        assert_eq!(uevents[4]["seqnum"], 106);
    }
    assert_eq!(uevents[4]["device"]["serial"], "TOKEN42");
    // Nothing happened before the token left: the fire event follows its uevent directly.
    let fire_at = events.iter().position(|v| v["event"] == "fire").unwrap();
    let token_at = events.iter().position(|v| v["decision"] == "fire").unwrap();
    assert_eq!(fire_at, token_at + 1);
    let actions: Vec<String> = events
        .iter()
        .filter(|v| v["event"] == "action")
        .map(|v| {
            assert_eq!(v["status"], "dry-run");
            v["command"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(actions, expected_chain(e));
}

#[test]
fn watcher_on_a_unix_source_fires_only_for_the_token() {
    mv_testkit::require_tool("virsh");
    let e = Env::new();
    fixture_sys(&e.p("sys"));
    arm_for_watch(&e);
    let sock = e.p("uevents.sock");
    let mut w = e.watch_unix(&sock, true);
    let ready = w.next();
    assert_eq!(ready["event"], "ready", "{ready}");
    assert_eq!(ready["present"][0]["devpath"], format!("{USB}/1-1"));
    let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
    tx.send_to(b"libudev\0\xfe\xed\xca\xfe", &sock).unwrap();
    for u in decoys_then_token() {
        tx.send_to(&u.encode(), &sock).unwrap();
    }
    let mut events = vec![ready];
    events.extend(w.rest());
    assert_eq!(
        events.iter().filter(|v| v["event"] == "rejected").count(),
        1
    );
    check_run(&e, &events, true);
    // Dry-run touched nothing.
    assert!(!e.p("tree/guard/watch.pid").exists());
}

/// `--on insert` (BusKill #83): only a new add of the armed token fires; the token present at
/// arming, its removal, decoys and interface events do nothing. Persisted, shown by status, and
/// the udev rule matches `add`.
#[test]
fn watcher_armed_on_insert_fires_only_on_a_new_token_add() {
    mv_testkit::require_tool("virsh");
    let e = Env::new();
    fixture_sys(&e.p("sys"));
    arm_for_watch(&e);
    let o = e.run(&[
        "guard",
        "arm",
        "--token",
        "1050:0407:TOKEN42",
        "--on",
        "insert",
    ]);
    assert_out_has(&o, "armed for token 1050:0407:TOKEN42 (fires on insert)");
    let o = e.run(&["guard", "arm", "--token", "1050:0407:TOKEN42"]);
    assert_out_has(&o, "(fires on insert); unchanged");
    let toml = std::fs::read_to_string(e.p("tree/guard/guard.toml")).unwrap();
    assert!(toml.contains("trigger = \"insert\"\n"), "{toml}");
    let sys = e.p("sys");
    let o = e.run(&["--json", "guard", "status", "--sys", sys.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["trigger"], "insert", "{v}");
    let o = e.run(&["guard", "status", "--sys", sys.to_str().unwrap()]);
    assert_out_has(&o, "fires on: insert");
    let o = e.run(&["guard", "udev-rule"]);
    assert_out_has(&o, "\nACTION==\"add\", SUBSYSTEM==\"usb\"");
    assert_out_has(&o, "ENV{ID_SERIAL_SHORT}==\"TOKEN42\"");

    // A token that appears only after the watcher started: in sysfs, not in bus/usb/devices.
    let fresh = sys.join(&USB[1..]).join("1-5");
    std::fs::create_dir_all(&fresh).unwrap();
    std::fs::write(fresh.join("idVendor"), "1050\n").unwrap();
    std::fs::write(fresh.join("idProduct"), "0407\n").unwrap();
    std::fs::write(fresh.join("serial"), "TOKEN42\n").unwrap();

    let sock = e.p("uevents.sock");
    let mut w = e.watch_unix(&sock, true);
    let ready = w.next();
    assert_eq!(ready["event"], "ready", "{ready}");
    assert_eq!(ready["trigger"], "insert", "{ready}");
    assert_eq!(ready["present"][0]["devpath"], format!("{USB}/1-1"));
    let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let events = [
        // The token present at arming: a replayed add, then its removal.
        Uevent::usb("add", &format!("{USB}/1-1"), 0x1050, 0x0407, 201),
        Uevent::usb("remove", &format!("{USB}/1-1"), 0x1050, 0x0407, 202),
        // Same VID:PID, another serial; another device.
        Uevent::usb("add", &format!("{USB}/1-2"), 0x1050, 0x0407, 203),
        Uevent::usb("add", &format!("{USB}/1-3"), 0x046d, 0xc52b, 204),
        // An interface of the new token (not the device).
        {
            let mut u = Uevent::usb("add", &format!("{USB}/1-5/1-5:1.0"), 0x1050, 0x0407, 205);
            u.vars.insert("DEVTYPE".into(), "usb_interface".into());
            u
        },
        // The armed token is plugged in.
        Uevent::usb("add", &format!("{USB}/1-5"), 0x1050, 0x0407, 206),
    ];
    for u in &events {
        tx.send_to(&u.encode(), &sock).unwrap();
    }
    let mut all = vec![ready];
    all.extend(w.rest());
    let uevents: Vec<&serde_json::Value> = all.iter().filter(|v| v["event"] == "uevent").collect();
    let got: Vec<(&str, &str)> = uevents
        .iter()
        .map(|v| {
            (
                v["decision"].as_str().unwrap(),
                v["why"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("ignore", "added token was already present"),
            ("ignore", "removed token (fires on insert only)"),
            ("ignore", "added device is not the token"),
            ("ignore", "added device is not the token"),
            ("fire", ""),
        ],
        "{all:#?}"
    );
    assert_eq!(uevents[4]["seqnum"], 206);
    assert_eq!(uevents[4]["action"], "add");
    assert_eq!(uevents[4]["device"]["serial"], "TOKEN42");
    let fire_at = all.iter().position(|v| v["event"] == "fire").unwrap();
    assert_eq!(all[fire_at]["cause"], "token-inserted");
    assert_eq!(all[fire_at - 1]["seqnum"], 206);
    let actions: Vec<String> = all
        .iter()
        .filter(|v| v["event"] == "action")
        .map(|v| {
            assert_eq!(v["status"], "dry-run");
            v["command"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(actions, expected_chain(&e));
    assert!(!e.p("tree/guard/watch.pid").exists());
}

#[test]
fn watcher_on_real_netlink_in_a_private_namespace() {
    mv_testkit::require_tool("virsh");
    let unshare = mv_testkit::require_tool("unshare");
    let e = Env::new();
    fixture_sys(&e.p("sys"));
    arm_for_watch(&e);
    let mut cmd = Command::new(unshare);
    cmd.args(["-n", "--"])
        .arg(MV)
        .arg("--root")
        .arg(e.p("tree"))
        .args([
            "--dry-run",
            "--json",
            "guard",
            "watch",
            "--source",
            "netlink",
            "--sys",
        ])
        .arg(e.p("sys"))
        .stdin(Stdio::null());
    let mut w = Watcher::start(cmd);
    let ready = w.next();
    assert_eq!(ready["event"], "ready", "{ready}");
    assert_eq!(ready["source"], "netlink");
    // `unshare` execs the watcher in place: its PID's namespace is the watcher's.
    let ns = PathBuf::from(format!("/proc/{}/ns/net", w.child.id()));
    for mut u in decoys_then_token() {
        // The kernel numbers events itself.
        u.vars.remove("SEQNUM");
        mv_guard::watch::send_in_netns(&ns, &u.encode()).unwrap();
    }
    let mut events = vec![ready];
    events.extend(w.rest());
    check_run(&e, &events, false);
}

#[test]
fn a_disarmed_watcher_stops_on_sigusr1_and_ignores_sigterm() {
    let e = Env::new();
    fixture_sys(&e.p("sys"));
    arm_for_watch(&e);
    let sock = e.p("u.sock");
    let mut w = e.watch_unix(&sock, false);
    assert_eq!(w.next()["event"], "ready");
    let pid = w.child.id().to_string();
    assert_eq!(
        std::fs::read_to_string(e.p("tree/guard/watch.pid"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
        pid
    );
    mv_testkit::run_ok(Command::new("kill").args(["-TERM", &pid]));
    let sig = w.next();
    assert_eq!(sig["event"], "signal");
    assert_eq!(sig["name"], "SIGTERM");
    let o = e.run(&["guard", "disarm"]);
    assert_out_has(&o, &format!("watcher (pid {pid})"));
    let stop = w.next();
    assert_eq!(stop["handled"], "disarmed: stopping", "{stop}");
    assert!(w.rest().is_empty());
    assert!(!e.p("tree/guard/watch.pid").exists());
}

#[test]
fn default_key_is_the_machine_s_derived_luks_key() {
    let e = Env::new();
    let pass = e.p("pass").display().to_string();
    let o = e.run(&[
        "identity",
        "new",
        "--passphrase-file",
        &pass,
        "--kdf-memory",
        "64",
        "--kdf-iterations",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let exported = e.p("export").display().to_string();
    let o = e.run(&[
        "identity",
        "export",
        "--kind",
        "luks",
        "--out",
        &exported,
        "--passphrase-file",
        &pass,
        "universe.router.multiverse",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let luks = std::fs::read(e.p("export/luks.key")).unwrap();
    assert_eq!(luks.len(), 64);
    let cover = e.cover("c.png", 300, 300, Layout::Rgb, 8);
    let out = e.p("o.png").display().to_string();
    // No --key and nothing on stdin: the identity is unsealed with the same passphrase.
    let o = e.run(&[
        "guard",
        "hide",
        "--cover",
        cover.to_str().unwrap(),
        "--out",
        &out,
        "--machine",
        "universe.router.multiverse",
        "--passphrase-file",
        &pass,
        "--kdf-memory",
        KDF,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = e.run(&[
        "guard",
        "reveal",
        "--image",
        &out,
        "--passphrase-file",
        &pass,
        "--kdf-memory",
        KDF,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(o.stdout, luks);
}

#[test]
fn unlock_without_a_folder_mounts_the_armed_token_read_only() {
    let e = Env::new();
    fixture_sys(&e.p("sys"));
    let part = e
        .p("sys")
        .join(USB.trim_start_matches('/'))
        .join("1-1/1-1:1.0/host6/target6:0:0/6:0:0:0/block/sdc/sdc1");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(part.join("partition"), "1\n").unwrap();
    // The decoy (same VID:PID, other serial) has storage too: it must not be mounted.
    let decoy = e
        .p("sys")
        .join(USB.trim_start_matches('/'))
        .join("1-2/1-2:1.0/host7/block/sdd");
    std::fs::create_dir_all(&decoy).unwrap();
    let sys = e.p("sys").display().to_string();
    let o = e.run(&[
        "--dry-run",
        "guard",
        "unlock",
        "--luks",
        "/dev/sda2",
        "--sys",
        &sys,
    ]);
    assert_eq!(o.status.code(), Some(2), "not armed yet: {}", text(&o));
    e.run(&["guard", "arm", "--token", "1050:0407:TOKEN42"]);
    let o = e.run(&[
        "--dry-run",
        "guard",
        "unlock",
        "--luks",
        "/dev/sda2",
        "--sys",
        &sys,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].starts_with("would run: mount -o ro,nodev,nosuid,noexec /dev/sdc1 /"),
        "{stdout}"
    );
}

#[test]
fn a_paused_guard_ignores_the_token_then_fires_once_rearmed() {
    let e = Env::new();
    fixture_sys(&e.p("sys"));
    arm_for_watch(&e);
    let o = e.run(&["guard", "disarm", "--for", "1h"]);
    assert_out_has(&o, "paused for 3600 s");
    let o = e.run(&["guard", "disarm", "--for", "soon"]);
    assert_eq!(o.status.code(), Some(2));
    let sock = e.p("p.sock");
    let mut w = e.watch_unix(&sock, true);
    assert_eq!(w.next()["event"], "ready");
    let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let token = format!("{USB}/1-1");
    // The armed token (1050:0407 at its devpath) arriving or leaving, as event `seq`.
    let send = |action: &str, seq: u64| {
        let u = Uevent::usb(action, &token, 0x1050, 0x0407, seq);
        tx.send_to(&u.encode(), &sock).unwrap();
    };
    send("remove", 1);
    assert_eq!(w.next()["decision"], "fire");
    assert_eq!(w.next()["event"], "disarmed-ignore");
    // Re-arming ends the pause; the token comes back (sysfs still has it) and leaves again.
    let o = e.run(&["guard", "arm", "--token", "1050:0407:TOKEN42"]);
    assert!(o.status.success(), "{}", text(&o));
    send("add", 2);
    assert_eq!(w.next()["decision"], "token-arrived");
    send("remove", 3);
    assert_eq!(w.next()["decision"], "fire");
    assert_eq!(w.next()["event"], "fire");
    let rest = w.rest();
    assert!(rest.iter().all(|v| v["event"] == "action"), "{rest:?}");
}

/// `guard status` reports the kernel command line's init_on_free, on which the chain's memory
/// step relies.
#[test]
fn status_reports_a_missing_init_on_free() {
    let e = Env::new();
    let proc_root = e.p("proc");
    std::fs::create_dir_all(&proc_root).unwrap();
    let status = |cmdline: &str, json: bool| {
        std::fs::write(proc_root.join("cmdline"), format!("{cmdline}\n")).unwrap();
        let mut args = vec!["guard", "status", "--sys", "/nonexistent-sys", "--proc"];
        args.push(proc_root.to_str().unwrap());
        if json {
            args.insert(0, "--json");
        }
        let o = e.run(&args);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = status("ro quiet", false);
    assert!(
        out.contains("memory:   WARNING: no init_on_free=1 on the kernel command line"),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_str(&status("ro quiet", true)).unwrap();
    assert_eq!(v["init_on_free"], false);
    let out = status("ro init_on_free=1", false);
    assert!(out.contains("memory:   init_on_free=1"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&status("init_on_free=1", true)).unwrap();
    assert_eq!(v["init_on_free"], true);
}

/// The chain's memory filler (`guard __fill-memory`, hidden; the chain runs it as a child):
/// it makes itself the OOM killer's first choice before writing anything, writes what it is
/// asked (a small limit here), and stops at the reserve given a fixture procfs.
#[test]
fn the_memory_filler_child_is_the_oom_killer_s_first_choice() {
    let e = Env::new();
    let o = e.run(&["guard", "__fill-memory", "--limit-mib", "8"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_err_has(&o, "wipe-free-memory: filled 8 MiB in");
    assert_err_has(&o, "oom_score_adj 1000)");
    // A fixture procfs: 40 MiB free, a kernel reserve of 16 MiB (zones' high watermarks,
    // 4096 pages), 4 MiB more asked: 20 MiB a pass, three passes (the fixture's MemFree never
    // changes), whatever the limit. No `--lower-watermarks`: the fixture has no sys/vm.
    let proc_root = e.p("proc");
    std::fs::create_dir_all(&proc_root).unwrap();
    std::fs::write(
        proc_root.join("meminfo"),
        "MemTotal: 1000000 kB\nMemFree: 40960 kB\nCached: 1024 kB\n",
    )
    .unwrap();
    std::fs::write(
        proc_root.join("zoneinfo"),
        "Node 0, zone   Normal\n        min      2730\n        low      3413\n        high     4096\n",
    )
    .unwrap();
    let o = e.run(&[
        "guard",
        "__fill-memory",
        "--proc",
        proc_root.to_str().unwrap(),
        "--reserve-mib",
        "4",
        "--lower-watermarks",
        "--limit-mib",
        "100",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_err_has(&o, "filled 60 MiB");
    assert_err_has(
        &o,
        "reserve 20 MiB, Cached before 1 MiB, oom_score_adj 1000)",
    );
    // Hidden from the help.
    let help = e.run(&["guard", "--help"]);
    assert!(!String::from_utf8_lossy(&help.stdout).contains("fill-memory"));
}

/// The shipped service units: systemd's verified by `systemd-analyze verify` (with this binary
/// in place of /usr/local/bin/multiverse), OpenRC's read by the real `openrc-run` (syntax and
/// dependencies), both running `guard watch` on the default tree and stopping it with SIGKILL.
#[test]
fn guard_service_units_verify_with_their_init_systems() {
    let root = mv_testkit::workspace_root();
    let unit =
        std::fs::read_to_string(root.join("contrib/systemd/multiverse-guard.service")).unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/local/bin/multiverse --root /var/multiverse guard watch\n"),
        "{unit}"
    );
    for line in [
        "KillSignal=SIGKILL",
        "CPUSchedulingPolicy=fifo",
        "LimitMEMLOCK=infinity",
        "RestartPreventExitStatus=2",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.contains(&format!("\n{line}\n")), "{line}");
    }
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("multiverse-guard.service");
    std::fs::write(&f, unit.replace("/usr/local/bin/multiverse", MV)).unwrap();
    let sa = mv_testkit::require_tool("systemd-analyze");
    let out = Command::new(sa).arg("verify").arg(&f).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains(f.to_str().unwrap()),
        "{err}"
    );

    let rc = root.join("contrib/openrc/multiverse-guard");
    let text = std::fs::read_to_string(&rc).unwrap();
    assert!(text.starts_with("#!/sbin/openrc-run\n"));
    assert!(text.contains(
        "/usr/local/bin/multiverse --root ${MULTIVERSE_ROOT:-/var/multiverse} guard watch"
    ));
    assert!(text.contains("\nretry=\"SIGKILL/5\"\n"));
    let dash = mv_testkit::require_tool("dash");
    mv_testkit::run_ok(Command::new(dash).arg("-n").arg(&rc));
    // openrc-run sources the script: a syntax error shows on stderr (its exit status stays 0).
    let openrc_run = mv_testkit::require_tool("openrc-run");
    let out = Command::new(&openrc_run)
        .arg(&rc)
        .arg("depend")
        .env("RC_SVCNAME", "multiverse-guard")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "need localmount\nbefore libvirtd\n"
    );
    let out = Command::new(&openrc_run)
        .arg(&rc)
        .arg("describe")
        .output()
        .unwrap();
    // (It lists OpenRC's built-in healthcheck/unhealthy commands on stderr.)
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(!err.contains("error"), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("runs the chain when the USB token leaves")
    );
}
