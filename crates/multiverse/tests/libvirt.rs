//! The real `multiverse` binary against the real libvirtd: `up` / `status` / `down` on the default
//! topology, `backup` / `restore`, `image import`, and the clear errors (unreachable URI, missing
//! base image, a domain XML libvirt rejects).
//!
//! The daemon is shared with other tests: the default topology is made unique per test (machine
//! FQDNs, network and bridge names, and the pool name, which the renderer fixes to `multiverse`,
//! are rewritten with a random tag), and everything defined is undefined at the end.
#![allow(clippy::unwrap_used)]

mod common;

use common::{success as ok, MV};
use mv_libvirt::{Connection, ObjectKind};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const URI: &str = "qemu:///system";

fn tag() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{:06x}",
        (n ^ std::process::id().rotate_left(13)) & 0xff_ffff
    )
}

fn mv(root: &Path, args: &[&str]) -> Output {
    Command::new(MV)
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("MULTIVERSE_CONNECT")
        .env("MULTIVERSE_PASSPHRASE", common::PASS)
        .output()
        .unwrap()
}

/// The spec identity (cheap Argon2) in `root`: `up` unseals it for the controller's disk key.
fn restore_identity(root: &Path) {
    let mut c = Command::new(MV);
    c.arg("--root")
        .arg(root)
        .args(["identity", "restore"])
        .args(common::FAST)
        .env("MULTIVERSE_PASSPHRASE", common::PASS);
    common::ok(&mut c, Some(common::SPEC_WORDS));
}

/// The renderer names the pool `multiverse` (one per host): renames it `pool` (without its UUID)
/// in the rendered pool and domain XML of `tree`, so tests on the shared daemon do not collide;
/// `edit` changes each domain's XML further.
fn rename_pool(
    tree: &mv_machines::Tree,
    topo: &mv_machines::Topology,
    pool: &str,
    edit: impl Fn(String) -> String,
) {
    let pool_xml = tree.pool_xml();
    let p: String = std::fs::read_to_string(&pool_xml)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("<uuid>"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace("<name>multiverse</name>", &format!("<name>{pool}</name>"));
    std::fs::write(&pool_xml, p).unwrap();
    for m in topo.vms() {
        let f = tree.domain_xml(&m.name);
        let d = std::fs::read_to_string(&f)
            .unwrap()
            .replace("pool=\"multiverse\"", &format!("pool=\"{pool}\""));
        std::fs::write(&f, edit(d)).unwrap();
    }
}

/// Undefines what a test defined, even when it fails.
struct Cleanup(Vec<(ObjectKind, String)>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(c) = Connection::open(URI) else { return };
        for (k, n) in self.0.iter().rev() {
            if *k == ObjectKind::Domain && c.domain_is_active(n).unwrap_or(false) {
                let _ = c.destroy_domain(n);
            }
            if *k == ObjectKind::Pool && c.is_active(*k, n).unwrap_or(false) {
                let _ = c.stop_pool(n);
            }
            if c.exists(*k, n).unwrap_or(false) {
                let _ = c.undefine(*k, n);
            }
        }
    }
}

struct Tree {
    dir: tempfile::TempDir,
    pool: String,
    machines: Vec<String>,
    networks: Vec<String>,
}

