//! `multiverse status`: every machine as libvirt sees it (defined, running, changed since
//! render) and, where its agent answers, as the machine itself says (hostname, uptime, host key,
//! router state).

use crate::common::{connect, select, topology, uri};
use crate::up::{machine_spec, up_error};
use multiverse::cli::virt::StatusArgs;
use multiverse::error::CliError;
use multiverse::global::Global;
use mv_libvirt::MachineSpec;
use mv_machines::Tree;
use std::time::Duration;

/// What the machine's agent said, when its socket exists.
#[derive(Debug, serde::Serialize)]
struct AgentStatus {
    /// The agent answered `/v1/stats`.
    reachable: bool,
    /// Its stats, when it answered.
    stats: Option<mv_agent::stats::Stats>,
    /// The guest's fully qualified hostname, as its agent reports it.
    hostname: Option<String>,
    /// Seconds since the guest booted.
    uptime_s: Option<u64>,
    /// The SSH host key fingerprints the guest's agent reports.
    ssh_host_keys: Vec<mv_agent::HostKey>,
    /// Whether the guest's Ed25519 host key is the one derived for it (`null`: no public
    /// record, or the guest reports none).
    host_key_matches: Option<bool>,
    /// Why not, when it did not.
    error: Option<String>,
}

/// One line of `status --json` (stable field names).
#[derive(Debug, serde::Serialize)]
struct StatusLine {
    #[serde(flatten)]
    machine: mv_libvirt::MachineStatus,
    /// `null` when the machine has no agent socket on this host.
    agent: Option<AgentStatus>,
}

/// Asks the agent behind the machine's channel socket, briefly: status must not hang on a guest
/// that is still booting.
fn agent_status(
    name: &mv_core::MachineName,
    derived: Option<&mv_identity::PublicRecord>,
) -> Option<AgentStatus> {
    let sock = mv_core::layout::agent_socket(name);
    if !sock.exists() {
        return None;
    }
    // A guest under TCG can take seconds to answer: a generous timeout, and one more try.
    let client = mv_agent::Client::unix(sock).with_timeout(Duration::from_secs(10));
    let unreachable = |e: mv_agent::ClientError| AgentStatus {
        reachable: false,
        stats: None,
        hostname: None,
        uptime_s: None,
        ssh_host_keys: Vec::new(),
        host_key_matches: None,
        error: Some(e.to_string()),
    };
    // Stats decide "reachable" (every agent serves them); `/v1/info`'s machine facts are extra.
    let stats = match client.stats().or_else(|_| client.stats()) {
        Ok(s) => s,
        Err(e) => return Some(unreachable(e)),
    };
    let info = client.info().ok();
    let (hostname, uptime_s, ssh_host_keys) = match info {
        Some(i) => (i.fqdn.or(i.hostname), i.boot_uptime_s, i.ssh_host_keys),
        None => (None, None, Vec::new()),
    };
    let want = derived
        .and_then(|r| r.identities.get(name.as_str()))
        .and_then(|p| mv_agent::fingerprint_line(&p.ssh_host_ed25519));
    let has = ssh_host_keys.iter().find(|k| k.algorithm == "ssh-ed25519");
    let host_key_matches = match (want, has) {
        (Some(w), Some(h)) => Some(w.fingerprint == h.fingerprint),
        _ => None,
    };
    Some(AgentStatus {
        reachable: true,
        stats: Some(stats),
        hostname,
        uptime_s,
        ssh_host_keys,
        host_key_matches,
        error: None,
    })
}

/// A router's state in a few words ([`mv_agent::stats::router::RouterStats::summary`]); `-` for
/// other roles.
fn router_summary(a: Option<&AgentStatus>) -> String {
    a.and_then(|a| a.stats.as_ref())
        .and_then(|s| s.router.as_ref())
        .and_then(|r| r.data.as_ref())
        .map_or_else(|| "-".into(), |r| r.summary())
}

/// `multiverse status`.
pub fn status(g: &Global, a: StatusArgs) -> Result<(), CliError> {
    let tree = Tree::new(&g.root);
    let topo = topology(&tree)?;
    let machines = select(&topo, &a.machines)?;
    let specs: Vec<MachineSpec> = machines
        .iter()
        .map(|m| machine_spec(&tree, m, false, None))
        .collect();
    let conn = connect(&uri(&a.conn, Some(&topo)))?;
    let st = mv_libvirt::status(&conn, &specs).map_err(up_error)?;
    let record = mv_identity::PublicRecord::load(&g.root).ok();
    let lines: Vec<StatusLine> = st
        .into_iter()
        .zip(&machines)
        .map(|(s, m)| StatusLine {
            agent: agent_status(&m.name, record.as_ref()),
            machine: s,
        })
        .collect();
    if g.json {
        multiverse::global::print_json(&lines)?;
        return Ok(());
    }
    println!(
        "{:<36} {:<8} {:<10} {:<12} {:<7} {:<36} {:<9} {:<30} CHANGED",
        "MACHINE", "DEFINED", "STATE", "AGENT", "UPTIME", "HOSTNAME", "HOST KEY", "ROUTER"
    );
    for l in &lines {
        let s = &l.machine;
        let changed = match s.changed_since_render {
            Some(true) => "yes (run `multiverse up`)",
            Some(false) => "no",
            None => "-",
        };
        let agent = match &l.agent {
            Some(AgentStatus {
                reachable: true, ..
            }) => "answering",
            Some(_) => "unreachable",
            None => "-",
        };
        let a = l.agent.as_ref().filter(|a| a.reachable);
        let uptime = a
            .and_then(|a| a.uptime_s)
            .map(mv_agent::stats::router::human_secs)
            .unwrap_or_else(|| "-".into());
        let hostname = a
            .and_then(|a| a.hostname.clone())
            .unwrap_or_else(|| "-".into());
        let key = match a.and_then(|a| a.host_key_matches) {
            Some(true) => "derived",
            Some(false) => "MISMATCH",
            None => "-",
        };
        let router = router_summary(a);
        println!(
            "{:<36} {:<8} {:<10} {agent:<12} {uptime:<7} {hostname:<36} {key:<9} {router:<30} {changed}",
            s.name,
            if s.defined { "yes" } else { "no" },
            s.state.as_str()
        );
    }
    Ok(())
}
