//! `multiverse up|down|status|backup|restore|image`: the tree made real through libvirt, and the
//! host's definitions filed back into the tree.
//!
//! This module only turns arguments and `multiverse.toml` (via `mv-machines`) into the inputs of
//! `mv-libvirt` ([`mv_libvirt::up::UpSpec`], [`mv_libvirt::backup::Ownership`]), prints reports
//! and maps errors to exit codes with hints. The connection URI is `--connect`, else
//! `libvirt_uri` of `multiverse.toml`, else `qemu:///system`.

use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_libvirt::backup::{self, FileChange, Ownership};
use mv_libvirt::images::{self, Outcome, OverlaySpec};
use mv_libvirt::restore::{self, Change, RestoreError};
use mv_libvirt::up::{self, Done, MachineSpec, Report, UpError, UpOptions, UpSpec};
use mv_libvirt::{Connection, ObjectKind};
use mv_machines::{MachineType, Topology, Tree};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The libvirt connection option every subcommand here takes.
#[derive(Debug, clap::Args)]
pub struct ConnectArg {
    /// libvirt URI (default: `libvirt_uri` of multiverse.toml, else qemu:///system)
    #[arg(long, short = 'c', env = "MULTIVERSE_CONNECT", value_name = "URI")]
    pub connect: Option<String>,
}

/// Arguments of `up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    conn: ConnectArg,
    /// Only these machines (FQDNs); default: all. The pool and networks are always defined
    #[arg(value_name = "FQDN")]
    machines: Vec<String>,
    /// Start the machines in dependency order (universe → galaxy → star → the rest)
    #[arg(long)]
    start: bool,
    /// Seconds to wait for each machine to be running and its agent to answer
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    timeout: u64,
    /// Start without provisioning: attach no seed disk (the disks boot as they are)
    #[arg(long)]
    no_provision: bool,
    /// Do not wait for each machine's agent before starting the next (only for libvirt running)
    #[arg(long)]
    no_wait: bool,
    /// The person whose login key the machines accept (`authorized_keys` of `user`)
    #[arg(long, default_value = "@user", value_name = "@PERSON")]
    person: String,
    #[command(flatten)]
    pass: super::identity::PassArgs,
}

/// Arguments of `down`.
#[derive(Debug, clap::Args)]
pub struct DownArgs {
    #[command(flatten)]
    conn: ConnectArg,
    /// Only these machines (FQDNs); default: all, in reverse start order
    #[arg(value_name = "FQDN")]
    machines: Vec<String>,
    /// Seconds to wait for each machine to stop after the ACPI shutdown request
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
    /// Power off a machine still running after the timeout (risks its filesystem)
    #[arg(long)]
    force: bool,
}

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    conn: ConnectArg,
    /// Only these machines (FQDNs)
    #[arg(value_name = "FQDN")]
    machines: Vec<String>,
}

/// Arguments of `console`.
#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    #[command(flatten)]
    conn: ConnectArg,
    /// The machine (FQDN)
    #[arg(value_name = "FQDN")]
    machine: String,
}

