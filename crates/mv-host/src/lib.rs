//! `mv-host`: host setup for Multiverse OS: udev rules, IOMMU checks, vfio-pci binding.
//!
//! - [`udev`]: the rules that give the `kvm` group /dev/vfio, /dev/kvm and the vhost/vsock nodes.
//! - [`check`](mod@check): reads /sys and /proc (under a configurable root, so fixture trees test it) and says
//!   what stands between this host and PCI passthrough: IOMMU off, no interrupt remapping, the
//!   kernel command line, IOMMU groups shared with devices that stay on the host, what is bound to
//!   vfio-pci already.
//! - [`vfio`]: the modprobe configuration and the `driver_override` writes that hand a PCI device
//!   to vfio-pci, as a plan that can be shown (dry-run), written, and applied.
//!
//! The main entry points are re-exported at the root: [`check()`] with [`Roots`] → [`Report`],
//! [`vfio_plan`] → [`VfioPlan`], [`host_rules`]; PCI addresses are the model's [`PciAddress`].
//!
//! What this crate is not: the kill switch's rule (`mv_guard::kill_switch_rule`), or libvirt's side of
//! passthrough (the domain's `<hostdev>`).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod check;
pub mod pci;
pub mod udev;
pub mod vfio;

pub use check::{check, kvm, Finding, Kvm, Level, Report, Roots};
pub use pci::{PciAddress, PciDevice};
pub use udev::host_rules;
pub use vfio::{plan as vfio_plan, Plan as VfioPlan, VfioError};
