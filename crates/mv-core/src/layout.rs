//! The on-disk layout of a Multiverse tree (docs/design.md "The tree on disk").
//!
//! [`Tree`] only computes paths; it never touches the disk. Every crate that reads or writes the
//! tree asks it, so the layout is decided here once:
//!
//! ```text
//! multiverse.toml                       Tree::config_file
//! identity/                             Tree::identity_dir
//! identity/root.sealed                  Tree::sealed_root (the root, sealed with the passphrase)
//! identity/public.json                  Tree::public_identity
//! identity/rotate.json                  Tree::rotate_journal (while `identity rotate` runs)
//! machines/<fqdn>/machine.toml          Tree::machine_toml
//! machines/<fqdn>/domain.xml            Tree::domain_xml
//! machines/<fqdn>/provision/            Tree::provision_dir
//! machines/<fqdn>/disk.qcow2            Tree::disk (extra disks: disk-1.qcow2, ...)
//! machines/<fqdn>/seed.img              Tree::seed_disk (0600: the provisioning the guest applies)
//! machines/<fqdn>/seed-id               Tree::seed_id (SHA-256 of that seed's contents)
//! machines/<fqdn>/console.log           Tree::console_log (the serial console, kept by libvirt)
//! images/<base>.qcow2                   Tree::image
//! storage/<fqdn>.qcow2 -> ../machines/<fqdn>/disk.qcow2   Tree::storage_link (pool "multiverse")
//! libvirt/networks/<name>.xml           Tree::network_xml
//! libvirt/pool.xml                      Tree::pool_xml
//! pass/                                 Tree::pass_dir
//! pass-keys/                            Tree::pass_keys_dir (the store's OpenPGP keys)
//! guard/guard.toml                      Tree::guard_config (the armed kill switch)
//! guard/watch.pid                       Tree::guard_pidfile (the watcher's locked pidfile)
//! .multiverse-migrate/                  Tree::migrate_state_dir (migrate's journal and snapshots)
//! templates/                            Tree::templates_dir (overrides of the built-in templates)
//! ```
//!
//! Runtime sockets live outside the tree (they are state of a boot, not something to keep):
//! [`agent_socket`], [`ssh_socket`], [`AGENT_API_SOCKET`].
//!
//! What this module is not: a reader or writer; the crates that own each file read and write it.

use crate::MachineName;
use std::path::{Path, PathBuf};

/// Name of the libvirt storage pool over `storage/`.
pub const POOL_NAME: &str = "multiverse";

/// Where the host side of a machine's agent channel (`org.multiverse.agent.0`) listens. Outside the
/// tree on purpose: a socket is runtime state, not something to keep in git.
pub fn agent_socket(name: &MachineName) -> PathBuf {
    PathBuf::from(format!("/run/multiverse/agent/{name}.sock"))
}

/// Where the host side of a machine's SSH channel (`multiverse ssh`) listens; outside the tree,
/// like [`agent_socket`].
pub fn ssh_socket(name: &MachineName) -> PathBuf {
    PathBuf::from(format!("/run/multiverse/ssh/{name}.sock"))
}

/// The default socket of the agent's HTTP API on a machine (`[api] socket`).
pub const AGENT_API_SOCKET: &str = "/run/multiverse/agent.sock";

/// The virtio-serial port name of the agent channel.
pub const AGENT_CHANNEL: &str = "org.multiverse.agent.0";

/// A Multiverse tree rooted at a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    root: PathBuf,
}

