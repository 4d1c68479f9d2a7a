//! The real `multiverse-agent` binary on the unix socket and TCP: every route against the
//! committed OpenAPI document, `/metrics` strictly parsed and checked against /proc, the token on
//! TCP, hostile HTTP, a broken collector, events, tasks, role extras and config errors.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use mv_agent::{Client, ClientError};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const SERVICE: &str = r#"role = "service"
name = "alpha"
[api]
socket = "{dir}/agent.sock"
header_timeout = "500ms"
max_body_bytes = 64
[stats]
interval = "200ms"
[[tasks]]
name = "prune-old"
kind = "prune"
dir = "{dir}/old"
older_than = "1h"
"#;

fn service_agent() -> (tempfile::TempDir, Agent) {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("old")).unwrap();
    let a = start(d.path(), SERVICE);
    a.wait_for(10, "first sample", || {
        a.client()
            .get_json::<serde_json::Value>("/v1/health")
            .ok()
            .filter(|h| h["samples"].as_u64() >= Some(2))
    });
    (d, a)
}

#[test]
fn openapi_document_matches_the_routes_and_every_route_answers() {
    let (_d, a) = service_agent();
    let c = a.client();
    // The served document is the committed one.
    let (st, served) = c.request("GET", "/v1/openapi.json").unwrap();
    assert_eq!(st, 200);
    let committed =
        std::fs::read(mv_testkit::workspace_root().join("docs/agent-openapi.json")).unwrap();
    assert_eq!(served, committed);
    let doc: serde_json::Value = serde_json::from_slice(&served).unwrap();
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> = mv_agent::ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(
        documented, routed,
        "docs/agent-openapi.json and api::ROUTES differ"
    );

    // Every documented route is really served (a service agent answers role extras of other
    // roles with a 404 that says so, and its own with 200).
    for (method, path) in &documented {
        let p = path
            .replace("{name}", "prune-old")
            .replace("{fqdn}", "guest.multiverse")
            .replace(
                "{path}",
                if method == "POST" {
                    "tasks/prune-old/run"
                } else {
                    "info"
                },
            );
        if p == "/v1/events" {
            continue; // a stream: checked in its own test
        }
        let (st, body) = c.request(method, &p).unwrap();
        let body = String::from_utf8_lossy(&body);
        let own = p.starts_with("/v1/service/")
            || ![
                "/v1/host/",
                "/v1/router/",
                "/v1/controller/",
                "/v1/machines",
            ]
            .iter()
            .any(|x| p.starts_with(x));
        if own {
            assert_eq!(st, 200, "{method} {p}: {body}");
        } else {
            assert_eq!(st, 404, "{method} {p}: {body}");
            assert!(
                body.contains("agents; this is a service agent"),
                "{method} {p}: {body}"
            );
        }
    }
    // And something not documented is not.
    assert_eq!(c.request("GET", "/v1/nope").unwrap().0, 404);
    assert_eq!(c.request("DELETE", "/v1/stats").unwrap().0, 405);
}

