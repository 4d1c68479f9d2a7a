//! `mv-host`: Host setup: udev rules, IOMMU checks, vfio-pci binding.
//!
//! (Being built; see ARCHITECTURE.md.)
#![forbid(unsafe_code)]
