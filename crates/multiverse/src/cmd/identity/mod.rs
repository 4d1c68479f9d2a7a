//! `multiverse identity new|restore|show|export|fleet|lock`: the Scramble Suit on the command
//! line (`rotate` lives in `cmd/rotate/`).
//!
//! Only parsing, prompting, printing and file writing live here; every key comes from
//! `mv_identity`. Passphrases come from `crate::secret_input` (file, env, prompt; never argv),
//! and only when the session cache (`crate::unsealed`) does not hold the root already; `lock`
//! empties that cache.
//! Recovery words come from stdin or `--words-file`, never argv either.
//!
//! Exit codes: bad input (a malformed name, a wrong checksum word, a wrong passphrase, an existing
//! identity without `--force`) is 2; everything else that fails is 1. Nothing is written before
//! every input has been checked.

use crate::error::{CliError, Hinted};
use crate::global::Global;
use crate::secret_input;
use mv_core::secret::SecretString;
use mv_core::IdentityName;
use mv_identity::{export, IdentityStore, PublicIdentity, PublicRecord, Root};

mod args;
mod files;

pub use args::{Command, ExportArgs, FleetArgs, Kind, NewArgs, PassArgs, RestoreArgs, ShowArgs};
use files::kinds;
pub(crate) use files::{apply, fleet_files};

/// Runs the command.
pub fn run(g: &Global, c: Command) -> Result<(), CliError> {
    match c {
        Command::New(a) => new(g, a),
        Command::Restore(a) => restore(g, a),
        Command::Show(a) => show(g, a),
        Command::Export(a) => export(g, a),
        Command::Fleet(a) => fleet(g, a),
        Command::Rotate(a) => super::rotate::run(g, a),
        Command::Lock => super::pass::session_lock(g),
    }
}

pub(crate) fn parse_name(s: &str) -> Result<IdentityName, CliError> {
    IdentityName::parse(s)
        .usage()
        .hint("names are a machine's lower-case FQDN (universe.router.multiverse) or @user")
}

/// Checks `multiverse.toml`, when the tree has one, before any key is derived: its
/// `[identity.epochs]` decides which keys every name has (`FILE:LINE`, exit 2).
pub(crate) fn check_config(g: &Global) -> Result<(), CliError> {
    let config = mv_machines::Tree::new(g.root.clone()).config_file();
    if config.exists() {
        mv_machines::Topology::load(&config).usage()?;
    }
    Ok(())
}

/// Loads and unseals the tree's identity; the root carries the tree's key epochs.
pub(crate) fn unseal(g: &Global, pass: &PassArgs) -> Result<Root, CliError> {
    unseal_with(g, pass, true)
}

/// [`unseal`]; `warn_unfinished` warns when a rotation is half done (its keys may not all agree).
pub(crate) fn unseal_with(
    g: &Global,
    pass: &PassArgs,
    warn_unfinished: bool,
) -> Result<Root, CliError> {
    check_config(g)?;
    if let Some(j) = warn_unfinished
        .then(|| mv_identity::rotate::Journal::load(&g.root).ok().flatten())
        .flatten()
    {
        eprintln!(
            "multiverse: warning: the rotation of {} (epoch {} to {}) is unfinished; finish it \
             with `multiverse identity rotate {}`",
            j.name, j.from, j.to, j.name
        );
    }
    crate::unsealed::unseal_tree_hinted(g, pass.passphrase_file.as_deref())
}

/// A passphrase for a new seal: never empty (an empty one would protect nothing).
fn new_passphrase(pass: &PassArgs) -> Result<SecretString, CliError> {
    let p = secret_input::passphrase(pass.passphrase_file.as_deref(), "New passphrase", true)?;
    if p.expose().is_empty() {
        return Err(CliError::usage_msg("the passphrase is empty")
            .with_hint("the sealed root is only as safe as its passphrase: choose a long one"));
    }
    Ok(p)
}

fn print_words(root: &Root) {
    let words = root.mnemonic();
    println!("Recovery words (shown once; write them down, they restore every key):");
    println!("{}", words.expose());
}

