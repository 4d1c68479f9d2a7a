//! The host role: libvirt domains from the real libvirtd (a defined and a running domain, unique
//! names, cleaned up), libvirt gone (only the `host` section goes stale), and the virtio-serial
//! path: a guest agent behind a unix socket standing in for QEMU's channel, reached through the
//! host agent at `/v1/machines/{fqdn}/...`.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Stands in for QEMU: listens on the host-side channel socket and on the guest-side "port",
/// and splices the two streams together once both have connected.
fn fake_qemu_channel(host_side: &Path, guest_side: &Path) {
    let h = UnixListener::bind(host_side).unwrap();
    let g = UnixListener::bind(guest_side).unwrap();
    std::thread::spawn(move || {
        let (guest, _) = g.accept().unwrap();
        let (host, _) = h.accept().unwrap();
        let splice = |mut from: UnixStream, mut to: UnixStream| {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
                let _ = to.shutdown(std::net::Shutdown::Both);
            })
        };
        splice(guest.try_clone().unwrap(), host.try_clone().unwrap());
        splice(host, guest);
    });
}

#[test]
fn guest_agent_through_virtio_serial_channel() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("chan")).unwrap();
    std::fs::create_dir_all(d.path().join("old")).unwrap();
    fake_qemu_channel(
        &d.path().join("chan/guest.multiverse.sock"),
        &d.path().join("port.sock"),
    );
    let guest_dir = d.path().join("guest");
    std::fs::create_dir_all(&guest_dir).unwrap();
    let _guest = start(
        &guest_dir,
        &format!(
            "role = \"service\"\nname = \"guest\"\n[api]\nsocket = \"\"\nvirtio_port = \"{}/port.sock\"\n[stats]\ninterval = \"200ms\"\n[[tasks]]\nname = \"prune\"\nkind = \"prune\"\ndir = \"{}/old\"\nolder_than = \"1d\"\n",
            d.path().display(),
            d.path().display()
        ),
    );
    let host_dir = d.path().join("host");
    std::fs::create_dir_all(&host_dir).unwrap();
    let host = start(
        &host_dir,
        &format!(
            "role = \"host\"\nname = \"host\"\n[api]\nsocket = \"{{dir}}/host.sock\"\n[stats]\ninterval = \"200ms\"\n[host]\nuri = \"test:///default\"\nchannel_dir = \"{}/chan\"\nguest_timeout = \"3s\"\n",
            d.path().display()
        ),
    );
    let c = host.client();
    assert_eq!(c.machines().unwrap(), vec!["guest.multiverse".to_string()]);
    let g = c.guest("guest.multiverse");
    let info = host.wait_for(10, "the guest's agent through the channel", || {
        g.info().ok()
    });
    assert_eq!(info.name, "guest");
    assert_eq!(info.role, "service");
    // Several requests over the one channel stream, in order.
    for _ in 0..5 {
        let s = g.stats().unwrap();
        assert!(s.samples >= 1);
    }
    assert!(!g.history("1m").unwrap().is_empty());
    let (st, m) = g.request("GET", "/metrics").unwrap();
    assert_eq!(st, 200);
    let samples = parse_prometheus(&String::from_utf8(m).unwrap()).unwrap();
    assert_eq!(
        metric(&samples, "multiverse_agent_info", &[])
            .unwrap()
            .labels["name"],
        "guest"
    );
    let r = g.run_task("prune", true).unwrap();
    assert!(r.ok && r.dry_run);
    // The host's own stats are the host's, not the guest's.
    assert_eq!(c.info().unwrap().name, "host");
    // A machine without a channel, and routes that are not forwarded.
    let (st, body) = c
        .request("GET", "/v1/machines/nobody.multiverse/info")
        .unwrap();
    assert_eq!(st, 404, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        c.request("GET", "/v1/machines/guest.multiverse/events")
            .unwrap()
            .0,
        400
    );
    // test:///default has one running domain called "test".
    let dom: serde_json::Value = host.wait_for(10, "host section", || {
        c.get_json::<serde_json::Value>("/v1/host/domains")
            .ok()
            .filter(|v| !v["data"].is_null())
    });
    assert_eq!(dom["data"]["domains"][0]["name"], "test");
    assert_eq!(dom["data"]["domains"][0]["state"], "running");
}

