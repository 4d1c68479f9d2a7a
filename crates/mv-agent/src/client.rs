//! A small blocking client for the agent API, for the CLI (`multiverse status`, `multiverse top`)
//! and tests: one request per connection over a unix socket or TCP (with the bearer token), or
//! through a host agent to a guest (`/v1/machines/{fqdn}/...`).
//!
//! Main types: [`Client`] (where and how long to wait), [`ClientError`], [`Info`], and
//! [`fleet_status`] with its [`AgentStatus`] rows.
//!
//! HTTP/1.1 is hyper's (`hyper::client::conn::http1`): this module only connects, names the
//! request ([`REQUEST_ID`]) and adds the bearer token. The API stays blocking: each request runs
//! on a current-thread tokio runtime of its own, so a CLI that asks a few agents needs no runtime
//! of its own. Two things the plain hyper client does not do are kept from the hand-written one:
//!
//! - Timeouts are per read and per write, as the socket timeouts were: a slow but moving reply is
//!   not cut, a silent agent fails after [`Client::timeout`].
//! - A unix socket may be a virtio-serial channel, which outlives connections: a reply to an
//!   earlier, abandoned request can arrive first. It carries another request id; the client reads
//!   past it on the same stream (hyper parses it, then parses the next reply, with the request
//!   not sent again) rather than retrying, which would run a `POST` twice.
//!
//! No path needs more than hyper: the client does no upgrade and no raw tunnel (`multiverse ssh`
//! does not go through the agent). Replies are size-limited ([`MAX_REPLY`]).
//!
//! What this is not: a connection pool or an async API.

use crate::history::Sample;
use crate::request_id::{request_id, REQUEST_ID};
use crate::stats::Stats;
use crate::tasks::{TaskInfo, TaskResult};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use mv_core::Secret;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest reply read.
pub(crate) const MAX_REPLY: usize = 8 << 20;

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
    /// The request cannot be written (a method, path or token that is not valid in HTTP).
    #[error("cannot send the request: {0}")]
    Request(String),
    /// The reply is not the expected JSON.
    #[error("unexpected reply")]
    Json(#[source] serde_json::Error),
}

