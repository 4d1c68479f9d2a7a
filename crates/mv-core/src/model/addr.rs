//! Small validated address types: PCI addresses, USB ids, IPv4 subnets, host addresses on a
//! subnet and MAC addresses.
//!
//! Each parses from and prints to the one text form a person writes and libvirt or the kernel shows
//! (`0000:03:00.0`, `1d6b:0002`, `10.0.0.0/24`, `52:54:00:12:34:56`), and (de)serialises as that
//! string, so a malformed value is refused by the TOML reader with the line it sits on.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Why an address-like value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Not `DDDD:BB:SS.F` (or `BB:SS.F`) in hexadecimal, or slot > 0x1f, or function > 7.
    #[error("malformed PCI address `{0}`: expected DOMAIN:BUS:SLOT.FUNCTION like `0000:03:00.0` (slot 00-1f, function 0-7), as `lspci -D` prints it")]
    Pci(String),
    /// Not `VVVV:PPPP` in hexadecimal.
    #[error("malformed USB id `{0}`: expected VENDOR:PRODUCT in hexadecimal like `1d6b:0002`, as `lsusb` prints it")]
    Usb(String),
    /// Not `A.B.C.D/N` with N in 8..=30 and no host bits set.
    #[error("malformed subnet `{0}`: expected a network address with a prefix length 8-30 like `10.0.0.0/24`")]
    Subnet(String),
    /// Not `A.B.C.D/N` with N in 8..=30 and A.B.C.D a usable host address of that subnet.
    #[error("malformed host address `{0}`: expected a host address with a prefix length 8-30 like `10.0.0.1/24`")]
    Host(String),
    /// Not six colon-separated hex bytes, or a multicast address.
    #[error(
        "malformed MAC address `{0}`: expected six hex bytes like `52:54:00:12:34:56` (unicast)"
    )]
    Mac(String),
}

/// A PCI device address (`0000:03:00.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PciAddress {
    /// PCI domain (segment), usually 0.
    pub domain: u16,
    /// Bus number.
    pub bus: u8,
    /// Slot (device) number, 0..=0x1f.
    pub slot: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

fn hex_field<T>(
    s: &str,
    max_len: usize,
    from: fn(&str, u32) -> Result<T, std::num::ParseIntError>,
) -> Option<T> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    from(s, 16).ok()
}

impl FromStr for PciAddress {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, AddrError> {
        let bad = || AddrError::Pci(s.to_string());
        let (head, function) = s.rsplit_once('.').ok_or_else(bad)?;
        let parts: Vec<&str> = head.split(':').collect();
        let (domain, bus, slot) = match parts.as_slice() {
            [d, b, sl] => (
                hex_field(d, 4, u16::from_str_radix).ok_or_else(bad)?,
                *b,
                *sl,
            ),
            [b, sl] => (0, *b, *sl),
            _ => return Err(bad()),
        };
        let bus = hex_field(bus, 2, u8::from_str_radix).ok_or_else(bad)?;
        let slot = hex_field(slot, 2, u8::from_str_radix).ok_or_else(bad)?;
        let function = hex_field(function, 1, u8::from_str_radix).ok_or_else(bad)?;
        if slot > 0x1f || function > 7 {
            return Err(bad());
        }
        Ok(PciAddress {
            domain,
            bus,
            slot,
            function,
        })
    }
}

impl PciAddress {
    /// Parses exactly what `lspci -D` prints (`0000:03:00.0`, or `03:00.0` without the domain):
    /// every field at its full width. [`FromStr`] is the lenient grammar of `multiverse.toml`,
    /// which also takes `3:0.0`; command-line arguments that name a device on this host use this
    /// one.
    pub fn parse_lspci(s: &str) -> Result<PciAddress, AddrError> {
        let a: PciAddress = s.parse()?;
        let full = a.to_string();
        let short = full.get(5..).filter(|_| a.domain == 0);
        if s.eq_ignore_ascii_case(&full) || short.is_some_and(|t| s.eq_ignore_ascii_case(t)) {
            Ok(a)
        } else {
            Err(AddrError::Pci(s.to_string()))
        }
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }
}

