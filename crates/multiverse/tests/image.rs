//! `multiverse image build`: bad input (exit 2, one line, nothing written), a failing step (exit 1,
//! one line naming it, nothing left in `images/`), and the real Debian image: built once into the
//! tests' cache (`common::cached_debian_image`), then booted under QEMU TCG directly (q35,
//! SeaBIOS, virtio disk, as `multiverse render` makes a router, service or application domain)
//! until its serial console shows the login prompt, with `systemd-analyze` printed by the image's
//! boot-report unit.

// Test helpers (outside #[test] functions) unwrap freely.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tree() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn unknown_os_is_one_line_and_exit_2() {
    let t = tree();
    let err = usage_error(mv(t.path()).args(["image", "build", "plan9"]), None);
    assert!(
        err.contains("unknown OS \"plan9\": image build knows debian and alpine"),
        "{err}"
    );
    assert!(!t.path().join("images").exists());
}

#[test]
fn bad_options_are_exit_2() {
    let t = tree();
    for args in [
        &["--size", "4X"][..],
        &["--size", "100M"],
        &["--arch", "sparc"],
        &["--kernel", "rt"],
        &["--name", "../x"],
        &["--include", "--allow-unauthenticated"],
    ] {
        let err = usage_error(
            mv(t.path()).args(["image", "build", "debian"]).args(args),
            None,
        );
        assert!(!err.is_empty());
    }
    assert!(!t.path().join("images").exists());
}

#[test]
fn an_existing_image_is_kept_without_force() {
    let t = tree();
    let images = t.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("debian.qcow2"), b"good").unwrap();
    let err = usage_error(mv(t.path()).args(["image", "build", "debian"]), None);
    assert!(err.contains("already exists"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(images.join("debian.qcow2")).unwrap(), b"good");
}

#[test]
fn a_failing_step_is_named_and_leaves_nothing() {
    mv_testkit::require_tool("mmdebstrap");
    let t = tree();
    let images = t.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("debian.qcow2"), b"good").unwrap();
    let cache = t.path().join("pkgcache");
    // Nothing listens on port 9 (discard) of loopback: apt cannot fetch anything.
    let out = mv(t.path())
        .args(["image", "build", "debian", "--force", "--mirror"])
        .arg("http://127.0.0.1:9/debian")
        .arg("--cache")
        .arg(&cache)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0]
            .starts_with("multiverse: error: step mmdebstrap (packages into a folder) failed: "),
        "{err}"
    );
    // The good image is untouched and no build folder or manifest is left.
    assert_eq!(names(&images), ["debian.qcow2"]);
    assert_eq!(std::fs::read(images.join("debian.qcow2")).unwrap(), b"good");
}

#[test]
fn dry_run_says_what_it_would_build() {
    let t = tree();
    let out = ok(
        mv(t.path()).args(["--dry-run", "image", "build", "debian", "--size", "2G"]),
        None,
    );
    assert!(
        out.contains("would build debian bookworm (x86_64, cloud kernel, 2048 MiB)"),
        "{out}"
    );
    assert!(!t.path().join("images").exists());
}

