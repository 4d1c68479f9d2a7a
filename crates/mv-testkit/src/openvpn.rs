//! `openvpn`: a galaxy router's OpenVPN provider settings for tests, a throw-away PKI made with
//! the real `openssl`, and a real `openvpn` server in a network namespace the test creates.
//!
//! - [`write_openvpn_settings`]: `vpn.toml` for `vpn = "openvpn"`, with the CA (0644), the
//!   credentials (0600) and optionally a tls-crypt key (0600) beside it.
//! - [`Pki::create`]: a CA and a server certificate (`extendedKeyUsage = serverAuth`, as a
//!   client's `remote-cert-tls server` demands), P-256 keys, in a folder of the test's.
//! - [`Server::start`]: `openvpn` in server mode inside a [`Netns`]: no client certificates
//!   (`verify-client-cert none`), one user and password checked by `auth-user-pass-verify`
//!   against a 0600 file (the secrets never reach argv), `topology subnet`, and the one tunnel
//!   address the provider would give pushed to the client.
//! - [`Process`]: any `openvpn` started in a namespace with its log in a file, stopped by its PID
//!   on drop (also when the test panics).
//!
//! What this is not: a model of any provider's server configuration beyond what a client needs
//! to come up, or anything that touches the machine's own network namespace.

use crate::tornet::Netns;
use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shape of a PEM certificate, for tests that render but never connect (the CA is checked
/// at render for its PEM markers only; `provision check` gives OpenVPN a stand-in).
pub const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBfTCCASOgAwIBAgIUZmFrZS1jYS1mb3ItcmVuZGVyLXRlc3RzMAoGCCqGSM49\n\
-----END CERTIFICATE-----\n";

/// What [`write_openvpn_settings`] writes.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    /// The server's address (`endpoint`).
    pub endpoint: &'a str,
    /// Its UDP port.
    pub port: u16,
    /// The tunnel address the provider gives this end, with prefix (`address`).
    pub address: &'a str,
    /// The provider's CA certificate (PEM), written to `ca.crt`.
    pub ca_pem: &'a str,
    /// The account's user name.
    pub user: &'a str,
    /// The account's password.
    pub password: &'a str,
    /// A tls-crypt key (`openvpn --genkey tls-crypt`), written to `tls-crypt.key` when given.
    pub tls_crypt: Option<&'a str>,
}

fn write_mode(path: &Path, contents: &[u8], mode: u32) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Writes OpenVPN provider settings into `vpn_toml` (a galaxy router's
/// `machines/<fqdn>/provision/vpn.toml`), with `ca.crt` (0644), `credentials` (0600) and, when
/// given, `tls-crypt.key` (0600) beside it, named relative to it.
pub fn write_openvpn_settings(vpn_toml: &Path, s: &Settings<'_>) {
    let dir = vpn_toml.parent().expect("vpn.toml has a folder");
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    write_mode(&dir.join("ca.crt"), s.ca_pem.as_bytes(), 0o644);
    write_mode(
        &dir.join("credentials"),
        format!("{}\n{}\n", s.user, s.password).as_bytes(),
        0o600,
    );
    let mut text = format!(
        "endpoint = \"{}\"\nport = {}\naddress = \"{}\"\ndns = \"10.64.0.1\"\nca_file = \"ca.crt\"\ncredentials_file = \"credentials\"\n",
        s.endpoint, s.port, s.address
    );
    if let Some(key) = s.tls_crypt {
        write_mode(&dir.join("tls-crypt.key"), key.as_bytes(), 0o600);
        text.push_str("tls_crypt_file = \"tls-crypt.key\"\n");
    }
    std::fs::write(vpn_toml, text).expect("write vpn.toml");
}

/// A throw-away CA and a server certificate signed by it, made with the real `openssl`.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate (PEM): what the client's `ca` names.
    pub ca_cert: PathBuf,
    /// The server's certificate.
    pub server_cert: PathBuf,
    /// The server's private key (0600).
    pub server_key: PathBuf,
}