/// A rendered default topology with unique names, and its base images imported through the CLI.
fn default_tree(with_images: bool) -> (Tree, Cleanup) {
    mv_testkit::require_tool("libvirtd");
    mv_testkit::require_tool("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path();
    let t = tag();
    let mut text =
        mv_machines::DEFAULT_TOML.replace(".multiverse\"", &format!(".t{t}.multiverse\""));
    for i in 0..3 {
        text = text
            .replace(&format!("\"net{i}\""), &format!("\"mvt{t}n{i}\""))
            .replace(&format!("\"mvbr{i}\""), &format!("\"mv{t}b{i}\""));
    }
    std::fs::write(root.join("multiverse.toml"), &text).unwrap();
    let topo = mv_machines::Topology::load(&root.join("multiverse.toml")).unwrap();
    let tree = mv_machines::Tree::new(root);
    mv_machines::render_tree(&tree, &topo, false).unwrap();

    let pool = format!("mvt-pool-{t}");
    rename_pool(&tree, &topo, &pool, |d| d);
    let machines: Vec<String> = topo.vms().map(|m| m.name.as_str().to_string()).collect();
    let networks: Vec<String> = topo.networks.iter().map(|n| n.name.clone()).collect();

    // The controller's disk is encrypted (the default): its key comes from the identity, its
    // libvirt secret is defined by `up`.
    restore_identity(root);
    let mut clean = Cleanup(vec![(ObjectKind::Pool, pool.clone())]);
    for m in topo.vms() {
        if let Some(uuid) = mv_machines::luks_secret_uuid(m) {
            clean.0.insert(0, (ObjectKind::Secret, uuid));
        }
    }
    for n in &networks {
        clean.0.push((ObjectKind::Network, n.clone()));
    }
    for m in &machines {
        clean.0.push((ObjectKind::Domain, m.clone()));
    }

    if with_images {
        let raw = root.join("tiny.raw");
        std::fs::write(&raw, vec![0u8; 1 << 20]).unwrap();
        for base in ["alpine", "debian"] {
            let out = ok(&mv(
                root,
                &["image", "import", raw.to_str().unwrap(), "--name", base],
            ));
            assert!(out.contains("imported"), "{out}");
        }
        let again = ok(&mv(
            root,
            &["image", "import", raw.to_str().unwrap(), "--name", "alpine"],
        ));
        assert!(again.contains("unchanged"), "{again}");
    }
    (
        Tree {
            dir,
            pool,
            machines,
            networks,
        },
        clean,
    )
}

#[test]
fn up_defines_the_default_topology_status_agrees_second_up_changes_nothing() {
    let (t, _clean) = default_tree(true);
    let root = t.dir.path();
    let c = Connection::open(URI).unwrap();

    let plan = ok(&mv(root, &["--dry-run", "up"]));
    assert!(plan.contains("would be created"), "{plan}");
    assert!(!c.exists(ObjectKind::Pool, &t.pool).unwrap());
    assert!(!c.exists(ObjectKind::Domain, &t.machines[0]).unwrap());

    let out = ok(&mv(root, &["up"]));
    for m in &t.machines {
        assert!(
            c.exists(ObjectKind::Domain, m).unwrap(),
            "{m} not defined:\n{out}"
        );
        let disk = root.join("machines").join(m).join("disk.qcow2");
        assert!(disk.is_file(), "{} missing", disk.display());
    }
    for n in &t.networks {
        assert!(c.exists(ObjectKind::Network, n).unwrap());
        // Defined, never started by `up` without --start (it would create a host bridge).
        assert!(!c.is_active(ObjectKind::Network, n).unwrap());
    }
    assert!(c.exists(ObjectKind::Pool, &t.pool).unwrap());
    assert_eq!(t.machines.len(), 6);

    let st: serde_json::Value =
        serde_json::from_str(&ok(&mv(root, &["status", "--json"]))).unwrap();
    let st = st.as_array().unwrap();
    assert_eq!(st.len(), t.machines.len());
    for s in st {
        assert_eq!(s["defined"], true, "{s}");
        assert_eq!(s["state"], "shut_off", "{s}");
        assert_eq!(s["changed_since_render"], false, "{s}");
    }
    // Start order in status: universe, galaxy, star first.
    assert!(st[0]["name"].as_str().unwrap().starts_with("universe."));
    assert!(st[1]["name"].as_str().unwrap().starts_with("galaxy."));
    assert!(st[2]["name"].as_str().unwrap().starts_with("star."));

    let again = ok(&mv(root, &["up"]));
    assert!(again.contains("nothing to change"), "{again}");

    // Agents: one answering on its machine's channel socket, one socket nobody serves.
    let (answering, silent) = (&t.machines[3], &t.machines[4]);
    let _agent = FakeAgent::start(answering);
    let silent_sock = agent_socket(silent);
    drop(std::os::unix::net::UnixListener::bind(&silent_sock).unwrap());
    let st: serde_json::Value =
        serde_json::from_str(&ok(&mv(root, &["status", "--json"]))).unwrap();
    std::fs::remove_file(&silent_sock).unwrap();
    for s in st.as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        if name == answering {
            assert_eq!(s["agent"]["reachable"], true, "{s}");
            assert_eq!(s["agent"]["stats"]["samples"], 7, "{s}");
        } else if name == silent {
            assert_eq!(s["agent"]["reachable"], false, "{s}");
            assert!(s["agent"]["error"].is_string(), "{s}");
        } else {
            assert!(s["agent"].is_null(), "{s}");
        }
    }
    let human = ok(&mv(root, &["status"]));
    assert!(
        human.contains(&t.machines[0]) && human.contains("shut_off"),
        "{human}"
    );

    let down = ok(&mv(root, &["down"]));
    assert!(down.contains("nothing to stop"), "{down}");

    // Unknown machine: a usage error.
    let o = mv(root, &["up", "nosuch.multiverse"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn unreachable_uri_and_missing_base_image_are_clear_errors() {
    let (t, _clean) = default_tree(false);
    let root = t.dir.path();
    let bad = format!("qemu+unix:///system?socket={}/none.sock", root.display());
    let o = mv(root, &["up", "--connect", &bad]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("cannot connect to libvirt at {bad}")),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");

    let o = mv(root, &["up"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is missing"), "{err}");
    assert!(err.contains("multiverse image import"), "{err}");
    let c = Connection::open(URI).unwrap();
    assert!(!c.exists(ObjectKind::Pool, &t.pool).unwrap());
    assert!(!c.exists(ObjectKind::Domain, &t.machines[0]).unwrap());
    assert!(!root
        .join("machines")
        .join(&t.machines[0])
        .join("disk.qcow2")
        .exists());
}

fn agent_socket(fqdn: &str) -> PathBuf {
    let p = mv_core::layout::agent_socket(&mv_core::MachineName::parse(fqdn).unwrap());
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    p
}

/// Answers `GET /v1/stats` on a machine's agent socket like a guest agent would, until dropped.
struct FakeAgent(PathBuf);

impl FakeAgent {
    fn start(fqdn: &str) -> FakeAgent {
        use std::io::{Read, Write};
        let path = agent_socket(fqdn);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut req = Vec::new();
                let mut buf = [0u8; 512];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let stats = mv_agent::stats::Stats {
                    samples: 7,
                    ..Default::default()
                };
                let body = serde_json::to_string(&stats).unwrap();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeAgent(path)
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn backup_and_restore_through_the_cli() {
    mv_testkit::require_tool("libvirtd");
    let virsh = mv_testkit::require_tool("virsh");
    let root = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let t = tag();
    let name = format!("mvtest-cli-{t}");
    let _clean = Cleanup(vec![(ObjectKind::Domain, name.clone())]);
    let c = Connection::open(URI).unwrap();
    c.define_domain(&format!(
        "<domain type='qemu'><name>{name}</name><description>a &amp; b</description><memory unit='MiB'>32</memory><os><type arch='x86_64'>hvm</type></os><features><acpi/></features></domain>"
    ))
    .unwrap();
    let before =
        mv_testkit::run_ok(Command::new(&virsh).args(["-c", URI, "dumpxml", "--inactive", &name]));

    let o = out.path().to_str().unwrap();
    ok(&mv(root.path(), &["backup", "--out", o]));
    let file = out
        .path()
        .join(format!("backups/foreign/domain/{name}.xml"));
    // virsh prints one more newline than the API returns.
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim_end(),
        before.trim_end()
    );
    // A second backup leaves our file untouched.
    let j: serde_json::Value =
        serde_json::from_str(&ok(&mv(root.path(), &["--json", "backup", "--out", o]))).unwrap();
    let mine = j["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name.as_str())
        .unwrap();
    assert_eq!(mine["change"], "unchanged");
    // Keep only this test's object (the daemon is shared).
    for p in mv_testkit::files_under(out.path()) {
        if p != file {
            std::fs::remove_file(p).unwrap();
        }
    }

    c.undefine_domain(&name).unwrap();
    let plan = ok(&mv(root.path(), &["--dry-run", "restore", "--from", o]));
    assert!(
        plan.contains(&format!("would define   domain {name}")),
        "{plan}"
    );
    assert!(!c.exists(ObjectKind::Domain, &name).unwrap());
    let done = ok(&mv(root.path(), &["restore", "--from", o]));
    assert!(done.contains("1 defined"), "{done}");
    let after =
        mv_testkit::run_ok(Command::new(&virsh).args(["-c", URI, "dumpxml", "--inactive", &name]));
    assert_eq!(after, before);
    let again = ok(&mv(root.path(), &["restore", "--from", o]));
    assert!(again.contains("nothing to restore"), "{again}");

    // A file libvirt rejects: its path and libvirt's message, exit 1, nothing defined.
    let bad_name = format!("mvtest-clibad-{t}");
    let bad = out
        .path()
        .join(format!("backups/foreign/domain/{bad_name}.xml"));
    std::fs::write(
        &bad,
        format!("<domain type='qemu'><name>{bad_name}</name><memory>many</memory><os><type>hvm</type></os></domain>"),
    )
    .unwrap();
    let o2 = mv(root.path(), &["restore", "--from", o]);
    assert_eq!(o2.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o2.stderr);
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(err.contains("Invalid value 'many'"), "{err}");
    assert!(!c.exists(ObjectKind::Domain, &bad_name).unwrap());

    // Not a backup at all: a usage error.
    let empty = tempfile::tempdir().unwrap();
    let o3 = mv(
        root.path(),
        &["restore", "--from", empty.path().to_str().unwrap()],
    );
    assert_eq!(o3.status.code(), Some(2));
}

/// A small topology of our own: one service VM and one application VM without NICs or passed-
/// through devices, so they can really run here. Rendered by mv-machines' templates, as is.
fn runnable_tree() -> (Tree, Cleanup) {
    mv_testkit::require_tool("libvirtd");
    mv_testkit::require_tool("qemu-system-x86_64");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path();
    let t = tag();
    let text = format!(
        r#"libvirt_uri = "qemu:///system"
[host]
name = "host.t{t}.multiverse"
arch = "x86_64"
cpu_vendor = "intel"
memory_mib = 4096
os = "alpine"

[[machines]]
name = "svc.t{t}.multiverse"
type = "service"
os = "alpine"
memory_mib = 96
vcpus = 1
disks = [{{ base = "tiny", size_gib = 1 }}]

[[machines]]
name = "app.t{t}.multiverse"
type = "application"
os = "alpine"
memory_mib = 96
vcpus = 1
disks = [{{ base = "tiny", size_gib = 1 }}]
"#
    );
    std::fs::write(root.join("multiverse.toml"), text).unwrap();
    let topo = mv_machines::Topology::load(&root.join("multiverse.toml")).unwrap();
    let tree = mv_machines::Tree::new(root);
    mv_machines::render_tree(&tree, &topo, false).unwrap();
    let pool = format!("mvt-pool-{t}");
    // This machine is itself a VM: its KVM rejects MSR 0x10a (IA32_ARCH_CAPABILITIES), which
    // QEMU sets for host-passthrough and "maximum" CPUs, and QEMU aborts. Everything else of the
    // rendered domain is kept; the CPU element goes (libvirt's default model).
    rename_pool(&tree, &topo, &pool, |d| {
        d.replace(
            "<cpu mode=\"host-passthrough\" check=\"none\" migratable=\"off\"/>",
            "",
        )
    });
    let machines: Vec<String> = topo.vms().map(|m| m.name.as_str().to_string()).collect();
    let mut clean = Cleanup(vec![(ObjectKind::Pool, pool.clone())]);
    for m in &machines {
        clean.0.push((ObjectKind::Domain, m.clone()));
    }
    // A tiny boot disk: 1 MiB of zeros (the firmware finds nothing to boot and waits; what
    // matters is that QEMU runs the rendered domain).
    let raw = root.join("tiny.raw");
    std::fs::write(&raw, vec![0u8; 1 << 20]).unwrap();
    ok(&mv(
        root,
        &["image", "import", raw.to_str().unwrap(), "--name", "tiny"],
    ));
    (
        Tree {
            dir,
            pool,
            machines,
            networks: Vec::new(),
        },
        clean,
    )
}

fn inode(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().ino()
}

#[test]
fn rendered_machines_really_start_and_stop() {
    let (t, _clean) = runnable_tree();
    let root = t.dir.path();
    let (svc, app) = (&t.machines[0], &t.machines[1]);
    let svc_disk = root.join("machines").join(svc).join("disk.qcow2");
    let app_disk = root.join("machines").join(app).join("disk.qcow2");

    let out = ok(&mv(root, &["up", "--start", "--no-provision", "--no-wait"]));
    assert!(
        out.contains(&format!("started         domain   {svc}")),
        "{out}"
    );
    let st: serde_json::Value =
        serde_json::from_str(&ok(&mv(root, &["--json", "status"]))).unwrap();
    for s in st.as_array().unwrap() {
        assert_eq!(s["state"], "running", "{s}");
        assert_eq!(s["changed_since_render"], false, "{s}");
    }
    let again = ok(&mv(root, &["up", "--start", "--no-provision", "--no-wait"]));
    assert!(again.contains("nothing to change"), "{again}");

    // No OS answers the ACPI request: powered off after the timeout, in reverse order.
    let down = ok(&mv(root, &["down", "--timeout", "1", "--force"]));
    let pos = |text: &str, m: &str| text.find(&format!("domain   {m}")).unwrap();
    let started_app_first = pos(&out, app) < pos(&out, svc);
    let stopped_app_first = pos(&down, app) < pos(&down, svc);
    assert_ne!(
        started_app_first, stopped_app_first,
        "not in reverse order:\n{out}\n{down}"
    );
    let c = Connection::open(URI).unwrap();
    assert!(!c.domain_is_active(svc).unwrap() && !c.domain_is_active(app).unwrap());

    // Next start: the application VM gets a fresh disk, the service VM keeps its own.
    let (svc_ino, app_ino) = (inode(&svc_disk), inode(&app_disk));
    ok(&mv(
        root,
        &["up", "--start", "--no-provision", "--no-wait", app, svc],
    ));
    assert_eq!(inode(&svc_disk), svc_ino);
    assert_ne!(inode(&app_disk), app_ino);
    assert!(c.domain_is_active(svc).unwrap() && c.domain_is_active(app).unwrap());
    ok(&mv(root, &["down", "--timeout", "1", "--force"]));
    let _ = &t.pool;
}

/// `up` on an encrypted controller (the default): the disk is a LUKS qcow2 (`qemu-img info` says
/// `encrypted: yes`), the ephemeral private secret is defined and set, the machine starts; the
/// key exported from another tree made from the words alone opens the disk with `qemu-img`; with
/// the secret undefined (the kill switch's first step) libvirt refuses to start the machine; the
/// next `up` sets it again.
#[test]
fn an_encrypted_controller_disk_opens_with_the_key_from_the_words_alone() {
    mv_testkit::require_tool("libvirtd");
    mv_testkit::require_tool("qemu-system-x86_64");
    let virsh = mv_testkit::require_tool("virsh");
    let qemu_img = mv_testkit::require_tool("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path();
    let t = tag();
    let ctl = format!("controller.t{t}.multiverse");
    std::fs::write(
        root.join("multiverse.toml"),
        format!(
            r#"libvirt_uri = "qemu:///system"
[host]
name = "host.t{t}.multiverse"
arch = "x86_64"
cpu_vendor = "intel"
memory_mib = 4096
os = "debian"
accel = "tcg"

[[machines]]
name = "{ctl}"
type = "controller"
os = "debian"
firmware = "bios"
gpu = false
memory_mib = 128
vcpus = 1
disks = [{{ base = "tiny", size_gib = 1 }}]
"#
        ),
    )
    .unwrap();
    let topo = mv_machines::Topology::load(&root.join("multiverse.toml")).unwrap();
    let m = &topo.vms().next().unwrap();
    assert!(m.disk_encrypted(), "the controller's default");
    let uuid = mv_machines::luks_secret_uuid(m).unwrap();
    let tree = mv_machines::Tree::new(root);
    mv_machines::render_tree(&tree, &topo, false).unwrap();
    let pool = format!("mvt-pool-{t}");
    rename_pool(&tree, &topo, &pool, |d| d);
    let _clean = Cleanup(vec![
        (ObjectKind::Secret, uuid.clone()),
        (ObjectKind::Pool, pool.clone()),
        (ObjectKind::Domain, ctl.clone()),
    ]);
    restore_identity(root);
    let raw = root.join("tiny.raw");
    std::fs::write(&raw, vec![0u8; 1 << 20]).unwrap();
    ok(&mv(
        root,
        &["image", "import", raw.to_str().unwrap(), "--name", "tiny"],
    ));

    // qemu-img through a wrapper that records its command lines, then runs the real one.
    let spy = root.join("spy");
    std::fs::create_dir_all(&spy).unwrap();
    let argv_log = root.join("qemu-img.argv");
    std::fs::write(
        spy.join("qemu-img"),
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {}\nexec {} \"$@\"\n",
            argv_log.display(),
            qemu_img.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(spy.join("qemu-img"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let started = std::time::Instant::now();
    let out = ok(&Command::new(MV)
        .arg("--root")
        .arg(root)
        .args(["up", "--start", "--no-provision", "--no-wait"])
        .env_remove("MULTIVERSE_CONNECT")
        .env("MULTIVERSE_PASSPHRASE", common::PASS)
        .env(
            "PATH",
            format!("{}:{}", spy.display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap());
    eprintln!(
        "up --start (encrypted disk made): {} ms",
        started.elapsed().as_millis()
    );
    // The command line of the QEMU libvirt started (libvirt hands it the secret encrypted).
    let pid = std::fs::read_to_string(format!("/run/libvirt/qemu/{ctl}.pid")).unwrap();
    let qemu_cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
    assert!(
        out.contains(&format!("created         secret   {uuid}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("started         domain   {ctl}")),
        "{out}"
    );
    let c = Connection::open(URI).unwrap();
    assert!(c.domain_is_active(&ctl).unwrap());
    let live = c.xml(ObjectKind::Secret, &uuid, true).unwrap();
    assert!(
        live.contains("ephemeral='yes'") && live.contains("private='yes'"),
        "{live}"
    );
    let disk = root.join("machines").join(&ctl).join("disk.qcow2");
    let info = String::from_utf8(
        Command::new(&qemu_img)
            .args(["info", "-U"])
            .arg(&disk)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(info.contains("encrypted: yes"), "{info}");

    // `backup` files the secret as ours, with no value.
    let bk = root.join("bk");
    ok(&mv(root, &["backup", "--out", bk.to_str().unwrap()]));
    let filed =
        std::fs::read_to_string(bk.join(format!("backups/multiverse/secret/{uuid}.xml"))).unwrap();
    assert!(
        filed.contains(&uuid) && !filed.contains("<value"),
        "{filed}"
    );

    // The words alone, in another tree: export the controller's luks key; its hex opens the disk.
    let other = tempfile::tempdir().unwrap();
    restore_identity(other.path());
    let keys = other.path().join("keys");
    ok(&mv(
        other.path(),
        &[
            "identity",
            "export",
            &ctl,
            "--kind",
            "luks",
            "--out",
            keys.to_str().unwrap(),
        ],
    ));
    let key = std::fs::read(keys.join("luks.key")).unwrap();
    assert_eq!(key.len(), 64);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let pass_file = other.path().join("pass");
    std::fs::write(&pass_file, &hex).unwrap();
    // The passphrase was on no command line: not qemu-img's (a key file in /dev/shm, gone after
    // it ran), not QEMU's.
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(
        argv.contains("create -q --object secret,id=mvkey0,format=raw,file=/dev/shm/.mv-disk-key-"),
        "{argv}"
    );
    assert!(!argv.contains(&hex) && !argv.contains(&hex[..32]), "{argv}");
    for line in argv.lines().filter(|l| l.contains("--object")) {
        let file = line
            .split("file=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        assert!(!Path::new(file).exists(), "{file} left behind");
    }
    assert!(!qemu_cmdline.is_empty());
    assert!(
        !String::from_utf8_lossy(&qemu_cmdline).contains(&hex[..32]),
        "the passphrase on QEMU's command line"
    );
    let open = |pass: &Path| {
        Command::new(&qemu_img)
            .arg("check")
            .arg("-U")
            .arg("--object")
            .arg(format!("secret,id=k,format=raw,file={}", pass.display()))
            .arg("--image-opts")
            .arg(format!(
                "driver=qcow2,file.filename={},encrypt.key-secret=k",
                disk.display()
            ))
            .output()
            .unwrap()
    };
    let o = open(&pass_file);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let wrong = other.path().join("wrong");
    std::fs::write(&wrong, hex.replace(&hex[..2], "00")).unwrap();
    let o = open(&wrong);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Invalid password"),
        "{o:?}"
    );

    // The kill switch's first step: with the secret undefined, libvirt refuses to start it.
    c.destroy_domain(&ctl).unwrap();
    mv_testkit::run_ok(Command::new(&virsh).args(["-c", URI, "secret-undefine", &uuid]));
    let o = Command::new(&virsh)
        .args(["-c", URI, "start", &ctl])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Secret not found"), "{err}");
    assert!(!c.domain_is_active(&ctl).unwrap());

    // Unlocked again: `up` defines and sets the secret, the machine starts.
    let out = ok(&mv(root, &["up", "--start", "--no-provision", "--no-wait"]));
    assert!(
        out.contains(&format!("created         secret   {uuid}")),
        "{out}"
    );
    assert!(c.domain_is_active(&ctl).unwrap());

    // A rotation while it runs: QEMU holds the disk (and its open volume key), so the keyslot
    // changes at the next `up --start`, before the machine starts, and the machine starts with
    // the new epoch's key. (It has no agent: the rotation says it still runs with the old keys.)
    let rotated = mv(root, &["identity", "rotate", &ctl]);
    let said = common::printed(&rotated);
    assert!(rotated.status.success(), "{said}");
    assert!(
        said.contains(&format!("in use by the running {ctl}"))
            && said.contains("next `multiverse up --start`"),
        "{said}"
    );
    assert!(
        said.contains(&format!("warning: {ctl} runs with the old keys")),
        "{said}"
    );
    assert!(
        open(&pass_file).status.success(),
        "the running disk is untouched"
    );
    c.destroy_domain(&ctl).unwrap();
    let out = ok(&mv(root, &["up", "--start", "--no-provision", "--no-wait"]));
    assert!(
        out.contains("new LUKS key added") && out.contains("old LUKS keyslot removed"),
        "{out}"
    );
    assert!(c.domain_is_active(&ctl).unwrap(), "started on the new key");
    assert!(
        !open(&pass_file).status.success(),
        "the old key still opens it"
    );
    let new_keys = root.join("new-keys");
    ok(&mv(
        root,
        &[
            "identity",
            "export",
            &ctl,
            "--kind",
            "luks",
            "--out",
            new_keys.to_str().unwrap(),
        ],
    ));
    let new_hex: String = std::fs::read(new_keys.join("luks.key"))
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_ne!(new_hex, hex);
    let new_pass = root.join("new-pass");
    std::fs::write(&new_pass, &new_hex).unwrap();
    assert!(
        open(&new_pass).status.success(),
        "the new epoch's key opens it"
    );
    assert!(
        !root
            .join("machines")
            .join(&ctl)
            .join("luks-rekey-pending")
            .exists(),
        "the pending re-key is done"
    );
    let again = ok(&mv(root, &["up", "--start", "--no-provision", "--no-wait"]));
    assert!(!again.contains("LUKS"), "re-keyed once: {again}");
    c.destroy_domain(&ctl).unwrap();

    // Without the identity, `up` cannot key the disk: one clear error, nothing changed.
    std::fs::rename(root.join("identity"), root.join("identity.away")).unwrap();
    let o = mv(root, &["up"]);
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("identity"), "{err}");
}
