//! `multiverse-agent`: the Multiverse daemon, one per machine whatever its role.
//!
//! This binary only parses arguments, loads the config, wires the `mv-agent` library together on a
//! single-threaded runtime and maps errors to exit codes (2: bad config or arguments, 1: failure).
//! Everything else (collectors, tasks, API, transports) lives in `mv_agent`.
//!
//! On start it prints one line to stdout once every listener is bound:
//! `multiverse-agent ready role=... name=... unix=... tcp=...` (scripts and tests wait for it).
#![forbid(unsafe_code)]

use clap::Parser;
use mv_agent::{config::Config, server, Agent};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// The Multiverse agent: stats, maintenance and one HTTP/JSON API on every machine role.
#[derive(Debug, Parser)]
#[command(name = "multiverse-agent", version, max_term_width = 100)]
struct Args {
    /// The config file
    #[arg(long, short, default_value = "/etc/multiverse/agent.toml")]
    config: PathBuf,
    /// Check the config and exit
    #[arg(long)]
    check: bool,
}

fn fail(code: u8, e: &dyn std::error::Error, hint: Option<&str>) -> ExitCode {
    eprintln!(
        "multiverse-agent: error: {}",
        mv_agent::stats::error_chain(e)
    );
    if let Some(h) = hint {
        eprintln!("hint: {h}");
    }
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("MULTIVERSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();

    let cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                2,
                &e,
                Some("the smallest config is `role = \"service\"` and `[api]` `socket = \"/run/multiverse/agent.sock\"`"),
            )
        }
    };
    if args.check {
        println!(
            "{}: ok (role {})",
            args.config.display(),
            cfg.config.role.as_str()
        );
        return ExitCode::SUCCESS;
    }
    let agent = match Agent::new(cfg) {
        Ok(a) => a,
        Err(e) => return fail(2, &e, None),
    };
    // One thread serves everything; collectors and tasks that block run on a small, capped pool.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(8)
        .thread_keep_alive(std::time::Duration::from_secs(30))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(1, &e, None),
    };
    rt.block_on(async move {
        let listeners = match server::bind(&agent).await {
            Ok(l) => l,
            Err(e) => {
                return fail(
                    1,
                    &e,
                    Some("is another agent running, or does the socket's folder need root?"),
                )
            }
        };
        let unix = listeners.unix_path().map(|p| p.to_path_buf());
        let mut line = format!(
            "multiverse-agent ready role={} name={}",
            agent.cfg.config.role.as_str(),
            agent.name
        );
        if let Some(p) = &unix {
            line.push_str(&format!(" unix={}", p.display()));
        }
        if let Some(a) = listeners.tcp_addr() {
            line.push_str(&format!(" tcp={a}"));
        }
        if let Some(p) = &agent.cfg.config.api.virtio_port {
            line.push_str(&format!(" virtio={}", p.display()));
        }
        println!("{line}");
        let _ = std::io::stdout().flush();

        tokio::spawn(agent.clone().run_sampler());
        tokio::spawn(agent.clone().run_scheduler());
        let serve = tokio::spawn(listeners.run(agent.clone()));

        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => return fail(1, &e, None),
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = serve => {}
        }
        if let Some(p) = unix {
            let _ = std::fs::remove_file(p);
        }
        ExitCode::SUCCESS
    })
}
