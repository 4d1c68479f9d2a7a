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
use mv_identity::rotate::Journal;
use mv_identity::Root;
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The steps, in order.
const STEPS: [&str; 6] = ["pass", "config", "record", "guests", "fleet", "luks"];

/// Runs the command.
pub fn run(g: &Global, a: RotateArgs) -> Result<(), CliError> {
    let name = identity::parse_name(&a.name)?;
    let user = identity::parse_name(&a.user)?;
    let tree = mv_machines::layout::Tree::new(g.root.clone());
    let config = tree.config_file();
    let topo = mv_machines::config::Topology::load(&config)
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
    let pending = Journal::load(&g.root)?;
    let mut journal = match pending {
        Some(j) if j.name == name.as_str() => {
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
            let mut j = j;
            if fleet.is_some() {
                j.fleet = fleet.clone();
            }
            if !luks_devices.is_empty() {
                j.luks = luks_devices.clone();
            }
            j
        }
        Some(j) => {
            return Err(CliError::usage_msg(format!(
                "the rotation of {} (epoch {} to {}) is unfinished",
                j.name, j.from, j.to
            ))
            .with_hint(&format!(
                "finish it first: `multiverse identity rotate {}`",
                j.name
            )))
        }
        None => {
            let from = topo.epochs.get(&name);
            let to = from.checked_add(1).ok_or_else(|| {
                CliError::usage_msg(format!(
                    "{name} is at epoch {from}, the last one (2^32 - 1): it cannot be rotated again"
                ))
            })?;
            Journal {
                name: name.as_str().to_string(),
                from,
                to,
                done: Default::default(),
                fleet: fleet.clone(),
                luks: luks_devices.clone(),
            }
        }
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
                .filter(|mm| mv_machines::render::luks_secret_uuid(mm).is_some());
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

    for step in STEPS {
        if journal.is_done(step) {
            continue;
        }
        match step {
            "pass" => reencrypt_pass(g, &root, &name, from, to)?,
            "config" => {
                // Read again: the file may have been edited since; a rerun finds it already done.
                let text = mv_machines::config::Topology::read_text(&config).usage()?;
                let now = mv_machines::config::Topology::parse(&text, &config).usage()?;
                if now.epochs.get(&name) != to {
                    let edited = mv_machines::edit::set_epoch(
                        &text,
                        &config.display().to_string(),
                        &name,
                        to,
                    )?;
                    mv_machines::config::Topology::parse(&edited, &config).usage()?;
                    let mode = std::fs::metadata(&config)
                        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
                        .unwrap_or(mv_core::fsutil::PUBLIC_MODE);
                    mv_core::fsutil::write_atomic(&config, edited.as_bytes(), mode)?;
                }
                g.say(format!("{}: {name} = {to}", config.display()));
                if matches!(name, IdentityName::Person(_)) {
                    // The pass session cache holds the person's key of the old epoch under an id
                    // of the sealed root, which a rotation does not change: forget it.
                    if let Ok(true) = mv_pass::agent::Client::default_session().lock() {
                        g.say("pass: the session cache was locked (it held the old key)");
                    }
                }
            }
            "record" => {
                identity::record(g, vec![new_id.clone()])?;
            }
            "guests" => update_running_guests(g, &root, &topo, &name, &user, from, to)?,
            "fleet" => {
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
            "luks" => {
                for dev in &journal.luks {
                    rekey_luks(g, &old, &new, &name, dev)?;
                }
                if let IdentityName::Machine(m) = &name {
                    if let Some(machine) = topo.machine(m) {
                        if rekey_disks(g, &old, &new, &name, machine, &tree)? {
                            let _ = std::fs::remove_file(rekey_marker(&tree, &machine.name));
                            if mv_machines::render::luks_secret_uuid(machine).is_some() {
                                g.say(format!(
                                    "run `multiverse up {name}` to give libvirt the disks' new key"
                                ));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        journal.mark(&g.root, step)?;
        pause_point(step);
    }
    Journal::finish(&g.root)?;
    g.say(format!(
        "rotated {name} from epoch {from} to {to}: OpenPGP {} (old {} revoked), onion {}",
        new_id.openpgp_fingerprint, old_id.openpgp_fingerprint, new_id.onion
    ));
    Ok(())
}

/// Step 4: the machines whose provisioned state changes with the new epoch, brought up to date
/// while they run (see the module docs). Rendering every machine twice is cheap next to one SSH
/// login under TCG, and it finds exactly the machines a rotation touches, whichever recipe put the
/// key where.
fn update_running_guests(
    g: &Global,
    root: &Root,
    topo: &mv_machines::config::Topology,
    name: &IdentityName,
    person: &IdentityName,
    from: u32,
    to: u32,
) -> Result<(), CliError> {
    let tree = mv_machines::layout::Tree::new(g.root.clone());
    let (old, new) = (root.at_epoch(name, from), root.at_epoch(name, to));
    // Only running machines are rendered: one that cannot be (galaxy without its VPN settings)
    // cannot have been started by `up --start` either.
    let mut stopped = 0;
    let mut left = Vec::new();
    for m in topo.vms() {
        if !super::ssh::channel_open(&m.name) {
            stopped += 1;
            continue;
        }
        let before = super::provision::render_machine(g, topo, &m.name, &old, person)?;
        let after = super::provision::render_machine(g, topo, &m.name, &new, person)?;
        if mv_provision::seed::seed_id(&before) == mv_provision::seed::seed_id(&after) {
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

/// One running machine: log in with the old keys, apply `desired`, record its seed, then log in
/// with the new keys.
fn update_guest(
    g: &Global,
    tree: &mv_machines::layout::Tree,
    machine: &mv_core::MachineName,
    old: &Root,
    new: &Root,
    person: &IdentityName,
    desired: &mv_provision::Desired,
) -> Result<(), CliError> {
    let failed = |what: &str, e: CliError| {
        CliError::failure_msg(format!("{machine}: {what}: {:#}", e.error))
    };
    let seed = match super::provision::ensure_seed(tree, desired, false)? {
        super::provision::SeedOutcome::Written(id)
        | super::provision::SeedOutcome::Unchanged(id) => id,
    };
    let apply_with = |keys: &Root| -> Result<mv_provision::Applied, CliError> {
        let login = super::ssh::Login::new(keys, person, machine, machine.as_str())?;
        let target = super::provision::channel_target(g, desired, &login)?;
        mv_provision::apply(desired, &target, &mv_provision::SystemRunner)
            .map_err(super::provision::apply_error)
    };
    // The old keys are what the machine still has; after a crash past the apply, a rerun finds
    // it with the new ones.
    let done = match apply_with(old) {
        Ok(done) => done,
        Err(e) => apply_with(new).map_err(|_| failed("cannot apply the new keys", e))?,
    };
    for c in done.changes.iter().filter(|c| c.is_warning()) {
        eprintln!("warning: {machine}: {}", c.summary());
    }
    // The host's check: the machine now presents the new host key (known_hosts holds only the
    // new one, strictly) and takes the new login key; sshd may reload in the background, so a
    // few tries. In the same session the seed is marked applied: the guest's seed stage skips a
    // seed it has applied, and this state is that seed's.
    let check = super::ssh::Login::new(new, person, machine, machine.as_str())?;
    let check_target = super::provision::channel_target(g, desired, &check)?;
    let mark_and_name = format!(
        "mkdir -p /var/lib/multiverse && printf '%s\\n' {} > /var/lib/multiverse/seed-id.tmp && mv /var/lib/multiverse/seed-id.tmp /var/lib/multiverse/seed-id && hostname -f",
        seed.0
    );
    let mut last = String::new();
    for _ in 0..10 {
        match remote(&check_target, &mark_and_name) {
            Ok(out) if out.trim() == machine.as_str() => {
                g.say(format!(
                    "{machine}: running, provisioned with the new keys ({} change(s)); it presents the new host key",
                    done.changes.iter().filter(|c| !c.is_warning()).count()
                ));
                return Ok(());
            }
            Ok(out) => last = format!("it answered {:?} as its hostname", out.trim()),
            Err(e) => last = e,
        }
        std::thread::sleep(std::time::Duration::from_secs(3));
    }
    Err(failed(
        "after provisioning it does not present the new host key",
        CliError::failure_msg(last),
    ))
}

/// The test hook: stop here for a minute when `MV_ROTATE_PAUSE_AFTER` names this step.
fn pause_point(step: &str) {
    if std::env::var("MV_ROTATE_PAUSE_AFTER").is_ok_and(|v| v == step) {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

fn pass_store_dir(g: &Global) -> PathBuf {
    match std::env::var_os("PASSWORD_STORE_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => g.root.join("pass"),
    }
}

fn pass_keys_dir(g: &Global) -> PathBuf {
    match std::env::var_os("MULTIVERSE_PASS_KEYS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => g.root.join("pass-keys"),
    }
}

/// Every `.gpg-id` below `dir` (not in `.git`, no link followed), as folders relative to `dir`.
fn gpg_id_folders(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let t = e.file_type()?;
        let n = e.file_name();
        if t.is_file() && n == ".gpg-id" {
            out.push(rel.to_path_buf());
        } else if t.is_dir() && n != ".git" {
            gpg_id_folders(&e.path(), &rel.join(&n), out)?;
        }
    }
    Ok(())
}

/// Step 1: pass entries encrypted to the old key are re-encrypted to the new one.
fn reencrypt_pass(
    g: &Global,
    root: &Root,
    name: &IdentityName,
    from: u32,
    to: u32,
) -> Result<(), CliError> {
    let dir = pass_store_dir(g);
    if !dir.is_dir() {
        return Ok(());
    }
    let old_key = root.at_epoch(name, from).openpgp(name)?;
    let new_key = root.at_epoch(name, to).openpgp(name)?;
    let old_fpr = mv_identity::fingerprint_hex(&old_key);
    let new_fpr = mv_identity::fingerprint_hex(&new_key);
    let old_long_id = old_fpr[24..].to_string();
    let keys = mv_pass::KeyDir::new(pass_keys_dir(g));
    let mut ring = if keys.path().is_dir() {
        keys.load(None)?
    } else {
        mv_pass::Keyring::new()
    };
    ring.add_secret(old_key);
    ring.add_secret(new_key.clone());
    let store = mv_pass::Store::new(dir.clone());
    let mut folders = Vec::new();
    gpg_id_folders(&dir, Path::new(""), &mut folders)?;
    let mut reencrypted = 0;
    let mut touched = false;
    for folder in folders {
        let id_file = dir.join(&folder).join(".gpg-id");
        let text = std::fs::read_to_string(&id_file)?;
        let ids: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        let names_old = |id: &str| {
            let id = id.trim_start_matches("0x").to_ascii_uppercase();
            id == old_fpr || id == old_long_id
        };
        if !ids.iter().any(|i| names_old(i)) {
            continue;
        }
        let mut new_ids: Vec<String> = Vec::new();
        for id in &ids {
            let id = if names_old(id) {
                new_fpr.clone()
            } else {
                id.clone()
            };
            if !new_ids.contains(&id) {
                new_ids.push(id);
            }
        }
        let sub = if folder.as_os_str().is_empty() {
            None
        } else {
            Some(mv_pass::EntryName::parse(&folder.to_string_lossy()).usage()?)
        };
        if !touched && keys.path().is_dir() {
            keys.put_public(&new_key.to_public_key())?;
        }
        touched = true;
        let ch = store.init(sub.as_ref(), &new_ids, &ring)?;
        reencrypted += ch.files.len().saturating_sub(1);
    }
    if let IdentityName::Machine(m) = name {
        let entry = mv_pass::EntryName::parse(&format!("machines/{m}/root")).usage()?;
        if store.contains(&entry) {
            let pw = root.at_epoch(name, to).password(name);
            let content = SecretString::new(format!("{}\nuser: root\nmachine: {m}\n", pw.expose()));
            let msg = format!("Rotate the password of {entry} (epoch {to}).");
            if store
                .write_if_changed(&entry, content.expose().as_bytes(), &msg, &ring)?
                .is_some()
            {
                g.say(format!("pass: {entry} has the new password"));
            }
        }
    }
    g.say(format!(
        "pass: {reencrypted} entr{} re-encrypted from {old_fpr} to {new_fpr}",
        if reencrypted == 1 { "y" } else { "ies" }
    ));
    Ok(())
}

/// A private scratch folder for key files, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch() -> Result<Scratch, CliError> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for i in 0..100u32 {
        let p = base.join(format!(".mv-rotate-{}-{i}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => return Ok(Scratch(p)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CliError::failure_msg(
        "cannot make a private scratch folder",
    ))
}

/// What `qemu-img` says of an encrypted disk and a passphrase.
#[derive(Debug, PartialEq, Eq)]
enum DiskOpen {
    Opens,
    WrongKey,
    /// Held (locked) by a running machine.
    InUse,
}

/// Whether the passphrase in `pass` opens the encrypted qcow2 `disk` (`qemu-img check`, which
/// reads it and writes nothing).
fn disk_open(disk: &Path, pass: &Path) -> Result<DiskOpen, CliError> {
    match disk_opens(disk, pass) {
        Ok(true) => Ok(DiskOpen::Opens),
        Ok(false) => Ok(DiskOpen::WrongKey),
        Err(e) if matches!(e.kind, crate::error::Kind::Usage) => Ok(DiskOpen::InUse),
        Err(e) => Err(e),
    }
}

/// [`disk_open`] as a yes/no; a disk held by a running machine is an error.
fn disk_opens(disk: &Path, pass: &Path) -> Result<bool, CliError> {
    let out = Command::new("qemu-img")
        .arg("check")
        .arg("--object")
        .arg(key_object("k", pass))
        .arg("--image-opts")
        .arg(image_opts(disk, "k"))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| CliError::failure_msg(format!("cannot run qemu-img: {e}")))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(true)
    } else if err.contains("Invalid password") {
        Ok(false)
    } else if err.contains("lock") {
        Err(CliError::usage_msg(format!(
            "{}: the disk is in use (its machine is running)",
            disk.display()
        ))
        .with_hint("shut the machine down (`multiverse down FQDN`), then run the rotation again"))
    } else {
        Err(CliError::failure_msg(format!(
            "qemu-img check of {} failed: {}",
            disk.display(),
            err.trim()
        )))
    }
}

/// `secret,id=ID,format=raw,file=PATH`: a QEMU secret object read from a 0600 file.
fn key_object(id: &str, file: &Path) -> std::ffi::OsString {
    let mut o = std::ffi::OsString::from(format!("secret,id={id},format=raw,file="));
    o.push(file.as_os_str());
    o
}

fn image_opts(disk: &Path, key_id: &str) -> std::ffi::OsString {
    let mut o = std::ffi::OsString::from("driver=qcow2,file.filename=");
    o.push(disk.as_os_str());
    o.push(format!(",encrypt.key-secret={key_id}"));
    o
}

/// `qemu-img amend` of an encrypted disk opened with secret `open` (both key files named).
fn amend(disk: &Path, old: &Path, new: &Path, open: &str, opts: &str) -> Result<(), CliError> {
    let out = Command::new("qemu-img")
        .arg("amend")
        .arg("--object")
        .arg(key_object("old", old))
        .arg("--object")
        .arg(key_object("new", new))
        .arg("--image-opts")
        .arg(image_opts(disk, open))
        .args(["-o", opts])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| CliError::failure_msg(format!("cannot run qemu-img: {e}")))?;
    if !out.status.success() {
        return Err(CliError::failure_msg(format!(
            "qemu-img amend of {} failed: {}",
            disk.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Step 5 for a machine whose disks are encrypted (`disk_encryption = "luks"`): each existing
/// LUKS qcow2 disk gets the new passphrase (the hex of the new `luks` key) in a keyslot and loses
/// the old one, with `qemu-img amend` reading both from 0600 files, never argv. Idempotent like
/// [`rekey_luks`]. A running machine holds its disks (QEMU locks them) and keeps its open volume
/// key: its disks are re-keyed at its next `up --start`, before it starts ([`finish_rekey`],
/// from a marker file naming the old epoch); the answer is then `Ok(false)`.
fn rekey_disks(
    g: &Global,
    old: &Root,
    new: &Root,
    name: &IdentityName,
    machine: &mv_machines::Machine,
    tree: &mv_machines::layout::Tree,
) -> Result<bool, CliError> {
    if mv_machines::render::luks_secret_uuid(machine).is_none() {
        return Ok(true);
    }
    let disks: Vec<PathBuf> = (0..machine.disks.len())
        .map(|i| tree.disk_n(&machine.name, i))
        .filter(|d| d.exists())
        .collect();
    if disks.is_empty() {
        return Ok(true);
    }
    let s = scratch()?;
    let old_file = s.0.join("old.pass");
    let new_file = s.0.join("new.pass");
    let hex = mv_core::secret::hex_lower;
    mv_core::fsutil::write_secret(&old_file, hex(&old.luks_key(name)).expose())?;
    mv_core::fsutil::write_secret(&new_file, hex(&new.luks_key(name)).expose())?;
    if let Some(disk) = disks
        .iter()
        .find(|d| matches!(disk_open(d, &new_file), Ok(DiskOpen::InUse)))
    {
        let from = old.epochs().get(name);
        mv_core::fsutil::write_public(
            &rekey_marker(tree, &machine.name),
            format!("{from}\n").as_bytes(),
        )?;
        g.say(format!(
            "{}: in use by the running {}: its LUKS keyslot changes at the machine's next `multiverse up --start` (the running machine keeps its open disk)",
            disk.display(),
            machine.name
        ));
        return Ok(false);
    }
    for disk in &disks {
        if !disk_opens(disk, &new_file)? {
            if !disk_opens(disk, &old_file)? {
                return Err(CliError::usage_msg(format!(
                    "{}: neither the old nor the new LUKS key of {name} opens it",
                    disk.display()
                )));
            }
            amend(
                disk,
                &old_file,
                &new_file,
                "old",
                "encrypt.state=active,encrypt.new-secret=new,encrypt.iter-time=10",
            )?;
            g.say(format!("{}: new LUKS key added", disk.display()));
        }
        if disk_opens(disk, &old_file)? {
            amend(
                disk,
                &old_file,
                &new_file,
                "new",
                "encrypt.state=inactive,encrypt.old-secret=old",
            )?;
            g.say(format!("{}: old LUKS keyslot removed", disk.display()));
        }
    }
    Ok(true)
}

/// `machines/<fqdn>/luks-rekey-pending`: the epoch whose key still opens the machine's disks,
/// left by a rotation that found the machine running.
fn rekey_marker(tree: &mv_machines::layout::Tree, machine: &mv_core::MachineName) -> PathBuf {
    tree.machine_dir(machine).join("luks-rekey-pending")
}

/// For `up`, before it starts a shut-off machine: the re-key a rotation left pending (see
/// [`rekey_disks`]), from the epoch in the marker to `root`'s. Nothing when there is no marker.
pub fn finish_rekey(
    g: &Global,
    root: &Root,
    machine: &mv_machines::Machine,
    tree: &mv_machines::layout::Tree,
) -> Result<(), CliError> {
    let marker = rekey_marker(tree, &machine.name);
    let Ok(text) = std::fs::read_to_string(&marker) else {
        return Ok(());
    };
    let from: u32 = text.trim().parse().map_err(|_| {
        CliError::usage_msg(format!(
            "{}: not an epoch: {:?}",
            marker.display(),
            text.trim()
        ))
    })?;
    let name = IdentityName::Machine(machine.name.clone());
    if rekey_disks(g, &root.at_epoch(&name, from), root, &name, machine, tree)? {
        std::fs::remove_file(&marker)?;
    }
    Ok(())
}

/// Whether `key` opens a keyslot of `dev` (`cryptsetup open --test-passphrase`, no mapping made).
fn luks_opens(dev: &Path, key: &Path) -> Result<bool, CliError> {
    let st = Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file"])
        .arg(key)
        .arg(dev)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| CliError::failure_msg(format!("cannot run cryptsetup: {e}")))?;
    Ok(st.success())
}

fn cryptsetup(args: &[&std::ffi::OsStr]) -> Result<(), CliError> {
    let out = Command::new("cryptsetup")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| CliError::failure_msg(format!("cannot run cryptsetup: {e}")))?;
    if !out.status.success() {
        return Err(CliError::failure_msg(format!(
            "cryptsetup {} failed: {}",
            args.first()
                .map(|a| a.to_string_lossy())
                .unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Step 5: the new LUKS key in a keyslot of `dev`, the old key's keyslot removed. Idempotent: a
/// key already present is not added twice, an old key already gone is not removed.
fn rekey_luks(
    g: &Global,
    old: &Root,
    new: &Root,
    name: &IdentityName,
    dev: &Path,
) -> Result<(), CliError> {
    let s = scratch()?;
    let old_file = s.0.join("old.key");
    let new_file = s.0.join("new.key");
    mv_core::fsutil::write_secret(&old_file, old.luks_key(name).expose())?;
    mv_core::fsutil::write_secret(&new_file, new.luks_key(name).expose())?;
    if !luks_opens(dev, &new_file)? {
        if !luks_opens(dev, &old_file)? {
            return Err(CliError::usage_msg(format!(
                "{}: neither the old nor the new LUKS key of {name} opens it",
                dev.display()
            )));
        }
        cryptsetup(&[
            "luksAddKey".as_ref(),
            "--batch-mode".as_ref(),
            "--key-file".as_ref(),
            old_file.as_os_str(),
            dev.as_os_str(),
            new_file.as_os_str(),
        ])?;
        g.say(format!("{}: new LUKS key added", dev.display()));
    }
    if luks_opens(dev, &old_file)? {
        cryptsetup(&[
            "luksRemoveKey".as_ref(),
            "--batch-mode".as_ref(),
            dev.as_os_str(),
            old_file.as_os_str(),
        ])?;
        g.say(format!("{}: old LUKS keyslot removed", dev.display()));
    }
    Ok(())
}

/// Runs `command` on the machine of an SSH `target`; its stdout, or what failed.
fn remote(target: &mv_provision::Target, command: &str) -> Result<String, String> {
    let Some((ssh, options)) = target.ssh().and_then(|s| s.split_first()) else {
        return Err("not an SSH target".into());
    };
    let out = Command::new(ssh)
        .args(options)
        .arg("--")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ssh: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ssh {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether `machine`'s agent answers over its virtio-serial channel as the machine itself.
fn agent_answers(machine: &mv_core::MachineName) -> Result<(), String> {
    let sock = mv_machines::layout::agent_socket(machine);
    let client = mv_agent::Client::unix(sock).with_timeout(std::time::Duration::from_secs(10));
    let info = client.info().map_err(|e| e.to_string())?;
    match info.fqdn.as_deref() {
        Some(h) if h == machine.as_str() => Ok(()),
        other => Err(format!("it answers as {other:?}")),
    }
}
