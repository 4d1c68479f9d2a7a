//! `multiverse top` as a person uses it, in tmux: it draws a row per machine, updates, sorts,
//! runs a task from the popup and quits cleanly (terminal restored, exit 0); `--json` gives one
//! status snapshot. The agents are the real `multiverse-agent` binary.
#![allow(clippy::unwrap_used)]

mod common;

use common::{KillOnDrop, MV};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The agent binary sits next to `multiverse` in the target folder; build it if this test runs
/// alone (`cargo test -p multiverse`).
fn agent_bin() -> PathBuf {
    let p = Path::new(MV).with_file_name("multiverse-agent");
    if !p.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        mv_testkit::run_ok(Command::new(cargo).args(["build", "-p", "multiverse-agent"]));
    }
    p
}

fn start_agent(dir: &Path, name: &str, extra: &str) -> (KillOnDrop, PathBuf) {
    let sock = dir.join(format!("{name}.sock"));
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "role = \"service\"\nname = \"{name}\"\n[api]\nsocket = \"{}\"\n[stats]\ninterval = \"200ms\"\n{extra}",
            sock.display()
        ),
    )
    .unwrap();
    let (agent, line) = spawn_agent(&cfg);
    assert!(line.starts_with("multiverse-agent ready"), "{line}");
    (agent, sock)
}

/// Starts the agent on the config file `cfg`; returns it and the first line it printed (the
/// ready line, which names its listening addresses).
fn spawn_agent(cfg: &Path) -> (KillOnDrop, String) {
    let mut child = Command::new(agent_bin())
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let agent = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    (agent, line)
}

struct Tmux(String);
impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new(mv_testkit::require_tool("tmux"));
        c.args(["-L", &self.0]);
        c
    }
    fn capture(&self) -> String {
        mv_testkit::run_ok(self.cmd().args(["capture-pane", "-p", "-t", "top"]))
    }
    fn keys(&self, k: &str) {
        mv_testkit::run_ok(self.cmd().args(["send-keys", "-t", "top", k]));
    }
    fn wait(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(15);
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
}
impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

fn refresh_no(screen: &str) -> u64 {
    screen
        .split("refresh #")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn line_of(screen: &str, name: &str) -> usize {
    screen
        .lines()
        .position(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no row {name}:\n{screen}"))
}

#[test]
fn top_in_tmux_draws_updates_sorts_runs_a_task_and_quits() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("old")).unwrap();
    let stale = d.path().join("old/snap-1");
    std::fs::write(&stale, b"x").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3 * 86400))
        .unwrap();
    let (_a, sa) = start_agent(
        d.path(),
        "alpha",
        &format!(
            "[[tasks]]\nname = \"prune-snapshots\"\nkind = \"prune\"\ndir = \"{}/old\"\nolder_than = \"1d\"\n",
            d.path().display()
        ),
    );
    let (_b, sb) = start_agent(d.path(), "beta", "");

    let t = Tmux(format!("mvtop-{}", std::process::id()));
    let cmdline = format!(
        "{MV} top --socket {} --socket {} --interval 300ms; echo EXIT=$?; sleep 60",
        sa.display(),
        sb.display()
    );
    mv_testkit::run_ok(t.cmd().args([
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "150",
        "-y",
        "24",
        &cmdline,
    ]));

    // Draws: a header and one row per machine.
    let s = t.wait("both rows", |s| {
        s.contains("multiverse top")
            && s.lines().any(|l| l.starts_with("alpha"))
            && s.lines().any(|l| l.starts_with("beta"))
    });
    assert!(
        s.contains("MACHINE") && s.contains("CPU") && s.contains("MEM"),
        "{s}"
    );
    assert!(s.contains("2 machines"), "{s}");
    // Updates.
    let n1 = refresh_no(&s);
    t.wait("a later refresh", |s| refresh_no(s) > n1 + 1);
    // Sorts by name, and again in reverse.
    t.keys("a");
    let s = t.wait("name sort", |s| s.contains("sort: name ↑"));
    assert!(line_of(&s, "alpha") < line_of(&s, "beta"), "{s}");
    t.keys("a");
    let s = t.wait("reverse name sort", |s| s.contains("sort: name ↓"));
    assert!(line_of(&s, "beta") < line_of(&s, "alpha"), "{s}");
    t.keys("a");
    t.wait("name sort again", |s| s.contains("sort: name ↑"));
    // Runs a task of the selected machine (alpha, first row) from the popup.
    t.keys("t");
    t.wait("task popup", |s| {
        s.contains("tasks of alpha") && s.contains("prune-snapshots")
    });
    t.keys("Enter");
    let s = t.wait("task result", |s| s.contains("alpha: prune-snapshots ok:"));
    assert!(s.contains("removed 1"), "{s}");
    assert!(!stale.exists());
    // Quits cleanly: exit 0, the dashboard gone from the screen (alternate screen left).
    t.keys("q");
    let s = t.wait("exit", |s| s.contains("EXIT="));
    assert!(s.contains("EXIT=0"), "{s}");
    assert!(!s.contains("MACHINE"), "screen not restored:\n{s}");
}

