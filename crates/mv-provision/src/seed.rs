//! The seed: a machine's [`Desired`] state carried to the machine itself, which applies it at
//! first boot (cloud-init's NoCloud idea, with our own format and our own applier).
//!
//! Why: a machine's disk is a qcow2 overlay on a shared base image, and the host must never
//! interpret a guest's filesystem (a compromised guest controls every link in it). So the host
//! does not write into the overlay. It writes a **seed folder**, which the CLI packs into a small
//! read-only ext4 disk labelled [`SEED_LABEL`] (`mke2fs -d`, nothing mounted); the guest's
//! `multiverse-seed` unit mounts it and runs `multiverse provision apply-seed` on `/`, which is
//! [`crate::apply()`] with the same [`Desired`] the host would have applied to a mounted root.
//!
//! Layout of a seed folder (version [`SEED_VERSION`]):
//!
//! ```text
//! seed.json     the manifest: machine, OS, packages, services, folders, users, and per file its
//!               path, mode, owner, origin and the blob holding its bytes
//! blobs/N       file contents and passwords (0600), one per file or password, by index
//! services      one unit name per line (what the guest starts after applying)
//! seed-id       SHA-256 over the manifest and every blob: the guest applies a seed only once
//! ```
//!
//! Secrets (host private keys, passwords) are in blobs, never in the manifest; the folder and
//! the disk made from it are 0600/0700, and [`SeedId`] is a hash, not a secret.
//!
//! What this is not: a general archive format, or a way to reach a machine after it booted (that
//! is [`crate::remote`] over SSH).

