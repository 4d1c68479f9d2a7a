//! `host check`: what stands between this host and PCI passthrough, read from /sys and /proc,
//! and whether its KVM can boot a stock guest at all ([`kvm`]).
//!
//! Every path is under a [`Roots`] pair so fixture trees (IOMMU off, shared groups, devices
//! already bound) test each finding. The check never writes. Multiverse's early users had a check
//! pass with VT-d off in the BIOS: here "IOMMU on" means the kernel made IOMMU groups, not that a
//! flag was set.

use crate::pci::{read_device, PciDevice};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where sysfs and procfs are.
#[derive(Debug, Clone)]
pub struct Roots {
    /// sysfs (`/sys`).
    pub sys: PathBuf,
    /// procfs (`/proc`).
    pub proc_root: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            sys: "/sys".into(),
            proc_root: "/proc".into(),
        }
    }
}

/// Severity of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but weaker or surprising.
    Warn,
    /// Passthrough will not work (safely).
    Error,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Severity.
    pub level: Level,
    /// Stable identifier (`iommu-off`, `group-shared`, ...).
    pub code: &'static str,
    /// What was found.
    pub message: String,
    /// What to do, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// CPU vendor from /proc/cpuinfo (`intel`, `amd`, `unknown`).
    pub cpu: String,
    /// The kernel command line.
    pub cmdline: String,
    /// IOMMU groups and their devices.
    pub groups: BTreeMap<u32, Vec<PciDevice>>,
    /// Findings, worst first.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The worst level found.
    pub fn worst(&self) -> Level {
        self.findings
            .iter()
            .map(|f| f.level)
            .max()
            .unwrap_or(Level::Ok)
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn finding(level: Level, code: &'static str, message: String, fix: Option<String>) -> Finding {
    Finding {
        level,
        code,
        message,
        fix,
    }
}

/// What this host's KVM can do, from /sys and /proc/cpuinfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kvm {
    /// `/dev/kvm` with VT-x or AMD-V: guests run under KVM.
    Usable,
    /// No KVM device (`/sys/class/misc/kvm` is missing): guests can only run under TCG.
    Absent,
    /// `/dev/kvm` is PVM (`kvm_pvm`, a KVM for nested guests without hardware virtualisation):
    /// it boots only kernels built as PVM guests, no stock distribution kernel.
    Pvm,
    /// `/dev/kvm` exists but the CPU shows neither `vmx` nor `svm`: another software KVM that
    /// stock guests cannot count on.
    NoVirtFlags,
}

impl Kvm {
    /// Whether a stock guest (Debian's or Alpine's kernel, OVMF) boots under this KVM.
    pub fn boots_stock_guests(self) -> bool {
        self == Kvm::Usable
    }
}

/// Reads what KVM this host has (see [`Kvm`]).
pub fn kvm(roots: &Roots) -> Kvm {
    if std::fs::symlink_metadata(roots.sys.join("class/misc/kvm")).is_err() {
        return Kvm::Absent;
    }
    if std::fs::symlink_metadata(roots.sys.join("module/kvm_pvm")).is_ok() {
        return Kvm::Pvm;
    }
    let cpuinfo = read(&roots.proc_root.join("cpuinfo"));
    let virt = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .flat_map(|l| l.split_whitespace())
        .any(|f| f == "vmx" || f == "svm");
    if virt {
        Kvm::Usable
    } else {
        Kvm::NoVirtFlags
    }
}

fn kvm_finding(k: Kvm) -> Finding {
    let tcg = Some("set [host] accel = \"tcg\" in multiverse.toml (or MULTIVERSE_ACCEL=tcg) and run `multiverse render`: guests then run under QEMU's emulator, slower but bootable".to_string());
    match k {
        Kvm::Usable => finding(
            Level::Ok,
            "kvm",
            "KVM is usable (/dev/kvm with VT-x/AMD-V)".into(),
            None,
        ),
        Kvm::Absent => finding(
            Level::Warn,
            "kvm-absent",
            "no KVM (/dev/kvm is missing): guests cannot run under KVM".into(),
            tcg,
        ),
        Kvm::Pvm => finding(
            Level::Warn,
            "kvm-pvm",
            "KVM cannot boot a stock guest here: /dev/kvm is PVM (kvm_pvm module), which runs only PVM-built guest kernels".into(),
            tcg,
        ),
        Kvm::NoVirtFlags => finding(
            Level::Warn,
            "kvm-no-virt",
            "KVM cannot boot a stock guest here: /dev/kvm exists but the CPU has no vmx/svm flag (a software KVM)".into(),
            tcg,
        ),
    }
}