#[test]
fn unix_socket_is_0660_and_info_names_the_agent() {
    let (_d, a) = service_agent();
    let mode = std::fs::metadata(&a.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let info = a.client().info().unwrap();
    assert_eq!(info.name, "alpha");
    assert_eq!(info.role, "service");
    assert_eq!(info.interval_ms, 200);
}

fn proc_value(file: &str, key: &str) -> u64 {
    let s = std::fs::read_to_string(file).unwrap();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn socket_group_from_config() {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let a = start(
        d.path(),
        "role = \"service\"\n[api]\nsocket = \"{dir}/g.sock\"\ngroup = \"daemon\"\n",
    );
    let md = std::fs::metadata(&a.socket).unwrap();
    assert_eq!(md.gid(), 1, "group daemon is gid 1 on Debian");
    assert_eq!(md.mode() & 0o777, 0o660);
    let (code, err) = run_to_exit(
        d.path(),
        "role = \"service\"\n[api]\nsocket = \"{dir}/h.sock\"\ngroup = \"no-such-group-mv\"\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains("no-such-group-mv"), "{err}");
}

#[test]
fn metrics_parse_strictly_and_agree_with_proc() {
    let (_d, a) = service_agent();
    let (st, body) = a.client().request("GET", "/metrics").unwrap();
    assert_eq!(st, 200);
    let text = String::from_utf8(body).unwrap();
    let samples = parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    let mem_total = metric(&samples, "multiverse_memory_total_bytes", &[])
        .unwrap()
        .value;
    assert_eq!(
        mem_total as u64,
        proc_value("/proc/meminfo", "MemTotal:") * 1024
    );
    let avail = metric(&samples, "multiverse_memory_available_bytes", &[])
        .unwrap()
        .value;
    let avail_now = (proc_value("/proc/meminfo", "MemAvailable:") * 1024) as f64;
    // Tolerances: the sample is up to one interval (200 ms) old and other tests run meanwhile.
    assert!(
        (avail - avail_now).abs() < 0.10 * mem_total,
        "{avail} vs {avail_now}"
    );

    let cores = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    let user_series: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "multiverse_cpu_seconds_total" && s.labels["mode"] == "user")
        .collect();
    assert_eq!(user_series.len(), cores);

    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let m_up = metric(&samples, "multiverse_uptime_seconds", &[])
        .unwrap()
        .value;
    assert!(
        m_up <= uptime + 0.01 && uptime - m_up < 2.0,
        "{m_up} vs {uptime}"
    );

    let load1: f64 = std::fs::read_to_string("/proc/loadavg")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let m_load = metric(&samples, "multiverse_load1", &[]).unwrap().value;
    assert!((m_load - load1).abs() < 1.0, "{m_load} vs {load1}");

    // Counters are monotonic and never ahead of the kernel.
    let net = std::fs::read_to_string("/proc/net/dev").unwrap();
    let lo_rx: u64 = net
        .lines()
        .find(|l| l.trim_start().starts_with("lo:"))
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let m_lo = metric(
        &samples,
        "multiverse_network_receive_bytes_total",
        &[("device", "lo")],
    )
    .unwrap()
    .value;
    assert!(m_lo as u64 <= lo_rx, "{m_lo} vs {lo_rx}");

    let procs = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .count() as f64;
    let m_procs = metric(&samples, "multiverse_processes", &[]).unwrap().value;
    assert!(
        (m_procs - procs).abs() < (0.25 * procs).max(40.0),
        "{m_procs} vs {procs}"
    );

    for c in ["cpu", "memory", "system", "disks", "network", "services"] {
        assert_eq!(
            metric(&samples, "multiverse_collector_up", &[("collector", c)])
                .unwrap()
                .value,
            1.0,
            "{c}"
        );
    }
    let root = metric(
        &samples,
        "multiverse_filesystem_size_bytes",
        &[("mountpoint", "/")],
    );
    assert!(
        root.is_some_and(|s| s.value > 0.0),
        "root filesystem missing"
    );
}

#[test]
fn tcp_needs_the_bearer_token() {
    let d = tempfile::tempdir().unwrap();
    let tok = d.path().join("token");
    std::fs::write(&tok, "s3cret-token-0123456789abcdef0123456789\n").unwrap();
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).unwrap();
    let a = start(
        d.path(),
        "role = \"controller\"\n[api]\nsocket = \"\"\ntcp = \"127.0.0.1:0\"\ntoken_file = \"{dir}/token\"\n[stats]\ninterval = \"200ms\"\n",
    );
    let addr = a.tcp.clone().expect("tcp address in the ready line");
    let anon = Client::tcp(&addr, None);
    let (st, body) = anon.request("GET", "/v1/health").unwrap();
    assert_eq!(st, 401, "{}", String::from_utf8_lossy(&body));
    let wrong = Client::tcp(
        &addr,
        Some(mv_core::Secret::new(
            "s3cret-token-0123456789abcdef0123456788".to_string(),
        )),
    );
    assert_eq!(wrong.request("GET", "/metrics").unwrap().0, 401);
    let prefix = Client::tcp(&addr, Some(mv_core::Secret::new("s3cret".to_string())));
    assert_eq!(prefix.request("GET", "/v1/info").unwrap().0, 401);
    let good = Client::tcp(
        &addr,
        Some(mv_core::Secret::new(
            "s3cret-token-0123456789abcdef0123456789".to_string(),
        )),
    );
    let info = good.info().unwrap();
    assert_eq!(info.role, "controller");
    // The 401 carries the challenge header.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /v1/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{out}"
    );
}