impl Pki {
    /// Makes the CA and the server certificate (CN `server`, serverAuth) in `dir`.
    pub fn create(dir: &Path) -> Pki {
        let openssl = crate::require_tool("openssl");
        std::fs::create_dir_all(dir).unwrap();
        let p = |n: &str| dir.join(n);
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        crate::run_ok(
            Command::new(&openssl)
                .args(["req", "-x509"])
                .args(ec)
                .args(["-days", "2", "-subj", "/CN=multiverse test CA"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-keyout")
                .arg(p("ca.key"))
                .arg("-out")
                .arg(p("ca.crt")),
        );
        crate::run_ok(
            Command::new(&openssl)
                .arg("req")
                .args(ec)
                .args(["-subj", "/CN=server"])
                .arg("-keyout")
                .arg(p("server.key"))
                .arg("-out")
                .arg(p("server.csr")),
        );
        std::fs::write(
            p("server.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        crate::run_ok(
            Command::new(&openssl)
                .args(["x509", "-req", "-days", "2", "-set_serial", "2"])
                .arg("-in")
                .arg(p("server.csr"))
                .arg("-CA")
                .arg(p("ca.crt"))
                .arg("-CAkey")
                .arg(p("ca.key"))
                .arg("-extfile")
                .arg(p("server.ext"))
                .arg("-out")
                .arg(p("server.crt")),
        );
        std::fs::set_permissions(p("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        Pki {
            ca_cert: p("ca.crt"),
            server_cert: p("server.crt"),
            server_key: p("server.key"),
        }
    }
}

/// A new tls-crypt key from the real `openvpn --genkey tls-crypt`, as text.
pub fn tls_crypt_key(dir: &Path) -> String {
    let openvpn = crate::require_tool("openvpn");
    let path = dir.join("tls-crypt.key");
    crate::run_ok(
        Command::new(openvpn)
            .args(["--genkey", "tls-crypt"])
            .arg(&path),
    );
    std::fs::read_to_string(&path).unwrap()
}

/// An `openvpn` started in a namespace, logging to a file; killed by its PID on drop.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .finish()
    }
}

impl Process {
    /// Starts `openvpn ARGS --log LOG` inside `netns` (nsenter execs, so the child's PID is
    /// openvpn's). `name` is for messages.
    pub fn spawn(netns: &Netns, name: &str, args: &[&OsStr], log: &Path) -> Process {
        let openvpn = crate::require_tool("openvpn");
        let _ = std::fs::remove_file(log);
        let child = netns
            .command(openvpn)
            .args(args)
            .arg("--log")
            .arg(log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start openvpn ({name}): {e}"));
        Process {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        }
    }

    /// The process's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits until its log contains `needle`; `Err` with the log after `timeout`, or when the
    /// process exited first.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) {
                return Ok(start.elapsed());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "openvpn ({}) exited ({status}) before logging {needle:?}:\n{log}",
                    self.name
                ));
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "openvpn ({}) did not log {needle:?} within {timeout:?}:\n{log}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How [`Server::start`] runs the server.
#[derive(Debug, Clone)]
pub struct ServerOptions<'a> {
    /// The address it listens on (inside its namespace).
    pub listen: Ipv4Addr,
    /// Its UDP port.
    pub port: u16,
    /// The server's own tunnel address; the tunnel is its /24.
    pub tunnel: Ipv4Addr,
    /// The one address given to the client (same /24).
    pub client_address: Ipv4Addr,
    /// The only user name accepted.
    pub user: &'a str,
    /// Its password.
    pub password: &'a str,
    /// The tls-crypt key file both ends share, if any.
    pub tls_crypt: Option<&'a Path>,
}

/// A real `openvpn` server in a namespace of the test's.
#[derive(Debug)]
pub struct Server {
    /// The server process.
    pub process: Process,
}

impl Server {
    /// Writes the server's config, the user check and its expected credentials (0600) into
    /// `dir` and starts `openvpn` in `netns`; returns once it logs "Initialization Sequence
    /// Completed" (panics with its log otherwise).
    pub fn start(netns: &Netns, dir: &Path, pki: &Pki, o: &ServerOptions<'_>) -> Server {
        std::fs::create_dir_all(dir).unwrap();
        let expected = dir.join("expected-credentials");
        write_mode(
            &expected,
            format!("{}\n{}\n", o.user, o.password).as_bytes(),
            0o600,
        );
        // OpenVPN writes the user name and password to a temporary file and passes its path:
        // the check compares the two files, so no secret is ever an argument.
        let verify = dir.join("verify-user.sh");
        write_mode(
            &verify,
            format!("#!/bin/sh\nexec cmp -s \"$1\" '{}'\n", expected.display()).as_bytes(),
            0o700,
        );
        // The account's address, pushed as the provider's server would (OpenVPN's pool needs
        // two addresses; the account's own file pins the one vpn.toml names).
        let ccd = dir.join("ccd");
        std::fs::create_dir_all(&ccd).unwrap();
        std::fs::write(
            ccd.join(o.user),
            format!("ifconfig-push {} 255.255.255.0\n", o.client_address),
        )
        .unwrap();
        let net = |a: Ipv4Addr| {
            let o = a.octets();
            format!("{}.{}.{}", o[0], o[1], o[2])
        };
        assert_eq!(
            net(o.tunnel),
            net(o.client_address),
            "one /24 for the tunnel"
        );
        let mut conf = format!(
            "mode server\ntls-server\nproto udp4\nlocal {listen}\nport {port}\ndev tun\ndev-type tun\n\
             topology subnet\nifconfig {tunnel} 255.255.255.0\n\
             ifconfig-pool {client} {pool_end} 255.255.255.0\nclient-config-dir {ccd}\n\
             push \"topology subnet\"\npush \"route-gateway {tunnel}\"\n\
             verify-client-cert none\nusername-as-common-name\n\
             script-security 2\nauth-user-pass-verify {verify} via-file\ntmp-dir {tmp}\n\
             ca {ca}\ncert {cert}\nkey {key}\ndh none\n\
             keepalive 2 10\nverb 3\n",
            listen = o.listen,
            port = o.port,
            tunnel = o.tunnel,
            client = o.client_address,
            pool_end = Ipv4Addr::from(u32::from(o.client_address) + 1),
            ccd = ccd.display(),
            verify = verify.display(),
            tmp = dir.display(),
            ca = pki.ca_cert.display(),
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
        );
        if let Some(k) = o.tls_crypt {
            conf.push_str(&format!("tls-crypt {}\n", k.display()));
        }
        let conf_path = dir.join("server.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut process = Process::spawn(
            netns,
            "server",
            &[OsStr::new("--config"), conf_path.as_os_str()],
            &dir.join("server.log"),
        );
        if let Err(e) =
            process.wait_for_log("Initialization Sequence Completed", Duration::from_secs(30))
        {
            panic!("{e}");
        }
        Server { process }
    }
}