/// Arguments of `backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    conn: ConnectArg,
    /// Write the backup under DIR instead of the tree (same layout)
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Arguments of `restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    conn: ConnectArg,
    /// Read the backup from DIR instead of the tree
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
}

/// `image` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Add a base image (any format qemu-img reads) as images/NAME.qcow2
    Import {
        /// The image file
        file: PathBuf,
        /// Its name (machines refer to it as `base = "NAME"`)
        #[arg(long)]
        name: String,
    },
    /// List the base images
    List,
    /// Build a bootable base image from the distribution's mirror, with nothing mounted
    /// (docs/images.md)
    Build(crate::cmd::image_build::BuildArgs),
}

fn topology(tree: &Tree) -> Result<Topology, CliError> {
    let path = tree.config_file();
    Topology::load(&path).usage().hint(&format!(
        "fix {} (or create a tree with `multiverse init --root {}`)",
        path.display(),
        tree.root().display()
    ))
}

/// The topology if `multiverse.toml` exists; an invalid one is still an error.
fn topology_opt(tree: &Tree) -> Result<Option<Topology>, CliError> {
    if tree.config_file().exists() {
        topology(tree).map(Some)
    } else {
        Ok(None)
    }
}

fn uri(arg: &ConnectArg, topo: Option<&Topology>) -> String {
    arg.connect
        .clone()
        .or_else(|| topo.and_then(|t| t.libvirt_uri.clone()))
        .unwrap_or_else(|| mv_libvirt::DEFAULT_URI.to_string())
}

fn connect(uri: &str) -> Result<Connection, CliError> {
    Connection::open(uri).hint(
        "is libvirtd running (scripts/start-services.sh)? Pick another URI with --connect or libvirt_uri in multiverse.toml",
    )
}

/// The machines to act on, in start order; unknown FQDNs are usage errors.
fn select<'a>(
    topo: &'a Topology,
    names: &[String],
) -> Result<Vec<&'a mv_machines::Machine>, CliError> {
    let order = topo.start_order();
    for n in names {
        if !order.iter().any(|m| m.name.as_str() == n) {
            return Err(
                CliError::usage_msg(format!("no virtual machine {n} in multiverse.toml"))
                    .with_hint("`multiverse machine list` shows the machines"),
            );
        }
    }
    Ok(order
        .into_iter()
        .filter(|m| names.is_empty() || names.iter().any(|n| n == m.name.as_str()))
        .collect())
}

/// The passphrase of machine `m`'s encrypted disks, from the unsealed identity: `None` for a
/// machine whose disks are plain (or when no identity was unsealed: status, down).
fn disk_passphrase(
    m: &mv_machines::Machine,
    root: Option<&mv_identity::Root>,
) -> Option<mv_core::secret::SecretBytes> {
    mv_machines::render::luks_secret_uuid(m)?;
    let key = root?.luks_key(&mv_core::IdentityName::Machine(m.name.clone()));
    Some(images::disk_passphrase(&key))
}

fn machine_spec(
    tree: &Tree,
    m: &mv_machines::Machine,
    seed: bool,
    root: Option<&mv_identity::Root>,
) -> MachineSpec {
    let luks = disk_passphrase(m, root);
    let disks = m
        .disks
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let base = d.base.clone().unwrap_or_else(|| m.os.as_str().to_string());
            OverlaySpec {
                path: tree.disk_n(&m.name, i),
                base: tree.image(&base),
                base_name: base,
                size_gib: d.size_gib,
                luks: luks.clone(),
            }
        })
        .collect();
    let ssh = super::ssh::ssh_socket(&m.name);
    MachineSpec {
        name: m.name.as_str().to_string(),
        domain_xml: tree.domain_xml(&m.name),
        disks,
        throwaway: m.kind == MachineType::Application,
        runtime_dirs: [mv_machines::layout::agent_socket(&m.name), ssh.clone()]
            .iter()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect(),
        seed: seed.then(|| tree.seed_disk(&m.name)),
        console_log: Some(tree.console_log(&m.name)),
        ssh_socket: Some(ssh),
        agent_channel: Some(mv_machines::layout::AGENT_CHANNEL.to_string()),
        luks_secret: luks.map(|passphrase| up::LuksSecret {
            xml: tree.luks_secret_xml(&m.name),
            passphrase,
        }),
    }
}

fn up_spec(
    tree: &Tree,
    topo: &Topology,
    machines: &[&mv_machines::Machine],
    seed: bool,
    root: Option<&mv_identity::Root>,
) -> UpSpec {
    UpSpec {
        pool: Some((tree.pool_xml(), tree.storage_dir())),
        networks: topo
            .networks
            .iter()
            .map(|n| tree.network_xml(&n.name))
            .collect(),
        machines: machines
            .iter()
            .map(|m| machine_spec(tree, m, seed, root))
            .collect(),
    }
}

fn up_error(e: UpError) -> CliError {
    let hint = match &e {
        UpError::Read { .. } => Some("run `multiverse render` first"),
        UpError::Xml { .. } | UpError::Unexpected { .. } | UpError::Define { .. } => {
            Some("fix multiverse.toml or templates/ and run `multiverse render` again")
        }
        UpError::Collision { .. } => Some(
            "`multiverse backup` files the other object under backups/foreign/; undefine it, or rename our machine",
        ),
        UpError::Disk {
            source: images::ImageError::MissingBase { .. },
            ..
        } => Some(
            "build it with `multiverse image build debian` (or add one with `multiverse image import FILE --name NAME`)",
        ),
        UpError::NotReady { .. } => Some(
            "read machines/<fqdn>/console.log; `multiverse console FQDN` shows the console live",
        ),
        _ => None,
    };
    let err: CliError = e.into();
    match hint {
        Some(h) => err.with_hint(h),
        None => err,
    }
}

fn print_report(g: &Global, r: &Report, verb_none: &str) -> Result<(), CliError> {
    if g.json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let prefix = if g.dry_run { "would be " } else { "" };
    for i in r
        .items
        .iter()
        .filter(|i| i.done.is_change() || g.verbose > 0)
    {
        g.say(format!(
            "{prefix}{:<15} {:<8} {}",
            done_word(i.done),
            i.what,
            i.name
        ));
    }
    if r.nothing_changed() {
        g.say(verb_none);
    }
    Ok(())
}

fn done_word(d: Done) -> &'static str {
    match d {
        Done::Created => "created",
        Done::Updated => "updated",
        Done::Unchanged => "unchanged",
        Done::Started => "started",
        Done::AlreadyRunning => "already running",
        Done::Refreshed => "refreshed",
        Done::ShutDown => "shut down",
        Done::Destroyed => "powered off",
        Done::AlreadyStopped => "already stopped",
    }
}

/// `multiverse up`.
pub fn up(g: &Global, a: UpArgs) -> Result<(), CliError> {
    let tree = Tree::new(&g.root);
    let topo = topology(&tree)?;
    let machines = select(&topo, &a.machines)?;
    let seeded = !a.no_provision;
    // The identity is unsealed once: for the seeds, and for the keys of encrypted disks (their
    // libvirt secrets are set at every `up`: the kill switch undefines them, a libvirtd restart
    // forgets them).
    let encrypted = machines
        .iter()
        .any(|m| mv_machines::render::luks_secret_uuid(m).is_some());
    let root = if (a.start && seeded) || encrypted {
        Some(super::provision::unseal(g, &a.pass)?)
    } else {
        None
    };
    let spec = up_spec(&tree, &topo, &machines, seeded, root.as_ref());
    let conn = connect(&uri(&a.conn, Some(&topo)))?;
    let opts = UpOptions {
        start: a.start,
        dry_run: g.dry_run,
        timeout: Duration::from_secs(a.timeout),
    };
    if let (true, true, Some(root)) = (a.start, seeded, &root) {
        // Every seed before the first start: one passphrase, and a bad recipe stops nothing.
        make_seeds(g, &tree, &topo, &machines, &a, root)?;
    }
    if let (true, false, Some(root)) = (a.start, g.dry_run, &root) {
        // A rotation that found an encrypted machine running left its disks on the old key; they
        // take the new one now, while the machine is off, before libvirt opens them with it.
        for m in &machines {
            if mv_machines::render::luks_secret_uuid(m).is_some()
                && !conn.domain_is_active(m.name.as_str()).unwrap_or(false)
            {
                super::rotate::finish_rekey(g, root, m, &tree)?;
            }
        }
    }
    // Progress on stderr as each machine answers: under TCG a topology takes minutes, and the
    // report only comes at the end.
    let probe = |m: &MachineSpec, since: std::time::Instant| {
        let seed_id_file = mv_core::MachineName::parse(&m.name)
            .map(|n| tree.seed_id(&n))
            .unwrap_or_default();
        let r = agent_ready(&m.name, &seed_id_file);
        if r.is_ok() && !g.json {
            eprintln!(
                "multiverse: {} answered {:.1} s after its start",
                m.name,
                since.elapsed().as_secs_f64()
            );
        }
        r
    };
    let ready: Option<up::ReadyProbe<'_>> = (a.start && !a.no_wait).then_some(&probe);
    let report = up::up_with(&conn, &spec, &opts, ready).map_err(up_error)?;
    print_report(
        g,
        &report,
        "nothing to change: everything is defined as rendered",
    )
}

/// Writes the seed disk of every machine whose desired state changed (see
/// `provision::ensure_seed`), saying which.
fn make_seeds(
    g: &Global,
    tree: &Tree,
    topo: &Topology,
    machines: &[&mv_machines::Machine],
    a: &UpArgs,
    root: &mv_identity::Root,
) -> Result<(), CliError> {
    let person = mv_core::IdentityName::parse(&a.person).usage()?;
    for m in machines {
        let d = super::provision::render_machine(g, topo, &m.name, root, &person)?;
        match super::provision::ensure_seed(tree, &d, g.dry_run)? {
            super::provision::SeedOutcome::Written(id) => g.say(format!(
                "{}seeded          disk     {} (seed {})",
                if g.dry_run { "would be " } else { "" },
                m.name,
                &id.0[..12]
            )),
            super::provision::SeedOutcome::Unchanged(_) => {
                if g.verbose > 0 {
                    g.say(format!("unchanged       seed     {}", m.name));
                }
            }
        }
    }
    Ok(())
}

/// Ready when the machine's agent answers over its virtio-serial channel as the machine itself
/// (hostname = FQDN) and, when it says which seed it last applied, that is the seed `up` wrote
/// (`machines/<fqdn>/seed-id`): from a machine's second boot on its agent starts before the seed
/// stage, so on a boot that applies a changed seed the first answers come from before it.
fn agent_ready(fqdn: &str, seed_id_file: &std::path::Path) -> Result<(), String> {
    let name = mv_core::MachineName::parse(fqdn).map_err(|e| e.to_string())?;
    let sock = mv_machines::layout::agent_socket(&name);
    // Generous: under TCG a loaded guest takes seconds to answer its first request.
    let client = mv_agent::Client::unix(sock).with_timeout(Duration::from_secs(10));
    let info = client.info().map_err(|e| e.to_string())?;
    match info.fqdn.as_deref() {
        Some(h) if h == fqdn => {}
        Some(h) => return Err(format!("the agent answers as {h}, not {fqdn}")),
        None => return Err("the agent does not say its hostname".into()),
    }
    let wanted = std::fs::read_to_string(seed_id_file).unwrap_or_default();
    seed_applied(wanted.trim(), info.seed_id.as_deref())
}

/// Whether the seed the host wrote (`wanted`, empty when it wrote none) is the one the guest says
/// it applied (`applied`; `None` from an agent that does not say).
fn seed_applied(wanted: &str, applied: Option<&str>) -> Result<(), String> {
    match applied {
        Some(a) if !wanted.is_empty() && a != wanted => Err(format!(
            "the machine still runs seed {}, not the new {}",
            &a[..a.len().min(12)],
            &wanted[..wanted.len().min(12)]
        )),
        _ => Ok(()),
    }
}

/// `multiverse down`.
pub fn down(g: &Global, a: DownArgs) -> Result<(), CliError> {
    let tree = Tree::new(&g.root);
    let topo = topology(&tree)?;
    let machines = select(&topo, &a.machines)?;
    let names: Vec<String> = machines
        .iter()
        .rev()
        .map(|m| m.name.as_str().to_string())
        .collect();
    let conn = connect(&uri(&a.conn, Some(&topo)))?;
    let report = up::down(
        &conn,
        &names,
        Duration::from_secs(a.timeout),
        g.dry_run,
        a.force,
    )
    .map_err(|e| match e {
        UpError::Timeout { .. } => up_error(e).with_hint(
            "the guest ignored the ACPI request (still booting, or no ACPI support): wait and run `down` again, or `down --force` to power it off",
        ),
        e => up_error(e),
    })?;
    print_report(g, &report, "nothing to stop: no machine is running")
}

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
    machine: up::MachineStatus,
    /// `null` when the machine has no agent socket on this host.
    agent: Option<AgentStatus>,
}

/// Asks the agent behind the machine's channel socket, briefly: status must not hang on a guest
/// that is still booting.
fn agent_status(
    name: &mv_core::MachineName,
    derived: Option<&mv_identity::PublicRecord>,
) -> Option<AgentStatus> {
    let sock = mv_machines::layout::agent_socket(name);
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
    let st = up::status(&conn, &specs).map_err(up_error)?;
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
        println!("{}", serde_json::to_string_pretty(&lines)?);
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

fn ownership(tree: &Tree, topo: Option<&Topology>) -> Ownership {
    let mut own = Ownership::default();
    own.others
        .insert((ObjectKind::Pool, mv_machines::layout::POOL_NAME.to_string()));
    if let Some(t) = topo {
        for m in t.vms() {
            own.machines.insert(m.name.as_str().to_string());
            // An encrypted machine's disk secret is ours too (metadata only: no value).
            if let Some(uuid) = mv_machines::render::luks_secret_uuid(m) {
                own.others.insert((ObjectKind::Secret, uuid));
            }
        }
        for n in &t.networks {
            own.others.insert((ObjectKind::Network, n.name.clone()));
        }
    }
    // Machine folders count too: a tree without multiverse.toml (a bare backup) still knows them.
    if let Ok(rd) = std::fs::read_dir(tree.machines_dir()) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                own.machines
                    .insert(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    own
}

/// `multiverse backup`.
pub fn backup(g: &Global, a: BackupArgs) -> Result<(), CliError> {
    let tree = Tree::new(&g.root);
    let topo = topology_opt(&tree)?;
    let own = ownership(&tree, topo.as_ref());
    let out = a.out.clone().unwrap_or_else(|| g.root.clone());
    let conn = connect(&uri(&a.conn, topo.as_ref()))?;
    let report = backup::backup(&conn, &out, &own, g.dry_run)?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let prefix = if g.dry_run { "would be " } else { "" };
    for f in &report.files {
        let word = match f.change {
            FileChange::Written => "written",
            FileChange::Removed => "removed",
            FileChange::Unchanged if g.verbose > 0 => "unchanged",
            FileChange::Unchanged => continue,
        };
        g.say(format!("{prefix}{word:<9} {}", f.path.display()));
    }
    let objects = report.files.iter().filter(|f| f.kind.is_some()).count();
    if report.changed() == 0 {
        g.say(format!(
            "nothing changed: {objects} object(s) already backed up in {}",
            out.display()
        ));
    } else {
        g.say(format!(
            "{objects} object(s) backed up in {}, {} file(s) {prefix}changed",
            out.display(),
            report.changed()
        ));
    }
    Ok(())
}

fn restore_error(e: RestoreError) -> CliError {
    let bad_input = matches!(
        e,
        RestoreError::Read { .. }
            | RestoreError::Identify { .. }
            | RestoreError::NoName { .. }
            | RestoreError::Duplicate { .. }
            | RestoreError::Empty(_)
    );
    let hint = match &e {
        _ if bad_input => {
            Some("restore reads what `multiverse backup` writes (machines/*/libvirt/, backups/)")
        }
        RestoreError::Collision(_) => {
            Some("the host has a different object of that name: undefine or rename it first")
        }
        RestoreError::Apply { .. } => {
            Some("nothing was left half-restored; fix the file and run restore again")
        }
        _ => None,
    };
    let mut err = CliError::from(e);
    if bad_input {
        err.kind = crate::error::Kind::Usage;
    }
    match hint {
        Some(h) => err.with_hint(h),
        None => err,
    }
}

/// `multiverse restore`.
pub fn restore(g: &Global, a: RestoreArgs) -> Result<(), CliError> {
    let tree = Tree::new(&g.root);
    let from = a.from.clone().unwrap_or_else(|| g.root.clone());
    let topo = if a.from.is_some() {
        None
    } else {
        topology_opt(&tree)?
    };
    let entries = restore::scan(&from).map_err(restore_error)?;
    let conn = connect(&uri(&a.conn, topo.as_ref()))?;
    let steps = restore::plan(&conn, entries).map_err(restore_error)?;
    let prefix = if g.dry_run { "would " } else { "" };
    if !g.json {
        for s in &steps {
            let e = &s.entry;
            match &s.change {
                Change::Create => g.say(format!("{prefix}define   {} {}", e.kind, e.name)),
                Change::Update { diff } => {
                    g.say(format!("{prefix}redefine {} {}", e.kind, e.name));
                    g.say(diff.trim_end());
                }
                Change::Unchanged if g.verbose > 0 => {
                    g.say(format!("unchanged {} {}", e.kind, e.name))
                }
                Change::Unchanged => {}
            }
        }
    }
    let (creates, updates) = steps.iter().fold((0, 0), |(c, u), s| match s.change {
        Change::Create => (c + 1, u),
        Change::Update { .. } => (c, u + 1),
        Change::Unchanged => (c, u),
    });
    if g.dry_run {
        if g.json {
            let plan: Vec<_> = steps
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "kind": s.entry.kind,
                        "name": s.entry.name,
                        "file": s.entry.path,
                        "change": match &s.change {
                            Change::Create => "create",
                            Change::Update { .. } => "update",
                            Change::Unchanged => "unchanged",
                        },
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            g.say(format!(
                "dry run: {creates} to define, {updates} to redefine, {} unchanged",
                steps.len() - creates - updates
            ));
        }
        return Ok(());
    }
    let done = restore::apply(&conn, &steps).map_err(restore_error)?;
    if g.json {
        let j = serde_json::json!({
            "created": done.created.iter().map(|(k, n)| serde_json::json!({"kind": k, "name": n})).collect::<Vec<_>>(),
            "updated": done.updated.iter().map(|(k, n)| serde_json::json!({"kind": k, "name": n})).collect::<Vec<_>>(),
            "unchanged": done.unchanged,
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else if done.created.is_empty() && done.updated.is_empty() {
        g.say(format!(
            "nothing to restore: all {} object(s) already defined as in {}",
            done.unchanged,
            from.display()
        ));
    } else {
        g.say(format!(
            "restored from {}: {} defined, {} redefined, {} unchanged",
            from.display(),
            done.created.len(),
            done.updated.len(),
            done.unchanged
        ));
    }
    Ok(())
}

/// `multiverse image`.
pub fn image(g: &Global, c: ImageCommand) -> Result<(), CliError> {
    let tree = Tree::new(&g.root);
    match c {
        ImageCommand::Build(a) => crate::cmd::image_build::build(g, a),
        ImageCommand::Import { file, name } => {
            let res = images::import(&file, &tree.images_dir(), &name, g.dry_run);
            let (outcome, path) = match res {
                Err(e @ images::ImageError::BadName(_))
                | Err(e @ images::ImageError::Source { .. }) => return Err(e).usage(),
                Err(e @ images::ImageError::Exists { .. }) => {
                    return Err(e)
                        .usage()
                        .hint("pick another --name, or remove the old image first")
                }
                other => other?,
            };
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"name": name, "path": path, "outcome": outcome})
                );
                return Ok(());
            }
            match (outcome, g.dry_run) {
                (Outcome::Unchanged, _) => g.say(format!(
                    "unchanged: {} already holds this image",
                    path.display()
                )),
                (_, true) => g.say(format!(
                    "would import {} as {}",
                    file.display(),
                    path.display()
                )),
                (_, false) => g.say(format!("imported {} as {}", file.display(), path.display())),
            }
            Ok(())
        }
        ImageCommand::List => {
            let dir = tree.images_dir();
            let mut rows = Vec::new();
            if let Ok(rd) = std::fs::read_dir(&dir) {
                let mut paths: Vec<PathBuf> = rd
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("qcow2"))
                    .collect();
                paths.sort();
                for p in paths {
                    let info = images::info(&p)?;
                    let name = p
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    rows.push(serde_json::json!({
                        "name": name,
                        "path": p,
                        "format": info.format,
                        "virtual_size": info.virtual_size,
                    }));
                }
            }
            if g.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                g.say(format!(
                    "no base images in {} (add one with `multiverse image import FILE --name NAME`)",
                    dir.display()
                ));
            } else {
                for r in &rows {
                    println!(
                        "{:<24} {:>10} MiB  {}",
                        r["name"].as_str().unwrap_or(""),
                        r["virtual_size"].as_u64().unwrap_or(0) >> 20,
                        r["path"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
    }
}

/// `multiverse console FQDN`: libvirt's own console client on the machine's serial port (the
/// same stream libvirt keeps in `machines/<fqdn>/console.log`).
pub fn console(g: &Global, a: ConsoleArgs) -> Result<(), CliError> {
    let tree = Tree::new(&g.root);
    let topo = topology(&tree)?;
    let machines = select(&topo, std::slice::from_ref(&a.machine))?;
    let name = machines
        .first()
        .map(|m| m.name.as_str().to_string())
        .unwrap_or_default();
    let uri = uri(&a.conn, Some(&topo));
    if g.dry_run {
        g.say(format!("would run: virsh -c {uri} console {name}"));
        return Ok(());
    }
    let status = std::process::Command::new("virsh")
        .args(["-c", &uri, "console", &name])
        .status()
        .map_err(|e| CliError::failure_msg(format!("cannot run virsh: {e}")))
        .hint("install libvirt-clients")?;
    if status.success() {
        Ok(())
    } else {
        Err(
            CliError::failure_msg(format!("virsh console {name} exited with {status}"))
                .with_hint("is the machine running? `multiverse status` shows it"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::seed_applied;

    #[test]
    fn up_waits_for_the_seed_it_wrote() {
        let new = "ab".repeat(32);
        let old = "cd".repeat(32);
        assert!(seed_applied(&new, Some(&new)).is_ok());
        let e = seed_applied(&new, Some(&old)).unwrap_err();
        assert!(
            e.contains("cdcdcdcdcdcd") && e.contains("abababababab"),
            "{e}"
        );
        // No seed written by the host, or an agent that does not say: the hostname decides.
        assert!(seed_applied("", Some(&old)).is_ok());
        assert!(seed_applied(&new, None).is_ok());
    }
}
