//! Security tests: guard (see main.rs and docs/security.md).
//!
//! Finding 2: root ran a kill chain from a `guard.toml` that an unprivileged user owned (a
//! `command` step, a `drop-secrets` step) and let that user disarm root's watcher by rewriting it.
//! Now root uses only a configuration root alone can change, checked on the opened descriptor,
//! and a running watcher refuses a hostile replacement and keeps its chain.
//!
//! Finding 10: `guard status`/`disarm` trusted a stale pidfile plus "guard" in a process's command
//! line, and sent SIGUSR1 to a decoy. Now the watcher holds a lock on its pidfile for its
//! lifetime and the pid is checked against our executable and the recorded start time.

use super::common;
use mv_guard::Uevent;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The attacker.
const NOBODY: u32 = 65534;

const USB: &str = "/devices/usb1";

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A tempdir holding a root-owned tree (`tree/guard`, 0755), a fixture sysfs with the token
/// 1050:0407:TOKEN42 at `USB/1-1`, and the paths the hostile chain would touch.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        assert!(euid_is_root(), "the guard security tests run as root");
        let dir = tempfile::tempdir().unwrap();
        let e = Env { dir };
        std::fs::create_dir_all(e.guard_dir()).unwrap();
        chmod(&e.p("tree"), 0o755);
        chmod(&e.guard_dir(), 0o755);
        let dev = e.p("sys").join(&USB[1..]).join("1-1");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("idVendor"), "1050\n").unwrap();
        std::fs::write(dev.join("idProduct"), "0407\n").unwrap();
        std::fs::write(dev.join("serial"), "TOKEN42\n").unwrap();
        std::fs::create_dir_all(e.p("sys/bus/usb/devices")).unwrap();
        symlink("../../../devices/usb1/1-1", e.p("sys/bus/usb/devices/1-1")).unwrap();
        // What `drop-secrets` would wipe: stands for /etc/shadow.
        std::fs::write(e.p("shadow"), "root:$6$precious\n").unwrap();
        e
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn guard_dir(&self) -> PathBuf {
        self.p("tree/guard")
    }
    fn toml(&self) -> PathBuf {
        self.p("tree/guard/guard.toml")
    }
    fn mv(&self, args: &[&str]) -> Output {
        let mut c = common::mv(&self.p("tree"));
        c.args(args);
        c.output().unwrap()
    }
    /// The attacker's chain: a shell command (leaves `pwned`) and a wipe of `shadow`. With
    /// `armed = false` it also disarms a root watcher that re-reads it. `processes = []`: the
    /// control fires it for real, and without the field `drop-secrets` kills every
    /// `multiverse-agent` on the machine (the default list), such as the agents other tests run.
    fn hostile(&self, armed: bool) -> String {
        format!(
            "armed = {armed}\ntoken = \"1050:0407:TOKEN42\"\n\n\
             [[step]]\naction = \"command\"\nargv = [\"/bin/sh\", \"-c\", \"touch {}\"]\ntimeout_ms = 5000\n\n\
             [[step]]\naction = \"drop-secrets\"\npaths = [\"{}\"]\nprocesses = []\ntimeout_ms = 2000\n",
            self.p("pwned").display(),
            self.p("shadow").display()
        )
    }
    /// Root's own chain: only `sync`.
    fn good(&self) -> String {
        "armed = true\ntoken = \"1050:0407:TOKEN42\"\n\n[[step]]\naction = \"sync\"\ntimeout_ms = 5000\n"
            .to_string()
    }
    /// `guard fire` for real (no dry-run): the hostile chain only touches this tempdir.
    fn fire(&self) -> Output {
        let sys = self.p("sys");
        self.mv(&["guard", "fire", "--sys", sys.to_str().unwrap()])
    }
    fn assert_nothing_ran(&self, context: &str) {
        assert!(!self.p("pwned").exists(), "the command step ran: {context}");
        assert_eq!(
            std::fs::read_to_string(self.p("shadow")).unwrap(),
            "root:$6$precious\n",
            "the drop-secrets step ran: {context}"
        );
    }
    fn assert_refused(&self, o: &Output, why: &str) {
        assert_eq!(o.status.code(), Some(2), "{}", text(o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("refusing the guard configuration") && err.contains(why),
            "{}",
            text(o)
        );
        self.assert_nothing_ran(&text(o));
    }
}

/// Whether this process runs as root, from /proc (no libc call needed).
fn euid_is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    // Uid: real effective saved fs
    uid.split_whitespace().nth(2) == Some("0")
}

