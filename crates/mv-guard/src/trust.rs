//! Files that root acts on: opened without following links and checked on the open descriptor.
//!
//! The kill switch's configuration says which programs root runs and which files root wipes, and
//! whether root's watcher fires at all. When the process runs as root ([`Policy::Root`]) such a
//! file is used only if root alone could have written it, the rule of sudo's and sshd's
//! `StrictModes`: the file is a regular file owned by root and not writable by group or others,
//! and every folder from `/` down to it is owned by root and not writable by group or others,
//! unless it is sticky (like `/tmp`, where others may add entries but cannot rename or remove
//! root's).
//!
//! The check is made on what was opened, never on a path that is opened afterwards: the walk
//! starts at `/` and opens each component relative to the folder opened before it (through
//! `/proc/self/fd/N/NAME`, which is `openat(N, NAME)` without unsafe code) with `O_NOFOLLOW`, then
//! checks that descriptor with `fstat`. A symbolic link is followed only when the folder holding
//! it has passed the check (only root could have placed it), and its target is walked the same
//! way. Swapping a component between the check and the use is therefore impossible.
//!
//! Main types: [`Policy`], [`TrustError`], [`open_file`], [`check_dir`].
//!
//! What this module is not: a sandbox. Under [`Policy::Any`] (a process that is not root) files
//! are opened as before, following links, with no ownership check: such a process can only do
//! what its own user may do anyway.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Which files may be acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Any file the process can open (a process that is not root).
    Any,
    /// Only files root alone could have written (a process running as root).
    Root,
}

impl Policy {
    /// [`Policy::Root`] when the effective user is root, else [`Policy::Any`].
    pub fn for_process() -> Policy {
        if nix::unistd::geteuid().is_root() {
            Policy::Root
        } else {
            Policy::Any
        }
    }
}

/// Why a file or folder is not used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// Owned by someone other than root.
    #[error(
        "{0} is owned by uid {1}, not root: running as root, multiverse uses only configuration \
         that root alone can change (chown root:root, or use a root-owned tree such as /var/multiverse)"
    )]
    Owner(PathBuf, u32),
    /// Group or others may write it.
    #[error(
        "{0} is writable by group or others (mode {1:04o}): running as root, multiverse uses only \
         configuration that root alone can change (chmod go-w)"
    )]
    Writable(PathBuf, u32),
    /// Neither a regular file (the configuration) nor a folder (a component of its path).
    #[error("{0} is not a {1}")]
    Kind(PathBuf, &'static str),
    /// More than 40 symbolic links on the way (Linux's own limit).
    #[error("{0}: too many symbolic links")]
    Links(PathBuf),
    /// Larger than 1 MiB.
    #[error("{0} is larger than {MAX_LEN} bytes")]
    TooLarge(PathBuf),
    /// Opening or reading failed.
    #[error("cannot read {0}")]
    Io(PathBuf, #[source] io::Error),
}

/// Symbolic links followed on one walk (Linux's own limit).
pub(crate) const MAX_LINKS: usize = 40;

/// The largest configuration file read.
pub(crate) const MAX_LEN: u64 = 1 << 20;

/// Whether `meta` (a folder) is one only root can change.
fn dir_ok(meta: &Metadata, shown: &Path) -> Result<(), TrustError> {
    if !meta.is_dir() {
        return Err(TrustError::Kind(shown.into(), "folder"));
    }
    if meta.uid() != 0 {
        return Err(TrustError::Owner(shown.into(), meta.uid()));
    }
    let mode = meta.mode() & 0o7777;
    // Sticky (like /tmp): others may add entries but not rename or remove root's.
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(TrustError::Writable(shown.into(), mode));
    }
    Ok(())
}

