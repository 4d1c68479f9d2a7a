//! `multiverse ssh FQDN [COMMAND...]`: a shell on a machine with the identity's keys both ways,
//! over the machine's own virtio-serial port, never over a machine network (the host has no
//! address there: DESIGN.md).
//!
//! The pieces:
//! - each domain has a second channel, `org.multiverse.ssh.0`, whose host side is the unix socket
//!   `/run/multiverse/ssh/<fqdn>.sock` (added by `up`, see `mv_libvirt::up::MachineSpec`);
//! - in the guest, `multiverse ssh-relay` (a service of the base image) joins that port to the
//!   guest's sshd on 127.0.0.1:22, one session at a time;
//! - here, `ssh` runs with the derived `@user` login key (in a private 0700 scratch folder,
//!   removed afterwards), a known_hosts holding exactly the machine's derived host keys
//!   (`StrictHostKeyChecking yes`: no trust-on-first-use prompt) and `multiverse ssh-proxy FQDN`
//!   as its `ProxyCommand`, which copies its stdin and stdout to and from the socket.
//!
//! With `--onion`, the same session goes over Tor instead: `ssh-proxy --socks ADDR --onion HOST`
//! asks a Tor SOCKS port (RFC 1928, the host name resolved by Tor) for the machine's onion
//! address, port 22. That reaches a star router's own sshd, or a machine that publishes
//! `onion = [22]`, from anywhere Tor runs, with the same derived keys and known_hosts.
//!
//! What this is not: a general tunnel. Only the machine's sshd is reachable this way.

use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_core::{IdentityName, MachineName};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the host side of a machine's SSH channel listens.
pub fn ssh_socket(name: &MachineName) -> PathBuf {
    PathBuf::from(format!("/run/multiverse/ssh/{name}.sock"))
}

/// Arguments of `ssh`.
#[derive(Debug, clap::Args)]
pub struct SshArgs {
    /// The machine (FQDN)
    #[arg(value_name = "FQDN")]
    pub machine: String,
    /// Log in as this user on the machine
    #[arg(long, short = 'l', default_value = "root", value_name = "USER")]
    pub user: String,
    /// The person whose login key is used
    #[arg(long, default_value = "@user", value_name = "@PERSON")]
    pub person: String,
    /// Reach the machine over Tor, at its onion address (a star router, or a machine that
    /// publishes `onion = [22]`), instead of over its virtio-serial channel
    #[arg(long)]
    pub onion: bool,
    /// Tor's SOCKS port, for --onion
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:9050",
        requires = "onion"
    )]
    pub socks: std::net::SocketAddr,
    #[command(flatten)]
    pub pass: super::identity::PassArgs,
    /// The command to run (default: a login shell)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Arguments of the hidden `ssh-proxy` (ssh's ProxyCommand).
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// The machine (FQDN)
    pub machine: String,
    /// Connect through this SOCKS5 proxy (Tor) instead of the machine's channel
    #[arg(long, value_name = "ADDR", requires = "onion")]
    pub socks: Option<std::net::SocketAddr>,
    /// The onion address to ask the SOCKS proxy for (port 22)
    #[arg(long, value_name = "HOST", requires = "socks")]
    pub onion: Option<String>,
}

/// Arguments of the hidden `ssh-relay` (the guest side).
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// The virtio-serial port
    #[arg(long, default_value = "/dev/virtio-ports/org.multiverse.ssh.0")]
    pub port: PathBuf,
    /// Where sshd listens
    #[arg(long, default_value = "127.0.0.1:22")]
    pub sshd: String,
}

fn machine_name(text: &str) -> Result<MachineName, CliError> {
    MachineName::parse(text)
        .usage()
        .hint("machine names are lower-case FQDNs like mail.service.multiverse")
}

