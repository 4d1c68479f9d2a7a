//! `multiverse top`: the live dashboard of the agents (`mv_agent::run_top`), or with `--json` one
//! snapshot of every agent's status (`mv_agent::fleet_status`).
//!
//! Which agents: every `--socket` and `--tcp` given. With none: when `--root` holds a
//! `multiverse.toml`, one row per machine of the tree (the host's agent at
//! `/run/multiverse/agent.sock`, every other machine through it over its virtio-serial channel,
//! shown DOWN with the reason when it has no agent); otherwise the local agent and, if it is a
//! host agent, every guest it reaches (unless `--no-guests`).

use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_agent::Client;
use std::path::PathBuf;
use std::time::Duration;

/// Where the local agent listens unless told otherwise (the agent's config default).
pub const DEFAULT_SOCKET: &str = mv_core::layout::AGENT_API_SOCKET;

/// Arguments of `multiverse top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// An agent's unix socket (repeatable; default /run/multiverse/agent.sock)
    #[arg(long = "socket", value_name = "PATH")]
    pub sockets: Vec<PathBuf>,
    /// An agent's TCP address, host:port (repeatable; needs --token-file)
    #[arg(long = "tcp", value_name = "ADDR")]
    pub tcp: Vec<String>,
    /// File holding the bearer token for --tcp agents
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Refresh interval (500ms, 2s, ...)
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Do not add the guests reachable through host agents
    #[arg(long)]
    pub no_guests: bool,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms or 2s"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        _ => return Err(format!("{s:?} is not a duration like 500ms or 2s")),
    };
    if d < Duration::from_millis(100) {
        return Err("the interval must be at least 100ms".into());
    }
    Ok(d)
}

fn clients(a: &TopArgs) -> Result<Vec<Client>, CliError> {
    let mut out: Vec<Client> = a.sockets.iter().map(Client::unix).collect();
    if !a.tcp.is_empty() {
        let Some(f) = &a.token_file else {
            return Err(CliError::usage_msg("--tcp needs --token-file")
                .with_hint("TCP agents refuse requests without their bearer token"));
        };
        let raw = mv_core::Secret::new(std::fs::read_to_string(f).map_err(|e| {
            CliError::usage_msg(format!("cannot read the token file {}: {e}", f.display()))
        })?);
        let token = raw.expose().trim().to_string();
        for addr in &a.tcp {
            out.push(Client::tcp(addr, Some(mv_core::Secret::new(token.clone()))));
        }
    }
    if out.is_empty() {
        out.push(Client::unix(DEFAULT_SOCKET));
    }
    Ok(out)
}

/// One client per machine of the tree at `--root`, if there is a tree.
fn tree_clients(g: &Global) -> Result<Option<Vec<Client>>, CliError> {
    let tree = mv_machines::Tree::new(&g.root);
    let file = tree.config_file();
    if !file.exists() {
        return Ok(None);
    }
    let topo = mv_machines::Topology::load(&file).usage()?;
    let host = Client::unix(DEFAULT_SOCKET);
    let mut out = vec![host.clone()];
    for m in &topo.machines {
        if m.kind != mv_machines::MachineType::Host {
            out.push(host.guest(m.name.as_str()));
        }
    }
    Ok(Some(out))
}

/// Runs `multiverse top`.
pub fn top(g: &Global, a: TopArgs) -> Result<(), CliError> {
    let explicit = !a.sockets.is_empty() || !a.tcp.is_empty();
    let (agents, guests) = match (explicit, tree_clients(g)?) {
        (false, Some(tree)) => (tree, false),
        _ => (clients(&a)?, !a.no_guests),
    };
    if g.json {
        let all = mv_agent::with_guests(&agents, guests);
        let rows = mv_agent::fleet_status(&all);
        crate::global::print_json(&rows)?;
        return Ok(());
    }
    mv_agent::run_top(mv_agent::TopOptions {
        agents,
        interval: a.interval,
        guests,
    })
    .hint("`multiverse top` needs a terminal; use --json for a one-shot snapshot")
}
