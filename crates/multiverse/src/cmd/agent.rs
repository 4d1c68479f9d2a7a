//! `multiverse top`: the live dashboard of the agents (`mv_agent::top`), or with `--json` one
//! snapshot of every agent's status (`mv_agent::client::fleet_status`).
//!
//! Which agents: every `--socket` and `--tcp` given; with none, the local agent at
//! `/run/multiverse/agent.sock`. A host agent also brings every guest it reaches over
//! virtio-serial (unless `--no-guests`), so on the host `multiverse top` shows the whole tree.

use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_agent::client::Client;
use std::path::PathBuf;
use std::time::Duration;

/// Where the local agent listens unless told otherwise (the agent's config default).
pub const DEFAULT_SOCKET: &str = "/run/multiverse/agent.sock";

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
        let raw = mv_core::Secret::new(
            std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("cannot read the token file {}: {e}", f.display()))
                .usage()?,
        );
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

/// Runs `multiverse top`.
pub fn top(g: &Global, a: TopArgs) -> Result<(), CliError> {
    let agents = clients(&a)?;
    if g.json {
        let all = mv_agent::top::expand(&agents, !a.no_guests);
        let rows = mv_agent::client::fleet_status(&all);
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    mv_agent::top::run(mv_agent::top::TopOptions {
        agents,
        interval: a.interval,
        guests: !a.no_guests,
    })
    .hint("`multiverse top` needs a terminal; use --json for a one-shot snapshot")
}
