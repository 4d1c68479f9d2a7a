//! Parsers for the procfs files the system collectors read: `stat`, `meminfo`, `loadavg`,
//! `uptime`, `net/dev`, `diskstats`, `mounts`.
//!
//! Each parser takes the file's text and returns plain counters; rates are computed by the
//! sampler from two readings. They never panic on odd input (a property test feeds them noise):
//! a line that does not fit is skipped or reported as [`ParseError`].

use serde::{Deserialize, Serialize};

/// A line of a procfs file that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {what}")]
pub struct ParseError {
    /// The file (relative to the proc root).
    pub file: &'static str,
    /// What is missing or malformed.
    pub what: String,
}

impl mv_core::Classify for ParseError {
    /// A kernel file of an unexpected shape: never the person's input.
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

fn perr(file: &'static str, what: impl Into<String>) -> ParseError {
    ParseError {
        file,
        what: what.into(),
    }
}

/// CPU time per mode, in clock ticks (`/proc/stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// Modes in the kernel's order: user, nice, system, idle, iowait, irq, softirq, steal.
    pub modes: [u64; 8],
}

impl CpuTicks {
    /// Sum of every mode.
    pub fn total(&self) -> u64 {
        self.modes.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }
    /// Idle plus iowait.
    pub fn idle(&self) -> u64 {
        self.modes[3].saturating_add(self.modes[4])
    }
}

/// The mode names matching [`CpuTicks::modes`].
pub const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// `/proc/stat`: the aggregate line, then one per core (`cpuN`).
pub fn parse_stat(text: &str) -> Result<(CpuTicks, Vec<(u32, CpuTicks)>), ParseError> {
    let mut total = None;
    let mut cores = Vec::new();
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let Some(label) = it.next() else { continue };
        let Some(rest) = label.strip_prefix("cpu") else {
            continue;
        };
        let mut t = CpuTicks::default();
        for (slot, v) in t.modes.iter_mut().zip(&mut it) {
            *slot = v
                .parse()
                .map_err(|_| perr("stat", format!("bad number {v:?} on line {label}")))?;
        }
        if rest.is_empty() {
            total = Some(t);
        } else if let Ok(id) = rest.parse::<u32>() {
            cores.push((id, t));
        }
    }
    let total = total.ok_or_else(|| perr("stat", "no aggregate cpu line"))?;
    Ok((total, cores))
}

/// Memory and swap in bytes (`/proc/meminfo`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// MemTotal.
    pub total: u64,
    /// MemFree.
    pub free: u64,
    /// MemAvailable.
    pub available: u64,
    /// Buffers.
    pub buffers: u64,
    /// Cached.
    pub cached: u64,
    /// total - available.
    pub used: u64,
    /// SwapTotal.
    pub swap_total: u64,
    /// SwapFree.
    pub swap_free: u64,
    /// swap_total - swap_free.
    pub swap_used: u64,
}

/// `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Result<Memory, ParseError> {
    let mut m = Memory::default();
    let mut have_total = false;
    let mut have_avail = false;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut it = rest.split_ascii_whitespace();
        let Some(Ok(v)) = it.next().map(str::parse::<u64>) else {
            continue;
        };
        let bytes = if it.next() == Some("kB") {
            v.saturating_mul(1024)
        } else {
            v
        };
        match key {
            "MemTotal" => {
                m.total = bytes;
                have_total = true
            }
            "MemFree" => m.free = bytes,
            "MemAvailable" => {
                m.available = bytes;
                have_avail = true
            }
            "Buffers" => m.buffers = bytes,
            "Cached" => m.cached = bytes,
            "SwapTotal" => m.swap_total = bytes,
            "SwapFree" => m.swap_free = bytes,
            _ => {}
        }
    }
    if !have_total || !have_avail {
        return Err(perr("meminfo", "MemTotal or MemAvailable missing"));
    }
    m.used = m.total.saturating_sub(m.available);
    m.swap_used = m.swap_total.saturating_sub(m.swap_free);
    Ok(m)
}

/// `/proc/loadavg`: the three load averages and the number of scheduling entities.
pub fn parse_loadavg(text: &str) -> Result<([f64; 3], u64), ParseError> {
    let mut it = text.split_ascii_whitespace();
    let mut load = [0.0; 3];
    for l in &mut load {
        *l = it
            .next()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .ok_or_else(|| perr("loadavg", "expected three load averages"))?;
    }
    let threads = it
        .next()
        .and_then(|s| s.split_once('/'))
        .and_then(|(_, t)| t.parse().ok())
        .unwrap_or(0);
    Ok((load, threads))
}

/// `/proc/uptime`: seconds since boot.
pub fn parse_uptime(text: &str) -> Result<f64, ParseError> {
    text.split_ascii_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| perr("uptime", "expected seconds since boot"))
}

/// Counters of one network interface (`/proc/net/dev`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfaceCounters {
    /// Interface name.
    pub name: String,
    /// rx bytes, packets, errs, drop; tx bytes, packets, errs, drop.
    pub c: [u64; 8],
}

/// `/proc/net/dev`.
pub fn parse_net_dev(text: &str) -> Result<Vec<IfaceCounters>, ParseError> {
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<u64> = rest
            .split_ascii_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        if f.len() < 12 {
            return Err(perr("net/dev", format!("short line for {}", name.trim())));
        }
        out.push(IfaceCounters {
            name: name.trim().to_string(),
            c: [f[0], f[1], f[2], f[3], f[8], f[9], f[10], f[11]],
        });
    }
    Ok(out)
}

