//! Crash-safe file writes that no other user can steer.
//!
//! Every file Multiverse writes goes through [`write_atomic`]: the bytes go to a temporary file in
//! the same folder, are fsynced, then renamed over the target, and the folder is fsynced. A crash at
//! any point leaves the old file or the new one, never a truncated mix, plus at most a hidden
//! `.NAME.tmpXXXXXXXXXXXXXXXX` file that [`is_temp_name`] recognises (`pass fsck` reports them).
//!
//! The temporary file has a random name and is created with `O_CREAT|O_EXCL|O_NOFOLLOW` and its
//! final mode (made exact with `fchmod` before the first byte is written), so nobody can
//! pre-create it, keep it open or point it elsewhere with a symlink. Everything happens relative
//! to one descriptor of the folder, so swapping the folder for a symlink half-way changes nothing,
//! and the rename replaces whatever sits at the destination (a symlink included) instead of
//! writing through it.
//!
//! Secrets ([`write_secret`], or any mode without group/other bits) get one more rule: the path to
//! their folder is walked one component at a time from `/`, and every folder on it must belong to
//! the caller's effective user or to root and not be writable by others (unless sticky, like
//! `/tmp`); a symlink on the way is followed only if it, and the folder holding it, are trusted
//! that way. Otherwise the write is refused with [`ForeignFolder`] (its owner could remove,
//! replace or redirect the secret). [`write_atomic_with`] and [`Folders::AllowForeign`] let a
//! caller that warned the person (`--force`) write into a folder of another user anyway: the file
//! is still the caller's, mode 0600, and a foreign symlink is still never followed.
//!
//! What this is not: confinement inside a foreign root (that is [`crate::confined`]), nor a lock.

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// Mode for files holding secrets.
pub const SECRET_MODE: u32 = 0o600;
/// Mode for ordinary files of the tree.
pub const PUBLIC_MODE: u32 = 0o644;

/// Symlinks followed while walking to a secret's folder before giving up (the kernel's limit).
const MAX_LINKS: u32 = 40;
/// Attempts at a fresh random temporary name before giving up.
const TEMP_TRIES: u32 = 16;

/// An I/O failure together with the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}")]
pub struct FsError {
    /// What was being done ("cannot write", "cannot create folder", ...).
    pub action: &'static str,
    /// The path concerned.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

impl FsError {
    /// Wraps `source` with the action and path.
    pub fn new(action: &'static str, path: &Path, source: io::Error) -> Self {
        FsError {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The untrusted folder or symlink that made a secret write fail, if that is why it failed.
    pub fn foreign_folder(&self) -> Option<&ForeignFolder> {
        self.source
            .get_ref()
            .and_then(|e| e.downcast_ref::<ForeignFolder>())
    }
}

/// Whether a secret may be written into folders of other users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Folders {
    /// Only folders of the caller's effective user or root, not writable by others (the default).
    #[default]
    TrustedOnly,
    /// Folders of other users too (the caller warned the person); a symlink owned by, or lying in a
    /// folder of, another user is still never followed.
    AllowForeign,
}

/// What makes a folder or symlink on a secret's path untrusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrusted {
    /// A folder owned by this uid (neither the caller nor root).
    Owner(u32),
    /// A folder every user may write into, without the sticky bit.
    WritableByOthers,
    /// A symlink owned by this uid, or lying in an untrusted folder.
    Symlink {
        /// The link's owner.
        owner: u32,
    },
}

/// A secret was not written: something on the path to its folder belongs to another user, who
/// could remove, replace or redirect it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignFolder {
    /// The folder or symlink concerned.
    pub path: PathBuf,
    /// What is wrong with it.
    pub why: Untrusted,
    /// The caller's effective uid.
    pub euid: u32,
}