fn new(g: &Global, a: NewArgs) -> Result<(), CliError> {
    let params = a.kdf.params()?;
    let path = IdentityStore::sealed_path(&g.root);
    if IdentityStore::exists(&g.root) && !a.force {
        return Err(CliError::usage_msg(format!(
            "an identity already exists at {}",
            path.display()
        ))
        .with_hint("pass --force to replace it (its keys are lost unless you kept its words)"));
    }
    if g.dry_run {
        g.say(format!(
            "would create a new identity at {} ({params})",
            path.display()
        ));
        return Ok(());
    }
    let passphrase = new_passphrase(&a.pass)?;
    let root = Root::generate();
    let store = IdentityStore::create(
        &g.root,
        &root,
        passphrase.expose().as_bytes(),
        params,
        a.force,
    )
    .usage()?;
    crate::unsealed::remember(&store, &root);
    print_words(&root);
    g.say(format!(
        "sealed identity written to {} ({params})",
        path.display()
    ));
    record_topology(g, &root)
}

fn restore(g: &Global, a: RestoreArgs) -> Result<(), CliError> {
    let params = a.kdf.params()?;
    let words = secret_input::recovery_words(a.words_file.as_deref())?;
    let root = Root::from_mnemonic(words.expose())
        .usage()
        .hint("give the 24 words in order, separated by spaces or new lines")?;
    drop(words);
    let path = IdentityStore::sealed_path(&g.root);
    let passphrase = new_passphrase(&a.pass)?;
    if IdentityStore::exists(&g.root) {
        // Idempotent: the same words under the same passphrase are already there.
        let existing = IdentityStore::load(&g.root)
            .ok()
            .and_then(|s| crate::unsealed::check(&s, passphrase.expose().as_bytes()).ok());
        if existing.as_ref().is_some_and(|e| e.same_secret(&root)) {
            g.say(format!(
                "unchanged: {} already holds this identity",
                path.display()
            ));
            return Ok(());
        }
        if !a.force {
            return Err(CliError::usage_msg(format!(
                "a different identity (or another passphrase) already exists at {}",
                path.display()
            ))
            .with_hint("pass --force to replace it"));
        }
    }
    if g.dry_run {
        g.say(format!(
            "would seal the restored identity to {} ({params})",
            path.display()
        ));
        return Ok(());
    }
    let store =
        IdentityStore::create(&g.root, &root, passphrase.expose().as_bytes(), params, true)?;
    crate::unsealed::remember(&store, &root);
    g.say(format!(
        "restored identity sealed to {} ({params})",
        path.display()
    ));
    record_topology(g, &root)
}

/// After `new` or `restore` sealed a root: the public record starts afresh (entries of a replaced
/// identity would be wrong) with every machine of `multiverse.toml` and `@user`, so `machine show`
/// prints them without asking for the passphrase. Without a (valid) `multiverse.toml` the record
/// holds `@user` only: the identity itself is already sealed either way.
fn record_topology(g: &Global, root: &Root) -> Result<(), CliError> {
    let config = mv_machines::Tree::new(g.root.clone()).config_file();
    let mut names = vec![parse_name("@user")?];
    if config.exists() {
        match mv_machines::Topology::load(&config) {
            Ok(topo) => names.extend(
                topo.machines
                    .iter()
                    .map(|m| IdentityName::Machine(m.name.clone())),
            ),
            Err(e) => tracing::warn!("machine keys not recorded: {e}"),
        }
    }
    // The words restore the secret; the tree's multiverse.toml says each name's epoch.
    let root = match mv_identity::load_epochs(&g.root) {
        Ok(epochs) => root.clone().with_epochs(epochs),
        Err(e) => {
            tracing::warn!("public keys not recorded: {e}");
            return Ok(());
        }
    };
    let mut rec = PublicRecord::default();
    for name in &names {
        rec.merge([root.public_identity(name)?]);
    }
    rec.save(&g.root)?;
    let count = names.len();
    g.say(format!(
        "recorded the public keys of {count} names in {}",
        PublicRecord::path(&g.root).display()
    ));
    Ok(())
}

/// Records public identities in `identity/public.json` (not on --dry-run).
pub(crate) fn record(g: &Global, ids: Vec<PublicIdentity>) -> Result<(), CliError> {
    if g.dry_run {
        return Ok(());
    }
    let mut rec = PublicRecord::load(&g.root)?;
    if rec.merge(ids) {
        rec.save(&g.root)?;
    }
    Ok(())
}