#[test]
fn token_file_readable_by_others_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let tok = d.path().join("token");
    std::fs::write(&tok, "x").unwrap();
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, err) = run_to_exit(
        d.path(),
        "role = \"service\"\n[api]\nsocket = \"\"\ntcp = \"127.0.0.1:0\"\ntoken_file = \"{dir}/token\"\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn hostile_http_costs_bounded_memory() {
    let (_d, a) = service_agent();
    let t = Duration::from_secs(3);
    // Garbage.
    let r = raw_unix(&a.socket, b"\x16\x03\x01 not http at all\r\n\r\n", t);
    assert_eq!(status_of(&r), 400, "{}", String::from_utf8_lossy(&r));
    // A header far larger than the read buffer: refused (431), not buffered.
    let mut big = b"GET /v1/info HTTP/1.1\r\nX-Long: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 200_000));
    big.extend_from_slice(b"\r\n\r\n");
    let r = raw_unix(&a.socket, &big, t);
    assert!(
        r.is_empty() || status_of(&r) == 431,
        "{}",
        String::from_utf8_lossy(&r[..r.len().min(200)])
    );
    // A body over the limit: 413 before it is read.
    let r = raw_unix(
        &a.socket,
        b"POST /v1/tasks/prune-old/run HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nabc",
        t,
    );
    assert_eq!(status_of(&r), 413, "{}", String::from_utf8_lossy(&r));
    // A body within the limit is refused by the router (no route takes one).
    let r = raw_unix(&a.socket, b"POST /v1/tasks/prune-old/run HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc", t);
    assert_eq!(status_of(&r), 400, "{}", String::from_utf8_lossy(&r));
    // A slow client that never finishes its headers is dropped after header_timeout (500ms).
    let mut s = std::os::unix::net::UnixStream::connect(&a.socket).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "slow client was not dropped"
    );

    // Many of the above: resident memory stays flat.
    let before = a.rss_kib();
    for _ in 0..200 {
        raw_unix(&a.socket, &big, t);
        raw_unix(&a.socket, b"GARBAGE\r\n\r\n", t);
    }
    let after = a.rss_kib();
    assert!(
        after < before + 4096,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // And the agent still answers.
    assert!(a.client().info().is_ok());
}