/// Boots `image` (never written: snapshot=on) and returns the serial log once `marker` shows, or
/// panics after `timeout` with the log's tail.
fn boot_until(image: &Path, log: &Path, markers: &[&str], timeout: Duration) -> (String, Vec<f64>) {
    mv_testkit::require_tool("qemu-system-x86_64");
    let mut child = KillOnDrop(
        Command::new("qemu-system-x86_64")
            .args([
                "-accel", "tcg", "-cpu", "max", "-m", "512", "-machine", "q35",
            ])
            .args(["-nographic", "-monitor", "none", "-no-reboot"])
            .arg("-drive")
            .arg(format!(
                "file={},if=none,id=root,format=qcow2,snapshot=on",
                image.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=root"])
            .args(["-fw_cfg", "name=opt/org.multiverse-os/boot-report,string=1"])
            .arg("-serial")
            .arg(format!("file:{}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let text = std::fs::read(log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        while seen.len() < markers.len() && text.contains(markers[seen.len()]) {
            seen.push(start.elapsed().as_secs_f64());
        }
        if seen.len() == markers.len() {
            return (text, seen);
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            let mut e = String::new();
            let _ = child.0.stderr.take().unwrap().read_to_string(&mut e);
            panic!(
                "qemu exited ({status}): {e}\nserial log tail:\n{}",
                tail(&text)
            );
        }
        assert!(
            start.elapsed() < timeout,
            "no {:?} on the serial console within {timeout:?}; tail:\n{}",
            markers[seen.len()],
            tail(&text)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn debian_image_boots_to_a_login_prompt_under_tcg() {
    let image = cached_debian_image();
    let manifest: mv_image::Manifest = serde_json::from_str(
        &std::fs::read_to_string(image.with_file_name("debian.manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest.sha256,
        mv_core::fsutil::sha256_file(&image).unwrap()
    );
    assert_eq!(manifest.release, "bookworm");
    for p in [
        "linux-image-cloud-amd64",
        "systemd-sysv",
        "openssh-server",
        "nftables",
        "dnsmasq",
        "tor",
        "wireguard-tools",
    ] {
        assert!(
            manifest.packages.contains_key(p),
            "{p} missing from the manifest"
        );
    }
    let t = tree();
    let log = t.path().join("serial.log");
    let (text, times) = boot_until(
        &image,
        &log,
        &["login:", "multiverse-boot-report: end"],
        Duration::from_secs(180),
    );
    eprintln!(
        "debian image: login prompt after {:.1} s under TCG, boot report after {:.1} s",
        times[0], times[1]
    );
    if let (Some(a), Some(b)) = (
        text.find("multiverse-boot-report: begin"),
        text.find("multiverse-boot-report: end"),
    ) {
        eprintln!("{}", &text[a..b]);
    }
    // No unit failed on a bare boot (no seed disk, no provisioning).
    assert!(!text.contains("[FAILED]"), "{}", tail(&text));
}

/// The lab topology provisions offline: every package the recipes of its VMs ask for is in the
/// Debian image (its bootable minimum or its default include list), so no seed needs a mirror.
/// (The controller's recipe once asked for tmux, gnupg, pass and openssh-client, which the image
/// lacked: its seed failed at first boot.)
#[test]
fn every_package_the_lab_machines_need_is_in_the_debian_image() {
    use mv_machines::{lab_toml, Accel, Arch, Topology};
    let topology = Topology::parse(
        &lab_toml(Arch::X86_64, Accel::Tcg),
        std::path::Path::new("multiverse.toml"),
    )
    .unwrap();
    let engine = mv_provision::Engine::embedded();
    let d = tempfile::tempdir().unwrap();
    // The bootable minimum, the kernel and the default include list.
    let image_packages = mv_image::debian_packages(&mv_image::BuildOptions::new(
        mv_image::Os::Debian,
        std::path::Path::new("images"),
    ));
    let in_image = |p: &str| image_packages.iter().any(|q| q == p);
    let mut checked = 0;
    let mut openvpn_checked = false;
    let ovpn_files = tempfile::tempdir().unwrap();
    for m in topology.machines.iter().filter(|m| m.is_vm()) {
        if m.router.as_ref().and_then(|r| r.vpn).is_some() {
            let vpn = mv_provision::vpn_file(d.path(), &m.name);
            mv_testkit::write_vpn_settings(
                &vpn,
                "192.0.2.1",
                "10.64.0.2/32",
                "bGFiIHBsYWNlaG9sZGVyIHBlZXIga2V5IDMyIGJ5dGU=",
                mv_testkit::TEST_WIREGUARD_KEY,
            );
        }
        let spec = mv_provision::spec_for(&topology, &m.name, d.path()).unwrap();
        // A galaxy router is checked with each VPN: switching to OpenVPN needs no mirror either.
        let mut specs = vec![spec.clone()];
        if let Some(v) = &spec.vpn {
            let ovpn = ovpn_files.path().join("vpn.toml");
            mv_testkit::openvpn::write_openvpn_settings(
                &ovpn,
                &mv_testkit::openvpn::Settings {
                    endpoint: "192.0.2.1",
                    port: 1194,
                    address: "10.64.0.2/24",
                    ca_pem: mv_testkit::openvpn::TEST_CA_PEM,
                    user: "user",
                    password: "password",
                    tls_crypt: None,
                },
            );
            let mut o = spec.clone();
            o.vpn = Some(mv_provision::VpnOptions {
                kind: mv_provision::VpnKind::Openvpn,
                port: 1194,
                peer_public_key: None,
                private_key_file: None,
                ca_file: Some(ovpn_files.path().join("ca.crt")),
                credentials_file: Some(ovpn_files.path().join("credentials")),
                tls_crypt_file: None,
                ..v.clone()
            });
            specs.push(o);
        }
        for spec in specs {
            let packages = mv_provision::recipe_packages(&spec, &engine).unwrap();
            if spec.vpn.as_ref().map(|v| v.kind) == Some(mv_provision::VpnKind::Openvpn) {
                assert!(packages.contains(&"openvpn".to_string()));
                openvpn_checked = true;
            }
            for p in packages.iter().chain(&spec.extra_packages) {
                assert!(
                    in_image(p),
                    "{} ({:?}): package {p} is not in the Debian image",
                    m.name,
                    spec.vpn.as_ref().map(|v| v.kind)
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 10, "{checked}");
    assert!(openvpn_checked, "galaxy on OpenVPN was checked");
}
