//! Security tests: the agent (findings 6, 7, 8 and the agent items of 13 in docs/security.md).
//!
//! Each test starts the real `multiverse-agent` binary (the one beside `multiverse` in the target
//! folder: run `cargo build -p multiverse-agent` first so it is current) on a unix socket and,
//! where the attack needs it, a TCP listener on loopback, then replays the attack at a bounded
//! scale and checks answers and status codes. The only timing assertion is a generous deadline:
//! a request the attack used to starve must be answered within [`DEADLINE`].
//!
//! - `sse_subscribers_leave_the_socket_answering`: 64 `/v1/events` subscribers (the old default
//!   slot count) used to hold every slot forever; now only `max_event_streams` get a stream.
//! - `partial_tcp_headers_leave_the_unix_socket_answering`: 500 unauthenticated partial headers
//!   on TCP used to take the slots the unix socket shares; now each transport has its own and a
//!   TCP peer holds at most `max_connections_per_peer`.
//! - `nested_machine_paths_are_refused_before_any_recursion`: a 15.6 KB
//!   `/v1/machines/a.b/machines/...` path cost quadratic memory; now 414 past the target cap and
//!   400 for any nesting, resident memory flat.
//! - `duplicate_query_parameters_are_refused`, `check_and_daemon_agree_on_the_token_file`,
//!   `short_tokens_are_refused`, `a_dry_run_does_not_mark_the_task_running`: item 13.

use super::common::KillOnDrop;
use mv_agent::Client;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starved request may take before the attack counts as having worked.
const DEADLINE: Duration = Duration::from_secs(5);

/// A token of the minimum accepted length and more (40 bytes).
const TOKEN: &str = "0123456789abcdef0123456789abcdef-sec-test";

/// The agent binary beside `multiverse`; built if this suite runs alone.
fn agent_bin() -> PathBuf {
    let p = Path::new(super::common::MV).with_file_name("multiverse-agent");
    if !p.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        mv_testkit::run_ok(Command::new(cargo).args(["build", "-p", "multiverse-agent"]));
    }
    p
}

/// A running agent in its own temp folder, killed (by PID) on drop.
struct Agent {
    child: KillOnDrop,
    dir: tempfile::TempDir,
    socket: PathBuf,
    tcp: Option<String>,
}

impl Agent {
    fn pid(&self) -> u32 {
        self.child.0.id()
    }
    fn unix(&self) -> Client {
        Client::unix(&self.socket).with_timeout(DEADLINE)
    }
    fn tcp_client(&self) -> Client {
        let addr = self.tcp.clone().expect("a TCP listener");
        Client::tcp(addr, Some(mv_core::Secret::new(TOKEN.to_string()))).with_timeout(DEADLINE)
    }
    /// Waits for the first sample, so that `/metrics` has content.
    fn sampled(self) -> Agent {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let h = self.unix().get_json::<serde_json::Value>("/v1/health");
            if h.is_ok_and(|h| h["samples"].as_u64() >= Some(1)) {
                return self;
            }
            assert!(Instant::now() < end, "no first sample");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
    /// Sockets the agent holds open (listeners and connections).
    fn sockets(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|l| l.to_string_lossy().starts_with("socket:"))
            .count()
    }
}

/// Writes the config (`{dir}` is the temp folder, which also holds a 0600 `token` file with
/// [`TOKEN`]) and starts the agent with `env`; waits for its ready line.
fn start(config: &str, env: &[(&str, String)]) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("token");
    std::fs::write(&tok, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        config.replace("{dir}", &dir.path().display().to_string()),
    )
    .unwrap();
    let mut cmd = Command::new(agent_bin());
    cmd.arg("--config")
        .arg(&cfg)
        .env_remove("MULTIVERSE_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(line.starts_with("multiverse-agent ready"), "{line:?}");
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{k}=")))
            .map(String::from)
    };
    Agent {
        socket: field("unix").map(PathBuf::from).unwrap_or_default(),
        tcp: field("tcp"),
        child,
        dir,
    }
}

