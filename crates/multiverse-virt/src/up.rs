//! `multiverse up|down`: the tree made real through libvirt, and stopped again.
//!
//! This module only turns arguments and `multiverse.toml` (via `mv-machines`) into the inputs of
//! `mv-libvirt` ([`mv_libvirt::UpSpec`]), writes the seeds (through the provision command), prints
//! the report and maps errors to exit codes with hints.

use crate::common::{connect, select, topology, uri};
use multiverse::cli::virt::{DownArgs, UpArgs};
use multiverse::cmd::{provision, rotate, ssh};
use multiverse::error::{CliError, Hinted};
use multiverse::global::Global;
use mv_libvirt::{ImageError, MachineSpec, OverlaySpec, UpError, UpOptions, UpReport, UpSpec};
use mv_machines::{MachineType, Topology, Tree};
use std::path::Path;
use std::time::Duration;

/// The passphrase of machine `m`'s encrypted disks, from the unsealed identity: `None` for a
/// machine whose disks are plain (or when no identity was unsealed: status, down).
fn disk_passphrase(
    m: &mv_machines::Machine,
    root: Option<&mv_identity::Root>,
) -> Option<mv_core::secret::SecretBytes> {
    mv_machines::luks_secret_uuid(m)?;
    let key = root?.luks_key(&mv_core::IdentityName::Machine(m.name.clone()));
    Some(mv_libvirt::disk_passphrase(&key))
}

pub(crate) fn machine_spec(
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
    let ssh = ssh::ssh_socket(&m.name);
    MachineSpec {
        name: m.name.as_str().to_string(),
        domain_xml: tree.domain_xml(&m.name),
        disks,
        throwaway: m.kind == MachineType::Application,
        runtime_dirs: [mv_core::layout::agent_socket(&m.name), ssh.clone()]
            .iter()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect(),
        seed: seed.then(|| tree.seed_disk(&m.name)),
        console_log: Some(tree.console_log(&m.name)),
        ssh_socket: Some(ssh),
        agent_channel: Some(mv_core::layout::AGENT_CHANNEL.to_string()),
        luks_secret: luks.map(|passphrase| mv_libvirt::LuksSecret {
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

pub(crate) fn up_error(e: UpError) -> CliError {
    let hint = match &e {
        UpError::Read { .. } => Some("run `multiverse render` first"),
        UpError::Xml { .. } | UpError::Unexpected { .. } | UpError::Define { .. } => {
            Some("fix multiverse.toml or templates/ and run `multiverse render` again")
        }
        UpError::Collision { .. } => Some(
            "`multiverse backup` files the other object under backups/foreign/; undefine it, or rename our machine",
        ),
        UpError::Disk {
            source: ImageError::MissingBase { .. },
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

fn print_report(g: &Global, r: &UpReport, verb_none: &str) -> Result<(), CliError> {
    if g.json {
        multiverse::global::print_json(r)?;
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
            i.done.as_str(),
            i.what,
            i.name
        ));
    }
    if r.nothing_changed() {
        g.say(verb_none);
    }
    Ok(())
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
        .any(|m| mv_machines::luks_secret_uuid(m).is_some());
    let root = if (a.start && seeded) || encrypted {
        Some(provision::unseal(g, &a.pass)?)
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
            if mv_machines::luks_secret_uuid(m).is_some()
                && !conn.domain_is_active(m.name.as_str()).unwrap_or(false)
            {
                rotate::finish_rekey(g, root, m, &tree)?;
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
    let ready: Option<mv_libvirt::ReadyProbe<'_>> = (a.start && !a.no_wait).then_some(&probe);
    let report = mv_libvirt::up_with(&conn, &spec, &opts, ready).map_err(up_error)?;
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
        let d = provision::render_machine(g, topo, &m.name, root, &person)?;
        match provision::ensure_seed(tree, &d, g.dry_run)? {
            provision::SeedOutcome::Written(id) => g.say(format!(
                "{}seeded          disk     {} (seed {})",
                if g.dry_run { "would be " } else { "" },
                m.name,
                &id.0[..12]
            )),
            provision::SeedOutcome::Unchanged(_) => {
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
    let sock = mv_core::layout::agent_socket(&name);
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
    let report = mv_libvirt::down(
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
