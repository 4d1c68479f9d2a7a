//! `host check` and `vfio bind` on fixture sysfs/procfs trees shaped like the kernel's.
#![allow(clippy::unwrap_used)]

use mv_host::{check, Level, Roots};
use std::path::Path;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(cpu: &str, cmdline: &str, interrupt_remap: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("proc");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("cpuinfo"),
            format!("processor\t: 0\nvendor_id\t: {cpu}\n"),
        )
        .unwrap();
        std::fs::write(p.join("cmdline"), format!("{cmdline}\n")).unwrap();
        let chip = if interrupt_remap {
            "IR-PCI-MSI"
        } else {
            "PCI-MSI"
        };
        std::fs::write(
            p.join("interrupts"),
            format!("           CPU0\n 24:          5  {chip} 327680-edge      xhci_hcd\n"),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("sys/kernel/iommu_groups")).unwrap();
        std::fs::create_dir_all(dir.path().join("sys/bus/pci/devices")).unwrap();
        Fixture { dir }
    }

    fn sys(&self) -> std::path::PathBuf {
        self.dir.path().join("sys")
    }

    fn roots(&self) -> Roots {
        Roots {
            sys: self.sys(),
            proc_root: self.dir.path().join("proc"),
        }
    }

    fn pci(&self, addr: &str, id: &str, class: &str, driver: Option<&str>, group: Option<u32>) {
        mv_testkit::fixture_pci_device(&self.sys(), addr, id, class, driver, group);
    }
}

fn codes(r: &mv_host::Report) -> Vec<(&'static str, Level)> {
    r.findings.iter().map(|f| (f.code, f.level)).collect()
}

#[test]
fn iommu_off_is_an_error_with_the_vendor_s_fix() {
    let f = Fixture::new(
        "GenuineIntel",
        "BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet",
        false,
    );
    f.pci(
        "0000:01:00.0",
        "10de:1b80",
        "0x030000",
        Some("nouveau"),
        None,
    );
    let r = check(&f.roots(), &["0000:01:00.0".into()]);
    assert_eq!(r.cpu, "intel");
    assert_eq!(r.worst(), Level::Error);
    let c = codes(&r);
    assert_eq!(c[0], ("iommu-off", Level::Error));
    assert!(c.contains(&("cmdline-iommu", Level::Warn)), "{c:?}");
    assert!(c.contains(&("not-bound", Level::Warn)), "{c:?}");
    let off = &r.findings[0];
    assert!(off
        .fix
        .as_deref()
        .unwrap()
        .contains("intel_iommu=on iommu=pt"));
}

#[test]
fn a_group_shared_with_a_host_device_is_named() {
    let f = Fixture::new("AuthenticAMD", "root=/dev/sda1 amd_iommu=on iommu=pt", true);
    f.pci(
        "0000:00:01.0",
        "1022:1453",
        "0x060400",
        Some("pcieport"),
        Some(1),
    );
    f.pci(
        "0000:01:00.0",
        "10de:1b80",
        "0x030000",
        Some("nouveau"),
        Some(1),
    );
    f.pci(
        "0000:01:00.1",
        "10de:10f0",
        "0x040300",
        Some("snd_hda_intel"),
        Some(1),
    );
    f.pci(
        "0000:02:00.0",
        "1022:43ba",
        "0x0c0330",
        Some("xhci_hcd"),
        Some(1),
    );
    f.pci(
        "0000:03:00.0",
        "8086:1539",
        "0x020000",
        Some("igb"),
        Some(2),
    );
    let r = check(&f.roots(), &["0000:01:00.0".into(), "0000:01:00.1".into()]);
    assert_eq!(r.groups.len(), 2);
    assert_eq!(r.groups[&1].len(), 4);
    let shared: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.code == "group-shared")
        .collect();
    assert_eq!(shared.len(), 1, "{:?}", r.findings);
    assert_eq!(
        shared[0].message,
        "IOMMU group 1 of 0000:01:00.0 also holds 0000:02:00.0 (1022:43ba, xhci_hcd): a group goes to a VM whole"
    );
    let c = codes(&r);
    assert!(c.contains(&("irq-remap", Level::Ok)));
    assert!(c.contains(&("iommu-on", Level::Ok)));
    assert!(!c
        .iter()
        .any(|(code, _)| *code == "cmdline-iommu" || *code == "cmdline-pt"));
}

#[test]
fn devices_already_bound_are_reported_and_their_groups_checked() {
    let f = Fixture::new("GenuineIntel", "intel_iommu=on iommu=pt", false);
    std::fs::create_dir_all(f.sys().join("module/vfio_pci")).unwrap();
    f.pci(
        "0000:01:00.0",
        "10de:1b80",
        "0x030000",
        Some("vfio-pci"),
        Some(13),
    );
    f.pci(
        "0000:01:00.1",
        "10de:10f0",
        "0x040300",
        Some("vfio-pci"),
        Some(13),
    );
    let r = check(&f.roots(), &[]);
    let c = codes(&r);
    assert_eq!(
        c.iter().filter(|(code, _)| *code == "bound").count(),
        2,
        "{c:?}"
    );
    assert!(!c.iter().any(|(code, _)| *code == "group-shared"));
    // No IR- chips here: interrupt remapping off is an error even with everything bound.
    assert_eq!(c[0], ("irq-remap-off", Level::Error));
}

