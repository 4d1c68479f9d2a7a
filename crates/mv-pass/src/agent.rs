//! The session cache: secret keys unlocked once, kept by a small agent on a private socket.
//!
//! gpg-agent keeps a passphrase-protected key usable for a while after one unlock; this is the
//! same for the sealed keys of the key folder, without ever holding the passphrase. The first
//! command that needs a sealed key unseals it (Argon2id, ~1 s) and hands the *unsealed key*
//! to the agent; later commands fetch it in well under a millisecond.
//!
//! - Where: `MULTIVERSE_PASS_AGENT_DIR`, else `$XDG_RUNTIME_DIR/multiverse`, else
//!   `/tmp/multiverse-UID`. The folder must be ours and mode 0700 (it is created so, and both
//!   sides refuse one that is not); the socket is `pass-agent.sock`, mode 0600. The agent also
//!   checks each peer's uid (`SO_PEERCRED`): another user is refused even if a mode is loosened.
//!   root may only send `lock` (the kill switch).
//! - How long: every entry expires `ttl` seconds after its last use (default
//!   [`DEFAULT_TTL_SECS`]) and, however often it is used, `max` seconds after it was stored
//!   (default [`DEFAULT_MAX_TTL_SECS`], gpg-agent's `max-cache-ttl`); with nothing left the
//!   agent exits. `lock` forgets everything and ends the agent.
//! - What it holds: opaque values under ids the caller derives from the sealed files' bytes, so a
//!   re-imported or re-sealed key is a different id. Values live in zeroizing buffers (`Secret`); the agent
//!   marks itself non-dumpable (no core file, no ptrace by the same user without privilege).
//! - Nothing reaches disk or argv: values travel over the socket only.
//! - Concurrency: [`Client::unlock_guard`] is an exclusive `flock` held across "look up, unseal
//!   on a miss, store", so two commands starting together unseal once; [`Client::unlock`] is
//!   that procedure, with the caller's [`UnlockSteps`].
//!
//! The wire format (one request per connection): a request is an op byte (`G` get, `Q` put,
//! `L` lock), a u32-LE length and an id, and for `Q` a u32-LE idle ttl in seconds, a u32-LE
//! maximum lifetime in seconds, a u32-LE length and the value. (`P`, the put of earlier
//! versions, has no maximum field; it is still read, with the default maximum.) Answers: `Y` +
//! u32-LE length + value, `N` (no such entry), `K` (done), `E` (refused).

pub use crate::unlock::{UnlockSteps, Unlocked};
use mv_core::secret::SecretBytes;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The default time an unlocked key stays usable after its last use: 10 minutes.
pub const DEFAULT_TTL_SECS: u64 = 600;

/// The default longest time an unlocked key stays usable, however often it is used: 8 hours.
pub const DEFAULT_MAX_TTL_SECS: u64 = 8 * 3600;

/// How long the agent keeps a value: `idle` after its last use, and never longer than `max`
/// after it was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Expiry after the last use.
    pub idle: Duration,
    /// Expiry after the value was stored, whatever its use.
    pub max: Duration,
}

impl Default for Lifetime {
    fn default() -> Self {
        Lifetime {
            idle: Duration::from_secs(DEFAULT_TTL_SECS),
            max: Duration::from_secs(DEFAULT_MAX_TTL_SECS),
        }
    }
}

/// The socket's file name inside the agent folder.
pub(crate) const SOCKET_NAME: &str = "pass-agent.sock";

/// Largest id or value accepted on the wire (a secret key is a few KiB).
const MAX_FIELD: usize = 1 << 20;

/// Errors of the session cache.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent folder is not private (another owner, or group/other bits).
    #[error("{} is not a private folder of this user (owner uid {owner}, mode {mode:o}); refusing to use it for the key cache", path.display())]
    NotPrivate {
        /// The folder.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Its mode bits.
        mode: u32,
    },
    /// A filesystem or socket operation failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The agent answered something else than expected.
    #[error("the key cache agent at {} answered badly", path.display())]
    Protocol {
        /// Its socket.
        path: PathBuf,
    },
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> AgentError + 'a {
    move |source| AgentError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The id a key is cached under: what it is and the SHA-256 of its sealed bytes, so that
