//! PCI addresses and what sysfs says about a PCI device.

use std::fmt;
use std::path::Path;

/// A PCI address `DDDD:BB:DD.F`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddr {
    /// Domain.
    pub domain: u16,
    /// Bus.
    pub bus: u8,
    /// Device (0..32).
    pub device: u8,
    /// Function (0..8).
    pub function: u8,
}

/// A malformed PCI address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a PCI address (DDDD:BB:DD.F or BB:DD.F, hex, as lspci -D shows)")]
pub struct PciAddrError(pub String);

impl std::str::FromStr for PciAddr {
    type Err = PciAddrError;
    fn from_str(s: &str) -> Result<PciAddr, PciAddrError> {
        let err = || PciAddrError(s.to_string());
        let parts: Vec<&str> = s.split(':').collect();
        let (dom, bus, rest) = match parts.as_slice() {
            [d, b, r] => (*d, *b, *r),
            [b, r] => ("0000", *b, *r),
            _ => return Err(err()),
        };
        let (dev, func) = rest.split_once('.').ok_or_else(err)?;
        let hex = |t: &str, len: usize| {
            (t.len() == len && t.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| u16::from_str_radix(t, 16).ok())
                .flatten()
        };
        let domain = hex(dom, 4).ok_or_else(err)?;
        let bus = hex(bus, 2).ok_or_else(err)? as u8;
        let device = hex(dev, 2).filter(|d| *d < 32).ok_or_else(err)? as u8;
        let function = hex(func, 1).filter(|f| *f < 8).ok_or_else(err)? as u8;
        Ok(PciAddr {
            domain,
            bus,
            device,
            function,
        })
    }
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

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
pub fn read_device(sys: &Path, addr: &str) -> Option<PciDevice> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_addresses() {
        let a: PciAddr = "0000:01:00.1".parse().unwrap();
        assert_eq!(a.to_string(), "0000:01:00.1");
        assert_eq!(
            "01:00.0".parse::<PciAddr>().unwrap().to_string(),
            "0000:01:00.0"
        );
        for bad in [
            "",
            "1:0.0",
            "0000:01:20.0",
            "0000:01:00.8",
            "zz:00.0",
            "0000:01:00",
        ] {
            assert!(bad.parse::<PciAddr>().is_err(), "{bad}");
        }
    }
}