/// Whether `meta` (the file itself) is one only root can change.
fn file_ok(meta: &Metadata, shown: &Path) -> Result<(), TrustError> {
    if !meta.is_file() {
        return Err(TrustError::Kind(shown.into(), "regular file"));
    }
    if meta.uid() != 0 {
        return Err(TrustError::Owner(shown.into(), meta.uid()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(TrustError::Writable(shown.into(), mode));
    }
    Ok(())
}

/// What the walk ends on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    File,
    Dir,
}

/// Opens `name` inside the already opened folder `dir` without following a final link.
fn open_at(dir: &File, name: &OsString, want: Want) -> io::Result<File> {
    use nix::fcntl::OFlag;
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(name);
    let flags = OFlag::O_NOFOLLOW
        | OFlag::O_CLOEXEC
        | match want {
            Want::Dir => OFlag::O_DIRECTORY,
            // A FIFO planted under the name must not block the reader.
            Want::File => OFlag::O_NONBLOCK,
        };
    OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(p)
}

/// The symbolic link `name` inside the opened folder `dir`, if it is one.
fn link_at(dir: &File, name: &OsString) -> Option<PathBuf> {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(name);
    let meta = std::fs::symlink_metadata(&p).ok()?;
    meta.file_type()
        .is_symlink()
        .then(|| std::fs::read_link(&p).ok())
        .flatten()
}

fn open_root() -> Result<File, TrustError> {
    let root = Path::new("/");
    let f = File::open(root).map_err(|e| TrustError::Io(root.into(), e))?;
    let meta = f.metadata().map_err(|e| TrustError::Io(root.into(), e))?;
    dir_ok(&meta, root)?;
    Ok(f)
}

/// Pushes the components of `p` (relative or absolute) in front of `todo`; `true` when `p` is
/// absolute (the walk restarts at `/`).
fn prepend(todo: &mut VecDeque<OsString>, p: &Path) -> bool {
    let mut absolute = false;
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir => absolute = true,
            Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => parts.push(OsString::from("..")),
            Component::Normal(n) => parts.push(n.to_os_string()),
        }
    }
    for part in parts.into_iter().rev() {
        todo.push_front(part);
    }
    absolute
}

/// Walks `path` from `/`, checking every folder and the last component; `Ok(None)` when a
/// component does not exist.
fn walk(path: &Path, want: Want) -> Result<Option<File>, TrustError> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| TrustError::Io(path.into(), e))?
            .join(path)
    };
    let mut todo = VecDeque::new();
    prepend(&mut todo, &abs);
    let mut dir = open_root()?;
    let mut shown = PathBuf::from("/");
    let mut links = 0;
    if todo.is_empty() {
        return match want {
            Want::Dir => Ok(Some(dir)),
            Want::File => Err(TrustError::Kind(shown, "regular file")),
        };
    }
    while let Some(name) = todo.pop_front() {
        let want_here = if todo.is_empty() { want } else { Want::Dir };
        match open_at(&dir, &name, want_here) {
            Ok(f) => {
                let meta = f.metadata().map_err(|e| TrustError::Io(abs.clone(), e))?;
                shown.push(&name);
                match want_here {
                    Want::Dir => dir_ok(&meta, &shown)?,
                    Want::File => file_ok(&meta, &shown)?,
                }
                if todo.is_empty() {
                    return Ok(Some(f));
                }
                dir = f;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                // ELOOP (or ENOTDIR with O_DIRECTORY): a link in a folder that passed the check.
                let Some(target) = link_at(&dir, &name) else {
                    let mut p = shown.clone();
                    p.push(&name);
                    return match e.raw_os_error() {
                        Some(nix::libc::ENOTDIR) => Err(TrustError::Kind(p, "folder")),
                        _ => Err(TrustError::Io(p, e)),
                    };
                };
                links += 1;
                if links > MAX_LINKS {
                    return Err(TrustError::Links(abs));
                }
                if prepend(&mut todo, &target) {
                    dir = open_root()?;
                    shown = PathBuf::from("/");
                }
            }
        }
    }
    // Unreachable: the loop returns on its last component.
    Ok(None)
}

/// Opens the configuration file `path` under `policy`; `Ok(None)` when it does not exist.
pub(crate) fn open_file(path: &Path, policy: Policy) -> Result<Option<File>, TrustError> {
    match policy {
        Policy::Root => walk(path, Want::File),
        Policy::Any => match File::open(path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TrustError::Io(path.into(), e)),
        },
    }
}

/// Reads the configuration file `path` under `policy` (at most [`MAX_LEN`] bytes); `Ok(None)`
/// when it does not exist.
pub(crate) fn read_to_string(path: &Path, policy: Policy) -> Result<Option<String>, TrustError> {
    use std::io::Read;
    let Some(f) = open_file(path, policy)? else {
        return Ok(None);
    };
    let mut text = String::new();
    f.take(MAX_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| TrustError::Io(path.into(), e))?;
    if text.len() as u64 > MAX_LEN {
        return Err(TrustError::TooLarge(path.into()));
    }
    Ok(Some(text))
}