/// Finding 2 (a): root's `guard fire` refuses a chain another user could have written (the
/// file's owner, its mode, a folder's mode or owner, a link to such a file) and runs nothing; a
/// root-owned 0600 file runs.
#[test]
fn root_refuses_a_guard_toml_another_user_could_write() {
    let e = Env::new();
    let toml = e.toml();

    // The finding as reported: the tree's user owns guard.toml.
    std::fs::write(&toml, e.hostile(true)).unwrap();
    chown(&toml, Some(NOBODY), Some(NOBODY)).unwrap();
    let o = e.fire();
    e.assert_refused(&o, "owned by uid 65534, not root");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("hint:"),
        "{}",
        text(&o)
    );
    // `status` and `watch` read the same file the same way.
    let o = e.mv(&["guard", "status"]);
    e.assert_refused(&o, "owned by uid 65534");
    let sock = e.p("w.sock");
    let source = format!("unix:{}", sock.display());
    let sys = e.p("sys");
    let o = e.mv(&[
        "--dry-run",
        "guard",
        "watch",
        "--source",
        &source,
        "--sys",
        sys.to_str().unwrap(),
    ]);
    e.assert_refused(&o, "owned by uid 65534");

    // Root-owned but writable by others, or by the group.
    chown(&toml, Some(0), Some(0)).unwrap();
    for mode in [0o666, 0o620] {
        chmod(&toml, mode);
        e.assert_refused(&e.fire(), "writable by group or others");
    }
    chmod(&toml, 0o600);

    // A folder on the path that others may write (not sticky), or that another user owns.
    chmod(&e.guard_dir(), 0o777);
    e.assert_refused(&e.fire(), "writable by group or others (mode 0777)");
    chmod(&e.guard_dir(), 0o755);
    chown(e.p("tree"), Some(NOBODY), None).unwrap();
    e.assert_refused(&e.fire(), "tree is owned by uid 65534");
    // ...and root does not write its armed state there either.
    let o = e.mv(&["guard", "arm", "--token", "1050:0407:TOKEN42"]);
    e.assert_refused(&o, "owned by uid 65534");
    chown(e.p("tree"), Some(0), None).unwrap();

    // A link from root's tree to a file the attacker owns.
    let theirs = e.p("theirs.toml");
    std::fs::write(&theirs, e.hostile(true)).unwrap();
    chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::remove_file(&toml).unwrap();
    symlink(&theirs, &toml).unwrap();
    e.assert_refused(&e.fire(), "owned by uid 65534");

    // The control: the same chain in a root-owned 0600 file runs (the test can fail).
    std::fs::remove_file(&toml).unwrap();
    std::fs::write(&toml, e.hostile(true)).unwrap();
    chmod(&toml, 0o600);
    let o = e.fire();
    assert!(o.status.success(), "{}", text(&o));
    assert!(e.p("pwned").exists(), "{}", text(&o));
    assert!(!e.p("shadow").exists(), "{}", text(&o));
}

