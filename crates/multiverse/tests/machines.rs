//! Integration tests of `multiverse init`, `render` and `machine ...`, driving the real binary in a
//! fresh temporary tree per test; rendered XML is checked with the real `virt-xml-validate` and
//! defined in a private embedded libvirt (`qemu:///embed`).
#![allow(clippy::unwrap_used)]

mod common;

use common::{success, MV};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mv(root: &Path, args: &[&str]) -> Output {
    Command::new(MV)
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("MULTIVERSE_ROOT")
        .env_remove("MULTIVERSE_ACCEL")
        .output()
        .unwrap()
}

/// [`mv`] with `MULTIVERSE_ACCEL` set.
fn mv_accel(root: &Path, accel: &str, args: &[&str]) -> Output {
    Command::new(MV)
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("MULTIVERSE_ROOT")
        .env("MULTIVERSE_ACCEL", accel)
        .output()
        .unwrap()
}

fn ok(root: &Path, args: &[&str]) -> String {
    success(&mv(root, args))
}

/// Every file and symlink under `root`, relative, sorted, with contents (link targets for links).
fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().to_path_buf();
            if md.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.push((rel, t.into_os_string().into_encoded_bytes()));
            } else if md.is_dir() {
                walk(base, &p, out);
            } else {
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut v = Vec::new();
    walk(root, root, &mut v);
    v.sort();
    v
}

fn xml_files(root: &Path) -> Vec<(PathBuf, &'static str)> {
    snapshot(root)
        .into_iter()
        .filter_map(|(p, _)| {
            let s = p.to_string_lossy();
            let kind = if s.ends_with("domain.xml") {
                "domain"
            } else if s.starts_with("libvirt/networks/") {
                "network"
            } else if s == "libvirt/pool.xml" {
                "storagepool"
            } else {
                return None;
            };
            Some((root.join(&p), kind))
        })
        .collect()
}

#[test]
fn init_render_twice_and_dry_run() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let out = ok(root, &["init", "--dry-run"]);
    assert!(out.contains("would create multiverse.toml"), "{out}");
    assert!(snapshot(root).is_empty(), "--dry-run wrote something");

    let out = ok(root, &["init"]);
    assert!(
        out.contains("created machines/controller.multiverse/domain.xml"),
        "{out}"
    );
    let first = snapshot(root);
    assert!(first
        .iter()
        .any(|(p, _)| p == Path::new("storage/star.router.multiverse.qcow2")));
    assert!(!root.join("identity").exists(), "init creates no identity");

    let out = ok(root, &["render"]);
    assert!(out.contains("nothing changed"), "{out}");
    assert_eq!(snapshot(root), first);

    // init again: identical config, nothing to do.
    let out = ok(root, &["init"]);
    assert!(out.contains("nothing changed"), "{out}");

    // An edited file is refused without --force, replaced with it.
    let cfg = root.join("multiverse.toml");
    let edited = std::fs::read_to_string(&cfg).unwrap() + "\n# mine\n";
    std::fs::write(&cfg, &edited).unwrap();
    let o = mv(root, &["init"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), edited);
    ok(root, &["init", "--force"]);
    assert_ne!(std::fs::read_to_string(&cfg).unwrap(), edited);

    // A change, dry-run first: reported, not written.
    let before = snapshot(root);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("memory_mib = 512", "memory_mib = 640");
    std::fs::write(&cfg, &text).unwrap();
    let before_cfg = snapshot(root);
    let out = ok(root, &["render", "--dry-run"]);
    assert!(
        out.contains("would change machines/mail.service.multiverse/domain.xml"),
        "{out}"
    );
    assert_eq!(snapshot(root), before_cfg);
    assert_ne!(before, before_cfg);
    let out = ok(root, &["render", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let changed: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["change"] == "changed")
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        changed,
        [
            "machines/mail.service.multiverse/machine.toml",
            "machines/mail.service.multiverse/domain.xml"
        ]
    );
}

