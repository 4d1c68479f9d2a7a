//! Router role: DHCP leases (dnsmasq's lease file), nftables counters, the conntrack count,
//! whether the VPN and Tor are up, the WireGuard peer's last handshake and traffic (`wg show IF
//! dump`), the OpenVPN client's tunnel state (asked on its management socket,
//! [`super::openvpn`]), and Tor's bootstrap progress (asked on tor's control socket with its
//! cookie).
//!
//! Each part is optional and independent: a missing lease file is "no leases", not an error; only
//! a failing `nft` (when enabled) or an unreadable-but-present file fails the collector.

#![cfg_attr(not(feature = "server"), allow(unused_imports))]

use super::openvpn::OpenVpnState;
#[cfg(feature = "server")]
use super::{read, CollectError};
#[cfg(feature = "server")]
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
    /// The WireGuard tunnel's peer (the VPN provider); `None` when the VPN is not WireGuard or
    /// its interface is missing.
    #[serde(default)]
    pub wireguard: Option<WireguardPeer>,
    /// Tor's bootstrap progress in percent (`GETINFO status/bootstrap-phase`); `None` when Tor
    /// is not configured or its control socket does not answer.
    #[serde(default)]
    pub tor_bootstrap: Option<u8>,
    /// The OpenVPN client's tunnel as its management interface reports it; `None` when the VPN
    /// is not OpenVPN (no `openvpn_management` socket configured) or the socket does not answer
    /// (OpenVPN is not running: then `vpn_up` is false too, its tun interface gone with it).
    #[serde(default)]
    pub openvpn: Option<OpenVpnState>,
}

impl RouterStats {
    /// The router's state in a few words, as `multiverse status` and `top` show it: its DHCP
    /// leases, the VPN's last WireGuard handshake (`vpn 12s ago`) or OpenVPN's state (`vpn
    /// connected 2m`: up for two minutes; `vpn RECONNECTING 40s`: any other state in OpenVPN's
    /// own word, and for how long) or else whether its interface exists, Tor's bootstrap
    /// progress (or whether it listens), and the packets of each named nftables counter
    /// (`to_tor 1.2k`), which rise with the traffic the router carries or drops.
    pub fn summary(&self) -> String {
        let n = self.leases.len();
        let mut parts = vec![format!("{n} lease{}", if n == 1 { "" } else { "s" })];
        match (&self.wireguard, &self.openvpn, self.vpn_up) {
            (Some(w), _, _) => parts.push(match w.handshake_age_secs {
                Some(age) => format!("vpn {} ago", human_secs(age)),
                None => "vpn: no handshake".into(),
            }),
            (None, Some(o), _) => {
                let state = if o.connected() {
                    "connected"
                } else {
                    o.state.as_str()
                };
                parts.push(match o.since_secs {
                    Some(age) => format!("vpn {state} {}", human_secs(age)),
                    None => format!("vpn {state}"),
                });
            }
            (None, None, Some(up)) => parts.push(if up { "vpn up" } else { "vpn DOWN" }.into()),
            (None, None, None) => {}
        }
        match (self.tor_bootstrap, self.tor_up) {
            (Some(p), _) => parts.push(format!("tor {p}%")),
            (None, Some(up)) => parts.push(if up { "tor up" } else { "tor DOWN" }.into()),
            (None, None) => {}
        }
        for c in &self.counters {
            parts.push(format!("{} {}", c.name, human_count(c.packets)));
        }
        parts.join(", ")
    }
}

