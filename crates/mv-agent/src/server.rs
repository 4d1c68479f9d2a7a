//! The transports: a unix socket (mode 0660, group from the config), TCP with a bearer token, and
//! the guest side of the virtio-serial channel. All three serve the same routes through
//! [`crate::api::parse_request`] and [`crate::action::execute`].
//!
//! Bounded cost per client, whatever it sends: at most `max_connections` connections per
//! transport (further clients wait in the listen backlog; the unix socket and TCP never share
//! slots, so nothing on TCP can starve the local socket), request heads limited to hyper's 16 KiB read buffer (431
//! past it), headers within `header_timeout` (slow clients are dropped), bodies over
//! `max_body_bytes` refused with 413 before they are read, each SSE subscriber a fixed-size queue.
//! Event streams, which never end on their own, have their own cap per transport
//! (`max_event_streams`, always below `max_connections`; past it 503 and the connection closed),
//! and every write has a time limit ([`WRITE_TIMEOUT`]): a client that stops reading is dropped
//! and gives its slot back.
//! On TCP, before any authentication: at most `max_connections_per_peer` connections per source
//! address (more are answered 503 and closed at once), headers within `tcp_header_timeout`, and
//! a request without the right `Authorization: Bearer` token gets 401 and the connection closed;
//! the token is compared in constant time.

use crate::action::{execute, Reply};
use crate::agent::Agent;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, Semaphore};

/// Read buffer per connection: the largest request head accepted.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A write that makes no progress for this long ends the connection (a client that stopped
/// reading an event stream or a large reply).
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which transport a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// The unix socket (access by file mode and group).
    Unix,
    /// TCP (bearer token).
    Tcp,
    /// The guest side of the virtio-serial channel (only the host can reach it).
    Virtio,
}

/// Why the listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding failed.
    #[error("cannot listen on {what}")]
    Bind {
        /// The socket path or address.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another agent already serves this socket.
    #[error("{0} is in use by a running agent")]
    InUse(PathBuf),
    /// Setting the socket's mode or group failed.
    #[error("cannot set mode/group of {path}")]
    Permissions {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configured group does not exist.
    #[error("group {0:?} does not exist")]
    NoGroup(String),
}

impl mv_core::Classify for ServeError {
    /// A configured group that does not exist is the person's to fix; the rest are failures.
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            ServeError::NoGroup(_) => mv_core::ErrorClass::Usage,
            _ => mv_core::ErrorClass::Failure,
        }
    }
}

/// The bound listeners, before they serve.
#[derive(Debug)]
pub struct Listeners {
    unix: Option<(UnixListener, PathBuf)>,
    tcp: Option<TcpListener>,
    virtio: Option<PathBuf>,
}

impl Listeners {
    /// The unix socket path, if any.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix.as_ref().map(|(_, p)| p.as_path())
    }
    /// The bound TCP address (useful with port 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }
}

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.to_string();
    move |source| ServeError::Bind { what, source }
}

/// Binds every configured transport (must run inside the runtime).
pub async fn bind(agent: &Agent) -> Result<Listeners, ServeError> {
    let api = &agent.cfg.config.api;
    let unix = if api.socket.as_os_str().is_empty() {
        None
    } else {
        Some((
            bind_unix(&api.socket, api.group.as_deref()).await?,
            api.socket.clone(),
        ))
    };
    let tcp = match api.tcp {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(io_err(addr))?),
        None => None,
    };
    Ok(Listeners {
        unix,
        tcp,
        virtio: api.virtio_port.clone(),
    })
}

async fn bind_unix(path: &Path, group: Option<&str>) -> Result<UnixListener, ServeError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if md.file_type().is_socket() {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(ServeError::InUse(path.to_path_buf()));
            }
            // A socket left by an agent that died: nobody listens, so it is safe to replace.
            std::fs::remove_file(path).map_err(io_err(path.display()))?;
        }
    }
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(io_err(parent.display()))?;
        }
    }
    let gid = match group {
        None => None,
        Some(g) => Some(
            nix::unistd::Group::from_name(g)
                .ok()
                .flatten()
                .ok_or_else(|| ServeError::NoGroup(g.to_string()))?
                .gid,
        ),
    };
    let l = UnixListener::bind(path).map_err(io_err(path.display()))?;
    let perm = |source| ServeError::Permissions {
        path: path.to_path_buf(),
        source,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(perm)?;
    if let Some(gid) = gid {
        nix::unistd::chown(path, None, Some(gid)).map_err(|e| perm(std::io::Error::from(e)))?;
    }
    Ok(l)
}