/// The watcher as the suite drives it: `--json` lines on a channel.
struct Watcher {
    child: Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl Watcher {
    fn start(e: &Env, sock: &Path) -> Watcher {
        let source = format!("unix:{}", sock.display());
        let sys = e.p("sys");
        let mut child = common::mv(&e.p("tree"))
            .args(["--dry-run", "--json", "guard", "watch", "--source", &source])
            .arg("--sys")
            .arg(sys)
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
            .recv_timeout(Duration::from_secs(30))
            .expect("watcher output")
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finding 2 (b): a root watcher started on root's chain; the file is then replaced by one the
/// attacker owns that disarms (`armed = false`) and carries their chain. SIGUSR1 (what `guard
/// disarm` sends) and the token's removal both re-read it: the watcher refuses it, says so, stays
/// armed and fires the chain it started with.
#[test]
fn a_root_watcher_keeps_its_chain_when_guard_toml_is_replaced_by_another_user() {
    let e = Env::new();
    std::fs::write(e.toml(), e.good()).unwrap();
    chmod(&e.toml(), 0o600);
    let sock = e.p("u.sock");
    let mut w = Watcher::start(&e, &sock);
    let ready = w.next();
    assert_eq!(ready["event"], "ready", "{ready}");
    assert_eq!(ready["present"][0]["devpath"], format!("{USB}/1-1"));

    // Replaced atomically, as the tree's user would with their editor.
    let new = e.p("tree/guard/.guard.toml.new");
    std::fs::write(&new, e.hostile(false)).unwrap();
    chown(&new, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::rename(&new, e.toml()).unwrap();

    let pid = w.child.id().to_string();
    common::ok(Command::new("kill").args(["-USR1", &pid]), None);
    let refused = w.next();
    assert_eq!(refused["event"], "config-refused", "{refused}");
    assert!(
        refused["why"]
            .as_str()
            .unwrap()
            .contains("owned by uid 65534, not root"),
        "{refused}"
    );
    let sig = w.next();
    assert_eq!(sig["event"], "signal", "{sig}");
    assert_eq!(sig["handled"], "still armed: watching", "{sig}");

    // The token leaves: root's chain fires, not the attacker's.
    let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let u = Uevent::usb("remove", &format!("{USB}/1-1"), 0x1050, 0x0407, 7);
    tx.send_to(&u.encode(), &sock).unwrap();
    let mut events = Vec::new();
    while let Ok(v) = w.lines.recv_timeout(Duration::from_secs(30)) {
        events.push(v);
    }
    let kinds: Vec<String> = events
        .iter()
        .map(|v| {
            format!(
                "{}:{}",
                v["event"].as_str().unwrap(),
                v["command"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["uevent:", "config-refused:", "fire:", "action:sync"],
        "{events:#?}"
    );
    assert_eq!(events[3]["status"], "dry-run");
    e.assert_nothing_ran(&format!("{events:#?}"));
    assert!(w.child.wait().unwrap().success());
}

/// `guard status --json` and `guard disarm` while the pidfile names `pid`: neither may take it
/// for the watcher, and the decoy must get no signal.
fn assert_not_taken_for_the_watcher(e: &Env, pid: u32, rec: &Path) {
    let o = e.mv(&["--json", "guard", "status"]);
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(v["watcher_pid"], serde_json::Value::Null, "{v}");
    assert_eq!(v["watcher"], "not-running", "{v}");
    let o = e.mv(&["guard", "status"]);
    assert!(
        common::stdout(&o).contains("watcher:  not running"),
        "{}",
        text(&o)
    );
    let o = e.mv(&["guard", "disarm"]);
    assert_eq!(common::success(&o).trim(), "disarmed", "{}", text(&o));
    // bash runs a trap after its current `sleep 0.05`: give a signal time to be recorded.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !rec.exists(),
        "the decoy (pid {pid}) was sent SIGUSR1: {}",
        std::fs::read_to_string(rec).unwrap_or_default()
    );
    let o = e.mv(&["guard", "arm", "--token", "1050:0407:TOKEN42"]);
    common::success(&o);
}

/// Finding 10: a pidfile left by a watcher killed with -9 names a pid that is now a decoy whose
/// command line contains "guard" (and which records SIGUSR1). `status` says not running and
/// `disarm` signals nothing: the lock on the pidfile is free. With the lock held and the decoy's
/// true start time recorded, the executable check still refuses it. A real watcher is found.
#[test]
fn status_and_disarm_do_not_take_a_decoy_for_the_watcher() {
    use std::os::unix::process::CommandExt;
    let e = Env::new();
    std::fs::write(e.toml(), e.good()).unwrap();
    let rec = e.p("usr1.log");
    let ready = e.p("decoy.ready");
    let script = format!(
        "trap 'echo USR1 >> {}' USR1; touch {}; while :; do sleep 0.05; done",
        rec.display(),
        ready.display()
    );
    let mut decoy = common::KillOnDrop(
        Command::new("bash")
            .arg0("guard")
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_for("the decoy's trap", Duration::from_secs(10), || {
        ready.exists()
    });
    let pid = decoy.0.id();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains("guard"));
    let pidfile = e.p("tree/guard/watch.pid");

    // Stale: what the old watcher wrote (the pid alone), nobody holding its lock.
    std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
    assert_not_taken_for_the_watcher(&e, pid, &rec);

    // Locked (here by the test) and with the decoy's true start time: not our executable.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_string();
    std::fs::write(&pidfile, format!("{pid}\n{start}\n")).unwrap();
    let lock = std::fs::File::open(&pidfile).unwrap();
    lock.try_lock().unwrap();
    assert_not_taken_for_the_watcher(&e, pid, &rec);
    drop(lock);
    assert!(decoy.0.try_wait().unwrap().is_none(), "the decoy died");

    // The control: a real watcher takes over the stale file and is found and told to stop.
    let sock = e.p("c.sock");
    let source = format!("unix:{}", sock.display());
    let sys = e.p("sys");
    let mut w = common::KillOnDrop(
        common::mv(&e.p("tree"))
            .args(["guard", "watch", "--source", &source, "--sys"])
            .arg(&sys)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let wpid = w.0.id();
    common::wait_for("the watcher's pidfile", Duration::from_secs(30), || {
        std::fs::read_to_string(&pidfile)
            .is_ok_and(|t| t.lines().next() == Some(wpid.to_string().as_str()))
    });
    let o = e.mv(&["--json", "guard", "status"]);
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(v["watcher_pid"], wpid, "{v}");
    let o = e.mv(&["guard", "disarm"]);
    assert!(
        common::success(&o).contains(&format!("told the watcher (pid {wpid}) to stop")),
        "{}",
        text(&o)
    );
    assert!(w.0.wait().unwrap().success());
    assert!(!pidfile.exists());
    assert!(!rec.exists());
}
