//! Keys as files: the standard file names and modes of each kind of export, `known_hosts` and
//! `authorized_keys` lines, and an idempotent, parallel writer.
//!
//! Used by `multiverse identity export|fleet`, and meant for any crate that puts keys into a machine
//! (provisioning a host key into an image, the guard's LUKS key). File names:
//!
//! | kind | files (secrets 0600, the rest 0644) |
//! |---|---|
//! | [`Kind::Ssh`] | `id_ed25519`, `id_ecdsa` and their `.pub` |
//! | [`Kind::SshHost`] | `ssh_host_ed25519_key`, `ssh_host_ecdsa_key` and their `.pub` (never encrypted: sshd cannot ask) |
//! | [`Kind::Onion`] | `hs_ed25519_secret_key`, `hs_ed25519_public_key`, `hostname` |
//! | [`Kind::Openpgp`] | `openpgp-secret.asc`, `openpgp-public.asc`; for a rotated name also `openpgp-revoked.asc` (its earlier epochs' keys with their revocations) |
//! | [`Kind::Password`] | `password` (the 32 characters and a newline) |
//! | [`Kind::Luks`] | `luks.key` (64 raw bytes) |
//!
//! Writing goes through `mv_core::fsutil`, so each file is old or new after a crash. By default
//! ([`SyncMode::PerFolder`]) the files of each folder are written to temporary files
//! ([`fsutil::prepare_batch`], folders on several threads), one `syncfs` makes all of them durable,
//! then each folder's renames and one fsync of that folder follow: no fsync per file, the same
//! guarantee. [`SyncMode::PerFile`] is the older writer (temp file, fsync, rename, fsync of the
//! folder, per file). Secret files are only written into folders of the caller or root
//! ([`ExportError::ForeignFolder`] otherwise, before anything is written); with
//! [`Folders::AllowForeign`] (the CLI's `--force`) they are written there anyway, still mode 0600
//! from creation and owned by the caller, and a symlink of that other user is still never followed.
//! An existing file counts as current only if it is a regular file (not a link) of ours.

use crate::keys::KeyError;
use crate::public::PublicIdentity;
use crate::root::Root;
use mv_core::fsutil::{self, Folders, ForeignFolder, FsError};
use mv_core::secret::{SecretBytes, SecretString};
use mv_core::IdentityName;
use ssh_key::{LineEnding, PrivateKey};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One kind of export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Login keys.
    Ssh,
    /// sshd host keys.
    SshHost,
    /// Tor v3 onion service.
    Onion,
    /// OpenPGP secret and public key, armored.
    Openpgp,
    /// The machine password.
    Password,
    /// The LUKS key file.
    Luks,
}

impl Kind {
    /// Every kind, in table order.
    pub const ALL: [Kind; 6] = [
        Kind::Ssh,
        Kind::SshHost,
        Kind::Onion,
        Kind::Openpgp,
        Kind::Password,
        Kind::Luks,
    ];
}

/// A file to write.
pub struct ExportFile {
    /// Where.
    pub path: PathBuf,
    /// What.
    pub contents: SecretBytes,
    /// Mode 0600 (else 0644).
    pub secret: bool,
    /// For a passphrase-encrypted SSH key, the key it must hold: its bytes differ on every
    /// encryption (random salt), so "unchanged" means "decrypts to this key".
    equivalent: Option<PrivateKey>,
}

impl std::fmt::Debug for ExportFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportFile")
            .field("path", &self.path)
            .field("contents", &self.contents)
            .field("secret", &self.secret)
            .finish()
    }
}

fn file(path: PathBuf, contents: Vec<u8>, secret: bool) -> ExportFile {
    ExportFile {
        path,
        contents: SecretBytes::new(contents),
        secret,
        equivalent: None,
    }
}