impl std::fmt::Display for ForeignFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (p, euid) = (self.path.display(), self.euid);
        match self.why {
            Untrusted::Owner(uid) => write!(
                f,
                "folder {p} belongs to uid {uid}, neither you (uid {euid}) nor root: \
                 its owner could remove, replace or redirect a secret written there"
            ),
            Untrusted::WritableByOthers => write!(
                f,
                "folder {p} is writable by every user and not sticky: \
                 any of them could remove, replace or redirect a secret written there"
            ),
            Untrusted::Symlink { owner } => write!(
                f,
                "{p} is a symbolic link owned by uid {owner} or lying in a folder of another \
                 user (you are uid {euid}): a secret is never written through it"
            ),
        }
    }
}

impl std::error::Error for ForeignFolder {}

/// Writes `contents` to `path` atomically with the given permission `mode`.
///
/// Creates missing parent folders (mode 0755). Returns `Ok(false)` without touching the file when
/// it already holds exactly `contents` with that mode, so callers can report "unchanged". A mode
/// without group or other bits is a secret: see the module documentation for the folder rules
/// ([`Folders::TrustedOnly`]).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<bool, FsError> {
    write_atomic_with(path, contents, mode, Folders::TrustedOnly)
}

/// [`write_atomic`] with an explicit rule for folders of other users (only secrets are checked).
pub fn write_atomic_with(
    path: &Path,
    contents: &[u8],
    mode: u32,
    folders: Folders,
) -> Result<bool, FsError> {
    let secret = mode & 0o077 == 0;
    let Some(file_name) = path.file_name() else {
        return Err(FsError::new(
            "not a file path:",
            path,
            io::ErrorKind::InvalidInput.into(),
        ));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dirfd = if secret {
        walk_to_folder(&dir, folders, true).map_err(|e| FsError::new("cannot write", path, e))?
    } else {
        fs::create_dir_all(&dir).map_err(|e| FsError::new("cannot create folder", &dir, e))?;
        rfs::openat(rfs::CWD, &dir, dir_flags(), Mode::empty())
            .map_err(|e| FsError::new("cannot open folder", &dir, e.into()))?
    };
    if is_unchanged(&dirfd, file_name, contents, mode, secret) {
        return Ok(false);
    }
    let (tmp_name, mut file) =
        create_temp(&dirfd, file_name, mode).map_err(|e| FsError::new("cannot write", path, e))?;
    let result = (|| -> io::Result<()> {
        file.write_all(contents)?;
        file.sync_all()?;
        // The rename replaces whatever is at the destination, a symlink included; never follows it.
        rfs::renameat(&dirfd, &tmp_name, &dirfd, file_name)?;
        rfs::fsync(&dirfd)?;
        Ok(())
    })();
    drop(file);
    if let Err(e) = result {
        let _ = rfs::unlinkat(&dirfd, &tmp_name, AtFlags::empty());
        return Err(FsError::new("cannot write", path, e));
    }
    Ok(true)
}

/// One file of a [`write_batch`]: a name inside the batch's folder, its bytes and its mode.
pub struct BatchFile<'a> {
    /// File name (no folder part).
    pub name: &'a OsStr,
    /// Contents.
    pub contents: &'a [u8],
    /// Mode (without group/other bits: a secret, with the folder rules of [`write_secret`]).
    pub mode: u32,
}