impl mv_core::Classify for ClientError {
    /// A refusal the person can act on (a 4xx: unknown task, wrong token) or a request that
    /// cannot be written is theirs to fix; an agent that is down or answers badly is a failure.
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            ClientError::Status { status, .. } if (400..500).contains(status) => {
                mv_core::ErrorClass::Usage
            }
            ClientError::Request(_) => mv_core::ErrorClass::Usage,
            _ => mv_core::ErrorClass::Failure,
        }
    }
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
    ///
    /// Blocks the calling thread (on a small runtime of its own, on a helper thread when called
    /// from inside a tokio runtime) until the reply is read or a read or write makes no progress
    /// for [`Client::timeout`].
    pub fn request(&self, method: &str, path: &str) -> Result<(u16, Vec<u8>), ClientError> {
        block_on(self.exchange(method, path), || self.endpoint.to_string())
    }

    async fn exchange(&self, method: &str, path: &str) -> Result<(u16, Vec<u8>), ClientError> {
        let endpoint = self.endpoint.to_string();
        let method = hyper::Method::from_bytes(method.as_bytes())
            .map_err(|_| ClientError::Request(format!("{method:?} is not an HTTP method")))?;
        let uri = self.full_path(path);
        // A request id the agent echoes: over virtio-serial a reply written for an earlier
        // host connection (one that timed out) can still arrive first on this one, and is
        // skipped rather than taken for this request's answer.
        let id = request_id();
        let mut wire = Wire::new(self.connect().await?, self.timeout);
        let mut request = Some(self.build(&method, &uri, &id)?);
        loop {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(wire))
                .await
                .map_err(|e| http_error(&endpoint, e))?;
            // After a stale reply the request is already sent: hyper still needs one to read
            // the next reply, so it gets a copy that the muted wire swallows.
            let req = match request.take() {
                Some(r) => r,
                None => self.build(&method, &uri, &id)?,
            };
            let ask = async move {
                let resp = sender.send_request(req).await.map_err(BodyError::from)?;
                drop(sender);
                let (head, body) = resp.into_parts();
                let body = Limited::new(body, MAX_REPLY).collect().await?.to_bytes();
                Ok::<_, BodyError>((head, body))
            };
            let (conn, asked) = tokio::join!(conn.without_shutdown(), ask);
            let (head, body) = asked.map_err(|e| body_error(&endpoint, e))?;
            match head.headers.get(REQUEST_ID) {
                Some(other) if other.as_bytes() != id.as_bytes() => {
                    tracing::debug!(stale = ?other, "skipped a reply to an earlier request");
                    let parts = conn.map_err(|e| http_error(&endpoint, e))?;
                    wire = parts.io.into_inner();
                    wire.unread(parts.read_buf);
                    wire.next_round(true);
                }
                _ => return Ok((head.status.as_u16(), body.to_vec())),
            }
        }
    }

    /// The request as the agent expects it: one per connection, no body, the bearer token on
    /// TCP (a header value hyper marks sensitive).
    fn build(
        &self,
        method: &hyper::Method,
        uri: &str,
        id: &str,
    ) -> Result<hyper::Request<Empty<Bytes>>, ClientError> {
        use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH, HOST};
        let mut b = hyper::Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(HOST, "localhost")
            .header(CONNECTION, "close")
            .header(CONTENT_LENGTH, "0")
            .header(REQUEST_ID, id);
        if let Endpoint::Tcp { token: Some(t), .. } = &self.endpoint {
            let bearer = Secret::new(format!("Bearer {}", t.expose()));
            let mut v = hyper::header::HeaderValue::from_str(bearer.expose()).map_err(|_| {
                ClientError::Request("the token is not a valid header value".to_string())
            })?;
            v.set_sensitive(true);
            b = b.header(AUTHORIZATION, v);
        }
        b.body(Empty::new())
            .map_err(|e| ClientError::Request(format!("{uri:?}: {e}")))
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, ClientError> {
        let endpoint = self.endpoint.to_string();
        let cerr = |source| ClientError::Connect {
            endpoint: endpoint.clone(),
            source,
        };
        Ok(match &self.endpoint {
            Endpoint::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await.map_err(cerr)?),
            Endpoint::Tcp { addr, .. } => {
                use std::net::ToSocketAddrs;
                let sa = addr
                    .to_socket_addrs()
                    .map_err(cerr)?
                    .next()
                    .ok_or_else(|| cerr(std::io::Error::other("no address")))?;
                let s = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(sa))
                    .await
                    .map_err(|_| cerr(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
                    .map_err(cerr)?;
                Box::new(s)
            }
        })
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

/// The clients to poll: the given ones plus, for host agents, one per guest.
pub fn with_guests(agents: &[Client], guests: bool) -> Vec<Client> {
    let mut out = Vec::new();
    for c in agents {
        out.push(c.clone());
        if guests {
            if let Ok(info) = c.info() {
                if info.role == "host" {
                    for fqdn in c.machines().unwrap_or_default() {
                        out.push(c.guest(&fqdn));
                    }
                }
            }
        }
    }
    out
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

/// A connected stream to an agent: a unix socket (maybe a virtio-serial channel) or TCP.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// The stream hyper speaks over: bytes put back in front of it (what hyper had read past a
/// stale reply), a mute switch (after a stale reply the request is already on the wire, so the
/// copy hyper writes to read the next reply is swallowed), and the idle timeout the blocking
/// client had as socket options: a read or write that makes no progress for `timeout` fails.
///
/// Reads are held until hyper has written its request: an idle hyper connection treats any byte
/// that arrives before it as an error, and on a virtio-serial channel a stale reply may be
/// waiting before the request is sent.
struct Wire {
    stream: Box<dyn Stream>,
    unread: Bytes,
    mute: bool,
    hold_reads: bool,
    held_reader: Option<Waker>,
    timeout: Duration,
    read_idle: Option<Pin<Box<tokio::time::Sleep>>>,
    write_idle: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Wire {
    fn new(stream: Box<dyn Stream>, timeout: Duration) -> Wire {
        Wire {
            stream,
            unread: Bytes::new(),
            mute: false,
            hold_reads: true,
            held_reader: None,
            timeout,
            read_idle: None,
            write_idle: None,
        }
    }

    /// Reads wait for the next request to be written; with `mute`, that request is swallowed.
    fn next_round(&mut self, mute: bool) {
        self.mute = mute;
        self.hold_reads = true;
    }

    /// A request has gone out (or was swallowed): reads may go on.
    fn release_reads(&mut self) {
        self.hold_reads = false;
        if let Some(w) = self.held_reader.take() {
            w.wake();
        }
    }

    /// Puts `bytes` back before what is still unread.
    fn unread(&mut self, bytes: Bytes) {
        if self.unread.is_empty() {
            self.unread = bytes;
        } else if !bytes.is_empty() {
            self.unread = [bytes, std::mem::take(&mut self.unread)].concat().into();
        }
    }
}

/// Pending until `timeout` passes without progress, then the timeout error.
fn idle(
    slot: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
    cx: &mut Context<'_>,
) -> Poll<std::io::Error> {
    let sleep = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
    match sleep.as_mut().poll(cx) {
        Poll::Ready(()) => {
            *slot = None;
            Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no progress within {timeout:?}"),
            ))
        }
        Poll::Pending => Poll::Pending,
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.hold_reads {
            this.held_reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread.split_to(n));
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read_idle = None;
                Poll::Ready(r)
            }
            Poll::Pending => idle(&mut this.read_idle, this.timeout, cx).map(Err),
        }
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.mute {
            this.release_reads();
            return Poll::Ready(Ok(buf.len()));
        }
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.write_idle = None;
                if matches!(r, Ok(n) if n > 0) {
                    this.release_reads();
                }
                Poll::Ready(r)
            }
            Poll::Pending => idle(&mut this.write_idle, this.timeout, cx).map(Err),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.mute {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.stream).poll_flush(cx) {
            Poll::Ready(r) => {
                this.write_idle = None;
                Poll::Ready(r)
            }
            Poll::Pending => idle(&mut this.write_idle, this.timeout, cx).map(Err),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Why reading a reply failed: hyper's error, or the body limit.
type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A hyper error as the blocking client reported it: a broken reply is [`ClientError::Malformed`],
/// a failed read or write [`ClientError::Io`] with the I/O error itself.
fn http_error(endpoint: &str, e: hyper::Error) -> ClientError {
    use std::error::Error as _;
    if e.is_parse() || e.is_parse_status() || e.is_incomplete_message() {
        return ClientError::Malformed(e.to_string());
    }
    let source = match e.source().and_then(|s| s.downcast_ref::<std::io::Error>()) {
        Some(io) => std::io::Error::new(io.kind(), io.to_string()),
        None => std::io::Error::other(e),
    };
    ClientError::Io {
        endpoint: endpoint.to_string(),
        source,
    }
}

fn body_error(endpoint: &str, e: BodyError) -> ClientError {
    if e.is::<http_body_util::LengthLimitError>() {
        return ClientError::Malformed(format!("reply over {MAX_REPLY} bytes"));
    }
    match e.downcast::<hyper::Error>() {
        Ok(h) => http_error(endpoint, *h),
        Err(other) => ClientError::Malformed(other.to_string()),
    }
}

/// Runs `fut` to completion on a current-thread runtime of its own, on a scoped helper thread
/// when the caller is itself inside a tokio runtime (which cannot block on a nested one).
fn block_on<T: Send>(
    fut: impl Future<Output = Result<T, ClientError>> + Send,
    endpoint: impl Fn() -> String,
) -> Result<T, ClientError> {
    let run = move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map(|rt| rt.block_on(fut))
    };
    let ran = if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| match s.spawn(run).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    } else {
        run()
    };
    ran.unwrap_or_else(|source| {
        Err(ClientError::Io {
            endpoint: endpoint(),
            source,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over virtio-serial a reply meant for an earlier connection can come first: the client
    /// skips a reply whose request id is not its own and takes the next.
    #[test]
    fn a_stale_reply_with_another_request_id_is_skipped() {
        for chunked in [false, true] {
            let (sock, server) = serve_once(move |id| {
                let reply = |rid: &str, body: &str| {
                    if chunked {
                        format!(
                            "HTTP/1.1 200 OK\r\nX-Request-Id: {rid}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                            body.len()
                        )
                    } else {
                        format!(
                            "HTTP/1.1 200 OK\r\nX-Request-Id: {rid}\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    }
                };
                reply("1-2-3", "{\"name\":\"stale\"}") + &reply(id, "{\"name\":\"fresh\"}")
            });
            let v: serde_json::Value = Client::unix(sock.path().join("agent.sock"))
                .get_json("/v1/info")
                .unwrap();
            assert_eq!(v["name"], "fresh");
            assert!(server
                .join()
                .unwrap()
                .starts_with("GET /v1/info HTTP/1.1\r\n"));
        }
    }

    /// The stale reply may already wait on the channel before the request is written.
    #[test]
    fn a_stale_reply_waiting_before_the_request_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            use std::io::Write as _;
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(
                b"HTTP/1.1 200 OK\r\nX-Request-Id: 9-9-9\r\nContent-Length: 2\r\n\r\nno",
            )
            .unwrap();
            std::thread::sleep(Duration::from_millis(100));
            answer(conn, |id| {
                format!("HTTP/1.1 200 OK\r\nX-Request-Id: {id}\r\nContent-Length: 3\r\n\r\nyes")
            })
        });
        let (st, body) = Client::unix(&path)
            .request("POST", "/v1/tasks/t/run")
            .unwrap();
        assert_eq!((st, body.as_slice()), (200, &b"yes"[..]));
        // The request went out once.
        assert_eq!(server.join().unwrap().matches("POST ").count(), 1);
    }

    #[test]
    fn replies_are_read_by_length_chunks_or_the_end_of_the_stream() {
        for (raw, want) in [
            ("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi", (200, "hi")),
            (
                "HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n",
                (404, "abcd"),
            ),
            ("HTTP/1.1 503 X\r\nConnection: close\r\n\r\nbye", (503, "bye")),
        ] {
            let (sock, server) = serve_once(move |_| raw.to_string());
            let (st, body) = Client::unix(sock.path().join("agent.sock"))
                .request("POST", "/v1/tasks/x/run")
                .unwrap();
            assert_eq!((st, body.as_slice()), (want.0, want.1.as_bytes()));
            let req = server.join().unwrap();
            assert!(req.starts_with("POST /v1/tasks/x/run HTTP/1.1\r\n"), "{req}");
            assert!(req.to_ascii_lowercase().contains("content-length: 0\r\n"), "{req}");
        }
    }

    #[test]
    fn broken_short_and_silent_replies_are_errors() {
        let (sock, _server) = serve_once(|_| "SSH-2.0-OpenSSH\r\n\r\n".to_string());
        let e = Client::unix(sock.path().join("agent.sock")).request("GET", "/v1/info");
        assert!(matches!(e, Err(ClientError::Malformed(_))), "{e:?}");
        let (sock, _server) =
            serve_once(|_| "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhi".to_string());
        let e = Client::unix(sock.path().join("agent.sock"))
            .with_timeout(Duration::from_millis(300))
            .request("GET", "/v1/info");
        assert!(e.is_err(), "{e:?}");
        // A listener that never answers: the idle timeout ends the wait.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t0 = std::time::Instant::now();
        let e = Client::unix(&path)
            .with_timeout(Duration::from_millis(200))
            .request("GET", "/v1/info");
        assert!(matches!(e, Err(ClientError::Io { .. })), "{e:?}");
        assert!(t0.elapsed() < Duration::from_secs(3));
        let e = Client::unix(dir.path().join("none.sock")).request("GET", "/v1/info");
        assert!(matches!(e, Err(ClientError::Connect { .. })), "{e:?}");
    }

    #[test]
    fn a_client_works_inside_a_tokio_runtime() {
        let (sock, _server) =
            serve_once(|_| "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_string());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let r = rt.block_on(async {
            Client::unix(sock.path().join("agent.sock")).get_json::<serde_json::Value>("/x")
        });
        assert!(r.is_ok(), "{r:?}");
    }

    #[test]
    fn the_token_goes_in_a_bearer_header_on_tcp_only() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (conn, _) = l.accept().unwrap();
            answer(conn, |_| {
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_string()
            })
        });
        let c = Client::tcp(&addr, Some(Secret::new("s3cret".to_string())));
        assert_eq!(c.request("GET", "/v1/info").unwrap().0, 200);
        let req = server.join().unwrap();
        assert!(req.contains("authorization: Bearer s3cret\r\n"), "{req}");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn guest_paths() {
        let c = Client::unix("/x").guest("a.multiverse");
        assert_eq!(c.full_path("/v1/stats"), "/v1/machines/a.multiverse/stats");
        assert_eq!(c.full_path("/metrics"), "/v1/machines/a.multiverse/metrics");
    }

    /// A unix socket in a fresh folder that answers one connection with `reply(request id)` and
    /// returns the request it read.
    fn serve_once(
        reply: impl FnOnce(&str) -> String + Send + 'static,
    ) -> (tempfile::TempDir, std::thread::JoinHandle<String>) {
        let dir = tempfile::tempdir().unwrap();
        let listener =
            std::os::unix::net::UnixListener::bind(dir.path().join("agent.sock")).unwrap();
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            answer(conn, reply)
        });
        (dir, server)
    }

    /// Reads one request head, writes `reply(its request id)`, returns the head.
    fn answer<S: std::io::Read + std::io::Write>(
        conn: S,
        reply: impl FnOnce(&str) -> String,
    ) -> String {
        use std::io::{BufRead, BufReader};
        let mut reader = BufReader::new(conn);
        let mut head = String::new();
        let mut id = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case(REQUEST_ID) {
                    id = v.trim().to_string();
                }
            }
        }
        let mut conn = reader.into_inner();
        let reply = reply(&id);
        conn.write_all(reply.as_bytes()).unwrap();
        conn.flush().unwrap();
        // Otherwise close only when the client has gone (a virtio-serial channel never closes).
        if !reply.contains("Connection: close") {
            let _ = std::io::Read::read(&mut conn, &mut [0u8; 1]);
        }
        head
    }
}
