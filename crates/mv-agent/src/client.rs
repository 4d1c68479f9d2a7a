//! A small blocking client for the agent API, for the CLI (`multiverse status`, `multiverse top`)
//! and tests: one request per connection over a unix socket or TCP (with the bearer token), or
//! through a host agent to a guest (`/v1/machines/{fqdn}/...`).
//!
//! It is deliberately synchronous and dependency-free (std sockets, a strict response parser,
//! [`parse_response`], which a fuzz target exercises): a CLI that asks a few agents does not need
//! a runtime. Replies are size-limited.

use crate::history::Sample;
use crate::stats::Stats;
use crate::tasks::{TaskInfo, TaskResult};
use mv_core::Secret;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

/// Largest reply read.
pub const MAX_REPLY: usize = 8 << 20;

/// Where an agent listens.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// A unix socket.
    Unix(PathBuf),
    /// TCP, with the bearer token.
    Tcp {
        /// `host:port`.
        addr: String,
        /// The token.
        token: Option<Secret<String>>,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp { addr, .. } => write!(f, "tcp:{addr}"),
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect (the agent is not running, or no permission on the socket).
    #[error("cannot connect to the agent at {endpoint}")]
    Connect {
        /// Where.
        endpoint: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The connection failed mid-request.
    #[error("talking to the agent at {endpoint}")]
    Io {
        /// Where.
        endpoint: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The reply is not HTTP as the agent writes it.
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// The agent answered with an error status.
    #[error("the agent answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The `error` field of the reply, or its text.
        message: String,
    },
    /// The reply is not the expected JSON.
    #[error("unexpected reply")]
    Json(#[source] serde_json::Error),
}

/// A client of one agent (or of one guest through a host agent).
#[derive(Debug, Clone)]
pub struct Client {
    /// Where the agent listens.
    pub endpoint: Endpoint,
    /// For a guest reached through a host agent: its fqdn.
    pub via_host: Option<String>,
    /// Connect/read/write timeout.
    pub timeout: Duration,
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

impl Client {
    /// An agent on a unix socket.
    pub fn unix(path: impl Into<PathBuf>) -> Client {
        Client {
            endpoint: Endpoint::Unix(path.into()),
            via_host: None,
            timeout: Duration::from_secs(5),
        }
    }

    /// An agent on TCP.
    pub fn tcp(addr: impl Into<String>, token: Option<Secret<String>>) -> Client {
        Client {
            endpoint: Endpoint::Tcp {
                addr: addr.into(),
                token,
            },
            via_host: None,
            timeout: Duration::from_secs(5),
        }
    }

    /// The same host agent, but addressing the guest `fqdn` through it.
    pub fn guest(&self, fqdn: &str) -> Client {
        Client {
            via_host: Some(fqdn.to_string()),
            ..self.clone()
        }
    }

    /// Sets the timeout.
    pub fn with_timeout(mut self, t: Duration) -> Client {
        self.timeout = t;
        self
    }

    /// A label for people: the endpoint, plus the guest when proxied.
    pub fn label(&self) -> String {
        match &self.via_host {
            Some(g) => format!("{} -> {g}", self.endpoint),
            None => self.endpoint.to_string(),
        }
    }

    fn connect(&self) -> Result<Box<dyn Stream>, ClientError> {
        let endpoint = self.endpoint.to_string();
        let cerr = |source| ClientError::Connect {
            endpoint: endpoint.clone(),
            source,
        };
        Ok(match &self.endpoint {
            Endpoint::Unix(p) => {
                let s = std::os::unix::net::UnixStream::connect(p).map_err(cerr)?;
                s.set_read_timeout(Some(self.timeout)).map_err(cerr)?;
                s.set_write_timeout(Some(self.timeout)).map_err(cerr)?;
                Box::new(s)
            }
            Endpoint::Tcp { addr, .. } => {
                use std::net::ToSocketAddrs;
                let sa = addr
                    .to_socket_addrs()
                    .map_err(cerr)?
                    .next()
                    .ok_or_else(|| cerr(std::io::Error::other("no address")))?;
                let s = std::net::TcpStream::connect_timeout(&sa, self.timeout).map_err(cerr)?;
                s.set_read_timeout(Some(self.timeout)).map_err(cerr)?;
                s.set_write_timeout(Some(self.timeout)).map_err(cerr)?;
                Box::new(s)
            }
        })
    }

    fn full_path(&self, path: &str) -> String {
        match &self.via_host {
            None => path.to_string(),
            Some(g) => {
                let rest = path
                    .strip_prefix("/v1/")
                    .or_else(|| path.strip_prefix('/'))
                    .unwrap_or(path);
                format!("/v1/machines/{g}/{rest}")
            }
        }
    }

    /// One raw request; returns the status and body (any status).
    pub fn request(&self, method: &str, path: &str) -> Result<(u16, Vec<u8>), ClientError> {
        let mut s = self.connect()?;
        let endpoint = self.endpoint.to_string();
        let ioerr = |source| ClientError::Io {
            endpoint: endpoint.clone(),
            source,
        };
        // A request id the agent echoes: over virtio-serial a reply written for an earlier
        // host connection (one that timed out) can still arrive first on this one, and is
        // skipped rather than taken for this request's answer.
        let id = request_id();
        let mut req = format!(
            "{method} {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n{REQUEST_ID}: {id}\r\n",
            self.full_path(path)
        )
        .into_bytes();
        if let Endpoint::Tcp { token: Some(t), .. } = &self.endpoint {
            req.extend_from_slice(b"Authorization: Bearer ");
            req.extend_from_slice(t.expose().as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"\r\n");
        let req = Secret::new(req);
        s.write_all(req.expose()).map_err(ioerr)?;
        // Read until the reply is complete, not until the end of the stream: over a virtio-serial
        // channel the far end never closes the host's side (the chardev stays connected).
        let mut raw = Vec::with_capacity(8192);
        let mut buf = [0u8; 8192];
        loop {
            if let Some(len) = reply_len(&raw) {
                match reply_id(&raw[..len]) {
                    Some(other) if other != id => {
                        tracing::debug!(stale = %other, "skipped a reply to an earlier request");
                        raw.drain(..len);
                        continue;
                    }
                    _ => {
                        raw.truncate(len);
                        break;
                    }
                }
            }
            if raw.len() > MAX_REPLY {
                return Err(ClientError::Malformed(format!(
                    "reply over {MAX_REPLY} bytes"
                )));
            }
            let n = s.read(&mut buf).map_err(ioerr)?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        parse_response(&raw)
    }

    /// GET a JSON document; an error status becomes [`ClientError::Status`].
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json("GET", path)
    }

    fn json<T: DeserializeOwned>(&self, method: &str, path: &str) -> Result<T, ClientError> {
        let (status, body) = self.request(method, path)?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(ClientError::Status { status, message });
        }
        serde_json::from_slice(&body).map_err(ClientError::Json)
    }

    /// `GET /v1/info`.
    pub fn info(&self) -> Result<Info, ClientError> {
        self.get_json("/v1/info")
    }

    /// `GET /v1/stats`.
    pub fn stats(&self) -> Result<Stats, ClientError> {
        self.get_json("/v1/stats")
    }

    /// `GET /v1/stats/history?window=...`.
    pub fn history(&self, window: &str) -> Result<Vec<Sample>, ClientError> {
        #[derive(Deserialize)]
        struct H {
            samples: Vec<Sample>,
        }
        Ok(self
            .get_json::<H>(&format!("/v1/stats/history?window={window}"))?
            .samples)
    }

    /// `GET /v1/tasks`.
    pub fn tasks(&self) -> Result<Vec<TaskInfo>, ClientError> {
        self.get_json("/v1/tasks")
    }

    /// `POST /v1/tasks/{name}/run`.
    pub fn run_task(&self, name: &str, dry_run: bool) -> Result<TaskResult, ClientError> {
        let (status, body) =
            self.request("POST", &format!("/v1/tasks/{name}/run?dry_run={dry_run}"))?;
        // A failed task is still a result (500 with the TaskResult); other errors have "error".
        match serde_json::from_slice::<TaskResult>(&body) {
            Ok(r) => Ok(r),
            Err(_) => Err(ClientError::Status {
                status,
                message: serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                    .unwrap_or_default(),
            }),
        }
    }

    /// `GET /v1/machines` (host agents): the guests' fqdns.
    pub fn machines(&self) -> Result<Vec<String>, ClientError> {
        #[derive(Deserialize)]
        struct M {
            fqdn: String,
        }
        Ok(self
            .get_json::<Vec<M>>("/v1/machines")?
            .into_iter()
            .map(|m| m.fqdn)
            .collect())
    }
}

/// `/v1/info`, the fields a front end needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    /// Machine name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Agent version.
    pub version: String,
    /// Sampling interval.
    pub interval_ms: u64,
    /// Task names.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// The machine's kernel hostname (agents before 0.2 do not say).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Its fully qualified name (the hostname, completed from `/etc/hosts`).
    #[serde(default)]
    pub fqdn: Option<String>,
    /// Seconds since the machine booted.
    #[serde(default)]
    pub boot_uptime_s: Option<u64>,
    /// Its SSH host keys' fingerprints.
    #[serde(default)]
    pub ssh_host_keys: Vec<crate::selfinfo::HostKey>,
    /// The seed-id of the last seed applied on the machine (agents before 0.3 do not say).
    #[serde(default)]
    pub seed_id: Option<String>,
}

/// The header a client names its request by, echoed by the agent on the reply.
pub const REQUEST_ID: &str = "X-Request-Id";

/// A request id unique on this host for this process's lifetime: pid, clock and a counter.
pub(crate) fn request_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}-{nanos:x}-{n:x}", std::process::id())
}

