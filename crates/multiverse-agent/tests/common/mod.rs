//! Shared helpers for the agent integration tests: start the real `multiverse-agent` binary with
//! a config in a fresh temp dir, wait for its ready line, kill it by PID on drop; a strict
//! Prometheus text-format parser; raw HTTP over sockets.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_multiverse-agent");

/// A running agent.
pub struct Agent {
    pub child: Child,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub tcp: Option<String>,
    pub ready: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn client(&self) -> mv_agent::Client {
        mv_agent::Client::unix(&self.socket)
    }
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    }
    /// Polls until `f` holds (or panics after `secs`).
    pub fn wait_for<T>(&self, secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Writes `config` (with `{dir}` replaced by the temp dir) and starts the agent.
pub fn start(dir: &Path, config: &str) -> Agent {
    start_env(dir, config, &[])
}

pub fn start_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Agent {
    let cfg = config.replace("{dir}", &dir.display().to_string());
    let path = dir.join("agent.toml");
    std::fs::write(&path, &cfg).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let ready = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(l) if l.starts_with("multiverse-agent ready") => l,
        other => {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("agent did not start: {other:?}\n{err}");
        }
    };
    let field = |k: &str| {
        ready
            .split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{k}=")))
            .map(String::from)
    };
    Agent {
        socket: field("unix").map(PathBuf::from).unwrap_or_default(),
        tcp: field("tcp"),
        dir: dir.to_path_buf(),
        child,
        ready: ready.clone(),
    }
}

/// Runs the binary to completion (for config errors); returns (code, stderr).
pub fn run_to_exit(dir: &Path, config: &str) -> (i32, String) {
    let path = dir.join("agent.toml");
    std::fs::write(&path, config.replace("{dir}", &dir.display().to_string())).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends raw bytes on a fresh unix connection and reads the reply until the server closes or
/// `timeout` passes.
pub fn raw_unix(socket: &Path, data: &[u8], timeout: Duration) -> Vec<u8> {
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    let _ = s.write_all(data);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

pub fn status_of(reply: &[u8]) -> u16 {
    let s = String::from_utf8_lossy(reply);
    s.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// One sample of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A strict parser of the Prometheus text format 0.0.4: every sample's family must be declared
/// by `# TYPE` before it, types must be known, names and label names must match the grammar,
/// label values must be properly escaped, values must be floats, no duplicate series, and the
/// text must end with a newline.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    fn name_ok(n: &str) -> bool {
        let mut c = n.chars();
        matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
            && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
    }
    if !text.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        if line.is_empty() {
            return Err(format!("line {ln}: empty line"));
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut it = rest.splitn(3, ' ');
            match (it.next(), it.next(), it.next()) {
                (Some("TYPE"), Some(n), Some(t)) => {
                    if !name_ok(n) {
                        return Err(format!("line {ln}: bad name {n}"));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return Err(format!("line {ln}: bad type {t}"));
                    }
                    if types.insert(n.to_string(), t.to_string()).is_some() {
                        return Err(format!("line {ln}: second TYPE for {n}"));
                    }
                }
                (Some("HELP"), Some(n), _) => {
                    if !helped.insert(n.to_string()) {
                        return Err(format!("line {ln}: second HELP for {n}"));
                    }
                }
                _ => return Err(format!("line {ln}: bad comment {line:?}")),
            }
            continue;
        }
        // name{labels} value
        let (name, rest) = match line.find(['{', ' ']) {
            Some(p) => (&line[..p], &line[p..]),
            None => return Err(format!("line {ln}: no value")),
        };
        if !name_ok(name) {
            return Err(format!("line {ln}: bad metric name {name:?}"));
        }
        let family = types
            .get(name)
            .ok_or_else(|| format!("line {ln}: sample {name} before its TYPE"))?;
        if family == "counter" && !name.ends_with("_total") {
            return Err(format!("line {ln}: counter {name} does not end in _total"));
        }
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(r) = rest.strip_prefix('{') {
            let b = r.as_bytes();
            let mut i = 0;
            loop {
                if b.get(i) == Some(&b'}') {
                    i += 1;
                    break;
                }
                let eq = r[i..]
                    .find('=')
                    .ok_or(format!("line {ln}: label without ="))?
                    + i;
                let lname = &r[i..eq];
                if !name_ok(lname) || lname.contains(':') {
                    return Err(format!("line {ln}: bad label name {lname:?}"));
                }
                if b.get(eq + 1) != Some(&b'"') {
                    return Err(format!("line {ln}: label value not quoted"));
                }
                let mut j = eq + 2;
                let mut val = String::new();
                loop {
                    match b.get(j) {
                        None => return Err(format!("line {ln}: unterminated label value")),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            match b.get(j + 1) {
                                Some(b'\\') => val.push('\\'),
                                Some(b'"') => val.push('"'),
                                Some(b'n') => val.push('\n'),
                                _ => return Err(format!("line {ln}: bad escape")),
                            }
                            j += 2;
                        }
                        Some(_) => {
                            let ch = r[j..].chars().next().unwrap();
                            val.push(ch);
                            j += ch.len_utf8();
                        }
                    }
                }
                if labels.insert(lname.to_string(), val).is_some() {
                    return Err(format!("line {ln}: duplicate label {lname}"));
                }
                i = j + 1;
                match b.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => {}
                    _ => return Err(format!("line {ln}: expected , or }}")),
                }
            }
            rest = &r[i..];
        }
        let value_s = rest
            .strip_prefix(' ')
            .ok_or(format!("line {ln}: no space before value"))?;
        let value_s = value_s.split(' ').next().unwrap_or("");
        let value = match value_s {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse::<f64>()
                .map_err(|_| format!("line {ln}: bad value {v:?}"))?,
        };
        if value_s.eq_ignore_ascii_case("inf") {
            return Err(format!("line {ln}: inf must be written +Inf"));
        }
        let key = format!("{name}{labels:?}");
        if !seen.insert(key) {
            return Err(format!("line {ln}: duplicate series {name}{labels:?}"));
        }
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(out)
}

pub fn metric<'a>(
    samples: &'a [Sample],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

#[test]
fn prometheus_parser_is_strict() {
    assert!(parse_prometheus("# TYPE a gauge\na 1\n").is_ok());
    assert!(parse_prometheus("a 1\n").is_err(), "sample before TYPE");
    assert!(parse_prometheus("# TYPE a_total counter\na_total{x=\"1\"} 2\n").is_ok());
    assert!(
        parse_prometheus("# TYPE a counter\na 2\n").is_err(),
        "counter name"
    );
    assert!(
        parse_prometheus("# TYPE a gauge\na{x=1} 2\n").is_err(),
        "unquoted"
    );
    assert!(
        parse_prometheus("# TYPE a gauge\na{x=\"\\q\"} 2\n").is_err(),
        "escape"
    );
    assert!(
        parse_prometheus("# TYPE a gauge\na one\n").is_err(),
        "value"
    );
    assert!(
        parse_prometheus("# TYPE a gauge\na 1\na 1\n").is_err(),
        "dup"
    );
    assert!(parse_prometheus("# TYPE a gauge\na 1").is_err(), "newline");
    assert!(parse_prometheus("# TYPE a gauge\na inf\n").is_err(), "inf");
}
