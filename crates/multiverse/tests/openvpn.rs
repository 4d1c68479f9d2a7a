//! OpenVPN as the galaxy router's VPN (issue #14), proven with the real `openvpn`: a tree from
//! `multiverse init --lab` with the spec identity, its galaxy switched to `vpn = "openvpn"` and a
//! `vpn.toml` naming a throw-away CA (made with `openssl`), credentials and a tls-crypt key.
//! `multiverse provision apply` writes galaxy's files into a Debian root folder (no boot); the
//! test then runs a real `openvpn` server in one network namespace and the real `openvpn` client
//! with galaxy's provisioned `/etc/openvpn` in another, linked by a veth pair, with galaxy's
//! provisioned `/etc/nftables.conf` applied in the client's namespace:
//!
//! - a wrong password is refused (the client never completes);
//! - with the right one the tunnel comes up through galaxy's firewall (its UDP to the endpoint
//!   is the one thing let out), gets the address vpn.toml names, and a TCP request over the
//!   tunnel reaches a server listening on the server's tunnel address;
//! - plain TCP and UDP to other ports of the server's address, and TCP to the VPN port, are
//!   dropped on the way out (galaxy's `output_dropped` counts them; a counter on the server's side
//!   sees none of them), where before the rules the same TCP request got through.
//! - the router agent's OpenVPN reader (`mv_agent::stats::openvpn::query`), asking the management
//!   socket galaxy's config opens and its agent.toml names, reports CONNECTED with the tunnel
//!   address vpn.toml names, the server's address and the link's bytes; the socket refuses a
//!   process that is not root; with the server stopped, it reports what OpenVPN then says (not
//!   CONNECTED), while tun0 itself stays (persist-tun), which is why the interface alone is not
//!   the truth.
//!
//! Nothing touches the machine's own network namespace: both namespaces are the test's
//! (`mv_testkit::tornet::Netns`), the veth pair is made inside them, galaxy's `/run` (where its
//! management socket is) is a scratch folder bound in the client's mount namespace, and every
//! process is stopped by its PID on drop.
#![allow(clippy::unwrap_used)]

mod common;

use common::{mv, KillOnDrop, FAST, SPEC_WORDS};
use mv_testkit::openvpn::{Pki, Process, Server, ServerOptions, Settings};
use mv_testkit::tornet::Netns;
use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GALAXY: &str = "galaxy.router.multiverse";
/// The provider's server on the veth link (galaxy's upstream side).
const ENDPOINT: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const CLIENT_UPLINK: &str = "10.99.0.2/24";
const PORT: u16 = 1194;
const SERVER_TUNNEL: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 1);
const CLIENT_TUNNEL: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 2);
const USER: &str = "galaxy-account";
/// Galaxy's OpenVPN management socket, as provisioned.
const MANAGEMENT: &str = mv_provision::OPENVPN_MANAGEMENT_SOCKET;

fn ok(cmd: &mut Command) -> String {
    common::ok(cmd, None)
}

