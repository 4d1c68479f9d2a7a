//! What sysfs says about a PCI device ([`read_device`], [`PciDevice`]).
//!
//! The address type itself is the model's: `mv_core::model::PciAddress`, re-exported at the
//! crate root.

use std::path::Path;

/// What sysfs says about one PCI device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PciDevice {
    /// Address.
    pub addr: String,
    /// `vvvv:dddd`.
    pub id: String,
    /// Class code (`0x030000` is a VGA controller).
    pub class: String,
    /// The bound driver, if any.
    pub driver: Option<String>,
    /// IOMMU group, if any.
    pub iommu_group: Option<u32>,
}

impl PciDevice {
    /// Whether it is a PCI bridge (class 0x0604xx): bridges may share a group harmlessly.
    pub fn is_bridge(&self) -> bool {
        self.class.starts_with("0x0604")
    }
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn link_name(p: &Path) -> Option<String> {
    std::fs::read_link(p)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// Reads `<sys>/bus/pci/devices/<addr>`; `None` when absent.
pub(crate) fn read_device(sys: &Path, addr: &str) -> Option<PciDevice> {
    let dir = sys.join("bus/pci/devices").join(addr);
    if !dir.exists() {
        return None;
    }
    let vendor = read_trim(&dir.join("vendor")).unwrap_or_default();
    let device = read_trim(&dir.join("device")).unwrap_or_default();
    Some(PciDevice {
        addr: addr.to_string(),
        id: format!(
            "{}:{}",
            vendor.trim_start_matches("0x"),
            device.trim_start_matches("0x")
        ),
        class: read_trim(&dir.join("class")).unwrap_or_default(),
        driver: link_name(&dir.join("driver")),
        iommu_group: link_name(&dir.join("iommu_group")).and_then(|g| g.parse().ok()),
    })
}