/// re-sealing or re-importing makes a new id (the hash of ciphertext reveals nothing).
pub fn cache_id(kind: &str, sealed: &[u8]) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(sealed);
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    format!("{kind}:{hex}")
}

/// The agent folder for this user (see the module documentation).
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MULTIVERSE_PASS_AGENT_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("multiverse");
    }
    std::env::temp_dir().join(format!("multiverse-{}", euid()))
}

/// Creates `dir` (0700) if missing and checks that it is ours and private.
fn private_dir(dir: &Path, create: bool) -> Result<(), AgentError> {
    if create {
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("cannot create", dir)(e)),
        }
    }
    let m = std::fs::symlink_metadata(dir).map_err(io_err("cannot read", dir))?;
    let mode = m.permissions().mode() & 0o777;
    if !m.is_dir() || m.uid() != euid() || mode & 0o077 != 0 {
        return Err(AgentError::NotPrivate {
            path: dir.to_path_buf(),
            owner: m.uid(),
            mode,
        });
    }
    Ok(())
}

fn put_field(buf: &mut Vec<u8>, data: &[u8]) {
    buf.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(data);
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_field(r: &mut impl Read) -> std::io::Result<SecretBytes> {
    let n = read_u32(r)? as usize;
    if n > MAX_FIELD {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    let mut v = SecretBytes::new(vec![0u8; n]);
    r.read_exact(v.expose_mut())?;
    Ok(v)
}

/// A connection to the agent of one folder.
#[derive(Debug, Clone)]
pub struct Client {
    dir: PathBuf,
}

/// The exclusive unlock lock (see [`Client::unlock_guard`]); released on drop.
#[derive(Debug)]
pub struct UnlockGuard {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Client {
    /// The agent of folder `dir` (need not run).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Client { dir: dir.into() }
    }

    /// The agent of [`default_dir`].
    pub fn default_session() -> Self {
        Client::new(default_dir())
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join(SOCKET_NAME)
    }

    fn connect(&self) -> Option<UnixStream> {
        private_dir(&self.dir, false).ok()?;
        let s = UnixStream::connect(self.socket()).ok()?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        Some(s)
    }

    /// Whether an agent answers.
    pub fn is_running(&self) -> bool {
        self.connect().is_some()
    }

    /// The value stored under `id`, if the agent runs and holds it (any failure is a miss).
    pub fn get(&self, id: &str) -> Option<SecretBytes> {
        let mut s = self.connect()?;
        let mut req = vec![b'G'];
        put_field(&mut req, id.as_bytes());
        s.write_all(&req).ok()?;
        let mut status = [0u8; 1];
        s.read_exact(&mut status).ok()?;
        if status[0] != b'Y' {
            return None;
        }
        read_field(&mut s).ok()
    }

    /// Stores `value` under `id` for `life` (idle and maximum). Fails when no agent runs.
    pub fn put(&self, id: &str, value: &[u8], life: Lifetime) -> Result<(), AgentError> {
        let sock = self.socket();
        let mut s = self.connect().ok_or_else(|| AgentError::Io {
            what: "no key cache agent at",
            path: sock.clone(),
            source: std::io::ErrorKind::NotConnected.into(),
        })?;
        let mut req = SecretBytes::new(vec![b'Q']);
        put_field(req.expose_mut(), id.as_bytes());
        for d in [life.idle, life.max] {
            let secs = u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
            req.expose_mut().extend_from_slice(&secs.to_le_bytes());
        }
        put_field(req.expose_mut(), value);
        s.write_all(req.expose())
            .map_err(io_err("cannot write to", &sock))?;
        let mut status = [0u8; 1];
        s.read_exact(&mut status)
            .map_err(io_err("cannot read from", &sock))?;
        if status[0] != b'K' {
            return Err(AgentError::Protocol { path: sock });
        }
        Ok(())
    }

    /// Forgets everything and ends the agent. `Ok(false)`: no agent was running.
    pub fn lock(&self) -> Result<bool, AgentError> {
        let sock = self.socket();
        let Ok(mut s) = UnixStream::connect(&sock) else {
            return Ok(false);
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut req = vec![b'L'];
        put_field(&mut req, b"");
        s.write_all(&req)
            .map_err(io_err("cannot write to", &sock))?;
        let mut status = [0u8; 1];
        s.read_exact(&mut status)
            .map_err(io_err("cannot read from", &sock))?;
        if status[0] != b'K' {
            return Err(AgentError::Protocol { path: sock });
        }
        Ok(true)
    }

    /// Takes the folder's unlock lock (waiting for another unlocking command), creating the
    /// folder if needed.
    pub fn unlock_guard(&self) -> Result<UnlockGuard, AgentError> {
        private_dir(&self.dir, true)?;
        let path = self.dir.join("unlock.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("cannot open", &path))?;
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err("cannot lock", &path)(e.into()))?;
        Ok(UnlockGuard { _lock: lock })
    }
}

use std::os::unix::fs::OpenOptionsExt;

/// Sends `lock` to every agent found in the usual places (`/run/user/*/multiverse`,
/// `/tmp/multiverse-*`, and [`default_dir`]): the kill switch's first step. Returns how many
/// agents answered.
pub fn lock_all() -> usize {
    let mut dirs = vec![default_dir()];
    for (base, prefix) in [("/run/user", None), ("/tmp", Some("multiverse-"))] {
        let Ok(rd) = std::fs::read_dir(base) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            match prefix {
                Some(p) if name.starts_with(p) => dirs.push(e.path()),
                None => dirs.push(e.path().join("multiverse")),
                _ => {}
            }
        }
    }
    dirs.sort();
    dirs.dedup();
    dirs.iter()
        .filter(|d| Client::new(d.as_path()).lock().unwrap_or(false))
        .count()
}

struct Entry {
    value: SecretBytes,
    ttl: Duration,
    last: Instant,
    max: Duration,
    stored: Instant,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    quit: bool,
}

impl State {
    fn expire(&mut self, now: Instant) {
        self.entries.retain(|_, e| {
            now.saturating_duration_since(e.last) < e.ttl
                && now.saturating_duration_since(e.stored) < e.max
        });
    }
}

/// Runs the agent on folder `dir` until `lock` or until nothing is left to keep. Returns at
/// once (Ok) when another agent already serves the folder.
pub fn serve(dir: &Path) -> Result<(), AgentError> {
    private_dir(dir, true)?;
    // No core dump and no same-user ptrace of the keys.
    let _ = nix::sys::prctl::set_dumpable(false);
    let sock = dir.join(SOCKET_NAME);
    let listener = match UnixListener::bind(&sock) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(&sock).is_ok() {
                return Ok(());
            }
            std::fs::remove_file(&sock).map_err(io_err("cannot remove stale", &sock))?;
            UnixListener::bind(&sock).map_err(io_err("cannot listen on", &sock))?
        }
        Err(e) => return Err(io_err("cannot listen on", &sock)(e)),
    };
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("cannot restrict", &sock))?;
    let listener = Arc::new(listener);
    let state = Arc::new(Mutex::new(State::default()));
    let started = Instant::now();
    // The reaper: drops expired entries; with nothing left (after a first grace period for the
    // first `put`) it ends the agent by waking the accept loop: through the socket, and by
    // shutting the listener down (which wakes `accept` even when the folder, and so the
    // socket's path, was removed meanwhile).
    {
        let state = Arc::clone(&state);
        let sock = sock.clone();
        let listener = Arc::clone(&listener);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(250));
            let done = {
                let Ok(mut st) = state.lock() else { return };
                st.expire(Instant::now());
                let empty = st.entries.is_empty() && started.elapsed() > Duration::from_secs(10);
                if empty || st.quit {
                    st.quit = true;
                }
                st.quit
            };
            if done {
                let _ = UnixStream::connect(&sock);
                use std::os::fd::AsRawFd;
                let _ = nix::sys::socket::shutdown(
                    listener.as_raw_fd(),
                    nix::sys::socket::Shutdown::Both,
                );
                return;
            }
        });
    }
    let me = euid();
    for conn in listener.incoming() {
        if state.lock().map(|s| s.quit).unwrap_or(true) {
            break;
        }
        let Ok(mut conn) = conn else { continue };
        let peer = nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials)
            .map(|c| c.uid())
            .ok();
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
        let _ = handle(&mut conn, peer, me, &state);
        if state.lock().map(|s| s.quit).unwrap_or(true) {
            break;
        }
    }
    if let Ok(mut st) = state.lock() {
        st.entries.clear();
    }
    let _ = std::fs::remove_file(&sock);
    Ok(())
}

