//! `tornet`: a private Tor network for tests, in a network namespace the test creates (what
//! chutney does, in Rust and without Python).
//!
//! Nothing here ever talks to the real Tor network or to any interface of the machine: every tor
//! runs inside a [`Netns`] (a new network and mount namespace held by one child process, with only
//! `lo` in it; or one the test already made, [`Builder::netns_of`]) and knows only the directory
//! authorities generated here. Every process is a child
//! of the test, stopped by its PID on drop (also when the test panics), and every tor carries
//! `__OwningControllerProcess <test pid>`, so even a killed test leaves no tor running.
//!
//! ```no_run
//! use mv_testkit::tornet::Tornet;
//! use std::time::Duration;
//! let dir = std::env::temp_dir().join("my-test-tornet");
//! let mut net = Tornet::builder().start(&dir);
//! let took = net.wait_bootstrapped(Duration::from_secs(120));
//! println!("client at 100% after {took:?}");
//! // Another tor joins with net.network_torrc() as its defaults file (see `spawn_tor`); the
//! // client's SOCKS port is `127.0.0.1:{net.socks_port()}` inside the namespace:
//! let out = net
//!     .netns()
//!     .command("curl")
//!     .args(["--socks5-hostname", &format!("127.0.0.1:{}", net.socks_port())])
//!     .arg("http://example.onion/")
//!     .output()
//!     .unwrap();
//! ```
//!
//! The network: `authorities` directory authorities (also relays; keys from `tor-gencert`,
//! relay fingerprints from `tor --list-fingerprint`), `relays` middle relays, `exits` exit relays
//! (exit policy `accept *:*`, private addresses allowed) and one client with a SOCKS port. All
//! are `TestingTorNetwork 1` with chutney's fast-voting options (votes every 10 s, the first after
//! 5 s), every relay voted Guard, Exit-capable where allowed, and HSDir, so onion services work
//! as soon as the first consensus is out. ORPorts are 5000+i, DirPorts 7000+i, the client's SOCKS
//! port [`SOCKS_PORT`], all on [`Builder::address`] (default 127.0.0.1) inside the namespace.
//!
//! Measured on the 2-core test machine (tor 0.4.9, 3 authorities + 2 relays + 1 exit + client,
//! `cargo test -p mv-testkit --features system-tests --test tornet -- --nocapture`, 2026-12-02): the client reaches
//! "Bootstrapped 100%" 9.5-15.7 s after its tors start (the first consensus is voted 5 s in,
//! published at ~10 s); the first request through the exit 1.1-1.2 s later. Before that, the three
//! authorities' RSA-3072 keys (`tor-gencert`) take 9-17 s while other builds load the machine
//! (load 4-5; one `tor-gencert` alone took 3.9 s): the whole test runs in 20-35 s.
//!
//! What this is not: a model of the real network's timing or size, or a way to reach anything
//! outside the namespace.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The client's SOCKS port inside the namespace.
pub const SOCKS_PORT: u16 = 9050;

/// A new network and mount namespace, held by one child process (`unshare … cat`, which ends when
/// this value, holding its stdin, is dropped or the test dies). Only `lo` is in it, up. Mounts
/// made in it ([`Netns::bind`]) stay in it.
pub struct Netns {
    /// The holder this value owns, or `None` for namespaces of another process ([`Netns::of`]).
    holder: Option<Child>,
    pid: u32,
    _stdin: Option<ChildStdin>,
}

impl std::fmt::Debug for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netns").field("pid", &self.pid()).finish()
    }
}

