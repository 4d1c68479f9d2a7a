//! `multiverse ssh FQDN [COMMAND...]`: a shell on a machine with the identity's keys both ways,
//! over the machine's own virtio-serial port, never over a machine network (the host has no
//! address there: docs/design.md).
//!
//! The pieces are `mv_provision::remote`'s: the channel (`ssh_socket`, added by `up`), the guest's
//! relay (`ssh-relay`), the host's `ProxyCommand` (`ssh-proxy`) and the [`Session`] that holds the
//! derived `@user` login key and a known_hosts of exactly the machine's derived host keys
//! (`StrictHostKeyChecking yes`: no trust-on-first-use prompt) in a private 0700 folder. This
//! module parses, checks the names, runs `ssh` and explains its exit code.
//!
//! With `--onion`, the same session goes over Tor instead: `ssh-proxy --socks ADDR --onion HOST`
//! asks a Tor SOCKS port (RFC 1928, the host name resolved by Tor) for the machine's onion
//! address, port 22. That reaches a star router's own sshd, or a machine that publishes
//! `onion = [22]`, from anywhere Tor runs, with the same derived keys and known_hosts.
//!
//! What this is not: a general tunnel. Only the machine's sshd is reachable this way.

use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_core::{IdentityName, MachineName};
use mv_provision::remote::{self, HostKeyCheck, Route, Session};
use std::path::PathBuf;

pub use mv_core::layout::ssh_socket;

/// Arguments of `ssh`.
#[derive(Debug, clap::Args)]
pub struct SshArgs {
    /// The machine (FQDN)
    #[arg(value_name = "FQDN")]
    pub machine: String,
    /// Log in as this user on the machine
    #[arg(long, short = 'l', default_value = "root", value_name = "USER")]
    pub user: String,
    /// The person whose login key is used
    #[arg(long, default_value = "@user", value_name = "@PERSON")]
    pub person: String,
    /// Reach the machine over Tor, at its onion address (a star router, or a machine that
    /// publishes `onion = [22]`), instead of over its virtio-serial channel
    #[arg(long)]
    pub onion: bool,
    /// Tor's SOCKS port, for --onion
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:9050",
        requires = "onion"
    )]
    pub socks: std::net::SocketAddr,
    #[command(flatten)]
    pub pass: super::identity::PassArgs,
    /// The command to run (default: a login shell)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Arguments of the hidden `ssh-proxy` (ssh's ProxyCommand).
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// The machine (FQDN)
    pub machine: String,
    /// Connect through this SOCKS5 proxy (Tor) instead of the machine's channel
    #[arg(long, value_name = "ADDR", requires = "onion")]
    pub socks: Option<std::net::SocketAddr>,
    /// The onion address to ask the SOCKS proxy for (port 22)
    #[arg(long, value_name = "HOST", requires = "socks")]
    pub onion: Option<String>,
}

/// Arguments of the hidden `ssh-relay` (the guest side).
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// The virtio-serial port
    #[arg(long, default_value = "/dev/virtio-ports/org.multiverse.ssh.0")]
    pub port: PathBuf,
    /// Where sshd listens
    #[arg(long, default_value = "127.0.0.1:22")]
    pub sshd: String,
}

fn machine_name(text: &str) -> Result<MachineName, CliError> {
    MachineName::parse(text)
        .usage()
        .hint("machine names are lower-case FQDNs like mail.service.multiverse")
}

