//! `multiverse identity rotate NAME`: replace one name's keys without a new root
//! (`docs/spec/scramble-v1-epochs.md`, "Rotation").
//!
//! The name's epoch e becomes e + 1. Steps, each recorded in the journal
//! (`mv_identity::rotate::Journal`, `<tree>/identity/rotate.json`) once done, so a rerun after a
//! crash continues with the same epochs and ends where an uninterrupted run ends:
//!
//! 1. `pass`: every `.gpg-id` of the pass store that names the old OpenPGP key names the new one
//!    instead, and what it covers is re-encrypted (`mv_pass::Store::init`, as `pass init` does),
//!    while the old key can still decrypt it; the new certificate goes into the key folder; for a
//!    machine, its `machines/<fqdn>/root` entry gets the new password;
//! 2. `config`: `[identity.epochs]` of `multiverse.toml` gets the new epoch (toml_edit, comments
//!    kept; the edited text is validated before it is written);
//! 3. `record`: `identity/public.json` holds the new public identity;
//! 4. `guests`: every running machine whose provisioned state the new epoch changes (the machine
//!    itself: host keys, password; for a person: `authorized_keys` everywhere; a star router
//!    holding a rotated service's onion key) gets it now, over its virtio-serial SSH channel:
//!    logged in and its host key checked with the keys of the *old* epoch (what the machine still
//!    has), the new state applied as `provision apply` does (sshd and tor reload what changed),
//!    its new seed disk written and marked applied in the guest (so the next `up` finds it
//!    current), then a second login checks the machine now presents the *new* host key and takes
//!    the new login key. A machine that is not running gets the new state from its seed at its
//!    next `up --start`;
//! 5. `fleet` (with `--fleet DIR`): the folder `identity fleet` wrote is brought up to date: the
//!    new keys, `openpgp-revoked.asc` beside them (the old key with its revocation, reason 0x01),
//!    `known_hosts` with the old host keys `@revoked`, `authorized_keys` with the new login keys;
//! 6. `luks` (with `--luks-device PATH`): the new LUKS key is added to the device and the old
//!    key's keyslot removed (cryptsetup reads both keys from 0600 files, never argv).
//!
//! Everything a machine derives at provisioning (host keys, its password, the person's key in
//! `authorized_keys`) follows from the epoch: step 4 applies it to the running machines, the seed
//! of the next boot to the others.
//!
//! `MV_ROTATE_PAUSE_AFTER=STEP` (tests only) makes the process stop for a minute after the step is
//! journaled, so a test can kill it there.

use super::identity::{self, PassArgs};
use crate::error::{CliError, Hinted};
use crate::global::Global;
use mv_core::secret::SecretString;
use mv_core::IdentityName;
use mv_identity::rotate::{self, BeginError, Begun, Journal, LuksError, Step};
use mv_identity::Root;
use std::path::PathBuf;

mod guests;
mod pass;

/// `identity rotate`.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// The machine FQDN or person (@user) whose keys are replaced
    pub name: String,
    /// A folder written by `identity fleet --out DIR`, brought up to date (new keys, revocations,
    /// known_hosts, authorized_keys)
    #[arg(long, value_name = "DIR")]
    pub fleet: Option<PathBuf>,
    /// The person whose login keys are in the fleet's authorized_keys
    #[arg(long, value_name = "USER", default_value = "@user")]
    pub user: String,
    /// A LUKS device or image holding the old LUKS key: the new key is added, the old keyslot
    /// removed (repeatable)
    #[arg(long, value_name = "PATH")]
    pub luks_device: Vec<PathBuf>,
    #[command(flatten)]
    pub pass: PassArgs,
}