#[test]
fn a_broken_collector_marks_only_its_section_stale() {
    let d = tempfile::tempdir().unwrap();
    let fake = d.path().join("proc");
    std::fs::create_dir_all(fake.join("net")).unwrap();
    for f in ["stat", "meminfo", "loadavg", "uptime", "mounts"] {
        std::fs::copy(format!("/proc/{f}"), fake.join(f)).unwrap();
    }
    // net/dev is missing (unreadable); diskstats is a FIFO nobody writes to: reading it blocks
    // forever, which only the per-collector timeout can end.
    mv_testkit::run_ok(std::process::Command::new("mkfifo").arg(fake.join("diskstats")));
    let a = start(
        d.path(),
        "role = \"service\"\n[api]\nsocket = \"{dir}/a.sock\"\n[stats]\ninterval = \"200ms\"\ncollector_timeout = \"300ms\"\nproc = \"{dir}/proc\"\n",
    );
    let s = a.wait_for(10, "three samples", || {
        a.client().stats().ok().filter(|s| s.samples >= 3)
    });
    assert!(!s.cpu.stale && s.cpu.data.is_some());
    assert!(!s.memory.stale && s.memory.data.is_some());
    assert!(!s.system.stale);
    assert!(s.network.stale);
    let err = s.network.error.clone().unwrap();
    assert!(err.contains("net/dev"), "{err}");
    assert!(s.disks.stale);
    let err = s.disks.error.clone().unwrap();
    assert!(
        err.contains("timed out") || err.contains("still blocked"),
        "{err}"
    );
    let h: serde_json::Value = a.client().get_json("/v1/health").unwrap();
    assert_eq!(h["status"], "degraded");
    let stale: BTreeSet<&str> = h["stale"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(stale, BTreeSet::from(["disks", "network"]));
    // The stuck collector is not restarted every tick (one blocked thread, not one per tick).
    let threads = || {
        std::fs::read_dir(format!("/proc/{}/task", a.pid()))
            .unwrap()
            .count()
    };
    a.wait_for(
        10,
        "the disks collector to be reported as still blocked",
        || {
            a.client()
                .stats()
                .ok()?
                .disks
                .error
                .filter(|e| e.contains("still blocked"))
        },
    );
    let t1 = threads();
    let s1 = a.client().stats().unwrap().samples;
    a.wait_for(10, "ten more ticks", || {
        (a.client().stats().ok()?.samples >= s1 + 10).then_some(())
    });
    let t2 = threads();
    assert!(t2 <= t1 + 1, "threads grew from {t1} to {t2}");
    let (_, m) = a.client().request("GET", "/metrics").unwrap();
    let samples = parse_prometheus(&String::from_utf8(m).unwrap()).unwrap();
    assert_eq!(
        metric(
            &samples,
            "multiverse_collector_up",
            &[("collector", "disks")]
        )
        .unwrap()
        .value,
        0.0
    );
    assert_eq!(
        metric(&samples, "multiverse_collector_up", &[("collector", "cpu")])
            .unwrap()
            .value,
        1.0
    );
}

#[test]
fn events_stream_samples() {
    let (_d, a) = service_agent();
    let mut s = std::os::unix::net::UnixStream::connect(&a.socket).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("events within 5s");
        assert!(n > 0, "stream closed");
        got.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&got)
            .matches("event: sample")
            .count()
            >= 2
        {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/event-stream"), "{text}");
    // A task run shows up as an event too.
    a.client().run_task("prune-old", false).unwrap();
    let mut more = Vec::new();
    while !String::from_utf8_lossy(&more).contains("event: task") {
        let n = s.read(&mut buf).expect("task event within 5s");
        assert!(n > 0);
        more.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn tasks_run_on_demand_dry_run_first_and_are_idempotent() {
    let (d, a) = service_agent();
    let old = d.path().join("old/overlay-1.qcow2");
    std::fs::write(&old, b"x").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let c = a.client();
    let plan = c.run_task("prune-old", true).unwrap();
    assert!(plan.ok && plan.dry_run);
    assert_eq!(
        plan.details,
        vec![format!("would remove {}", old.display())]
    );
    assert!(old.exists());
    let done = c.run_task("prune-old", false).unwrap();
    assert_eq!(done.details, vec![format!("removed {}", old.display())]);
    assert!(!old.exists());
    let again = c.run_task("prune-old", false).unwrap();
    assert!(
        again.details.is_empty() && again.summary.starts_with("nothing to prune"),
        "{}",
        again.summary
    );
    let list = c.tasks().unwrap();
    assert_eq!(
        list[0].last.len(),
        2,
        "dry runs are not recorded as results"
    );
    match c.run_task("rm-rf", false) {
        Err(ClientError::Status {
            status: 404,
            message,
        }) => assert!(message.contains("rm-rf")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn router_and_service_extras() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("leases"),
        "1900000000 52:54:00:12:34:56 10.0.0.50 galaxy 01:52\n0 52:54:00:aa:bb:cc 10.0.0.51 * *\n",
    )
    .unwrap();
    let r = start(
        d.path(),
        "role = \"router\"\n[api]\nsocket = \"{dir}/r.sock\"\n[stats]\ninterval = \"200ms\"\n[router]\nleases = \"{dir}/leases\"\nnft = false\nvpn_interface = \"lo\"\ntor_socks = \"127.0.0.1:1\"\n",
    );
    let st: serde_json::Value = r.wait_for(10, "router section", || {
        r.client()
            .get_json::<serde_json::Value>("/v1/router/status")
            .ok()
            .filter(|v| !v["data"].is_null())
    });
    assert_eq!(st["data"]["leases"].as_array().unwrap().len(), 2);
    assert_eq!(st["data"]["leases"][0]["hostname"], "galaxy");
    assert_eq!(st["data"]["vpn_up"], true);
    assert_eq!(st["data"]["tor_up"], false);

    // Service states through a stand-in `systemctl` on PATH that knows one running service.
    let d2 = tempfile::tempdir().unwrap();
    let bin = d2.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let script = bin.join("systemctl");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/calls\"\n[ \"$3\" = ssh ]\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let s = start_env(
        d2.path(),
        "role = \"service\"\n[api]\nsocket = \"{dir}/s.sock\"\n[stats]\ninterval = \"200ms\"\n[services]\nmanager = \"systemd\"\nnames = [\"ssh\", \"nginx\"]\n",
        &[("PATH", &path)],
    );
    let sv: serde_json::Value = s.wait_for(10, "services section", || {
        s.client()
            .get_json::<serde_json::Value>("/v1/service/services")
            .ok()
            .filter(|v| !v["data"].is_null())
    });
    assert_eq!(
        sv["data"][0],
        serde_json::json!({"name": "ssh", "state": "running"})
    );
    assert_eq!(
        sv["data"][1],
        serde_json::json!({"name": "nginx", "state": "stopped"})
    );
    let calls = std::fs::read_to_string(bin.join("calls")).unwrap();
    assert!(
        calls.lines().any(|l| l == "is-active --quiet ssh"),
        "{calls}"
    );
}

#[test]
fn config_errors_exit_2_with_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let (code, err) = run_to_exit(d.path(), "role = \"service\"\n[api]\nsockte = \"x\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("agent.toml:3:"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    let (code, err) = run_to_exit(d.path(), "role = \"toaster\"\n");
    assert_eq!(code, 2, "{err}");
    // A second agent on the same socket is refused, the first keeps it.
    let a = start(
        d.path(),
        "role = \"service\"\n[api]\nsocket = \"{dir}/one.sock\"\n",
    );
    let (code, err) = run_to_exit(
        d.path(),
        "role = \"service\"\n[api]\nsocket = \"{dir}/one.sock\"\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains("in use"), "{err}");
    assert!(a.client().info().is_ok());
}

#[test]
fn check_updates_runs_the_real_apt_and_rotate_logs_rotates() {
    mv_testkit::require_tool("apt-get");
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("agent.log");
    std::fs::write(&log, vec![b'x'; 2000]).unwrap();
    let a = start(
        d.path(),
        "role = \"service\"\n[api]\nsocket = \"{dir}/a.sock\"\n[[tasks]]\nname = \"updates\"\nkind = \"check-updates\"\nmanager = \"apt\"\ntimeout = \"60s\"\n[[tasks]]\nname = \"rotate\"\nkind = \"rotate-logs\"\nfiles = [\"{dir}/agent.log\"]\nmax_bytes = 1000\nkeep = 2\n",
    );
    // A client that gives up mid-run does not cancel the run: it finishes and is recorded.
    let impatient = a.client().with_timeout(Duration::from_millis(50));
    assert!(impatient.run_task("updates", false).is_err());
    let c = a.client().with_timeout(Duration::from_secs(90));
    a.wait_for(60, "the abandoned run to finish", || {
        let t = c.tasks().ok()?;
        let u = t.iter().find(|t| t.name == "updates")?;
        (!u.running && u.last.len() == 1).then_some(())
    });
    let r = c.run_task("updates", false).unwrap();
    assert!(r.ok, "{}", r.summary);
    assert!(r.summary.ends_with("update(s) pending"), "{}", r.summary);
    assert_eq!(
        r.summary
            .split(' ')
            .next()
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        r.details.len()
    );
    let r = c.run_task("rotate", false).unwrap();
    assert!(r.ok && r.details.len() == 1, "{r:?}");
    assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
    assert_eq!(
        std::fs::metadata(d.path().join("agent.log.1"))
            .unwrap()
            .len(),
        2000
    );
    let again = c.run_task("rotate", false).unwrap();
    assert!(again.details.is_empty(), "{again:?}");
    let tasks = c.tasks().unwrap();
    assert_eq!(tasks.iter().map(|t| t.last.len()).sum::<usize>(), 4);
}

#[test]
fn service_files_start_the_agent_which_checks_its_config() {
    let root = mv_testkit::workspace_root();
    // OpenRC: valid shell, runs the agent with --check first.
    let openrc = root.join("contrib/openrc/multiverse-agent");
    mv_testkit::run_ok(std::process::Command::new("sh").arg("-n").arg(&openrc));
    let text = std::fs::read_to_string(&openrc).unwrap();
    assert!(text.starts_with("#!/sbin/openrc-run"));
    assert!(text.contains("--check") && text.contains("/etc/multiverse/agent.toml"));
    // systemd: the unit verifies with the real binary in place of /usr/bin/multiverse-agent.
    let unit =
        std::fs::read_to_string(root.join("contrib/systemd/multiverse-agent.service")).unwrap();
    // One process start at boot (each costs seconds under TCG): the agent checks its own config.
    assert!(
        unit.contains("ExecStart=/usr/bin/multiverse-agent --config /etc/multiverse/agent.toml\n")
    );
    assert!(!unit.contains("ExecStartPre="));
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("multiverse-agent.service");
    std::fs::write(&f, unit.replace("/usr/bin/multiverse-agent", BIN)).unwrap();
    let sa = mv_testkit::require_tool("systemd-analyze");
    let out = std::process::Command::new(sa)
        .arg("verify")
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains(f.to_str().unwrap()),
        "{err}"
    );
    // And --check itself: ok on a good config, exit 2 on a bad one.
    std::fs::write(d.path().join("good.toml"), "role = \"router\"\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["--check", "--config"])
        .arg(d.path().join("good.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (role router)"));
    let out = std::process::Command::new(BIN)
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn connections_beyond_the_limit_wait_in_the_backlog() {
    let d = tempfile::tempdir().unwrap();
    let a = start(
        d.path(),
        "role = \"service\"\n[api]\nsocket = \"{dir}/a.sock\"\nmax_connections = 2\nheader_timeout = \"10s\"\n",
    );
    // Two clients that connect and say nothing hold both slots.
    let idle1 = std::os::unix::net::UnixStream::connect(&a.socket).unwrap();
    let idle2 = std::os::unix::net::UnixStream::connect(&a.socket).unwrap();
    // Let the agent accept them (a served request on a third connection proves the loop ran).
    a.wait_for(5, "both idle connections accepted", || {
        let c = a.client().with_timeout(Duration::from_millis(300));
        c.info().err().map(|_| ())
    });
    // A third is not served while they are held...
    let c = a.client().with_timeout(Duration::from_millis(500));
    assert!(c.info().is_err(), "served beyond max_connections");
    // ...and is as soon as one goes away.
    drop(idle1);
    a.wait_for(5, "a free slot", || a.client().info().ok());
    drop(idle2);
}
