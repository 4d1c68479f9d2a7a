//! The two ends of the path `ssh` takes to a machine's sshd without a machine network.
//!
//! - each domain has a second virtio-serial channel, `org.multiverse.ssh.0`, whose host side is
//!   the unix socket `mv_core::layout::ssh_socket`;
//! - in the guest, [`relay`] (`multiverse ssh-relay`, a service of the base image) joins that port
//!   to the guest's sshd on 127.0.0.1:22, one session at a time;
//! - on the host, [`proxy_channel`] (`multiverse ssh-proxy FQDN`, ssh's `ProxyCommand`, built by
//!   [`channel_proxy_command`]) copies its stdin and stdout to and from the socket; or
//!   [`proxy_socks`] asks a Tor SOCKS port (RFC 1928, the host name resolved by Tor) for the
//!   machine's onion address, port 22.
//!
//! What this is not: a general tunnel. Only the machine's sshd is reachable this way.

use mv_core::{Classify, ErrorClass, MachineName};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

/// The `ProxyCommand` that joins ssh to `name`'s sshd over the machine's virtio-serial channel:
/// the executable `exe` (this program) with `--root TREE ssh-proxy FQDN`, quoted for the shell.
pub fn channel_proxy_command(exe: &Path, tree_root: &Path, name: &MachineName) -> String {
    format!(
        "{} --root {} ssh-proxy {name}",
        shell_quote(exe),
        shell_quote(tree_root)
    )
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// Why a proxy could not join ssh to the machine.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The SOCKS proxy refused or failed (the message says which).
    #[error("{0}")]
    Socks(String),
    /// The machine's SSH channel did not answer.
    #[error("cannot reach {machine}'s SSH channel")]
    Channel {
        /// The machine.
        machine: MachineName,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing stdin, stdout or the stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Classify for ProxyError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Failure
    }
}

/// ssh's stdout as an unbuffered file: ssh reads its ProxyCommand's stdout as a byte stream.
/// Rust's stdout is line-buffered, which held back the tail of every packet after its last 0x0a
/// byte, and the key exchange then waited for bytes that sat in our buffer.
fn raw_stdout() -> std::io::Result<std::fs::File> {
    Ok(std::fs::File::from(
        std::io::stdout().as_fd().try_clone_to_owned()?,
    ))
}

/// stdin → the machine's SSH socket → stdout, until either side ends (`ssh-proxy FQDN`).
pub fn proxy_channel(name: &MachineName) -> Result<(), ProxyError> {
    let sock = std::os::unix::net::UnixStream::connect(mv_core::layout::ssh_socket(name)).map_err(
        |source| ProxyError::Channel {
            machine: name.clone(),
            source,
        },
    )?;
    let reader = sock.try_clone()?;
    let stdout = raw_stdout()?;
    let down = std::thread::spawn(move || pump(SessionStart::new(reader), stdout));
    let _ = pump(std::io::stdin(), &sock);
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let _ = down.join();
    Ok(())
}

/// stdin → `onion`:22 through the SOCKS5 proxy at `socks` (Tor) → stdout, until either side ends.
pub fn proxy_socks(socks: std::net::SocketAddr, onion: &str) -> Result<(), ProxyError> {
    let stream = socks5_connect(socks, onion, 22).map_err(ProxyError::Socks)?;
    let reader = stream.try_clone()?;
    let stdout = raw_stdout()?;
    let down = std::thread::spawn(move || pump(reader, stdout));
    let _ = pump(std::io::stdin(), &stream);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = down.join();
    Ok(())
}

/// Copies `from` into `to` until EOF or an error, each read written (and flushed) at once.
///
/// A plain read/write loop on purpose: `std::io::copy` from a TCP socket into stdout (a pipe)
/// uses splice(2), and ssh, reading that pipe as its ProxyCommand's output, then waited for the
/// server's version line that had already been spliced into the pipe (seen with ssh over Tor's
/// SOCKS port: the session never started).
fn pump(mut from: impl Read, mut to: impl Write) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        to.flush()?;
        total += n as u64;
    }
    Ok(total)
}

/// The guest's side of a session, from its SSH version line on. A virtio-serial port keeps bytes
/// the guest wrote for an earlier host connection that went away mid-session; the relay connects
/// to sshd only once this host has spoken, so this session's first bytes are sshd's version line
/// (`SSH-`, RFC 4253 §4.2, at the start of a line) and whatever comes before it is stale.
struct SessionStart<R> {
    inner: R,
    started: bool,
    /// Whether bytes were dropped from the front of `seen` (it no longer starts the stream).
    trimmed: bool,
    /// Bytes read while looking for the version line (bounded: at most the length of a line).
    seen: Vec<u8>,
    /// Bytes from the version line on, not yet handed out.
    ready: std::collections::VecDeque<u8>,
}

