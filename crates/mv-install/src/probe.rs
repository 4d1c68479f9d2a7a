//! What the machine offers for the answers: target disks, token candidates, NICs and GPUs, read
//! from sysfs. The interactive installer proposes its defaults from these.
//!
//! Every function takes the sysfs root (`/sys`, or a fixture folder in tests) and never writes.
//! A device that cannot be read is left out rather than reported: these are proposals, and
//! [`crate::Answers::check`] has the last word on whatever the person picks.
//!
//! What this is not: the checks of an answer file ([`crate::answers`]) or of IOMMU groups
//! (`mv_host::check`).

use crate::answers::{resolve_nic, System, MIN_DISK_BYTES};
use std::path::{Path, PathBuf};

/// A whole block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Disk {
    /// Kernel name (`sda`, `nvme0n1`, `vdb`).
    pub name: String,
    /// Its device node, `/dev/NAME`.
    pub dev: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// The vendor's model string, when sysfs has one.
    pub model: Option<String>,
    /// Whether the kernel marks it removable.
    pub removable: bool,
    /// Whether it hangs off a USB bus.
    pub usb: bool,
}

impl Disk {
    /// `8.0 GiB QEMU HARDDISK` (size and model), for lists.
    pub(crate) fn describe(&self) -> String {
        let size = format!("{:.1} GiB", self.bytes as f64 / f64::from(1u32 << 30));
        match &self.model {
            Some(m) => format!("{size} {m}"),
            None => size,
        }
    }
}

/// A network interface backed by a PCI device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Nic {
    /// Interface name (`enp3s0`).
    pub name: String,
    /// Its PCI address (`0000:03:00.0`).
    pub pci: String,
}