/// Seconds as `42s`, `7m` or `3h`.
pub fn human_secs(s: u64) -> String {
    match s {
        0..=99 => format!("{s}s"),
        100..=5999 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

/// A count as `999`, `1.2k` or `3.4M`.
fn human_count(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// The VPN provider as the WireGuard interface sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireguardPeer {
    /// The peer's endpoint (`10.255.0.1:51820`), if known.
    pub endpoint: Option<String>,
    /// Seconds since the last handshake; `None` = never.
    pub handshake_age_secs: Option<u64>,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
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

/// `wg show IF dump`: the interface line, then one line per peer (`public-key preshared-key
/// endpoint allowed-ips latest-handshake rx tx keepalive`, tab-separated). The first peer, with
/// its handshake's age at `now` (seconds since the epoch).
pub fn parse_wg_dump(text: &str, now: u64) -> Option<WireguardPeer> {
    let peer = text.lines().nth(1)?;
    let f: Vec<&str> = peer.split('\t').collect();
    if f.len() < 7 {
        return None;
    }
    let handshake: u64 = f[4].parse().ok()?;
    Some(WireguardPeer {
        endpoint: (f[2] != "(none)").then(|| f[2].to_string()),
        handshake_age_secs: (handshake != 0).then(|| now.saturating_sub(handshake)),
        rx_bytes: f[5].parse().ok()?,
        tx_bytes: f[6].parse().ok()?,
    })
}

/// The `PROGRESS=N` of a `status/bootstrap-phase` reply on tor's control port.
pub fn parse_bootstrap(reply: &str) -> Option<u8> {
    let line = reply
        .lines()
        .find(|l| l.starts_with("250-status/bootstrap-phase="))?;
    let progress = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("PROGRESS="))?;
    progress.parse().ok().filter(|p| *p <= 100)
}

/// Asks tor's control socket for its bootstrap progress, authenticating with the cookie file
/// tor keeps beside it (`control.authcookie`, Debian's tor-service-defaults-torrc). One second
/// for the whole exchange; any failure is `None`.
#[cfg(feature = "server")]
fn tor_bootstrap(socket: &Path) -> Option<u8> {
    use std::io::{Read, Write};
    let cookie = std::fs::read(socket.with_file_name("control.authcookie")).ok()?;
    let hex: String = cookie.iter().map(|b| format!("{b:02X}")).collect();
    let mut s = std::os::unix::net::UnixStream::connect(socket).ok()?;
    let limit = Some(std::time::Duration::from_secs(1));
    s.set_read_timeout(limit).ok()?;
    s.set_write_timeout(limit).ok()?;
    s.write_all(
        format!("AUTHENTICATE {hex}\r\nGETINFO status/bootstrap-phase\r\nQUIT\r\n").as_bytes(),
    )
    .ok()?;
    let mut reply = String::new();
    // QUIT makes tor close the connection: read to the end, at most 64 KiB.
    s.take(65_536).read_to_string(&mut reply).ok()?;
    parse_bootstrap(&reply)
}

/// Reads the router state (blocking; run with a timeout).
#[cfg(feature = "server")]
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
    let wireguard = cfg
        .vpn_interface
        .as_ref()
        .filter(|i| i.starts_with("wg"))
        .and_then(|i| {
            let out = std::process::Command::new("wg")
                .args(["show", i, "dump"])
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .ok()?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs();
            parse_wg_dump(&String::from_utf8_lossy(&out.stdout), now)
        });
    let tor_bootstrap = cfg.tor_control.as_deref().and_then(tor_bootstrap);
    // One second for the whole exchange, as for tor's: a local socket answers in milliseconds.
    let openvpn = cfg.openvpn_management.as_deref().and_then(|socket| {
        super::openvpn::query(socket, std::time::Duration::from_secs(1))
            .map_err(|e| tracing::debug!(error = %e, "OpenVPN's management socket"))
            .ok()
    });
    Ok(RouterStats {
        leases,
        counters,
        conntrack,
        vpn_up,
        tor_up,
        wireguard,
        tor_bootstrap,
        openvpn,
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
    fn the_summary_names_leases_tunnel_tor_and_counters() {
        let mut r = RouterStats {
            leases: vec![Lease {
                expires: 0,
                mac: "52:54:00:00:00:01".into(),
                ip: "10.2.2.50".into(),
                hostname: "browser".into(),
            }],
            counters: vec![NftCounter {
                table: "inet filter".into(),
                name: "to_tor".into(),
                packets: 1234,
                bytes: 99_000,
            }],
            tor_bootstrap: Some(100),
            tor_up: Some(true),
            ..Default::default()
        };
        assert_eq!(r.summary(), "1 lease, tor 100%, to_tor 1.2k");
        r.leases.clear();
        r.counters.clear();
        r.tor_bootstrap = None;
        r.tor_up = Some(false);
        r.wireguard = Some(WireguardPeer {
            endpoint: None,
            handshake_age_secs: Some(150),
            rx_bytes: 1,
            tx_bytes: 1,
        });
        assert_eq!(r.summary(), "0 leases, vpn 2m ago, tor DOWN");
        r.wireguard = None;
        r.vpn_up = Some(false);
        r.tor_up = None;
        assert_eq!(r.summary(), "0 leases, vpn DOWN");
        let mut o = super::super::openvpn::parse_state_line(
            "1700000000,CONNECTED,SUCCESS,10.64.0.2,10.99.0.1,1194,,,",
            1_700_000_150,
        )
        .unwrap();
        r.openvpn = Some(o.clone());
        r.vpn_up = Some(true);
        assert_eq!(r.summary(), "0 leases, vpn connected 2m");
        o.state = super::super::openvpn::TunnelState::Reconnecting;
        o.since_secs = Some(40);
        r.openvpn = Some(o.clone());
        assert_eq!(r.summary(), "0 leases, vpn RECONNECTING 40s");
        o.since_secs = None;
        r.openvpn = Some(o);
        assert_eq!(r.summary(), "0 leases, vpn RECONNECTING");
        // JSON from an agent before the OpenVPN field reads as "no OpenVPN".
        let old: RouterStats = serde_json::from_str(
            r#"{"leases":[],"counters":[],"conntrack":null,"vpn_up":true,"tor_up":null}"#,
        )
        .unwrap();
        assert!(old.openvpn.is_none() && old.wireguard.is_none());
        assert_eq!(human_count(999), "999");
        assert_eq!(human_count(2_500_000), "2.5M");
        assert_eq!(human_secs(7200), "2h");
    }

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
    fn wireguard_dump() {
        let dump = "PRIV\tPUB\t36426\t51820\nPEERPUB\t(none)\t10.255.0.1:51820\t0.0.0.0/0\t1700000000\t1200\t3400\t25\n";
        let p = parse_wg_dump(dump, 1_700_000_030).unwrap();
        assert_eq!(p.endpoint.as_deref(), Some("10.255.0.1:51820"));
        assert_eq!(p.handshake_age_secs, Some(30));
        assert_eq!((p.rx_bytes, p.tx_bytes), (1200, 3400));
        let never = dump
            .replace("1700000000", "0")
            .replace("10.255.0.1:51820", "(none)");
        let p = parse_wg_dump(&never, 1_700_000_030).unwrap();
        assert_eq!((p.handshake_age_secs, p.endpoint), (None, None));
        assert_eq!(parse_wg_dump("PRIV\tPUB\t1\toff\n", 0), None, "no peer");
        assert_eq!(parse_wg_dump("x\nshort\tline\n", 0), None);
    }

    #[test]
    fn tor_bootstrap_reply() {
        let ok = "250 OK\r\n250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY=\"Done\"\r\n250 OK\r\n250 closing connection\r\n";
        assert_eq!(parse_bootstrap(ok), Some(100));
        assert_eq!(parse_bootstrap(&ok.replace("100", "45")), Some(45));
        assert_eq!(parse_bootstrap("515 Authentication failed\r\n"), None);
        assert_eq!(parse_bootstrap(&ok.replace("100", "250")), None);
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
