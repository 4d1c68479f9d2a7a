//! Onion services of service machines, end to end on a private Tor network (issue 14).
//!
//! A lab tree whose mail service publishes `onion = [80]`: the star router's tor runs with the
//! torrc and key files exactly as `multiverse provision apply --disk` put them into the star's
//! seed, joined to a private Tor network (`mv_testkit::tornet`) by a defaults torrc only; the
//! service's HTTP server listens at its address (10.2.2.20:80) in the same network namespace. A
//! client tor of that network fetches the page at the address `multiverse identity show` prints,
//! and `identity restore` from the same words in a second tree prints the same address. A wrong
//! address (another machine's, never published) gets nothing.
#![allow(clippy::unwrap_used)]

mod common;

use common::{mv, ok, FAST};
use mv_testkit::tornet::Tornet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STAR: &str = "star.router.multiverse";
const SERVICE: &str = "mail.service.multiverse";
const SERVICE_ADDR: &str = "10.2.2.20";
const MAIL_NIC: &str = "networks = [{ network = \"net2\", address = \"10.2.2.20\" }]";

/// A child process killed (by its PID) and reaped on drop, also when the test fails.
struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lab topology with the mail service publishing port 80.
fn write_config(root: &Path) {
    let text = mv_machines::LAB_TOML.replacen(MAIL_NIC, &format!("{MAIL_NIC}\nonion = [80]"), 1);
    assert!(text.contains("onion = [80]"));
    let config = mv_machines::Tree::new(root).config_file();
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(config, text).unwrap();
}

/// `identity show NAME`: (the onion address, the whole output).
fn show(root: &Path, name: &str) -> (String, String) {
    let out = ok(mv(root).args(["identity", "show", name]), None);
    let onion = out
        .lines()
        .find_map(|l| l.strip_prefix("onion "))
        .unwrap_or_else(|| panic!("no onion line in:\n{out}"))
        .trim()
        .to_string();
    assert!(onion.ends_with(".onion") && onion.len() == 62, "{onion}");
    (onion, out)
}

/// Stand-ins for the agent and the seed's applier: the seed's tor files are what this test reads.
fn stand_ins(dir: &Path) -> (PathBuf, PathBuf) {
    let agent = dir.join("multiverse-agent");
    let applier = dir.join("multiverse-seed");
    for p in [&agent, &applier, &dir.join("multiverse-agent-libvirt")] {
        std::fs::write(p, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (agent, applier)
}

/// The star's seed as provisioning writes it: `provision apply STAR --disk`, then the disk's
/// files read back with debugfs (nothing mounted) and parsed as the guest would.
fn star_seed(root: &Path, scratch: &Path) -> mv_provision::Desired {
    let (agent, applier) = stand_ins(scratch);
    ok(
        mv(root)
            .args(["provision", "apply", STAR, "--disk"])
            .env("MULTIVERSE_AGENT_BIN", &agent)
            .env("MULTIVERSE_SEED_BIN", &applier),
        None,
    );
    let disk = mv_machines::Tree::new(root).seed_disk(&STAR.parse().unwrap());
    let out = scratch.join("seed");
    std::fs::create_dir_all(&out).unwrap();
    mv_testkit::run_ok(
        Command::new(mv_testkit::require_tool("debugfs"))
            .arg("-R")
            .arg(format!("rdump / {}", out.display()))
            .arg(&disk),
    );
    let folder = [out.clone(), out.join("root")]
        .into_iter()
        .find(|d| d.join("seed.json").is_file())
        .unwrap_or_else(|| panic!("no seed.json in {}", out.display()));
    mv_provision::read_seed_dir(&folder).unwrap().0
}

fn uid_gid(user: &str) -> (u32, u32) {
    let line = mv_testkit::run_ok(Command::new("getent").args(["passwd", user]));
    let f: Vec<&str> = line.trim().split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// Writes the seed's tor folders and files under `var_lib_tor` (standing for /var/lib/tor) with
/// their modes and owners; returns the torrc's text.
fn install_tor_files(d: &mv_provision::Desired, var_lib_tor: &Path) -> String {
    let (uid, gid) = uid_gid("debian-tor");
    let local = |p: &str| var_lib_tor.join(p.strip_prefix("/var/lib/tor/").unwrap());
    // The tor package makes /var/lib/tor itself (0700, its user): so does the test.
    std::fs::create_dir_all(var_lib_tor).unwrap();
    std::fs::set_permissions(var_lib_tor, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(var_lib_tor, Some(uid), Some(gid)).unwrap();
    for dir in d
        .dirs
        .iter()
        .filter(|x| x.path.starts_with("/var/lib/tor/"))
    {
        assert_eq!(dir.owner, "debian-tor");
        let p = local(&dir.path);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(dir.mode)).unwrap();
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
    }
    for f in d
        .files
        .iter()
        .filter(|x| x.path.starts_with("/var/lib/tor/"))
    {
        let p = local(&f.path);
        std::fs::write(&p, f.contents.bytes()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode)).unwrap();
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
    }
    let torrc = d.files.iter().find(|f| f.path == "/etc/tor/torrc").unwrap();
    String::from_utf8(torrc.contents.bytes().to_vec()).unwrap()
}

/// `curl` over the network's client tor (inside the namespace) to `url`.
fn fetch(net: &Tornet, url: &str, max_time: u32) -> std::process::Output {
    net.netns()
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            &max_time.to_string(),
            "--socks5-hostname",
        ])
        .arg(format!("127.0.0.1:{}", net.socks_port()))
        .arg(url)
        .output()
        .unwrap()
}