impl Netns {
    /// Creates the namespaces (needs root: `unshare`, `nsenter`, `ip`) and brings `lo` up.
    pub fn create() -> Netns {
        let unshare = crate::require_tool("unshare");
        crate::require_tool("nsenter");
        crate::require_tool("ip");
        let mut holder = Command::new(unshare)
            .args(["--net", "--mount", "--propagation", "private", "--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start unshare: {e}"));
        let stdin = holder.stdin.take();
        let ns = Netns {
            pid: holder.id(),
            holder: Some(holder),
            _stdin: stdin,
        };
        // unshare switches namespaces after the fork: wait until the holder is in its own.
        let own = std::fs::read_link("/proc/self/ns/net").ok();
        let own_mnt = std::fs::read_link("/proc/self/ns/mnt").ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let net = std::fs::read_link(format!("/proc/{}/ns/net", ns.pid())).ok();
            let mnt = std::fs::read_link(format!("/proc/{}/ns/mnt", ns.pid())).ok();
            if net.is_some() && net != own && mnt.is_some() && mnt != own_mnt {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "unshare did not create its namespaces"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        crate::run_ok(ns.command("ip").args(["link", "set", "lo", "up"]));
        ns
    }

    /// The namespaces of process `pid`, which the test created and keeps (e.g. the lab
    /// libvirtd's network and mount namespace, where booted routers' bridges are): nothing is
    /// created, and dropping this value stops nothing. `lo` is brought up. Panics if that is the
    /// machine's own network namespace (this process's or PID 1's): no tor may run there.
    pub fn of(pid: u32) -> Netns {
        crate::require_tool("nsenter");
        crate::require_tool("ip");
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .unwrap_or_else(|e| panic!("no network namespace of process {pid}: {e}"));
        for own in ["/proc/self/ns/net", "/proc/1/ns/net"] {
            assert!(
                std::fs::read_link(own).ok().as_ref() != Some(&theirs),
                "process {pid} is in the machine's own network namespace ({own}); tornet runs only \
                 in a namespace the test created"
            );
        }
        let ns = Netns {
            holder: None,
            pid,
            _stdin: None,
        };
        crate::run_ok(ns.command("ip").args(["link", "set", "lo", "up"]));
        ns
    }

    /// The holder's PID (its `/proc/PID/ns/net` is the namespace).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `program` to run inside the namespaces (`nsenter -t PID -n -m -- program`; nsenter execs,
    /// so the child's PID is the program's). Entering the mount namespace makes `/` the working
    /// folder: give the program absolute paths.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid().to_string())
            .args(["-n", "-m", "--"])
            .arg(program);
        c
    }

    /// Adds `cidr` (`10.2.2.1/32`) to `lo` inside the namespace: an address a config binds to.
    pub fn add_address(&self, cidr: &str) {
        crate::run_ok(self.command("ip").args(["addr", "add", cidr, "dev", "lo"]));
    }

    /// Bind-mounts `src` on `dst` inside the mount namespace only (e.g. a scratch folder on
    /// `/var/lib/tor`, so a config's absolute paths work without touching the machine's).
    pub fn bind(&self, src: &Path, dst: &Path) {
        crate::run_ok(self.command("mount").arg("--bind").arg(src).arg(dst));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(holder) = self.holder.as_mut() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

/// A tor process started in a [`Tornet`]'s namespace, stopped (SIGKILL by PID) on drop.
pub struct TorProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

impl std::fmt::Debug for TorProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorProcess")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .finish()
    }
}

impl TorProcess {
    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its notice log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log contains `needle`; `Err` with the log's tail after `timeout`, or when
    /// the process exited.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) {
                return Ok(start.elapsed());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "tor `{}` exited ({status}) before logging {needle:?}:\n{}",
                    self.name,
                    tail(&log)
                ));
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "tor `{}` did not log {needle:?} within {timeout:?}:\n{}",
                    self.name,
                    tail(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for TorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// How big a network to make, and on which address.
#[derive(Debug, Clone)]
pub struct Builder {
    authorities: usize,
    relays: usize,
    exits: usize,
    address: Ipv4Addr,
    netns_of: Option<u32>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            authorities: 3,
            relays: 2,
            exits: 1,
            address: Ipv4Addr::LOCALHOST,
            netns_of: None,
        }
    }
}

impl Builder {
    /// Directory authorities (default 3; at least 1).
    pub fn authorities(mut self, n: usize) -> Self {
        self.authorities = n.max(1);
        self
    }
    /// Middle relays (default 2).
    pub fn relays(mut self, n: usize) -> Self {
        self.relays = n;
        self
    }
    /// Exit relays (default 1).
    pub fn exits(mut self, n: usize) -> Self {
        self.exits = n;
        self
    }
    /// The address every relay listens on inside the namespace (default 127.0.0.1; another one
    /// is added to `lo` first). A booted router reaches the network through a veth/tap into the
    /// namespace at such an address.
    pub fn address(mut self, a: Ipv4Addr) -> Self {
        self.address = a;
        self
    }

