//! The private Tor network bootstraps inside a namespace the test made, carries a request through
//! its exit to an HTTP server in the same namespace, and leaves no process behind.
#![allow(clippy::unwrap_used)]

use mv_testkit::tornet::{Netns, Tornet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The machine's own namespace is refused before any tor starts.
#[test]
#[should_panic(expected = "in the machine's own network namespace")]
fn refuses_the_machines_own_namespace() {
    let _ = Tornet::builder()
        .netns_of(std::process::id())
        .start(&tempdir().join("refused"));
}

#[test]
fn bootstraps_and_carries_traffic_through_its_exit() {
    mv_testkit::require_tool("curl");
    mv_testkit::require_tool("python3");
    let dir = tempdir();
    // The test's own namespace, standing in for the lab's (where booted routers will be): the
    // network runs there and leaves it in place when stopped.
    let lab = Netns::create();
    let setup = Instant::now();
    let mut net = Tornet::builder().netns_of(lab.pid()).start(&dir);
    let keys = setup.elapsed();
    let took = net.wait_bootstrapped(Duration::from_secs(180));
    eprintln!(
        "tornet: keys and configs in {keys:.1?}; client bootstrapped 100% {took:.1?} after its tors started"
    );

    // The namespace has its own loopback: nothing of the machine's is in it.
    let links = mv_testkit::run_ok(net.netns().command("ip").args(["-o", "link"]));
    assert_eq!(links.lines().count(), 1, "{links}");

    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello through tor\n").unwrap();
    let _server = Kill(
        net.netns()
            .command("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(&www)
            .arg("8080")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socks = format!("127.0.0.1:{}", net.socks_port());
    let start = Instant::now();
    let body = loop {
        let out = net
            .netns()
            .command("curl")
            .args(["-sS", "--max-time", "20", "--socks5-hostname", &socks])
            .arg("http://127.0.0.1:8080/index.html")
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no request through the exit: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            net.logs()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(body, "hello through tor\n");
    eprintln!(
        "tornet: first request through the exit after {:.1?}",
        start.elapsed()
    );

    let pids = net.pids();
    drop(net);
    let gone = |pid: u32| !std::path::Path::new(&format!("/proc/{pid}")).exists();
    for pid in pids {
        assert!(gone(pid), "tor {pid} outlived the network");
    }
    assert!(
        !gone(lab.pid()),
        "the network stopped the namespace it was given"
    );
    let holder = lab.pid();
    drop(lab);
    assert!(gone(holder), "the namespace's holder outlived it");
}

fn tempdir() -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tornet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