fn ssh_files(
    dir: &Path,
    base: &str,
    key: PrivateKey,
    key_pass: Option<&SecretString>,
    what: &'static str,
) -> Result<[ExportFile; 2], KeyError> {
    let ssh = |source| KeyError::Ssh { what, source };
    let public = key.public_key().to_openssh().map_err(ssh)?;
    let (contents, equivalent) = match key_pass {
        None => (
            key.to_openssh(LineEnding::LF)
                .map_err(ssh)?
                .as_bytes()
                .to_vec(),
            None,
        ),
        Some(p) => {
            let enc = key
                .encrypt(&mut ssh_key::rand_core::OsRng, p.expose().as_bytes())
                .map_err(ssh)?;
            (
                enc.to_openssh(LineEnding::LF)
                    .map_err(ssh)?
                    .as_bytes()
                    .to_vec(),
                Some(key),
            )
        }
    };
    Ok([
        ExportFile {
            path: dir.join(base),
            contents: SecretBytes::new(contents),
            secret: true,
            equivalent,
        },
        file(
            dir.join(format!("{base}.pub")),
            format!("{public}\n").into_bytes(),
            false,
        ),
    ])
}

/// The files of `kinds` for `name` in `dir`. `key_pass` encrypts the login SSH keys.
pub fn plan(
    root: &Root,
    name: &IdentityName,
    kinds: &[Kind],
    dir: &Path,
    key_pass: Option<&SecretString>,
) -> Result<Vec<ExportFile>, KeyError> {
    let mut kinds = kinds.to_vec();
    kinds.sort();
    kinds.dedup();
    let mut out = Vec::new();
    for kind in kinds {
        match kind {
            Kind::Ssh => {
                out.extend(ssh_files(
                    dir,
                    "id_ed25519",
                    root.ssh_ed25519(name)?,
                    key_pass,
                    "ssh-ed25519",
                )?);
                out.extend(ssh_files(
                    dir,
                    "id_ecdsa",
                    root.ssh_ecdsa_p256(name)?,
                    key_pass,
                    "ssh-ecdsa-p256",
                )?);
            }
            Kind::SshHost => {
                out.extend(ssh_files(
                    dir,
                    "ssh_host_ed25519_key",
                    root.ssh_host_ed25519(name)?,
                    None,
                    "ssh-host-ed25519",
                )?);
                out.extend(ssh_files(
                    dir,
                    "ssh_host_ecdsa_key",
                    root.ssh_host_ecdsa_p256(name)?,
                    None,
                    "ssh-host-ecdsa-p256",
                )?);
            }
            Kind::Onion => {
                let o = root.onion_v3(name);
                out.push(file(
                    dir.join("hs_ed25519_secret_key"),
                    o.secret_file.expose().clone(),
                    true,
                ));
                out.push(file(
                    dir.join("hs_ed25519_public_key"),
                    o.public_file,
                    false,
                ));
                out.push(file(
                    dir.join("hostname"),
                    format!("{}\n", o.hostname).into_bytes(),
                    false,
                ));
            }
            Kind::Openpgp => {
                let k = root.openpgp(name)?;
                let opts = pgp::composed::ArmorOptions::default;
                let pgp_err = |e: pgp::errors::Error| KeyError::OpenPgp(e.to_string());
                let sec = k.to_armored_string(opts()).map_err(pgp_err)?;
                let public = k
                    .to_public_key()
                    .to_armored_string(opts())
                    .map_err(pgp_err)?;
                out.push(file(dir.join("openpgp-secret.asc"), sec.into_bytes(), true));
                out.push(file(
                    dir.join("openpgp-public.asc"),
                    public.into_bytes(),
                    false,
                ));
                // A rotated name: its earlier epochs' keys, revoked as superseded, beside the new.
                let revoked = crate::rotate::revoked_openpgp_armored(root, name)?;
                if !revoked.is_empty() {
                    out.push(file(
                        dir.join("openpgp-revoked.asc"),
                        revoked.into_bytes(),
                        false,
                    ));
                }
            }
            Kind::Password => {
                let p = root.password(name);
                out.push(file(
                    dir.join("password"),
                    format!("{}\n", p.expose()).into_bytes(),
                    true,
                ));
            }
            Kind::Luks => {
                out.push(file(
                    dir.join("luks.key"),
                    root.luks_key(name).expose().clone(),
                    true,
                ));
            }
        }
    }
    Ok(out)
}

/// A public file (known_hosts, authorized_keys...) to write with the others.
pub fn public_file(path: PathBuf, text: String) -> ExportFile {
    file(path, text.into_bytes(), false)
}

/// The two `known_hosts` lines of a machine: its host keys under its name and its onion address.
pub fn known_hosts_lines(id: &PublicIdentity) -> String {
    let mut s = String::new();
    for key in [&id.ssh_host_ed25519, &id.ssh_host_ecdsa_p256] {
        s.push_str(&format!("{},{} {key}\n", id.name, id.onion));
    }
    s
}