#[test]
fn a_published_service_is_reached_at_the_address_identity_show_prints() {
    for tool in ["tor", "tor-gencert", "curl", "python3", "debugfs", "mke2fs"] {
        mv_testkit::require_tool(tool);
    }
    let top = tempfile::tempdir().unwrap();
    let a = top.path().join("a");
    let b = top.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    write_config(&a);
    write_config(&b);

    // Tree A: a new identity; tree B: restored from A's words.
    let out = ok(mv(&a).args(["identity", "new"]).args(FAST), None);
    let words = out.lines().nth(1).unwrap().to_string();
    assert_eq!(words.split(' ').count(), 24);
    let words_file = top.path().join("words");
    std::fs::write(&words_file, format!("{words}\n")).unwrap();
    ok(
        mv(&b)
            .args(["identity", "restore", "--words-file"])
            .arg(&words_file)
            .args(FAST),
        None,
    );
    let (address, shown) = show(&a, SERVICE);
    assert!(
        shown.contains(&format!(
            "onion_ports          80 (published by {STAR}, to {SERVICE_ADDR})"
        )),
        "{shown}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(
        mv(&a).args(["--json", "identity", "show", SERVICE]),
        None,
    ))
    .unwrap();
    assert_eq!(json["onion"], address.as_str());
    assert_eq!(json["onion_ports"], serde_json::json!([80]));
    assert_eq!(json["onion_published_by"], STAR);
    // `machine show` (no passphrase: the public record) says the same.
    let shown = ok(mv(&a).args(["machine", "show", SERVICE]), None);
    assert!(
        shown.contains(&format!("onion:      {address}\n")),
        "{shown}"
    );
    assert!(shown.contains("published:  onion ports 80\n"), "{shown}");
    let shown = ok(mv(&a).args(["machine", "show", STAR]), None);
    assert!(
        shown.contains(&format!(
            "publishes:  {SERVICE} (onion ports 80 to {SERVICE_ADDR})\n"
        )),
        "{shown}"
    );
    let (restored, _) = show(&b, SERVICE);
    assert_eq!(restored, address, "restore from the same words");
    // An address that exists but is not published: the star's own (port 22 only) is published;
    // the controller's is not.
    let (unpublished, shown) = show(&a, "controller.multiverse");
    assert!(!shown.contains("onion_ports"), "{shown}");

    // The star's provisioning, as its seed carries it.
    let scratch = top.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let seed = star_seed(&a, &scratch);
    // Its torrc (with the service's HiddenServiceDir) and nftables pass their own tools.
    let checked = ok(
        mv(&a)
            .args(["provision", "check", STAR])
            .env("MULTIVERSE_AGENT_BIN", scratch.join("multiverse-agent")),
        None,
    );
    for want in ["/etc/tor/torrc", "/etc/nftables.conf"] {
        assert!(
            checked
                .lines()
                .any(|l| l.starts_with("ok") && l.ends_with(want)),
            "{checked}"
        );
    }
    let var_lib_tor = scratch.join("var-lib-tor");
    let torrc_text = install_tor_files(&seed, &var_lib_tor);
    assert!(
        torrc_text.contains(&format!(
            "HiddenServiceDir /var/lib/tor/{SERVICE}\nHiddenServicePort 80 {SERVICE_ADDR}:80\n"
        )),
        "{torrc_text}"
    );
    let torrc = scratch.join("torrc");
    std::fs::write(&torrc, &torrc_text).unwrap();

    // The private network; the star's addresses and the service's in its namespace.
    let started = Instant::now();
    let mut net = Tornet::builder().start(&top.path().join("tornet"));
    let ns = net.netns();
    // TransPort/DNSPort bind to the star's address on net2: it must exist there.
    let star_ips: std::collections::BTreeSet<&str> = torrc_text
        .lines()
        .filter_map(|l| l.strip_prefix("TransPort ").or(l.strip_prefix("DNSPort ")))
        .filter_map(|rest| rest.split(':').next())
        .filter(|ip| *ip != "127.0.0.1")
        .collect();
    for ip in star_ips.into_iter().chain([SERVICE_ADDR]) {
        ns.add_address(&format!("{ip}/32"));
    }
    ns.bind(&var_lib_tor, Path::new("/var/lib/tor"));
    let www = scratch.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "mail service over its onion\n").unwrap();
    let _server = Kill(
        ns.command("python3")
            .args(["-m", "http.server", "--bind", SERVICE_ADDR, "--directory"])
            .arg(&www)
            .arg("80")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut star = net.spawn_tor("star", &["-f".as_ref(), torrc.as_os_str()]);
    let bootstrapped = net.wait_bootstrapped(Duration::from_secs(180));
    eprintln!("onion: private network's client at 100% after {bootstrapped:.1?}");
    if let Err(e) = star.wait_for_log("Bootstrapped 100%", Duration::from_secs(120)) {
        panic!("{e}\n{}", net.logs());
    }
    eprintln!("onion: star at 100% after {:.1?}", started.elapsed());

    // tor's own reading of the provisioned key is the address the CLI printed.
    let hostname = std::fs::read_to_string(var_lib_tor.join(SERVICE).join("hostname")).unwrap();
    assert_eq!(hostname.trim(), address);
    let own = std::fs::read_to_string(var_lib_tor.join("multiverse/hostname")).unwrap();
    assert_eq!(own.trim(), show(&a, STAR).0, "the star's own onion service");

    let url = format!("http://{address}/index.html");
    let wait = Instant::now();
    let body = loop {
        let out = fetch(&net, &url, 30);
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            wait.elapsed() < Duration::from_secs(240),
            "the onion service was not reached: {}\n--- star ---\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            star.log(),
            net.logs()
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    assert_eq!(body, "mail service over its onion\n");
    eprintln!(
        "onion: page fetched over the onion service {:.1?} after the star bootstrapped ({:.1?} in all)",
        wait.elapsed(),
        started.elapsed()
    );

    // The wrong address: a valid onion address nobody publishes.
    let out = fetch(&net, &format!("http://{unpublished}/index.html"), 60);
    assert!(
        !out.status.success(),
        "an unpublished address answered: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The service's address on a port it does not publish.
    let out = fetch(&net, &format!("http://{address}:8080/"), 60);
    assert!(!out.status.success(), "an unpublished port answered");
    drop(star);
}
