//! `mv-host`: host setup for Multiverse OS: udev rules, IOMMU checks, vfio-pci binding.
//!
//! - [`udev`]: the rules that give the `kvm` group /dev/vfio, /dev/kvm and the vhost/vsock nodes.
//! - [`check`]: reads /sys and /proc (under a configurable root, so fixture trees test it) and says
//!   what stands between this host and PCI passthrough: IOMMU off, no interrupt remapping, the
//!   kernel command line, IOMMU groups shared with devices that stay on the host, what is bound to
//!   vfio-pci already.
//! - [`vfio`]: the modprobe configuration and the `driver_override` writes that hand a PCI device
//!   to vfio-pci, as a plan that can be shown (dry-run), written, and applied.
//!
//! What this crate is not: the kill switch's rule (`mv_guard::udev`), or libvirt's side of
//! passthrough (the domain's `<hostdev>`).
#![forbid(unsafe_code)]

pub mod check;
pub mod pci;
pub mod udev;
pub mod vfio;
