//! `multiverse host` driven through the real binary on fixture sysfs/procfs trees.
#![allow(clippy::unwrap_used)]

mod common;

use common::MV;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn run(root: &Path, args: &[&str]) -> Output {
    Command::new(MV)
        .env_remove("MULTIVERSE_ROOT")
        .arg("--root")
        .arg(root.join("tree"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A host tree: /proc files and PCI devices with drivers and IOMMU groups, shaped like sysfs.
fn host(d: &Path, cmdline: &str, ir: bool, devices: &[(&str, &str, &str, &str, Option<u32>)]) {
    let p = d.join("proc");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("cpuinfo"), "vendor_id\t: GenuineIntel\n").unwrap();
    std::fs::write(p.join("cmdline"), format!("{cmdline}\n")).unwrap();
    let chip = if ir { "IR-PCI-MSI" } else { "PCI-MSI" };
    std::fs::write(
        p.join("interrupts"),
        format!(" 24: 5 {chip} 327680-edge xhci_hcd\n"),
    )
    .unwrap();
    let sys = d.join("sys");
    std::fs::create_dir_all(sys.join("kernel/iommu_groups")).unwrap();
    std::fs::create_dir_all(sys.join("bus/pci/devices")).unwrap();
    std::fs::create_dir_all(sys.join("module/vfio_pci")).unwrap();
    for (addr, id, class, driver, group) in devices {
        mv_testkit::fixture_pci_device(&sys, addr, id, class, Some(driver), *group);
        // The fixture's unbind file, so a bind --now has somewhere to write.
        std::fs::write(sys.join("bus/pci/drivers").join(driver).join("unbind"), "").unwrap();
    }
}

fn roots(d: &Path) -> (String, String) {
    (
        d.join("sys").display().to_string(),
        d.join("proc").display().to_string(),
    )
}

#[test]
fn check_fails_on_iommu_off_and_passes_on_a_ready_host() {
    let d = tempfile::tempdir().unwrap();
    let off = d.path().join("off");
    host(
        &off,
        "root=/dev/sda1 quiet",
        false,
        &[("0000:01:00.0", "10de:1b80", "0x030000", "nouveau", None)],
    );
    let (sys, proc_) = roots(&off);
    let o = run(
        d.path(),
        &[
            "host", "check", "--sys", &sys, "--proc", &proc_, "--device", "01:00.0",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let text = out(&o);
    assert!(text.starts_with("ERROR IOMMU is off"), "{text}");
    assert!(
        text.contains(
            "fix: enable VT-d/AMD-Vi in the firmware setup and add `intel_iommu=on iommu=pt`"
        ),
        "{text}"
    );
    assert!(
        text.contains("warn  0000:01:00.0 (10de:1b80) is bound to nouveau, not vfio-pci"),
        "{text}"
    );

    let o = run(
        d.path(),
        &["--json", "host", "check", "--sys", &sys, "--proc", &proc_],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["cpu"], "intel");
    assert_eq!(v["findings"][0]["code"], "iommu-off");
    assert_eq!(v["findings"][0]["level"], "error");

    let ready = d.path().join("ready");
    host(
        &ready,
        "root=/dev/sda1 intel_iommu=on iommu=pt",
        true,
        &[
            ("0000:01:00.0", "10de:1b80", "0x030000", "vfio-pci", Some(1)),
            ("0000:01:00.1", "10de:10f0", "0x040300", "vfio-pci", Some(1)),
            ("0000:00:14.0", "8086:a36d", "0x0c0330", "xhci_hcd", Some(2)),
        ],
    );
    let (sys, proc_) = roots(&ready);
    let o = run(
        d.path(),
        &["host", "check", "--sys", &sys, "--proc", &proc_],
    );
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("ok    0000:01:00.0 (10de:1b80) is bound to vfio-pci already"),
        "{}",
        out(&o)
    );

    let bad = run(d.path(), &["host", "check", "--device", "1:0.0"]);
    assert_eq!(bad.status.code(), Some(2), "{}", out(&bad));
}

#[test]
fn check_names_the_device_a_group_is_shared_with() {
    let d = tempfile::tempdir().unwrap();
    host(
        d.path(),
        "intel_iommu=on iommu=pt",
        true,
        &[
            ("0000:00:01.0", "8086:1901", "0x060400", "pcieport", Some(1)),
            ("0000:01:00.0", "10de:1b80", "0x030000", "vfio-pci", Some(1)),
            ("0000:02:00.0", "8086:15b8", "0x020000", "e1000e", Some(1)),
        ],
    );
    let (sys, proc_) = roots(d.path());
    let o = run(
        d.path(),
        &["host", "check", "--sys", &sys, "--proc", &proc_],
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains(
            "ERROR IOMMU group 1 of 0000:01:00.0 also holds 0000:02:00.0 (8086:15b8, e1000e)"
        ),
        "{}",
        out(&o)
    );
}

#[test]
fn vfio_bind_writes_modprobe_config_and_binds_now_idempotently() {
    let d = tempfile::tempdir().unwrap();
    host(
        d.path(),
        "intel_iommu=on",
        true,
        &[("0000:01:00.0", "10de:1b80", "0x030000", "nouveau", Some(1))],
    );
    let (sys, _) = roots(d.path());
    let etc = d.path().join("etc");
    let etc_s = etc.display().to_string();
    let args = [
        "host",
        "vfio",
        "bind",
        "0000:01:00.0",
        "--etc",
        &etc_s,
        "--sys",
        &sys,
        "--now",
    ];
    let mut dry = vec!["--dry-run"];
    dry.extend(args);
    let o = run(d.path(), &dry);
    assert!(o.status.success(), "{}", out(&o));
    let dev: PathBuf = d.path().join("sys/bus/pci/devices/0000:01:00.0");
    assert!(
        out(&o).contains(&format!(
            "would run: echo vfio-pci > {}",
            dev.join("driver_override").display()
        )),
        "{}",
        out(&o)
    );
    assert!(!etc.exists());

    let o = run(d.path(), &args);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(
        std::fs::read_to_string(etc.join("modprobe.d/multiverse-vfio.conf")).unwrap(),
        "# Devices for passthrough (generated by `multiverse host vfio bind`).\noptions vfio-pci ids=10de:1b80\nsoftdep nouveau pre: vfio-pci\n"
    );
    assert_eq!(
        std::fs::read_to_string(dev.join("driver_override")).unwrap(),
        "vfio-pci"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("sys/bus/pci/drivers/nouveau/unbind")).unwrap(),
        "0000:01:00.0"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("sys/bus/pci/drivers_probe")).unwrap(),
        "0000:01:00.0"
    );
    // Again without --now (the last argument).
    let o = run(d.path(), &args[..args.len() - 1]);
    assert!(out(&o).contains("unchanged"), "{}", out(&o));
    let o = run(
        d.path(),
        &[
            "host",
            "vfio",
            "bind",
            "0000:09:00.0",
            "--etc",
            &etc_s,
            "--sys",
            &sys,
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
}

#[test]
fn udev_writes_rules_that_udevadm_accepts_with_the_kill_switch() {
    mv_testkit::require_tool("udevadm");
    let d = tempfile::tempdir().unwrap();
    let rules = d.path().join("rules.d");
    let rules_s = rules.display().to_string();
    // `host udev` for the token 1050:0407:CC01, after `--dry-run` when asked.
    let udev = |dry_run: bool| {
        let mut args = vec![
            "host",
            "udev",
            "--out",
            &rules_s,
            "--token",
            "1050:0407:CC01",
        ];
        if dry_run {
            args.insert(0, "--dry-run");
        }
        run(d.path(), &args)
    };
    let o = udev(true);
    assert!(o.status.success(), "{}", out(&o));
    assert!(!rules.exists());
    let o = udev(false);
    assert!(o.status.success(), "{}", out(&o));
    let host_rules = rules.join("70-multiverse-host.rules");
    let kill = rules.join("85-multiverse-killswitch.rules");
    mv_testkit::golden(
        "crates/mv-host/tests/golden/70-multiverse-host.rules",
        &std::fs::read_to_string(&host_rules).unwrap(),
    );
    assert!(std::fs::read_to_string(&kill)
        .unwrap()
        .contains("ENV{ID_SERIAL_SHORT}==\"CC01\""));
    mv_testkit::assert_udevadm_accepts(&[&host_rules, &kill]);
    let o = udev(false);
    assert_eq!(out(&o).matches("unchanged").count(), 2, "{}", out(&o));
    let o = run(
        d.path(),
        &["host", "udev", "--out", &rules_s, "--group", "Bad Group"],
    );
    assert_eq!(o.status.code(), Some(2));
}
