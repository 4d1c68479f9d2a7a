//! Genesis, end to end, as a person runs it: a tree from `multiverse init --lab`, an identity
//! restored from the spec's words, the Debian base image from `multiverse image build debian`
//! (cached in `MULTIVERSE_TEST_CACHE`), then `multiverse up --start` on the star router, a service
//! VM and an application VM through a real libvirtd (its own network namespace:
//! `scripts/lab-libvirtd.sh`) under QEMU TCG, each guest provisioned from its seed disk at first
//! boot. Checked through the real virtio-serial channels: each agent answers as its FQDN with
//! exactly the derived SSH host key; `down` stops every guest by ACPI; a second `up --start`
//! boots the same disks without provisioning them again.
//!
//! One test function (one boot of the three guests) because each boot costs tens of seconds
//! under TCG; the steps are in the order a person takes them.
#![allow(clippy::unwrap_used)]

mod common;

use common::{mv, output, FAST, SPEC_WORDS};
use std::path::{Path, PathBuf};
use std::process::Command;

const STAR: &str = "star.router.multiverse";
const SERVICE: &str = "mail.service.multiverse";
const APP: &str = "browser.app.multiverse";

/// A libvirtd in its own mount and network namespace, stopped (with its guests) on drop.
struct Lab {
    dir: PathBuf,
    uri: String,
}

fn lab_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lab-libvirtd.sh")
}

impl Lab {
    fn start(dir: &Path) -> Lab {
        let out = Command::new("bash")
            .arg(lab_script())
            .arg(dir)
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lab libvirtd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Lab {
            dir: dir.to_path_buf(),
            uri: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(lab_script())
            .arg(&self.dir)
            .arg("stop")
            .status();
    }
}

/// `multiverse` on the lab's libvirtd, under TCG.
fn mvl(root: &Path, lab: &Lab, args: &[&str]) -> Command {
    let mut c = mv(root);
    c.args(args)
        .env("MULTIVERSE_CONNECT", &lab.uri)
        .env("MULTIVERSE_ACCEL", "tcg");
    c
}

fn ok(cmd: &mut Command) -> String {
    common::ok(cmd, None)
}

fn status_json(root: &Path, lab: &Lab) -> Vec<serde_json::Value> {
    let text = ok(&mut mvl(root, lab, &["--json", "status", STAR, SERVICE, APP]));
    serde_json::from_str::<Vec<serde_json::Value>>(&text).unwrap()
}

#[test]
fn up_start_boots_provisioned_guests_whose_agents_answer_as_themselves() {
    for tool in ["libvirtd", "virtlogd", "qemu-system-x86_64", "mke2fs", "unshare"] {
        mv_testkit::require_tool(tool);
    }
    let image = common::cached_debian_image();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    let lab = Lab::start(&tmp.path().join("lab"));

    // The person's path: init (lab topology: Debian everywhere, no passthrough), identity.
    ok(mv(&root).args(["init", "--lab"]).env("MULTIVERSE_ACCEL", "tcg"));
    let mut restore = mv(&root);
    restore.args(["identity", "restore"]).args(FAST);
    common::ok(&mut restore, Some(SPEC_WORDS));
    std::fs::create_dir_all(root.join("images")).unwrap();
    std::os::unix::fs::symlink(&image, root.join("images/debian.qcow2")).unwrap();

    // First up: three seeds written, three guests booted in order, each agent answering.
    let first = ok(&mut mvl(
        &root,
        &lab,
        &["up", "--start", "--timeout", "420", STAR, SERVICE, APP],
    ));
    for m in [STAR, SERVICE, APP] {
        assert!(first.contains(&format!("seeded          disk     {m}")), "{first}");
        let seed = root.join("machines").join(m).join("seed.img");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&seed).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{}", seed.display());
    }
    let pos = |m: &str| first.find(&format!("started         domain   {m}")).unwrap();
    assert!(pos(STAR) < pos(SERVICE) && pos(SERVICE) < pos(APP), "{first}");

    // Every agent answers over virtio-serial, as its own FQDN, with the derived host key.
    for s in status_json(&root, &lab) {
        let name = s["name"].as_str().unwrap();
        assert_eq!(s["state"], "running", "{s}");
        assert_eq!(s["agent"]["reachable"], true, "{s}");
        assert_eq!(s["agent"]["hostname"], name, "{s}");
        assert_eq!(s["agent"]["host_key_matches"], true, "{s}");
    }
    let console = std::fs::read_to_string(root.join("machines").join(STAR).join("console.log"))
        .unwrap_or_default();
    assert!(console.contains("multiverse-seed: seed"), "{console}");

    // Down: ACPI only, in reverse order; nothing powered off.
    let down = ok(&mut mvl(&root, &lab, &["down", "--timeout", "180", STAR, SERVICE, APP]));
    assert!(!down.contains("powered off"), "{down}");
    for m in [STAR, SERVICE, APP] {
        assert!(down.contains(&format!("shut down       domain   {m}")), "{down}");
    }

    // Second up: the same disks, no new seed, and the guest skips provisioning.
    let second = ok(&mut mvl(
        &root,
        &lab,
        &["up", "--start", "--timeout", "420", STAR, SERVICE],
    ));
    assert!(!second.contains("seeded"), "{second}");
    let console = std::fs::read_to_string(root.join("machines").join(STAR).join("console.log"))
        .unwrap_or_default();
    assert!(console.contains("already applied"), "{console}");
    for s in status_json(&root, &lab).iter().take(2) {
        assert_eq!(s["agent"]["hostname"], s["name"], "{s}");
    }
    let out = output(&mut mvl(&root, &lab, &["down", "--timeout", "180"]), None);
    assert!(out.status.success(), "{out:?}");
}
