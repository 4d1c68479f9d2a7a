//! Step `guests` of a rotation: every running machine whose provisioned state the new epoch
//! changes gets it now (`mv_provision::remote::reprovision`); the others get it from their seed
//! at their next `up --start`.

use crate::error::CliError;
use crate::global::Global;
use mv_core::IdentityName;
use mv_identity::Root;
use mv_provision::{remote, SeedOutcome};

/// Step 4: the machines whose provisioned state changes with the new epoch, brought up to date
/// while they run (see the module docs). Rendering every machine twice is cheap next to one SSH
/// login under TCG, and it finds exactly the machines a rotation touches, whichever recipe put the
/// key where.
pub(super) fn update_running_guests(
    g: &Global,
    root: &Root,
    topo: &mv_machines::Topology,
    name: &IdentityName,
    person: &IdentityName,
    from: u32,
    to: u32,
) -> Result<(), CliError> {
    let tree = mv_machines::Tree::new(g.root.clone());
    let (old, new) = (root.at_epoch(name, from), root.at_epoch(name, to));
    // Only running machines are rendered: one that cannot be (galaxy without its VPN settings)
    // cannot have been started by `up --start` either.
    let mut stopped = 0;
    let mut left = Vec::new();
    for m in topo.vms() {
        if !crate::cmd::ssh::channel_open(&m.name) {
            stopped += 1;
            continue;
        }
        let before = crate::cmd::provision::render_machine(g, topo, &m.name, &old, person)?;
        let after = crate::cmd::provision::render_machine(g, topo, &m.name, &new, person)?;
        if mv_provision::seed_id(&before) == mv_provision::seed_id(&after) {
            continue;
        }
        // A machine still booting, or started without provisioning, has no agent (and maybe no
        // sshd) yet: its agent is asked first, which answers at once or not at all.
        let reached = agent_answers(&m.name)
            .map_err(|e| format!("its agent does not answer ({e})"))
            .and_then(|()| {
                update_guest(g, &tree, &m.name, &old, &new, person, &after)
                    .map_err(|e| format!("{:#}", e.error))
            });
        if let Err(why) = reached {
            eprintln!("warning: {} runs with the old keys: {why}", m.name);
            left.push(m.name.to_string());
        }
    }
    if stopped > 0 {
        g.say(format!(
            "{stopped} machine(s) not running: each gets the new keys from a new seed at its next `up --start`"
        ));
    }
    if !left.is_empty() {
        g.say(format!(
            "still on the old keys until restarted (`multiverse down FQDN`, then `multiverse up --start FQDN` applies a new seed): {}",
            left.join(", ")
        ));
    }
    Ok(())
}

/// One running machine: its seed written, then `mv_provision::remote::reprovision` (log in with
/// the old keys, apply `desired`, mark the seed applied, check the new keys).
fn update_guest(
    g: &Global,
    tree: &mv_machines::Tree,
    machine: &mv_core::MachineName,
    old: &Root,
    new: &Root,
    person: &IdentityName,
    desired: &mv_provision::Desired,
) -> Result<(), CliError> {
    let seed = match crate::cmd::provision::ensure_seed(tree, desired, false)? {
        SeedOutcome::Written(id) | SeedOutcome::Unchanged(id) => id,
    };
    let r = remote::Reprovision {
        machine,
        person,
        old,
        new,
        desired,
        seed: &seed,
        proxy: crate::cmd::ssh::channel_proxy(g, machine)?,
    };
    let done = remote::reprovision(&r, &mut |done| {
        for c in done.changes.iter().filter(|c| c.is_warning()) {
            eprintln!("warning: {machine}: {}", c.summary());
        }
    })?;
    g.say(format!(
        "{machine}: running, provisioned with the new keys ({} change(s)); it presents the new host key",
        done.changes.iter().filter(|c| !c.is_warning()).count()
    ));
    Ok(())
}

/// Whether `machine`'s agent answers over its virtio-serial channel as the machine itself.
fn agent_answers(machine: &mv_core::MachineName) -> Result<(), String> {
    let sock = mv_core::layout::agent_socket(machine);
    let client = mv_agent::Client::unix(sock).with_timeout(std::time::Duration::from_secs(10));
    let info = client.info().map_err(|e| e.to_string())?;
    match info.fqdn.as_deref() {
        Some(h) if h == machine.as_str() => Ok(()),
        other => Err(format!("it answers as {other:?}")),
    }
}