impl<R: Read> SessionStart<R> {
    fn new(inner: R) -> Self {
        SessionStart {
            inner,
            started: false,
            trimmed: false,
            seen: Vec::new(),
            ready: Default::default(),
        }
    }
}

/// Where the version line starts in `buf`: at 0 if `buf` is the stream's start, or just after
/// a newline.
fn version_line_start(buf: &[u8], stream_start: bool) -> Option<usize> {
    if stream_start && buf.starts_with(b"SSH-") {
        return Some(0);
    }
    buf.windows(5).position(|w| w == b"\nSSH-").map(|p| p + 1)
}

impl<R: Read> Read for SessionStart<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while !self.started {
            let mut buf = [0u8; 8192];
            let n = self.inner.read(&mut buf)?;
            if n == 0 {
                return Ok(0);
            }
            self.seen.extend_from_slice(&buf[..n]);
            if let Some(at) = version_line_start(&self.seen, !self.trimmed) {
                if at > 0 {
                    tracing::debug!(bytes = at, "dropped stale bytes before sshd's version line");
                }
                self.ready.extend(&self.seen[at..]);
                self.seen = Vec::new();
                self.started = true;
            } else {
                // Keep only what could still begin "\nSSH-".
                let keep = self.seen.len().min(4);
                if keep < self.seen.len() {
                    self.seen.drain(..self.seen.len() - keep);
                    self.trimmed = true;
                }
            }
        }
        if !self.ready.is_empty() {
            let n = out.len().min(self.ready.len());
            for (o, b) in out.iter_mut().zip(self.ready.drain(..n)) {
                *o = b;
            }
            return Ok(n);
        }
        self.inner.read(out)
    }
}

/// Opens a TCP stream to `host:port` through the SOCKS5 proxy at `proxy` (RFC 1928, no
/// authentication, the name resolved by the proxy: what Tor needs for an onion address).
fn socks5_connect(
    proxy: std::net::SocketAddr,
    host: &str,
    port: u16,
) -> Result<std::net::TcpStream, String> {
    let name = u8::try_from(host.len())
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{host:?}: not a host name for SOCKS"))?;
    let mut s = std::net::TcpStream::connect_timeout(&proxy, Duration::from_secs(10))
        .map_err(|e| format!("cannot reach the SOCKS proxy at {proxy}: {e}"))?;
    let io = |e: std::io::Error| format!("SOCKS proxy at {proxy}: {e}");
    s.write_all(&[5, 1, 0]).map_err(io)?;
    let mut hello = [0u8; 2];
    s.read_exact(&mut hello).map_err(io)?;
    if hello != [5, 0] {
        return Err(format!(
            "{proxy} is not a SOCKS5 proxy without authentication"
        ));
    }
    let mut req = vec![5, 1, 0, 3, name];
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).map_err(io)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).map_err(io)?;
    if head[1] != 0 {
        return Err(format!(
            "the SOCKS proxy could not reach {host}:{port}: {}",
            socks5_reply(head[1])
        ));
    }
    // The bound address that follows: IPv4, a name, or IPv6, then the port.
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut n = [0u8; 1];
            s.read_exact(&mut n).map_err(io)?;
            usize::from(n[0]) + 2
        }
        t => {
            return Err(format!(
                "SOCKS proxy at {proxy}: address type {t} in its reply"
            ))
        }
    };
    let mut skip = vec![0u8; rest];
    s.read_exact(&mut skip).map_err(io)?;
    Ok(s)
}

/// A SOCKS5 reply code in words (RFC 1928 §6; 0xF0-0xF7 are Tor's onion service errors).
fn socks5_reply(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "not allowed by the proxy's rules",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired (for Tor: the onion service did not answer)",
        7 => "command not supported",
        8 => "address type not supported",
        0xF0 => "onion service descriptor not found (not published yet?)",
        0xF1 => "onion service descriptor is invalid",
        0xF2 => "onion service introduction failed",
        0xF3 => "onion service rendezvous failed",
        0xF4 | 0xF5 => "onion service needs client authorization",
        0xF6 => "not a valid onion address",
        0xF7 => "onion service introduction timed out",
        _ => "unknown error",
    }
}