/// The request id a whole reply carries, if any.
fn reply_id(reply: &[u8]) -> Option<String> {
    let head_end = reply.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&reply[..head_end]);
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(REQUEST_ID)
            .then(|| v.trim().to_string())
    })
}

/// The length of the whole response at the start of `raw`: its headers and, by Content-Length or
/// the chunked terminator, its whole body. None while incomplete; a reply framed by the end of
/// the stream never has a length here.
fn reply_len(raw: &[u8]) -> Option<usize> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let body_start = head_end + 4;
    let body = &raw[body_start..];
    for line in head.split("\r\n").skip(1) {
        if let Some(v) = line.strip_prefix("content-length:") {
            let n = v.trim().parse::<usize>().ok()?;
            return (body.len() >= n).then_some(body_start + n);
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return chunked_len(body).map(|n| body_start + n);
        }
    }
    None
}

/// The length of a chunked body up to and including its last chunk's terminator.
fn chunked_len(body: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let eol = body[at..].windows(2).position(|w| w == b"\r\n")?;
        let size_s = std::str::from_utf8(&body[at..at + eol]).ok()?;
        let size = usize::from_str_radix(size_s.split(';').next()?.trim(), 16).ok()?;
        at += eol + 2;
        if size == 0 {
            // No trailers from the agent: the last chunk ends with an empty line.
            return (body.len() >= at + 2 && &body[at..at + 2] == b"\r\n").then_some(at + 2);
        }
        at = at.checked_add(size)?.checked_add(2)?;
        if body.len() < at {
            return None;
        }
    }
}

