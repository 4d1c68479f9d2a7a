//! [`Store`]: a folder in pass's on-disk format, read and written in process.
//!
//! The format, which `pass`, browserpass, Android Password Store and gopass all share:
//! every entry is `<name>.gpg`, an OpenPGP message whose first line is the password; the nearest
//! `.gpg-id` up the tree (one key id per line) names the recipients of everything under it.
//!
//! Invariants kept here:
//! - every write is atomic (temp file, fsync, rename: `mv_core::fsutil`), so a crash leaves the old
//!   entry or the new one, never a truncated file;
//! - every write holds [`StoreLock`], an exclusive `flock` on the store folder itself (no lock
//!   file to commit or leave behind), so two writers are serialised;
//! - when the store is a git repository, each change is one commit with pass's exact message;
//! - a file that cannot be read or decrypted is an error naming that file; bulk reads (`grep`)
//!   go on with the others and report it;
//! - no symbolic link inside the store is ever followed, whether it arrived by `git pull` or
//!   otherwise: a write (insert, generate, edit, cp/mv destination, init -p, otp) whose path has a
//!   link anywhere below the store folder is refused with [`StoreError::Symlink`] naming the entry;
//!   a read (show, cp/mv source) of a link is refused the same way, even if the link points inside
//!   the store; `ls`, `find`, `grep` and `audit` skip links (dangling or not) and `fsck` reports
//!   them; `rm` of a link removes the link itself, never what it points to, and a link above the
//!   entry is refused. The store folder itself may be a link (that is the person's choice).
//!
//! What this is not: a CLI. Nothing here prints or prompts.

use crate::backend::{Crypto, CryptoError};
use crate::git::{Git, GitError};
use crate::name::{EntryName, EntryNameError};
use crate::otp::{self, OtpError, OtpUri};
use mv_core::fsutil::{self, FsError};
use mv_core::secret::{SecretBytes, SecretString};
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Errors of store operations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A bad entry name.
    #[error(transparent)]
    Name(#[from] EntryNameError),
    /// `PASSWORD_STORE_SIGNING_KEY` is set and `.gpg-id` has no `.gpg-id.sig` beside it.
    #[error("Signature for {} does not exist (PASSWORD_STORE_SIGNING_KEY is set)", .0.display())]
    SignatureMissing(PathBuf),
    /// `.gpg-id.sig` does not verify: gpg finds no good signature in it (the file changed after
    /// signing, the signature is damaged, or gpg lacks the signer's public key).
    #[error("Signature for {} is invalid: it does not verify (changed after signing, damaged, or by a key gpg does not have)", .0.display())]
    SignatureInvalid(PathBuf),
    /// `.gpg-id.sig` is a good signature, but by no key of `PASSWORD_STORE_SIGNING_KEY` (only
    /// 40-digit upper-case fingerprints count there, as in pass).
    #[error("Signature for {} is invalid: it is made by {}, not by a key of PASSWORD_STORE_SIGNING_KEY", .path.display(), .signers.join(", "))]
    SignatureWrongKey {
        /// The signed file.
        path: PathBuf,
        /// Primary-key fingerprints of the good signatures found.
        signers: Vec<String>,
    },
    /// Signing `.gpg-id` failed.
    #[error("could not sign {}", .path.display())]
    Sign {
        /// The `.gpg-id`.
        path: PathBuf,
        /// gpg's failure.
        #[source]
        source: crate::backend::GpgError,
    },
    /// No `.gpg-id` at or above the entry's folder.
    #[error("no .gpg-id for `{0}`: the store is not initialised there")]
    NotInitialised(String),
    /// The entry does not exist.
    #[error("`{0}` is not in the password store")]
    NotFound(String),
    /// The target exists and `force` was not given.
    #[error("`{0}` already exists in the password store")]
    Exists(String),
    /// A filesystem operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// Reading or decrypting an entry failed.
    #[error("cannot decrypt {path}")]
    Decrypt {
        /// The `.gpg` file.
        path: PathBuf,
        /// Why.
        #[source]
        source: CryptoError,
    },
    /// Encrypting an entry failed.
    #[error("cannot encrypt {path}")]
    Encrypt {
        /// The `.gpg` file.
        path: PathBuf,
        /// Why.
        #[source]
        source: CryptoError,
    },
    /// Taking the store lock failed.
    #[error("cannot lock the store {path}")]
    Lock {
        /// The store folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// git failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The entry's OTP line is bad.
    #[error("OTP entry `{name}`")]
    Otp {
        /// The entry.
        name: String,
        /// Why.
        #[source]
        source: OtpError,
    },
    /// A bad `grep` pattern.
    #[error("bad regular expression")]
    Pattern(#[source] regex::Error),
    /// Recipients named with an empty list.
    #[error("init needs at least one key id")]
    NoRecipients,
    /// [`Store::git_init`] found no repository (`git init` did not make one).
    #[error("git init did not create a repository")]
    NotARepository(PathBuf),
    /// A symbolic link inside the store on the way to an entry (never followed).
    #[error(
        "`{name}`: {} is a symbolic link, and links inside the password store are never followed \
         (one could lead outside it)",
        path.display()
    )]
    Symlink {
        /// The entry (or folder) asked for.
        name: String,
        /// The link.
        path: PathBuf,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

fn fs_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |e| StoreError::Fs(FsError::new(action, path, e))
}

/// The exclusive writer lock of a store; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _lock: nix::fcntl::Flock<fs::File>,
}

/// What a write did, for `--dry-run` plans and "unchanged" reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// Files written or removed.
    pub files: Vec<PathBuf>,
    /// Whether a git commit was made.
    pub committed: bool,
}

/// One line found by [`Store::grep`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct GrepLine {
    /// 1-based line number (`None` when grep itself selected the line: its output is kept
    /// as it printed it).
    pub line: Option<usize>,
    /// The line text.
    pub text: String,
}

/// Matches in one entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GrepHit {
    /// The entry.
    pub name: EntryName,
    /// Its matching lines.
    pub lines: Vec<GrepLine>,
}

/// A file `grep` (or another bulk read) could not read; the others were still searched.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BulkError {
    /// The `.gpg` file.
    pub file: PathBuf,
    /// The error with its causes.
    pub error: String,
}

/// Result of [`Store::grep`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GrepReport {
    /// Entries with at least one matching line, in name order.
    pub hits: Vec<GrepHit>,
    /// Files that could not be read.
    pub errors: Vec<BulkError>,
    /// Entries searched.
    pub searched: usize,
}

