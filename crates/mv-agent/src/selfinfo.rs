//! What a machine says about itself in `/v1/info`: the kernel's hostname and the fully qualified
//! name it resolves to (as `hostname --fqdn` finds it in `/etc/hosts`), the time since boot and
//! the fingerprints of its SSH host keys. The host compares these with what it derived for the
//! machine (`multiverse status`), so a guest that booted someone else's disk or kept the base
//! image's keys shows up at once.
//!
//! It also says which seed provisioned it (`/var/lib/multiverse/seed-id`, written by the image's
//! seed stage), so `multiverse up` can wait for a changed seed to be applied, not only for the
//! agent to answer.
//!
//! Read from files only (`/proc/sys/kernel/hostname`, `/etc/hosts`, `/proc/uptime`,
//! `/etc/ssh/*.pub`, the seed-id), each size-limited; a missing file is an absent field, never an
//! error.

#![cfg_attr(not(feature = "server"), allow(dead_code))]

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// One SSH host key as `ssh-keygen -l -E sha256` names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostKey {
    /// Key type (`ssh-ed25519`, `ecdsa-sha2-nistp256`).
    pub algorithm: String,
    /// `SHA256:` and the unpadded base64 of the SHA-256 of the key blob.
    pub fingerprint: String,
}

/// The fields of `/v1/info` that describe the machine.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SelfInfo {
    /// The kernel's hostname.
    pub hostname: Option<String>,
    /// The fully qualified name: the hostname if it has a dot, else the canonical name of the
    /// `/etc/hosts` line that lists it (Debian's `127.0.1.1 FQDN short`).
    pub fqdn: Option<String>,
    /// Seconds since the kernel booted.
    pub boot_uptime_s: Option<u64>,
    /// The SSH host keys in `/etc/ssh`, sorted by algorithm.
    pub ssh_host_keys: Vec<HostKey>,
    /// The seed-id of the last seed applied here (hex), if any.
    pub seed_id: Option<String>,
}

fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    let mut s = String::new();
    f.take(16 * 1024).read_to_string(&mut s).ok()?;
    Some(s)
}

/// Reads the machine's own facts under `root` (`/` on a machine; a folder in tests).
pub(crate) fn read(root: &Path) -> SelfInfo {
    let hostname = read_small(&root.join("proc/sys/kernel/hostname"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let fqdn = hostname.as_deref().map(|h| {
        if h.contains('.') {
            return h.to_string();
        }
        read_small(&root.join("etc/hosts"))
            .and_then(|hosts| canonical_name(&hosts, h))
            .unwrap_or_else(|| h.to_string())
    });
    let boot_uptime_s = read_small(&root.join("proc/uptime"))
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .and_then(|s| s.parse::<f64>().ok())
        .map(|f| f as u64);
    let mut ssh_host_keys = Vec::new();
    if let Ok(dir) = std::fs::read_dir(root.join("etc/ssh")) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !(name.starts_with("ssh_host_") && name.ends_with("_key.pub")) {
                continue;
            }
            if let Some(k) = read_small(&e.path()).and_then(|l| fingerprint_line(&l)) {
                ssh_host_keys.push(k);
            }
        }
    }
    ssh_host_keys.sort_by(|a, b| a.algorithm.cmp(&b.algorithm));
    let seed_id = read_small(&root.join("var/lib/multiverse/seed-id"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_hexdigit()));
    SelfInfo {
        hostname,
        fqdn,
        boot_uptime_s,
        ssh_host_keys,
        seed_id,
    }
}

/// The first name of the `/etc/hosts` line that lists `short` among its names.
fn canonical_name(hosts: &str, short: &str) -> Option<String> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut names = line.split_whitespace().skip(1);
        let canonical = names.next()?;
        let listed = canonical == short || names.any(|n| n == short);
        listed.then(|| canonical.to_string())
    })
}

/// The fingerprint of an OpenSSH public key line (`TYPE BASE64 [COMMENT]`).
pub fn fingerprint_line(line: &str) -> Option<HostKey> {
    let mut parts = line.split_whitespace();
    let algorithm = parts.next()?.to_string();
    let blob = base64_decode(parts.next()?)?;
    let digest = Sha256::digest(&blob);
    Some(HostKey {
        algorithm,
        fingerprint: format!("SHA256:{}", base64_encode_nopad(&digest)),
    })
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode_nopad(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        // A key made by `ssh-keygen -t ed25519`; `ssh-keygen -l -E sha256 -f` printed the value below.
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBA+Iw3dCAc0+cWkfMB9utfqlr3BdFLUjkCZwNx5RZsR root@vm";
        let k = fingerprint_line(line).unwrap();
        assert_eq!(k.algorithm, "ssh-ed25519");
        assert_eq!(
            k.fingerprint,
            "SHA256:71UaCmAafAciB0wG65lnGAwbNM2EJg42lkFLa+fw1F0"
        );
    }

    #[test]
    fn fqdn_comes_from_the_hosts_line_of_the_short_name() {
        let hosts = "127.0.0.1 localhost\n# 127.0.1.1 wrong.example star\n127.0.1.1\tstar.router.multiverse star\n";
        assert_eq!(
            canonical_name(hosts, "star").as_deref(),
            Some("star.router.multiverse")
        );
        assert_eq!(canonical_name(hosts, "galaxy"), None);
        let tmp = std::env::temp_dir().join(format!("mv-selfinfo-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("proc/sys/kernel")).unwrap();
        std::fs::create_dir_all(tmp.join("etc")).unwrap();
        std::fs::write(tmp.join("proc/sys/kernel/hostname"), "star\n").unwrap();
        std::fs::write(tmp.join("etc/hosts"), hosts).unwrap();
        let me = read(&tmp);
        assert_eq!(me.hostname.as_deref(), Some("star"));
        assert_eq!(me.fqdn.as_deref(), Some("star.router.multiverse"));
        assert_eq!(me.seed_id, None);
        // The seed stage's record: a hex id is reported, anything else is not.
        std::fs::create_dir_all(tmp.join("var/lib/multiverse")).unwrap();
        let id = "0a".repeat(32);
        std::fs::write(tmp.join("var/lib/multiverse/seed-id"), format!("{id}\n")).unwrap();
        assert_eq!(read(&tmp).seed_id.as_deref(), Some(id.as_str()));
        std::fs::write(tmp.join("var/lib/multiverse/seed-id"), "not hex\n").unwrap();
        assert_eq!(read(&tmp).seed_id, None);
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn base64_round_trips() {
        for n in 0..40u8 {
            let v: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            let enc = base64_encode_nopad(&v);
            assert_eq!(base64_decode(&enc).unwrap(), v);
        }
        assert!(base64_decode("a$b").is_none());
    }
}