/// Parses an HTTP/1.x response as the agent writes it: status line, headers, then a body framed
/// by Content-Length, chunked encoding, or the end of the stream.
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), ClientError> {
    let bad = |m: &str| ClientError::Malformed(m.to_string());
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| bad("headers not UTF-8"))?;
    let body = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad("not an HTTP/1 status line"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| bad("bad status code"))?;
    let mut length = None;
    let mut chunked = false;
    for l in lines {
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| bad("header without colon"))?;
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(v.parse::<usize>().map_err(|_| bad("bad content-length"))?);
        } else if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    if chunked {
        return Ok((status, dechunk(body)?));
    }
    match length {
        Some(n) => {
            if body.len() < n {
                return Err(bad("body shorter than content-length"));
            }
            Ok((status, body[..n].to_vec()))
        }
        None => Ok((status, body.to_vec())),
    }
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, ClientError> {
    let bad = |m: &str| ClientError::Malformed(m.to_string());
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("chunk size line"))?;
        let size_s = std::str::from_utf8(&b[..eol]).map_err(|_| bad("chunk size"))?;
        let size_s = size_s.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_s, 16).map_err(|_| bad("chunk size"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size.saturating_add(2) {
            return Err(bad("truncated chunk"));
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// One agent's row in `multiverse status`.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    /// Where it was asked.
    pub endpoint: String,
    /// It answered.
    pub up: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Machine name.
    pub name: Option<String>,
    /// Role.
    pub role: Option<String>,
    /// CPU busy fraction.
    pub cpu: Option<f64>,
    /// Memory in use (bytes).
    pub mem_used: Option<u64>,
    /// Memory total (bytes).
    pub mem_total: Option<u64>,
    /// Seconds since boot.
    pub uptime_s: Option<f64>,
    /// Stale sections.
    pub stale: Vec<String>,
}

/// Asks every agent for its info and stats (one after the other, each bounded by its timeout);
/// an agent that does not answer is a row with `up: false` and the reason.
pub fn fleet_status(clients: &[Client]) -> Vec<AgentStatus> {
    clients
        .iter()
        .map(|c| {
            let mut row = AgentStatus {
                endpoint: c.label(),
                up: false,
                error: None,
                name: None,
                role: None,
                cpu: None,
                mem_used: None,
                mem_total: None,
                uptime_s: None,
                stale: Vec::new(),
            };
            match c.info().and_then(|i| Ok((i, c.stats()?))) {
                Ok((info, s)) => {
                    row.up = true;
                    row.name = Some(info.name);
                    row.role = Some(info.role);
                    row.cpu = s.cpu.data.as_ref().map(|x| x.total.usage);
                    row.mem_used = s.memory.data.as_ref().map(|m| m.used);
                    row.mem_total = s.memory.data.as_ref().map(|m| m.total);
                    row.uptime_s = s.system.data.as_ref().map(|x| x.uptime_s);
                    row.stale = s
                        .freshness()
                        .into_iter()
                        .filter(|(_, st, _)| *st)
                        .map(|(n, _, _)| n.to_string())
                        .collect();
                }
                Err(e) => row.error = Some(crate::stats::error_chain(&e)),
            }
            row
        })
        .collect()
}

#[cfg(test)]
mod reply_tests {
    use super::{reply_len, Client};

    fn reply_complete(raw: &[u8]) -> bool {
        reply_len(raw).is_some()
    }

    #[test]
    fn two_replies_in_one_buffer_split_at_the_first_ones_end() {
        let a = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let b = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let both = [&a[..], &b[..]].concat();
        assert_eq!(reply_len(&both), Some(a.len()));
        assert_eq!(reply_len(&both[a.len()..]), Some(b.len()));
    }

    /// Over virtio-serial a reply meant for an earlier connection can come first: the client
    /// skips a reply whose request id is not its own and takes the next.
    #[test]
    fn a_stale_reply_with_another_request_id_is_skipped() {
        use std::io::{BufRead, BufReader, Write};
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut id = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.strip_prefix("X-Request-Id:") {
                    id = v.trim().to_string();
                }
            }
            let mut conn = conn;
            let stale = "{\"name\":\"stale\"}";
            let fresh = "{\"name\":\"fresh\"}";
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nX-Request-Id: 1-2-3\r\nContent-Length: {}\r\n\r\n{stale}",
                stale.len()
            )
            .unwrap();
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: {}\r\n\r\n{fresh}",
                fresh.len()
            )
            .unwrap();
            assert!(!id.is_empty());
        });
        let v: serde_json::Value = Client::unix(&sock).get_json("/v1/info").unwrap();
        assert_eq!(v["name"], "fresh");
        server.join().unwrap();
    }

    #[test]
    fn a_reply_is_complete_by_its_length_or_its_last_chunk() {
        assert!(!reply_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc"
        ));
        assert!(reply_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcde"
        ));
        assert!(!reply_complete(b"HTTP/1.1 200 OK\r\nContent-Le"));
        assert!(!reply_complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        ));
        assert!(reply_complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        ));
        // Framed by the end of the stream: only EOF ends it.
        assert!(!reply_complete(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn responses() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"hi"[..]));
        let (s, b) = parse_response(
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_slice()), (404, &b"abcd"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhi").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffff\r\n"
        )
        .is_err());
    }

    #[test]
    fn guest_paths() {
        let c = Client::unix("/x").guest("a.multiverse");
        assert_eq!(c.full_path("/v1/stats"), "/v1/machines/a.multiverse/stats");
        assert_eq!(c.full_path("/metrics"), "/v1/machines/a.multiverse/metrics");
    }

    proptest! {
        #[test]
        fn parse_response_is_total(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_response(&raw);
        }

        #[test]
        fn parse_response_is_total_on_http_like(status in 0u16..1000, len in "[0-9a-f]{0,20}", body in "\\PC{0,50}", chunked in any::<bool>()) {
            let h = if chunked { format!("transfer-encoding: chunked\r\n\r\n{len}\r\n{body}") } else { format!("content-length: {len}\r\n\r\n{body}") };
            let _ = parse_response(format!("HTTP/1.1 {status} X\r\n{h}").as_bytes());
        }
    }
}