struct Domain(String);
impl Drop for Domain {
    fn drop(&mut self) {
        for args in [["destroy", &self.0], ["undefine", &self.0]] {
            let _ = Command::new("virsh")
                .args(["-c", "qemu:///system"])
                .args(args)
                .output();
        }
    }
}

fn virsh(args: &[&str]) -> String {
    mv_testkit::run_ok(
        Command::new("virsh")
            .args(["-c", "qemu:///system"])
            .args(args),
    )
}

#[test]
fn host_role_reads_real_libvirt_domains() {
    mv_testkit::require_tool("virsh");
    mv_testkit::require_tool("qemu-img");
    let d = tempfile::tempdir().unwrap();
    let tag = format!("{}-{}", std::process::id(), mv_agent_test_nonce());
    let disk = d.path().join("disk.qcow2");
    mv_testkit::run_ok(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&disk)
            .arg("16M"),
    );
    // The disk's folder must be reachable by the qemu user libvirt runs guests as.
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let kind = if Path::new("/dev/kvm").exists() {
        "kvm"
    } else {
        "qemu"
    };
    let xml = |name: &str, with_disk: bool| {
        format!(
            "<domain type='{kind}'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features>\
             <devices>{}<memballoon model='none'/></devices></domain>",
            if with_disk {
                format!("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>", disk.display())
            } else {
                String::new()
            }
        )
    };
    let running = Domain(format!("mv-agent-run-{tag}"));
    let defined = Domain(format!("mv-agent-def-{tag}"));
    for (dom, with_disk) in [(&running, true), (&defined, false)] {
        let f = d.path().join(format!("{}.xml", dom.0));
        std::fs::write(&f, xml(&dom.0, with_disk)).unwrap();
        virsh(&["define", f.to_str().unwrap()]);
    }
    virsh(&["start", &running.0]);

    let a = start(
        d.path(),
        "role = \"host\"\n[api]\nsocket = \"{dir}/h.sock\"\n[stats]\ninterval = \"500ms\"\ncollector_timeout = \"30s\"\n[host]\nuri = \"qemu:///system\"\nchannel_dir = \"{dir}/chan\"\n",
    );
    let find = |v: &serde_json::Value, name: &str| -> Option<serde_json::Value> {
        v["data"]["domains"]
            .as_array()?
            .iter()
            .find(|d| d["name"] == name)
            .cloned()
    };
    let (run, def) = a.wait_for(
        60,
        "both domains, the running one with CPU time and disk reads",
        || {
            let v: serde_json::Value = a.client().get_json("/v1/host/domains").ok()?;
            let run = find(&v, &running.0)?;
            let def = find(&v, &defined.0)?;
            (run["cpu_time_ns"].as_u64()? > 0 && run["block_read_bytes"].as_u64()? > 0)
                .then_some((run, def))
        },
    );
    assert_eq!(run["state"], "running");
    assert_eq!(run["vcpus"], 1);
    assert_eq!(run["max_memory_bytes"], 64 * 1024 * 1024);
    assert_eq!(def["state"], "shutoff");
    assert_eq!(def["cpu_time_ns"], 0);
    // The same numbers as libvirt's own view.
    let info = virsh(&["dominfo", &running.0]);
    assert!(info.contains("running"), "{info}");
    let (_, m) = a.client().request("GET", "/metrics").unwrap();
    let samples = parse_prometheus(&String::from_utf8(m).unwrap()).unwrap();
    assert_eq!(
        metric(
            &samples,
            "multiverse_domain_running",
            &[("domain", &running.0)]
        )
        .unwrap()
        .value,
        1.0
    );
    assert_eq!(
        metric(
            &samples,
            "multiverse_domain_running",
            &[("domain", &defined.0)]
        )
        .unwrap()
        .value,
        0.0
    );
    assert_eq!(
        metric(
            &samples,
            "multiverse_collector_up",
            &[("collector", "host")]
        )
        .unwrap()
        .value,
        1.0
    );

    // The domain goes away: the next samples no longer list it.
    let gone = running.0.clone();
    drop(running);
    a.wait_for(30, "the destroyed domain to disappear", || {
        let v: serde_json::Value = a.client().get_json("/v1/host/domains").ok()?;
        find(&v, &gone).is_none().then_some(())
    });
}

