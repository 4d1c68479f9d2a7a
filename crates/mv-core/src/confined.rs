//! Confined access to a foreign root filesystem: every path resolves inside it.
//!
//! [`RootDir`] holds a descriptor of a folder that stands for `/` of another system (a guest's
//! mounted root, the shadow copy of a remote machine) and does every read and write relative to
//! that descriptor. Symlinks are followed the way the guest itself would follow them: an absolute
//! link starts again at the guest's `/`, and `..` stops at the guest's `/`. A guest that links
//! `/etc/ssh` to `/etc/ssh` gets its own `/etc/ssh`, never the host's; a link to `../../../..`
//! lands on the guest's root.
//!
//! The kernel does the resolution (`openat2` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`).
//! Where `openat2` is missing (Linux before 5.6, some seccomp filters) the same rules run in user
//! space, one component at a time: each component is opened with `O_NOFOLLOW` from a descriptor
//! already inside the root, a symlink's text is spliced into the remaining path, and `..` pops our
//! own stack of descriptors (the kernel is never asked to resolve `..`). Both ways refuse more
//! than 40 links with `ELOOP`, as the kernel does.
//!
//! Writes never go through the final component: [`RootDir::create_new`] is
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, [`RootDir::rename`] and [`RootDir::symlink`] replace or fail on a
//! link rather than write through it, [`RootDir::remove_file`] and [`RootDir::remove_dir`] remove
//! a final link itself (or refuse it) rather than what it points to, and modes and owners are set
//! on descriptors (`fchmod`, `fchown`) of folders or regular files only, never on paths (a device node or FIFO is refused).
//! Reads ([`RootDir::read`]) accept regular files only, so a guest's `/etc/passwd` that is a FIFO
//! or `/dev/zero` cannot hang or exhaust the host.
//!
//! What this is not: a sandbox for processes (commands run in a target still need `chroot`), and
//! not a guarantee about *which* file inside the root is touched while someone else changes the
//! tree concurrently; only that it is one inside the root. Paths are interpreted as the guest's
//! (`/etc/passwd` and `etc/passwd` are the same file); [`RootDir::host_path`] is for messages.

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Symlinks followed in one resolution before `ELOOP` (the kernel's limit).
const MAX_LINKS: u32 = 40;

/// How paths are resolved inside the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// `openat2(RESOLVE_IN_ROOT)`: the kernel confines every step.
    Kernel,
    /// One `O_NOFOLLOW` component at a time in user space (where `openat2` is unavailable).
    Walk,
}

/// A folder standing for another system's `/`; every operation stays inside it.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
    resolver: Resolver,
}

fn err(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// The components of a guest path, without empty ones and `.` (`..` is kept).
fn components(p: &[u8]) -> VecDeque<OsString> {
    p.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsString::from_vec(c.to_vec()))
        .collect()
}

/// Splits a guest path into its parent and final name; the final name must be a plain name.
fn split_last(p: &Path) -> io::Result<(PathBuf, OsString)> {
    let mut comps = components(p.as_os_str().as_bytes());
    let last = comps.pop_back().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the root itself has no parent folder",
        )
    })?;
    if last == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} ends in `..`", p.display()),
        ));
    }
    let mut parent = PathBuf::from("/");
    parent.extend(comps);
    Ok((parent, last))
}

fn file_type(fd: impl AsFd) -> io::Result<FileType> {
    Ok(FileType::from_raw_mode(
        rfs::fstat(fd).map_err(err)?.st_mode,
    ))
}