/// Runs the binary with `args` on `config` (in `dir`) and waits at most 10 s for it to exit;
/// returns its exit code (None: it was still running, so it accepted the config) and stderr.
fn run_bounded(dir: &Path, config: &str, args: &[&str]) -> (Option<i32>, String) {
    let cfg = dir.join("agent.toml");
    std::fs::write(&cfg, config.replace("{dir}", &dir.display().to_string())).unwrap();
    let mut child = Command::new(agent_bin())
        .args(args)
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return (None, String::new());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (code, err)
}

/// The status code of the first line a server wrote on `s` (0 if none within the deadline).
fn first_status(s: &mut impl Read) -> u16 {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Finding 6: event-stream subscribers held every connection slot forever. 64 subscribers (the
/// default `max_connections`) now get at most `max_event_streams` (8) streams; the others a 503
/// and a closed connection, and `/metrics` on the same socket still answers.
#[test]
fn sse_subscribers_leave_the_socket_answering() {
    let a = start(
        "role = \"service\"\n[api]\nsocket = \"{dir}/a.sock\"\nheader_timeout = \"10s\"\n[stats]\ninterval = \"200ms\"\n",
        &[],
    )
    .sampled();
    let mut subs: Vec<std::os::unix::net::UnixStream> = (0..64)
        .map(|_| {
            let mut s = std::os::unix::net::UnixStream::connect(&a.socket).unwrap();
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    let statuses: Vec<u16> = subs.iter_mut().map(first_status).collect();
    let streams = statuses.iter().filter(|&&s| s == 200).count();
    let refused = statuses.iter().filter(|&&s| s == 503).count();
    assert_eq!(
        (streams, refused),
        (8, 56),
        "event streams granted/refused: {statuses:?}"
    );
    // Every subscriber still connected, and the socket answers other routes.
    let (st, body) = a.unix().request("GET", "/metrics").unwrap();
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&body).contains("# TYPE"));
    // A refused subscriber's connection was closed, not kept.
    let mut rest = Vec::new();
    let i = statuses.iter().position(|&s| s == 503).unwrap();
    assert!(
        subs[i].read_to_end(&mut rest).is_ok(),
        "a refused subscriber's connection is still open"
    );
    // Once the streams go away, their slots come back.
    drop(subs);
    let end = Instant::now() + DEADLINE;
    loop {
        let mut s = std::os::unix::net::UnixStream::connect(&a.socket).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        if first_status(&mut s) == 200 {
            break;
        }
        assert!(Instant::now() < end, "event stream slots not released");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Finding 7: unauthenticated TCP clients sending partial headers took the connection slots the
/// unix socket shares. With 500 of them open, `/metrics` on the unix socket answers at once, and
/// the agent holds at most `max_connections_per_peer` (8) of them.
#[test]
fn partial_tcp_headers_leave_the_unix_socket_answering() {
    let a = start(
        "role = \"service\"\n[api]\nsocket = \"{dir}/a.sock\"\ntcp = \"127.0.0.1:0\"\ntoken_file = \"{dir}/token\"\nheader_timeout = \"10s\"\n",
        &[],
    )
    .sampled();
    let addr = a.tcp.clone().unwrap();
    let held_before = a.sockets();
    let attackers: Vec<std::net::TcpStream> = (0..500)
        .filter_map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).ok()?;
            // Refused connections may already be closed: a failed write is fine.
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
            Some(s)
        })
        .collect();
    assert!(attackers.len() >= 450, "only {} connected", attackers.len());
    let (st, body) = a
        .unix()
        .request("GET", "/metrics")
        .expect("the unix socket answers while TCP is flooded");
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&body).contains("# TYPE"));
    let held = a.sockets().saturating_sub(held_before);
    assert!(
        held <= 8 + 2,
        "the agent holds {held} attacker connections from one peer"
    );
    // The attacker gone, authenticated TCP works again.
    drop(attackers);
    let end = Instant::now() + DEADLINE;
    loop {
        match a.tcp_client().request("GET", "/metrics") {
            Ok((200, _)) => break,
            other => assert!(Instant::now() < end, "TCP not back: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Finding 8: `/v1/machines/a.b/machines/a.b/...` was parsed recursively, each level copying the
/// rest of the path: a 15.6 KB target cost ~43 MB that stayed resident. Now a target over the cap
/// is 414 and any nesting 400, before any recursion; memory stays flat.
#[test]
fn nested_machine_paths_are_refused_before_any_recursion() {
    let a = start(
        "role = \"service\"\n[api]\nsocket = \"{dir}/a.sock\"\n",
        &[],
    );
    let c = a.unix();
    assert_eq!(c.request("GET", "/v1/health").unwrap().0, 200);
    let before = a.rss_kib();
    let nested = |levels: usize| {
        let mut p = "/v1/machines".to_string();
        for _ in 0..levels {
            p.push_str("/a.b/machines");
        }
        p.push_str("/a.b/stats");
        p
    };
    let long = nested(1200);
    assert!(long.len() > 15_000 && long.len() < 16_000, "{}", long.len());
    for _ in 0..3 {
        let (st, body) = c.request("GET", &long).unwrap();
        assert_eq!(st, 414, "{}", String::from_utf8_lossy(&body));
    }
    for levels in [1, 2, 100] {
        let (st, body) = c.request("GET", &nested(levels)).unwrap();
        assert_eq!(st, 400, "{levels}: {}", String::from_utf8_lossy(&body));
    }
    let after = a.rss_kib();
    assert!(
        after < before + 4096,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // A plain machine route still parses (and, on a service agent, is a role 404).
    assert_eq!(c.request("GET", "/v1/machines/a.b/stats").unwrap().0, 404);
}

const PRUNE: &str = "role = \"service\"\n[api]\nsocket = \"{dir}/a.sock\"\n[[tasks]]\nname = \"prune-old\"\nkind = \"prune\"\ndir = \"{dir}/old\"\nolder_than = \"1h\"\n";

/// Item 13: `?dry_run=0&dry_run=1` ran the task for real (the first value won, where a proxy or
/// a person reads the last). Any repeated query parameter is now 400 and nothing runs.
#[test]
fn duplicate_query_parameters_are_refused() {
    let a = start(PRUNE, &[]);
    let old = a.dir.path().join("old");
    std::fs::create_dir(&old).unwrap();
    let f = old.join("overlay.qcow2");
    std::fs::write(&f, b"x").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let c = a.unix();
    for q in [
        "dry_run=0&dry_run=1",
        "dry_run=1&dry_run=1",
        "dry_run=1&dry_run",
    ] {
        let (st, body) = c
            .request("POST", &format!("/v1/tasks/prune-old/run?{q}"))
            .unwrap();
        assert_eq!(st, 400, "{q}: {}", String::from_utf8_lossy(&body));
        assert!(f.exists(), "{q} ran the task");
    }
    // Through the machines route too (parsed by the same function).
    let (st, _) = c
        .request(
            "POST",
            "/v1/machines/a.b/tasks/prune-old/run?dry_run=0&dry_run=1",
        )
        .unwrap();
    assert_eq!(st, 400);
    // One value still works.
    let (st, _) = c
        .request("POST", "/v1/tasks/prune-old/run?dry_run=1")
        .unwrap();
    assert_eq!(st, 200);
    assert!(f.exists());
}

const TCP_TOKEN_CFG: &str =
    "role = \"service\"\n[api]\nsocket = \"\"\ntcp = \"127.0.0.1:0\"\ntoken_file = \"{dir}/tok\"\n";

fn token_file(dir: &Path, content: &str, mode: u32) {
    let p = dir.join("tok");
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Item 13: `--check` accepted a 0644 token file that the daemon then refused. Both now run the
/// same code; each token problem is exit 2 from both, and a good file passes both.
#[test]
fn check_and_daemon_agree_on_the_token_file() {
    let d = tempfile::tempdir().unwrap();
    token_file(d.path(), TOKEN, 0o644);
    let (code, err) = run_bounded(d.path(), TCP_TOKEN_CFG, &["--check"]);
    assert_eq!(code, Some(2), "--check passed a 0644 token file: {err}");
    assert!(err.contains("chmod 600"), "{err}");
    let (code, err) = run_bounded(d.path(), TCP_TOKEN_CFG, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    // A missing file: both refuse.
    std::fs::remove_file(d.path().join("tok")).unwrap();
    assert_eq!(
        run_bounded(d.path(), TCP_TOKEN_CFG, &["--check"]).0,
        Some(2)
    );
    // A good one passes.
    token_file(d.path(), TOKEN, 0o600);
    let (code, err) = run_bounded(d.path(), TCP_TOKEN_CFG, &["--check"]);
    assert_eq!(code, Some(0), "{err}");
}

/// Item 13: a 2-byte token was accepted. Tokens under 32 bytes are refused by the daemon and by
/// `--check`, with the rule in the message.
#[test]
fn short_tokens_are_refused() {
    let d = tempfile::tempdir().unwrap();
    for short in ["ab", "0123456789abcdef0123456789abcde", "  ab  \n"] {
        token_file(d.path(), short, 0o600);
        let (code, err) = run_bounded(d.path(), TCP_TOKEN_CFG, &[]);
        assert_eq!(code, Some(2), "{short:?} accepted: {err}");
        assert!(err.contains("at least 32"), "{err}");
        let (code, _) = run_bounded(d.path(), TCP_TOKEN_CFG, &["--check"]);
        assert_eq!(code, Some(2), "{short:?} passed --check");
    }
    // 32 bytes is enough.
    token_file(d.path(), "0123456789abcdef0123456789abcdef", 0o600);
    assert_eq!(
        run_bounded(d.path(), TCP_TOKEN_CFG, &["--check"]).0,
        Some(0)
    );
}

/// Item 13: a dry run marked the task running, so a real run during it was refused (409) and the
/// scheduler skipped it. The task's helper (`apt-get`, a stand-in on PATH that takes 2 s) shows
/// the dry run in flight; meanwhile the task is listed as not running and a real run goes ahead.
#[test]
fn a_dry_run_does_not_mark_the_task_running() {
    let bin = tempfile::tempdir().unwrap();
    let mark = bin.path().join("started");
    let fake = bin.path().join("apt-get");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho $$ >> '{}'\nsleep 2\necho 'Inst libc6 [1] (2 Debian:12)'\n",
            mark.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let a = start(
        "role = \"service\"\n[api]\nsocket = \"{dir}/a.sock\"\n[[tasks]]\nname = \"updates\"\nkind = \"check-updates\"\nmanager = \"apt\"\n",
        &[("PATH", path)],
    );
    let c = a.unix().with_timeout(Duration::from_secs(15));
    let dry = {
        let c = c.clone();
        std::thread::spawn(move || c.request("POST", "/v1/tasks/updates/run?dry_run=true"))
    };
    let end = Instant::now() + DEADLINE;
    while !mark.exists() {
        assert!(Instant::now() < end, "the dry run never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let tasks = c.tasks().unwrap();
    assert!(!tasks[0].running, "a dry run is listed as running");
    let (st, body) = c.request("POST", "/v1/tasks/updates/run").unwrap();
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let (st, _) = dry.join().unwrap().unwrap();
    assert_eq!(st, 200);
    let tasks = c.tasks().unwrap();
    assert!(!tasks[0].running);
    assert_eq!(tasks[0].last.len(), 1, "only the real run is recorded");
}
