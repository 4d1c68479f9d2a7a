//! `multiverse-agent-libvirt`: the host agent's libvirt reader, a separate process so that only
//! it loads libvirt and its ~8 MB of shared libraries (guests' agents never do, and a hung libvirt
//! client cannot take the agent down).
//!
//! Protocol (see `mv_agent::stats::host`): for each line `collect` on stdin, one JSON line on
//! stdout, `{"ok": HostStats}` or `{"error": "..."}`. It exits at the end of stdin (when the agent
//! goes away). The libvirt connection is opened once and reopened after an error.
#![forbid(unsafe_code)]

use mv_agent::stats::host::{state_name, targets, DomainStats, HelperReply, HostStats};
use mv_libvirt::DomainState;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use virt::connect::Connect;
use virt::domain::Domain;

/// The libvirt connection, closed when dropped (the bindings do not close it themselves).
struct Conn(Connect);

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.0.close();
    }
}

fn domain_stats(d: &Domain) -> Result<DomainStats, virt::error::Error> {
    let info = d.get_info()?;
    let mut s = DomainStats {
        name: d.get_name()?,
        uuid: d.get_uuid_string().unwrap_or_default(),
        state: state_name(info.state).to_string(),
        vcpus: info.nr_virt_cpu,
        cpu_time_ns: info.cpu_time,
        memory_bytes: info.memory.saturating_mul(1024),
        max_memory_bytes: info.max_mem.saturating_mul(1024),
        ..Default::default()
    };
    // Block and interface counters exist only for a live domain (running, blocked on a
    // resource, or paused); its XML names the devices.
    if matches!(
        DomainState::from_raw(info.state),
        DomainState::Running | DomainState::Paused
    ) {
        let xml = d.get_xml_desc(0)?;
        for dev in targets(&xml, "disk") {
            if let Ok(b) = d.get_block_stats(&dev) {
                s.block_read_bytes += b.rd_bytes.max(0) as u64;
                s.block_write_bytes += b.wr_bytes.max(0) as u64;
            }
        }
        for dev in targets(&xml, "interface") {
            if let Ok(n) = d.interface_stats(&dev) {
                s.net_rx_bytes += n.rx_bytes.max(0) as u64;
                s.net_tx_bytes += n.tx_bytes.max(0) as u64;
            }
        }
    }
    Ok(s)
}

fn collect(conn: &mut Option<Conn>, uri: &str) -> Result<HostStats, virt::error::Error> {
    if conn.is_none() {
        *conn = Some(Conn(Connect::open(Some(uri))?));
    }
    let Some(c) = conn.as_ref() else {
        return Err(virt::error::Error::last_error());
    };
    let domains = c.0.list_all_domains(0)?;
    let mut out = Vec::with_capacity(domains.len());
    for d in &domains {
        // A domain undefined between the listing and this call is simply skipped.
        if let Ok(s) = domain_stats(d) {
            out.push(s);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(HostStats {
        uri: uri.to_string(),
        domains: out,
    })
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let uri = match (args.next().as_deref(), args.next()) {
        (Some("--uri"), Some(u)) => u,
        _ => {
            eprintln!("usage: multiverse-agent-libvirt --uri URI   (started by multiverse-agent)");
            return ExitCode::from(2);
        }
    };
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    let mut conn: Option<Conn> = None;
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() != "collect" {
            continue;
        }
        let reply = match collect(&mut conn, &uri) {
            Ok(s) => HelperReply::Ok(s),
            Err(e) => {
                conn = None;
                HelperReply::Error(e.to_string())
            }
        };
        let mut json = serde_json::to_string(&reply)
            .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode: {e}\"}}"));
        json.push('\n');
        if stdout
            .write_all(json.as_bytes())
            .and_then(|_| stdout.flush())
            .is_err()
        {
            break;
        }
    }
    ExitCode::SUCCESS
}