    /// Runs the network in the namespaces of process `pid` ([`Netns::of`]: one the test made,
    /// such as the lab's) instead of new ones.
    pub fn netns_of(mut self, pid: u32) -> Self {
        self.netns_of = Some(pid);
        self
    }

    /// Generates every config and key under `dir` and starts every tor in a new [`Netns`] (or
    /// in the one of [`Builder::netns_of`]).
    /// Returns at once: [`Tornet::wait_bootstrapped`] waits for the client.
    pub fn start(self, dir: &Path) -> Tornet {
        Tornet::start(self, dir)
    }
}

/// A running private Tor network (see the module documentation). Dropping it stops every tor,
/// then the namespace if it made it.
pub struct Tornet {
    // Field order is drop order: the tors before their namespace.
    nodes: Vec<TorProcess>,
    client: usize,
    network_torrc: String,
    dir: PathBuf,
    started: Instant,
    ns: Netns,
}

impl std::fmt::Debug for Tornet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tornet")
            .field("dir", &self.dir)
            .field("nodes", &self.nodes)
            .finish()
    }
}

/// The options every tor of the network has (chutney's `common.i`): test-network voting, every
/// relay usable at once.
const TESTING_OPTIONS: &str = "TestingTorNetwork 1
PathsNeededToBuildCircuits 0.67
TestingDirAuthVoteExit *
TestingDirAuthVoteHSDir *
TestingDirAuthVoteGuard *
V3AuthNIntervalsValid 2
TestingMinExitFlagThreshold 0
SafeLogging 0
ShutdownWaitLength 0
";

const AUTHORITY_OPTIONS: &str = "AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
TestingV3AuthInitialVotingInterval 5
V3AuthVotingInterval 10
TestingV3AuthInitialVoteDelay 2
V3AuthVoteDelay 2
TestingV3AuthInitialDistDelay 2
V3AuthDistDelay 2
ExitRelay 0
";

const EXIT_OPTIONS: &str = "ExitRelay 1
ExitPolicy accept *:*
ExitPolicyRejectPrivate 0
ExitPolicyRejectLocalInterfaces 0
";

impl Tornet {
    /// A builder with the defaults (3 authorities, 2 relays, 1 exit, on 127.0.0.1).
    pub fn builder() -> Builder {
        Builder::default()
    }