impl Listeners {
    /// Serves forever.
    pub async fn run(self, agent: Arc<Agent>) {
        let api = &agent.cfg.config.api;
        let mut set = tokio::task::JoinSet::new();
        if let Some((l, _)) = self.unix {
            let (a, lim) = (agent.clone(), Arc::new(Semaphore::new(api.max_connections)));
            let streams = Streams::new(api.max_event_streams, api.max_connections);
            set.spawn(async move {
                loop {
                    let Ok(permit) = lim.clone().acquire_owned().await else {
                        return;
                    };
                    match l.accept().await {
                        Ok((s, _)) => {
                            let a = a.clone();
                            let streams = streams.clone();
                            tokio::spawn(async move {
                                serve_io(a, s, Transport::Unix, streams).await;
                                drop(permit);
                            });
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "unix accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            });
        }
        if let Some(l) = self.tcp {
            let (a, lim) = (agent.clone(), Arc::new(Semaphore::new(api.max_connections)));
            let streams = Streams::new(api.max_event_streams, api.max_connections);
            let peers = Peers::new(api.max_connections_per_peer);
            set.spawn(async move {
                loop {
                    let Ok(permit) = lim.clone().acquire_owned().await else {
                        return;
                    };
                    match l.accept().await {
                        Ok((s, peer)) => {
                            let Some(slot) = peers.take(peer.ip()) else {
                                // Over the per-peer cap: say so if the socket takes it at once,
                                // and close. Never waits on the client.
                                let _ = s.try_write(TOO_MANY_FROM_PEER);
                                continue;
                            };
                            let _ = s.set_nodelay(true);
                            let a = a.clone();
                            let streams = streams.clone();
                            tokio::spawn(async move {
                                serve_io(a, s, Transport::Tcp, streams).await;
                                drop(slot);
                                drop(permit);
                            });
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "tcp accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            });
        }
        if let Some(port) = self.virtio {
            let a = agent.clone();
            set.spawn(async move { serve_virtio(a, port).await });
        }
        while set.join_next().await.is_some() {}
    }
}

/// The guest side of the channel: (re)open the port and serve HTTP on it, one stream at a time.
/// A unix socket path is connected to (tests, and a QEMU chardev stand-in); anything else is
/// opened as the character device. No event streams: one would hold the only connection.
async fn serve_virtio(agent: Arc<Agent>, port: PathBuf) {
    use std::os::unix::fs::FileTypeExt;
    let streams = Streams::new(0, 1);
    loop {
        let is_socket = std::fs::metadata(&port).is_ok_and(|m| m.file_type().is_socket());
        if is_socket {
            match tokio::net::UnixStream::connect(&port).await {
                Ok(s) => serve_io(agent.clone(), s, Transport::Virtio, streams.clone()).await,
                Err(e) => tracing::debug!(error = %e, port = %port.display(), "channel not ready"),
            }
        } else {
            let device = port_device(&port, Path::new("/sys/class/virtio-ports"));
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&device)
            {
                // The port stays open for good: closing it tells QEMU the guest went away, and a
                // host that connects while the guest is between a close and a reopen saw its
                // first request wait (or never answered). One reader thread owns the port's input
                // for good; a session starts with the first bytes a host sends and ends when the
                // host goes away or HTTP closes the connection. No byte read from the port is
                // dropped: one a finished session could not take starts the next.
                Ok(dev) => {
                    let input = port_reader(&dev);
                    let mut carry: Option<Vec<u8>> = None;
                    loop {
                        let first = match carry.take() {
                            Some(c) => c,
                            None => match next_data(&input).await {
                                Some(c) => c,
                                None => break,
                            },
                        };
                        match dev.try_clone() {
                            Ok(out) => {
                                let session = device_session(out, input.clone(), first);
                                serve_io(
                                    agent.clone(),
                                    session.io,
                                    Transport::Virtio,
                                    streams.clone(),
                                )
                                .await;
                                let _ = session.stop.send(());
                                carry = session.forward.await.ok().flatten();
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, port = %port.display(), "cannot clone the port");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, port = %port.display(), "channel not ready"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The device to open for `port`. `/dev/virtio-ports/NAME` is a link udev makes, and under a
/// slow coldplug it comes tens of seconds after the kernel's own `/dev/vportNpM` node; the port's
/// name is in sysfs from the start (`<sysfs>/vportNpM/name`), so until the link exists the node is
/// opened directly. Any other path, or a name sysfs does not list, is returned as given.
fn port_device(port: &Path, sysfs: &Path) -> PathBuf {
    if port.exists() || port.parent() != Some(Path::new("/dev/virtio-ports")) {
        return port.to_path_buf();
    }
    let Some(name) = port.file_name().and_then(|n| n.to_str()) else {
        return port.to_path_buf();
    };
    let Ok(entries) = std::fs::read_dir(sysfs) else {
        return port.to_path_buf();
    };
    for entry in entries.flatten() {
        let named = std::fs::read_to_string(entry.path().join("name"))
            .is_ok_and(|n| n.trim_end_matches('\n') == name);
        let node = entry.file_name();
        let node = node.to_string_lossy();
        // Only the kernel's own node names: never a path built from arbitrary sysfs text.
        let kernel_node = node.strip_prefix("vport").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        if named && kernel_node {
            return Path::new("/dev").join(&*node);
        }
    }
    port.to_path_buf()
}

/// What the port's reader thread saw.
#[derive(Debug)]
enum PortEvent {
    /// Bytes from the host.
    Data(Vec<u8>),
    /// The host went away after sending bytes (a read of 0): the end of that host's input.
    HostGone,
}

/// The port's input, for every session in turn.
type PortInput = Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<PortEvent>>>;

/// Starts the one thread that reads the port for the agent's lifetime (reads of a virtio port
/// block, and tokio's file type cannot read and write at once). While no host is connected a
/// read returns 0 at once; the thread then polls, and reports the host's going away only once
/// per connection that sent something, so nothing stale queues up while the channel is idle.
fn port_reader(dev: &std::fs::File) -> PortInput {
    use std::io::Read;
    let (tx, rx) = tokio::sync::mpsc::channel::<PortEvent>(16);
    if let Ok(mut reader) = dev.try_clone() {
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut host_sent = false;
            loop {
                let event = match reader.read(&mut buf) {
                    Ok(0) => {
                        std::thread::sleep(Duration::from_millis(100));
                        if !std::mem::take(&mut host_sent) {
                            continue;
                        }
                        PortEvent::HostGone
                    }
                    Ok(n) => {
                        host_sent = true;
                        PortEvent::Data(buf[..n].to_vec())
                    }
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                };
                if tx.blocking_send(event).is_err() {
                    return;
                }
            }
        });
    }
    Arc::new(tokio::sync::Mutex::new(rx))
}

/// The next bytes a host sends, skipping the ends of earlier hosts' input; None once the reader
/// thread is gone.
async fn next_data(input: &PortInput) -> Option<Vec<u8>> {
    let mut rx = input.lock().await;
    loop {
        match rx.recv().await? {
            PortEvent::Data(d) => return Some(d),
            PortEvent::HostGone => continue,
        }
    }
}

/// One HTTP connection over the port.
struct DeviceSession {
    /// The stream HTTP is served on.
    io: tokio::io::DuplexStream,
    /// Fired when HTTP is done with the connection.
    stop: tokio::sync::oneshot::Sender<()>,
    /// The input forwarder; yields the bytes it had read but could not hand over.
    forward: tokio::task::JoinHandle<Option<Vec<u8>>>,
}

/// One session on the port: an in-memory stream whose input is `first`, then the port's input
/// until the host goes away (then end of stream) or `stop` fires; a thread writes its output to
/// `out`, and stops writing once the host has gone, so no reply meant for this host waits in
/// the port for the next one.
fn device_session(out: std::fs::File, input: PortInput, first: Vec<u8>) -> DeviceSession {
    use std::io::Write;
    use tokio::io::AsyncWriteExt;
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut rd_half, mut wr_half) = tokio::io::split(theirs);
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let host_gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gone = host_gone.clone();
    let forward = tokio::spawn(async move {
        if wr_half.write_all(&first).await.is_err() {
            return Some(first);
        }
        let mut rx = input.lock().await;
        loop {
            tokio::select! {
                biased;
                _ = &mut stop_rx => return None,
                event = rx.recv() => match event {
                    Some(PortEvent::Data(c)) => {
                        if wr_half.write_all(&c).await.is_err() {
                            return Some(c);
                        }
                    }
                    Some(PortEvent::HostGone) | None => {
                        gone.store(true, std::sync::atomic::Ordering::SeqCst);
                        // End of stream for HTTP, so the connection ends now rather than at
                        // its header timeout.
                        let _ = wr_half.shutdown().await;
                        return None;
                    }
                },
            }
        }
    });
    let rt = tokio::runtime::Handle::current();
    let mut writer = out;
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 8192];
        loop {
            let n = match rt.block_on(tokio::io::AsyncReadExt::read(&mut rd_half, &mut buf)) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if host_gone.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            if writer.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    DeviceSession {
        io: ours,
        stop: stop_tx,
        forward,
    }
}

/// The reply to a connection over the per-peer cap, written without waiting.
const TOO_MANY_FROM_PEER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 50\r\nConnection: close\r\n\r\n{\"error\":\"too many connections from this address\"}";

/// Connections per source address on TCP.
#[derive(Debug, Clone)]
struct Peers {
    held: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    max: usize,
}

/// One connection's share of its peer's count; given back on drop.
#[derive(Debug)]
struct PeerSlot {
    peers: Peers,
    ip: std::net::IpAddr,
}

impl Peers {
    fn new(max: usize) -> Peers {
        Peers {
            held: Arc::default(),
            max,
        }
    }

    /// A slot for `ip`, or None if it already holds `max`.
    fn take(&self, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut held = self.peers.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// The event-stream slots of one transport.
#[derive(Debug, Clone)]
pub(crate) struct Streams {
    slots: Arc<Semaphore>,
    max: usize,
}

impl Streams {
    /// `max` streams, but always fewer than the transport's `max_connections`.
    pub(crate) fn new(max: usize, max_connections: usize) -> Streams {
        let max = max.min(max_connections.saturating_sub(1));
        Streams {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

/// Serves HTTP/1.1 on one connection until it closes.
pub(crate) async fn serve_io<IO>(agent: Arc<Agent>, io: IO, transport: Transport, streams: Streams)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // On TCP the headers carry the token: an unauthenticated client gets the short timeout.
    let header_timeout = match transport {
        Transport::Tcp => agent.cfg.tcp_header_timeout,
        Transport::Unix | Transport::Virtio => agent.cfg.header_timeout,
    };
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let agent = agent.clone();
        let streams = streams.clone();
        // The client's request id goes back on the reply, so a client can tell this reply
        // from one written for an earlier connection (virtio-serial keeps such bytes).
        let id = req
            .headers()
            .get(crate::request_id::REQUEST_ID)
            .filter(|v| v.len() <= 128)
            .cloned();
        async move {
            let mut r = handle(agent, transport, &streams, req).await;
            if let Some(id) = id {
                r.headers_mut().insert(crate::request_id::REQUEST_ID, id);
            }
            Ok::<_, Infallible>(r)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true)
        .serve_connection(TokioIo::new(WriteTimeout::new(io, WRITE_TIMEOUT)), svc);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, ?transport, "connection ended with an error");
    }
}

fn respond(status: u16, ctype: &str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json_error(status: u16, msg: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": msg }).to_string();
    respond(status, "application/json", Body::full(Bytes::from(body)))
}

fn authorized(agent: &Agent, req: &Request<Incoming>) -> bool {
    let Some(token) = &agent.token else {
        return false;
    };
    let Some(h) = req.headers().get(hyper::header::AUTHORIZATION) else {
        return false;
    };
    let given = h.as_bytes();
    let given = given
        .strip_prefix(b"Bearer ")
        .or_else(|| given.strip_prefix(b"bearer "))
        .unwrap_or(b"");
    crate::util::ct_eq(given, token.expose())
}

/// Marks a response as the last on its connection: hyper closes it once written.
fn closing(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    r
}

async fn handle(
    agent: Arc<Agent>,
    transport: Transport,
    streams: &Streams,
    req: Request<Incoming>,
) -> Response<Body> {
    if transport == Transport::Tcp && !authorized(&agent, &req) {
        // Closed after the answer: without the token a client gets one request per connection.
        let mut r = closing(json_error(401, "missing or wrong bearer token"));
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    let max = agent.cfg.config.api.max_body_bytes;
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return json_error(413, &format!("request body over {max} bytes"));
    }
    let method = req.method().as_str().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let is_head = req.method() == hyper::Method::HEAD;
    let body = match tokio::time::timeout(
        agent.cfg.header_timeout,
        Limited::new(req.into_body(), max).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return json_error(413, &format!("request body over {max} bytes")),
        Err(_) => return json_error(408, "request body not received in time"),
    };
    let action = match crate::api::parse_request(&method, &target, &body) {
        Ok(a) => a,
        Err(e) => {
            let mut r = json_error(e.status(), &e.to_string());
            if let crate::api::ApiError::MethodNotAllowed { allowed, .. } = e {
                r.headers_mut().insert(
                    hyper::header::ALLOW,
                    hyper::header::HeaderValue::from_static(allowed),
                );
            }
            return r;
        }
    };
    // An event stream holds its connection for good: take a stream slot first, or refuse and
    // close, so that subscribers can never hold every connection slot.
    let stream_slot = if action == crate::action::Action::Events {
        match streams.slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                return closing(json_error(
                    503,
                    &format!(
                        "{} event streams already open on this transport (the limit)",
                        streams.max
                    ),
                ))
            }
        }
    } else {
        None
    };
    let mut resp = match execute(&agent, action).await {
        Reply::Json(status, b) => respond(status, "application/json", Body::full(b)),
        Reply::Raw(status, ctype, b) => respond(status, ctype, Body::full(b)),
        Reply::Events(rx) => {
            let mut r = respond(200, "text/event-stream", Body::events(rx, stream_slot));
            r.headers_mut().insert(
                hyper::header::CACHE_CONTROL,
                hyper::header::HeaderValue::from_static("no-cache"),
            );
            r
        }
    };
    if is_head {
        *resp.body_mut() = Body::full(Bytes::new());
    }
    resp
}

/// A response body: a complete buffer, or a stream of server-sent events.
#[derive(Debug)]
pub(crate) enum Body {
    /// All at once.
    Full(Option<Bytes>),
    /// SSE frames as they come, from a bounded queue; the stream slot is given back when the
    /// body is dropped (the connection ended).
    Events(
        mpsc::Receiver<Bytes>,
        // Never read: held only so that dropping the body gives the slot back.
        #[allow(dead_code)] Option<tokio::sync::OwnedSemaphorePermit>,
    ),
}

impl Body {
    fn full(b: Bytes) -> Body {
        Body::Full(Some(b))
    }

    /// Forwards the broadcast into a small queue; when the client goes away the queue closes and
    /// the forwarder ends at the next event. A subscriber too slow to keep up misses events
    /// rather than making the agent buffer them.
    fn events(
        mut rx: tokio::sync::broadcast::Receiver<Bytes>,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Body {
        let (tx, out) = mpsc::channel(8);
        tokio::spawn(async move {
            if tx
                .send(Bytes::from_static(b": multiverse-agent events\n\n"))
                .await
                .is_err()
            {
                return;
            }
            loop {
                match rx.recv().await {
                    Ok(frame) => {
                        if tx.send(frame).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Body::Events(out, slot)
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Events(rx, _) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Full(Some(b)) => hyper::body::SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => hyper::body::SizeHint::with_exact(0),
            Body::Events(..) => hyper::body::SizeHint::default(),
        }
    }
}

/// A connection with a time limit on every write: a write (or flush) that stays pending for
/// `limit` fails with `TimedOut`, which ends the connection. Reads are untouched (hyper's header
/// timeout covers them); idle time between writes does not count.
#[derive(Debug)]
pub(crate) struct WriteTimeout<IO> {
    io: IO,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> WriteTimeout<IO> {
    /// Wraps `io`.
    pub(crate) fn new(io: IO, limit: Duration) -> Self {
        WriteTimeout {
            io,
            limit,
            stalled: None,
        }
    }

    /// Progress resets the clock; a pending write starts it (once) and fails when it runs out.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        p: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if p.is_ready() {
            self.stalled = None;
            return p;
        }
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not read for the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteTimeout<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let p = Pin::new(&mut me.io).poll_write(cx, buf);
        me.check(cx, p)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let p = Pin::new(&mut me.io).poll_write_vectored(cx, bufs);
        me.check(cx, p)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let p = Pin::new(&mut me.io).poll_flush(cx);
        me.check(cx, p)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let p = Pin::new(&mut me.io).poll_shutdown(cx);
        me.check(cx, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_port_without_its_udev_link_is_found_through_sysfs() {
        let sysfs = tempfile::tempdir().unwrap();
        for (node, name) in [
            ("vport1p1", "org.qemu.guest_agent.0"),
            ("vport2p1", "org.multiverse.agent.0"),
            ("vport2p2", "org.multiverse.ssh.0"),
        ] {
            std::fs::create_dir(sysfs.path().join(node)).unwrap();
            std::fs::write(sysfs.path().join(node).join("name"), format!("{name}\n")).unwrap();
        }
        let port = Path::new("/dev/virtio-ports/org.multiverse.agent.0");
        assert_eq!(port_device(port, sysfs.path()), Path::new("/dev/vport2p1"));
        // A name sysfs does not list, a path elsewhere, or a node name that is not the kernel's:
        // the path as configured.
        let other = Path::new("/dev/virtio-ports/org.multiverse.none.0");
        assert_eq!(port_device(other, sysfs.path()), other);
        let elsewhere = Path::new("/run/test/org.multiverse.agent.0");
        assert_eq!(port_device(elsewhere, sysfs.path()), elsewhere);
        std::fs::create_dir(sysfs.path().join("evil..")).unwrap();
        std::fs::write(sysfs.path().join("evil../name"), "org.multiverse.ssh.1").unwrap();
        let evil = Path::new("/dev/virtio-ports/org.multiverse.ssh.1");
        assert_eq!(port_device(evil, sysfs.path()), evil);
    }

    #[tokio::test]
    async fn a_stalled_write_times_out_and_progress_resets_the_clock() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut w = WriteTimeout::new(ours, Duration::from_millis(200));
        // Progress: the peer reads, the writes go through whatever the total time.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 1000];
            theirs.read_exact(&mut buf).await.map(|_| theirs)
        });
        for _ in 0..10 {
            w.write_all(&[1u8; 100]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let _theirs = reader.await.unwrap().unwrap();
        // Nobody reads now: the buffer fills, the next write fails within the limit.
        let t0 = std::time::Instant::now();
        let e = w.write_all(&[2u8; 1000]).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn peers_are_capped_and_slots_come_back() {
        let p = Peers::new(2);
        let a: std::net::IpAddr = "127.0.0.2".parse().unwrap();
        let b: std::net::IpAddr = "::1".parse().unwrap();
        let a1 = p.take(a).unwrap();
        let _a2 = p.take(a).unwrap();
        assert!(p.take(a).is_none());
        let _b1 = p.take(b).unwrap();
        drop(a1);
        assert!(p.take(a).is_some());
        drop(_a2);
        drop(_b1);
        assert!(p.held.lock().unwrap().is_empty());
    }

    #[test]
    fn the_over_cap_reply_is_well_formed() {
        let text = std::str::from_utf8(TOO_MANY_FROM_PEER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), body.len());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(v["error"].is_string());
    }

    #[test]
    fn streams_stay_below_the_connection_limit() {
        assert_eq!(Streams::new(8, 64).max, 8);
        assert_eq!(Streams::new(8, 2).max, 1);
        assert_eq!(Streams::new(8, 1).max, 0);
        assert_eq!(Streams::new(0, 64).max, 0);
    }
}