/// Runs the command.
pub fn run(g: &Global, a: RotateArgs) -> Result<(), CliError> {
    let name = identity::parse_name(&a.name)?;
    let user = identity::parse_name(&a.user)?;
    let tree = mv_machines::Tree::new(g.root.clone());
    let config = tree.config_file();
    let topo = mv_machines::Topology::load(&config)
        .usage()
        .hint("the epochs live in multiverse.toml; create it with `multiverse init`")?;
    if let IdentityName::Machine(m) = &name {
        if topo.machine(m).is_none() {
            return Err(CliError::usage_msg(format!(
                "{}: `{m}` is not a machine of this file",
                config.display()
            ))
            .with_hint("rotate a machine of multiverse.toml or a person (@user)"));
        }
    }
    // The journal must name the same folders from any working directory.
    let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    let fleet = a.fleet.as_ref().map(absolute);
    let luks_devices: Vec<PathBuf> = a.luks_device.iter().map(absolute).collect();
    let from = topo.epochs.get(&name);
    let begun =
        Journal::begin(&g.root, &name, from, fleet, luks_devices).map_err(|e| match &e {
            BeginError::Unfinished { name, .. } => {
                let hint = format!("finish it first: `multiverse identity rotate {name}`");
                CliError::usage_msg(e).with_hint(&hint)
            }
            BeginError::LastEpoch(_) => CliError::usage_msg(e),
            BeginError::Journal(_) => CliError::from(e),
        })?;
    let mut journal = match begun {
        Begun::Resumed(j) => {
            g.say(format!(
                "resuming the rotation of {} from epoch {} to {} (done: {})",
                j.name,
                j.from,
                j.to,
                if j.done.is_empty() {
                    "nothing yet".to_string()
                } else {
                    j.done.iter().cloned().collect::<Vec<_>>().join(", ")
                }
            ));
            j
        }
        Begun::New(j) => j,
    };
    let root = identity::unseal_with(g, &a.pass, false)?;
    let (from, to) = (journal.from, journal.to);
    let old = root.at_epoch(&name, from);
    let new = root.at_epoch(&name, to);
    let old_id = old.public_identity(&name)?;
    let new_id = new.public_identity(&name)?;

    if g.dry_run {
        g.say(format!("would rotate {name} from epoch {from} to {to}:"));
        g.say(format!(
            "  OpenPGP {} -> {} (the old key revoked: superseded)",
            old_id.openpgp_fingerprint, new_id.openpgp_fingerprint
        ));
        g.say(format!("  onion {} -> {}", old_id.onion, new_id.onion));
        g.say(format!(
            "  login key {} -> {}",
            old_id.ssh_ed25519, new_id.ssh_ed25519
        ));
        g.say(format!(
            "  steps: re-encrypt pass entries to the new key, {} epoch in {}, public record{}{}",
            name,
            config.display(),
            journal
                .fleet
                .as_ref()
                .map(|f| format!(", fleet {}", f.display()))
                .unwrap_or_default(),
            if journal.luks.is_empty() {
                String::new()
            } else {
                format!(", {} LUKS keyslot(s)", journal.luks.len())
            }
        ));
        if let IdentityName::Machine(m) = &name {
            let encrypted = topo
                .machine(m)
                .filter(|mm| mv_machines::luks_secret_uuid(mm).is_some());
            if let Some(mm) = encrypted {
                let disks = (0..mm.disks.len())
                    .filter(|i| tree.disk_n(m, *i).exists())
                    .count();
                g.say(format!(
                    "  re-key {disks} encrypted disk(s) of {m} (qemu-img amend; the machine shut off)"
                ));
            }
        }
        return Ok(());
    }
    journal.save(&g.root)?;
    pause_point("start");

    for step in Step::ALL {
        if journal.is_done(step.as_str()) {
            continue;
        }
        match step {
            Step::Pass => pass::reencrypt_pass(g, &root, &name, from, to)?,
            Step::Config => {
                // Read again: the file may have been edited since; a rerun finds it already done.
                mv_machines::set_epoch_in_file(&config, &name, to)?;
                g.say(format!("{}: {name} = {to}", config.display()));
                if matches!(name, IdentityName::Person(_)) {
                    // The pass session cache holds the person's key of the old epoch under an id
                    // of the sealed root, which a rotation does not change: forget it.
                    if let Ok(true) = mv_pass::agent::Client::default_session().lock() {
                        g.say("pass: the session cache was locked (it held the old key)");
                    }
                }
            }
            Step::Record => {
                identity::record(g, vec![new_id.clone()])?;
            }
            Step::Guests => guests::update_running_guests(g, &root, &topo, &name, &user, from, to)?,
            Step::Fleet => {
                if let Some(dir) = &journal.fleet {
                    if !matches!(user, IdentityName::Person(_)) {
                        return Err(CliError::usage_msg(format!(
                            "--user `{}` is not a person name",
                            a.user
                        )));
                    }
                    // The tree's epochs with the new one, whatever the file said when unsealed.
                    let current = root.clone().with_epochs({
                        let mut e = root.epochs().clone();
                        e.set(&name, to);
                        e
                    });
                    let key_pass: Option<SecretString> = None;
                    let (files, _) =
                        identity::fleet_files(&current, &topo, &user, dir, key_pass.as_ref())?;
                    identity::apply(g, &files, None, mv_core::fsutil::Folders::TrustedOnly)?;
                }
            }
            Step::Luks => {
                let mut say = |line: String| g.say(line);
                for dev in &journal.luks {
                    rotate::rekey_device(&old, &new, &name, dev, &mut say).map_err(luks_error)?;
                }
                if let IdentityName::Machine(m) = &name {
                    if let Some(machine) = topo.machine(m) {
                        let (disks, marker) = encrypted_disks(machine, &tree);
                        if rotate::rekey_disks(&old, &new, &name, &disks, &marker, &mut say)
                            .map_err(luks_error)?
                        {
                            let _ = std::fs::remove_file(&marker);
                            if mv_machines::luks_secret_uuid(machine).is_some() {
                                g.say(format!(
                                    "run `multiverse up {name}` to give libvirt the disks' new key"
                                ));
                            }
                        }
                    }
                }
            }
        }
        journal.mark(&g.root, step.as_str())?;
        pause_point(step.as_str());
    }
    Journal::finish(&g.root)?;
    g.say(format!(
        "rotated {name} from epoch {from} to {to}: OpenPGP {} (old {} revoked), onion {}",
        new_id.openpgp_fingerprint, old_id.openpgp_fingerprint, new_id.onion
    ));
    Ok(())
}