/// The two `authorized_keys` lines of a person or machine: its login keys, commented with its name.
pub fn authorized_keys_lines(id: &PublicIdentity) -> String {
    format!(
        "{} {}\n{} {}\n",
        id.ssh_ed25519, id.name, id.ssh_ecdsa_p256, id.name
    )
}

impl ExportFile {
    /// Whether the file on disk already holds what it should, with the right mode.
    pub fn is_current(&self, key_pass: Option<&SecretString>) -> bool {
        let mode = if self.secret {
            fsutil::SECRET_MODE
        } else {
            fsutil::PUBLIC_MODE
        };
        // Never through a link, never blocking on a FIFO; a secret must be ours.
        let Ok((meta, existing)) = fsutil::read_regular(&self.path) else {
            return false;
        };
        if meta.permissions().mode() & 0o7777 != mode
            || (self.secret && meta.uid() != fsutil::effective_uid())
        {
            return false;
        }
        let existing = SecretBytes::new(existing.to_vec());
        match (&self.equivalent, key_pass) {
            (Some(want), Some(pass)) => PrivateKey::from_openssh(existing.expose())
                .ok()
                .filter(|k| k.is_encrypted())
                .and_then(|k| k.decrypt(pass.expose().as_bytes()).ok())
                .is_some_and(|k| k.key_data() == want.key_data()),
            _ => existing.expose() == self.contents.expose(),
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written (or, on a dry run, would be).
    Written,
    /// Already current; not touched.
    Unchanged,
}

/// Why writing exported files failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A folder could not be created or made private.
    #[error("cannot create the private folder {path}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write an exported key")]
    Write(#[source] FsError),
    /// Secrets would land in (or be led through a link of) a folder of another user.
    #[error(
"refusing to write secret keys into {}: {reason}",
        folder.display()
    )]
    ForeignFolder {
        /// The export folder asked for.
        folder: PathBuf,
        /// What on its path belongs to someone else.
        reason: ForeignFolder,
    },
}

/// Creates `dir` with mode 0700 if it does not exist (tor insists on it for an onion folder, and
/// the folder holds secrets), and so are the missing folders above it: the mode is given to
/// `mkdir` itself, never set afterwards on a path someone could have swapped. An existing folder
/// keeps its mode.
fn private_dir(dir: &Path) -> Result<(), ExportError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ExportError::Folder {
            path: dir.to_path_buf(),
            source,
        })
}

fn write_one(
    f: &ExportFile,
    key_pass: Option<&SecretString>,
    dry_run: bool,
    folders: Folders,
) -> Result<Outcome, ExportError> {
    if f.is_current(key_pass) {
        return Ok(Outcome::Unchanged);
    }
    if dry_run {
        return Ok(Outcome::Written);
    }
    if let Some(dir) = f.path.parent() {
        private_dir(dir)?;
    }
    let r = if f.secret {
        fsutil::write_atomic_with(&f.path, f.contents.expose(), fsutil::SECRET_MODE, folders)
    } else {
        fsutil::write_public(&f.path, f.contents.expose())
    };
    r.map_err(|e| match (e.foreign_folder().cloned(), f.path.parent()) {
        (Some(reason), Some(folder)) => ExportError::ForeignFolder {
            folder: folder.to_path_buf(),
            reason,
        },
        _ => ExportError::Write(e),
    })?;
    Ok(Outcome::Written)
}

/// [`write_files_synced`] with the defaults (folders of the caller or root only, one sync per
/// folder), for the tests.
#[cfg(test)]
fn write_files(
    files: &[ExportFile],
    key_pass: Option<&SecretString>,
    dry_run: bool,
    threads: usize,
) -> Result<Vec<Outcome>, ExportError> {
    write_files_synced(
        files,
        key_pass,
        dry_run,
        threads,
        Folders::TrustedOnly,
        SyncMode::default(),
    )
}

/// The first folder of a secret in `files` that [`Folders::TrustedOnly`] refuses, and why: for a
/// warning before a forced export.
pub fn foreign_folder(files: &[ExportFile]) -> Option<(PathBuf, ForeignFolder)> {
    files.iter().filter(|f| f.secret).find_map(|f| {
        let dir = f.path.parent()?;
        fsutil::untrusted_folder(dir).map(|r| (dir.to_path_buf(), r))
    })
}

