//! The [`Options`] of an install on this machine: the multiverse binaries beside the running
//! one, the real sysfs, and the CPU vendor from `/proc/cpuinfo`.

use crate::install::Options;
use std::path::{Path, PathBuf};

/// The binaries copied into the new system, when they are beside the running one.
const BINARIES: [&str; 4] = [
    "multiverse",
    "multiverse-virt",
    "multiverse-agent",
    "multiverse-agent-libvirt",
];

impl Options {
    /// The options for installing from this machine, with the installer's own state in
    /// `state_dir` and the target mounted on `mount_dir`.
    pub fn for_this_machine(state_dir: PathBuf, mount_dir: PathBuf) -> Options {
        Options {
            state_dir,
            mount_dir,
            binaries: sibling_binaries(),
            sys: PathBuf::from("/sys"),
            intel: cpu_is_intel(Path::new("/proc")),
        }
    }
}

/// The multiverse binaries beside this one (the CLI, its libvirt half, the agent).
fn sibling_binaries() -> Vec<PathBuf> {
    let Ok(me) = std::env::current_exe() else {
        return Vec::new();
    };
    let Some(dir) = me.parent() else {
        return Vec::new();
    };
    BINARIES
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect()
}

/// Whether the CPU is Intel: anything but AMD is taken for Intel, as is an unreadable cpuinfo.
fn cpu_is_intel(proc_root: &Path) -> bool {
    std::fs::read_to_string(proc_root.join("cpuinfo"))
        .map(|c| !c.contains("AuthenticAMD"))
        .unwrap_or(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn amd_is_the_exception() {
        let d = tempfile::tempdir().unwrap();
        assert!(cpu_is_intel(d.path()));
        std::fs::write(d.path().join("cpuinfo"), "vendor_id\t: AuthenticAMD\n").unwrap();
        assert!(!cpu_is_intel(d.path()));
        std::fs::write(d.path().join("cpuinfo"), "vendor_id\t: GenuineIntel\n").unwrap();
        assert!(cpu_is_intel(d.path()));
        let o = Options::for_this_machine("/s".into(), "/m".into());
        assert_eq!(o.sys, Path::new("/sys"));
    }
}