#[test]
fn rendered_xml_passes_virt_xml_validate_on_both_arches() {
    let tool = mv_testkit::require_tool("virt-xml-validate");
    for arch in ["x86_64", "aarch64"] {
        let d = tempfile::tempdir().unwrap();
        ok(d.path(), &["init", "--arch", arch]);
        let files = xml_files(d.path());
        assert_eq!(files.len(), 6 + 3 + 1, "{files:?}");
        for (f, kind) in files {
            mv_testkit::run_ok(Command::new(&tool).arg(&f).arg(kind));
        }
        let ctl =
            std::fs::read_to_string(d.path().join("machines/controller.multiverse/domain.xml"))
                .unwrap();
        assert!(ctl.contains(&format!("<type arch=\"{arch}\"")), "{ctl}");
    }
}

#[test]
fn x86_domains_are_accepted_by_libvirt() {
    let virsh = mv_testkit::require_tool("virsh");
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    ok(&tree, &["init"]);
    // A private embedded libvirt: defines are real (libvirt's own parser and QEMU capability
    // checks) but touch nothing of the host's libvirtd.
    let uri = format!("qemu:///embed?root={}", d.path().join("libvirt").display());
    let mut script = String::new();
    for (f, kind) in xml_files(&tree) {
        if kind == "domain" {
            script.push_str(&format!("define {};", f.display()));
        }
    }
    let out = mv_testkit::run_ok(Command::new(&virsh).args(["-q", "-c", &uri, &script]));
    let _ = out;
    let names =
        mv_testkit::run_ok(Command::new(&virsh).args(["-c", &uri, "list", "--all", "--name"]));
    let mut names: Vec<&str> = names.lines().filter(|l| !l.is_empty()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "browser.app.multiverse",
            "controller.multiverse",
            "galaxy.router.multiverse",
            "mail.service.multiverse",
            "star.router.multiverse",
            "universe.router.multiverse"
        ]
    );
}

/// Writes `text` as a fresh tree's multiverse.toml, runs `render`, and checks the one-line error
/// `FILE:LINE: ...` naming the line holding `needle` (its last occurrence), exit code 2, and that
/// nothing but the config exists afterwards.
fn bad_config(text: &str, needle: &str, what: &str) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let cfg = root.join("multiverse.toml");
    std::fs::write(&cfg, text).unwrap();
    for args in [&["render"][..], &["machine", "list"][..]] {
        let o = mv(root, args);
        assert_eq!(o.status.code(), Some(2), "{what}: {o:?}");
        let err = String::from_utf8(o.stderr).unwrap();
        let off = text
            .rfind(needle)
            .unwrap_or_else(|| panic!("{what}: needle {needle}"));
        let line = text[..off].matches('\n').count() + 1;
        let want = format!("multiverse: error: {}:{line}: ", cfg.display());
        assert!(
            err.starts_with(&want),
            "{what}: {err} should start with {want}"
        );
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
        assert_eq!(snapshot(root).len(), 1, "{what}: something was written");
    }
}

fn default_text() -> String {
    let d = tempfile::tempdir().unwrap();
    ok(d.path(), &["init", "--dry-run"]);
    // The default is what init writes; get it by writing it.
    ok(d.path(), &["init"]);
    std::fs::read_to_string(d.path().join("multiverse.toml")).unwrap()
}

#[test]
fn bad_input_is_one_line_exit_2_nothing_written() {
    let t = default_text();
    // (text replaced, its replacement, where the error must point, what is wrong)
    let cases = [
        (
            "type = \"service\"",
            "type = \"server\"",
            "type = \"server\"",
            "unknown type",
        ),
        (
            "\"mail.service.multiverse\"",
            "\"Mail.Service\"",
            "\"Mail.Service\"",
            "upper-case fqdn",
        ),
        (
            "\"mail.service.multiverse\"",
            "\"mail\"",
            "\"mail\"",
            "fqdn without a dot",
        ),
        (
            "\"browser.app.multiverse\"",
            "\"mail.service.multiverse\"",
            "name = \"mail.service.multiverse\"",
            "duplicate names",
        ),
        (
            "served_by = \"galaxy.router.multiverse\"",
            "served_by = \"controller.multiverse\"",
            "served_by = \"controller.multiverse\"",
            "network no router serves",
        ),
        (
            "\"0000:03:00.0\"",
            "\"0000:3g:00.0\"",
            "\"0000:3g:00.0\"",
            "malformed PCI address",
        ),
        (
            "\"0000:00:14.0\"",
            "\"0000:03:00.0\"",
            "pci = [\"0000:01:00.0\"",
            "PCI device claimed twice",
        ),
        (
            "gpu = true",
            "gpu = true\nwallpaper = \"stars\"",
            "wallpaper",
            "unknown field",
        ),
    ];
    for (from, to, needle, what) in cases {
        bad_config(&t.replace(from, to), needle, what);
    }
}

