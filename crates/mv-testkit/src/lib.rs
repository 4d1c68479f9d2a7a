//! `mv-testkit`: helpers for tests that drive real tools. Only ever a dev-dependency.
//!
//! - [`require_tool`]: a test that needs `gpg`, `virsh`, `tor`... fails with a clear message when
//!   the tool is missing; it never skips (the README's test command installs every tool).
//! - [`golden`]: compare rendered output with a committed golden file; `UPDATE_GOLDEN=1` rewrites it.
//! - [`workspace_root`]: the repository root, for fixtures and spec vectors.
//! - [`fixture_pci_device`]: a PCI device in a fixture sysfs tree (for host checks and vfio).
//! - [`files_under`]: every file below a folder, for comparing trees.
//! - [`udevadm_verify`] / [`assert_udevadm_accepts`]: check udev rule files with the real
//!   `udevadm verify`.
//! - [`write_vpn_settings`]: a galaxy router's `vpn.toml` and its 0600 WireGuard key file.
//! - [`openvpn`]: OpenVPN provider settings, a throw-away PKI (`openssl`) and a real `openvpn`
//!   server in a network namespace.
//! - [`sshd`]: a real `sshd` on a loopback port with given host keys and authorized_keys.
//! - [`tornet`]: a private Tor network (authorities, relays, an exit, a client) in a network
//!   namespace the test creates, for onion services and Tor traffic without the real network.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod gnupg;
pub mod openvpn;
pub mod sshd;
pub mod tornet;

/// Returns the full path of `tool`, or panics saying how to install it.
pub fn require_tool(tool: &str) -> PathBuf {
    let search = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&search).collect();
    // sshd, udevadm and friends live in sbin, which is not on every PATH.
    for extra in ["/usr/sbin", "/sbin", "/usr/local/sbin"] {
        dirs.push(PathBuf::from(extra));
    }
    for d in dirs {
        let p = d.join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "required tool `{tool}` is not installed; run `scripts/install-deps.sh` (as root) first. \
         Tests that need real tools fail rather than skip."
    );
}

/// The workspace root (the folder holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Compares `actual` with the golden file at `path` (absolute, or relative to the workspace root).
/// With `UPDATE_GOLDEN=1` in the environment, (re)writes the file instead.
pub fn golden(path: impl AsRef<Path>, actual: &str) {
    let path = path.as_ref();
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        workspace_root().join(path)
    };
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "golden file {} unreadable ({e}); run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let diff = similar::TextDiff::from_lines(expected.as_str(), actual);
        panic!(
            "output differs from golden file {} (UPDATE_GOLDEN=1 to accept):\n{}",
            path.display(),
            diff.unified_diff().header("golden", "actual")
        );
    }
}

/// Runs a command, panicking with its stderr when it fails; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the real `udevadm verify` (required: see [`require_tool`]) on the rule files `paths`;
/// returns its output, for tests that expect a rule to be refused as well as accepted.
pub fn udevadm_verify(paths: &[&Path]) -> Output {
    let udevadm = require_tool("udevadm");
    Command::new(&udevadm)
        .arg("verify")
        .args(paths)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", udevadm.display()))
}

/// Asserts that `udevadm verify` accepts every rule file in `paths`, showing what it said if not.
pub fn assert_udevadm_accepts(paths: &[&Path]) {
    let out = udevadm_verify(paths);
    assert!(
        out.status.success(),
        "udevadm verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Adds a PCI device to the fixture sysfs tree `sys`, laid out like the kernel's:
/// `devices/pci0000:00/<addr>` with `vendor`, `device` and `class` (from `id` = `vvvv:dddd`),
/// its `bus/pci/devices` link, the `driver` link to `bus/pci/drivers/<driver>` when bound, and the
/// IOMMU group's links both ways when it has one.
pub fn fixture_pci_device(
    sys: &Path,
    addr: &str,
    id: &str,
    class: &str,
    driver: Option<&str>,
    iommu_group: Option<u32>,
) {
    use std::os::unix::fs::symlink;
    let dev = sys.join("devices/pci0000:00").join(addr);
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::create_dir_all(sys.join("bus/pci/devices")).unwrap();
    let (vendor, device) = id
        .split_once(':')
        .unwrap_or_else(|| panic!("PCI id `{id}` is not vvvv:dddd"));
    std::fs::write(dev.join("vendor"), format!("0x{vendor}\n")).unwrap();
    std::fs::write(dev.join("device"), format!("0x{device}\n")).unwrap();
    std::fs::write(dev.join("class"), format!("{class}\n")).unwrap();
    symlink(
        format!("../../../devices/pci0000:00/{addr}"),
        sys.join("bus/pci/devices").join(addr),
    )
    .unwrap();
    if let Some(drv) = driver {
        std::fs::create_dir_all(sys.join("bus/pci/drivers").join(drv)).unwrap();
        symlink(
            format!("../../../bus/pci/drivers/{drv}"),
            dev.join("driver"),
        )
        .unwrap();
    }
    if let Some(g) = iommu_group {
        let gd = sys.join(format!("kernel/iommu_groups/{g}/devices"));
        std::fs::create_dir_all(&gd).unwrap();
        symlink(
            format!("../../../../devices/pci0000:00/{addr}"),
            gd.join(addr),
        )
        .unwrap();
        symlink(
            format!("../../../kernel/iommu_groups/{g}"),
            dev.join("iommu_group"),
        )
        .unwrap();
    }
}

/// Every file (not folder) below `dir`, recursively, in the order the file system lists them; an
/// unreadable or missing folder contributes nothing.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A fixed WireGuard private key for tests whose tunnel never comes up (the key of `wg(8)`'s
/// manual page example).
pub const TEST_WIREGUARD_KEY: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";

/// Writes WireGuard provider settings into `vpn_toml` (a galaxy router's
/// `machines/<fqdn>/provision/vpn.toml`), with `wg0.key` (0600) beside it holding
/// `private_key`: endpoint and port, this end's tunnel `address`, and the provider's public key.
pub fn write_vpn_settings(
    vpn_toml: &Path,
    endpoint: &str,
    address: &str,
    peer_public_key: &str,
    private_key: &str,
) {
    use std::os::unix::fs::PermissionsExt;
    let dir = vpn_toml.parent().expect("vpn.toml has a folder");
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let key = dir.join("wg0.key");
    std::fs::write(&key, format!("{private_key}\n")).expect("write wg0.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod wg0.key");
    std::fs::write(
        vpn_toml,
        format!(
            "endpoint = \"{endpoint}\"\nport = 51820\naddress = \"{address}\"\ndns = \"10.64.0.1\"\npeer_public_key = \"{peer_public_key}\"\nprivate_key_file = \"wg0.key\"\n"
        ),
    )
    .expect("write vpn.toml");
}