/// `multiverse ssh`.
pub fn ssh(g: &Global, a: SshArgs) -> Result<(), CliError> {
    let name = machine_name(&a.machine)?;
    let person = IdentityName::parse(&a.person).usage()?;
    if a.user.is_empty() || a.user.starts_with('-') || a.user.contains(['@', ' ', '/']) {
        return Err(CliError::usage_msg(format!(
            "--user {}: not a user name",
            a.user
        )));
    }
    let sock = ssh_socket(&name);
    if a.onion {
        if !publishes_ssh_onion(g, &name) {
            return Err(CliError::usage_msg(format!(
                "{name} publishes no onion service for its sshd"
            ))
            .with_hint(
                "a star router publishes its own; for another machine add `onion = [22]` to it in multiverse.toml and provision the star",
            ));
        }
    } else if !sock.exists() {
        return Err(CliError::failure_msg(format!(
            "{name} has no SSH channel at {}",
            sock.display()
        ))
        .with_hint("start it with `multiverse up --start FQDN`"));
    }
    let root = super::provision::unseal(g, &a.pass)?;
    let login = Login::new(&root, &person, &name, name.as_str())?;
    let onion = a
        .onion
        .then(|| root.onion_v3(&IdentityName::Machine(name.clone())).hostname);
    drop(root);
    let proxy = match &onion {
        Some(onion) => format!(
            "{} --socks {} --onion {onion}",
            channel_proxy(g, &name)?,
            a.socks
        ),
        None => channel_proxy(g, &name)?,
    };
    let mut cmd = std::process::Command::new("ssh");
    cmd.args(login.options(true))
        .arg("-o")
        .arg(format!("ProxyCommand={proxy}"));
    if a.onion {
        // Through Tor the session may never start (an unpublished service, a stalled circuit):
        // ssh then gives up after this long instead of waiting for the version line forever.
        cmd.args(["-o", "ConnectTimeout=120"]);
    }
    cmd.arg("-l").arg(&a.user).arg(name.as_str());
    if !a.command.is_empty() {
        cmd.arg("--").args(&a.command);
    }
    if g.dry_run {
        g.say(format!("would run: {cmd:?}"));
        return Ok(());
    }
    let status = cmd
        .status()
        .map_err(|e| CliError::failure_msg(format!("cannot run ssh: {e}")))
        .hint("install openssh-client")?;
    drop(login);
    match status.code() {
        Some(0) => Ok(()),
        Some(255) => Err(CliError::failure_msg(format!(
            "ssh to {name} failed (exit 255: connection or authentication)"
        ))
        .with_hint(if a.onion {
            "is Tor running at --socks, and has the star published the service? `multiverse identity show FQDN` prints the address"
        } else {
            "is the machine provisioned and its sshd up? `multiverse status` shows its agent and host key"
        })),
        code => Err(CliError::failure_msg(format!(
            "the command on {name} exited with {}",
            code.map_or_else(|| "a signal".to_string(), |c| c.to_string())
        ))),
    }
}

/// What `ssh` needs to log in to a machine with the identity's keys, in a private folder removed
/// on drop: the person's login key (0600) and a known_hosts holding exactly the machine's derived
/// host keys, so no trust-on-first-use prompt is ever shown. Shared by `ssh`, `provision --ssh`
/// and `identity rotate` (which logs in with the keys of the epoch before the rotation).
pub struct Login {
    scratch: mv_provision::remote::Scratch,
    key: PathBuf,
    known_hosts: PathBuf,
}

impl Login {
    /// `person`'s login key and `machine`'s host keys as `root` derives them (at its epochs),
    /// the host keys listed in known_hosts under `pattern` (the host name ssh is given, or
    /// `[host]:port` for another port).
    pub fn new(
        root: &mv_identity::Root,
        person: &IdentityName,
        machine: &MachineName,
        pattern: &str,
    ) -> Result<Self, CliError> {
        let key = root
            .ssh_ed25519(person)
            .map_err(|e| CliError::failure_msg(format!("cannot derive the login key: {e}")))?;
        let key_text = key
            .to_openssh(mv_identity::ssh_key::LineEnding::LF)
            .map_err(|e| CliError::failure_msg(format!("cannot encode the login key: {e}")))?;
        let id = IdentityName::Machine(machine.clone());
        let mut known = String::new();
        for k in [root.ssh_host_ed25519(&id), root.ssh_host_ecdsa_p256(&id)] {
            let k =
                k.map_err(|e| CliError::failure_msg(format!("cannot derive host keys: {e}")))?;
            known.push_str(&format!("{pattern} {}\n", mv_identity::public_line(&k)));
        }
        // A fresh private folder (mkdtemp, 0700): nobody else can read the key or swap known_hosts.
        let scratch = mv_provision::remote::Scratch::new().map_err(|e| {
            CliError::failure_msg(format!(
                "cannot make a private folder in {}: {e}",
                std::env::temp_dir().display()
            ))
        })?;
        let key_path = scratch.path().join("id_ed25519");
        mv_core::fsutil::write_secret(&key_path, key_text.as_bytes())?;
        let known_hosts = scratch.path().join("known_hosts");
        mv_core::fsutil::write_public(&known_hosts, known.as_bytes())?;
        Ok(Login {
            scratch,
            key: key_path,
            known_hosts,
        })
    }