// The contents may be a secret: Debug shows their length only.
impl std::fmt::Debug for BatchFile<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchFile")
            .field("name", &self.name)
            .field("contents", &format_args!("[{} bytes]", self.contents.len()))
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// Writes several files into one folder with one data sync instead of one per file, and the same
/// crash safety as [`write_atomic`]: every file goes to its own temporary file (random name,
/// `O_EXCL|O_NOFOLLOW`, exact mode from creation), then one `syncfs` makes all their bytes
/// durable, then each is renamed over its target, then the folder is fsynced once. A crash leaves
/// each file old or new, never a truncated mix (a rename happens only after the sync), plus at
/// most hidden temporary files. Files already holding their contents and mode are not touched.
/// Returns, per file, whether it was written. `folders` rules secrets as in [`write_atomic_with`].
/// [`prepare_batch`], [`sync_batches`] and [`Prepared::commit`] do the same for many folders with
/// one sync in all.
pub fn write_batch(
    dir: &Path,
    files: &[BatchFile<'_>],
    folders: Folders,
) -> Result<Vec<bool>, FsError> {
    let p = prepare_batch(dir, files, folders)?;
    let synced = sync_batches(&[&p])?;
    p.commit(&synced)
}

/// Files of one folder written to their temporary files, not yet durable nor renamed. Dropping it
/// without [`Prepared::commit`] removes the temporary files.
#[derive(Debug)]
pub struct Prepared {
    dir: PathBuf,
    dirfd: OwnedFd,
    /// (index in the batch, temporary name, final name) of each file to write.
    temps: Vec<(usize, OsString, OsString)>,
    count: usize,
}

/// Proof that the temporary files of some batches are durable ([`sync_batches`]).
#[derive(Debug)]
pub struct Synced(());

/// Phase 1 of a batch: every changed file of `files` into its temporary file in `dir` (created
/// as needed; secrets only in trusted folders, see [`write_atomic_with`]). Nothing is synced.
pub fn prepare_batch(
    dir: &Path,
    files: &[BatchFile<'_>],
    folders: Folders,
) -> Result<Prepared, FsError> {
    let any_secret = files.iter().any(|f| f.mode & 0o077 == 0);
    let dirfd = if any_secret {
        walk_to_folder(dir, folders, true).map_err(|e| FsError::new("cannot write in", dir, e))?
    } else {
        fs::create_dir_all(dir).map_err(|e| FsError::new("cannot create folder", dir, e))?;
        rfs::openat(rfs::CWD, dir, dir_flags(), Mode::empty())
            .map_err(|e| FsError::new("cannot open folder", dir, e.into()))?
    };
    let mut p = Prepared {
        dir: dir.to_path_buf(),
        dirfd,
        temps: Vec::new(),
        count: files.len(),
    };
    for (i, f) in files.iter().enumerate() {
        let secret = f.mode & 0o077 == 0;
        if is_unchanged(&p.dirfd, f.name, f.contents, f.mode, secret) {
            continue;
        }
        let path = dir.join(f.name);
        let (tmp, mut file) = create_temp(&p.dirfd, f.name, f.mode)
            .map_err(|e| FsError::new("cannot write", &path, e))?;
        p.temps.push((i, tmp, f.name.to_os_string()));
        file.write_all(f.contents)
            .map_err(|e| FsError::new("cannot write", &path, e))?;
    }
    Ok(p)
}

/// Phase 2: one `syncfs` per filesystem the batches are on (usually one in all), after which
/// every prepared temporary file is durable.
pub fn sync_batches(batches: &[&Prepared]) -> Result<Synced, FsError> {
    let mut seen: Vec<u64> = Vec::new();
    for b in batches.iter().filter(|b| !b.temps.is_empty()) {
        let dev = rfs::fstat(&b.dirfd)
            .map_err(|e| FsError::new("cannot stat", &b.dir, e.into()))?
            .st_dev;
        if seen.contains(&dev) {
            continue;
        }
        rfs::syncfs(&b.dirfd).map_err(|e| FsError::new("cannot sync", &b.dir, e.into()))?;
        seen.push(dev);
    }
    Ok(Synced(()))
}

impl Prepared {
    /// Whether anything is to be written.
    pub fn is_empty(&self) -> bool {
        self.temps.is_empty()
    }

    /// Phase 3: renames every temporary file over its target, then fsyncs the folder. Returns, per
    /// file of the batch, whether it was written.
    pub fn commit(mut self, _synced: &Synced) -> Result<Vec<bool>, FsError> {
        let mut written = vec![false; self.count];
        if self.temps.is_empty() {
            return Ok(written);
        }
        let temps = std::mem::take(&mut self.temps);
        for (n, (i, tmp, name)) in temps.iter().enumerate() {
            if let Err(e) = rfs::renameat(&self.dirfd, tmp, &self.dirfd, name) {
                self.temps = temps[n..].to_vec();
                return Err(FsError::new("cannot write", &self.dir.join(name), e.into()));
            }
            written[*i] = true;
        }
        rfs::fsync(&self.dirfd)
            .map_err(|e| FsError::new("cannot sync folder", &self.dir, e.into()))?;
        Ok(written)
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        for (_, t, _) in &self.temps {
            let _ = rfs::unlinkat(&self.dirfd, t, AtFlags::empty());
        }
    }
}

/// Writes a secret file: atomic, mode 0600 from creation, only into trusted folders.
pub fn write_secret(path: &Path, contents: &[u8]) -> Result<bool, FsError> {
    write_atomic(path, contents, SECRET_MODE)
}

/// Writes an ordinary (public) file atomically with mode 0644.
pub fn write_public(path: &Path, contents: &[u8]) -> Result<bool, FsError> {
    write_atomic(path, contents, PUBLIC_MODE)
}

/// Fsyncs a folder so that a rename inside it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The SHA-256 of a file's contents, in lower-case hex (64 characters). Reads 1 MiB at a time,
/// so a disk image is hashed without holding it in memory.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Reads a regular file without following a symlink in its place (`O_NOFOLLOW`) and without
/// blocking on a FIFO or device (`O_NONBLOCK`; anything but a regular file is an error). Returns
/// its metadata (owner, mode) with the bytes, which are wiped when dropped.
pub fn read_regular(path: &Path) -> io::Result<(fs::Metadata, zeroize::Zeroizing<Vec<u8>>)> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let mut f = File::from(rfs::openat(rfs::CWD, path, flags, Mode::empty())?);
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut data = zeroize::Zeroizing::new(Vec::new());
    f.read_to_end(&mut data)?;
    Ok((meta, data))
}

/// The caller's effective uid (the owner a trusted file or folder has, besides root).
pub fn effective_uid() -> u32 {
    euid()
}

/// The first untrusted folder or symlink on the way to `dir` (which need not exist yet), by the
/// rules [`write_secret`] applies; `None` when a secret may be written there. For a warning before
/// a forced write ([`Folders::AllowForeign`]).
pub fn untrusted_folder(dir: &Path) -> Option<ForeignFolder> {
    match walk_to_folder(dir, Folders::TrustedOnly, false) {
        Err(e) => e
            .get_ref()
            .and_then(|e| e.downcast_ref::<ForeignFolder>())
            .cloned(),
        Ok(_) => None,
    }
}

/// Removes the temporary files a crashed writer left in `dir` for the targets `names`
/// (`.NAME.tmpXXXXXXXXXXXXXXXX`, regular files or links, never followed) when they were last
/// modified before `before` (the start of the current write: a writer running now keeps its own).
/// Returns how many were removed.
pub fn remove_stale_temps(
    dir: &Path,
    names: &[&OsStr],
    before: std::time::SystemTime,
) -> io::Result<usize> {
    let mut removed = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let file = e.file_name();
        if !is_temp_name(&file) {
            continue;
        }
        let owned = names.iter().any(|n| {
            let mut prefix = b".".to_vec();
            prefix.extend_from_slice(n.as_bytes());
            prefix.extend_from_slice(b".tmp");
            file.as_bytes().starts_with(&prefix)
        });
        if !owned {
            continue;
        }
        let meta = fs::symlink_metadata(e.path())?;
        if meta.is_dir() || meta.modified().map_or(true, |m| m >= before) {
            continue;
        }
        match fs::remove_file(e.path()) {
            Ok(()) => removed += 1,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(removed)
}

/// Whether `name` is a temporary file left by an interrupted write (`.NAME.tmpXXXX`: this
/// module's random names and the `.NAME.tmpPID` of older versions).
pub fn is_temp_name(name: &OsStr) -> bool {
    let Some(rest) = name.as_bytes().strip_prefix(b".") else {
        return false;
    };
    match rest.windows(4).rposition(|w| w == b".tmp") {
        Some(i) if i > 0 => {
            let tail = &rest[i + 4..];
            !tail.is_empty() && tail.iter().all(u8::is_ascii_alphanumeric)
        }
        _ => false,
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn trusted_uid(uid: u32, euid: u32) -> bool {
    uid == euid || uid == 0
}

fn foreign(path: PathBuf, why: Untrusted, euid: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        ForeignFolder { path, why, euid },
    )
}

/// Checks an open folder; `Ok(false)` for an untrusted one that `folders` lets through.
fn check_folder(fd: &OwnedFd, path: &Path, euid: u32, folders: Folders) -> io::Result<bool> {
    let st = rfs::fstat(fd)?;
    let why = if !trusted_uid(st.st_uid, euid) {
        Some(Untrusted::Owner(st.st_uid))
    } else if st.st_mode & 0o002 != 0 && st.st_mode & 0o1000 == 0 {
        Some(Untrusted::WritableByOthers)
    } else {
        None
    };
    match (why, folders) {
        (None, _) => Ok(true),
        (Some(_), Folders::AllowForeign) => Ok(false),
        (Some(w), Folders::TrustedOnly) => Err(foreign(path.to_path_buf(), w, euid)),
    }
}

fn components(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Opens `dir` for a secret: one component at a time from `/`, each with `O_NOFOLLOW`, checking
/// every folder ([`check_folder`]) and following a symlink only if it and its folder are trusted.
/// `..` pops our own stack of descriptors. Missing folders are created (0755) when `create`,
/// else the walk stops there (what we would create is ours).
fn walk_to_folder(dir: &Path, folders: Folders, create: bool) -> io::Result<OwnedFd> {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()?.join(dir)
    };
    let euid = euid();
    let mut todo = components(&abs);
    let root = rfs::openat(rfs::CWD, "/", dir_flags(), Mode::empty())?;
    let root_ok = check_folder(&root, Path::new("/"), euid, folders)?;
    // (descriptor, path for messages, trusted)
    let mut stack: Vec<(OwnedFd, PathBuf, bool)> = vec![(root, PathBuf::from("/"), root_ok)];
    let mut links = 0;
    while let Some(comp) = todo.pop_front() {
        if comp.as_os_str() == OsStr::new("..") {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let Some((cur, cur_path, cur_ok)) = stack.last() else {
            break;
        };
        let here = cur_path.join(&comp);
        match rfs::openat(cur, &comp, dir_flags() | OFlags::NOFOLLOW, Mode::empty()) {
            Ok(fd) => {
                let ok = check_folder(&fd, &here, euid, folders)?;
                stack.push((fd, here, ok));
            }
            Err(Errno::NOENT) if create => {
                match rfs::mkdirat(cur, &comp, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => todo.push_front(comp),
                    Err(e) => return Err(e.into()),
                }
            }
            Err(Errno::NOENT) => break,
            Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                let st = rfs::statat(cur, &comp, AtFlags::SYMLINK_NOFOLLOW)?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                    return Err(Errno::NOTDIR.into());
                }
                if !*cur_ok || !trusted_uid(st.st_uid, euid) {
                    return Err(foreign(here, Untrusted::Symlink { owner: st.st_uid }, euid));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(Errno::LOOP.into());
                }
                let target = rfs::readlinkat(cur, &comp, Vec::new())?;
                let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
                if target.is_absolute() {
                    stack.truncate(1);
                }
                for c in components(&target).into_iter().rev() {
                    todo.push_front(c);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    stack
        .pop()
        .map(|(fd, _, _)| fd)
        .ok_or_else(|| io::ErrorKind::NotFound.into())
}

/// Whether `name` in the folder is a regular file holding exactly `contents` with `mode` (and, for
/// a secret, owned by us). Never follows a symlink, never blocks on a FIFO.
fn is_unchanged(dirfd: &OwnedFd, name: &OsStr, contents: &[u8], mode: u32, secret: bool) -> bool {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let Ok(fd) = rfs::openat(dirfd, name, flags, Mode::empty()) else {
        return false;
    };
    let Ok(st) = rfs::fstat(&fd) else {
        return false;
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
        || st.st_mode & 0o7777 != mode
        || (secret && st.st_uid != euid())
        || u64::try_from(st.st_size).ok() != u64::try_from(contents.len()).ok()
    {
        return false;
    }
    let mut existing = zeroize::Zeroizing::new(Vec::with_capacity(contents.len()));
    if File::from(fd).read_to_end(&mut existing).is_err() {
        return false;
    }
    existing.as_slice() == contents
}

/// Creates `.NAME.tmpXXXXXXXXXXXXXXXX` (random) with `O_EXCL|O_NOFOLLOW` and exactly `mode`.
fn create_temp(dirfd: &OwnedFd, file_name: &OsStr, mode: u32) -> io::Result<(OsString, File)> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for _ in 0..TEMP_TRIES {
        let mut name = OsString::from(".");
        name.push(file_name);
        name.push(".tmp");
        name.push(random_hex());
        match rfs::openat(dirfd, &name, flags, Mode::from_raw_mode(mode)) {
            Ok(fd) => {
                // The umask may have narrowed the mode; make it exact before any byte is written.
                if let Err(e) = rfs::fchmod(&fd, Mode::from_raw_mode(mode)) {
                    let _ = rfs::unlinkat(dirfd, &name, AtFlags::empty());
                    return Err(e.into());
                }
                return Ok((name, File::from(fd)));
            }
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary file name",
    ))
}

/// 16 hex digits from the kernel's random source (a hash of the time if it is unavailable: the
/// name only has to be unguessable enough not to be taken first; `O_EXCL` does the rest).
fn random_hex() -> String {
    let mut b = [0u8; 8];
    let got = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).unwrap_or(0);
    let mut v = u64::from_ne_bytes(b);
    if got < b.len() {
        use std::hash::BuildHasher;
        v ^= std::collections::hash_map::RandomState::new()
            .hash_one((std::process::id(), std::time::SystemTime::now()));
    }
    format!("{v:016x}")
}

#[cfg(test)]
mod batch_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn batch_writes_modes_and_skips_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("k");
        let files = [
            BatchFile {
                name: OsStr::new("a"),
                contents: b"one",
                mode: SECRET_MODE,
            },
            BatchFile {
                name: OsStr::new("b.pub"),
                contents: b"two",
                mode: PUBLIC_MODE,
            },
        ];
        assert_eq!(
            write_batch(&dir, &files, Folders::TrustedOnly).unwrap(),
            [true, true]
        );
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"one");
        let mode = |n: &str| std::fs::metadata(dir.join(n)).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode("a"), mode("b.pub")), (0o600, 0o644));
        assert_eq!(
            write_batch(&dir, &files, Folders::TrustedOnly).unwrap(),
            [false, false]
        );
        let changed = [BatchFile {
            name: OsStr::new("a"),
            contents: b"uno",
            mode: SECRET_MODE,
        }];
        assert_eq!(
            write_batch(&dir, &changed, Folders::TrustedOnly).unwrap(),
            [true]
        );
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"uno");
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.iter().all(|n| !is_temp_name(n)), "{names:?}");
        // A batch prepared but never committed leaves the targets and no temporary file.
        let p = prepare_batch(&dir, &changed, Folders::TrustedOnly).unwrap();
        assert!(p.is_empty(), "unchanged");
        let other = [BatchFile {
            name: OsStr::new("a"),
            contents: b"dropped",
            mode: SECRET_MODE,
        }];
        drop(prepare_batch(&dir, &other, Folders::TrustedOnly).unwrap());
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"uno");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.iter().all(|n| !is_temp_name(n)), "{names:?}");
        // A crashed writer's temporary file is removed by a later write, not a current one's.
        std::fs::write(dir.join(".a.tmp0123456789abcdef"), b"half").unwrap();
        std::fs::write(dir.join(".other.tmp0123456789abcdef"), b"keep").unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        assert_eq!(
            remove_stale_temps(&dir, &[OsStr::new("a")], std::time::SystemTime::UNIX_EPOCH)
                .unwrap(),
            0
        );
        assert_eq!(
            remove_stale_temps(&dir, &[OsStr::new("a")], later).unwrap(),
            1
        );
        assert!(dir.join(".other.tmp0123456789abcdef").exists());
        std::fs::remove_file(dir.join(".other.tmp0123456789abcdef")).unwrap();
        // A symlink in place of a target is replaced, never written through.
        let outside = d.path().join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("c")).unwrap();
        let via = [BatchFile {
            name: OsStr::new("c"),
            contents: b"new",
            mode: SECRET_MODE,
        }];
        write_batch(&dir, &via, Folders::TrustedOnly).unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        assert!(std::fs::symlink_metadata(dir.join("c")).unwrap().is_file());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn sha256_of_a_file_is_lower_case_hex() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        fs::write(&p, b"").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(sha256_file(&d.path().join("missing")).is_err());
    }

    #[test]
    fn writes_and_reports_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/c.txt");
        assert!(write_public(&p, b"one").unwrap());
        assert!(!write_public(&p, b"one").unwrap());
        assert!(write_public(&p, b"two").unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let leftovers: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    #[test]
    fn secret_files_are_0600() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key");
        write_secret(&p, b"s").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // An existing public file turned secret gets its mode fixed even with equal bytes.
        let q = d.path().join("k2");
        write_public(&q, b"s").unwrap();
        assert!(write_secret(&q, b"s").unwrap());
        assert_eq!(
            fs::metadata(&q).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn temp_names_are_recognised() {
        for yes in [".a.gpg.tmp123", ".a b.gpg.tmp0123456789abcdef", ".x.tmpZ"] {
            assert!(is_temp_name(OsStr::new(yes)), "{yes}");
        }
        for no in [
            "a.gpg",
            ".gpg-id",
            ".tmp1",
            ".a.tmp",
            ".a.tmp1.gpg",
            "a.tmp1",
        ] {
            assert!(!is_temp_name(OsStr::new(no)), "{no}");
        }
    }

    #[test]
    fn planted_temp_names_and_destination_links_are_never_written_through() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let out = d.path().join("out");
        fs::create_dir(&out).unwrap();
        // The old predictable temp name, and a link at the destination itself.
        symlink(&victim, out.join(format!(".key.tmp{}", std::process::id()))).unwrap();
        symlink(&victim, out.join("key")).unwrap();
        assert!(write_secret(&out.join("key"), b"secret").unwrap());
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        let m = fs::symlink_metadata(out.join("key")).unwrap();
        assert!(m.file_type().is_file(), "the link was replaced");
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(out.join("key")).unwrap(), b"secret");
    }

    #[test]
    fn a_fifo_at_the_destination_does_not_block() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(write_public(&p, b"x").unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"x");
    }

    #[test]
    fn secrets_refuse_folders_anyone_can_write() {
        let d = tempfile::tempdir().unwrap();
        let open = d.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let e = write_secret(&open.join("sub/key"), b"s").unwrap_err();
        let f = e.foreign_folder().expect("a foreign-folder error");
        assert_eq!(f.why, Untrusted::WritableByOthers);
        assert_eq!(f.path, open);
        assert!(
            !open.join("sub").exists(),
            "nothing created past the refusal"
        );
        assert_eq!(untrusted_folder(&open.join("sub")).unwrap().path, open);
        // Public files are not checked; a forced secret is written, still 0600.
        assert!(write_public(&open.join("pub"), b"p").unwrap());
        assert!(
            write_atomic_with(&open.join("key"), b"s", SECRET_MODE, Folders::AllowForeign).unwrap()
        );
        // The sticky bit (like /tmp) makes it trusted again.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(untrusted_folder(&open).is_none());
        assert!(write_secret(&open.join("key2"), b"s").unwrap());
    }

    #[test]
    fn trusted_links_and_dotdot_resolve_like_the_kernel() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real/inner");
        fs::create_dir_all(&real).unwrap();
        symlink("real/inner", d.path().join("rel")).unwrap();
        symlink(&real, d.path().join("abs")).unwrap();
        write_secret(&d.path().join("rel/a"), b"1").unwrap();
        write_secret(&d.path().join("abs/../b"), b"2").unwrap();
        write_secret(&d.path().join("rel/new/c"), b"3").unwrap();
        assert_eq!(fs::read(real.join("a")).unwrap(), b"1");
        assert_eq!(fs::read(d.path().join("real/b")).unwrap(), b"2");
        assert_eq!(fs::read(real.join("new/c")).unwrap(), b"3");
    }
}