use crate::model::Os;
use crate::recipe::ServiceSpec;
use crate::render::{Contents, Desired, DesiredDir, DesiredFile, DesiredUser};
use mv_core::secret::{SecretBytes, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The format version written into `seed.json`.
pub(crate) const SEED_VERSION: u32 = 1;
/// The filesystem label of a seed disk (the guest finds it at `/dev/disk/by-label/MVSEED`).
pub(crate) const SEED_LABEL: &str = "MVSEED";
/// Largest manifest read back (a hostile or corrupt seed cannot make the reader allocate more).
const MAX_MANIFEST: u64 = 16 << 20;
/// Largest blob read back (the agent binary is the largest file a recipe ships).
const MAX_BLOB: u64 = 512 << 20;

/// Why a seed could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// A file of the seed could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file of the seed could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is not a seed of a version we read.
    #[error("{path}: not a Multiverse seed: {why}")]
    Malformed {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The seed-id does not match the contents (a corrupt or tampered seed).
    #[error("{path}: seed-id {recorded} does not match its contents ({actual})")]
    Mismatch {
        /// The seed folder.
        path: PathBuf,
        /// What `seed-id` says.
        recorded: String,
        /// What the contents hash to.
        actual: String,
    },
    /// `mke2fs` failed to make the seed disk.
    #[error("mke2fs could not make the seed disk {path}: {message}")]
    Mkfs {
        /// The disk.
        path: PathBuf,
        /// mke2fs's message.
        message: String,
    },
}

/// The identity of a seed's contents: hex SHA-256 over its manifest and blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedId(pub String);

impl std::fmt::Display for SeedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    version: u32,
    machine: String,
    os: Os,
    recipes: Vec<String>,
    packages: Vec<String>,
    services: Vec<ServiceEntry>,
    dirs: Vec<DirEntry>,
    files: Vec<FileEntry>,
    users: Vec<UserEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceEntry {
    name: String,
    runlevel: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    restart: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirEntry {
    path: String,
    mode: u32,
    owner: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    path: String,
    mode: u32,
    owner: String,
    origin: String,
    kind: FileKind,
    blob: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reload: Vec<String>,
}

/// How a file's blob is turned back into [`Contents`].
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum FileKind {
    Public,
    Secret,
    Binary,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    shell: Option<String>,
    home: String,
    groups: Vec<String>,
    password_blob: Option<usize>,
}

/// The manifest and blobs of `d`, in memory (blobs zeroised on drop).
fn encode(d: &Desired) -> (Manifest, Vec<SecretBytes>) {
    let mut blobs: Vec<SecretBytes> = Vec::new();
    let mut blob = |bytes: &[u8]| {
        blobs.push(SecretBytes::new(bytes.to_vec()));
        blobs.len() - 1
    };
    let files = d
        .files
        .iter()
        .map(|f| FileEntry {
            path: f.path.clone(),
            mode: f.mode,
            owner: f.owner.clone(),
            origin: f.origin.clone(),
            kind: match &f.contents {
                Contents::Public(_) => FileKind::Public,
                Contents::Secret(_) => FileKind::Secret,
                Contents::Binary { .. } => FileKind::Binary,
            },
            blob: blob(f.contents.bytes()),
            reload: f.reload.clone(),
        })
        .collect();
    let users = d
        .users
        .iter()
        .map(|u| UserEntry {
            name: u.name.clone(),
            shell: u.shell.clone(),
            home: u.home.clone(),
            groups: u.groups.clone(),
            password_blob: u.password.as_ref().map(|p| blob(p.expose().as_bytes())),
        })
        .collect();
    let manifest = Manifest {
        version: SEED_VERSION,
        machine: d.machine.clone(),
        os: d.os,
        recipes: d.recipes.clone(),
        packages: d.packages.clone(),
        services: d
            .services
            .iter()
            .map(|s| ServiceEntry {
                name: s.name.clone(),
                runlevel: s.runlevel.clone(),
                restart: s.restart,
            })
            .collect(),
        dirs: d
            .dirs
            .iter()
            .map(|x| DirEntry {
                path: x.path.clone(),
                mode: x.mode,
                owner: x.owner.clone(),
            })
            .collect(),
        files,
        users,
    };
    (manifest, blobs)
}

fn id_of(manifest_json: &[u8], blobs: &[SecretBytes]) -> SeedId {
    let mut h = Sha256::new();
    h.update(b"multiverse-seed-v1\0");
    h.update((manifest_json.len() as u64).to_be_bytes());
    h.update(manifest_json);
    for b in blobs {
        h.update((b.expose().len() as u64).to_be_bytes());
        h.update(b.expose());
    }
    SeedId(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn manifest_json(m: &Manifest) -> Vec<u8> {
    // Serialising plain strings and numbers cannot fail.
    serde_json::to_vec_pretty(m).unwrap_or_default()
}

/// The seed-id `d` would get: a host compares it with the one of the seed it made last time, so
/// a second `up` makes no new seed unless the desired state changed.
pub fn seed_id(d: &Desired) -> SeedId {
    let (m, blobs) = encode(d);
    id_of(&manifest_json(&m), &blobs)
}

/// Writes the seed of `d` into `dir`, which must not exist (created 0700; every file 0600).
/// Returns its seed-id.
pub(crate) fn write_dir(d: &Desired, dir: &Path) -> Result<SeedId, SeedError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SeedError::Write { path, source }
    };
    let (m, blobs) = encode(d);
    let json = manifest_json(&m);
    let id = id_of(&json, &blobs);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(werr(dir))?;
    let blob_dir = dir.join("blobs");
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&blob_dir)
        .map_err(werr(&blob_dir))?;
    let write = |path: &Path, bytes: &[u8]| -> Result<(), SeedError> {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc_o_nofollow())
            .open(path)
            .map_err(werr(path))?;
        f.write_all(bytes).map_err(werr(path))
    };
    for (i, b) in blobs.iter().enumerate() {
        write(&blob_dir.join(i.to_string()), b.expose())?;
    }
    write(&dir.join("seed.json"), &json)?;
    let units: String = d
        .services
        .iter()
        .map(|s| service_unit(d.os, s) + "\n")
        .collect();
    write(&dir.join("services"), units.as_bytes())?;
    write(&dir.join("seed-id"), format!("{id}\n").as_bytes())?;
    Ok(id)
}

/// The name the guest's init knows a service by (`ssh.service` on systemd).
fn service_unit(os: Os, s: &ServiceSpec) -> String {
    match os {
        Os::Debian if !s.name.contains('.') => format!("{}.service", s.name),
        _ => s.name.clone(),
    }
}

