//! Host role: every libvirt domain's state, vCPU time, memory, block and network I/O, read from
//! the running libvirtd through the `virt` bindings.
//!
//! The connection is opened once and kept; when a call fails it is closed and reopened on the next
//! tick, so a restarted libvirtd is picked up and a dead one only marks the `host` section stale.

use super::{CollectCtx, CollectError};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use virt::connect::Connect;
use virt::domain::Domain;

/// `host` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostStats {
    /// The libvirt URI.
    pub uri: String,
    /// Every defined domain, running or not.
    pub domains: Vec<DomainStats>,
}

/// One libvirt domain.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DomainStats {
    /// Domain name (the machine's fqdn in a Multiverse tree).
    pub name: String,
    /// UUID.
    pub uuid: String,
    /// `running`, `paused`, `shutoff`, ...
    pub state: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// CPU time used (ns).
    pub cpu_time_ns: u64,
    /// Current memory (bytes).
    pub memory_bytes: u64,
    /// Maximum memory (bytes).
    pub max_memory_bytes: u64,
    /// Bytes read from all disks.
    pub block_read_bytes: u64,
    /// Bytes written to all disks.
    pub block_write_bytes: u64,
    /// Bytes received on all interfaces.
    pub net_rx_bytes: u64,
    /// Bytes sent on all interfaces.
    pub net_tx_bytes: u64,
}

/// The persistent libvirt connection; closed on drop (the bindings do not close it themselves).
#[derive(Default)]
pub struct LibvirtConn(Mutex<Option<Connect>>);

impl std::fmt::Debug for LibvirtConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LibvirtConn")
    }
}

impl Drop for LibvirtConn {
    fn drop(&mut self) {
        if let Ok(mut g) = self.0.lock() {
            if let Some(mut c) = g.take() {
                let _ = c.close();
            }
        }
    }
}

/// The state names in libvirt's `virDomainState` order.
pub fn state_name(state: u32) -> &'static str {
    match state {
        1 => "running",
        2 => "blocked",
        3 => "paused",
        4 => "shutdown",
        5 => "shutoff",
        6 => "crashed",
        7 => "pmsuspended",
        _ => "nostate",
    }
}

/// The `dev` of every `<target dev=.../>` inside `<element>...</element>` of a domain XML
/// (disks: `vda`; interfaces: `vnet3`). A small scan, not an XML parser: libvirt writes this
/// XML itself, in a fixed shape.
pub fn targets(xml: &str, element: &str) -> Vec<String> {
    let open = format!("<{element} ");
    let close = format!("</{element}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let block = &rest[i..];
        let end = block.find(&close).unwrap_or(block.len());
        let body = &block[..end];
        if let Some(t) = body.find("<target ") {
            let tag = &body[t..];
            let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
            for q in ["dev='", "dev=\""] {
                if let Some(d) = tag.find(q) {
                    let v = &tag[d + q.len()..];
                    if let Some(e) = v.find(['\'', '"']) {
                        out.push(v[..e].to_string());
                    }
                }
            }
        }
        rest = &block[end.min(block.len())..];
        if end == block.len() {
            break;
        }
    }
    out
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
    if info.state == 1 || info.state == 3 {
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

/// Reads every domain (blocking; run with a timeout).
pub fn collect(ctx: &CollectCtx) -> Result<HostStats, CollectError> {
    let uri = ctx.cfg.config.host.uri.clone();
    let err = |source| CollectError::Libvirt {
        uri: uri.clone(),
        source,
    };
    let mut guard = ctx.libvirt.0.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        *guard = Some(Connect::open(Some(&uri)).map_err(err)?);
    }
    let result = (|| {
        let conn = guard
            .as_ref()
            .ok_or_else(|| err(virt::error::Error::last_error()))?;
        let domains = conn.list_all_domains(0).map_err(err)?;
        let mut out = Vec::with_capacity(domains.len());
        for d in &domains {
            // A domain undefined between the listing and this call is simply skipped.
            if let Ok(s) = domain_stats(d) {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(HostStats {
            uri: uri.clone(),
            domains: out,
        })
    })();
    if result.is_err() {
        if let Some(mut c) = guard.take() {
            let _ = c.close();
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_targets() {
        let xml = "<domain><devices><disk type='file' device='disk'><source file='/a'/><target dev='vda' bus='virtio'/></disk>\
<disk type=\"file\"><target dev=\"vdb\"/></disk><interface type='network'><target dev='vnet7'/></interface></devices></domain>";
        assert_eq!(targets(xml, "disk"), vec!["vda", "vdb"]);
        assert_eq!(targets(xml, "interface"), vec!["vnet7"]);
        assert!(targets("<disk ", "disk").is_empty());
    }

    #[test]
    fn states() {
        assert_eq!(state_name(1), "running");
        assert_eq!(state_name(5), "shutoff");
        assert_eq!(state_name(99), "nostate");
    }
}
