//! Router role: DHCP leases (dnsmasq's lease file), nftables counters, the conntrack count, and
//! whether the VPN and Tor are up.
//!
//! Each part is optional and independent: a missing lease file is "no leases", not an error; only
//! a failing `nft` (when enabled) or an unreadable-but-present file fails the collector.

use super::{read, CollectError};
use crate::config::RouterConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `router` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RouterStats {
    /// Current DHCP leases.
    pub leases: Vec<Lease>,
    /// nftables named counters.
    pub counters: Vec<NftCounter>,
    /// Tracked connections (`nf_conntrack_count`), if conntrack is loaded.
    pub conntrack: Option<u64>,
    /// The VPN interface exists; `None` when no VPN is configured.
    pub vpn_up: Option<bool>,
    /// Tor's SOCKS port accepts connections; `None` when Tor is not configured.
    pub tor_up: Option<bool>,
}

/// One dnsmasq lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Expiry (seconds since the epoch; 0 = infinite).
    pub expires: u64,
    /// Hardware address.
    pub mac: String,
    /// Leased address.
    pub ip: String,
    /// Client hostname (`*` when unknown).
    pub hostname: String,
}

/// One nftables counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftCounter {
    /// Table family and name (`inet filter`).
    pub table: String,
    /// Counter name.
    pub name: String,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// dnsmasq's lease file: `expiry mac ip hostname client-id` per line.
pub fn parse_leases(text: &str) -> Vec<Lease> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_ascii_whitespace();
            let expires = it.next()?.parse().ok()?;
            Some(Lease {
                expires,
                mac: it.next()?.to_string(),
                ip: it.next()?.to_string(),
                hostname: it.next().unwrap_or("*").to_string(),
            })
        })
        .collect()
}

/// `nft --json list counters` output.
pub fn parse_nft_counters(json: &str) -> Result<Vec<NftCounter>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let items = v
        .get("nftables")
        .and_then(|n| n.as_array())
        .ok_or("no \"nftables\" array")?;
    Ok(items
        .iter()
        .filter_map(|i| i.get("counter"))
        .map(|c| NftCounter {
            table: format!(
                "{} {}",
                c.get("family").and_then(|x| x.as_str()).unwrap_or(""),
                c.get("table").and_then(|x| x.as_str()).unwrap_or("")
            ),
            name: c
                .get("name")
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_string(),
            packets: c.get("packets").and_then(|x| x.as_u64()).unwrap_or(0),
            bytes: c.get("bytes").and_then(|x| x.as_u64()).unwrap_or(0),
        })
        .collect())
}

/// Reads the router state (blocking; run with a timeout).
pub fn collect(cfg: &RouterConfig, proc_root: &Path) -> Result<RouterStats, CollectError> {
    let leases = match std::fs::read_to_string(&cfg.leases) {
        Ok(t) => parse_leases(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(CollectError::Read {
                path: cfg.leases.clone(),
                source,
            })
        }
    };
    let counters = if cfg.nft {
        let out = std::process::Command::new("nft")
            .args(["--json", "list", "counters"])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| CollectError::Command {
                program: "nft".into(),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(CollectError::Command {
                program: "nft --json list counters".into(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        parse_nft_counters(&String::from_utf8_lossy(&out.stdout)).map_err(|detail| {
            CollectError::Command {
                program: "nft --json list counters".into(),
                detail,
            }
        })?
    } else {
        Vec::new()
    };
    let conntrack = read(proc_root, "sys/net/netfilter/nf_conntrack_count")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let vpn_up = cfg
        .vpn_interface
        .as_ref()
        .map(|i| Path::new("/sys/class/net").join(i).exists());
    // "Tor up" = a socket listens on Tor's port, read from the kernel's socket table. Not a
    // connection: to a TransPort a local connection is a loop (tor logs "Possible loop in your
    // NAT rules?"), and tor 0.4.9 was seen to crash on it.
    let tor_up = cfg.tor_socks.map(|a| {
        let table = if a.is_ipv4() { "net/tcp" } else { "net/tcp6" };
        read(proc_root, table).is_ok_and(|t| listens_on(&t, a))
    });
    Ok(RouterStats {
        leases,
        counters,
        conntrack,
        vpn_up,
        tor_up,
    })
}

/// Whether `/proc/net/tcp` (or `tcp6`) text has a socket in LISTEN (state `0A`) on `addr`, or
/// on the wildcard address at its port.
pub fn listens_on(table: &str, addr: std::net::SocketAddr) -> bool {
    let want_port = addr.port();
    table.lines().skip(1).any(|line| {
        let mut f = line.split_whitespace();
        let (Some(_slot), Some(local), Some(_remote), Some(state)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            return false;
        };
        let Some((ip_hex, port_hex)) = local.split_once(':') else {
            return false;
        };
        if state != "0A" || u16::from_str_radix(port_hex, 16).ok() != Some(want_port) {
            return false;
        }
        match (addr.ip(), ip_hex.len()) {
            (std::net::IpAddr::V4(v4), 8) => u32::from_str_radix(ip_hex, 16)
                .map(|n| {
                    // The kernel prints the address as a host-order u32 (little-endian here).
                    let ip = std::net::Ipv4Addr::from(n.to_le_bytes());
                    ip == v4 || ip.is_unspecified()
                })
                .unwrap_or(false),
            (std::net::IpAddr::V6(v6), 32) => {
                let mut bytes = [0u8; 16];
                for (i, word) in bytes.chunks_mut(4).enumerate() {
                    let Ok(n) = u32::from_str_radix(&ip_hex[i * 8..i * 8 + 8], 16) else {
                        return false;
                    };
                    word.copy_from_slice(&n.to_le_bytes());
                }
                let ip = std::net::Ipv6Addr::from(bytes);
                ip == v6 || ip.is_unspecified()
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_found_in_the_kernels_table() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:2350 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 1 1 0 100 0 0 10 0\n   1: 0102020A:14E9 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 2 1 0 100 0 0 10 0\n   2: 0100007F:0050 0100007F:2350 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0\n   3: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0\n";
        let at = |s: &str| listens_on(t, s.parse().unwrap());
        assert!(at("127.0.0.1:9040"));
        assert!(at("10.2.2.1:5353"));
        assert!(!at("10.2.2.1:9040"));
        // Established, not listening: port 80 only appears as a connection.
        assert!(!at("127.0.0.1:80"));
        // The wildcard listener serves every address.
        assert!(at("10.9.9.9:22"));
        let t6 = "  sl  local_address                         remote_address                        st\n   0: 00000000000000000000000001000000:2350 00000000000000000000000000000000:0000 0A\n";
        assert!(listens_on(t6, "[::1]:9040".parse().unwrap()));
        assert!(!listens_on(t6, "[::1]:9041".parse().unwrap()));
        assert!(!listens_on(
            "garbage\n1: zz:zz 0 0A\n",
            "127.0.0.1:1".parse().unwrap()
        ));
    }

    #[test]
    fn leases() {
        let l = parse_leases("1700000000 52:54:00:aa:bb:cc 10.0.0.50 galaxy 01:52:54\n0 52:54:00:00:00:01 10.0.0.9 * *\nbad\n");
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].hostname, "galaxy");
        assert_eq!(l[1].expires, 0);
    }

    #[test]
    fn nft_counters() {
        let j = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},{"counter":{"family":"inet","name":"fwd","table":"filter","handle":1,"packets":7,"bytes":900}}]}"#;
        let c = parse_nft_counters(j).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].table, "inet filter");
        assert_eq!(c[0].bytes, 900);
        assert!(parse_nft_counters("{}").is_err());
    }
}