fn mv_agent_test_nonce() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000
}

#[test]
fn libvirt_gone_marks_only_the_host_section_stale() {
    let d = tempfile::tempdir().unwrap();
    let a = start(
        d.path(),
        "role = \"host\"\n[api]\nsocket = \"{dir}/h.sock\"\n[stats]\ninterval = \"200ms\"\n[host]\nuri = \"qemu+unix:///system?socket=/nonexistent/libvirt-sock\"\nchannel_dir = \"{dir}/chan\"\n",
    );
    let s = a.wait_for(10, "two samples", || {
        a.client().stats().ok().filter(|s| s.samples >= 2)
    });
    let host = s.host.unwrap();
    assert!(host.stale);
    assert!(host.error.unwrap().contains("libvirt"));
    assert!(!s.cpu.stale && !s.memory.stale && !s.network.stale);
    // And the agent keeps serving.
    let mut out = String::new();
    let mut st = UnixStream::connect(&a.socket).unwrap();
    use std::io::Write;
    st.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    st.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    st.read_to_string(&mut out).unwrap();
    assert!(out.contains("\"degraded\""), "{out}");
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

#[test]
fn libvirt_helper_killed_is_restarted_and_missing_is_stale() {
    let d = tempfile::tempdir().unwrap();
    let a = start(
        d.path(),
        "role = \"host\"\n[api]\nsocket = \"{dir}/h.sock\"\n[stats]\ninterval = \"200ms\"\n[host]\nuri = \"test:///default\"\nchannel_dir = \"{dir}/chan\"\n",
    );
    let fresh = || {
        let s = a.client().stats().ok()?;
        let h = s.host?;
        (!h.stale && h.data.is_some()).then_some(())
    };
    a.wait_for(10, "host section", fresh);
    // The agent itself does not load libvirt: only its helper does.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", a.pid())).unwrap();
    assert!(!maps.contains("libvirt"), "the agent mapped libvirt");
    let helpers = children(a.pid());
    assert_eq!(helpers.len(), 1, "{helpers:?}");
    let hmaps = std::fs::read_to_string(format!("/proc/{}/maps", helpers[0])).unwrap();
    assert!(hmaps.contains("libvirt"));
    mv_testkit::run_ok(Command::new("kill").args(["-9", &helpers[0].to_string()]));
    // The next tick sees it gone (stale), a later one starts a new helper (fresh again).
    a.wait_for(10, "a new helper", || {
        let c = children(a.pid());
        (c.len() == 1 && c[0] != helpers[0]).then_some(())
    });
    a.wait_for(10, "host section fresh again", fresh);

    let d2 = tempfile::tempdir().unwrap();
    let b = start(
        d2.path(),
        "role = \"host\"\n[api]\nsocket = \"{dir}/h.sock\"\n[stats]\ninterval = \"200ms\"\n[host]\nuri = \"test:///default\"\nhelper = \"{dir}/no-such-helper\"\n",
    );
    let s = b.wait_for(10, "two samples", || {
        b.client().stats().ok().filter(|s| s.samples >= 2)
    });
    let h = s.host.unwrap();
    assert!(h.stale);
    assert!(h.error.unwrap().contains("no-such-helper"));
    assert!(!s.cpu.stale);
}
