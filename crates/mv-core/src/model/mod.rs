//! The shared vocabulary of the machine model: the small value types every crate that talks about
//! machines uses, defined once.
//!
//! - Kinds of things: [`MachineType`], [`Os`], [`Arch`], [`CpuVendor`].
//! - Addresses (from the private `addr` module, re-exported here): [`PciAddress`], [`UsbId`], [`Ipv4Net`] (a
//!   subnet), [`HostAddress`] (a host's address on its subnet), [`MacAddress`], all refused with an
//!   [`AddrError`].
//!
//! Each type parses from and prints to the one text form a person writes in `multiverse.toml`
//! (and serialises as it), so TOML and JSON files keep their exact bytes whichever crate writes
//! them.
//!
//! What this module is not: the machine model itself (`mv-machines` owns `multiverse.toml`, its
//! defaults and its validation), nor anything with I/O.

mod addr;

pub use addr::{AddrError, HostAddress, Ipv4Net, MacAddress, PciAddress, UsbId};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// CPU architecture of a host or machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Arch {
    /// 64-bit x86 (q35 machines, OVMF).
    #[serde(rename = "x86_64")]
    X86_64,
    /// 64-bit ARM (`virt` machines, AAVMF).
    #[serde(rename = "aarch64")]
    Aarch64,
}

impl Arch {
    /// The name libvirt and templates use (`x86_64`, `aarch64`).
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "x86_64" => Ok(Arch::X86_64),
            "aarch64" => Ok(Arch::Aarch64),
            _ => Err(format!("unknown arch `{s}` (expected x86_64 or aarch64)")),
        }
    }
}

/// The host CPU vendor: decides the IOMMU kernel option and the vIOMMU model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuVendor {
    /// Intel (VT-d, `intel_iommu=on`).
    Intel,
    /// AMD (AMD-Vi, `amd_iommu=on`).
    Amd,
}

impl CpuVendor {
    /// The lower-case name (`intel`, `amd`).
    pub fn as_str(self) -> &'static str {
        match self {
            CpuVendor::Intel => "intel",
            CpuVendor::Amd => "amd",
        }
    }

    /// The kernel command-line option that turns this vendor's IOMMU on.
    pub fn iommu_option(self) -> &'static str {
        match self {
            CpuVendor::Intel => "intel_iommu=on",
            CpuVendor::Amd => "amd_iommu=on",
        }
    }
}

impl fmt::Display for CpuVendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operating system a machine runs, which decides package manager, init and file layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    /// Alpine Linux (apk, OpenRC): small; the default for routers, services and the host.
    Alpine,
    /// Debian (apt, systemd): the default for the controller and application VMs.
    Debian,
}

impl Os {
    /// The lower-case name (`alpine`, `debian`), also the default base image name.
    pub fn as_str(self) -> &'static str {
        match self {
            Os::Alpine => "alpine",
            Os::Debian => "debian",
        }
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Os {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "alpine" => Ok(Os::Alpine),
            "debian" => Ok(Os::Debian),
            _ => Err(format!("unknown os `{s}` (expected alpine or debian)")),
        }
    }
}

/// What a machine is for (docs/design.md "The parts").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineType {
    /// The bare-metal host (only from `[host]`).
    Host,
    /// The VM the person works in: GPU and USB passed through.
    Controller,
    /// A router VM of the universe → galaxy → star chain.
    Router,
    /// A long-running service VM.
    Service,
    /// A throw-away application VM.
    Application,
}

impl MachineType {
    /// The lower-case name used in the file and in template names.
    pub fn as_str(self) -> &'static str {
        match self {
            MachineType::Host => "host",
            MachineType::Controller => "controller",
            MachineType::Router => "router",
            MachineType::Service => "service",
            MachineType::Application => "application",
        }
    }
}

impl fmt::Display for MachineType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MachineType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "controller" => Ok(MachineType::Controller),
            "router" => Ok(MachineType::Router),
            "service" => Ok(MachineType::Service),
            "application" => Ok(MachineType::Application),
            "host" => Err("the host is described in [host], not added as a machine".into()),
            _ => Err(format!(
                "unknown machine type `{s}` (expected controller, router, service or application)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_round_trip_and_serialise_as_written() {
        for a in [Arch::X86_64, Arch::Aarch64] {
            assert_eq!(a.as_str().parse::<Arch>().unwrap(), a);
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
        }
        for o in [Os::Alpine, Os::Debian] {
            assert_eq!(o.as_str().parse::<Os>().unwrap(), o);
            assert_eq!(serde_json::to_string(&o).unwrap(), format!("\"{o}\""));
        }
        for v in [CpuVendor::Intel, CpuVendor::Amd] {
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{v}\""));
        }
        for t in [
            MachineType::Controller,
            MachineType::Router,
            MachineType::Service,
            MachineType::Application,
        ] {
            assert_eq!(t.as_str().parse::<MachineType>().unwrap(), t);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
        }
        assert!("host".parse::<MachineType>().is_err());
        assert_eq!(
            serde_json::to_string(&MachineType::Host).unwrap(),
            "\"host\""
        );
    }
}