/// Runs every check; `passthrough` are the devices meant for VMs (besides those already bound
/// to vfio-pci).
pub fn check(roots: &Roots, passthrough: &[String]) -> Report {
    let cpuinfo = read(&roots.proc_root.join("cpuinfo"));
    let cpu = if cpuinfo.contains("GenuineIntel") {
        "intel"
    } else if cpuinfo.contains("AuthenticAMD") {
        "amd"
    } else {
        "unknown"
    };
    let cmdline = read(&roots.proc_root.join("cmdline")).trim().to_string();
    let args: Vec<&str> = cmdline.split_whitespace().collect();
    let mut findings = Vec::new();

    // Groups.
    let mut groups: BTreeMap<u32, Vec<PciDevice>> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(roots.sys.join("kernel/iommu_groups")) {
        for e in entries.flatten() {
            let Ok(id) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let mut devs: Vec<PciDevice> = std::fs::read_dir(e.path().join("devices"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|d| read_device(&roots.sys, &d.file_name().to_string_lossy()))
                .map(|mut d| {
                    d.iommu_group = Some(id);
                    d
                })
                .collect();
            devs.sort_by(|a, b| a.addr.cmp(&b.addr));
            groups.insert(id, devs);
        }
    }

    let iommu_arg = match cpu {
        "intel" => "intel_iommu=on",
        "amd" => "amd_iommu=on",
        _ => "intel_iommu=on or amd_iommu=on",
    };
    if groups.is_empty() {
        findings.push(finding(
            Level::Error,
            "iommu-off",
            "IOMMU is off: the kernel made no IOMMU groups (/sys/kernel/iommu_groups is empty)".into(),
            Some(format!(
                "enable VT-d/AMD-Vi in the firmware setup and add `{iommu_arg} iommu=pt` to the kernel command line"
            )),
        ));
    } else {
        findings.push(finding(
            Level::Ok,
            "iommu-on",
            format!("IOMMU is on: {} groups", groups.len()),
            None,
        ));
    }

    // Command line.
    let has = |prefix: &str| args.iter().any(|a| a.starts_with(prefix));
    if cpu == "intel" && !args.contains(&"intel_iommu=on") {
        findings.push(finding(
            Level::Warn,
            "cmdline-iommu",
            format!("the kernel command line has no intel_iommu=on: `{cmdline}`"),
            Some("add `intel_iommu=on iommu=pt` to GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub".into()),
        ));
    } else if args
        .iter()
        .any(|a| *a == "intel_iommu=off" || *a == "amd_iommu=off")
    {
        findings.push(finding(
            Level::Error,
            "cmdline-iommu",
            format!("the kernel command line turns the IOMMU off: `{cmdline}`"),
            Some(format!("replace it with `{iommu_arg}`")),
        ));
    }
    if !groups.is_empty() && !has("iommu=pt") {
        findings.push(finding(
            Level::Warn,
            "cmdline-pt",
            "no iommu=pt: host devices go through IOMMU translation too (slower DMA)".into(),
            Some("add `iommu=pt` to the kernel command line".into()),
        ));
    }

    // Interrupt remapping: the kernel labels remapped interrupt chips IR-*.
    let interrupts = read(&roots.proc_root.join("interrupts"));
    if !groups.is_empty() {
        if interrupts.contains("IR-") {
            findings.push(finding(
                Level::Ok,
                "irq-remap",
                "interrupt remapping is on".into(),
                None,
            ));
        } else {
            findings.push(finding(
                Level::Error,
                "irq-remap-off",
                "interrupt remapping is off (no IR- interrupt chips in /proc/interrupts): a passed-through device can inject interrupts".into(),
                Some("enable x2APIC/interrupt remapping in the firmware; vfio_iommu_type1 allow_unsafe_interrupts=1 is the unsafe way around".into()),
            ));
        }
    }

    // What is bound, and whether the passthrough devices' groups are clean.
    let mut targets: Vec<String> = passthrough.to_vec();
    for devs in groups.values() {
        for d in devs {
            if d.driver.as_deref() == Some("vfio-pci") {
                findings.push(finding(
                    Level::Ok,
                    "bound",
                    format!("{} ({}) is bound to vfio-pci already", d.addr, d.id),
                    None,
                ));
                if !targets.contains(&d.addr) {
                    targets.push(d.addr.clone());
                }
            }
        }
    }
    for addr in passthrough {
        match read_device(&roots.sys, addr) {
            None => findings.push(finding(
                Level::Error,
                "no-device",
                format!("no PCI device {addr}"),
                Some("list devices with `lspci -D`".into()),
            )),
            Some(d) if d.iommu_group.is_none() && !groups.is_empty() => findings.push(finding(
                Level::Error,
                "no-group",
                format!("{addr} is in no IOMMU group"),
                None,
            )),
            Some(d) => {
                if d.driver.as_deref() != Some("vfio-pci") {
                    findings.push(finding(
                        Level::Warn,
                        "not-bound",
                        format!(
                            "{addr} ({}) is bound to {}, not vfio-pci",
                            d.id,
                            d.driver.as_deref().unwrap_or("no driver")
                        ),
                        Some(format!("multiverse host vfio bind {addr}")),
                    ));
                }
            }
        }
    }
    targets.sort();
    let mut reported = std::collections::BTreeSet::new();
    for addr in &targets {
        let Some(group) = read_device(&roots.sys, addr).and_then(|d| d.iommu_group) else {
            continue;
        };
        if !reported.insert(group) {
            continue;
        }
        let others: Vec<&PciDevice> = groups
            .get(&group)
            .into_iter()
            .flatten()
            .filter(|d| !targets.contains(&d.addr) && !d.is_bridge())
            .filter(|d| d.driver.as_deref() != Some("vfio-pci"))
            .collect();
        if !others.is_empty() {
            let list: Vec<String> = others
                .iter()
                .map(|d| {
                    format!(
                        "{} ({}, {})",
                        d.addr,
                        d.id,
                        d.driver.as_deref().unwrap_or("no driver")
                    )
                })
                .collect();
            findings.push(finding(
                Level::Error,
                "group-shared",
                format!(
                    "IOMMU group {group} of {addr} also holds {}: a group goes to a VM whole",
                    list.join(", ")
                ),
                Some("pass every device of the group through (or bind them to vfio-pci), or move the card to another slot".into()),
            ));
        }
    }
    if std::fs::metadata(roots.sys.join("module/vfio_pci")).is_err() && !groups.is_empty() {
        findings.push(finding(
            Level::Warn,
            "vfio-module",
            "the vfio-pci module is not loaded".into(),
            Some(
                "modprobe vfio-pci (multiverse host vfio bind writes the modprobe configuration)"
                    .into(),
            ),
        ));
    }
    // The kill switch's memory step (mv-guard `clear-memory`) relies on the kernel zeroing
    // every page it frees.
    if !cmdline.is_empty() && !mv_core::cmdline::init_on_free(&cmdline) {
        findings.push(finding(
            Level::Warn,
            "init-on-free",
            format!("the kernel command line has no init_on_free=1 ({}/cmdline): freed pages keep their bytes until reused, so the kill switch must fill free memory itself (slower)", roots.proc_root.display()),
            Some("add `init_on_free=1` to GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub".into()),
        ));
    }
    findings.push(kvm_finding(kvm(roots)));
    findings.sort_by_key(|f| std::cmp::Reverse(f.level));
    Report {
        cpu: cpu.into(),
        cmdline,
        groups,
        findings,
    }
}