fn show(g: &Global, a: ShowArgs) -> Result<(), CliError> {
    let name = parse_name(&a.name)?;
    let root = unseal(g, &a.pass)?;
    let id = root.public_identity(&name)?;
    record(g, vec![id.clone()])?;
    let published = match &name {
        IdentityName::Machine(m) => published_onion(g, m),
        _ => None,
    };
    if g.json {
        match &published {
            None => crate::global::print_json(&id)?,
            Some((star, service)) => {
                #[derive(serde::Serialize)]
                struct Published<'a> {
                    #[serde(flatten)]
                    id: &'a mv_identity::PublicIdentity,
                    onion_ports: &'a [u16],
                    onion_published_by: &'a str,
                }
                let out = Published {
                    id: &id,
                    onion_ports: &service.ports,
                    onion_published_by: star.as_str(),
                };
                crate::global::print_json(&out)?;
            }
        }
    } else {
        println!("name                 {}", id.name);
        println!("epoch                {}", id.epoch);
        println!("ssh_ed25519          {}", id.ssh_ed25519);
        println!("ssh_ecdsa_p256       {}", id.ssh_ecdsa_p256);
        println!("ssh_host_ed25519     {}", id.ssh_host_ed25519);
        println!("ssh_host_ecdsa_p256  {}", id.ssh_host_ecdsa_p256);
        println!("onion                {}", id.onion);
        if let Some((star, service)) = &published {
            let ports: Vec<String> = service.ports.iter().map(u16::to_string).collect();
            println!(
                "onion_ports          {} (published by {star}, to {})",
                ports.join(", "),
                service.address
            );
        }
        println!("openpgp_fingerprint  {}", id.openpgp_fingerprint);
    }
    Ok(())
}

/// The star router publishing `machine`'s onion service, and that service (`onion = [..]` in
/// `multiverse.toml`); `None` when it publishes nothing or the tree has no valid file.
pub(crate) fn published_onion(
    g: &Global,
    machine: &mv_core::MachineName,
) -> Option<(mv_core::MachineName, mv_machines::OnionService)> {
    let config = mv_machines::Tree::new(g.root.clone()).config_file();
    let topo = mv_machines::Topology::load(&config).ok()?;
    let found = topo
        .vms()
        .filter(|m| {
            m.router
                .as_ref()
                .is_some_and(|r| r.role == mv_machines::RouterRole::Star)
        })
        .find_map(|star| {
            let service = topo
                .onion_services(&star.name)
                .into_iter()
                .find(|s| &s.machine == machine)?;
            Some((star.name.clone(), service))
        });
    found
}

fn export(g: &Global, a: ExportArgs) -> Result<(), CliError> {
    let name = parse_name(&a.name)?;
    let key_pass = secret_input::key_passphrase(a.key_pass.key_passphrase_file.as_deref())?;
    let root = unseal(g, &a.pass)?;
    let files = export::plan(&root, &name, &kinds(&a.kind), &a.out, key_pass.as_ref())?;
    record(g, vec![root.public_identity(&name)?])?;
    let folders = if a.force {
        if let Some((dir, why)) = export::foreign_folder(&files) {
            eprintln!(
                "multiverse: warning: writing secret keys into {} anyway (--force): {why}",
                dir.display()
            );
        }
        mv_core::fsutil::Folders::AllowForeign
    } else {
        mv_core::fsutil::Folders::TrustedOnly
    };
    apply(g, &files, key_pass.as_ref(), folders)
}

fn fleet(g: &Global, a: FleetArgs) -> Result<(), CliError> {
    let user = parse_name(&a.user)?;
    if !matches!(user, IdentityName::Person(_)) {
        return Err(
            CliError::usage_msg(format!("--user `{}` is not a person name", a.user))
                .with_hint("a person is written @name, e.g. --user @user"),
        );
    }
    let config = mv_machines::Tree::new(g.root.clone()).config_file();
    let topo = mv_machines::Topology::load(&config)
        .usage()
        .hint("fleet reads the machines of multiverse.toml; create it with `multiverse init`")?;
    let key_pass = secret_input::key_passphrase(a.key_pass.key_passphrase_file.as_deref())?;
    let root = unseal(g, &a.pass)?;
    let (files, ids) = fleet_files(&root, &topo, &user, &a.out, key_pass.as_ref())?;
    record(g, ids)?;
    apply(
        g,
        &files,
        key_pass.as_ref(),
        mv_core::fsutil::Folders::TrustedOnly,
    )
}