/// tree(1)'s `-P` glob: `*` any run, `?` one character (neither matches `/`), `[…]` a set
/// (`^` or `!` negates, `a-z` ranges); no escapes. An unterminated `[` is a literal `[`.
/// Linear backtracking: no pattern takes exponential time.
pub(crate) fn glob_match(pat: &[char], s: &[char]) -> bool {
    enum Tok {
        Star,
        One(Box<dyn Fn(char) -> bool>),
    }
    let mut toks = Vec::new();
    let mut i = 0;
    while i < pat.len() {
        match pat[i] {
            '*' => {
                toks.push(Tok::Star);
                i += 1;
            }
            '?' => {
                toks.push(Tok::One(Box::new(|c| c != '/')));
                i += 1;
            }
            '[' => {
                let neg = matches!(pat.get(i + 1), Some('^' | '!'));
                let start = i + 1 + usize::from(neg);
                let mut k = start;
                let mut ranges = Vec::new();
                let mut closed = None;
                while k < pat.len() {
                    if pat[k] == ']' && k > start {
                        closed = Some(k);
                        break;
                    }
                    if pat.get(k + 1) == Some(&'-') && pat.get(k + 2).is_some_and(|b| *b != ']') {
                        ranges.push((pat[k], pat[k + 2]));
                        k += 3;
                    } else {
                        ranges.push((pat[k], pat[k]));
                        k += 1;
                    }
                }
                match closed {
                    Some(end) => {
                        toks.push(Tok::One(Box::new(move |c| {
                            ranges.iter().any(|(a, b)| *a <= c && c <= *b) != neg
                        })));
                        i = end + 1;
                    }
                    None => {
                        toks.push(Tok::One(Box::new(|c| c == '[')));
                        i += 1;
                    }
                }
            }
            lit => {
                toks.push(Tok::One(Box::new(move |c| c == lit)));
                i += 1;
            }
        }
    }
    // The classic wildcard walk: remember the last star and where it resumed.
    let (mut t, mut c) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while c < s.len() {
        match toks.get(t) {
            Some(Tok::Star) => {
                back = Some((t, c));
                t += 1;
            }
            Some(Tok::One(f)) if f(s[c]) => {
                t += 1;
                c += 1;
            }
            _ => match back {
                // A star never spans `/`, nor can an earlier one.
                Some((_, bc)) if s[bc] == '/' => return false,
                Some((bt, bc)) => {
                    back = Some((bt, bc + 1));
                    t = bt + 1;
                    c = bc + 1;
                }
                None => return false,
            },
        }
    }
    toks[t..].iter().all(|k| matches!(k, Tok::Star))
}

/// What [`Store::find_all`] found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Found {
    /// Entries shown, in name order.
    pub entries: Vec<EntryName>,
    /// Folders whose own name matched (shown by pass even when empty), in name order.
    pub folders: Vec<EntryName>,
}

/// Formats an error with its chain of causes on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The entry's file, relative to the store.
fn entry_rel(name: &EntryName) -> PathBuf {
    PathBuf::from(format!("{name}.gpg"))
}

/// The recipients a `.gpg-id` lists: one id per line; `#` comments and blank lines are skipped,
/// as pass's gpg-id readers do.
pub(crate) fn parse_gpg_id(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// The one walk over a store folder: every entry below `dir` (and `dir` itself first, depth 0),
/// `.git` skipped, links listed but not followed (a linked store root is followed), in name order.
/// An unreadable folder is a [`StoreError::Fs`] naming it.
pub(crate) fn walk_store(
    dir: &Path,
) -> impl Iterator<Item = std::result::Result<walkdir::DirEntry, StoreError>> + '_ {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .follow_root_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || e.file_name() != ".git")
        .map(move |r| {
            r.map_err(|e| {
                let path = e.path().unwrap_or(dir).to_path_buf();
                StoreError::Fs(FsError::new("cannot list", &path, e.into()))
            })
        })
}

/// Reads a regular file, refusing a symlink in its place (`O_NOFOLLOW`) and never blocking on a
/// FIFO or device (`O_NONBLOCK`, then only a regular file is read).
pub(crate) fn read_no_follow(path: &Path) -> std::io::Result<Vec<u8>> {
    // Entries are ciphertext: no need to keep the wiping buffer.
    let (_, mut data) = fsutil::read_regular(path)?;
    Ok(std::mem::take(&mut *data))
}

/// Sets the process umask (pass runs under `umask 077`, or `PASSWORD_STORE_UMASK`). The store
/// itself creates folders 0700 and files 0600 whatever the umask; this covers what other tools
/// (git) write into it.
pub fn set_umask(mask: u32) {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask & 0o777));
}

/// Creates `dir` and its missing parents with mode 0700 (pass's umask 077).
fn make_private_dirs(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fs_err("cannot create folder", dir))
}

/// How [`Store::remove`] reads its arguments (pass's `rm`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoveOptions {
    /// A folder too, with everything in it (`--recursive`).
    pub recursive: bool,
    /// The name was written with a trailing `/` (pass's `rm NAME/`): the folder NAME is meant
    /// even when an entry NAME exists beside it.
    pub folder_only: bool,
}

/// The characters [`Store::generate`] draws from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charset {
    /// pass's default: letters, digits and punctuation.
    Symbols,
    /// `--no-symbols`: letters and digits.
    Alnum,
    /// These bytes (pass's `PASSWORD_STORE_CHARACTER_SET`, see [`crate::tr_set`]).
    Set(Vec<u8>),
}

/// How [`Store::generate`] reads its arguments (pass's `generate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    /// The password's length in characters.
    pub length: usize,
    /// What it is drawn from.
    pub charset: Charset,
    /// `--in-place`: replace only the first line of an existing entry.
    pub in_place: bool,
    /// `--force`: overwrite an existing entry.
    pub force: bool,
}

/// How [`Store::move_or_copy`] reads its arguments (pass's `mv`/`cp`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoveOptions {
    /// Copy instead of move.
    pub copy: bool,
    /// Overwrite existing entries.
    pub force: bool,
    /// The destination was written with a trailing `/`: put the source inside that folder,
    /// creating it if needed.
    pub to_folder: bool,
    /// The source was written with a trailing `/`: it is the folder, even if an entry of the
    /// same name exists.
    pub from_folder: bool,
}

/// A password store folder.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    /// pass's `PASSWORD_STORE_KEY`: these recipients for every entry, whatever `.gpg-id` says.
    key_override: Option<Vec<String>>,
    /// pass's `PASSWORD_STORE_SIGNING_KEY`: `.gpg-id` files must carry a good `.gpg-id.sig` by
    /// one of these fingerprints before their recipients are used; `init` signs.
    signing_keys: Option<Vec<String>>,
    /// `.gpg-id` files whose signature was checked (by this value and its clones).
    verified: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<PathBuf>>>,
}