/// Checks that the folder `path` (which must exist) is one only root can change, with every
/// folder above it; always `Ok` under [`Policy::Any`].
pub(crate) fn check_dir(path: &Path, policy: Policy) -> Result<(), TrustError> {
    if policy == Policy::Any {
        return Ok(());
    }
    match walk(path, Want::Dir)? {
        Some(_) => Ok(()),
        None => Err(TrustError::Io(
            path.into(),
            io::Error::from(io::ErrorKind::NotFound),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{chown, symlink, PermissionsExt};

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Runs as root (the suite's environment): a root-owned tree under a tempdir passes; each
    /// weakness on the path is refused and named.
    #[test]
    fn root_policy_refuses_what_others_could_change() {
        assert!(nix::unistd::geteuid().is_root(), "these checks need root");
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("tree/guard");
        std::fs::create_dir_all(&dir).unwrap();
        chmod(&d.path().join("tree"), 0o755);
        chmod(&dir, 0o755);
        let f = dir.join("guard.toml");
        std::fs::write(&f, "armed = true\n").unwrap();
        chmod(&f, 0o600);
        let read = |p: &Path| read_to_string(p, Policy::Root);
        assert_eq!(read(&f).unwrap().as_deref(), Some("armed = true\n"));
        assert!(read(&dir.join("absent.toml")).unwrap().is_none());
        check_dir(&dir, Policy::Root).unwrap();

        // Owned by nobody.
        chown(&f, Some(65534), Some(65534)).unwrap();
        assert!(matches!(read(&f), Err(TrustError::Owner(_, 65534))));
        assert!(read_to_string(&f, Policy::Any).unwrap().is_some());
        chown(&f, Some(0), Some(0)).unwrap();
        // Group-writable file.
        chmod(&f, 0o620);
        assert!(matches!(read(&f), Err(TrustError::Writable(_, 0o620))));
        chmod(&f, 0o644);
        read(&f).unwrap();
        // A world-writable folder on the path (not sticky); then sticky, which passes.
        chmod(&d.path().join("tree"), 0o777);
        let e = read(&f).unwrap_err();
        assert!(
            matches!(&e, TrustError::Writable(p, 0o777) if p.ends_with("tree")),
            "{e}"
        );
        chmod(&d.path().join("tree"), 0o1777);
        read(&f).unwrap();
        chmod(&d.path().join("tree"), 0o755);
        // A folder owned by nobody.
        chown(&dir, Some(65534), None).unwrap();
        assert!(matches!(read(&f), Err(TrustError::Owner(_, 65534))));
        assert!(check_dir(&dir, Policy::Root).is_err());
        chown(&dir, Some(0), None).unwrap();

        // A link in a root-owned folder is followed and its target checked.
        let other = d.path().join("other.toml");
        std::fs::write(&other, "armed = false\n").unwrap();
        let link = dir.join("link.toml");
        symlink(&other, &link).unwrap();
        assert_eq!(read(&link).unwrap().as_deref(), Some("armed = false\n"));
        chown(&other, Some(65534), None).unwrap();
        assert!(matches!(read(&link), Err(TrustError::Owner(_, 65534))));
        // A link to a folder, relative, with `..`.
        let up = d.path().join("up");
        symlink("tree/guard/../guard", &up).unwrap();
        assert!(read(&up.join("guard.toml")).unwrap().is_some());
        // A FIFO is not a configuration file (and does not block).
        let fifo = dir.join("fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(read(&fifo), Err(TrustError::Kind(..))));
        // A file where a folder should be.
        assert!(matches!(
            read(&f.join("x")),
            Err(TrustError::Kind(_, "folder"))
        ));
    }

    #[test]
    fn relative_paths_and_the_root_folder() {
        check_dir(Path::new("/"), Policy::Root).unwrap();
        assert!(read_to_string(Path::new("/"), Policy::Root).is_err());
        // The working folder of the test is the crate (root-owned in this environment or not):
        // the walk must at least resolve a relative path to the same file as the absolute one.
        let rel = Path::new("Cargo.toml");
        let abs = std::env::current_dir().unwrap().join(rel);
        let a = read_to_string(&abs, Policy::Root).map(|t| t.is_some());
        let r = read_to_string(rel, Policy::Root).map(|t| t.is_some());
        assert_eq!(format!("{a:?}"), format!("{r:?}"));
    }
}