/// A PCI display controller (class 0x03xxxx), a candidate for passthrough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gpu {
    /// PCI address.
    pub pci: String,
    /// `vvvv:dddd`.
    pub id: String,
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Kernel names that are never disks a person installs on or carries as a token.
fn virtual_device(name: &str) -> bool {
    ["loop", "ram", "zram", "sr", "fd", "nbd"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Every whole block device (no partitions, no loop/ram/optical devices), sorted by name.
pub(crate) fn block_devices(sys: &Path) -> Vec<Disk> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(sys.join("class/block")) else {
        return out;
    };
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if virtual_device(&name) || name.contains('/') {
            continue;
        }
        let dir = e.path();
        if dir.join("partition").exists() {
            continue;
        }
        let Some(sectors) = read_trim(&dir.join("size")).and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        let removable = read_trim(&dir.join("removable")).as_deref() == Some("1");
        let usb = std::fs::canonicalize(&dir)
            .map(|p| {
                p.components()
                    .any(|c| c.as_os_str().to_string_lossy().starts_with("usb"))
            })
            .unwrap_or(false);
        let model = read_trim(&dir.join("device/model")).filter(|m| !m.is_empty());
        out.push(Disk {
            dev: PathBuf::from("/dev").join(&name),
            name,
            bytes: sectors.saturating_mul(512),
            model,
            removable,
            usb,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Disks to install on: whole, not removable, at least [`MIN_DISK_BYTES`]; largest first.
pub(crate) fn target_disks(sys: &Path) -> Vec<Disk> {
    let mut out: Vec<Disk> = block_devices(sys)
        .into_iter()
        .filter(|d| !d.removable && d.bytes >= MIN_DISK_BYTES)
        .collect();
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    out
}

/// Token candidates: removable or USB whole devices holding something (size > 0), by name.
pub(crate) fn token_candidates(sys: &Path) -> Vec<Disk> {
    block_devices(sys)
        .into_iter()
        .filter(|d| (d.removable || d.usb) && d.bytes > 0)
        .collect()
}

/// Network interfaces with a PCI device (the ones an uplink can be passed through), by name.
pub(crate) fn nics(sys: &Path) -> Vec<Nic> {
    let system = System {
        sys: sys.to_path_buf(),
        ..System::default()
    };
    let mut out: Vec<Nic> = std::fs::read_dir(sys.join("class/net"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let pci = resolve_nic(&system, &name)?;
            Some(Nic { name, pci })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// PCI display controllers, by address.
pub(crate) fn gpus(sys: &Path) -> Vec<Gpu> {
    let mut out: Vec<Gpu> = std::fs::read_dir(sys.join("bus/pci/devices"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pci = e.file_name().to_str()?.to_string();
            let dir = e.path();
            let class = read_trim(&dir.join("class"))?;
            if !class.starts_with("0x03") {
                return None;
            }
            let vendor = read_trim(&dir.join("vendor")).unwrap_or_default();
            let device = read_trim(&dir.join("device")).unwrap_or_default();
            Some(Gpu {
                pci,
                id: format!(
                    "{}:{}",
                    vendor.trim_start_matches("0x"),
                    device.trim_start_matches("0x")
                ),
            })
        })
        .collect();
    out.sort_by(|a, b| a.pci.cmp(&b.pci));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn block(sys: &Path, name: &str, sectors: u64, removable: bool) -> PathBuf {
        let d = sys.join("class/block").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("size"), format!("{sectors}\n")).unwrap();
        std::fs::write(d.join("removable"), if removable { "1\n" } else { "0\n" }).unwrap();
        d
    }

    fn pci(sys: &Path, addr: &str, class: &str) -> PathBuf {
        let d = sys.join("devices/pci0000:00").join(addr);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("class"), format!("{class}\n")).unwrap();
        std::fs::write(d.join("vendor"), "0x1af4\n").unwrap();
        std::fs::write(d.join("device"), "0x1041\n").unwrap();
        let bus = sys.join("bus/pci/devices");
        std::fs::create_dir_all(&bus).unwrap();
        std::os::unix::fs::symlink(
            format!("../../../devices/pci0000:00/{addr}"),
            bus.join(addr),
        )
        .unwrap();
        d
    }

    const GIB: u64 = 1 << 21; // sectors

    #[test]
    fn disks_are_whole_fixed_and_large_enough_largest_first() {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path();
        block(sys, "vda", 8 * GIB, false);
        let d = block(sys, "vdb", 20 * GIB, false);
        std::fs::create_dir_all(d.join("device")).unwrap();
        std::fs::write(d.join("device/model"), "QEMU HARDDISK   \n").unwrap();
        std::fs::write(block(sys, "vdb1", 10 * GIB, false).join("partition"), "1\n").unwrap();
        block(sys, "vdc", 3 * GIB, false); // too small
        block(sys, "loop0", 8 * GIB, false);
        block(sys, "ram0", 8 * GIB, false);
        block(sys, "sdb", 16 * GIB, true); // removable
        let got = target_disks(sys);
        let names: Vec<&str> = got.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["vdb", "vda"]);
        assert_eq!(got[0].dev, Path::new("/dev/vdb"));
        assert_eq!(got[0].bytes, 20 << 30);
        assert_eq!(got[0].describe(), "20.0 GiB QEMU HARDDISK");
        assert_eq!(got[1].describe(), "8.0 GiB");
    }

    #[test]
    fn tokens_are_removable_or_on_usb() {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path();
        block(sys, "sda", 16 * GIB, false);
        block(sys, "sdb", GIB, true);
        block(sys, "sdd", 0, true); // an empty card reader
                                    // A USB disk that does not call itself removable: sysfs links it under its USB port.
        let real = sys.join("devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/host2/block/sdc");
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(real.join("size"), format!("{}\n", 2 * GIB)).unwrap();
        std::fs::write(real.join("removable"), "0\n").unwrap();
        std::os::unix::fs::symlink(
            "../../devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/host2/block/sdc",
            sys.join("class/block/sdc"),
        )
        .unwrap();
        let names: Vec<String> = token_candidates(sys).into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["sdb", "sdc"]);
        assert!(block_devices(sys).iter().any(|d| d.name == "sdc" && d.usb));
    }

    #[test]
    fn nics_need_a_pci_device_and_gpus_are_display_class() {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path();
        pci(sys, "0000:00:03.0", "0x020000");
        pci(sys, "0000:00:04.0", "0x030000");
        for (name, dev) in [("eth0", Some("0000:00:03.0")), ("lo", None)] {
            let d = sys.join("class/net").join(name);
            std::fs::create_dir_all(&d).unwrap();
            if let Some(dev) = dev {
                std::os::unix::fs::symlink(
                    format!("../../../devices/pci0000:00/{dev}"),
                    d.join("device"),
                )
                .unwrap();
            }
        }
        assert_eq!(
            nics(sys),
            [Nic {
                name: "eth0".into(),
                pci: "0000:00:03.0".into()
            }]
        );
        assert_eq!(
            gpus(sys),
            [Gpu {
                pci: "0000:00:04.0".into(),
                id: "1af4:1041".into()
            }]
        );
    }

    #[test]
    fn a_missing_sysfs_offers_nothing() {
        let t = tempfile::tempdir().unwrap();
        assert!(target_disks(t.path()).is_empty());
        assert!(token_candidates(t.path()).is_empty());
        assert!(nics(t.path()).is_empty());
        assert!(gpus(t.path()).is_empty());
    }
}
