//! Host role: every libvirt domain's state, vCPU time, memory, block and network I/O.
//!
//! libvirt itself is read by a separate small process, `multiverse-agent-libvirt` (in the
//! `multiverse-agent` crate), which this module starts once and keeps: it writes one JSON line
//! per `collect` request on its stdin ([`HelperReply`]). Why a process and not the bindings
//! in-process: libvirt drags in ~8 MB of shared libraries (gnutls, glib, libxml2, ICU...) that
//! every guest's agent would otherwise load (and need installed) without ever using, and a hung or
//! crashing libvirt client cannot take the agent down with it. A helper that fails, hangs past the
//! collector timeout or dies is killed and restarted on a later tick; meanwhile only the `host`
//! section is stale.

#![cfg_attr(not(feature = "server"), allow(unused_imports))]

#[cfg(feature = "server")]
use super::{CollectCtx, CollectError};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

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

/// One line the helper writes per request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HelperReply {
    /// The domains.
    Ok(HostStats),
    /// libvirt's error, as text.
    Error(String),
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
        if end == block.len() {
            break;
        }
        rest = &block[end..];
    }
    out
}

#[cfg(feature = "server")]
struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

#[cfg(feature = "server")]
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The kept helper process; killed on drop.
#[derive(Default)]
#[cfg(feature = "server")]
pub struct LibvirtHelper(Mutex<Option<Running>>);

#[cfg(feature = "server")]
impl std::fmt::Debug for LibvirtHelper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LibvirtHelper")
    }
}

/// Where the helper binary is: the config's `host.helper`, else beside the running agent.
#[cfg(feature = "server")]
pub fn helper_path(configured: Option<&PathBuf>) -> PathBuf {
    if let Some(p) = configured {
        return p.clone();
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("multiverse-agent-libvirt")))
        .unwrap_or_else(|| PathBuf::from("multiverse-agent-libvirt"))
}

/// Asks the helper for every domain (blocking; the sampler bounds it with the collector timeout).
#[cfg(feature = "server")]
pub fn collect(ctx: &CollectCtx) -> Result<HostStats, CollectError> {
    let host = &ctx.cfg.config.host;
    let path = helper_path(host.helper.as_ref());
    let herr = |source| CollectError::Helper {
        path: path.clone(),
        source,
    };
    let mut guard = ctx.libvirt.0.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        let mut child = Command::new(&path)
            .arg("--uri")
            .arg(&host.uri)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(herr)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(herr(std::io::Error::other("no pipes")));
        };
        *guard = Some(Running {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        });
    }
    let result = (|| {
        let Some(r) = guard.as_mut() else {
            return Err(herr(std::io::Error::other("not running")));
        };
        r.stdin.write_all(b"collect\n").map_err(herr)?;
        r.stdin.flush().map_err(herr)?;
        let mut line = String::new();
        // Bounded: one reply line is at most a few hundred bytes per domain.
        let n = std::io::Read::take(&mut r.stdout, 16 << 20)
            .read_line(&mut line)
            .map_err(herr)?;
        if n == 0 {
            return Err(herr(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the helper exited",
            )));
        }
        match serde_json::from_str::<HelperReply>(&line) {
            Ok(HelperReply::Ok(s)) => Ok(s),
            Ok(HelperReply::Error(message)) => Err(CollectError::Libvirt {
                uri: host.uri.clone(),
                message,
            }),
            Err(e) => Err(herr(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e,
            ))),
        }
    })();
    if matches!(result, Err(CollectError::Helper { .. })) {
        // Start over with a fresh process next time (dropping kills this one).
        *guard = None;
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

    #[test]
    fn reply_lines() {
        let ok = serde_json::to_string(&HelperReply::Ok(HostStats::default())).unwrap();
        assert!(ok.starts_with("{\"ok\":"), "{ok}");
        let e: HelperReply = serde_json::from_str("{\"error\":\"gone\"}").unwrap();
        assert!(matches!(e, HelperReply::Error(m) if m == "gone"));
    }
}