#[test]
fn top_json_snapshot_and_down_agents() {
    let d = tempfile::tempdir().unwrap();
    let (_a, sa) = start_agent(d.path(), "gamma", "");
    let missing = d.path().join("missing.sock");
    let out = mv_testkit::run_ok(
        Command::new(MV)
            .args(["top", "--json", "--socket"])
            .arg(&sa)
            .arg("--socket")
            .arg(&missing),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["up"], true);
    assert_eq!(v[0]["name"], "gamma");
    assert_eq!(v[0]["role"], "service");
    assert!(v[0]["mem_total"].as_u64().unwrap() > 0);
    assert_eq!(v[1]["up"], false);
    assert!(v[1]["error"].as_str().unwrap().contains("cannot connect"));
    // --tcp without a token is a usage error.
    let o = Command::new(MV)
        .args(["top", "--tcp", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--token-file"));
}

#[test]
fn top_json_shows_a_row_per_machine_of_the_tree() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("tree");
    mv_testkit::run_ok(Command::new(MV).arg("--root").arg(&root).arg("init"));
    let machines: Vec<String> = std::fs::read_dir(root.join("machines"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(machines.len() >= 3, "{machines:?}");
    let out = mv_testkit::run_ok(
        Command::new(MV)
            .arg("--root")
            .arg(&root)
            .args(["top", "--json"]),
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let endpoints: Vec<&str> = rows
        .iter()
        .map(|r| r["endpoint"].as_str().unwrap())
        .collect();
    // The host's own agent, then every other machine through it (over its agent channel).
    assert_eq!(endpoints[0], "unix:/run/multiverse/agent.sock");
    for m in machines.iter().filter(|m| !m.starts_with("host.")) {
        assert!(
            endpoints.iter().any(|e| e.ends_with(&format!("-> {m}"))),
            "{m} missing from {endpoints:?}"
        );
    }
    // Each down machine says why.
    for r in &rows {
        assert!(
            r["up"] == true || r["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{r}"
        );
    }
}

#[test]
fn top_json_over_tcp_with_the_token_file() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let tok = d.path().join("token");
    std::fs::write(&tok, "tcp-token-for-top-0123456789abcdef0123\n").unwrap();
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = d.path().join("t.toml");
    std::fs::write(
        &cfg,
        format!(
            "role = \"router\"\nname = \"delta\"\n[api]\nsocket = \"\"\ntcp = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n[router]\nnft = false\n",
            tok.display()
        ),
    )
    .unwrap();
    let (_agent, line) = spawn_agent(&cfg);
    let addr = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("tcp="))
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let out = mv_testkit::run_ok(
        Command::new(MV)
            .args(["top", "--json", "--tcp", &addr, "--token-file"])
            .arg(&tok),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["up"], true, "{v}");
    assert_eq!(v[0]["name"], "delta");
    assert_eq!(v[0]["role"], "router");
    // A wrong token: the row is down with the agent's 401.
    let bad = d.path().join("bad");
    std::fs::write(&bad, "nope").unwrap();
    let out = mv_testkit::run_ok(
        Command::new(MV)
            .args(["top", "--json", "--tcp", &addr, "--token-file"])
            .arg(&bad),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["up"], false);
    assert!(v[0]["error"].as_str().unwrap().contains("401"), "{v}");
}