/// `multiverse ssh`.
pub fn ssh(g: &Global, a: SshArgs) -> Result<(), CliError> {
    let name = machine_name(&a.machine)?;
    let person = IdentityName::parse(&a.person).usage()?;
    if a.user.is_empty() || a.user.starts_with('-') || a.user.contains(['@', ' ', '/']) {
        return Err(CliError::usage_msg(format!(
            "--user {}: not a user name",
            a.user
        )));
    }
    let sock = ssh_socket(&name);
    if a.onion {
        if !publishes_ssh_onion(g, &name) {
            return Err(CliError::usage_msg(format!(
                "{name} publishes no onion service for its sshd"
            ))
            .with_hint(
                "a star router publishes its own; for another machine add `onion = [22]` to it in multiverse.toml and provision the star",
            ));
        }
    } else if !sock.exists() {
        return Err(CliError::failure_msg(format!(
            "{name} has no SSH channel at {}",
            sock.display()
        ))
        .with_hint("start it with `multiverse up --start FQDN`"));
    }
    let root = crate::unsealed::unseal_tree_hinted(g, a.pass.passphrase_file.as_deref())?;
    let session = Session::new(&root, &person, &name, name.as_str())?;
    let onion = a
        .onion
        .then(|| root.onion_v3(&IdentityName::Machine(name.clone())).hostname);
    drop(root);
    let command = match &onion {
        Some(onion) => format!(
            "{} --socks {} --onion {onion}",
            channel_proxy(g, &name)?,
            a.socks
        ),
        None => channel_proxy(g, &name)?,
    };
    let route = Route::Proxy {
        command,
        host: name.as_str().to_string(),
        // Through Tor the session may never start (an unpublished service, a stalled circuit):
        // ssh then gives up after this long instead of waiting for the version line forever.
        connect_timeout: a.onion.then_some(120),
    };
    let argv = session.argv(&route, &a.user, HostKeyCheck::Strict);
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    if !a.command.is_empty() {
        cmd.arg("--").args(&a.command);
    }
    if g.dry_run {
        g.say(format!("would run: {cmd:?}"));
        return Ok(());
    }
    let status = cmd
        .status()
        .map_err(|e| CliError::failure_msg(format!("cannot run ssh: {e}")))
        .hint("install openssh-client")?;
    drop(session);
    match status.code() {
        Some(0) => Ok(()),
        Some(255) => Err(CliError::failure_msg(format!(
            "ssh to {name} failed (exit 255: connection or authentication)"
        ))
        .with_hint(if a.onion {
            "is Tor running at --socks, and has the star published the service? `multiverse identity show FQDN` prints the address"
        } else {
            "is the machine provisioned and its sshd up? `multiverse status` shows its agent and host key"
        })),
        code => Err(CliError::failure_msg(format!(
            "the command on {name} exited with {}",
            code.map_or_else(|| "a signal".to_string(), |c| c.to_string())
        ))),
    }
}

/// The `ProxyCommand` that joins ssh to `name`'s sshd over the machine's virtio-serial channel
/// (this binary's hidden `ssh-proxy`).
pub fn channel_proxy(g: &Global, name: &MachineName) -> Result<String, CliError> {
    let exe = std::env::current_exe()?;
    Ok(remote::channel_proxy_command(&exe, &g.root, name))
}

/// Whether `name`'s SSH channel answers: its domain is running (QEMU listens on the socket while
/// the machine runs). Says nothing about the guest's sshd.
pub fn channel_open(name: &MachineName) -> bool {
    std::os::unix::net::UnixStream::connect(ssh_socket(name)).is_ok()
}

/// Whether `name`'s sshd has an onion service: a star router publishes its own, another machine
/// when `onion = [..]` in `multiverse.toml` lists port 22.
fn publishes_ssh_onion(g: &Global, name: &MachineName) -> bool {
    let config = mv_machines::Tree::new(g.root.clone()).config_file();
    let Ok(topo) = mv_machines::Topology::load(&config) else {
        return false;
    };
    let is_star = topo.vms().any(|m| {
        &m.name == name
            && m.router
                .as_ref()
                .is_some_and(|r| r.role == mv_machines::RouterRole::Star)
    });
    is_star || super::identity::published_onion(g, name).is_some_and(|(_, s)| s.ports.contains(&22))
}

/// `multiverse ssh-proxy FQDN`: stdin → the machine's SSH socket → stdout; with `--socks`, the
/// machine's onion address through Tor instead.
pub fn proxy(_g: &Global, a: ProxyArgs) -> Result<(), CliError> {
    let name = machine_name(&a.machine)?;
    match (a.socks, &a.onion) {
        (Some(socks), Some(onion)) => remote::proxy_socks(socks, onion)?,
        _ => remote::proxy_channel(&name)?,
    }
    Ok(())
}

/// `multiverse ssh-relay` (in the guest): joins the SSH virtio-serial port to sshd, one session
/// at a time, for good.
pub fn relay(_g: &Global, a: RelayArgs) -> Result<(), CliError> {
    remote::relay(&a.port, &a.sshd)
}
