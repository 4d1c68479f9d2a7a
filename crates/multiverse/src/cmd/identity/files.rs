//! How `identity export`, `identity fleet` and `identity rotate --fleet` plan and write key
//! files (`mv_identity::export`), and print what changed.

use super::Kind;
use crate::error::CliError;
use crate::global::Global;
use mv_core::secret::SecretString;
use mv_core::IdentityName;
use mv_identity::{export, PublicIdentity, Root};
use std::path::Path;

/// The library's kinds of `--kind` values, in the order given (`all` is every kind).
pub(super) fn kinds(list: &[Kind]) -> Vec<export::Kind> {
    list.iter()
        .flat_map(|&k| <&[export::Kind]>::from(k))
        .copied()
        .collect()
}

/// Threads for writing: export folders (or, per file, fsyncs) overlap well.
const WRITE_THREADS: usize = 16;

/// [`WRITE_THREADS`], or `MULTIVERSE_EXPORT_THREADS` (1-64; for the benchmark).
fn write_threads() -> usize {
    std::env::var("MULTIVERSE_EXPORT_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(WRITE_THREADS)
}

/// Writes the plan (or, with --dry-run, lists it) and prints what changed.
pub(crate) fn apply(
    g: &Global,
    files: &[export::ExportFile],
    key_pass: Option<&SecretString>,
    folders: mv_core::fsutil::Folders,
) -> Result<(), CliError> {
    // One sync per export folder; MULTIVERSE_EXPORT_SYNC=per-file restores one fsync per file
    // (bench/identity.sh compares the two).
    let sync = match std::env::var("MULTIVERSE_EXPORT_SYNC").as_deref() {
        Ok("per-file") => export::SyncMode::PerFile,
        _ => export::SyncMode::PerFolder,
    };
    let outcomes =
        export::write_files_synced(files, key_pass, g.dry_run, write_threads(), folders, sync)?;
    let (mut written, mut same) = (0, 0);
    for (f, o) in files.iter().zip(&outcomes) {
        match o {
            export::Outcome::Written => {
                written += 1;
                let verb = if g.dry_run {
                    "would write"
                } else {
                    "wrote     "
                };
                g.say(format!("{verb} {}", f.path.display()));
            }
            export::Outcome::Unchanged => {
                same += 1;
                if g.verbose > 0 {
                    g.say(format!("unchanged   {}", f.path.display()));
                }
            }
        }
    }
    if g.dry_run {
        g.say(format!(
            "dry run: {written} file(s) would be written, {same} unchanged"
        ));
    } else if written == 0 {
        g.say(format!("nothing to do: all {same} file(s) unchanged"));
    } else {
        g.say(format!("{written} file(s) written, {same} unchanged"));
    }
    Ok(())
}

/// The files of a fleet folder: every machine's keys in `out/<fqdn>/`, the person's login keys in
/// `out/@user/`, a `known_hosts` (current host keys, then `@revoked` lines for the host keys of a
/// rotated machine's earlier epochs) and the person's `authorized_keys`. Also returns the public
/// identities, for the record.
pub(crate) fn fleet_files(
    root: &Root,
    topo: &mv_machines::Topology,
    user: &IdentityName,
    out: &Path,
    key_pass: Option<&SecretString>,
) -> Result<(Vec<export::ExportFile>, Vec<PublicIdentity>), CliError> {
    let mut files = Vec::new();
    let mut ids = Vec::new();
    let mut known_hosts = String::new();
    let mut revoked = String::new();
    for m in &topo.machines {
        let name = IdentityName::Machine(m.name.clone());
        let dir = out.join(m.name.as_str());
        files.extend(export::plan(
            root,
            &name,
            &export::Kind::ALL,
            &dir,
            key_pass,
        )?);
        let id = root.public_identity(&name)?;
        known_hosts.push_str(&export::known_hosts_lines(&id));
        revoked.push_str(&mv_identity::rotate::revoked_known_hosts(root, &name)?);
        ids.push(id);
    }
    known_hosts.push_str(&revoked);
    let person = root.public_identity(user)?;
    files.extend(export::plan(
        root,
        user,
        &[export::Kind::Ssh],
        &out.join(user.as_str()),
        key_pass,
    )?);
    files.push(export::public_file(out.join("known_hosts"), known_hosts));
    files.push(export::public_file(
        out.join("authorized_keys"),
        export::authorized_keys_lines(&person),
    ));
    ids.push(person);
    Ok((files, ids))
}