impl Tree {
    /// The tree at `root` (nothing is checked or created).
    pub fn new(root: impl Into<PathBuf>) -> Tree {
        Tree { root: root.into() }
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `multiverse.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("multiverse.toml")
    }

    /// `identity/`.
    pub fn identity_dir(&self) -> PathBuf {
        self.root.join("identity")
    }

    /// `identity/root.sealed`: the root secret sealed with the person's passphrase.
    pub fn sealed_root(&self) -> PathBuf {
        self.identity_dir().join("root.sealed")
    }

    /// `identity/public.json`: the public identity of every name derived so far.
    pub fn public_identity(&self) -> PathBuf {
        self.identity_dir().join("public.json")
    }

    /// `identity/rotate.json`: the journal of an unfinished `identity rotate`.
    pub fn rotate_journal(&self) -> PathBuf {
        self.identity_dir().join("rotate.json")
    }

    /// `machines/`.
    pub fn machines_dir(&self) -> PathBuf {
        self.root.join("machines")
    }

    /// `machines/<fqdn>/`.
    pub fn machine_dir(&self, name: &MachineName) -> PathBuf {
        self.machines_dir().join(name.as_str())
    }

    /// `machines/<fqdn>/machine.toml`.
    pub fn machine_toml(&self, name: &MachineName) -> PathBuf {
        self.machine_dir(name).join("machine.toml")
    }

    /// `machines/<fqdn>/domain.xml`.
    pub fn domain_xml(&self, name: &MachineName) -> PathBuf {
        self.machine_dir(name).join("domain.xml")
    }

    /// `machines/<fqdn>/luks-secret.xml`: the libvirt secret (definition only, never a value)
    /// that holds the key of an encrypted machine's disks.
    pub fn luks_secret_xml(&self, name: &MachineName) -> PathBuf {
        self.machine_dir(name).join("luks-secret.xml")
    }

    /// `machines/<fqdn>/provision/`.
    pub fn provision_dir(&self, name: &MachineName) -> PathBuf {
        self.machine_dir(name).join("provision")
    }

    /// `machines/<fqdn>/seed.img`: the read-only seed disk the guest provisions itself from at
    /// its first boot (it holds the machine's secrets, so it is 0600).
    pub fn seed_disk(&self, name: &MachineName) -> PathBuf {
        self.machine_dir(name).join("seed.img")
    }

    /// `machines/<fqdn>/seed-id`: the seed-id of `seed.img` (public).
    pub fn seed_id(&self, name: &MachineName) -> PathBuf {
        self.machine_dir(name).join("seed-id")
    }

    /// `machines/<fqdn>/console.log`: the machine's serial console, appended by libvirt.
    pub fn console_log(&self, name: &MachineName) -> PathBuf {
        self.machine_dir(name).join("console.log")
    }

    /// `machines/<fqdn>/disk.qcow2`, the first disk.
    pub fn disk(&self, name: &MachineName) -> PathBuf {
        self.disk_n(name, 0)
    }

    /// Disk number `n` of a machine: `disk.qcow2` for 0, `disk-<n>.qcow2` after.
    pub fn disk_n(&self, name: &MachineName, n: usize) -> PathBuf {
        self.machine_dir(name).join(disk_file(n))
    }

    /// `storage/`, the folder of the libvirt dir pool [`POOL_NAME`].
    pub fn storage_dir(&self) -> PathBuf {
        self.root.join("storage")
    }

    /// `storage/<fqdn>.qcow2` (a symlink to `../machines/<fqdn>/disk.qcow2`).
    pub fn storage_link(&self, name: &MachineName) -> PathBuf {
        self.storage_link_n(name, 0)
    }

    /// The pool volume name of disk `n`: `<fqdn>.qcow2`, then `<fqdn>-<n>.qcow2`.
    pub fn volume_name(name: &MachineName, n: usize) -> String {
        if n == 0 {
            format!("{name}.qcow2")
        } else {
            format!("{name}-{n}.qcow2")
        }
    }

    /// `storage/<volume>` for disk `n`.
    pub fn storage_link_n(&self, name: &MachineName, n: usize) -> PathBuf {
        self.storage_dir().join(Tree::volume_name(name, n))
    }

    /// The relative target of a storage symlink: `../machines/<fqdn>/disk.qcow2`.
    pub fn storage_link_target(name: &MachineName, n: usize) -> PathBuf {
        Path::new("..")
            .join("machines")
            .join(name.as_str())
            .join(disk_file(n))
    }

    /// `images/`.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    /// `images/<base>.qcow2`.
    pub fn image(&self, base: &str) -> PathBuf {
        self.images_dir().join(format!("{base}.qcow2"))
    }

    /// `pass/`.
    pub fn pass_dir(&self) -> PathBuf {
        self.root.join("pass")
    }

    /// `pass-keys/`: the OpenPGP keys of the pass store (when it is not keyed by the identity).
    pub fn pass_keys_dir(&self) -> PathBuf {
        self.root.join("pass-keys")
    }

    /// `guard/`: the kill switch's files.
    pub fn guard_dir(&self) -> PathBuf {
        self.root.join("guard")
    }

    /// `guard/guard.toml`: the armed state of the kill switch.
    pub fn guard_config(&self) -> PathBuf {
        self.guard_dir().join("guard.toml")
    }

    /// `guard/watch.pid`: the kill-switch watcher's pidfile (locked while it runs).
    pub fn guard_pidfile(&self) -> PathBuf {
        self.guard_dir().join("watch.pid")
    }

    /// `.multiverse-migrate/`: `migrate`'s journal and snapshots.
    pub fn migrate_state_dir(&self) -> PathBuf {
        self.root.join(".multiverse-migrate")
    }

    /// `templates/`: files here override the built-in templates of the same name.
    pub fn templates_dir(&self) -> PathBuf {
        self.root.join("templates")
    }

    /// `libvirt/`.
    pub fn libvirt_dir(&self) -> PathBuf {
        self.root.join("libvirt")
    }

    /// `libvirt/networks/`.
    pub fn networks_dir(&self) -> PathBuf {
        self.libvirt_dir().join("networks")
    }

    /// `libvirt/networks/<name>.xml`.
    pub fn network_xml(&self, network: &str) -> PathBuf {
        self.networks_dir().join(format!("{network}.xml"))
    }

    /// `libvirt/pool.xml`.
    pub fn pool_xml(&self) -> PathBuf {
        self.libvirt_dir().join("pool.xml")
    }
}

fn disk_file(n: usize) -> String {
    if n == 0 {
        "disk.qcow2".to_string()
    } else {
        format!("disk-{n}.qcow2")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths() {
        let t = Tree::new("/var/multiverse");
        let n = MachineName::parse("star.router.multiverse").unwrap();
        assert_eq!(
            t.config_file(),
            Path::new("/var/multiverse/multiverse.toml")
        );
        assert_eq!(
            t.disk(&n),
            Path::new("/var/multiverse/machines/star.router.multiverse/disk.qcow2")
        );
        assert_eq!(
            t.storage_link(&n),
            Path::new("/var/multiverse/storage/star.router.multiverse.qcow2")
        );
        // The relative link target resolves to the disk from storage/.
        let resolved = t.storage_dir().join(Tree::storage_link_target(&n, 0));
        assert_eq!(
            resolved,
            Path::new("/var/multiverse/storage/../machines/star.router.multiverse/disk.qcow2")
        );
        assert_eq!(t.disk_n(&n, 2).file_name().unwrap(), "disk-2.qcow2");
        assert_eq!(
            t.network_xml("net0"),
            Path::new("/var/multiverse/libvirt/networks/net0.xml")
        );
        assert_eq!(
            t.sealed_root(),
            Path::new("/var/multiverse/identity/root.sealed")
        );
        assert_eq!(
            t.guard_pidfile(),
            Path::new("/var/multiverse/guard/watch.pid")
        );
        assert_eq!(
            t.guard_config(),
            Path::new("/var/multiverse/guard/guard.toml")
        );
        assert_eq!(t.pass_keys_dir(), Path::new("/var/multiverse/pass-keys"));
        assert_eq!(t.pass_dir(), Path::new("/var/multiverse/pass"));
        assert_eq!(t.identity_dir(), Path::new("/var/multiverse/identity"));
        assert_eq!(
            t.public_identity(),
            Path::new("/var/multiverse/identity/public.json")
        );
        assert_eq!(
            t.rotate_journal(),
            Path::new("/var/multiverse/identity/rotate.json")
        );
        assert_eq!(
            t.migrate_state_dir(),
            Path::new("/var/multiverse/.multiverse-migrate")
        );
        assert_eq!(AGENT_API_SOCKET, "/run/multiverse/agent.sock");
        assert_eq!(
            ssh_socket(&n),
            Path::new("/run/multiverse/ssh/star.router.multiverse.sock")
        );
    }
}