/// A USB device id (`vendor:product`, `1d6b:0002`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UsbId {
    /// Vendor id.
    pub vendor: u16,
    /// Product id.
    pub product: u16,
}

impl FromStr for UsbId {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, AddrError> {
        let bad = || AddrError::Usb(s.to_string());
        let (v, p) = s.split_once(':').ok_or_else(bad)?;
        if v.len() != 4 || p.len() != 4 {
            return Err(bad());
        }
        Ok(UsbId {
            vendor: hex_field(v, 4, u16::from_str_radix).ok_or_else(bad)?,
            product: hex_field(p, 4, u16::from_str_radix).ok_or_else(bad)?,
        })
    }
}

impl fmt::Display for UsbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.product)
    }
}

/// `A.B.C.D/N` with N written in one or two digits and in 8..=30: the address and N.
fn split_prefixed(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/')?;
    let addr: Ipv4Addr = a.parse().ok()?;
    if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix: u8 = p.parse().ok()?;
    (8..=30).contains(&prefix).then_some((addr, prefix))
}

/// An IPv4 subnet (`10.0.0.0/24`) whose address is the network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Net {
    /// The network address (host bits zero).
    pub addr: Ipv4Addr,
    /// Prefix length, 8..=30.
    pub prefix: u8,
}

impl Ipv4Net {
    /// The netmask (`255.255.255.0` for /24).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX << (32 - u32::from(self.prefix)))
    }

    /// Whether `a` is a usable host address of this subnet (not the network or broadcast address).
    pub fn contains_host(&self, a: Ipv4Addr) -> bool {
        let mask = u32::from(self.netmask());
        let net = u32::from(self.addr);
        let x = u32::from(a);
        x & mask == net && x != net && x != net | !mask
    }

    /// The n-th host address (1 = first usable), if it lies inside the subnet.
    pub fn host(&self, n: u32) -> Option<Ipv4Addr> {
        let a = Ipv4Addr::from(u32::from(self.addr).checked_add(n)?);
        self.contains_host(a).then_some(a)
    }
}

impl FromStr for Ipv4Net {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, AddrError> {
        let bad = || AddrError::Subnet(s.to_string());
        let (addr, prefix) = split_prefixed(s).ok_or_else(bad)?;
        let net = Ipv4Net { addr, prefix };
        if u32::from(addr) & !u32::from(net.netmask()) != 0 {
            return Err(bad());
        }
        Ok(net)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A host's address on its subnet (`10.0.0.1/24`): what an interface is configured with.
///
/// Not the same as [`Ipv4Net`], whose address is the network's: `10.0.0.1/24` is host 1 of the
/// subnet `10.0.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostAddress {
    /// The host's address.
    pub addr: Ipv4Addr,
    /// The subnet it is on.
    pub subnet: Ipv4Net,
}

impl HostAddress {
    /// `addr` on `subnet`, if it is a usable host address of it (not the network or broadcast
    /// address).
    pub fn new(addr: Ipv4Addr, subnet: Ipv4Net) -> Option<HostAddress> {
        subnet
            .contains_host(addr)
            .then_some(HostAddress { addr, subnet })
    }
}

impl FromStr for HostAddress {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, AddrError> {
        let bad = || AddrError::Host(s.to_string());
        let (addr, prefix) = split_prefixed(s).ok_or_else(bad)?;
        let mask = u32::MAX << (32 - u32::from(prefix));
        let subnet = Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        };
        HostAddress::new(addr, subnet).ok_or_else(bad)
    }
}

impl fmt::Display for HostAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.subnet.prefix)
    }
}

/// A unicast MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddress(pub [u8; 6]);

