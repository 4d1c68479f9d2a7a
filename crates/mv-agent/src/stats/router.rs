//! Router role: DHCP leases (dnsmasq's lease file), nftables counters, the conntrack count, and
//! whether the VPN and Tor are up.
//!
//! Each part is optional and independent: a missing lease file is "no leases", not an error; only
//! a failing `nft` (when enabled) or an unreadable-but-present file fails the collector.

use super::{read, CollectError};
use crate::config::RouterConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

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
    let tor_up = cfg
        .tor_socks
        .map(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok());
    Ok(RouterStats {
        leases,
        counters,
        conntrack,
        vpn_up,
        tor_up,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
