//! The manifest written beside every built image, `images/<name>.manifest.json`: what went into
//! the image (OS, release, arch, every package with its version), the SHA-256 of the qcow2, when
//! it was built, how it boots, and the build key (the hash of everything that decides the image's
//! content, so a cache can tell whether an image is what a build with given options would make).
//!
//! What this is not: a signature. The manifest sits beside the image in the same tree; it detects
//! a stale or damaged image, not a malicious one.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `images/<name>.manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always "multiverse-image/1".
    pub format: String,
    /// Image name (`images/<name>.qcow2`).
    pub name: String,
    /// "debian" or "alpine".
    pub os: String,
    /// bookworm, v3.20, …
    pub release: String,
    /// x86_64.
    pub arch: String,
    /// "cloud" or "generic" (Debian), "virt" (Alpine).
    pub kernel: String,
    /// Virtual disk size in bytes.
    pub size: u64,
    /// Package name → version, as the target's package database lists them.
    pub packages: BTreeMap<String, String>,
    /// SHA-256 of the qcow2 file, hex.
    pub sha256: String,
    /// RFC 3339 UTC.
    pub built_at: String,
    /// Seconds the build took.
    pub build_seconds: u64,
    /// How the image boots, firmware first.
    pub boot_chain: Vec<String>,
    /// The kernel command line in the image's boot loader configuration.
    pub cmdline: String,
    /// Hash of builder version, OS, release, arch, kernel, size and package list
    /// ([`crate::BuildOptions::build_key`]).
    pub build_key: String,
    /// `mv-image` builder version.
    pub builder: u32,
}

/// The current manifest format tag.
pub(crate) const FORMAT: &str = "multiverse-image/1";

/// Where the manifest of `image` (`images/N.qcow2`) lives: `images/N.manifest.json`.
pub(crate) fn path_for(image: &Path) -> PathBuf {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    image.with_file_name(format!("{stem}.manifest.json"))
}

/// Reads a manifest; `None` when it is missing or unreadable as a manifest.
pub(crate) fn read(path: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Packages of a Debian root: `var/lib/dpkg/status`, installed ones only.
pub fn dpkg_packages(root: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(root.join("var/lib/dpkg/status"))?;
    let mut out = BTreeMap::new();
    for para in text.split("\n\n") {
        let (mut name, mut version, mut installed) = (None, None, false);
        for line in para.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.trim().ends_with(" installed");
            }
        }
        if let (Some(n), Some(v), true) = (name, version, installed) {
            out.insert(n.to_string(), v.to_string());
        }
    }
    Ok(out)
}

/// Packages of an Alpine root: `lib/apk/db/installed` (`P:` name, `V:` version).
pub(crate) fn apk_packages(root: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(root.join("lib/apk/db/installed"))?;
    let mut out = BTreeMap::new();
    for para in text.split("\n\n") {
        let name = para.lines().find_map(|l| l.strip_prefix("P:"));
        let version = para.lines().find_map(|l| l.strip_prefix("V:"));
        if let (Some(n), Some(v)) = (name, version) {
            out.insert(n.to_string(), v.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_lists_installed_packages_only() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("var/lib/dpkg")).unwrap();
        std::fs::write(
            d.path().join("var/lib/dpkg/status"),
            "Package: a\nStatus: install ok installed\nVersion: 1.0\n\n\
             Package: b\nStatus: deinstall ok config-files\nVersion: 2\n\n\
             Package: c\nStatus: install ok installed\nVersion: 3:4-5\n",
        )
        .unwrap();
        let p = dpkg_packages(d.path()).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p["c"], "3:4-5");
    }

    #[test]
    fn manifest_path_is_beside_the_image() {
        assert_eq!(
            path_for(Path::new("/t/images/debian.qcow2")),
            PathBuf::from("/t/images/debian.manifest.json")
        );
    }
}
