//! `multiverse-agent`: the Multiverse daemon, one per machine whatever its role.
//!
//! This binary only parses arguments, loads the config, wires the `mv-agent` library together on a
//! single-threaded runtime and maps errors to exit codes (2: bad config or arguments, 1: failure).
//! Everything else (collectors, tasks, API, transports) lives in `mv_agent`.
//!
//! On start it prints one line to stdout once every listener is bound:
//! `multiverse-agent ready role=... name=... unix=... tcp=...` (scripts and tests wait for it).
//!
//! Arguments are parsed by hand rather than with clap, and logging uses a plain level rather than
//! an env-filter: together they would add ~500 KB of code to a daemon whose resident memory is
//! the point (it runs on every machine; see bench/agent.sh).
#![forbid(unsafe_code)]

use mv_agent::{Agent, Config, StartError};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "The Multiverse agent: stats, maintenance and one HTTP/JSON API on every machine role

Usage: multiverse-agent [--config FILE] [--check]

Options:
  -c, --config FILE  The config file [default: /etc/multiverse/agent.toml]
      --check        Check the config and exit
  -h, --help         Print help
  -V, --version      Print version

Environment: MULTIVERSE_LOG=error|warn|info|debug|trace (default warn), logs go to stderr.";

#[derive(Debug)]
struct Args {
    config: PathBuf,
    check: bool,
}

/// `Ok(None)`: help or version was printed.
fn parse_args(mut it: impl Iterator<Item = std::ffi::OsString>) -> Result<Option<Args>, String> {
    let mut args = Args {
        config: PathBuf::from("/etc/multiverse/agent.toml"),
        check: false,
    };
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("-c") | Some("--config") => {
                args.config = it
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--config needs a file")?;
            }
            Some(s) if s.starts_with("--config=") => args.config = PathBuf::from(&s[9..]),
            Some("--check") => args.check = true,
            Some("-h") | Some("--help") => {
                println!("{USAGE}");
                return Ok(None);
            }
            Some("-V") | Some("--version") => {
                println!("multiverse-agent {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            _ => return Err(format!("unexpected argument {:?}", a.to_string_lossy())),
        }
    }
    Ok(Some(args))
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

/// What to do about a start error (the library's message only says what is wrong).
fn start_hint(e: &StartError) -> Option<String> {
    match e {
        StartError::TokenMode(p) => Some(format!("chmod 600 {}", p.display())),
        StartError::TokenOwner(_) => Some("chown it to the agent's user or root".to_string()),
        StartError::EmptyToken(_) | StartError::ShortToken { .. } => {
            Some("make one with `openssl rand -hex 32`".to_string())
        }
        StartError::Token { .. } | StartError::TokenFile { .. } => None,
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("multiverse-agent: error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let level = std::env::var("MULTIVERSE_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::WARN);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .try_init();

    let cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                2,
                &e,
                Some(&format!(
                    "the smallest config is `role = \"service\"` and `[api]` `socket = \"{}\"`",
                    mv_core::layout::AGENT_API_SOCKET
                )),
            )
        }
    };
    // `--check` builds the same state the daemon does (token file included; nothing runs yet),
    // so it refuses exactly what the daemon would refuse.
    let role = cfg.config.role;
    let agent = match Agent::new(cfg) {
        Ok(a) => a,
        Err(e) => return fail(2, &e, start_hint(&e).as_deref()),
    };
    if args.check {
        println!("{}: ok (role {})", args.config.display(), role.as_str());
        return ExitCode::SUCCESS;
    }
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
    let code = rt.block_on(async move {
        let listeners = match mv_agent::bind(&agent).await {
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
    });
    // A stopped agent exits now: a collector or task stuck in a blocking call (a hung `nft`, a
    // read of a virtio port) would otherwise hold the runtime's drop, and systemd would wait its
    // stop timeout (90 s) before killing us, which is what kept guests from an ACPI `down`.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<Option<Args>, String> {
        parse_args(v.iter().map(std::ffi::OsString::from))
    }

    #[test]
    fn args() {
        let a = parse(&[]).unwrap().unwrap();
        assert_eq!(a.config, PathBuf::from("/etc/multiverse/agent.toml"));
        assert!(!a.check);
        let a = parse(&["-c", "/x.toml", "--check"]).unwrap().unwrap();
        assert_eq!(a.config, PathBuf::from("/x.toml"));
        assert!(a.check);
        let a = parse(&["--config=/y.toml"]).unwrap().unwrap();
        assert_eq!(a.config, PathBuf::from("/y.toml"));
        assert!(parse(&["--config"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }
}
