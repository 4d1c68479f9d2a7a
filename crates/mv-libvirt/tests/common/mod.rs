//! Shared helpers of the real-libvirtd tests: unique names and cleanup that runs even when a test
//! fails, so the shared daemon is left as it was found.
#![allow(dead_code, clippy::unwrap_used)]

use mv_libvirt::{Connection, ObjectKind};

/// The URI the tests use: the system daemon the test command starts (override with
/// MV_TEST_LIBVIRT_URI).
pub fn uri() -> String {
    std::env::var("MV_TEST_LIBVIRT_URI").unwrap_or_else(|_| "qemu:///system".to_string())
}

/// Requires libvirtd, connects to [`uri`] and gives a [`Cleanup`] for the objects the test defines.
pub fn connect() -> (Connection, Cleanup) {
    mv_testkit::require_tool("libvirtd");
    let u = uri();
    (Connection::open(&u).unwrap(), Cleanup::new(&u))
}

/// The error and its sources, as the CLI prints them.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A suffix no other test (or helper) uses at the same time.
pub fn unique() -> String {
    use rand::Rng;
    let n: u32 = rand::thread_rng().gen();
    format!("{}-{:08x}", std::process::id(), n)
}

/// Undefines the objects it holds when dropped (and destroys running domains first).
pub struct Cleanup {
    pub uri: String,
    pub objects: Vec<(ObjectKind, String)>,
}

impl Cleanup {
    pub fn new(uri: &str) -> Self {
        Cleanup {
            uri: uri.to_string(),
            objects: Vec::new(),
        }
    }
    pub fn add(&mut self, kind: ObjectKind, name: &str) {
        self.objects.push((kind, name.to_string()));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(c) = Connection::open(&self.uri) else {
            return;
        };
        for (kind, name) in self.objects.iter().rev() {
            if *kind == ObjectKind::Domain && c.domain_is_active(name).unwrap_or(false) {
                let _ = c.destroy_domain(name);
            }
            if *kind == ObjectKind::Pool && c.is_active(*kind, name).unwrap_or(false) {
                let _ = c.stop_pool(name);
            }
            if c.exists(*kind, name).unwrap_or(false) {
                let _ = c.undefine(*kind, name);
            }
        }
    }
}

/// A minimal domain that libvirt accepts and QEMU can start (no disk needed).
pub fn domain_xml(name: &str) -> String {
    format!(
        "<domain type='qemu'>\n  <name>{name}</name>\n  <memory unit='MiB'>32</memory>\n  <vcpu>1</vcpu>\n  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n  </os>\n  <features>\n    <acpi/>\n  </features>\n  <devices>\n    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n  </devices>\n</domain>\n"
    )
}

/// An isolated network (no forward), never started by the tests.
pub fn network_xml(name: &str, bridge: &str) -> String {
    format!("<network>\n  <name>{name}</name>\n  <bridge name='{bridge}'/>\n</network>\n")
}

/// A dir pool on `path`.
pub fn pool_xml(name: &str, path: &std::path::Path) -> String {
    format!(
        "<pool type='dir'>\n  <name>{name}</name>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
        path.display()
    )
}