impl Store {
    /// The store at `dir` (need not exist yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store {
            dir: dir.into(),
            key_override: None,
            signing_keys: None,
            verified: std::sync::Arc::default(),
        }
    }

    /// `.gpg-id` signed and checked as pass does with `PASSWORD_STORE_SIGNING_KEY` (whitespace
    /// separated fingerprints): before the recipients of a `.gpg-id` are used to encrypt, its
    /// `.gpg-id.sig` must be a good signature (checked by gpg) whose signing or primary key is
    /// one of `fprs` (only 40-digit upper-case fingerprints count, as in pass); `init` writes
    /// the signature with gpg (`--default-key` each). An empty list means no signing.
    pub fn with_signing_keys(mut self, fprs: Vec<String>) -> Self {
        self.signing_keys = (!fprs.is_empty()).then_some(fprs);
        self
    }

    /// Checks the detached signature `FILE.sig` of `id` (a `.gpg-id`, or an extension pass
    /// would source) when signing keys are set (see [`Store::with_signing_keys`]); `Ok` when
    /// none are.
    pub fn verify_signed(&self, id: &Path) -> Result<()> {
        let Some(keys) = &self.signing_keys else {
            return Ok(());
        };
        if self.verified.lock().is_ok_and(|v| v.contains(id)) {
            return Ok(());
        }
        let mut sig = id.as_os_str().to_owned();
        sig.push(".sig");
        let sig = PathBuf::from(sig);
        if !sig.is_file() {
            return Err(StoreError::SignatureMissing(id.to_path_buf()));
        }
        let data = read_no_follow(id).map_err(fs_err("cannot read", id))?;
        let signers = crate::backend::Gpg::new().valid_signers(&data, &sig);
        let wanted = keys.iter().filter(|k| {
            k.len() == 40
                && k.bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        });
        let good = wanted
            .clone()
            .any(|k| signers.iter().any(|(s, p)| s == k || p == k));
        if signers.is_empty() {
            return Err(StoreError::SignatureInvalid(id.to_path_buf()));
        }
        if !good {
            let by: Vec<String> = signers
                .into_iter()
                .map(|(_, p)| p)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            return Err(StoreError::SignatureWrongKey {
                path: id.to_path_buf(),
                signers: by,
            });
        }
        if let Ok(mut v) = self.verified.lock() {
            v.insert(id.to_path_buf());
        }
        Ok(())
    }

    /// The fingerprints `.gpg-id.sig` must be made by (see [`Store::with_signing_keys`]); `None`
    /// when signatures are not checked.
    pub fn signing_keys(&self) -> Option<&[String]> {
        self.signing_keys.as_deref()
    }

    /// Every entry encrypted for `ids` instead of its folder's `.gpg-id` recipients, as pass's
    /// `PASSWORD_STORE_KEY` does (writes, re-encryption on `init`/`mv`/`cp`, and `fsck`'s view;
    /// no `.gpg-id` is needed then). An empty list means no override.
    pub fn with_recipients_override(mut self, ids: Vec<String>) -> Self {
        self.key_override = (!ids.is_empty()).then_some(ids);
        self
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the exclusive writer lock, waiting for another writer to finish.
    pub fn lock(&self) -> Result<StoreLock> {
        make_private_dirs(&self.dir)?;
        let f = fs::File::open(&self.dir).map_err(fs_err("cannot open", &self.dir))?;
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(
            |(_, errno)| StoreError::Lock {
                path: self.dir.clone(),
                source: std::io::Error::from(errno),
            },
        )?;
        Ok(StoreLock { _lock: lock })
    }

    /// Takes the lock only if it is free (for tests and `fsck`).
    pub fn try_lock(&self) -> Result<Option<StoreLock>> {
        fs::create_dir_all(&self.dir).map_err(fs_err("cannot create folder", &self.dir))?;
        let f = fs::File::open(&self.dir).map_err(fs_err("cannot open", &self.dir))?;
        match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Some(StoreLock { _lock: l })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(StoreError::Lock {
                path: self.dir.clone(),
                source: std::io::Error::from(errno),
            }),
        }
    }

    /// The git repository, if the store is one.
    pub fn git(&self) -> Option<Git> {
        Git::for_store(&self.dir)
    }

    /// What pass does after `git init` in the store: commits what is there, and teaches git to
    /// diff entries through gpg (`.gitattributes`, 0600 like everything the store writes, and
    /// the `diff.gpg` settings of the repository).
    pub fn git_init(&self) -> Result<()> {
        let g = self
            .git()
            .ok_or_else(|| StoreError::NotARepository(self.dir.clone()))?;
        let _lock = self.lock()?;
        g.commit(&[&self.dir], "Add current contents of password store.")?;
        let attrs = self.dir.join(".gitattributes");
        fsutil::write_secret(&attrs, b"*.gpg diff=gpg\n")?;
        g.commit(&[&attrs], "Configure git repository for gpg file diff.")?;
        for (key, value) in [
            ("diff.gpg.binary", "true"),
            ("diff.gpg.textconv", "gpg -d --quiet --yes"),
        ] {
            // As pass: a failed `git config` is not an error.
            let _ = Git::command(&self.dir)
                .args(["config", "--local", key, value])
                .status();
        }
        Ok(())
    }

    fn commit(&self, paths: &[&Path], message: &str) -> Result<bool> {
        match self.git() {
            Some(g) => Ok(g.commit(paths, message)?),
            None => Ok(false),
        }
    }

    /// The nearest `.gpg-id` at or above folder `folder` (relative, `""` for the top) and the
    /// recipients it lists.
    pub fn recipients_for(&self, folder: &str) -> Result<(PathBuf, Vec<String>)> {
        if let Some(ids) = &self.key_override {
            return Ok((self.dir.join(".gpg-id"), ids.clone()));
        }
        let mut cur = folder.trim_matches('/').to_string();
        loop {
            let id = if cur.is_empty() {
                self.dir.join(".gpg-id")
            } else {
                self.dir.join(&cur).join(".gpg-id")
            };
            let meta = fs::symlink_metadata(&id);
            if meta.as_ref().is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(StoreError::Symlink {
                    name: folder.to_string(),
                    path: id,
                });
            }
            if meta.is_ok_and(|m| m.file_type().is_file()) {
                let text = read_no_follow(&id).map_err(fs_err("cannot read", &id))?;
                let ids = parse_gpg_id(&String::from_utf8_lossy(&text));
                self.verify_signed(&id)?;
                return Ok((id, ids));
            }
            if cur.is_empty() {
                return Err(StoreError::NotInitialised(folder.to_string()));
            }
            cur = cur
                .rsplit_once('/')
                .map_or(String::new(), |(p, _)| p.to_string());
        }
    }

    /// Every recipient named by any `.gpg-id` in the store (`.git` aside, links skipped),
    /// sorted, without duplicates.
    pub fn all_recipients(&self) -> Vec<String> {
        let mut ids = self.key_override.clone().unwrap_or_default();
        for e in walk_store(&self.dir).flatten() {
            if e.file_type().is_file() && e.file_name() == ".gpg-id" {
                if let Ok(text) = read_no_follow(e.path()) {
                    ids.extend(parse_gpg_id(&String::from_utf8_lossy(&text)));
                }
            }
        }
        ids.sort();
        ids.dedup();
        ids
    }

    fn recipients_of(&self, name: &EntryName) -> Result<Vec<String>> {
        Ok(self.recipients_for(name.parent().unwrap_or(""))?.1)
    }

    /// Whether the entry exists: a regular file, or a link in its place (which every read and
    /// write then refuses by name).
    pub fn contains(&self, name: &EntryName) -> bool {
        fs::symlink_metadata(name.file_in(&self.dir))
            .is_ok_and(|m| m.file_type().is_file() || m.file_type().is_symlink())
    }

    /// Refuses `rel` (a path under the store) when one of its components is a symbolic link:
    /// all of them with `last`, else all but the last. A component that does not exist ends the
    /// check: what a write creates there is a real folder.
    fn no_links(&self, name: &str, rel: &Path, last: bool) -> Result<()> {
        let comps: Vec<_> = rel.components().collect();
        let upto = if last {
            comps.len()
        } else {
            comps.len().saturating_sub(1)
        };
        let mut cur = self.dir.clone();
        for c in &comps[..upto] {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(StoreError::Symlink {
                        name: name.to_string(),
                        path: cur,
                    })
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Refuses a write to `name` if its file or a folder above it is a link.
    fn writable(&self, name: &EntryName) -> Result<()> {
        self.no_links(name.as_str(), &entry_rel(name), true)
    }

    /// Reads the entry's file without following a link at any level below the store.
    fn read_file(&self, name: &EntryName) -> Result<Vec<u8>> {
        let path = name.file_in(&self.dir);
        self.no_links(name.as_str(), &entry_rel(name), true)?;
        read_no_follow(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(name.to_string()),
            _ if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) => {
                StoreError::Symlink {
                    name: name.to_string(),
                    path: path.clone(),
                }
            }
            _ => fs_err("cannot read", &path)(e),
        })
    }

    /// Reads and decrypts one entry.
    pub fn read(&self, name: &EntryName, crypto: &dyn Crypto) -> Result<SecretBytes> {
        let path = name.file_in(&self.dir);
        let data = self.read_file(name)?;
        self.decrypt_file(&path, &data, crypto)
    }

    fn decrypt_file(&self, path: &Path, data: &[u8], crypto: &dyn Crypto) -> Result<SecretBytes> {
        crypto.decrypt(data).map_err(|source| StoreError::Decrypt {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Encrypts `plain` for the entry's recipients and writes it atomically (mode 0600).
    /// The caller holds the lock. Returns the file written.
    fn put(&self, name: &EntryName, plain: &[u8], crypto: &dyn Crypto) -> Result<PathBuf> {
        let path = name.file_in(&self.dir);
        self.writable(name)?;
        let recipients = self.recipients_of(name)?;
        if let Some(parent) = path.parent() {
            make_private_dirs(parent)?;
        }
        let ct = crypto
            .encrypt(plain, &recipients)
            .map_err(|source| StoreError::Encrypt {
                path: path.clone(),
                source,
            })?;
        fsutil::write_secret(&path, &ct)?;
        Ok(path)
    }

    /// `insert`: writes `plain` as the entry (refuses to overwrite unless `force`), commits
    /// "Add given password for NAME to store.".
    pub fn insert(
        &self,
        name: &EntryName,
        plain: &[u8],
        force: bool,
        crypto: &dyn Crypto,
    ) -> Result<Change> {
        let _l = self.lock()?;
        self.writable(name)?;
        if !force && self.contains(name) {
            return Err(StoreError::Exists(name.to_string()));
        }
        let path = self.put(name, plain, crypto)?;
        let committed = self.commit(
            &[&path],
            &format!("Add given password for {name} to store."),
        )?;
        Ok(Change {
            files: vec![path],
            committed,
        })
    }

    /// Writes an entry with a caller-chosen commit message (generate, edit, otp insert).
    pub fn write_with_message(
        &self,
        name: &EntryName,
        plain: &[u8],
        message: &str,
        crypto: &dyn Crypto,
    ) -> Result<Change> {
        let _l = self.lock()?;
        let path = self.put(name, plain, crypto)?;
        let committed = self.commit(&[&path], message)?;
        Ok(Change {
            files: vec![path],
            committed,
        })
    }

    /// Writes `plain` unless the entry already decrypts to exactly that (then `Ok(None)`), so
    /// repeated runs of `machines` or `insert -f` change nothing. An entry we cannot decrypt is
    /// rewritten.
    pub fn write_if_changed(
        &self,
        name: &EntryName,
        plain: &[u8],
        message: &str,
        crypto: &dyn Crypto,
    ) -> Result<Option<Change>> {
        let _l = self.lock()?;
        self.writable(name)?;
        if self.contains(name) {
            if let Ok(old) = self.read(name, crypto) {
                let same_recipients = self
                    .read_file(name)
                    .ok()
                    .map(|d| {
                        self.recipients_of(name)
                            .and_then(|r| self.encrypted_to_exactly(&d, &r, crypto))
                            .unwrap_or(false)
                    })
                    .unwrap_or(false);
                if old.expose() == plain && same_recipients {
                    return Ok(None);
                }
            }
        }
        let path = self.put(name, plain, crypto)?;
        let committed = self.commit(&[&path], message)?;
        Ok(Some(Change {
            files: vec![path],
            committed,
        }))
    }

    /// `generate`: a new random password drawn as `opts` says, written as the entry. With
    /// `in_place`, only the first line of an existing entry is replaced. Returns the password.
    pub fn generate(
        &self,
        name: &EntryName,
        opts: &GenerateOptions,
        crypto: &dyn Crypto,
    ) -> Result<(SecretString, Change)> {
        let GenerateOptions {
            length,
            ref charset,
            in_place,
            force,
        } = *opts;
        let pw = match charset {
            Charset::Set(set) => crate::generate::password_from(length, set),
            Charset::Symbols => crate::generate::password(length, true),
            Charset::Alnum => crate::generate::password(length, false),
        };
        let _l = self.lock()?;
        self.writable(name)?;
        let exists = self.contains(name);
        if exists && !force && !in_place {
            return Err(StoreError::Exists(name.to_string()));
        }
        let mut content = SecretString::new(format!("{}\n", pw.expose()));
        if in_place && exists {
            let old = self.read(name, crypto)?;
            let old = String::from_utf8_lossy(old.expose()).into_owned();
            let old = SecretString::new(old);
            if let Some((_, rest)) = old.expose().split_once('\n') {
                content.expose_mut().push_str(rest);
            }
        }
        let path = self.put(name, content.expose().as_bytes(), crypto)?;
        let verb = if in_place { "Replace" } else { "Add" };
        let committed = self.commit(&[&path], &format!("{verb} generated password for {name}."))?;
        Ok((
            pw,
            Change {
                files: vec![path],
                committed,
            },
        ))
    }

    /// `rm`: removes an entry, or a folder with `recursive`. Commits "Remove NAME from store.".
    pub fn remove(&self, name: &EntryName, opts: RemoveOptions) -> Result<Change> {
        let RemoveOptions {
            recursive,
            folder_only,
        } = opts;
        let _l = self.lock()?;
        let file = name.file_in(&self.dir);
        let dir = name.dir_in(&self.dir);
        // A link above the entry is refused; the entry or folder itself, if a link, is unlinked
        // (never followed, never recursed into).
        self.no_links(name.as_str(), &entry_rel(name), false)?;
        let kind = |p: &Path| fs::symlink_metadata(p).ok().map(|m| m.file_type());
        let (file_kind, dir_kind) = (kind(&file), kind(&dir));
        let folder_first = folder_only && dir_kind.is_some();
        let target = if !folder_first && file_kind.is_some_and(|t| t.is_file() || t.is_symlink()) {
            fs::remove_file(&file).map_err(fs_err("cannot remove", &file))?;
            file
        } else if dir_kind.is_some_and(|t| t.is_symlink()) {
            fs::remove_file(&dir).map_err(fs_err("cannot remove", &dir))?;
            dir
        } else if dir_kind.is_some_and(|t| t.is_dir()) && recursive {
            fs::remove_dir_all(&dir).map_err(fs_err("cannot remove", &dir))?;
            dir
        } else if dir_kind.is_some_and(|t| t.is_dir()) {
            return Err(StoreError::Fs(FsError::new(
                "is a folder (use --recursive):",
                &dir,
                std::io::ErrorKind::IsADirectory.into(),
            )));
        } else {
            return Err(StoreError::NotFound(name.to_string()));
        };
        if let Some(parent) = target.parent() {
            let _ = fsutil::sync_dir(parent);
            self.prune_empty(parent);
        }
        let committed = self.commit(&[&target], &format!("Remove {name} from store."))?;
        Ok(Change {
            files: vec![target],
            committed,
        })
    }

    /// Removes empty folders from `dir` up to (not including) the store, like `rmdir -p`.
    fn prune_empty(&self, dir: &Path) {
        let mut cur = dir.to_path_buf();
        while cur.starts_with(&self.dir) && cur != self.dir {
            if fs::remove_dir(&cur).is_err() {
                break;
            }
            match cur.parent() {
                Some(p) => cur = p.to_path_buf(),
                None => break,
            }
        }
    }

    /// Every entry under `prefix` (all with `None`), in name order.
    pub fn list(&self, prefix: Option<&EntryName>) -> Result<Vec<EntryName>> {
        let root = match prefix {
            Some(p) => {
                self.no_links(p.as_str(), Path::new(p.as_str()), true)?;
                p.dir_in(&self.dir)
            }
            None => self.dir.clone(),
        };
        if !root.exists() {
            return match prefix {
                Some(p) if self.contains(p) => Ok(vec![p.clone()]),
                Some(p) => Err(StoreError::NotFound(p.to_string())),
                None => Ok(Vec::new()),
            };
        }
        let mut out = Vec::new();
        // Links are never followed: a link (dangling, or to a file or folder anywhere) is skipped
        // here and reported by `fsck`. The store folder itself may be a link.
        let walker = walkdir::WalkDir::new(&root)
            .follow_links(false)
            .follow_root_links(true)
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
        for entry in walker {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(&root).to_path_buf();
                StoreError::Fs(FsError::new(
                    "cannot list",
                    &path,
                    e.into_io_error()
                        .unwrap_or_else(|| std::io::ErrorKind::Other.into()),
                ))
            })?;
            if entry.file_type().is_file() {
                if let Some(n) = EntryName::from_file(&self.dir, entry.path()) {
                    out.push(n);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// `find`: the entries `pass find TERM…` shows (see [`Store::find_all`]).
    pub fn find(&self, terms: &[String]) -> Result<Vec<EntryName>> {
        Ok(self.find_all(terms)?.entries)
    }

    /// What `pass find TERM…` shows. pass runs `tree -P '*T1*|*T2*…' --matchdirs --ignore-case
    /// --prune` (tree 2.1): each term is a glob (`*`, `?`, `[…]`, and `|` separating
    /// alternatives) between two `*`, matched without regard to case, where `*` and `?` never
    /// match `/`. An entry is shown when its file name (`NAME.gpg`) matches, or when the path of
    /// its folder from the store's top does (so a matching top-level folder shows its own
    /// entries, a deeper one only itself); a folder whose name matches is shown even when
    /// nothing in it is.
    pub fn find_all(&self, terms: &[String]) -> Result<Found> {
        let joined = terms
            .iter()
            .map(|t| format!("*{t}*"))
            .collect::<Vec<_>>()
            .join("|")
            .to_lowercase();
        let pats: Vec<Vec<char>> = joined.split('|').map(|p| p.chars().collect()).collect();
        let hit = |part: &str| {
            let part: Vec<char> = part.to_lowercase().chars().collect();
            pats.iter().any(|p| glob_match(p, &part))
        };
        let entries = self
            .list(None)?
            .into_iter()
            .filter(|n| match n.as_str().rsplit_once('/') {
                Some((dir, file)) => hit(dir) || hit(&format!("{file}.gpg")),
                None => hit(&format!("{}.gpg", n.as_str())),
            })
            .collect();
        let mut folders = Vec::new();
        let walker = walkdir::WalkDir::new(&self.dir)
            .min_depth(1)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| !e.file_name().to_string_lossy().starts_with('.'));
        for e in walker.flatten() {
            if e.file_type().is_dir() && hit(&e.file_name().to_string_lossy()) {
                let rel = e.path().strip_prefix(&self.dir).unwrap_or(e.path());
                if let Some(n) = rel.to_str().and_then(|r| EntryName::parse(r).ok()) {
                    folders.push(n);
                }
            }
        }
        folders.sort();
        Ok(Found { entries, folders })
    }

    /// Decrypts every entry under `prefix` (in parallel when the backend allows) and hands each
    /// result to `f`, which runs in parallel too. Unreadable files are collected, not fatal.
    pub fn for_each_decrypted<T, F>(
        &self,
        prefix: Option<&EntryName>,
        crypto: &dyn Crypto,
        f: F,
    ) -> Result<(Vec<T>, Vec<BulkError>, usize)>
    where
        T: Send,
        F: Fn(&EntryName, &SecretBytes) -> Option<T> + Sync,
    {
        let names = self.list(prefix)?;
        let n = names.len();
        let work = |name: &EntryName| -> std::result::Result<Option<T>, BulkError> {
            let path = name.file_in(&self.dir);
            let data = self.read_file(name).map_err(|e| BulkError {
                file: path.clone(),
                error: chain(&e),
            })?;
            let plain = self
                .decrypt_file(&path, &data, crypto)
                .map_err(|e| BulkError {
                    file: path.clone(),
                    error: chain(&e),
                })?;
            Ok(f(name, &plain))
        };
        let results: Vec<std::result::Result<Option<T>, BulkError>> = if crypto.parallel() {
            names.par_iter().map(work).collect()
        } else {
            names.iter().map(work).collect()
        };
        let mut oks = Vec::new();
        let mut errs = Vec::new();
        for r in results {
            match r {
                Ok(Some(t)) => oks.push(t),
                Ok(None) => {}
                Err(e) => errs.push(e),
            }
        }
        Ok((oks, errs, n))
    }

    /// `grep`: lines of decrypted entries that match the regular expression `pattern`.
    pub fn grep(
        &self,
        pattern: &str,
        ignore_case: bool,
        crypto: &dyn Crypto,
    ) -> Result<GrepReport> {
        let re = regex::RegexBuilder::new(pattern)
            .case_insensitive(ignore_case)
            .build()
            .map_err(StoreError::Pattern)?;
        let (hits, errors, searched) = self.for_each_decrypted(None, crypto, |name, plain| {
            let text = String::from_utf8_lossy(plain.expose());
            let lines: Vec<GrepLine> = crate::grep::lines(&text)
                .enumerate()
                .filter(|(_, l)| re.is_match(l))
                .map(|(i, l)| GrepLine {
                    line: Some(i + 1),
                    text: l.to_string(),
                })
                .collect();
            (!lines.is_empty()).then(|| GrepHit {
                name: name.clone(),
                lines,
            })
        })?;
        Ok(GrepReport {
            hits,
            errors,
            searched,
        })
    }

    /// `grep` with GNU grep's options: the lines `matcher` selects in each decrypted entry
    /// (`-v` and `-m` applied; see [`crate::grep::plan`]).
    pub fn grep_matcher(
        &self,
        matcher: &crate::grep::Matcher,
        crypto: &dyn Crypto,
    ) -> Result<GrepReport> {
        let (hits, errors, searched) = self.for_each_decrypted(None, crypto, |name, plain| {
            let text = String::from_utf8_lossy(plain.expose());
            let lines: Vec<GrepLine> = matcher
                .select(&text)
                .into_iter()
                .map(|(n, l)| GrepLine {
                    line: Some(n),
                    text: l.to_string(),
                })
                .collect();
            (!lines.is_empty()).then(|| GrepHit {
                name: name.clone(),
                lines,
            })
        })?;
        Ok(GrepReport {
            hits,
            errors,
            searched,
        })
    }

    /// `mv` and `cp`, re-encrypting each entry for the destination's recipients (commits
    /// "Rename A to B." or "Copy A to B."), with pass's rules: onto an existing folder, or a destination written with a
    /// trailing `/`, the source goes inside it; a folder moves with the `.gpg-id` files inside it
    /// (its recipients go along); each entry is then re-encrypted for the recipients that govern
    /// its new place, and copied as it is when it is already encrypted exactly to them.
    pub fn move_or_copy(
        &self,
        from: &EntryName,
        to: &EntryName,
        opts: MoveOptions,
        crypto: &dyn Crypto,
    ) -> Result<Change> {
        let _l = self.lock()?;
        let src_file = from.file_in(&self.dir);
        let src_dir = from.dir_in(&self.dir);
        // A source that is, or lies under, a link is refused (it could pull a file from outside
        // the store in); so is a destination that is or lies under one (checked by `put`).
        self.no_links(from.as_str(), &entry_rel(from), false)?;
        for p in [&src_file, &src_dir] {
            if fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(StoreError::Symlink {
                    name: from.to_string(),
                    path: p.clone(),
                });
            }
        }
        let into = opts.to_folder || to.dir_in(&self.dir).is_dir();
        let base = if into {
            to.join(from.leaf())?
        } else {
            to.clone()
        };
        // (source entry, destination entry) pairs, and the folder's .gpg-id files (relative).
        let mut pairs: Vec<(EntryName, EntryName)> = Vec::new();
        let mut ids: Vec<(PathBuf, PathBuf)> = Vec::new();
        let is_folder = src_dir.is_dir() && (opts.from_folder || !src_file.is_file());
        if !is_folder && src_file.is_file() {
            pairs.push((from.clone(), base));
        } else if src_dir.is_dir() {
            for n in self.list(Some(from))? {
                let rel = &n.as_str()[from.as_str().len() + 1..];
                pairs.push((n.clone(), base.join(rel)?));
            }
            let dest_dir = base.dir_in(&self.dir);
            for e in walkdir::WalkDir::new(&src_dir).follow_links(false) {
                let Ok(e) = e else { continue };
                // `.gpg-id` and its signature (`PASSWORD_STORE_SIGNING_KEY`) travel together.
                let name = e.file_name();
                if e.file_type().is_file() && (name == ".gpg-id" || name == ".gpg-id.sig") {
                    if let Ok(rel) = e.path().strip_prefix(&src_dir) {
                        ids.push((e.path().to_path_buf(), dest_dir.join(rel)));
                    }
                }
            }
        } else {
            return Err(StoreError::NotFound(from.to_string()));
        }
        for (_, d) in &pairs {
            self.writable(d)?;
        }
        if !opts.force {
            if let Some((_, d)) = pairs.iter().find(|(_, d)| self.contains(d)) {
                return Err(StoreError::Exists(d.to_string()));
            }
        }
        let mut touched = Vec::new();
        // The folder's recipients first, so that its entries are encrypted for them.
        for (src, dst) in &ids {
            let text = read_no_follow(src).map_err(fs_err("cannot read", src))?;
            if let Some(parent) = dst.parent() {
                make_private_dirs(parent)?;
            }
            fsutil::write_secret(dst, &text)?;
            touched.push(dst.clone());
        }
        for (s, d) in &pairs {
            let data = self.read_file(s)?;
            let recipients = self.recipients_of(d)?;
            let written = if self.encrypted_to_exactly(&data, &recipients, crypto)? {
                let path = d.file_in(&self.dir);
                if let Some(parent) = path.parent() {
                    make_private_dirs(parent)?;
                }
                fsutil::write_secret(&path, &data)?;
                path
            } else {
                let plain = self.decrypt_file(&s.file_in(&self.dir), &data, crypto)?;
                self.put(d, plain.expose(), crypto)?
            };
            touched.push(written);
        }
        if !opts.copy {
            let mut removed = Vec::new();
            for (s, _) in &pairs {
                removed.push(s.file_in(&self.dir));
            }
            for (src, _) in &ids {
                removed.push(src.clone());
            }
            for p in removed {
                fs::remove_file(&p).map_err(fs_err("cannot remove", &p))?;
                if let Some(parent) = p.parent() {
                    self.prune_empty(parent);
                }
                touched.push(p);
            }
        }
        let refs: Vec<&Path> = touched.iter().map(PathBuf::as_path).collect();
        let msg = if opts.copy {
            format!("Copy {from} to {to}.")
        } else {
            format!("Rename {from} to {to}.")
        };
        let committed = self.commit(&refs, &msg)?;
        Ok(Change {
            files: touched,
            committed,
        })
    }

    /// `init -p SUBDIR ""`: removes that folder's `.gpg-id` (commit "Deinitialize PATH
    /// (SUBDIR)."), then re-encrypts what it covered for the recipients above it. The first of
    /// [`Change::files`] is the removed `.gpg-id`.
    pub fn deinit(&self, subdir: Option<&EntryName>, crypto: &dyn Crypto) -> Result<Change> {
        let _l = self.lock()?;
        let folder = subdir.map_or_else(|| self.dir.clone(), |s| s.dir_in(&self.dir));
        let id_file = folder.join(".gpg-id");
        let shown = subdir.map_or(".gpg-id".to_string(), |s| s.to_string());
        let id_rel = subdir.map_or_else(
            || PathBuf::from(".gpg-id"),
            |s| Path::new(s.as_str()).join(".gpg-id"),
        );
        self.no_links(&shown, &id_rel, true)?;
        if !id_file.is_file() {
            return Err(StoreError::NotFound(format!("{}", id_file.display())));
        }
        // The recipients that will govern must be usable before anything changes.
        if let Some(parent) = subdir.and_then(|s| s.parent()) {
            let (_, above) = self.recipients_for(parent)?;
            self.check_recipients(&above, crypto)?;
        } else if subdir.is_some() {
            let (_, above) = self.recipients_for("")?;
            self.check_recipients(&above, crypto)?;
        }
        fs::remove_file(&id_file).map_err(fs_err("cannot remove", &id_file))?;
        let suffix = subdir.map_or(String::new(), |s| format!(" ({s})"));
        let mut committed = self.commit(
            &[&id_file],
            &format!("Deinitialize {}{suffix}.", id_file.display()),
        )?;
        let mut files = vec![id_file];
        let reenc = self.reencrypt_under(subdir, crypto)?;
        if !reenc.is_empty() {
            let refs: Vec<&Path> = reenc.iter().map(PathBuf::as_path).collect();
            committed |= self.commit(
                &refs,
                &format!("Reencrypt password store using new GPG id{suffix}."),
            )?;
            files.extend(reenc);
        }
        self.prune_empty(&folder);
        Ok(Change { files, committed })
    }

    /// Fails unless every recipient (group names expanded) has a usable encryption key.
    fn check_recipients(&self, ids: &[String], crypto: &dyn Crypto) -> Result<()> {
        crypto
            .encryption_key_ids(ids)
            .map(|_| ())
            .map_err(|source| StoreError::Encrypt {
                path: self.dir.join(".gpg-id"),
                source,
            })
    }

    /// `init [-p SUBDIR] KEYID…`: writes `.gpg-id` and re-encrypts what it covers when the
    /// recipients changed. Commits pass's two messages. Unchanged ids change nothing.
    pub fn init(
        &self,
        subdir: Option<&EntryName>,
        ids: &[String],
        crypto: &dyn Crypto,
    ) -> Result<Change> {
        if ids.is_empty() {
            return Err(StoreError::NoRecipients);
        }
        let _l = self.lock()?;
        let folder = subdir.map_or_else(|| self.dir.clone(), |s| s.dir_in(&self.dir));
        let id_file = folder.join(".gpg-id");
        let id_rel = subdir.map_or_else(
            || PathBuf::from(".gpg-id"),
            |s| Path::new(s.as_str()).join(".gpg-id"),
        );
        let shown = subdir.map_or(".gpg-id".to_string(), |s| s.to_string());
        self.no_links(&shown, &id_rel, true)?;
        if folder.exists() && !folder.is_dir() {
            return Err(StoreError::Fs(FsError::new(
                "exists but is not a folder:",
                &folder,
                std::io::ErrorKind::AlreadyExists.into(),
            )));
        }
        // Every recipient must resolve (gpg groups expanded) before .gpg-id changes, so a bad id
        // leaves the store as it was.
        self.check_recipients(ids, crypto)?;
        make_private_dirs(&folder)?;
        let mut text = String::new();
        for id in ids {
            text.push_str(id);
            text.push('\n');
        }
        let changed = fsutil::write_secret(&id_file, text.as_bytes())?;
        let mut files = vec![];
        let mut committed = false;
        let mut sig_file = id_file.as_os_str().to_owned();
        sig_file.push(".sig");
        let sig_file = PathBuf::from(sig_file);
        let sign = self.signing_keys.is_some() && (changed || !sig_file.is_file());
        if changed || sign {
            let id_print = ids.join(", ");
            let suffix = subdir.map_or(String::new(), |s| format!(" ({s})"));
            if changed {
                files.push(id_file.clone());
                committed |=
                    self.commit(&[&id_file], &format!("Set GPG id to {id_print}{suffix}."))?;
            }
            if let (true, Some(keys)) = (sign, &self.signing_keys) {
                // pass: `gpg --default-key K… --detach-sign .gpg-id`, then the signature must
                // check, and is committed naming the signer.
                let gpg = crate::backend::Gpg::new();
                let sig =
                    gpg.detach_sign(text.as_bytes(), keys)
                        .map_err(|source| StoreError::Sign {
                            path: id_file.clone(),
                            source,
                        })?;
                fsutil::write_secret(&sig_file, &sig)?;
                if let Ok(mut v) = self.verified.lock() {
                    v.remove(&id_file);
                }
                let signers = gpg.valid_signers(text.as_bytes(), &sig_file);
                if signers.is_empty() {
                    return Err(StoreError::SignatureInvalid(id_file.clone()));
                }
                let by: Vec<&str> = signers.iter().map(|(_, p)| p.as_str()).collect();
                files.push(sig_file.clone());
                committed |= self.commit(
                    &[&sig_file],
                    &format!("Signing new GPG id with {}.", by.join(",")),
                )?;
            }
            let reenc = self.reencrypt_under(subdir, crypto)?;
            if !reenc.is_empty() {
                let refs: Vec<&Path> = reenc.iter().map(PathBuf::as_path).collect();
                committed |= self.commit(
                    &refs,
                    &format!("Reencrypt password store using new GPG id {id_print}{suffix}."),
                )?;
                files.extend(reenc);
            }
        }
        Ok(Change { files, committed })
    }

    /// Re-encrypts every entry under `prefix` whose recipients differ from its `.gpg-id`
    /// (caller holds the lock). Entries governed by a deeper `.gpg-id` are checked against theirs.
    fn reencrypt_under(
        &self,
        prefix: Option<&EntryName>,
        crypto: &dyn Crypto,
    ) -> Result<Vec<PathBuf>> {
        let mut done = Vec::new();
        for name in self.list(prefix)? {
            let path = name.file_in(&self.dir);
            let recipients = self.recipients_of(&name)?;
            let data = self.read_file(&name)?;
            if self.encrypted_to_exactly(&data, &recipients, crypto)? {
                continue;
            }
            let plain = self.decrypt_file(&path, &data, crypto)?;
            self.put(&name, plain.expose(), crypto)?;
            done.push(path);
        }
        Ok(done)
    }

    /// Whether the message's key ids are exactly one per recipient, all theirs (pass compares
    /// the key ids the same way before deciding to re-encrypt).
    fn encrypted_to_exactly(
        &self,
        data: &[u8],
        recipients: &[String],
        crypto: &dyn Crypto,
    ) -> Result<bool> {
        let Ok(ids) = crate::backend::entry_key_ids(data) else {
            return Ok(false);
        };
        let want = crypto
            .encryption_key_ids(recipients)
            .map_err(|source| StoreError::Encrypt {
                path: self.dir.join(".gpg-id"),
                source,
            })?;
        // pass compares the two sets of key ids, groups expanded.
        let got: BTreeSet<String> = ids.into_iter().collect();
        Ok(got == want)
    }

    /// The OTP code of an entry. For HOTP the counter is advanced, re-encrypted and committed
    /// ("Increment HOTP counter for NAME.") under the lock before the code is returned, so a
    /// code is never shown twice.
    pub fn otp_code(
        &self,
        name: &EntryName,
        now: u64,
        crypto: &dyn Crypto,
    ) -> Result<(String, OtpUri)> {
        let plain = self.read(name, crypto)?;
        let text = SecretString::new(String::from_utf8_lossy(plain.expose()).into_owned());
        let uri = OtpUri::from_entry(text.expose()).map_err(|source| StoreError::Otp {
            name: name.to_string(),
            source,
        })?;
        if let Some(code) = uri.totp_at(now) {
            return Ok((code, uri));
        }
        // HOTP: re-read under the lock so two callers never get the same counter.
        let _l = self.lock()?;
        let plain = self.read(name, crypto)?;
        let text = SecretString::new(String::from_utf8_lossy(plain.expose()).into_owned());
        let uri = OtpUri::from_entry(text.expose()).map_err(|source| StoreError::Otp {
            name: name.to_string(),
            source,
        })?;
        let Some((code, new_uri)) = uri.next_hotp() else {
            return Err(StoreError::Otp {
                name: name.to_string(),
                source: OtpError::NoOtpLine,
            });
        };
        let new_text = otp::replace_otp_line(text.expose(), new_uri.expose());
        let path = self.put(name, new_text.expose().as_bytes(), crypto)?;
        self.commit(&[&path], &format!("Increment HOTP counter for {name}."))?;
        let advanced = OtpUri::parse(new_uri.expose()).map_err(|source| StoreError::Otp {
            name: name.to_string(),
            source,
        })?;
        Ok((code, advanced))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::test_key;
    use crate::keys::{secret_fingerprint, Keyring};

    fn setup() -> (tempfile::TempDir, Store, Keyring, String) {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(d.path().join("store"));
        let k = test_key("T <t@example.org>");
        let fpr = secret_fingerprint(&k);
        let mut ring = Keyring::new();
        ring.add_secret(k);
        store.init(None, std::slice::from_ref(&fpr), &ring).unwrap();
        (d, store, ring, fpr)
    }

    fn n(s: &str) -> EntryName {
        EntryName::parse(s).unwrap()
    }

    #[test]
    fn insert_show_list_remove() {
        let (_d, s, ring, _) = setup();
        for name in ["a", "web/site one", "-dash", "ünï/cødé"] {
            s.insert(&n(name), format!("pw-{name}\n").as_bytes(), false, &ring)
                .unwrap();
            assert_eq!(
                s.read(&n(name), &ring).unwrap().expose(),
                format!("pw-{name}\n").as_bytes()
            );
        }
        assert!(matches!(
            s.insert(&n("a"), b"x", false, &ring),
            Err(StoreError::Exists(_))
        ));
        let names: Vec<String> = s
            .list(None)
            .unwrap()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["-dash", "a", "web/site one", "ünï/cødé"]);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(n("a").file_in(s.dir())).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        s.remove(&n("web/site one"), RemoveOptions::default())
            .unwrap();
        assert!(!s.dir().join("web").exists(), "empty folder pruned");
        assert!(matches!(
            s.remove(&n("nope"), RemoveOptions::default()),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn grep_goes_on_past_a_corrupt_file() {
        let (_d, s, ring, _) = setup();
        s.insert(&n("one"), b"secret\nuser: alice\n", false, &ring)
            .unwrap();
        s.insert(&n("two"), b"other\nuser: bob\n", false, &ring)
            .unwrap();
        fs::write(s.dir().join("broken.gpg"), b"\x85\x01garbage").unwrap();
        let r = s.grep("user: (alice|bob)", false, &ring).unwrap();
        assert!(matches!(
            s.grep("(", false, &ring),
            Err(StoreError::Pattern(_))
        ));
        assert_eq!(r.hits.len(), 2);
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].file.ends_with("broken.gpg"));
        let e = s.read(&n("broken"), &ring).unwrap_err();
        assert!(chain(&e).contains("broken.gpg"), "{}", chain(&e));
    }

    #[test]
    fn nested_gpg_id_and_reencrypt() {
        let (_d, s, ring, fpr) = setup();
        let mut ring = ring;
        let k2 = test_key("U <u@example.org>");
        let fpr2 = secret_fingerprint(&k2);
        ring.add_secret(k2);
        s.insert(&n("team/x"), b"x\n", false, &ring).unwrap();
        let before = fs::read(n("team/x").file_in(s.dir())).unwrap();
        let ch = s
            .init(Some(&n("team")), &[fpr.clone(), fpr2.clone()], &ring)
            .unwrap();
        assert_eq!(ch.files.len(), 2, "gpg-id and one re-encrypted entry");
        let after = fs::read(n("team/x").file_in(s.dir())).unwrap();
        assert_ne!(before, after);
        assert_eq!(crate::backend::entry_key_ids(&after).unwrap().len(), 2);
        assert_eq!(
            s.recipients_for("team/deeper").unwrap().1,
            [fpr.clone(), fpr2.clone()]
        );
        // Same ids again: nothing to do.
        let again = s.init(Some(&n("team")), &[fpr, fpr2], &ring).unwrap();
        assert!(again.files.is_empty());
    }

    #[test]
    fn move_and_copy_folders() {
        let (_d, s, ring, _) = setup();
        s.insert(&n("f/a"), b"1\n", false, &ring).unwrap();
        s.insert(&n("f/b"), b"2\n", false, &ring).unwrap();
        s.move_or_copy(
            &n("f"),
            &n("g"),
            MoveOptions {
                copy: true,
                force: false,
                ..MoveOptions::default()
            },
            &ring,
        )
        .unwrap();
        s.move_or_copy(
            &n("f/a"),
            &n("h"),
            MoveOptions {
                copy: false,
                force: false,
                ..MoveOptions::default()
            },
            &ring,
        )
        .unwrap();
        let names: Vec<String> = s
            .list(None)
            .unwrap()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["f/b", "g/a", "g/b", "h"]);
        assert!(matches!(
            s.move_or_copy(
                &n("h"),
                &n("f/b"),
                MoveOptions {
                    copy: false,
                    force: false,
                    ..MoveOptions::default()
                },
                &ring
            ),
            Err(StoreError::Exists(_))
        ));
    }

    #[test]
    fn a_folder_moves_with_its_gpg_id_and_deinit_falls_back() {
        let (_d, s, ring, fpr) = setup();
        let mut ring = ring;
        let k2 = test_key("U <u@example.org>");
        let fpr2 = secret_fingerprint(&k2);
        ring.add_secret(k2);
        let id_of = |ring: &Keyring, f: &str| ring.encryption_key_ids(&[f.to_string()]).unwrap();
        s.init(Some(&n("team")), std::slice::from_ref(&fpr2), &ring)
            .unwrap();
        s.insert(&n("team/x"), b"x\n", false, &ring).unwrap();
        // Into a folder that does not exist yet (`mv team shared/`): the recipients go along.
        let opts = MoveOptions {
            to_folder: true,
            ..MoveOptions::default()
        };
        s.move_or_copy(&n("team"), &n("shared"), opts, &ring)
            .unwrap();
        assert!(!s.dir().join("team").exists());
        let id_file = s.dir().join("shared/team/.gpg-id");
        assert_eq!(fs::read_to_string(&id_file).unwrap(), format!("{fpr2}\n"));
        let data = fs::read(n("shared/team/x").file_in(s.dir())).unwrap();
        let ids: BTreeSet<String> = crate::backend::entry_key_ids(&data)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(ids, id_of(&ring, &fpr2));
        // An entry into `dir/` that does not exist: dir/entry, never dir.gpg.
        s.insert(&n("lone"), b"l\n", false, &ring).unwrap();
        s.move_or_copy(&n("lone"), &n("newdir"), opts, &ring)
            .unwrap();
        assert!(s.contains(&n("newdir/lone")) && !s.dir().join("newdir.gpg").exists());
        // Removing the folder's .gpg-id re-encrypts its entries for the recipients above.
        let ch = s.deinit(Some(&n("shared/team")), &ring).unwrap();
        assert!(!id_file.exists());
        assert_eq!(ch.files.len(), 2);
        let data = fs::read(n("shared/team/x").file_in(s.dir())).unwrap();
        let ids: BTreeSet<String> = crate::backend::entry_key_ids(&data)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(ids, id_of(&ring, &fpr));
        assert!(matches!(
            s.deinit(Some(&n("shared/team")), &ring),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn init_checks_recipients_before_changing_gpg_id_and_expands_groups() {
        let (_d, s, ring, fpr) = setup();
        let mut ring = ring;
        s.insert(&n("a"), b"a\n", false, &ring).unwrap();
        let before = fs::read(s.dir().join(".gpg-id")).unwrap();
        assert!(s.init(None, &["nobody@example.org".into()], &ring).is_err());
        assert_eq!(
            fs::read(s.dir().join(".gpg-id")).unwrap(),
            before,
            "untouched"
        );
        let k2 = test_key("U <u@example.org>");
        let fpr2 = secret_fingerprint(&k2);
        ring.add_secret(k2);
        ring.set_groups(crate::keys::parse_gpg_groups(&format!(
            "# conf\ngroup the team = {fpr} {fpr2}\n"
        )));
        s.init(None, &["the team".into()], &ring).unwrap();
        let data = fs::read(n("a").file_in(s.dir())).unwrap();
        assert_eq!(crate::backend::entry_key_ids(&data).unwrap().len(), 2);
        // The same keys named one by one: nothing to re-encrypt.
        let ch = s.init(None, &[fpr2.clone(), fpr.clone()], &ring).unwrap();
        assert_eq!(ch.files.len(), 1, "only .gpg-id changed: {:?}", ch.files);
        assert_eq!(fs::read(n("a").file_in(s.dir())).unwrap(), data);
        use std::os::unix::fs::PermissionsExt;
        for p in [s.dir().join(".gpg-id"), s.dir().to_path_buf()] {
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o077;
            assert_eq!(mode, 0, "{}", p.display());
        }
    }

    #[test]
    fn hotp_counter_advances() {
        let (_d, s, ring, _) = setup();
        let uri = "otpauth://hotp/x:y?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&counter=0&issuer=x";
        s.insert(&n("otp"), format!("{uri}\n").as_bytes(), false, &ring)
            .unwrap();
        let (c1, _) = s.otp_code(&n("otp"), 0, &ring).unwrap();
        let (c2, u2) = s.otp_code(&n("otp"), 0, &ring).unwrap();
        assert_eq!((c1.as_str(), c2.as_str()), ("287082", "359152"));
        assert!(u2.uri.expose().contains("counter=2"));
    }

    #[test]
    fn lock_is_exclusive() {
        let (_d, s, _, _) = setup();
        let held = s.lock().unwrap();
        assert!(s.try_lock().unwrap().is_none());
        drop(held);
        assert!(s.try_lock().unwrap().is_some());
    }
}

#[cfg(test)]
mod glob_tests {
    use super::glob_match;

    fn m(p: &str, s: &str) -> bool {
        glob_match(
            &p.chars().collect::<Vec<_>>(),
            &s.chars().collect::<Vec<_>>(),
        )
    }

    #[test]
    fn tree_s_globs() {
        assert!(m("*ab*", "xaby.gpg"));
        assert!(!m("*ab*", "a.b"));
        assert!(m("*a?c*", "abc.gpg") && !m("*a?c*", "ac"));
        assert!(m("*[xy]1*", "y1.gpg") && !m("*[!xy]1*", "y1"));
        assert!(m("*[a-c]z*", "bz") && !m("*[a-c]z*", "dz"));
        assert!(m("*[*", "a[b"), "an unterminated [ is literal");
        assert!(m("*", "") && m("**", "x") && !m("a", ""));
        assert!(!m("*fish*", "fishies/sub") && m("*fish*", "fishies") && !m("a?b", "a/b"));
        assert!(m("*es/s*", "fishies/sub"));
        // No exponential walk on many stars.
        let long: String = "a".repeat(200);
        assert!(!m(&format!("{}b", "*a".repeat(30)), &long));
    }
}
