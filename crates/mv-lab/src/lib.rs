//! mv-lab: the lab. A Debian bookworm VM under QEMU plays the bare-metal host for the tests that
//! need what this machine lacks (device-mapper, USB, an initramfs, UEFI boot): the installer's
//! and the kill switch's. Only ever a dev-dependency. User documentation: `docs/lab.md`.
//!
//! ```no_run
//! use mv_lab::{Lab, LabSpec};
//! use std::time::Duration;
//!
//! let spec = LabSpec { iommu: true, nic: true, ..LabSpec::default() }
//!     .blank_disk(2 << 30)                  // vdb, a sparse file in the lab's folder
//!     .token("/tmp/token.img")              // USB stick, device id "token", the guest's sda
//!     .share(env!("CARGO_MANIFEST_DIR"));   // read-only on /mnt/host (9p)
//! let mut lab = Lab::boot(spec)?;           // ~1 min under TCG: returns at a root shell
//! let out = lab.run("lsblk -dno NAME,TRAN")?;
//! assert!(out.success() && out.stdout.contains("sda"));
//! lab.remove_token()?;                      // QMP device_del "token"
//! lab.wait_event("DEVICE_DELETED", Duration::from_secs(10))?;
//! lab.dump_memory(std::path::Path::new("/tmp/mem.elf"))?;
//! lab.power_off()?;                         // QMP quit; Drop kills QEMU by PID anyway
//! # Ok::<(), mv_lab::LabError>(())
//! ```
//!
//! The API:
//! - The lab image, built once into the tests' cache folder ([`test_cache_dir`]:
//!   `MULTIVERSE_TEST_CACHE`, default `/var/cache/multiverse-tests`) and rebuilt when its
//!   recipe's key changes: [`lab_image`], [`cached_image`], [`ImageSpec`], [`LabImage`].
//! - [`Lab::boot`] with a [`LabSpec`] (memory, CPUs, [`Boot`]: the lab image by direct kernel
//!   boot or any disk under OVMF, extra [`Disk`]s, [`UsbStick`]s, vIOMMU, extra NIC, shared
//!   folder, extra kernel arguments, a kept folder, `-no-shutdown`).
//! - The console: [`Lab::run`] / [`Lab::run_ok`] / [`Lab::run_timeout`] → [`Output`] `{status,
//!   stdout}`, [`Lab::wait_for`] / [`Lab::wait_for_timed`] (boot messages, prompts, with the
//!   instant they arrived), [`Lab::send`] (typing),
//!   [`Lab::attach_shell`], [`Lab::console_log`] / [`Lab::console_tail`].
//! - QMP: [`Lab::qmp`], [`Lab::wait_event`] / [`Lab::events`] ([`Event`]s with the instant they
//!   arrived), [`Lab::remove_token`], [`Lab::remove_usb`], [`Lab::add_usb`],
//!   [`Lab::dump_memory`] (+ [`file_contains`] to search the dump), [`Lab::power_off`],
//!   [`Lab::wait_exit`].
//!
//! Errors are [`LabError`]; a timeout or an exited QEMU carries the console's last lines and the
//! log's path.
//!
//! Invariants: the cached image is never written (`snapshot=on`); every QEMU started is killed by
//! its PID when its [`Lab`] drops; the lab has no network (an extra NIC has no backend); nothing
//! here mounts anything on the machine running the tests.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod console;
mod error;
mod image;
mod lab;
mod qmp;

pub use error::LabError;
pub use image::{cached_image, lab_image, test_cache_dir, ImageSpec, LabImage, LAB_PACKAGES};
pub use lab::{
    file_contains, Boot, Disk, Lab, LabSpec, Output, UsbStick, HOST_MOUNT, QMP_TIMEOUT,
    RUN_TIMEOUT, TOKEN_ID,
};
pub use qmp::{Event, Qmp};