/// How exported files reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// One `syncfs` per export folder ([`fsutil::write_batch`]): every file's bytes, then the
    /// renames, then the folder. The default.
    #[default]
    PerFolder,
    /// One fsync per file and per rename ([`fsutil::write_atomic`]), spread over threads.
    PerFile,
}

/// Writes every file that is not already current (nothing on `dry_run`), on up to `threads`
/// threads. Returns one outcome per file, in order; stops at the first error (files written before
/// it stay written, each complete). With [`Folders::TrustedOnly`], secrets go only into folders of
/// the caller or root. Both sync modes are crash safe (each file is old or new after a crash),
/// [`SyncMode::PerFolder`] with one filesystem sync per folder.
pub fn write_files_synced(
    files: &[ExportFile],
    key_pass: Option<&SecretString>,
    dry_run: bool,
    threads: usize,
    folders: Folders,
    sync: SyncMode,
) -> Result<Vec<Outcome>, ExportError> {
    if sync == SyncMode::PerFile || dry_run {
        return write_files_per_file(files, key_pass, dry_run, threads, folders);
    }
    if folders == Folders::TrustedOnly {
        if let Some((folder, reason)) = foreign_folder(files) {
            return Err(ExportError::ForeignFolder { folder, reason });
        }
    }
    // Files by folder, in first-seen order; each folder is one batch.
    let mut groups: Vec<(&Path, Vec<usize>)> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let dir = f.path.parent().unwrap_or(Path::new("."));
        match groups.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, v)) => v.push(i),
            None => groups.push((dir, vec![i])),
        }
    }
    for (d, _) in &groups {
        private_dir(d)?;
    }
    let started = std::time::SystemTime::now();
    // Phase 1 on threads: every folder's changed files into temporary files.
    let prepared = on_threads(threads, &groups, |(dir, idx)| {
        prepare_group(files, dir, idx, key_pass, folders)
    })?;
    // Phase 2: one sync for all of them; phase 3 on threads: renames and one fsync per folder.
    let batches: Vec<&fsutil::Prepared> = prepared.iter().map(|(p, _, _)| p).collect();
    let synced = fsutil::sync_batches(&batches).map_err(ExportError::Write)?;
    drop(batches);
    let cells: Vec<std::sync::Mutex<Option<PreparedGroup>>> = prepared
        .into_iter()
        .map(|p| std::sync::Mutex::new(Some(p)))
        .collect();
    let mut outcomes = vec![Outcome::Unchanged; files.len()];
    let committed = on_threads(threads, &cells, |cell| {
        // Each cell is taken by exactly one thread (on_threads hands out each item once).
        let taken = cell.lock().ok().and_then(|mut c| c.take());
        let Some((p, which, mut out)) = taken else {
            return Ok(Vec::new());
        };
        let written = p.commit(&synced).map_err(ExportError::Write)?;
        // A run killed half-way left temporary files of these targets: now that each target is
        // current, they are garbage (a writer that started after us keeps its own).
        if let Some(dir) = which
            .first()
            .or(out.first().map(|(i, _)| i))
            .and_then(|i| files[*i].path.parent())
        {
            let names: Vec<&std::ffi::OsStr> = which
                .iter()
                .chain(out.iter().map(|(i, _)| i))
                .filter_map(|i| files[*i].path.file_name())
                .collect();
            let _ = fsutil::remove_stale_temps(dir, &names, started);
        }
        for (i, w) in which.into_iter().zip(written) {
            out.push((
                i,
                if w {
                    Outcome::Written
                } else {
                    Outcome::Unchanged
                },
            ));
        }
        Ok(out)
    })?;
    for group in committed {
        for (i, o) in group {
            outcomes[i] = o;
        }
    }
    Ok(outcomes)
}

type PreparedGroup = (fsutil::Prepared, Vec<usize>, Vec<(usize, Outcome)>);