/// A password made for this run (never in argv: it goes to files only).
fn random_password() -> String {
    use std::io::Read;
    let mut b = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A Debian root with nothing installed (dpkg's status, the account files).
fn bare_debian(dir: &Path) -> PathBuf {
    let r = dir.join("debian");
    for d in ["etc", "var/lib/dpkg", "lib/systemd/system"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("etc/debian_version"), "12.8\n").unwrap();
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:\nusers:x:100:\n").unwrap();
    std::fs::write(r.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    std::fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
    r
}

/// The lab tree with the spec identity (as common::lab::lab_tree, without a lab libvirtd), its
/// galaxy switched to OpenVPN.
fn openvpn_lab_tree(tree: &Path) {
    std::fs::create_dir_all(tree).unwrap();
    ok(mv(tree).args(["init", "--lab"]));
    common::ok(
        mv(tree).args(["identity", "restore"]).args(FAST),
        Some(SPEC_WORDS),
    );
    let toml_path = tree.join("multiverse.toml");
    let text = std::fs::read_to_string(&toml_path).unwrap();
    let galaxy_line = "router = { role = \"galaxy\", vpn = \"wireguard\"";
    assert_eq!(text.matches(galaxy_line).count(), 1, "{text}");
    std::fs::write(
        &toml_path,
        text.replace(
            galaxy_line,
            "router = { role = \"galaxy\", vpn = \"openvpn\"",
        ),
    )
    .unwrap();
}

/// A Debian root folder that `provision apply` can write galaxy into without a package manager:
/// dpkg's status lists every package the plan would install, and each service the plan enables
/// has its unit (the host's own when it has one, e.g. `openvpn-client@.service`, else a stub
/// with an `[Install]` section).
fn debian_target(tree: &Path, dir: &Path) -> PathBuf {
    let r = bare_debian(dir);
    let json = ok(mv(tree)
        .args(["--json", "provision", "plan", GALAXY, "--target"])
        .arg(&r));
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut status = String::new();
    let mut packages = Vec::new();
    for c in plan["changes"].as_array().unwrap() {
        match c["kind"].as_str().unwrap() {
            "packages" => {
                for p in c["packages"].as_array().unwrap() {
                    let p = p.as_str().unwrap();
                    packages.push(p.to_string());
                    status.push_str(&format!(
                        "Package: {p}\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n"
                    ));
                }
            }
            "service_after_install" => {
                let name = c["name"].as_str().unwrap();
                let unit = match name.split_once('@') {
                    Some((prefix, _)) => format!("{prefix}@.service"),
                    None => format!("{name}.service"),
                };
                let host = Path::new("/lib/systemd/system").join(&unit);
                let text = std::fs::read_to_string(&host).unwrap_or_else(|_| {
                    "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
                        .to_string()
                });
                std::fs::write(r.join("lib/systemd/system").join(&unit), text).unwrap();
            }
            _ => {}
        }
    }
    assert!(
        packages.contains(&"openvpn".to_string()),
        "galaxy on OpenVPN installs openvpn: {packages:?}"
    );
    std::fs::write(r.join("var/lib/dpkg/status"), status).unwrap();
    r
}

/// The packet count of named counter `name` of table `inet TABLE` in `ns`.
fn counter(ns: &Netns, table: &str, name: &str) -> u64 {
    let out = mv_testkit::run_ok(
        ns.command("nft")
            .args(["list", "counter", "inet", table, name]),
    );
    let n = out
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .unwrap_or_else(|| panic!("no packets in {out}"));
    n.parse().unwrap()
}

/// `curl` from `ns` to `url` within `secs` seconds: its body, or `None` when it failed.
fn curl(ns: &Netns, url: &str, secs: u32) -> Option<String> {
    let out = ns
        .command("curl")
        .args(["-sS", "--max-time", &secs.to_string(), url])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `busybox httpd` in `ns` on `addr:port`, serving `www`.
fn httpd(ns: &Netns, addr: Ipv4Addr, port: u16, www: &Path) -> KillOnDrop {
    KillOnDrop(
        ns.command("busybox")
            .args(["httpd", "-f", "-p", &format!("{addr}:{port}"), "-h"])
            .arg(www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Starts the real client as Debian's `openvpn-client@galaxy.service` does
/// (`WorkingDirectory=/etc/openvpn/client`, `--config galaxy.conf`), in `ns`, whose
/// `/etc/openvpn` the caller has bound to a provisioned copy.
fn client(ns: &Netns, log: &Path) -> Process {
    Process::spawn(
        ns,
        "galaxy client",
        &[
            OsStr::new("--suppress-timestamps"),
            OsStr::new("--nobind"),
            OsStr::new("--cd"),
            OsStr::new("/etc/openvpn/client"),
            OsStr::new("--config"),
            OsStr::new("galaxy.conf"),
        ],
        log,
    )
}

#[test]
fn galaxy_on_openvpn_tunnels_through_its_firewall_and_refuses_a_wrong_password() {
    for tool in ["openvpn", "openssl", "nft", "ip", "curl", "busybox", "bash"] {
        mv_testkit::require_tool(tool);
    }
    let started = Instant::now();
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");

    openvpn_lab_tree(&tree);

    // The provider: a throw-away CA and server certificate, a tls-crypt key, one account.
    let pki = Pki::create(&t.path().join("pki"));
    let tls_crypt = mv_testkit::openvpn::tls_crypt_key(&t.path().join("pki"));
    let password = random_password();
    let vpn_toml = mv_provision::vpn_file(&tree, &GALAXY.parse().unwrap());
    mv_testkit::openvpn::write_openvpn_settings(
        &vpn_toml,
        &Settings {
            endpoint: &ENDPOINT.to_string(),
            port: PORT,
            address: &format!("{CLIENT_TUNNEL}/24"),
            ca_pem: &std::fs::read_to_string(&pki.ca_cert).unwrap(),
            user: USER,
            password: &password,
            tls_crypt: Some(&tls_crypt),
        },
    );

    // Every config through its own tool, then galaxy provisioned into a Debian root folder.
    let checked = ok(mv(&tree).args(["provision", "check", GALAXY]));
    assert!(checked.contains("openvpn"), "{checked}");
    let target = debian_target(&tree, t.path());
    ok(mv(&tree)
        .args(["provision", "apply", GALAXY, "--target"])
        .arg(&target));
    let etc_openvpn = target.join("etc/openvpn");
    let conf = std::fs::read_to_string(etc_openvpn.join("client/galaxy.conf")).unwrap();
    for line in [
        "client",
        "dev tun0",
        "proto udp",
        &format!("remote {ENDPOINT} {PORT}"),
        "ca /etc/openvpn/client/ca.crt",
        "auth-user-pass /etc/openvpn/client/credentials",
        "tls-crypt /etc/openvpn/client/tls-crypt.key",
        &format!("management {MANAGEMENT} unix"),
        "management-client-user root",
    ] {
        assert!(conf.lines().any(|l| l == line), "no `{line}` in:\n{conf}");
    }
    assert!(!conf.contains(&password), "no secret in the config");
    assert_eq!(
        std::fs::read(etc_openvpn.join("client/ca.crt")).unwrap(),
        std::fs::read(&pki.ca_cert).unwrap()
    );
    assert_eq!(mode(&etc_openvpn.join("client/ca.crt")), 0o644);
    assert_eq!(
        std::fs::read_to_string(etc_openvpn.join("client/credentials")).unwrap(),
        format!("{USER}\n{password}\n")
    );
    assert_eq!(mode(&etc_openvpn.join("client/credentials")), 0o600);
    assert_eq!(mode(&etc_openvpn.join("client/tls-crypt.key")), 0o600);
    assert!(target
        .join("etc/systemd/system/multi-user.target.wants/openvpn-client@galaxy.service")
        .symlink_metadata()
        .is_ok());
    // The agent is told where to ask.
    let agent_toml = std::fs::read_to_string(target.join("etc/multiverse/agent.toml")).unwrap();
    assert!(
        agent_toml
            .lines()
            .any(|l| l == format!("openvpn_management = \"{MANAGEMENT}\"")),
        "{agent_toml}"
    );
    let nft_conf = target.join("etc/nftables.conf");
    let rules = std::fs::read_to_string(&nft_conf).unwrap();
    // The one way out on the uplink: the tunnel's UDP to the endpoint's port (galaxy's uplink is
    // eth0, its first network), and anything into tun0.
    let pinned = format!("oifname \"eth0\" ip daddr {ENDPOINT} udp dport {PORT} accept");
    assert!(rules.contains(&pinned), "{rules}");
    assert!(rules.contains("oifname \"tun0\" accept"), "{rules}");

    // Two namespaces linked by a veth pair made inside them: the provider's and galaxy's (its
    // end named eth0, as galaxy's uplink is).
    let server_ns = Netns::create();
    let client_ns = Netns::create();
    mv_testkit::run_ok(client_ns.command("ip").args([
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &server_ns.pid().to_string(),
    ]));
    for (ns, addr) in [
        (&server_ns, format!("{ENDPOINT}/24")),
        (&client_ns, CLIENT_UPLINK.to_string()),
    ] {
        mv_testkit::run_ok(ns.command("ip").args(["addr", "add", &addr, "dev", "eth0"]));
        mv_testkit::run_ok(ns.command("ip").args(["link", "set", "eth0", "up"]));
    }
    // What reaches the provider's side on ports other than the tunnel's, counted there.
    let probe = t.path().join("probe.nft");
    std::fs::write(
        &probe,
        "table inet probe {\n\
         \tcounter tcp_other { }\n\tcounter udp_other { }\n\tcounter tcp_vpn_port { }\n\
         \tchain input {\n\t\ttype filter hook input priority -10; policy accept;\n\
         \t\tiifname \"eth0\" tcp dport 8081 counter name \"tcp_other\"\n\
         \t\tiifname \"eth0\" udp dport 9999 counter name \"udp_other\"\n\
         \t\tiifname \"eth0\" tcp dport 1194 counter name \"tcp_vpn_port\"\n\t}\n}\n",
    )
    .unwrap();
    mv_testkit::run_ok(server_ns.command("nft").arg("-f").arg(&probe));
    let www = t.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from the provider's side\n").unwrap();
    let _plain = httpd(&server_ns, ENDPOINT, 8081, &www);

    // Before galaxy's rules: plain TCP to the server's address gets through (the control).
    let mut control = None;
    for _ in 0..50 {
        control = curl(&client_ns, &format!("http://{ENDPOINT}:8081/"), 2);
        if control.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        control.is_some_and(|b| b.contains("hello")),
        "plain TCP before the firewall"
    );
    assert!(counter(&server_ns, "probe", "tcp_other") > 0);

    // The provider's server: this account only, the tunnel address vpn.toml names pushed.
    let server_dir = t.path().join("server");
    let tls_crypt_path = t.path().join("pki/tls-crypt.key");
    let server = Server::start(
        &server_ns,
        &server_dir,
        &pki,
        &ServerOptions {
            listen: ENDPOINT,
            port: PORT,
            tunnel: SERVER_TUNNEL,
            client_address: CLIENT_TUNNEL,
            user: USER,
            password: &password,
            tls_crypt: Some(&tls_crypt_path),
        },
    );
    let _tunnelled = httpd(&server_ns, SERVER_TUNNEL, 8080, &www);

    // Galaxy's own firewall in galaxy's namespace, as provisioned.
    mv_testkit::run_ok(client_ns.command("nft").arg("-f").arg(&nft_conf));

    // Galaxy's /run is a scratch folder: the management socket the config names appears there.
    let run = t.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    client_ns.bind(&run, Path::new("/run"));
    let socket = run.join(Path::new(MANAGEMENT).strip_prefix("/run").unwrap());

    // A wrong password: a copy of the provisioned /etc/openvpn with other credentials. The client
    // is refused and never completes.
    let wrong = t.path().join("wrong-etc-openvpn");
    mv_testkit::run_ok(Command::new("cp").arg("-a").arg(&etc_openvpn).arg(&wrong));
    std::fs::write(
        wrong.join("client/credentials"),
        format!("{USER}\nnot-{password}\n"),
    )
    .unwrap();
    client_ns.bind(&wrong, Path::new("/etc/openvpn"));
    let mut refused = client(&client_ns, &t.path().join("client-wrong.log"));
    let took = refused
        .wait_for_log("AUTH_FAILED", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\nserver:\n{}", server.process.log()));
    eprintln!("wrong password refused after {took:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !refused.exited() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !refused.log().contains("Initialization Sequence Completed"),
        "{}",
        refused.log()
    );
    assert!(
        server.process.log().contains("verification failed")
            || server.process.log().contains("Auth Error"),
        "{}",
        server.process.log()
    );
    drop(refused);
    mv_testkit::run_ok(client_ns.command("umount").arg("/etc/openvpn"));

    // The provisioned files as they are: galaxy's /etc/openvpn is the target's (a bind mount in
    // the client's own mount namespace, so galaxy.conf's absolute /etc paths need no rewriting).
    client_ns.bind(&etc_openvpn, Path::new("/etc/openvpn"));
    let mut galaxy = client(&client_ns, &t.path().join("client.log"));
    let took = galaxy
        .wait_for_log("Initialization Sequence Completed", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\nserver:\n{}", server.process.log()));
    eprintln!("tunnel up through galaxy's firewall after {took:?}");
    let addr = mv_testkit::run_ok(
        client_ns
            .command("ip")
            .args(["-4", "addr", "show", "dev", "tun0"]),
    );
    assert!(
        addr.contains(&format!("inet {CLIENT_TUNNEL}/24")),
        "the address vpn.toml names: {addr}"
    );

    // TCP over the tunnel to a server on the provider's tunnel address.
    let mut body = None;
    for _ in 0..50 {
        body = curl(&client_ns, &format!("http://{SERVER_TUNNEL}:8080/"), 3);
        if body.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        body.as_deref().is_some_and(|b| b.contains("hello")),
        "TCP over the tunnel: {body:?}\n{}",
        galaxy.log()
    );

    // Fail-closed: plain TCP and UDP to other ports of the server's address, and TCP to the VPN's
    // port, are dropped on the way out; the provider's side sees none of them.
    let before = (
        counter(&server_ns, "probe", "tcp_other"),
        counter(&server_ns, "probe", "udp_other"),
        counter(&server_ns, "probe", "tcp_vpn_port"),
    );
    let dropped = counter(&client_ns, "multiverse", "output_dropped");
    assert_eq!(
        curl(&client_ns, &format!("http://{ENDPOINT}:8081/"), 2),
        None
    );
    assert_eq!(
        curl(&client_ns, &format!("http://{ENDPOINT}:{PORT}/"), 2),
        None
    );
    let _ = client_ns
        .command("bash")
        .args([
            "-c",
            &format!("for i in 1 2 3; do echo probe > /dev/udp/{ENDPOINT}/9999; done"),
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let after = (
        counter(&server_ns, "probe", "tcp_other"),
        counter(&server_ns, "probe", "udp_other"),
        counter(&server_ns, "probe", "tcp_vpn_port"),
    );
    assert_eq!(before, after, "nothing but the tunnel reached the provider");
    let now_dropped = counter(&client_ns, "multiverse", "output_dropped");
    assert!(
        now_dropped >= dropped + 3,
        "galaxy's firewall dropped the probes: {dropped} -> {now_dropped}"
    );
    // The tunnel still carries traffic after the probes.
    assert!(curl(&client_ns, &format!("http://{SERVER_TUNNEL}:8080/"), 5).is_some());
    assert!(!galaxy.exited(), "{}", galaxy.log());

    // The agent's reader on the real management socket: CONNECTED, with the address vpn.toml
    // names, the provider's endpoint, and the bytes the requests above moved.
    let up = mv_agent::stats::openvpn::query(&socket, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", galaxy.log()));
    eprintln!("management socket, tunnel up: {up:?}");
    assert!(up.connected(), "{up:?}");
    assert_eq!(up.tunnel_address, Some(CLIENT_TUNNEL), "{up:?}");
    assert_eq!(
        up.remote,
        Some(std::net::SocketAddr::from((ENDPOINT, PORT))),
        "{up:?}"
    );
    assert!(
        up.since_secs
            .is_some_and(|s| s <= started.elapsed().as_secs()),
        "{up:?}"
    );
    assert!(
        up.rx_bytes.is_some_and(|b| b > 0) && up.tx_bytes.is_some_and(|b| b > 0),
        "{up:?}"
    );
    let stats = mv_agent::stats::router::RouterStats {
        vpn_up: Some(true),
        openvpn: Some(up),
        ..Default::default()
    };
    assert!(
        stats.summary().starts_with("0 leases, vpn connected "),
        "{}",
        stats.summary()
    );

    // Only root may use the socket (OpenVPN creates it connectable by all): a process of
    // another user is dropped before OpenVPN says a word, where root is greeted.
    let mgmt_curl = |uid: u32| {
        let out = Command::new("nsenter")
            .args(["-t", &client_ns.pid().to_string(), "-n", "-m"])
            .args(["-S", &uid.to_string(), "-G", &uid.to_string(), "--"])
            .args([
                "curl",
                "-sS",
                "--http0.9",
                "--max-time",
                "2",
                "--unix-socket",
            ])
            .arg(MANAGEMENT)
            .arg("http://galaxy/")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        mgmt_curl(0).contains(">INFO:OpenVPN Management Interface"),
        "root is greeted"
    );
    let nobody = mgmt_curl(65534);
    assert!(!nobody.contains("OpenVPN"), "{nobody}");
    assert!(
        galaxy
            .log()
            .contains("connection rejected -- UID of socket peer (65534)"),
        "{}",
        galaxy.log()
    );

    // The provider goes away: OpenVPN notices (the server pushed `ping-restart 10`) and says so,
    // and the reader reports it, while tun0 stays (persist-tun).
    drop(server);
    let stopped = Instant::now();
    let down = loop {
        let s = mv_agent::stats::openvpn::query(&socket, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{e:?}\n{}", galaxy.log()));
        if !s.connected() {
            break s;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(60),
            "still CONNECTED 60s after the server stopped:\n{}",
            galaxy.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "management socket, {:?} after the server stopped: {down:?}",
        stopped.elapsed()
    );
    assert!(
        galaxy.log().contains("Restart pause")
            || galaxy.log().contains("SIGUSR1[soft,ping-restart]"),
        "OpenVPN restarts: {}",
        galaxy.log()
    );
    let tun0 = client_ns
        .command("ip")
        .args(["link", "show", "dev", "tun0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    // What the interface alone would have said: "up".
    assert!(tun0, "persist-tun keeps tun0 through the restart");
    let stats = mv_agent::stats::router::RouterStats {
        vpn_up: Some(tun0),
        openvpn: Some(down.clone()),
        ..Default::default()
    };
    let summary = stats.summary();
    assert!(
        summary.starts_with(&format!("0 leases, vpn {} ", down.state))
            || summary == format!("0 leases, vpn {}", down.state),
        "{summary}"
    );
    assert!(!summary.contains("connected"), "{summary}");
    eprintln!("summary with the server stopped: {summary} (tun0 present: {tun0})");
    eprintln!("openvpn test done in {:?}", started.elapsed());
}

/// A galaxy on OpenVPN whose vpn.toml lacks the provider's files, names a credentials file others
/// can read, or keeps a WireGuard field: one error line (exit 2) naming the file and the field,
/// and nothing written to the target.
#[test]
fn openvpn_settings_are_refused_with_the_file_and_field_named() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    openvpn_lab_tree(&tree);
    let target = bare_debian(t.path());
    let vpn_toml = mv_provision::vpn_file(&tree, &GALAXY.parse().unwrap());
    let dir = vpn_toml.parent().unwrap().to_path_buf();
    let apply = || {
        let mut c = mv(&tree);
        c.args(["provision", "apply", GALAXY, "--target"])
            .arg(&target);
        common::usage_error(&mut c, None)
    };
    let base =
        "endpoint = \"192.0.2.1\"\nport = 1194\naddress = \"10.64.0.2/24\"\ndns = \"10.64.0.1\"\n";

    // init --lab's WireGuard settings: its private_key_file is refused with its line.
    let err = apply();
    assert!(
        err.contains("vpn.toml:") && err.contains("`peer_public_key` is a WireGuard setting"),
        "{err}"
    );

    // No files named: one error for both.
    std::fs::write(&vpn_toml, base).unwrap();
    let err = apply();
    assert!(
        err.contains("ca_file (the provider's CA certificate) is not set"),
        "{err}"
    );
    assert!(err.contains("credentials_file (a 0600 file"), "{err}");

    // Named but missing: one error naming both files.
    std::fs::write(
        &vpn_toml,
        format!("{base}ca_file = \"ca.crt\"\ncredentials_file = \"credentials\"\n"),
    )
    .unwrap();
    std::fs::remove_file(dir.join("ca.crt")).ok();
    let err = apply();
    for f in ["ca.crt", "credentials"] {
        assert!(err.contains(&dir.join(f).display().to_string()), "{err}");
    }

    // Credentials others can read.
    std::fs::write(dir.join("ca.crt"), mv_testkit::openvpn::TEST_CA_PEM).unwrap();
    std::fs::write(dir.join("credentials"), "user\npassword\n").unwrap();
    std::fs::set_permissions(
        dir.join("credentials"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = apply();
    assert!(
        err.contains(&format!(
            "{} (vpn.toml's credentials_file) is readable by others (mode 0644): chmod 600 it",
            dir.join("credentials").display()
        )),
        "{err}"
    );
    assert!(
        !err.contains("password\n") && !err.contains(": password"),
        "{err}"
    );
    assert!(
        !target.join("etc/openvpn").exists(),
        "nothing written to the target"
    );
    assert!(
        !target.join("etc/hostname").exists(),
        "nothing written to the target"
    );
}