impl RootDir {
    /// Opens `path` (the host's path of the guest's `/`, trusted as given) as a root.
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rfs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        let probe = rfs::openat2(
            &fd,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        );
        let resolver = match probe {
            Ok(_) => Resolver::Kernel,
            Err(Errno::NOSYS | Errno::PERM | Errno::INVAL) => Resolver::Walk,
            Err(e) => return Err(err(e)),
        };
        Ok(RootDir {
            fd,
            path: path.to_path_buf(),
            resolver,
        })
    }

    /// Opens `path` with a chosen resolver (tests compare both).
    pub fn open_with(path: &Path, resolver: Resolver) -> io::Result<Self> {
        let mut r = Self::open(path)?;
        if resolver == Resolver::Kernel && r.resolver != Resolver::Kernel {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "openat2 is not available",
            ));
        }
        r.resolver = resolver;
        Ok(r)
    }

    /// The resolver in use.
    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    /// A second handle on the same root.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(RootDir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
            resolver: self.resolver,
        })
    }

    /// The host path the root was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host path a guest path would have without symlinks: for messages only, never to open.
    pub fn host_path(&self, p: impl AsRef<Path>) -> PathBuf {
        let mut out = self.path.clone();
        out.extend(components(p.as_ref().as_os_str().as_bytes()));
        out
    }

    /// Opens guest path `p` with `flags`, following symlinks inside the root; the final component
    /// is followed only when `follow`.
    fn open_in(&self, p: &Path, flags: OFlags, follow: bool) -> io::Result<OwnedFd> {
        let mut flags = flags | OFlags::CLOEXEC;
        if !follow {
            flags |= OFlags::NOFOLLOW;
        }
        match self.resolver {
            Resolver::Kernel => {
                // The same components the walk sees (no trailing `/`, no `.`); `..` is kept.
                let comps = components(p.as_os_str().as_bytes());
                let mut rel = PathBuf::from("/");
                rel.extend(comps);
                let mut tries = 0;
                loop {
                    match rfs::openat2(
                        &self.fd,
                        &rel,
                        flags,
                        Mode::empty(),
                        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                    ) {
                        // A concurrent rename during `..`: the kernel asks us to retry.
                        Err(Errno::AGAIN) if tries < 16 => tries += 1,
                        r => return r.map_err(err),
                    }
                }
            }
            Resolver::Walk => self.walk(p.as_os_str().as_bytes(), flags, follow),
        }
    }

    /// The user-space resolver: see the module documentation.
    fn walk(&self, p: &[u8], flags: OFlags, follow: bool) -> io::Result<OwnedFd> {
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut queue = components(p);
        let mut links = 0;
        while let Some(c) = queue.pop_front() {
            if c == ".." {
                stack.pop();
                continue;
            }
            let base: BorrowedFd<'_> = stack.last().map_or(self.fd.as_fd(), |f| f.as_fd());
            let fd = rfs::openat(
                base,
                c.as_os_str(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(err)?;
            let kind = file_type(&fd)?;
            let last = queue.is_empty();
            if kind == FileType::Symlink && (follow || !last) {
                links += 1;
                if links > MAX_LINKS {
                    return Err(err(Errno::LOOP));
                }
                let text = rfs::readlinkat(&fd, "", Vec::new()).map_err(err)?;
                let text = text.as_bytes();
                if text.first() == Some(&b'/') {
                    stack.clear();
                }
                for part in components(text).into_iter().rev() {
                    queue.push_front(part);
                }
                continue;
            }
            if last {
                // Reopened by name with the caller's flags; O_NOFOLLOW keeps a link swapped in
                // meanwhile from being followed (ELOOP, or the link itself for O_PATH).
                let base: BorrowedFd<'_> = stack.last().map_or(self.fd.as_fd(), |f| f.as_fd());
                return rfs::openat(base, c.as_os_str(), flags | OFlags::NOFOLLOW, Mode::empty())
                    .map_err(err);
            }
            if kind != FileType::Directory {
                return Err(err(Errno::NOTDIR));
            }
            stack.push(fd);
        }
        let base: BorrowedFd<'_> = stack.last().map_or(self.fd.as_fd(), |f| f.as_fd());
        rfs::openat(base, ".", flags & !OFlags::NOFOLLOW, Mode::empty()).map_err(err)
    }

    /// The parent folder of `p` (resolved inside the root) and `p`'s final name.
    fn parent(&self, p: &Path) -> io::Result<(OwnedFd, OsString)> {
        let (parent, name) = split_last(p)?;
        let fd = self.open_in(&parent, OFlags::PATH | OFlags::DIRECTORY, true)?;
        Ok((fd, name))
    }

    /// The contents of the regular file at `p`.
    pub fn read(&self, p: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        let fd = self.open_in(
            p.as_ref(),
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
            true,
        )?;
        if file_type(&fd)? != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let mut out = Vec::new();
        File::from(fd).read_to_end(&mut out)?;
        Ok(out)
    }

    /// [`RootDir::read`], with `None` when `p` does not exist.
    pub fn read_opt(&self, p: impl AsRef<Path>) -> io::Result<Option<Vec<u8>>> {
        match self.read(p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Metadata of `p`, following symlinks inside the root.
    pub fn metadata(&self, p: impl AsRef<Path>) -> io::Result<Metadata> {
        File::from(self.open_in(p.as_ref(), OFlags::PATH, true)?).metadata()
    }

    /// Metadata of `p` itself (a final symlink is not followed).
    pub fn symlink_metadata(&self, p: impl AsRef<Path>) -> io::Result<Metadata> {
        File::from(self.open_in(p.as_ref(), OFlags::PATH, false)?).metadata()
    }

    /// The text of the symlink at `p`.
    pub fn read_link(&self, p: impl AsRef<Path>) -> io::Result<PathBuf> {
        let fd = self.open_in(p.as_ref(), OFlags::PATH, false)?;
        let text = rfs::readlinkat(&fd, "", Vec::new()).map_err(err)?;
        Ok(PathBuf::from(OsString::from_vec(text.into_bytes())))
    }

    /// The names in folder `p` (without `.` and `..`).
    pub fn read_dir(&self, p: impl AsRef<Path>) -> io::Result<Vec<OsString>> {
        let fd = self.open_in(p.as_ref(), OFlags::RDONLY | OFlags::DIRECTORY, true)?;
        let mut names = Vec::new();
        for entry in rfs::Dir::new(fd).map_err(err)? {
            let entry = entry.map_err(err)?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
        Ok(names)
    }

    /// Creates folder `p` with exactly `mode` (its parent must exist).
    pub fn create_dir(&self, p: impl AsRef<Path>, mode: u32) -> io::Result<()> {
        let (parent, name) = self.parent(p.as_ref())?;
        rfs::mkdirat(&parent, name.as_os_str(), Mode::from_raw_mode(mode)).map_err(err)?;
        let fd = rfs::openat(
            &parent,
            name.as_os_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(err)
    }

    /// Creates `p` and its missing parents, each new one with `mode`; existing ones (symlinks
    /// inside the root included) are left as they are.
    pub fn create_dir_all(&self, p: impl AsRef<Path>, mode: u32) -> io::Result<()> {
        let comps = components(p.as_ref().as_os_str().as_bytes());
        let mut prefix = PathBuf::from("/");
        for c in comps {
            prefix.push(c);
            match self.open_in(&prefix, OFlags::PATH | OFlags::DIRECTORY, true) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            match self.create_dir(&prefix, mode) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // Made meanwhile, or a link to nothing inside the root: it must now be a folder.
                    match self.open_in(&prefix, OFlags::PATH | OFlags::DIRECTORY, true) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            return Err(io::Error::new(
                                io::ErrorKind::NotFound,
                                "a symlink that leads to nothing inside the root",
                            ))
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Opens `p` (symlinks followed inside the root) for `fchmod`/`fchown`: folders and regular
    /// files only; the opened file is checked to be the one first looked at.
    fn open_for_attrs(&self, p: &Path) -> io::Result<OwnedFd> {
        let look = self.open_in(p, OFlags::PATH, true)?;
        let st = rfs::fstat(&look).map_err(err)?;
        let flags = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => OFlags::RDONLY | OFlags::DIRECTORY,
            FileType::RegularFile => OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a folder or a regular file",
                ))
            }
        };
        let fd = self.open_in(p, flags, true)?;
        let again = rfs::fstat(&fd).map_err(err)?;
        if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "changed while being opened",
            ));
        }
        Ok(fd)
    }

    /// Sets the mode of the folder or regular file `p` (symlinks followed inside the root).
    pub fn set_mode(&self, p: impl AsRef<Path>, mode: u32) -> io::Result<()> {
        let fd = self.open_for_attrs(p.as_ref())?;
        rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(err)
    }

    /// Sets the owner of the folder or regular file `p` (symlinks followed inside the root).
    pub fn set_owner(&self, p: impl AsRef<Path>, uid: u32, gid: u32) -> io::Result<()> {
        let fd = self.open_for_attrs(p.as_ref())?;
        rfs::fchown(
            &fd,
            Some(rfs::Uid::from_raw_unchecked(uid)),
            Some(rfs::Gid::from_raw_unchecked(gid)),
        )
        .map_err(err)
    }

    /// Creates the new regular file `p` with exactly `mode` (fails if anything, a symlink
    /// included, is already there).
    pub fn create_new(&self, p: impl AsRef<Path>, mode: u32) -> io::Result<File> {
        let (parent, name) = self.parent(p.as_ref())?;
        let fd = rfs::openat(
            &parent,
            name.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(err)?;
        rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(err)?;
        Ok(File::from(fd))
    }

    /// Writes the new file `p`: `bytes`, `mode`, optionally `(uid, gid)`, then fsync.
    pub fn write_new(
        &self,
        p: impl AsRef<Path>,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<()> {
        use std::io::Write;
        let mut f = self.create_new(p, mode)?;
        if let Some((uid, gid)) = owner {
            rfs::fchown(
                &f,
                Some(rfs::Uid::from_raw_unchecked(uid)),
                Some(rfs::Gid::from_raw_unchecked(gid)),
            )
            .map_err(err)?;
            // chown clears set-id bits: put the exact mode back.
            rfs::fchmod(&f, Mode::from_raw_mode(mode)).map_err(err)?;
        }
        f.write_all(bytes)?;
        f.sync_all()
    }

    /// Renames `from` to `to` (both inside the root); an entry at `to`, a symlink included, is
    /// replaced, never written through.
    pub fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
        let (fp, fname) = self.parent(from.as_ref())?;
        let (tp, tname) = self.parent(to.as_ref())?;
        rfs::renameat(&fp, fname.as_os_str(), &tp, tname.as_os_str()).map_err(err)
    }

    /// Creates the symlink `link` with text `target` (not resolved: the guest reads it).
    pub fn symlink(&self, target: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
        let (parent, name) = self.parent(link.as_ref())?;
        rfs::symlinkat(target.as_ref(), &parent, name.as_os_str()).map_err(err)
    }

    /// Removes the file or symlink `p` (a final symlink itself, not what it points to).
    pub fn remove_file(&self, p: impl AsRef<Path>) -> io::Result<()> {
        let (parent, name) = self.parent(p.as_ref())?;
        rfs::unlinkat(&parent, name.as_os_str(), AtFlags::empty()).map_err(err)
    }

    /// Removes the empty folder `p` (a final symlink is not followed: removing one fails).
    pub fn remove_dir(&self, p: impl AsRef<Path>) -> io::Result<()> {
        let (parent, name) = self.parent(p.as_ref())?;
        rfs::unlinkat(&parent, name.as_os_str(), AtFlags::REMOVEDIR).map_err(err)
    }

    /// Removes `p` and everything under it, never following a symlink.
    pub fn remove_dir_all(&self, p: impl AsRef<Path>) -> io::Result<()> {
        let (parent, name) = self.parent(p.as_ref())?;
        remove_tree(parent.as_fd(), &name)
    }

    /// fsyncs folder `p`.
    pub fn sync_dir(&self, p: impl AsRef<Path>) -> io::Result<()> {
        let fd = self.open_in(p.as_ref(), OFlags::RDONLY | OFlags::DIRECTORY, true)?;
        rfs::fsync(&fd).map_err(err)
    }
}

/// Removes `name` in `dir` recursively without following symlinks.
fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(err)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return rfs::unlinkat(dir, name, AtFlags::empty()).map_err(err);
    }
    let fd = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)?;
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(&fd).map_err(err)? {
        let entry = entry.map_err(err)?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsString::from_vec(n.to_vec()));
        }
    }
    for n in names {
        remove_tree(fd.as_fd(), &n)?;
    }
    rfs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// Every entry under `dir` (never following links): path → (type+mode, uid, gid, bytes or link).
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)> {
        let mut out = BTreeMap::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            let m = std::fs::symlink_metadata(&d).unwrap();
            let data = if m.file_type().is_symlink() {
                std::fs::read_link(&d).unwrap().into_os_string().into_vec()
            } else if m.is_file() {
                std::fs::read(&d).unwrap()
            } else {
                Vec::new()
            };
            out.insert(d.clone(), (m.mode(), m.uid(), m.gid(), data));
            if m.is_dir() {
                for e in std::fs::read_dir(&d).unwrap() {
                    todo.push(e.unwrap().path());
                }
            }
        }
        out
    }

    /// A host folder with things an escape would change, and a guest root whose links point at
    /// it in every way (absolute host path, relative `..`, a loop).
    fn world() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("host");
        let root = t.path().join("root");
        std::fs::create_dir_all(host.join("sub")).unwrap();
        std::fs::write(host.join("secret"), b"host secret").unwrap();
        std::fs::set_permissions(host.join("secret"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink(&host, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../host/sub", root.join("etc/rel")).unwrap();
        std::os::unix::fs::symlink(host.join("secret"), root.join("etc/file")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        std::os::unix::fs::symlink("../../../../../../..", root.join("up")).unwrap();
        (t, host, root)
    }

    #[derive(Debug, Clone)]
    enum Op {
        MkdirAll(String),
        Write(String),
        Rename(String, String),
        Symlink(String, String),
        Chmod(String),
        Chown(String),
        RemoveFile(String),
        RemoveAll(String),
        RemoveDir(String),
        Read(String),
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("abs".to_string()),
            Just("etc".to_string()),
            Just("rel".to_string()),
            Just("file".to_string()),
            Just("loop".to_string()),
            Just("up".to_string()),
            Just("secret".to_string()),
            Just("sub".to_string()),
            Just("..".to_string()),
            Just(".".to_string()),
            "[a-c]",
            Just("n".repeat(255)),
            Just("m".repeat(256)),
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        (any::<bool>(), prop::collection::vec(name(), 1..5))
            .prop_map(|(abs, parts)| format!("{}{}", if abs { "/" } else { "" }, parts.join("/")))
    }

    /// Link texts: guest paths (absolute or relative), and the host folder by its host path.
    fn link_text(host: &Path) -> impl Strategy<Value = String> {
        let h = host.display().to_string();
        prop_oneof![
            path(),
            Just(h.clone()),
            Just(format!("{h}/sub")),
            Just(format!("{h}/secret")),
            Just("../../host".to_string()),
        ]
    }

    fn op(host: &Path) -> impl Strategy<Value = Op> {
        prop_oneof![
            path().prop_map(Op::MkdirAll),
            path().prop_map(Op::Write),
            (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
            (link_text(host), path()).prop_map(|(a, b)| Op::Symlink(a, b)),
            path().prop_map(Op::Chmod),
            path().prop_map(Op::Chown),
            path().prop_map(Op::RemoveFile),
            path().prop_map(Op::RemoveAll),
            path().prop_map(Op::RemoveDir),
            path().prop_map(Op::Read),
        ]
    }

    fn run(r: &RootDir, op: &Op) -> Result<(), io::ErrorKind> {
        let res = match op {
            Op::MkdirAll(p) => r.create_dir_all(p, 0o755),
            Op::Write(p) => r.write_new(p, b"guest", 0o600, Some((4242, 4242))),
            Op::Rename(a, b) => r.rename(a, b),
            Op::Symlink(t, l) => r.symlink(t, l),
            Op::Chmod(p) => r.set_mode(p, 0o777),
            Op::Chown(p) => r.set_owner(p, 4242, 4242),
            Op::RemoveFile(p) => r.remove_file(p),
            Op::RemoveAll(p) => r.remove_dir_all(p),
            Op::RemoveDir(p) => r.remove_dir(p),
            Op::Read(p) => r.read(p).map(|_| ()),
        };
        res.map_err(|e| e.kind())
    }

    /// The host path the test uses, for the strategies (every world has the same shape).
    fn any_host() -> PathBuf {
        std::env::temp_dir().join("mv-confined-host")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(192))]

        /// Whatever the guest's links (absolute, relative, `..`, loops, long names) and whatever
        /// sequence of writes, nothing outside the root changes; both resolvers agree.
        #[test]
        fn no_write_lands_outside_the_root(ops in prop::collection::vec(op(&any_host()), 1..24)) {
            let mut results = Vec::new();
            let mut trees = Vec::new();
            for resolver in [Resolver::Walk, Resolver::Kernel] {
                let (t, host, root) = world();
                // The strategy's host path stands for this world's host folder.
                let fix = |s: &String| s.replace(&any_host().display().to_string(), &host.display().to_string());
                let ops: Vec<Op> = ops.iter().map(|o| match o {
                    Op::Symlink(a, b) => Op::Symlink(fix(a), b.clone()),
                    o => o.clone(),
                }).collect();
                let before_host = snapshot(&host);
                let before_top: Vec<_> = std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
                let r = match RootDir::open_with(&root, resolver) {
                    Ok(r) => r,
                    Err(e) if resolver == Resolver::Kernel && e.kind() == io::ErrorKind::Unsupported => continue,
                    Err(e) => panic!("{e}"),
                };
                let res: Vec<_> = ops.iter().map(|o| run(&r, o)).collect();
                prop_assert_eq!(&before_host, &snapshot(&host), "host changed by {:?}", ops);
                let after_top: Vec<_> = std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
                prop_assert_eq!(before_top, after_top);
                let rel: BTreeMap<_, _> = snapshot(&root).into_iter()
                    .map(|(p, v)| (p.strip_prefix(&root).unwrap().to_path_buf(), v))
                    .map(|(p, (mode, uid, gid, data))| {
                        let data = String::from_utf8_lossy(&data).replace(&host.display().to_string(), "HOST").into_bytes();
                        (p, (mode, uid, gid, data))
                    })
                    .collect();
                results.push(res);
                trees.push(rel);
            }
            if results.len() == 2 {
                prop_assert_eq!(&results[0], &results[1], "resolvers disagree on {:?}", ops);
                prop_assert_eq!(&trees[0], &trees[1]);
            }
        }
    }

    #[test]
    fn remove_dir_only_empty_and_never_through_a_link() {
        let (_t, host, root) = world();
        for resolver in [Resolver::Walk, Resolver::Kernel] {
            let Ok(r) = RootDir::open_with(&root, resolver) else {
                continue;
            };
            r.create_dir_all("/d/e", 0o755).unwrap();
            assert!(r.remove_dir("/d").is_err(), "not empty");
            r.remove_dir("/d/e").unwrap();
            r.remove_dir("/d").unwrap();
            assert!(!root.join("d").exists());
            // A link to the host folder is not a folder here: refused, the host untouched.
            std::os::unix::fs::symlink(&host, root.join("hostlink")).unwrap();
            assert!(r.remove_dir("/hostlink").is_err());
            assert!(host.is_dir());
            std::fs::remove_file(root.join("hostlink")).unwrap();
        }
    }

    #[test]
    fn links_resolve_as_the_guest_sees_them() {
        let (_t, host, root) = world();
        for resolver in [Resolver::Walk, Resolver::Kernel] {
            let Ok(r) = RootDir::open_with(&root, resolver) else {
                continue;
            };
            // /abs points at the host folder by its host path: inside the guest that path does not exist.
            let e = r.write_new("/abs/secret", b"x", 0o600, None).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{resolver:?}");
            // `up` climbs past the root and stays at the guest's `/`.
            r.create_dir_all("/up/up/etc/ssh", 0o755).unwrap();
            assert!(root.join("etc/ssh").is_dir());
            r.write_new("/up/etc/ssh/x", b"x", 0o600, None).unwrap();
            assert_eq!(std::fs::read(root.join("etc/ssh/x")).unwrap(), b"x");
            std::fs::remove_dir_all(root.join("etc/ssh")).unwrap();
            assert_eq!(
                r.read("/loop").unwrap_err().raw_os_error(),
                Some(libc::ELOOP),
                "{resolver:?}"
            );
            // A file link is replaced by rename, not written through.
            r.write_new("/etc/.new", b"guest", 0o644, None).unwrap();
            r.rename("/etc/.new", "/etc/file").unwrap();
            assert_eq!(std::fs::read(host.join("secret")).unwrap(), b"host secret");
            assert_eq!(std::fs::read(root.join("etc/file")).unwrap(), b"guest");
            std::os::unix::fs::symlink(host.join("secret"), root.join("etc/file2")).unwrap();
            r.rename("/etc/file2", "/etc/file").unwrap();
        }
    }
}