/// One request, as read off the socket.
#[derive(Debug)]
pub struct Request {
    /// `G`, `Q` (or `P`), `L` (anything else is refused).
    pub op: u8,
    /// The id.
    pub id: String,
    /// For a put: the idle ttl and the maximum lifetime in seconds, and the value.
    pub put: Option<(u32, u32, SecretBytes)>,
}

/// Reads one request (see the module documentation); fields are bounded by 1 MiB.
pub(crate) fn read_request(r: &mut impl Read) -> std::io::Result<Request> {
    let mut op = [0u8; 1];
    r.read_exact(&mut op)?;
    let id = read_field(r)?;
    let id = String::from_utf8_lossy(id.expose()).into_owned();
    let put = match op[0] {
        b'Q' => {
            let ttl = read_u32(r)?;
            let max = read_u32(r)?;
            Some((ttl, max, read_field(r)?))
        }
        b'P' => {
            let ttl = read_u32(r)?;
            let max = u32::try_from(DEFAULT_MAX_TTL_SECS).unwrap_or(u32::MAX);
            Some((ttl, max, read_field(r)?))
        }
        _ => None,
    };
    Ok(Request { op: op[0], id, put })
}

fn handle(
    conn: &mut UnixStream,
    peer: Option<u32>,
    me: u32,
    state: &Mutex<State>,
) -> std::io::Result<()> {
    let req = read_request(conn)?;
    let same_user = peer == Some(me);
    let root = peer == Some(0);
    let mut st = state
        .lock()
        .map_err(|_| std::io::Error::other("poisoned"))?;
    match (req.op, req.put) {
        (b'L', _) if same_user || root => {
            st.entries.clear();
            st.quit = true;
            conn.write_all(b"K")
        }
        _ if !same_user => conn.write_all(b"E"),
        (b'G', _) => {
            let now = Instant::now();
            st.expire(now);
            match st.entries.get_mut(&req.id) {
                Some(e) => {
                    e.last = now;
                    let mut out = SecretBytes::new(vec![b'Y']);
                    put_field(out.expose_mut(), e.value.expose());
                    conn.write_all(out.expose())
                }
                None => conn.write_all(b"N"),
            }
        }
        (b'P' | b'Q', Some((ttl, max, value))) => {
            let now = Instant::now();
            st.entries.insert(
                req.id,
                Entry {
                    value,
                    ttl: Duration::from_secs(u64::from(ttl)),
                    last: now,
                    max: Duration::from_secs(u64::from(max)),
                    stored: now,
                },
            );
            conn.write_all(b"K")
        }
        _ => conn.write_all(b"E"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(dir: &Path) -> std::thread::JoinHandle<()> {
        let d = dir.to_path_buf();
        let h = std::thread::spawn(move || serve(&d).unwrap());
        let c = Client::new(dir);
        for _ in 0..200 {
            if c.is_running() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        h
    }

    #[test]
    fn put_get_expire_and_lock() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("agent");
        let h = start(&dir);
        let c = Client::new(&dir);
        assert!(c.get("a").is_none());
        let idle = |ms| Lifetime {
            idle: Duration::from_millis(ms),
            ..Lifetime::default()
        };
        c.put("a", b"key-a", idle(60_000)).unwrap();
        c.put("b", b"key-b", idle(1500)).unwrap();
        assert_eq!(c.get("a").unwrap().expose(), b"key-a");
        assert_eq!(c.get("b").unwrap().expose(), b"key-b");
        std::thread::sleep(Duration::from_millis(1700));
        assert!(c.get("b").is_none(), "expired");
        assert!(c.get("a").is_some());
        let mode = std::fs::metadata(c.socket()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(c.lock().unwrap());
        h.join().unwrap();
        assert!(!c.is_running());
        assert!(c.get("a").is_none());
        assert!(!c.lock().unwrap(), "nothing runs any more");
    }

    #[test]
    fn the_maximum_lifetime_ends_a_key_in_constant_use() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("agent");
        let h = start(&dir);
        let c = Client::new(&dir);
        let life = Lifetime {
            idle: Duration::from_secs(600),
            max: Duration::from_secs(2),
        };
        c.put("a", b"key-a", life).unwrap();
        c.put("long", b"v", Lifetime::default()).unwrap();
        let start = Instant::now();
        // Used every 200 ms, so the idle timeout never runs out; the maximum does.
        while c.get("a").is_some() {
            assert!(
                start.elapsed() < Duration::from_millis(2500),
                "outlived its maximum"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            start.elapsed() >= Duration::from_millis(1800),
            "{:?}",
            start.elapsed()
        );
        assert!(c.get("long").is_some(), "the default maximum is hours");
        c.lock().unwrap();
        h.join().unwrap();
    }

    #[test]
    fn a_put_of_the_earlier_format_is_still_understood() {
        let mut wire = vec![b'P'];
        put_field(&mut wire, b"id");
        wire.extend_from_slice(&7u32.to_le_bytes());
        put_field(&mut wire, b"value");
        let r = read_request(&mut std::io::Cursor::new(wire)).unwrap();
        let (ttl, max, v) = r.put.unwrap();
        assert_eq!((ttl, u64::from(max)), (7, DEFAULT_MAX_TTL_SECS));
        assert_eq!(v.expose().as_slice(), b"value");
    }

    #[test]
    fn the_agent_ends_even_when_its_folder_was_removed() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("agent");
        let h = start(&dir);
        let c = Client::new(&dir);
        let life = Lifetime {
            idle: Duration::from_millis(500),
            ..Lifetime::default()
        };
        c.put("a", b"v", life).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // Expired, past the 10 s grace period: the agent returns although nobody can connect.
        let begun = Instant::now();
        while !h.is_finished() {
            assert!(
                begun.elapsed() < Duration::from_secs(20),
                "the agent lingers"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        h.join().unwrap();
    }

    #[test]
    fn a_folder_that_is_not_private_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("agent");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(serve(&dir), Err(AgentError::NotPrivate { .. })));
        assert!(Client::new(&dir).unlock_guard().is_err());
        assert!(Client::new(&dir).get("x").is_none());
    }

    #[test]
    fn garbage_on_the_socket_is_survived() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("agent");
        let h = start(&dir);
        let c = Client::new(&dir);
        c.put("a", b"v", Lifetime::default()).unwrap();
        for junk in [&b"P\xff\xff\xff\xff"[..], b"Z", b"", b"G\x05\x00\x00\x00ab"] {
            let mut s = UnixStream::connect(c.socket()).unwrap();
            let _ = s.write_all(junk);
        }
        assert_eq!(c.get("a").unwrap().expose(), b"v");
        c.lock().unwrap();
        h.join().unwrap();
    }
}