/// Runs `f` over `items` on up to `threads` threads; results in order, the first error stops.
fn on_threads<I: Sync, T: Send>(
    threads: usize,
    items: &[I],
    f: impl Fn(&I) -> Result<T, ExportError> + Sync,
) -> Result<Vec<T>, ExportError> {
    let next = AtomicUsize::new(0);
    let threads = threads.clamp(1, items.len().max(1));
    let mut results: Vec<(usize, Result<T, ExportError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            break;
                        };
                        let r = f(item);
                        let failed = r.is_err();
                        mine.push((i, r));
                        if failed {
                            next.store(items.len(), Ordering::Relaxed);
                            break;
                        }
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// One folder's changed files into temporary files ([`fsutil::prepare_batch`]); an encrypted SSH
/// key that already decrypts to its key counts as current and is left alone.
fn prepare_group(
    files: &[ExportFile],
    dir: &Path,
    idx: &[usize],
    key_pass: Option<&SecretString>,
    folders: Folders,
) -> Result<PreparedGroup, ExportError> {
    let mut unchanged = Vec::new();
    let mut batch = Vec::new();
    let mut which = Vec::new();
    for &i in idx {
        let f = &files[i];
        if f.equivalent.is_some() && f.is_current(key_pass) {
            unchanged.push((i, Outcome::Unchanged));
            continue;
        }
        let Some(name) = f.path.file_name() else {
            return Err(ExportError::Write(FsError::new(
                "not a file path:",
                &f.path,
                std::io::ErrorKind::InvalidInput.into(),
            )));
        };
        batch.push(fsutil::BatchFile {
            name,
            contents: f.contents.expose(),
            mode: if f.secret {
                fsutil::SECRET_MODE
            } else {
                fsutil::PUBLIC_MODE
            },
        });
        which.push(i);
    }
    let p = fsutil::prepare_batch(dir, &batch, folders).map_err(|e| {
        match e.foreign_folder().cloned() {
            Some(reason) => ExportError::ForeignFolder {
                folder: dir.to_path_buf(),
                reason,
            },
            None => ExportError::Write(e),
        }
    })?;
    Ok((p, which, unchanged))
}

/// The per-file writer: one atomic write (two fsyncs) per file, on `threads` threads.
fn write_files_per_file(
    files: &[ExportFile],
    key_pass: Option<&SecretString>,
    dry_run: bool,
    threads: usize,
    folders: Folders,
) -> Result<Vec<Outcome>, ExportError> {
    // Refuse before creating or writing anything.
    if folders == Folders::TrustedOnly {
        if let Some((folder, reason)) = foreign_folder(files) {
            return Err(ExportError::ForeignFolder { folder, reason });
        }
    }
    // Folders first, in order, so that two threads never race to create the same one.
    if !dry_run {
        let mut dirs: Vec<&Path> = files.iter().filter_map(|f| f.path.parent()).collect();
        dirs.dedup();
        for d in dirs {
            private_dir(d)?;
        }
    }
    let next = AtomicUsize::new(0);
    let threads = threads.clamp(1, files.len().max(1));
    let mut results: Vec<(usize, Result<Outcome, ExportError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = files.get(i) else { break };
                        let r = write_one(f, key_pass, dry_run, folders);
                        let failed = r.is_err();
                        mine.push((i, r));
                        if failed {
                            // Let the others finish their current file and stop.
                            next.store(files.len(), Ordering::Relaxed);
                            break;
                        }
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plan_names_and_modes() {
        let root = Root::from_bytes([3; 32]);
        let name = IdentityName::parse("a.multiverse").unwrap();
        let d = tempfile::tempdir().unwrap();
        let files = plan(&root, &name, &Kind::ALL, d.path(), None).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 15);
        for secret in [
            "id_ed25519",
            "luks.key",
            "password",
            "hs_ed25519_secret_key",
        ] {
            let f = files.iter().find(|f| f.path.ends_with(secret)).unwrap();
            assert!(f.secret, "{secret}");
        }
        let out = write_files(&files, None, false, 4).unwrap();
        assert!(out.iter().all(|o| *o == Outcome::Written));
        let again = write_files(&files, None, false, 4).unwrap();
        assert!(again.iter().all(|o| *o == Outcome::Unchanged));
        assert!(format!("{:?}", files[0]).contains("REDACTED"));
    }

    #[test]
    fn dry_run_writes_nothing() {
        let root = Root::from_bytes([3; 32]);
        let name = IdentityName::parse("@user").unwrap();
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("x");
        let files = plan(&root, &name, &[Kind::Luks], &dir, None).unwrap();
        assert_eq!(
            write_files(&files, None, true, 2).unwrap(),
            [Outcome::Written]
        );
        assert!(!dir.exists());
    }
}