    fn start(b: Builder, dir: &Path) -> Tornet {
        let tor = crate::require_tool("tor");
        let gencert = crate::require_tool("tor-gencert");
        let ns = match b.netns_of {
            Some(pid) => Netns::of(pid),
            None => Netns::create(),
        };
        if b.address != Ipv4Addr::LOCALHOST {
            ns.add_address(&format!("{}/32", b.address));
        }
        let addr = b.address;
        let mut names = Vec::new();
        for i in 0..b.authorities {
            names.push((format!("auth{i}"), Role::Authority));
        }
        for i in 0..b.relays {
            names.push((format!("relay{i}"), Role::Relay));
        }
        for i in 0..b.exits {
            names.push((format!("exit{i}"), Role::Exit));
        }

        // Authority keys and relay fingerprints, then the DirAuthority lines every tor shares.
        // tor-gencert makes a 3072-bit RSA identity key (seconds each): all at once.
        let mut gencerts = Vec::new();
        for (i, (name, _)) in names.iter().enumerate().take(b.authorities) {
            let keys = node_dir(dir, name).join("keys");
            std::fs::create_dir_all(&keys).unwrap();
            let mut gen = Command::new(&gencert);
            gen.current_dir(&keys)
                .args(["--create-identity-key", "-m", "12", "-a"])
                .arg(format!("{addr}:{}", 7000 + i))
                .args(["--passphrase-fd", "0"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = gen.spawn().unwrap();
            {
                use std::io::Write;
                let mut stdin = child.stdin.take().unwrap();
                let _ = stdin.write_all(b"\n");
            }
            gencerts.push(Kill(Some(child)));
        }
        let mut dir_authorities = String::new();
        for (i, ((name, _), mut gen)) in names.iter().zip(gencerts).enumerate() {
            let data = node_dir(dir, name);
            let keys = data.join("keys");
            let dir_port = 7000 + i;
            let out = gen.0.take().unwrap().wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "tor-gencert failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let cert = std::fs::read_to_string(keys.join("authority_certificate")).unwrap();
            let v3ident = cert
                .lines()
                .find_map(|l| l.strip_prefix("fingerprint "))
                .unwrap()
                .trim()
                .to_string();
            // Inside the namespace like every tor, though it only writes keys.
            let out = ns
                .command(&tor)
                .args(["--list-fingerprint", "--orport", "1", "--dirserver"])
                .arg("x 127.0.0.1:1 ffffffffffffffffffffffffffffffffffffffff")
                .arg("--datadirectory")
                .arg(&data)
                .args(["--DisableNetwork", "1", "--quiet"])
                .output()
                .unwrap();
            let fingerprint =
                std::fs::read_to_string(data.join("fingerprint")).unwrap_or_else(|e| {
                    panic!(
                        "tor --list-fingerprint wrote no fingerprint ({e}): {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                });
            let fingerprint = fingerprint.split_whitespace().nth(1).unwrap().to_string();
            dir_authorities.push_str(&format!(
                "DirAuthority {name} orport={} no-v2 v3ident={v3ident} {addr}:{dir_port} {fingerprint}\n",
                5000 + i
            ));
        }
        let network_torrc = format!("{TESTING_OPTIONS}{dir_authorities}");

        let started = Instant::now();
        let mut nodes = Vec::new();
        for (i, (name, role)) in names.iter().enumerate() {
            let data = node_dir(dir, name);
            let mut torrc = format!(
                "{network_torrc}Nickname {name}\nSocksPort 0\nAddress {addr}\nORPort {addr}:{}\n\
                 DirPort {addr}:{}\nAssumeReachable 1\nContactInfo {name}@test.invalid\n",
                5000 + i,
                7000 + i
            );
            torrc.push_str(match role {
                Role::Authority => AUTHORITY_OPTIONS,
                Role::Exit => EXIT_OPTIONS,
                Role::Relay => "ExitRelay 0\n",
            });
            nodes.push(spawn(&ns, &tor, name, &data, &torrc));
        }
        let data = node_dir(dir, "client");
        let torrc = format!(
            "{network_torrc}Nickname client\nSocksPort 127.0.0.1:{SOCKS_PORT}\nClientOnly 1\n"
        );
        nodes.push(spawn(&ns, &tor, "client", &data, &torrc));
        Tornet {
            client: nodes.len() - 1,
            nodes,
            network_torrc,
            dir: dir.to_path_buf(),
            started,
            ns,
        }
    }

    /// The namespace every tor runs in: run clients and servers of the test there.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// The client's SOCKS port (on 127.0.0.1 inside the namespace).
    pub fn socks_port(&self) -> u16 {
        SOCKS_PORT
    }

    /// What another tor needs to join this network: `TestingTorNetwork 1`, the testing options
    /// and the `DirAuthority` lines. Give it to that tor as its `--defaults-torrc`, so its own
    /// torrc stays as it is.
    pub fn network_torrc(&self) -> &str {
        &self.network_torrc
    }

    /// Waits until the client logs "Bootstrapped 100%"; returns the time since the first tor of
    /// the network started. Panics with the client's log after `timeout`.
    pub fn wait_bootstrapped(&mut self, timeout: Duration) -> Duration {
        let client = &mut self.nodes[self.client];
        if let Err(e) = client.wait_for_log("Bootstrapped 100%", timeout) {
            panic!("{e}");
        }
        self.started.elapsed()
    }

    /// Starts another tor in the namespace, joined to this network: `--defaults-torrc` is
    /// [`Tornet::network_torrc`] (written to `<dir>/<name>/network.torrc`), then `args` (e.g.
    /// `-f` and a torrc as provisioning wrote it). Its notice log goes to stderr (`--Log` on the
    /// command line overrides the torrc's `Log` lines), kept in `<dir>/<name>/output.log`, and it
    /// exits with the test process. Stopped when the returned value is dropped.
    pub fn spawn_tor(&self, name: &str, args: &[&OsStr]) -> TorProcess {
        let tor = crate::require_tool("tor");
        let data = node_dir(&self.dir, name);
        let defaults = data.join("network.torrc");
        std::fs::write(&defaults, &self.network_torrc).unwrap();
        // Its log goes to stderr, a file this process opened: a tor that switches to another
        // `User` could not open a log file in the test's private folders.
        let log = data.join("output.log");
        let output = std::fs::File::create(&log).unwrap();
        let mut cmd = self.ns.command(&tor);
        cmd.arg("--defaults-torrc")
            .arg(&defaults)
            .args(args)
            .arg("--Log")
            .arg("notice stderr")
            .arg("--__OwningControllerProcess")
            .arg(std::process::id().to_string())
            .stdout(output.try_clone().unwrap())
            .stderr(output);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tor `{name}`: {e}"));
        TorProcess {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// The PIDs of the network's tors (not of those from [`Tornet::spawn_tor`]).
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(TorProcess::pid).collect()
    }

    /// The last lines of every tor's log, for a failing test's message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}\n", n.name, tail(&n.log())))
            .collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Authority,
    Relay,
    Exit,
}

/// A helper process killed on drop unless taken (a panicking test leaves none behind).
struct Kill(Option<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn node_dir(dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    // tor refuses a DataDirectory others can read.
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

/// Starts one tor of the network with `torrc` (written to its folder) in the namespace.
fn spawn(ns: &Netns, tor: &Path, name: &str, data: &Path, torrc: &str) -> TorProcess {
    let log = data.join("notice.log");
    let text = format!(
        "{torrc}DataDirectory {}\nLog notice file {}\n__OwningControllerProcess {}\n",
        data.display(),
        log.display(),
        std::process::id()
    );
    let path = data.join("torrc");
    std::fs::write(&path, text).unwrap();
    let child = ns
        .command(tor)
        .arg("--defaults-torrc")
        .arg("/dev/null")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start tor `{name}`: {e}"));
    TorProcess {
        name: name.to_string(),
        child,
        log,
    }
}

/// Lets a real, offline tor (`DisableNetwork 1`, no ports) read the onion service key in
/// `hs_dir` and write its `hostname` file; returns that file's text (with its newline).
/// Any `hostname` already in `hs_dir` is removed first, so the text is tor's own. Tor's data
/// folder and torrc go under `scratch` (created). Tor is stopped by its PID before returning, also
/// when this panics. Panics when tor is missing or writes nothing within 20 seconds.
pub fn onion_hostname_from_tor(hs_dir: &Path, scratch: &Path) -> String {
    let tor = crate::require_tool("tor");
    let hostname = hs_dir.join("hostname");
    match std::fs::remove_file(&hostname) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("remove {hostname:?}: {e}"),
        _ => {}
    }
    let data = scratch.join("tordata");
    std::fs::create_dir_all(&data).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let torrc = scratch.join("torrc");
    std::fs::write(
        &torrc,
        format!(
            "DataDirectory {}\nDisableNetwork 1\nSocksPort 0\nControlPort 0\n\
             HiddenServiceDir {}\nHiddenServicePort 80 127.0.0.1:9\nLog notice stderr\n",
            data.display(),
            hs_dir.display()
        ),
    )
    .unwrap();
    let child = Command::new(tor)
        .arg("-f")
        .arg(&torrc)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Stops tor by its PID on every way out of this function.
    struct Stop(Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _tor = Stop(child);
    let start = Instant::now();
    loop {
        // tor writes the file in one go; a full line means it is complete.
        if let Ok(text) = std::fs::read_to_string(&hostname) {
            if text.ends_with('\n') {
                return text;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "tor wrote no {hostname:?} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