    /// The private folder (for other scratch files of the same session).
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// `ssh` options: no user config, this key alone, no prompt, and the host key checked against
    /// this known_hosts only (`strict`), or a key not listed yet accepted (first contact).
    pub fn options(&self, strict: bool) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.key.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            format!(
                "StrictHostKeyChecking={}",
                if strict { "yes" } else { "accept-new" }
            ),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }
}

/// The `ProxyCommand` that joins ssh to `name`'s sshd over the machine's virtio-serial channel
/// (this binary's hidden `ssh-proxy`).
pub fn channel_proxy(g: &Global, name: &MachineName) -> Result<String, CliError> {
    let exe = std::env::current_exe()?;
    Ok(format!(
        "{} --root {} ssh-proxy {name}",
        shell_quote(&exe),
        shell_quote(&g.root)
    ))
}

/// Whether `name`'s SSH channel answers: its domain is running (QEMU listens on the socket while
/// the machine runs). Says nothing about the guest's sshd.
pub fn channel_open(name: &MachineName) -> bool {
    std::os::unix::net::UnixStream::connect(ssh_socket(name)).is_ok()
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
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

/// Whether `name`'s sshd has an onion service: a star router publishes its own, another machine
/// when `onion = [..]` in `multiverse.toml` lists port 22.
fn publishes_ssh_onion(g: &Global, name: &MachineName) -> bool {
    let config = mv_machines::layout::Tree::new(g.root.clone()).config_file();
    let Ok(topo) = mv_machines::config::Topology::load(&config) else {
        return false;
    };
    let is_star = topo.vms().any(|m| {
        &m.name == name
            && m.router
                .as_ref()
                .is_some_and(|r| r.role == mv_machines::config::RouterRole::Star)
    });
    is_star || super::identity::published_onion(g, name).is_some_and(|(_, s)| s.ports.contains(&22))
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

/// `multiverse ssh-proxy FQDN`: stdin → the machine's SSH socket → stdout; with `--socks`, the
/// machine's onion address through Tor instead.
pub fn proxy(_g: &Global, a: ProxyArgs) -> Result<(), CliError> {
    let name = machine_name(&a.machine)?;
    if let (Some(socks), Some(onion)) = (a.socks, &a.onion) {
        let stream = socks5_connect(socks, onion, 22).map_err(CliError::failure_msg)?;
        let reader = stream.try_clone()?;
        let stdout = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
        let down = std::thread::spawn(move || pump(reader, stdout));
        let _ = pump(std::io::stdin(), &stream);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = down.join();
        return Ok(());
    }
    let sock = std::os::unix::net::UnixStream::connect(ssh_socket(&name))
        .map_err(|e| CliError::failure_msg(format!("cannot reach {name}'s SSH channel: {e}")))?;
    let reader = sock.try_clone()?;
    // ssh reads its ProxyCommand's stdout as a byte stream: write it unbuffered. Rust's stdout is
    // line-buffered, which held back the tail of every packet after its last 0x0a byte, and the
    // key exchange then waited for bytes that sat in our buffer.
    let stdout = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    let down = std::thread::spawn(move || pump(SessionStart::new(reader), stdout));
    let _ = pump(std::io::stdin(), &sock);
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let _ = down.join();
    Ok(())
}

/// `multiverse ssh-relay` (in the guest): joins the SSH virtio-serial port to sshd, one session
/// at a time. A port whose host side is closed reads as end-of-file at once, so the relay waits
/// for the first bytes of a session (the client's version line) before it connects to sshd, and a
/// session ends when either side does.
pub fn relay(_g: &Global, a: RelayArgs) -> Result<(), CliError> {
    // The port stays open for good: closing and reopening it flips the guest's "connected" state
    // under QEMU, and a host that connected in between had its bytes never delivered.
    let mut port = loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&a.port)
        {
            Ok(p) => break p,
            Err(e) => {
                tracing::warn!("cannot open {}: {e}", a.port.display());
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
        let tcp = match std::net::TcpStream::connect(&a.sshd) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("cannot reach sshd at {}: {e}", a.sshd);
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
