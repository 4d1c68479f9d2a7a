//! `mv-host`: host setup for Multiverse OS: udev rules, IOMMU checks, vfio-pci binding.
//!
//! The public API is this root; the modules are private:
//!
//! - [`host_rules`] (written as [`HOST_RULES_FILE`]): the udev rules that give the `kvm` group
//!   /dev/vfio, /dev/kvm and the vhost/vsock nodes.
//! - [`check()`] with [`Roots`] → [`Report`] ([`Finding`]s of a [`Level`], the IOMMU groups'
//!   [`PciDevice`]s): reads /sys and /proc (under a configurable root, so fixture trees test it)
//!   and says what stands between this host and PCI passthrough: IOMMU off, no interrupt
//!   remapping, the kernel command line, IOMMU groups shared with devices that stay on the host,
//!   what is bound to vfio-pci already. [`kvm()`] → [`Kvm`]: whether this host's KVM boots a
//!   stock guest.
//! - [`vfio_plan`] → [`VfioPlan`] (errors: [`VfioError`]): the modprobe configuration and the
//!   `driver_override` writes that hand a PCI device to vfio-pci, as a plan that can be shown
//!   (dry-run), written ([`VfioPlan::write_config`]), and applied ([`VfioPlan::apply_now`]).
//!
//! PCI addresses are the model's [`PciAddress`] (`mv_core::model`).
//!
//! What this crate is not: the kill switch's rule (`mv_guard::kill_switch_rule`), or libvirt's side of
//! passthrough (the domain's `<hostdev>`).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod check;
mod pci;
mod udev;
mod vfio;

pub use check::{check, kvm, Finding, Kvm, Level, Report, Roots};
pub use mv_core::model::PciAddress;
pub use pci::PciDevice;
pub use udev::{host_rules, FILE_NAME as HOST_RULES_FILE};
pub use vfio::{plan as vfio_plan, Plan as VfioPlan, VfioError};