/// `O_NOFOLLOW`: seed files are created fresh in a fresh folder, never through a link.
fn libc_o_nofollow() -> i32 {
    libc::O_NOFOLLOW
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, SeedError> {
    let rerr = |source| SeedError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_nofollow())
        .open(path)
        .map_err(rerr)?;
    let meta = f.metadata().map_err(rerr)?;
    if !meta.is_file() || meta.len() > limit {
        return Err(SeedError::Malformed {
            path: path.to_path_buf(),
            why: format!("not a regular file of at most {limit} bytes"),
        });
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    f.take(limit).read_to_end(&mut out).map_err(rerr)?;
    Ok(out)
}

/// Reads the seed in `dir` back into a [`Desired`], checking its version and its seed-id.
pub fn read_dir(dir: &Path) -> Result<(Desired, SeedId), SeedError> {
    let mpath = dir.join("seed.json");
    let json = read_limited(&mpath, MAX_MANIFEST)?;
    let m: Manifest = serde_json::from_slice(&json).map_err(|e| SeedError::Malformed {
        path: mpath.clone(),
        why: e.to_string(),
    })?;
    if m.version != SEED_VERSION {
        return Err(SeedError::Malformed {
            path: mpath,
            why: format!("version {} (this build reads {SEED_VERSION})", m.version),
        });
    }
    let count = m.files.len() + m.users.len();
    let mut blobs = Vec::new();
    for i in 0..count {
        let p = dir.join("blobs").join(i.to_string());
        match read_limited(&p, MAX_BLOB) {
            Ok(b) => blobs.push(SecretBytes::new(b)),
            Err(SeedError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                break
            }
            Err(e) => return Err(e),
        }
    }
    let actual = id_of(&json, &blobs);
    let id_path = dir.join("seed-id");
    let recorded = String::from_utf8_lossy(&read_limited(&id_path, 128)?)
        .trim()
        .to_string();
    if recorded != actual.0 {
        return Err(SeedError::Mismatch {
            path: dir.to_path_buf(),
            recorded,
            actual: actual.0,
        });
    }
    let bad = |why: String| SeedError::Malformed {
        path: mpath.clone(),
        why,
    };
    let take = |i: usize| -> Result<&SecretBytes, SeedError> {
        blobs
            .get(i)
            .ok_or_else(|| bad(format!("blob {i} is missing")))
    };
    let mut files = Vec::with_capacity(m.files.len());
    for f in &m.files {
        let bytes = take(f.blob)?;
        let contents = match f.kind {
            FileKind::Secret => Contents::Secret(bytes.clone()),
            FileKind::Binary => Contents::Binary {
                bytes: std::sync::Arc::from(bytes.expose().as_slice()),
                from: dir.join("blobs").join(f.blob.to_string()),
            },
            FileKind::Public => Contents::Public(
                String::from_utf8(bytes.expose().clone())
                    .map_err(|_| bad(format!("{} is marked text but is not UTF-8", f.path)))?,
            ),
        };
        files.push(DesiredFile {
            path: f.path.clone(),
            contents,
            mode: f.mode,
            owner: f.owner.clone(),
            origin: f.origin.clone(),
            reload: f.reload.clone(),
        });
    }
    let mut users = Vec::with_capacity(m.users.len());
    for u in &m.users {
        let password = match u.password_blob {
            Some(i) => {
                let b = take(i)?;
                let s = String::from_utf8(b.expose().clone())
                    .map_err(|_| bad(format!("the password of {} is not UTF-8", u.name)))?;
                Some(SecretString::new(s))
            }
            None => None,
        };
        users.push(DesiredUser {
            name: u.name.clone(),
            shell: u.shell.clone(),
            home: u.home.clone(),
            groups: u.groups.clone(),
            password,
        });
    }
    let d = Desired {
        machine: m.machine,
        os: m.os,
        recipes: m.recipes,
        packages: m.packages,
        services: m
            .services
            .into_iter()
            .map(|s| ServiceSpec {
                name: s.name,
                runlevel: s.runlevel,
                restart: s.restart,
            })
            .collect(),
        dirs: m
            .dirs
            .into_iter()
            .map(|x| DesiredDir {
                path: x.path,
                mode: x.mode,
                owner: x.owner,
            })
            .collect(),
        files,
        users,
    };
    Ok((d, actual))
}

/// Packs the seed folder `dir` (plus anything the caller added to it, such as the `multiverse`
/// binary) into a read-only ext4 disk image at `out`, labelled [`SEED_LABEL`], mode 0600. The
/// image is made under a temporary name beside `out` and renamed into place, so `out` is either
/// the old seed or the complete new one.
pub(crate) fn make_disk(dir: &Path, out: &Path) -> Result<(), SeedError> {
    let used = tree_size(dir).map_err(|source| SeedError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    // ext4's metadata and journal-less overhead, plus room for small files' blocks.
    let size_kib = (used / 1024) * 5 / 4 + 8 * 1024;
    let tmp = out.with_extension("img.tmp");
    let _ = fs::remove_file(&tmp);
    let werr = |source| SeedError::Write {
        path: tmp.clone(),
        source,
    };
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc_o_nofollow())
        .open(&tmp)
        .map_err(werr)?;
    let result = Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-O",
            "^has_journal",
            "-L",
            SEED_LABEL,
        ])
        .args(["-E", "root_owner=0:0", "-m", "0", "-d"])
        .arg(dir)
        .arg(&tmp)
        .arg(format!("{size_kib}k"))
        .env("LC_ALL", "C")
        .output();
    let fail = |message: String| {
        let _ = fs::remove_file(&tmp);
        SeedError::Mkfs {
            path: out.to_path_buf(),
            message,
        }
    };
    match result {
        Ok(o) if o.status.success() => {}
        Ok(o) => return Err(fail(String::from_utf8_lossy(&o.stderr).trim().to_string())),
        Err(e) => return Err(fail(format!("cannot run mke2fs: {e}"))),
    }
    fs::rename(&tmp, out).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        SeedError::Write {
            path: out.to_path_buf(),
            source,
        }
    })
}