impl FromStr for MacAddress {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, AddrError> {
        let bad = || AddrError::Mac(s.to_string());
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *o = hex_field(p, 2, u8::from_str_radix).ok_or_else(bad)?;
        }
        if out[0] & 1 == 1 {
            return Err(bad());
        }
        Ok(MacAddress(out))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Serde's string form of each address type (`#[serde(try_from = "String", into = "String")]`):
/// its `FromStr` and `Display`.
macro_rules! string_form {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = AddrError;
            fn try_from(s: String) -> Result<Self, AddrError> {
                s.parse()
            }
        }

        impl From<$t> for String {
            fn from(a: $t) -> String {
                a.to_string()
            }
        }
    )*};
}

string_form!(PciAddress, UsbId, Ipv4Net, MacAddress);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pci() {
        let a: PciAddress = "0000:03:00.0".parse().unwrap();
        assert_eq!(a.bus, 3);
        assert_eq!(a.to_string(), "0000:03:00.0");
        assert_eq!(
            "01:00.1".parse::<PciAddress>().unwrap().to_string(),
            "0000:01:00.1"
        );
        for bad in [
            "",
            "03:00",
            "0000:03:20.0",
            "0000:03:00.8",
            "zz:00.0",
            "00000:00:00.0",
            "0:0:0:0.0",
            "03:00.",
            "+3:00.0",
        ] {
            assert!(bad.parse::<PciAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn pci_lspci_form_only() {
        for good in ["0000:01:00.1", "01:00.0", "0000:0A:1f.7", "0001:00:00.0"] {
            assert!(PciAddress::parse_lspci(good).is_ok(), "{good}");
        }
        for bad in [
            "1:0.0",
            "0:01:00.0",
            "01:0.0",
            "0000:01:20.0",
            "0000:01:00.8",
            "",
        ] {
            assert!(PciAddress::parse_lspci(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usb_subnet_mac() {
        assert_eq!(
            "1D6B:0002".parse::<UsbId>().unwrap().to_string(),
            "1d6b:0002"
        );
        assert!("1d6b:2".parse::<UsbId>().is_err());
        let n: Ipv4Net = "10.1.1.0/24".parse().unwrap();
        assert_eq!(n.netmask().to_string(), "255.255.255.0");
        assert_eq!(n.host(1).unwrap().to_string(), "10.1.1.1");
        assert!(n.host(255).is_none());
        assert!(!n.contains_host("10.1.2.1".parse().unwrap()));
        for bad in [
            "10.0.0.1/24",
            "10.0.0.0",
            "10.0.0.0/31",
            "10.0.0.0/+4",
            "x/24",
        ] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad}");
        }
        let m = MacAddress([0x52, 0x54, 0x00, 0xab, 0x01, 0xff]);
        assert_eq!(m.to_string(), "52:54:00:ab:01:ff");
        assert_eq!(m.to_string().parse::<MacAddress>().unwrap(), m);
        assert!("01:00:00:00:00:00".parse::<MacAddress>().is_err());
        let h: HostAddress = "10.2.2.1/24".parse().unwrap();
        assert_eq!(h.subnet.to_string(), "10.2.2.0/24");
        assert_eq!(h.to_string(), "10.2.2.1/24");
        for bad in [
            "10.0.0.0/24",
            "10.0.0.255/24",
            "10.0.0.1",
            "10.0.0.1/31",
            "x/24",
        ] {
            assert!(bad.parse::<HostAddress>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn pci_round_trips(d in 0u16.., b in 0u8.., s in 0u8..0x20, f in 0u8..8) {
            let a = PciAddress { domain: d, bus: b, slot: s, function: f };
            prop_assert_eq!(a.to_string().parse::<PciAddress>().unwrap(), a);
        }

        #[test]
        fn parsers_never_panic(s in ".{0,40}") {
            let _ = s.parse::<PciAddress>();
            let _ = s.parse::<UsbId>();
            let _ = s.parse::<Ipv4Net>();
            let _ = s.parse::<HostAddress>();
            let _ = s.parse::<MacAddress>();
        }
    }
}