/// The guest's side (`multiverse ssh-relay`): joins the SSH virtio-serial port to sshd, one session
/// at a time. A port whose host side is closed reads as end-of-file at once, so the relay waits
/// for the first bytes of a session (the client's version line) before it connects to sshd, and a
/// session ends when either side does.
pub fn relay(port_path: &Path, sshd: &str) -> ! {
    // The port stays open for good: closing and reopening it flips the guest's "connected" state
    // under QEMU, and a host that connected in between had its bytes never delivered.
    let mut port = loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(port_path)
        {
            Ok(p) => break p,
            Err(e) => {
                tracing::warn!("cannot open {}: {e}", port_path.display());
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    };
    loop {
        let mut first = [0u8; 4096];
        let n = match port.read(&mut first) {
            Ok(0) | Err(_) => {
                // No client on the host side: nothing to relay yet.
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            Ok(n) => n,
        };
        let tcp = match std::net::TcpStream::connect(sshd) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("cannot reach sshd at {}: {e}", sshd);
                continue;
            }
        };
        let session = (|| -> std::io::Result<()> {
            let mut to_sshd = tcp.try_clone()?;
            to_sshd.write_all(&first[..n])?;
            let mut port_out = port.try_clone()?;
            let mut from_sshd = tcp.try_clone()?;
            let host_gone = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let gone = host_gone.clone();
            // sshd → host; once the host has gone nothing more is written: a write to a port
            // with no host blocks until the next host connects, which would get it.
            let back = std::thread::spawn(move || -> std::io::Result<()> {
                let mut buf = [0u8; 16384];
                loop {
                    let n = from_sshd.read(&mut buf)?;
                    if n == 0 || gone.load(std::sync::atomic::Ordering::SeqCst) {
                        return Ok(());
                    }
                    port_out.write_all(&buf[..n])?;
                }
            });
            // Host → sshd until the host side closes (a read of 0) or sshd is gone.
            let _ = pump(&mut port, &mut to_sshd);
            host_gone.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = tcp.shutdown(std::net::Shutdown::Both);
            let _ = back.join();
            Ok(())
        })();
        if let Err(e) = session {
            tracing::warn!("ssh relay session: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    #[test]
    fn socks5_asks_for_the_name_and_skips_the_bound_address() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut hello = [0u8; 3];
            c.read_exact(&mut hello).unwrap();
            assert_eq!(hello, [5, 1, 0]);
            c.write_all(&[5, 0]).unwrap();
            let mut head = [0u8; 5];
            c.read_exact(&mut head).unwrap();
            assert_eq!(head[..4], [5, 1, 0, 3]);
            let mut rest = vec![0u8; usize::from(head[4]) + 2];
            c.read_exact(&mut rest).unwrap();
            assert_eq!(&rest[..rest.len() - 2], b"abc.onion");
            assert_eq!(rest[rest.len() - 2..], 22u16.to_be_bytes());
            c.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
            c.write_all(b"SSH-2.0-x\r\n").unwrap();
            // A second client is refused the way Tor refuses an unknown onion service.
            let (mut c, _) = listener.accept().unwrap();
            c.read_exact(&mut hello).unwrap();
            c.write_all(&[5, 0]).unwrap();
            let mut req = [0u8; 5 + 9 + 2];
            c.read_exact(&mut req).unwrap();
            c.write_all(&[5, 0xF0, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
        });
        let mut s = socks5_connect(addr, "abc.onion", 22).unwrap();
        let mut line = [0u8; 11];
        s.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"SSH-2.0-x\r\n");
        let e = socks5_connect(addr, "abc.onion", 22).unwrap_err();
        assert!(e.contains("descriptor not found"), "{e}");
        server.join().unwrap();
        assert!(socks5_connect(addr, "", 22)
            .unwrap_err()
            .contains("not a host name"));
    }

    use super::{socks5_connect, version_line_start, SessionStart};
    use std::io::Read;

    #[test]
    fn stale_bytes_before_the_version_line_are_dropped_and_the_rest_kept_whole() {
        let mut stream =
            b"\x00\x17garbage\nmore\x0aSSH-2.0-OpenSSH_9.2\r\n\x00\x00\x01binary".to_vec();
        stream.extend(std::iter::repeat_n(7u8, 20_000));
        let mut out = Vec::new();
        // Read through a reader that hands out 3 bytes at a time, so the marker spans reads.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(3).min(b.len());
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        SessionStart::new(Trickle(&stream))
            .read_to_end(&mut out)
            .unwrap();
        let at = stream.windows(4).position(|w| w == b"SSH-").unwrap();
        assert_eq!(out, stream[at..]);
        assert_eq!(version_line_start(b"SSH-2.0-x", true), Some(0));
        assert_eq!(version_line_start(b"SSH-2.0-x", false), None);
        assert_eq!(version_line_start(b"xSSH-2.0", true), None);
    }
}