/// Counters of one block device (`/proc/diskstats`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskCounters {
    /// Device name (`vda`, `nvme0n1`).
    pub name: String,
    /// Reads completed.
    pub reads: u64,
    /// Bytes read (sectors * 512).
    pub read_bytes: u64,
    /// Writes completed.
    pub writes: u64,
    /// Bytes written.
    pub written_bytes: u64,
    /// Milliseconds spent doing I/O.
    pub io_ms: u64,
}

/// Whole disks only: partitions, loop, ram and floppy devices are left out, as node_exporter does
/// by default, so I/O is not counted twice.
fn keep_disk(name: &str) -> bool {
    if ["loop", "ram", "fd", "sr", "zram"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return false;
    }
    let is_part_sd = (name.starts_with("sd") || name.starts_with("vd") || name.starts_with("xvd"))
        && name.ends_with(|c: char| c.is_ascii_digit());
    let is_part_nvme = name.starts_with("nvme") && name.contains('p');
    let is_part_mmc = name.starts_with("mmcblk") && name.contains('p');
    !(is_part_sd || is_part_nvme || is_part_mmc)
}

/// `/proc/diskstats`.
pub fn parse_diskstats(text: &str) -> Result<Vec<DiskCounters>, ParseError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 14 {
            return Err(perr("diskstats", format!("short line {line:?}")));
        }
        if !keep_disk(f[2]) {
            continue;
        }
        let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
        out.push(DiskCounters {
            name: f[2].to_string(),
            reads: n(3),
            read_bytes: n(5).saturating_mul(512),
            writes: n(7),
            written_bytes: n(9).saturating_mul(512),
            io_ms: n(12),
        });
    }
    Ok(out)
}

/// A mounted filesystem worth reporting (`/proc/mounts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Source device.
    pub device: String,
    /// Mount point.
    pub mountpoint: String,
    /// Filesystem type.
    pub fstype: String,
}

const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "securityfs",
    "pstore",
    "bpf",
    "tracefs",
    "debugfs",
    "mqueue",
    "hugetlbfs",
    "configfs",
    "fusectl",
    "binfmt_misc",
    "autofs",
    "nsfs",
    "rpc_pipefs",
    "selinuxfs",
    "efivarfs",
];

/// `/proc/mounts`, without pseudo filesystems and without duplicates of one mount point.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let (Some(dev), Some(mp), Some(fs)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if PSEUDO_FS.contains(&fs) || mp.starts_with("/proc") || mp.starts_with("/sys") {
            continue;
        }
        // Octal escapes (\040 for a space) are how the kernel writes odd mount points.
        let mp = unescape_octal(mp);
        if out.iter().any(|m| m.mountpoint == mp) {
            continue;
        }
        out.push(Mount {
            device: dev.to_string(),
            mountpoint: mp,
            fstype: fs.to_string(),
        });
    }
    out
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push((v & 0xff) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stat() {
        let (t, cores) = parse_stat(
            "cpu  10 1 5 100 2 0 1 0 0 0\ncpu0 5 0 3 50 1 0 1 0 0 0\ncpu1 5 1 2 50 1 0 0 0 0 0\nintr 1 2\nprocesses 77\n",
        )
        .unwrap();
        assert_eq!(t.total(), 119);
        assert_eq!(t.idle(), 102);
        assert_eq!(cores.len(), 2);
        assert_eq!(cores[1].0, 1);
        assert!(parse_stat("intr 1\n").is_err());
    }

    #[test]
    fn meminfo() {
        let m = parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\nSwapTotal: 10 kB\nSwapFree: 4 kB\n").unwrap();
        assert_eq!(m.total, 1_024_000);
        assert_eq!(m.used, 400 * 1024);
        assert_eq!(m.swap_used, 6 * 1024);
        assert!(parse_meminfo("MemFree: 1 kB\n").is_err());
    }

    #[test]
    fn net_and_disk() {
        let net = "Inter-|   Receive |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0\n  eth0: 5 1 3 4 0 0 0 0 7 1 5 6 0 0 0 0\n";
        let n = parse_net_dev(net).unwrap();
        assert_eq!(n[1].name, "eth0");
        assert_eq!(n[1].c, [5, 1, 3, 4, 7, 1, 5, 6]);
        let d = parse_diskstats(
            " 254 0 vda 10 0 8 5 20 0 16 7 0 9 12 0 0 0 0\n 254 1 vda1 1 0 8 5 2 0 16 7 0 9 12\n 7 0 loop0 1 0 1 0 0 0 0 0 0 0 0\n",
        )
        .unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].read_bytes, 8 * 512);
        assert_eq!(d[0].written_bytes, 16 * 512);
    }

    #[test]
    fn mounts() {
        let m = parse_mounts("proc /proc proc rw 0 0\n/dev/vda1 / ext4 rw 0 0\ntmpfs /run tmpfs rw 0 0\n/dev/vdb /mnt/my\\040disk xfs rw 0 0\n/dev/vda1 / ext4 rw 0 0\n");
        assert_eq!(m.len(), 3);
        assert_eq!(m[2].mountpoint, "/mnt/my disk");
    }

    proptest! {
        // The parsers read files a broken or hostile kernel module could fill with anything.
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = parse_stat(&s);
            let _ = parse_meminfo(&s);
            let _ = parse_loadavg(&s);
            let _ = parse_uptime(&s);
            let _ = parse_net_dev(&s);
            let _ = parse_diskstats(&s);
            let _ = parse_mounts(&s);
        }
    }
}