#[test]
fn vfio_bind_plans_writes_and_is_idempotent() {
    let f = Fixture::new("GenuineIntel", "intel_iommu=on", true);
    f.pci(
        "0000:01:00.0",
        "10de:1b80",
        "0x030000",
        Some("nouveau"),
        Some(1),
    );
    let etc = f.dir.path().join("etc");
    let addr = "0000:01:00.0".parse().unwrap();
    let plan = mv_host::vfio_plan(&f.sys(), &etc, addr).unwrap();
    let dev = f.sys().join("bus/pci/devices/0000:01:00.0");
    assert_eq!(
        plan.writes,
        vec![
            (dev.join("driver_override"), "vfio-pci".to_string()),
            (dev.join("driver/unbind"), "0000:01:00.0".to_string()),
            (
                f.sys().join("bus/pci/drivers_probe"),
                "0000:01:00.0".to_string()
            ),
        ]
    );
    assert!(plan.config_changes);
    assert!(plan.write_config().unwrap());
    let again = mv_host::vfio_plan(&f.sys(), &etc, addr).unwrap();
    assert!(!again.config_changes);
    assert!(!again.write_config().unwrap());
    assert_eq!(
        std::fs::read_to_string(etc.join("modprobe.d/multiverse-vfio.conf")).unwrap(),
        "# Devices for passthrough (generated by `multiverse host vfio bind`).\noptions vfio-pci ids=10de:1b80\nsoftdep nouveau pre: vfio-pci\n"
    );
    assert!(mv_host::vfio_plan(&f.sys(), &etc, "0000:09:00.0".parse().unwrap()).is_err());
    let _ = Path::new("");
}

/// A host whose KVM cannot boot a stock guest is named, with the TCG fix: PVM (this development
/// machine's `kvm_pvm`), a KVM device without vmx/svm, no KVM at all; a KVM with VT-x is fine.
#[test]
fn kvm_that_cannot_boot_stock_guests_points_at_tcg() {
    use mv_host::{kvm, Kvm};
    let f = Fixture::new("AuthenticAMD", "root=/dev/vda", false);
    assert_eq!(kvm(&f.roots()), Kvm::Absent);
    let r = check(&f.roots(), &[]);
    let absent = r.findings.iter().find(|x| x.code == "kvm-absent").unwrap();
    assert_eq!(absent.level, Level::Warn);

    std::fs::create_dir_all(f.sys().join("class/misc/kvm")).unwrap();
    assert_eq!(kvm(&f.roots()), Kvm::NoVirtFlags);
    let cpuinfo = f.dir.path().join("proc/cpuinfo");
    std::fs::write(
        &cpuinfo,
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme de pse svm lm\n",
    )
    .unwrap();
    assert_eq!(kvm(&f.roots()), Kvm::Usable);
    assert!(kvm(&f.roots()).boots_stock_guests());
    let r = check(&f.roots(), &[]);
    assert!(codes(&r).contains(&("kvm", Level::Ok)), "{:?}", codes(&r));

    // PVM: the module is there, whatever the flags say.
    std::fs::create_dir_all(f.sys().join("module/kvm_pvm")).unwrap();
    assert_eq!(kvm(&f.roots()), Kvm::Pvm);
    assert!(!kvm(&f.roots()).boots_stock_guests());
    let r = check(&f.roots(), &[]);
    let pvm = r.findings.iter().find(|x| x.code == "kvm-pvm").unwrap();
    assert_eq!(pvm.level, Level::Warn);
    assert!(pvm.message.contains("kvm_pvm"), "{}", pvm.message);
    assert!(
        pvm.fix.as_deref().unwrap().contains("accel = \"tcg\""),
        "{:?}",
        pvm.fix
    );
}

/// The kill switch's memory step relies on `init_on_free=1`: its absence is a warning with the
/// fix, its presence says nothing.
#[test]
fn a_missing_init_on_free_is_a_warning() {
    let f = Fixture::new(
        "GenuineIntel",
        "root=/dev/sda1 intel_iommu=on iommu=pt",
        true,
    );
    let r = check(&f.roots(), &[]);
    let w = r
        .findings
        .iter()
        .find(|x| x.code == "init-on-free")
        .unwrap();
    assert_eq!(w.level, Level::Warn);
    assert!(w.message.contains("no init_on_free=1"), "{}", w.message);
    assert!(w.fix.as_deref().unwrap().contains("init_on_free=1"));
    let f = Fixture::new(
        "GenuineIntel",
        "root=/dev/sda1 intel_iommu=on iommu=pt init_on_free=1",
        true,
    );
    let r = check(&f.roots(), &[]);
    assert!(!codes(&r).iter().any(|(c, _)| *c == "init-on-free"));
}