/// The test hook: stop here for a minute when `MV_ROTATE_PAUSE_AFTER` names this step.
fn pause_point(step: &str) {
    if std::env::var("MV_ROTATE_PAUSE_AFTER").is_ok_and(|v| v == step) {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// The CLI's hint for a disk held by its running machine.
fn luks_error(e: LuksError) -> CliError {
    match e {
        LuksError::InUse(_) => CliError::usage_msg(e).with_hint(
            "shut the machine down (`multiverse down FQDN`), then run the rotation again",
        ),
        LuksError::NeitherKey { .. } | LuksError::Marker { .. } => CliError::usage_msg(e),
        e => CliError::from(e),
    }
}

/// The existing disks of `machine` that are LUKS-encrypted (none unless `disk_encryption =
/// "luks"`), and `machines/<fqdn>/luks-rekey-pending`: the epoch whose key still opens them,
/// left by a rotation that found the machine running.
fn encrypted_disks(
    machine: &mv_machines::Machine,
    tree: &mv_machines::Tree,
) -> (Vec<PathBuf>, PathBuf) {
    let marker = tree.machine_dir(&machine.name).join("luks-rekey-pending");
    if mv_machines::luks_secret_uuid(machine).is_none() {
        return (Vec::new(), marker);
    }
    let disks = (0..machine.disks.len())
        .map(|i| tree.disk_n(&machine.name, i))
        .filter(|d| d.exists())
        .collect();
    (disks, marker)
}

/// For `up`, before it starts a shut-off machine: the re-key a rotation left pending
/// (`mv_identity::rotate::finish_rekey`). Nothing when there is none.
pub fn finish_rekey(
    g: &Global,
    root: &Root,
    machine: &mv_machines::Machine,
    tree: &mv_machines::Tree,
) -> Result<(), CliError> {
    let (disks, marker) = encrypted_disks(machine, tree);
    let name = IdentityName::Machine(machine.name.clone());
    rotate::finish_rekey(root, &name, &disks, &marker, &mut |line| g.say(line)).map_err(luks_error)
}
