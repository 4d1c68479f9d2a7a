//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4), written by hand into one
//! reused buffer.
//!
//! The text is rendered once per sample (not per scrape) from the [`Stats`] snapshot, so a scrape
//! costs a reference-count increment and a write: that is what keeps scrape latency far below
//! node_exporter's, which collects on every scrape. Names are `multiverse_*`; counters end in
//! `_total`; units are bytes and seconds. A section whose collector is stale still exports its last
//! values, and `multiverse_collector_up{collector=...}` says it is stale.

use crate::stats::procfs::CPU_MODES;
use crate::stats::Stats;
use crate::tasks::TaskInfo;
use std::fmt::{Display, Write};

/// The content type of the exposition.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Who is exporting.
#[derive(Debug, Clone)]
pub(crate) struct Meta<'a> {
    /// Role name.
    pub role: &'a str,
    /// Machine name.
    pub name: &'a str,
    /// The agent's own resident memory (bytes), if known.
    pub rss_bytes: Option<u64>,
}

struct W<'a> {
    out: &'a mut String,
}

fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

impl W<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_into(self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn b(v: bool) -> u8 {
    v as u8
}

/// Renders the whole exposition into `out` (cleared first; its capacity is reused).
pub(crate) fn render(out: &mut String, meta: &Meta<'_>, s: &Stats, tasks: &[TaskInfo]) {
    out.clear();
    let mut w = W { out };
    w.family(
        "multiverse_agent_info",
        "gauge",
        "The agent: role, name and version",
    );
    w.sample(
        "multiverse_agent_info",
        &[
            ("role", meta.role),
            ("name", meta.name),
            ("version", env!("CARGO_PKG_VERSION")),
        ],
        1,
    );
    if let Some(rss) = meta.rss_bytes {
        w.one(
            "multiverse_agent_resident_memory_bytes",
            "gauge",
            "The agent's own resident memory",
            rss,
        );
    }
    w.one(
        "multiverse_agent_samples_total",
        "counter",
        "Samples taken since the agent started",
        s.samples,
    );
    w.family(
        "multiverse_collector_up",
        "gauge",
        "1 when the collector's last run succeeded in time, 0 when its section is stale",
    );
    for (name, stale, _) in s.freshness() {
        w.sample("multiverse_collector_up", &[("collector", name)], b(!stale));
    }

    if let Some(c) = &s.cpu.data {
        w.family(
            "multiverse_cpu_seconds_total",
            "counter",
            "Seconds the CPUs spent in each mode",
        );
        let mut id = String::new();
        for core in &c.cores {
            id.clear();
            let _ = write!(id, "{}", core.id.unwrap_or(0));
            for (mode, v) in CPU_MODES.iter().zip(core.seconds) {
                w.sample(
                    "multiverse_cpu_seconds_total",
                    &[("cpu", &id), ("mode", mode)],
                    v,
                );
            }
        }
        w.family(
            "multiverse_cpu_usage_ratio",
            "gauge",
            "Busy fraction since the previous sample (cpu=\"all\": every core)",
        );
        w.sample(
            "multiverse_cpu_usage_ratio",
            &[("cpu", "all")],
            c.total.usage,
        );
        for core in &c.cores {
            id.clear();
            let _ = write!(id, "{}", core.id.unwrap_or(0));
            w.sample("multiverse_cpu_usage_ratio", &[("cpu", &id)], core.usage);
        }
    }
    if let Some(m) = &s.memory.data {
        for (n, h, v) in [
            ("multiverse_memory_total_bytes", "MemTotal", m.total),
            ("multiverse_memory_free_bytes", "MemFree", m.free),
            (
                "multiverse_memory_available_bytes",
                "MemAvailable",
                m.available,
            ),
            (
                "multiverse_memory_used_bytes",
                "MemTotal - MemAvailable",
                m.used,
            ),
            ("multiverse_memory_buffers_bytes", "Buffers", m.buffers),
            ("multiverse_memory_cached_bytes", "Cached", m.cached),
            ("multiverse_swap_total_bytes", "SwapTotal", m.swap_total),
            (
                "multiverse_swap_used_bytes",
                "SwapTotal - SwapFree",
                m.swap_used,
            ),
        ] {
            w.one(n, "gauge", h, v);
        }
    }
    if let Some(sys) = &s.system.data {
        w.one(
            "multiverse_load1",
            "gauge",
            "1-minute load average",
            sys.load[0],
        );
        w.one(
            "multiverse_load5",
            "gauge",
            "5-minute load average",
            sys.load[1],
        );
        w.one(
            "multiverse_load15",
            "gauge",
            "15-minute load average",
            sys.load[2],
        );
        w.one(
            "multiverse_uptime_seconds",
            "gauge",
            "Seconds since boot",
            sys.uptime_s,
        );
        w.one("multiverse_processes", "gauge", "Processes", sys.processes);
        w.one(
            "multiverse_threads",
            "gauge",
            "Threads (scheduling entities)",
            sys.threads,
        );
    }
    if let Some(d) = &s.disks.data {
        type DiskField = fn(&crate::stats::Disk) -> f64;
        let fields: [(&str, &str, DiskField); 5] = [
            ("multiverse_disk_read_bytes_total", "Bytes read", |x| {
                x.read_bytes as f64
            }),
            (
                "multiverse_disk_written_bytes_total",
                "Bytes written",
                |x| x.written_bytes as f64,
            ),
            (
                "multiverse_disk_reads_completed_total",
                "Reads completed",
                |x| x.reads as f64,
            ),
            (
                "multiverse_disk_writes_completed_total",
                "Writes completed",
                |x| x.writes as f64,
            ),
            (
                "multiverse_disk_io_time_seconds_total",
                "Seconds spent doing I/O",
                |x| x.io_ms as f64 / 1000.0,
            ),
        ];
        for (name, help, f) in fields {
            w.family(name, "counter", help);
            for dev in &d.devices {
                w.sample(name, &[("device", &dev.name)], f(dev));
            }
        }
        type FsField = fn(&crate::stats::Filesystem) -> u64;
        let fs_fields: [(&str, &str, FsField); 3] = [
            ("multiverse_filesystem_size_bytes", "Filesystem size", |x| {
                x.size
            }),
            ("multiverse_filesystem_free_bytes", "Free bytes", |x| x.free),
            (
                "multiverse_filesystem_avail_bytes",
                "Bytes available to non-root users",
                |x| x.avail,
            ),
        ];
        for (name, help, f) in fs_fields {
            w.family(name, "gauge", help);
            for fs in &d.filesystems {
                w.sample(
                    name,
                    &[
                        ("mountpoint", &fs.mountpoint),
                        ("device", &fs.device),
                        ("fstype", &fs.fstype),
                    ],
                    f(fs),
                );
            }
        }
    }
    if let Some(n) = &s.network.data {
        type NetField = fn(&crate::stats::Interface) -> u64;
        let fields: [(&str, &str, NetField); 8] = [
            (
                "multiverse_network_receive_bytes_total",
                "Bytes received",
                |x| x.rx_bytes,
            ),
            (
                "multiverse_network_transmit_bytes_total",
                "Bytes sent",
                |x| x.tx_bytes,
            ),
            (
                "multiverse_network_receive_packets_total",
                "Packets received",
                |x| x.rx_packets,
            ),
            (
                "multiverse_network_transmit_packets_total",
                "Packets sent",
                |x| x.tx_packets,
            ),
            (
                "multiverse_network_receive_errors_total",
                "Receive errors",
                |x| x.rx_errors,
            ),
            (
                "multiverse_network_transmit_errors_total",
                "Transmit errors",
                |x| x.tx_errors,
            ),
            (
                "multiverse_network_receive_drop_total",
                "Received packets dropped",
                |x| x.rx_dropped,
            ),
            (
                "multiverse_network_transmit_drop_total",
                "Sent packets dropped",
                |x| x.tx_dropped,
            ),
        ];
        for (name, help, f) in fields {
            w.family(name, "counter", help);
            for i in n {
                w.sample(name, &[("device", &i.name)], f(i));
            }
        }
    }
    if let Some(h) = s.host.as_ref().and_then(|x| x.data.as_ref()) {
        w.family(
            "multiverse_domain_info",
            "gauge",
            "A libvirt domain and its state",
        );
        for d in &h.domains {
            w.sample(
                "multiverse_domain_info",
                &[("domain", &d.name), ("uuid", &d.uuid), ("state", &d.state)],
                1,
            );
        }
        type DomField = fn(&crate::stats::host::DomainStats) -> f64;
        let fields: [(&str, &str, &str, DomField); 7] = [
            (
                "multiverse_domain_running",
                "gauge",
                "1 when running",
                |d| (d.state == "running") as u8 as f64,
            ),
            ("multiverse_domain_vcpus", "gauge", "Virtual CPUs", |d| {
                d.vcpus as f64
            }),
            (
                "multiverse_domain_cpu_seconds_total",
                "counter",
                "vCPU time",
                |d| d.cpu_time_ns as f64 / 1e9,
            ),
            (
                "multiverse_domain_memory_bytes",
                "gauge",
                "Current memory",
                |d| d.memory_bytes as f64,
            ),
            (
                "multiverse_domain_block_read_bytes_total",
                "counter",
                "Bytes read from disks",
                |d| d.block_read_bytes as f64,
            ),
            (
                "multiverse_domain_block_written_bytes_total",
                "counter",
                "Bytes written to disks",
                |d| d.block_write_bytes as f64,
            ),
            (
                "multiverse_domain_network_receive_bytes_total",
                "counter",
                "Bytes received",
                |d| d.net_rx_bytes as f64,
            ),
        ];
        for (name, kind, help, f) in fields {
            w.family(name, kind, help);
            for d in &h.domains {
                w.sample(name, &[("domain", &d.name)], f(d));
            }
        }
        w.family(
            "multiverse_domain_network_transmit_bytes_total",
            "counter",
            "Bytes sent",
        );
        for d in &h.domains {
            w.sample(
                "multiverse_domain_network_transmit_bytes_total",
                &[("domain", &d.name)],
                d.net_tx_bytes,
            );
        }
    }
    if let Some(r) = s.router.as_ref().and_then(|x| x.data.as_ref()) {
        w.one(
            "multiverse_dhcp_leases",
            "gauge",
            "Current DHCP leases",
            r.leases.len(),
        );
        w.family(
            "multiverse_nft_counter_bytes_total",
            "counter",
            "nftables counter bytes",
        );
        for c in &r.counters {
            w.sample(
                "multiverse_nft_counter_bytes_total",
                &[("table", &c.table), ("name", &c.name)],
                c.bytes,
            );
        }
        w.family(
            "multiverse_nft_counter_packets_total",
            "counter",
            "nftables counter packets",
        );
        for c in &r.counters {
            w.sample(
                "multiverse_nft_counter_packets_total",
                &[("table", &c.table), ("name", &c.name)],
                c.packets,
            );
        }
        if let Some(c) = r.conntrack {
            w.one(
                "multiverse_conntrack_entries",
                "gauge",
                "Tracked connections",
                c,
            );
        }
        if let Some(v) = r.vpn_up {
            w.one(
                "multiverse_vpn_up",
                "gauge",
                "1 when the VPN interface exists",
                b(v),
            );
        }
        if let Some(v) = r.tor_up {
            w.one(
                "multiverse_tor_up",
                "gauge",
                "1 when Tor's SOCKS port accepts",
                b(v),
            );
        }
        if let Some(p) = r.tor_bootstrap {
            w.one(
                "multiverse_tor_bootstrap_percent",
                "gauge",
                "Tor's bootstrap progress",
                p,
            );
        }
        if let Some(wg) = &r.wireguard {
            if let Some(age) = wg.handshake_age_secs {
                w.one(
                    "multiverse_wireguard_handshake_age_seconds",
                    "gauge",
                    "Seconds since the VPN peer's last WireGuard handshake",
                    age,
                );
            }
            w.one(
                "multiverse_wireguard_received_bytes",
                "counter",
                "Bytes received from the VPN peer",
                wg.rx_bytes,
            );
            w.one(
                "multiverse_wireguard_sent_bytes",
                "counter",
                "Bytes sent to the VPN peer",
                wg.tx_bytes,
            );
        }
        if let Some(o) = &r.openvpn {
            w.one(
                "multiverse_openvpn_connected",
                "gauge",
                "1 when OpenVPN's management socket says CONNECTED",
                b(o.connected()),
            );
            if let (true, Some(age)) = (o.connected(), o.since_secs) {
                w.one(
                    "multiverse_openvpn_connected_seconds",
                    "gauge",
                    "Seconds since the OpenVPN tunnel came up",
                    age,
                );
            }
            if let Some(rx) = o.rx_bytes {
                w.one(
                    "multiverse_openvpn_received_bytes_total",
                    "counter",
                    "Bytes OpenVPN received on its link",
                    rx,
                );
            }
            if let Some(tx) = o.tx_bytes {
                w.one(
                    "multiverse_openvpn_sent_bytes_total",
                    "counter",
                    "Bytes OpenVPN sent on its link",
                    tx,
                );
            }
        }
    }
    if let Some(list) = s.services.as_ref().and_then(|x| x.data.as_ref()) {
        w.family(
            "multiverse_service_up",
            "gauge",
            "1 when the service is running",
        );
        for sv in list {
            w.sample(
                "multiverse_service_up",
                &[("service", &sv.name)],
                b(sv.state == "running"),
            );
        }
    }
    w.family(
        "multiverse_task_last_success",
        "gauge",
        "1 when the task's last run succeeded (absent: never ran)",
    );
    for t in tasks {
        if let Some(r) = t.last.first() {
            w.sample(
                "multiverse_task_last_success",
                &[("task", &t.name)],
                b(r.ok),
            );
        }
    }
    w.family(
        "multiverse_task_last_run_timestamp_seconds",
        "gauge",
        "When the task last started",
    );
    for t in tasks {
        if let Some(r) = t.last.first() {
            w.sample(
                "multiverse_task_last_run_timestamp_seconds",
                &[("task", &t.name)],
                r.started_ms as f64 / 1000.0,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_labels_and_has_types() {
        let meta = Meta {
            role: "service",
            name: "a\"b\\c\nd",
            rss_bytes: Some(10),
        };
        let mut out = String::new();
        render(&mut out, &meta, &Stats::default(), &[]);
        assert!(out.contains(r#"name="a\"b\\c\nd""#), "{out}");
        assert!(out.contains("# TYPE multiverse_collector_up gauge"));
        assert!(out.contains("multiverse_collector_up{collector=\"cpu\"} 0"));
        assert!(out.ends_with('\n'));
    }

    #[test]
    fn an_openvpn_router_exports_its_tunnel() {
        use crate::stats::openvpn::{parse_state_line, TunnelState};
        use crate::stats::router::RouterStats;
        let meta = Meta {
            role: "router",
            name: "galaxy",
            rss_bytes: None,
        };
        let mut o = parse_state_line(
            "1700000000,CONNECTED,SUCCESS,10.64.0.2,10.99.0.1,1194,,,",
            1_700_000_042,
        )
        .unwrap();
        o.rx_bytes = Some(5120);
        o.tx_bytes = Some(4096);
        let mut s = Stats {
            router: Some(Default::default()),
            ..Default::default()
        };
        let set = |s: &mut Stats, o| {
            if let Some(r) = s.router.as_mut() {
                r.data = Some(RouterStats {
                    openvpn: Some(o),
                    ..Default::default()
                });
            }
        };
        set(&mut s, o.clone());
        let mut out = String::new();
        render(&mut out, &meta, &s, &[]);
        for line in [
            "multiverse_openvpn_connected 1",
            "multiverse_openvpn_connected_seconds 42",
            "multiverse_openvpn_received_bytes_total 5120",
            "multiverse_openvpn_sent_bytes_total 4096",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line} in {out}");
        }
        o.state = TunnelState::Reconnecting;
        set(&mut s, o);
        render(&mut out, &meta, &s, &[]);
        assert!(out.lines().any(|l| l == "multiverse_openvpn_connected 0"));
        assert!(!out.contains("multiverse_openvpn_connected_seconds"));
    }
}