#[test]
fn template_with_undefined_variable_is_refused_before_writing() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    ok(root, &["init"]);
    let before = snapshot(root);
    let t = root.join("templates/domain-service.xml.j2");
    std::fs::create_dir_all(t.parent().unwrap()).unwrap();
    std::fs::write(&t, "{% extends \"domain.xml.j2\" %}\n{% block display %}\n    <!-- {{ machine.wallpaper }} -->\n{% endblock %}\n").unwrap();
    let before_t = snapshot(root);
    assert_ne!(before, before_t);
    // Make a change so the render would write something.
    let cfg = root.join("multiverse.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("memory_mib = 2048", "memory_mib = 3072");
    std::fs::write(&cfg, text).unwrap();
    let snap = snapshot(root);
    let o = mv(root, &["render"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    let first = err.lines().next().unwrap();
    let want = format!(
        "multiverse: error: {}:3: undefined variable `machine.wallpaper`",
        t.display()
    );
    assert!(first.starts_with(&want), "{first}\nwant {want}");
    assert_eq!(snapshot(root), snap, "nothing written");
}

#[test]
fn machine_new_list_show_rm() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    ok(root, &["init"]);
    let cfg = root.join("multiverse.toml");
    let orig = std::fs::read_to_string(&cfg).unwrap();
    // `machine new vault.service.multiverse --type service --memory <memory>`, then `extra`.
    let vault = |memory: &str, extra: &[&str]| {
        let mut args = vec![
            "machine",
            "new",
            "vault.service.multiverse",
            "--type",
            "service",
            "--memory",
            memory,
        ];
        args.extend(extra);
        mv(root, &args)
    };

    let out = success(&vault("768", &["--dry-run"]));
    assert!(out.contains("name = \"vault.service.multiverse\""), "{out}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), orig);

    success(&vault("768", &[]));
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.starts_with(orig.trim_end()), "comments and order kept");
    let out = success(&vault("768", &[]));
    assert!(out.contains("nothing changed"), "{out}");
    let o = vault("1024", &[]);
    assert_eq!(o.status.code(), Some(2));

    let o = mv(root, &["machine", "new", "Vault", "--type", "service"]);
    assert_eq!(o.status.code(), Some(2));
    let o = mv(
        root,
        &[
            "machine",
            "new",
            "moon.router.multiverse",
            "--type",
            "router",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "router without role");
    let o = mv(
        root,
        &[
            "machine",
            "new",
            "x.multiverse",
            "--type",
            "service",
            "--network",
            "net7",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "unknown network");
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("net7"), "{err}");
    ok(
        root,
        &[
            "machine",
            "new",
            "arm.app.multiverse",
            "--type",
            "application",
            "--arch",
            "aarch64",
            "--os",
            "alpine",
            "--vcpus",
            "3",
            "--autostart",
            "9",
        ],
    );

    let v: serde_json::Value =
        serde_json::from_str(&ok(root, &["machine", "list", "--json"])).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 9);
    assert_eq!(names[0], "host.multiverse");
    assert!(names.contains(&"vault.service.multiverse"));

    let v: serde_json::Value = serde_json::from_str(&ok(
        root,
        &["machine", "show", "arm.app.multiverse", "--json"],
    ))
    .unwrap();
    assert_eq!(v["machine"]["arch"], "aarch64");
    assert_eq!(v["machine"]["vcpus"], 3);
    assert_eq!(v["machine"]["networks"][0]["network"], "net2");
    assert!(v["identity"].is_null());
    let human = ok(root, &["machine", "show", "star.router.multiverse"]);
    assert!(human.contains("serves:     net2"), "{human}");
    assert_eq!(
        mv(root, &["machine", "show", "no.such.machine"])
            .status
            .code(),
        Some(2)
    );

    let out = ok(root, &["render"]);
    assert!(
        out.contains("created machines/arm.app.multiverse/domain.xml"),
        "{out}"
    );
    let arm = std::fs::read_to_string(root.join("machines/arm.app.multiverse/domain.xml")).unwrap();
    assert!(
        arm.contains("<domain type=\"qemu\">"),
        "emulated on an x86_64 host"
    );

    // rm: a router still serving a network is refused; a plain machine goes, its folder stays.
    let o = mv(root, &["machine", "rm", "star.router.multiverse"]);
    assert_eq!(o.status.code(), Some(2));
    ok(
        root,
        &["machine", "rm", "vault.service.multiverse", "--dry-run"],
    );
    assert!(std::fs::read_to_string(&cfg)
        .unwrap()
        .contains("vault.service.multiverse"));
    ok(root, &["machine", "rm", "vault.service.multiverse"]);
    ok(root, &["machine", "rm", "arm.app.multiverse"]);
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap().trim_end(),
        orig.trim_end()
    );
    let out = ok(root, &["machine", "rm", "vault.service.multiverse"]);
    assert!(out.contains("nothing changed"), "{out}");
    assert!(root.join("machines/arm.app.multiverse").is_dir());
    let out = ok(root, &["render"]);
    assert!(
        out.contains("note: machines/arm.app.multiverse has no machine"),
        "{out}"
    );
    assert!(
        out.contains("note: storage/arm.app.multiverse.qcow2 has no machine"),
        "{out}"
    );

    // A router together with the network it serves.
    ok(
        root,
        &[
            "machine",
            "new",
            "moon.router.multiverse",
            "--type",
            "router",
            "--role",
            "star",
            "--network",
            "net1",
            "--upstream",
            "net1",
            "--serves",
            "net4",
            "--subnet",
            "10.4.4.0/24",
        ],
    );
    let o = mv(
        root,
        &[
            "machine",
            "new",
            "sun.router.multiverse",
            "--type",
            "router",
            "--role",
            "star",
            "--serves",
            "net5",
            "--subnet",
            "10.5.5.1/24",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "subnet with host bits");
    ok(
        root,
        &[
            "machine",
            "new",
            "moonapp.app.multiverse",
            "--type",
            "application",
            "--network",
            "net4",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&ok(
        root,
        &["machine", "show", "moonapp.app.multiverse", "--json"],
    ))
    .unwrap();
    assert_eq!(v["machine"]["networks"][0]["network"], "net4");
    ok(root, &["machine", "rm", "moonapp.app.multiverse"]);
    // The router serves net4 now: removing it alone is refused.
    assert_eq!(
        mv(root, &["machine", "rm", "moon.router.multiverse"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn machine_show_includes_the_recorded_public_identity() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    ok(root, &["init"]);
    // The public record as mv-identity writes it (identity/public.json); no passphrase involved.
    let rec = serde_json::json!({
        "version": 1,
        "identities": { "star.router.multiverse": {
            "name": "star.router.multiverse",
            "ssh_ed25519": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStarLogin",
            "ssh_ecdsa_p256": "ecdsa-sha2-nistp256 AAAAstar",
            "ssh_host_ed25519": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStarHost",
            "ssh_host_ecdsa_p256": "ecdsa-sha2-nistp256 AAAAhost",
            "onion": "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion",
            "openpgp_fingerprint": "0123456789ABCDEF0123456789ABCDEF01234567"
        }}
    });
    std::fs::create_dir_all(root.join("identity")).unwrap();
    std::fs::write(root.join("identity/public.json"), rec.to_string()).unwrap();
    let human = ok(root, &["machine", "show", "star.router.multiverse"]);
    assert!(
        human
            .contains("onion:      abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion"),
        "{human}"
    );
    assert!(
        human.contains("host key:   ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStarHost"),
        "{human}"
    );
    let v: serde_json::Value = serde_json::from_str(&ok(
        root,
        &["machine", "show", "star.router.multiverse", "--json"],
    ))
    .unwrap();
    assert_eq!(
        v["identity"]["openpgp_fingerprint"],
        "0123456789ABCDEF0123456789ABCDEF01234567"
    );
    // Another machine has none recorded.
    let v: serde_json::Value = serde_json::from_str(&ok(
        root,
        &["machine", "show", "galaxy.router.multiverse", "--json"],
    ))
    .unwrap();
    assert!(v["identity"].is_null());
}

/// `[host] accel = "tcg"` (here through `MULTIVERSE_ACCEL`) makes every domain
/// `<domain type="qemu">` with QEMU's `max` CPU; the XML validates, and libvirt 11 + QEMU 10
/// really start such a domain under TCG (embedded libvirt, the domain's disk swapped for a file
/// and its NICs dropped: the embedded driver has no storage or network driver).
#[test]
fn accel_tcg_domains_validate_and_start_under_tcg() {
    let tool = mv_testkit::require_tool("virt-xml-validate");
    let virsh = mv_testkit::require_tool("virsh");
    let qemu_img = mv_testkit::require_tool("qemu-img");
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    success(&mv_accel(&tree, "tcg", &["init"]));
    for (f, kind) in xml_files(&tree) {
        mv_testkit::run_ok(Command::new(&tool).arg(&f).arg(kind));
        if kind == "domain" {
            let x = std::fs::read_to_string(&f).unwrap();
            assert!(x.contains(r#"<domain type="qemu">"#), "{}", f.display());
            assert!(x.contains(r#"<cpu mode="maximum" check="none"/>"#), "{x}");
            assert!(!x.contains("host-passthrough"), "{x}");
        }
    }
    // The same tree rendered without the override goes back to KVM (the file says kvm).
    ok(&tree, &["render"]);
    let x =
        std::fs::read_to_string(tree.join("machines/mail.service.multiverse/domain.xml")).unwrap();
    assert!(x.contains(r#"<domain type="kvm">"#), "{x}");
    success(&mv_accel(&tree, "tcg", &["render"]));

    // Start one under TCG.
    let x =
        std::fs::read_to_string(tree.join("machines/mail.service.multiverse/domain.xml")).unwrap();
    let disk = d.path().join("mail.qcow2");
    mv_testkit::run_ok(
        Command::new(&qemu_img)
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&disk)
            .arg("16M"),
    );
    let cut = |text: &str, open: &str, close: &str| -> String {
        let mut t = text.to_string();
        while let Some(a) = t.find(open) {
            let b = a + t[a..].find(close).unwrap() + close.len();
            t.replace_range(a..b, "");
        }
        t
    };
    let mut x = cut(&x, "<interface ", "</interface>");
    let a = x.find("<disk ").unwrap();
    let b = a + x[a..].find("</disk>").unwrap() + "</disk>".len();
    x.replace_range(
        a..b,
        &format!(
            r#"<disk type="file" device="disk"><driver name="qemu" type="qcow2"/><source file="{}"/><target dev="vda" bus="virtio"/></disk>"#,
            disk.display()
        ),
    );
    let x = x.replace(
        "/run/multiverse/agent/mail.service.multiverse.sock",
        &d.path().join("agent.sock").display().to_string(),
    );
    let dom = d.path().join("mail.xml");
    std::fs::write(&dom, &x).unwrap();
    let lv = d.path().join("libvirt");
    std::fs::create_dir_all(lv.join("etc")).unwrap();
    // The embedded driver writes QEMU's output to a file (no virtlogd).
    std::fs::write(lv.join("etc/qemu.conf"), "stdio_handler = \"file\"\n").unwrap();
    let uri = format!("qemu:///embed?root={}", lv.display());
    let script = format!(
        "define {}; start mail.service.multiverse; domstate mail.service.multiverse; destroy mail.service.multiverse",
        dom.display()
    );
    let out = mv_testkit::run_ok(Command::new(&virsh).args(["-q", "-c", &uri, &script]));
    assert!(out.contains("running"), "{out}");
    let log = std::fs::read_to_string(lv.join("log/qemu/mail.service.multiverse.log")).unwrap();
    assert!(log.contains("-accel tcg"), "{log}");
    assert!(log.contains("-cpu max"), "{log}");
}

/// A bad `MULTIVERSE_ACCEL` is one line naming the variable, exit 2, and nothing is written; a
/// bad `accel` in the file names its line (like every field).
#[test]
fn bad_accel_is_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let o = mv_accel(d.path(), "xen", &["init"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("MULTIVERSE_ACCEL=\"xen\""), "{err}");
    assert!(err.contains("expected kvm or tcg"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(snapshot(d.path()).is_empty(), "{:?}", snapshot(d.path()));
    bad_config(
        &default_text().replacen("accel = \"kvm\"", "accel = \"xen\"", 1),
        "accel = \"xen\"",
        "unknown accel",
    );
}

/// `init --lab`: every machine Debian, universe on a virtio NIC on the isolated `uplink`, no
/// passthrough anywhere, small memory; the accelerator follows this host's KVM; every XML
/// validates and libvirt defines every domain.
#[test]
fn lab_topology_renders_validates_and_defines() {
    let tool = mv_testkit::require_tool("virt-xml-validate");
    let virsh = mv_testkit::require_tool("virsh");
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    let out = ok(&tree, &["init", "--lab"]);
    let text = std::fs::read_to_string(tree.join("multiverse.toml")).unwrap();
    let kvm = mv_host::kvm(&mv_host::Roots::default());
    if kvm.boots_stock_guests() {
        assert!(text.contains("accel = \"kvm\""), "{text}");
    } else {
        assert!(text.contains("accel = \"tcg\""), "{text}");
        assert!(out.contains("TCG"), "{out}");
    }
    let t = mv_machines::Topology::parse(&text, Path::new("lab.toml")).unwrap();
    for m in &t.machines {
        assert_eq!(m.os, mv_machines::Os::Debian, "{}", m.name);
        assert!(m.pci.is_empty() && m.usb.is_empty() && !m.gpu, "{}", m.name);
        if m.kind == mv_machines::MachineType::Router {
            assert!(m.memory_mib >= 384 && m.memory_mib <= 512, "{}", m.name);
        }
    }
    let uplink = t.network("uplink").unwrap();
    assert!(uplink.served_by.is_none());
    let files = xml_files(&tree);
    assert_eq!(files.len(), 6 + 4 + 1, "{files:?}");
    for (f, kind) in &files {
        mv_testkit::run_ok(Command::new(&tool).arg(f).arg(kind));
    }
    let net = std::fs::read_to_string(tree.join("libvirt/networks/uplink.xml")).unwrap();
    assert!(!net.contains("<ip") && !net.contains("<forward"), "{net}");
    let universe =
        std::fs::read_to_string(tree.join("machines/universe.router.multiverse/domain.xml"))
            .unwrap();
    assert!(
        universe.contains(r#"<source network="uplink"/>"#),
        "{universe}"
    );
    assert!(!universe.contains("<hostdev"), "{universe}");
    assert!(tree
        .join("machines/galaxy.router.multiverse/provision/vpn.toml")
        .is_file());
    let uri = format!("qemu:///embed?root={}", d.path().join("libvirt").display());
    let mut script = String::new();
    for (f, kind) in &files {
        if *kind == "domain" {
            script.push_str(&format!("define {};", f.display()));
        }
    }
    mv_testkit::run_ok(Command::new(&virsh).args(["-q", "-c", &uri, &script]));
    // A second `init --lab` changes nothing.
    let again = ok(&tree, &["init", "--lab"]);
    assert!(again.contains("nothing changed"), "{again}");
}

/// `--root ./tree` is taken against the working directory once, at start: every path that
/// reaches libvirt (the pool over `storage/`, console logs, disks) is absolute, because libvirtd
/// resolves a relative one from its own working directory and cannot find the file.
#[test]
fn a_relative_root_renders_absolute_paths_for_libvirt() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(MV)
        .current_dir(tmp.path())
        .args(["--root", "tree", "init"])
        .env_remove("MULTIVERSE_ROOT")
        .output()
        .unwrap();
    success(&out);
    let pool = std::fs::read_to_string(tmp.path().join("tree/libvirt/pool.xml")).unwrap();
    let want = format!("<path>{}</path>", tmp.path().join("tree/storage").display());
    assert!(pool.contains(&want), "{pool}");
    for (xml, _) in xml_files(&tmp.path().join("tree")) {
        let text = std::fs::read_to_string(&xml).unwrap();
        assert!(
            !text.contains("'tree/") && !text.contains("\"tree/") && !text.contains(">tree/"),
            "{}: {text}",
            xml.display()
        );
    }
}