fn tree_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let meta = e.metadata()?;
        total += 4096;
        if meta.is_dir() {
            total += tree_size(&e.path())?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}

// A corrupt seed or one from another version is for the person to remake; I/O is a failure.
impl mv_core::Classify for SeedError {
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            SeedError::Malformed { .. } | SeedError::Mismatch { .. } => mv_core::ErrorClass::Usage,
            _ => mv_core::ErrorClass::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Desired {
        Desired {
            machine: "star.router.multiverse".into(),
            os: Os::Debian,
            recipes: vec!["base".into(), "router".into()],
            packages: vec!["openssh-server".into()],
            services: vec![ServiceSpec {
                name: "ssh".into(),
                runlevel: "default".into(),
                restart: false,
            }],
            dirs: vec![DesiredDir {
                path: "/home/user/.ssh".into(),
                mode: 0o700,
                owner: "user".into(),
            }],
            files: vec![
                DesiredFile {
                    path: "/etc/hostname".into(),
                    contents: Contents::Public("star.router.multiverse\n".into()),
                    mode: 0o644,
                    owner: "root".into(),
                    origin: "base-hostname.j2".into(),
                    reload: vec![],
                },
                DesiredFile {
                    path: "/etc/ssh/ssh_host_ed25519_key".into(),
                    contents: Contents::Secret(SecretBytes::new(b"PRIVATE".to_vec())),
                    mode: 0o600,
                    owner: "root".into(),
                    origin: "identity".into(),
                    reload: vec!["ssh".into()],
                },
                DesiredFile {
                    path: "/usr/bin/multiverse-agent".into(),
                    contents: Contents::Binary {
                        bytes: std::sync::Arc::from(&b"\x7fELF\xff"[..]),
                        from: "/nowhere".into(),
                    },
                    mode: 0o755,
                    owner: "root".into(),
                    origin: "multiverse-agent".into(),
                    reload: vec![],
                },
            ],
            users: vec![DesiredUser {
                name: "user".into(),
                shell: Some("/bin/bash".into()),
                home: "/home/user".into(),
                groups: vec!["users".into()],
                password: Some(SecretString::new("hunter2".into())),
            }],
        }
    }

    #[test]
    fn round_trip_keeps_everything_and_the_id() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("seed");
        let d = sample();
        let id = write_dir(&d, &dir).unwrap();
        assert_eq!(id, seed_id(&d));
        let manifest = fs::read_to_string(dir.join("seed.json")).unwrap();
        assert!(!manifest.contains("PRIVATE") && !manifest.contains("hunter2"));
        assert_eq!(
            fs::read_to_string(dir.join("services")).unwrap(),
            "ssh.service\n"
        );
        let (back, back_id) = read_dir(&dir).unwrap();
        assert_eq!(back_id, id);
        assert_eq!(seed_id(&back), id);
        assert_eq!(back.files[1].contents.bytes(), b"PRIVATE");
        assert_eq!(back.files[1].reload, ["ssh"]);
        assert_eq!(back.files[2].contents.bytes(), b"\x7fELF\xff");
        assert!(matches!(back.files[2].contents, Contents::Binary { .. }));
        assert!(back.files[1].contents.is_secret());
        assert_eq!(back.users[0].password.as_ref().unwrap().expose(), "hunter2");
    }

    #[test]
    fn a_changed_blob_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("seed");
        write_dir(&sample(), &dir).unwrap();
        fs::write(dir.join("blobs/0"), "evil.example\n").unwrap();
        assert!(matches!(read_dir(&dir), Err(SeedError::Mismatch { .. })));
    }

    #[test]
    fn another_version_or_garbage_is_malformed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("seed");
        write_dir(&sample(), &dir).unwrap();
        let p = dir.join("seed.json");
        let text = fs::read_to_string(&p).unwrap();
        fs::write(&p, text.replace("\"version\": 1", "\"version\": 9")).unwrap();
        assert!(matches!(read_dir(&dir), Err(SeedError::Malformed { .. })));
        fs::write(&p, b"\xff\xfe not json").unwrap();
        assert!(matches!(read_dir(&dir), Err(SeedError::Malformed { .. })));
    }

    #[test]
    fn ids_differ_when_anything_differs() {
        let a = sample();
        let mut b = sample();
        b.users[0].password = Some(SecretString::new("hunter3".into()));
        assert_ne!(seed_id(&a), seed_id(&b));
    }
}
