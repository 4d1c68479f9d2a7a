//! Disk images with `qemu-img`: base images under `images/`, each machine's disk a qcow2 overlay
//! on its base.
//!
//! - [`import`]: `multiverse image import FILE --name N` → `images/N.qcow2` (converted to qcow2 by
//!   `qemu-img convert`; a second import of the same content is "unchanged", a different one under
//!   an existing name is refused).
//! - [`ensure_overlay`]: creates a machine's overlay if missing (service VMs keep theirs).
//! - [`fresh_overlay`]: replaces it with an empty one (application VMs, at every start: throw-away).
//!
//! An overlay can be LUKS-encrypted inside the qcow2 ([`OverlaySpec::luks`]): `qemu-img create`
//! gets the key as a QEMU secret object read from a file (mode 0600, in `/dev/shm` when it
//! exists, overwritten and removed right after), never on its command line; its base stays
//! plain. The key is 64 random bytes (the identity's `luks` key), so the header's PBKDF2 gets
//! 10 ms of iterations, not QEMU's 2 s meant for passwords a person chose: every start of the
//! machine pays it.
//!
//! Overlays name their base by absolute path: libvirt opens a disk through the pool's
//! `storage/<fqdn>.qcow2` symlink, and QEMU resolves a relative backing name against the folder
//! of the path it opened, not of the symlink's target. Every file is created under a temporary
//! name and renamed into place, so a failure never leaves a half-written image.
//!
//! What this is not: an image builder. Base images come from elsewhere (debootstrap, a vendor).

use mv_core::secret::SecretBytes;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The base image an overlay needs does not exist.
    #[error("base image {name} is missing: {path} does not exist")]
    MissingBase {
        /// Base name.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The file to import does not exist or cannot be read.
    #[error("cannot read {path}")]
    Source {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A base image of that name exists with other content.
    #[error("image {name} already exists at {path} with different content")]
    Exists {
        /// Name.
        name: String,
        /// Its file.
        path: PathBuf,
    },
    /// An image name that cannot be a file name.
    #[error(
        "invalid image name {0:?}: use letters, digits, '.', '_' and '-', not starting with '.'"
    )]
    BadName(String),
    /// `qemu-img` could not be run.
    #[error("cannot run qemu-img")]
    Spawn(#[source] std::io::Error),
    /// `qemu-img` failed.
    #[error("qemu-img {args} failed: {stderr}")]
    Tool {
        /// Its arguments (paths only; no secrets ever pass here).
        args: String,
        /// Its error output.
        stderr: String,
    },
    /// An existing disk whose encryption is not what the machine asks for.
    #[error("{path} is {}encrypted, but its machine asks for {} (disk_encryption in multiverse.toml); move the disk away to get a new one, or convert it with qemu-img", if *encrypted { "" } else { "not " }, if *encrypted { "a plain disk" } else { "LUKS" })]
    Encryption {
        /// The disk.
        path: PathBuf,
        /// Whether the file is encrypted.
        encrypted: bool,
    },
    /// The key file for `qemu-img` could not be written.
    #[error("cannot write the disk key for qemu-img to {path}")]
    KeyFile {
        /// The temporary key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: mv_core::fsutil::FsError,
    },
    /// `qemu-img info` printed something unexpected.
    #[error("cannot understand qemu-img info of {path}: {message}")]
    Info {
        /// The image.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A file operation failed.
    #[error("{action} {path}")]
    Fs {
        /// What was done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A file was created (or, in a dry run, would be).
    Created,
    /// A file was replaced by a new one.
    Replaced,
    /// Already as wanted.
    Unchanged,
}

/// What `qemu-img info` says about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// `qcow2`, `raw`, ...
    pub format: String,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// The backing file as written in the image, if any.
    pub backing: Option<String>,
    /// Whether the image is encrypted (qcow2 with LUKS inside).
    pub encrypted: bool,
}

/// Base image names become file names: no separators, no leading dot.
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

fn run(args: &[&std::ffi::OsStr]) -> Result<String, ImageError> {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .map_err(ImageError::Spawn)?;
    if !out.status.success() {
        return Err(ImageError::Tool {
            args: args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `qemu-img info` of an image.
pub fn info(path: &Path) -> Result<ImageInfo, ImageError> {
    // `-U` (force-share): reads the header of a disk a running machine holds locked too.
    let json = run(&[
        "info".as_ref(),
        "-U".as_ref(),
        "--output=json".as_ref(),
        path.as_os_str(),
    ])?;
    parse_info(path, &json)
}

/// Parses `qemu-img info --output=json`.
pub(crate) fn parse_info(path: &Path, json: &str) -> Result<ImageInfo, ImageError> {
    let bad = |message: String| ImageError::Info {
        path: path.to_path_buf(),
        message,
    };
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let format = v
        .get("format")
        .and_then(|f| f.as_str())
        .ok_or_else(|| bad("no \"format\"".into()))?
        .to_string();
    let virtual_size = v
        .get("virtual-size")
        .and_then(|s| s.as_u64())
        .ok_or_else(|| bad("no \"virtual-size\"".into()))?;
    let backing = v
        .get("backing-filename")
        .and_then(|b| b.as_str())
        .map(str::to_string);
    let encrypted = v
        .get("encrypted")
        .and_then(|e| e.as_bool())
        .unwrap_or(false);
    Ok(ImageInfo {
        format,
        virtual_size,
        backing,
        encrypted,
    })
}

fn tmp_path(target: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(target.file_name().unwrap_or_default());
    name.push(format!(".tmp{}", std::process::id()));
    target.with_file_name(name)
}

fn mkdir_parent(path: &Path) -> Result<(), ImageError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ImageError::Fs {
            action: "cannot create folder",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

fn rename(from: &Path, to: &Path) -> Result<(), ImageError> {
    std::fs::rename(from, to).map_err(|source| {
        let _ = std::fs::remove_file(from);
        ImageError::Fs {
            action: "cannot move into place",
            path: to.to_path_buf(),
            source,
        }
    })
}

/// Imports `file` as base image `name` into `images_dir` (`images/<name>.qcow2`).
pub fn import(
    file: &Path,
    images_dir: &Path,
    name: &str,
    dry_run: bool,
) -> Result<(Outcome, PathBuf), ImageError> {
    if !valid_name(name) {
        return Err(ImageError::BadName(name.to_string()));
    }
    std::fs::metadata(file).map_err(|source| ImageError::Source {
        path: file.to_path_buf(),
        source,
    })?;
    let target = images_dir.join(format!("{name}.qcow2"));
    if target.exists() {
        // `qemu-img compare` exits 0 for identical guest-visible content, 1 for different.
        return match run(&["compare".as_ref(), file.as_os_str(), target.as_os_str()]) {
            Ok(_) => Ok((Outcome::Unchanged, target)),
            Err(ImageError::Tool { .. }) => Err(ImageError::Exists {
                name: name.to_string(),
                path: target,
            }),
            Err(e) => Err(e),
        };
    }
    if dry_run {
        return Ok((Outcome::Created, target));
    }
    mkdir_parent(&target)?;
    let tmp = tmp_path(&target);
    let res = run(&[
        "convert".as_ref(),
        "-O".as_ref(),
        "qcow2".as_ref(),
        file.as_os_str(),
        tmp.as_os_str(),
    ]);
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    rename(&tmp, &target)?;
    Ok((Outcome::Created, target))
}

/// The overlay a machine's disk should be: on `base` (absolute), of `size_gib` (0: the base's size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlaySpec {
    /// The overlay file (`machines/<fqdn>/disk.qcow2`).
    pub path: PathBuf,
    /// The base image's name (for messages).
    pub base_name: String,
    /// The base image file (`images/<base>.qcow2`).
    pub base: PathBuf,
    /// Virtual size in GiB; 0 keeps the base's size.
    pub size_gib: u32,
    /// The LUKS passphrase when the overlay is encrypted (QEMU's LUKS inside the qcow2): see
    /// [`disk_passphrase`].
    pub luks: Option<SecretBytes>,
}

/// The passphrase of an encrypted disk made from its key: the key's lowercase hex. QEMU takes a
/// LUKS passphrase only as UTF-8 (`Data from secret ... is not valid UTF-8`), and the libvirt
/// secret holds the same bytes, so from the words alone: `xxd -p -c 256 luks.key` of the
/// identity's exported `luks.key`.
pub fn disk_passphrase(key: &SecretBytes) -> SecretBytes {
    mv_core::secret::hex_lower(key)
}

/// The QEMU secret object's id on `qemu-img`'s command line (a name, not the key).
const KEY_ID: &str = "mvkey0";

/// A key in a 0600 file for `qemu-img --object secret,file=...`: in `/dev/shm` (memory) when it
/// exists, else the temporary folder; overwritten with zeros and removed on drop.
pub(crate) struct KeyFile {
    path: PathBuf,
    len: usize,
}

impl KeyFile {
    /// Writes `key` to a new file with a random name.
    pub(crate) fn new(key: &SecretBytes) -> Result<KeyFile, ImageError> {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let mut rnd = [0u8; 12];
        getrandom(&mut rnd);
        // The pid too: two runs never share a name, even if /dev/urandom could not be read.
        let path = dir.join(format!(
            ".mv-disk-key-{}-{}",
            std::process::id(),
            hex::encode(rnd)
        ));
        mv_core::fsutil::write_secret(&path, key.expose()).map_err(|source| {
            ImageError::KeyFile {
                path: path.clone(),
                source,
            }
        })?;
        Ok(KeyFile {
            path,
            len: key.expose().len(),
        })
    }

    /// `secret,id=ID,file=PATH,format=raw`: the `--object` argument naming this file.
    pub(crate) fn object(&self, id: &str) -> std::ffi::OsString {
        let mut o = std::ffi::OsString::from(format!("secret,id={id},format=raw,file="));
        o.push(self.path.as_os_str());
        o
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&self.path) {
            use std::io::Write;
            let _ = f.write_all(&vec![0u8; self.len]);
            let _ = f.sync_all();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Random bytes for a file name, from the kernel.
fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(buf);
    }
}

fn check_base(spec: &OverlaySpec) -> Result<PathBuf, ImageError> {
    if !spec.base.is_file() {
        return Err(ImageError::MissingBase {
            name: spec.base_name.clone(),
            path: spec.base.clone(),
        });
    }
    spec.base.canonicalize().map_err(|source| ImageError::Fs {
        action: "cannot resolve",
        path: spec.base.clone(),
        source,
    })
}

fn create(spec: &OverlaySpec, base: &Path) -> Result<(), ImageError> {
    mkdir_parent(&spec.path)?;
    let base_info = info(base)?;
    let tmp = tmp_path(&spec.path);
    let size = format!("{}G", spec.size_gib);
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-F".as_ref(),
        base_info.format.as_ref(),
        "-b".as_ref(),
        base.as_os_str(),
        tmp.as_os_str(),
    ];
    let key = spec.luks.as_ref().map(KeyFile::new).transpose()?;
    let object = key.as_ref().map(|k| k.object(KEY_ID));
    let opts = format!("encrypt.format=luks,encrypt.key-secret={KEY_ID},encrypt.iter-time=10");
    if let Some(object) = &object {
        args.splice(
            2..2,
            [
                "--object".as_ref(),
                object.as_os_str(),
                "-o".as_ref(),
                opts.as_ref(),
            ],
        );
    }
    if spec.size_gib > 0 && u64::from(spec.size_gib) << 30 > base_info.virtual_size {
        args.push(size.as_ref());
    }
    if let Err(e) = run(&args) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    rename(&tmp, &spec.path)
}

/// Creates the overlay unless it exists. An existing file is kept as it is (a service VM's disk
/// holds its state), whatever its backing file.
pub(crate) fn ensure_overlay(spec: &OverlaySpec, dry_run: bool) -> Result<Outcome, ImageError> {
    if spec.path.exists() {
        // Kept, but only if it is what the machine can open: QEMU fails late and obscurely on
        // a plain disk given a key, or an encrypted one without.
        let encrypted = info(&spec.path)?.encrypted;
        if encrypted != spec.luks.is_some() {
            return Err(ImageError::Encryption {
                path: spec.path.clone(),
                encrypted,
            });
        }
        return Ok(Outcome::Unchanged);
    }
    let base = check_base(spec)?;
    if !dry_run {
        create(spec, &base)?;
    }
    Ok(Outcome::Created)
}

/// Replaces the overlay with an empty one on its base (an application VM's throw-away disk).
pub(crate) fn fresh_overlay(spec: &OverlaySpec, dry_run: bool) -> Result<Outcome, ImageError> {
    let base = check_base(spec)?;
    let existed = spec.path.exists();
    if !dry_run {
        // create() renames over the old file: the old disk is replaced in one step.
        create(spec, &base)?;
    }
    Ok(if existed {
        Outcome::Replaced
    } else {
        Outcome::Created
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("debian-12.qcow"));
        assert!(!valid_name(".x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
    }

    #[test]
    fn parses_info() {
        let i = parse_info(
            Path::new("x"),
            r#"{"format":"qcow2","virtual-size":2097152,"backing-filename":"/i/b.qcow2"}"#,
        )
        .unwrap();
        assert_eq!(i.format, "qcow2");
        assert_eq!(i.virtual_size, 2097152);
        assert_eq!(i.backing.as_deref(), Some("/i/b.qcow2"));
        assert!(parse_info(Path::new("x"), "{}").is_err());
        assert!(parse_info(Path::new("x"), "nope").is_err());
    }

    #[cfg(feature = "system-tests")] // runs a real tool
    #[test]
    fn import_overlay_fresh_with_real_qemu_img() {
        mv_testkit::require_tool("qemu-img");
        let d = tempfile::tempdir().unwrap();
        let raw = d.path().join("src.raw");
        std::fs::write(&raw, vec![7u8; 1 << 20]).unwrap();
        let images = d.path().join("images");
        let (o, path) = import(&raw, &images, "base", false).unwrap();
        assert_eq!(o, Outcome::Created);
        assert_eq!(info(&path).unwrap().format, "qcow2");
        // Same content again: unchanged. Other content: refused.
        assert_eq!(
            import(&raw, &images, "base", false).unwrap().0,
            Outcome::Unchanged
        );
        let other = d.path().join("other.raw");
        std::fs::write(&other, vec![8u8; 1 << 20]).unwrap();
        assert!(matches!(
            import(&other, &images, "base", false),
            Err(ImageError::Exists { .. })
        ));
        assert!(matches!(
            import(&d.path().join("nope"), &images, "x", false),
            Err(ImageError::Source { .. })
        ));

        let spec = OverlaySpec {
            path: d.path().join("machines/m/disk.qcow2"),
            base_name: "base".into(),
            base: path.clone(),
            size_gib: 1,
            luks: None,
        };
        assert_eq!(ensure_overlay(&spec, true).unwrap(), Outcome::Created);
        assert!(!spec.path.exists());
        assert_eq!(ensure_overlay(&spec, false).unwrap(), Outcome::Created);
        let i = info(&spec.path).unwrap();
        assert_eq!(
            i.backing.as_deref(),
            Some(path.canonicalize().unwrap().to_str().unwrap())
        );
        assert_eq!(i.virtual_size, 1 << 30);
        assert_eq!(ensure_overlay(&spec, false).unwrap(), Outcome::Unchanged);

        // Throw-away: a fresh overlay drops what the guest wrote.
        run(&["resize".as_ref(), spec.path.as_os_str(), "2G".as_ref()]).unwrap();
        assert_eq!(fresh_overlay(&spec, false).unwrap(), Outcome::Replaced);
        assert_eq!(info(&spec.path).unwrap().virtual_size, 1 << 30);

        let missing = OverlaySpec {
            base: images.join("gone.qcow2"),
            base_name: "gone".into(),
            ..spec.clone()
        };
        let err = ensure_overlay(
            &OverlaySpec {
                path: d.path().join("machines/n/disk.qcow2"),
                ..missing
            },
            false,
        )
        .unwrap_err();
        assert!(matches!(err, ImageError::MissingBase { .. }), "{err}");
        assert!(err.to_string().contains("gone.qcow2"));
        assert!(!d.path().join("machines/n").exists());
    }

    #[cfg(feature = "system-tests")]
    /// `qemu-img check` of an encrypted overlay opened with `key` (through a key file, as QEMU
    /// gets it).
    fn check_with_key(path: &Path, key: &[u8]) -> Result<String, ImageError> {
        let k = KeyFile::new(&SecretBytes::new(key.to_vec())).unwrap();
        let opts = format!(
            "driver=qcow2,file.filename={},encrypt.key-secret={KEY_ID}",
            path.display()
        );
        run(&[
            "check".as_ref(),
            "--object".as_ref(),
            k.object(KEY_ID).as_os_str(),
            "--image-opts".as_ref(),
            opts.as_ref(),
        ])
    }

    #[cfg(feature = "system-tests")] // runs a real tool
    #[test]
    fn encrypted_overlay_with_real_qemu_img() {
        mv_testkit::require_tool("qemu-img");
        let d = tempfile::tempdir().unwrap();
        let raw = d.path().join("src.raw");
        std::fs::write(&raw, vec![7u8; 1 << 20]).unwrap();
        let (_, base) = import(&raw, &d.path().join("images"), "base", false).unwrap();
        let key: Vec<u8> = (0u8..64).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        let spec = OverlaySpec {
            path: d.path().join("machines/c/disk.qcow2"),
            base_name: "base".into(),
            base: base.clone(),
            size_gib: 1,
            luks: Some(disk_passphrase(&SecretBytes::new(key.clone()))),
        };
        let keys_before = key_files();
        let started = std::time::Instant::now();
        assert_eq!(ensure_overlay(&spec, false).unwrap(), Outcome::Created);
        eprintln!(
            "encrypted overlay created in {} ms",
            started.elapsed().as_millis()
        );
        assert_eq!(key_files(), keys_before, "the key file is gone");
        let i = info(&spec.path).unwrap();
        assert!(i.encrypted, "{i:?}");
        assert_eq!(i.virtual_size, 1 << 30);
        assert_eq!(
            i.backing.as_deref(),
            Some(base.canonicalize().unwrap().to_str().unwrap())
        );
        // The text form people read says so too.
        let text = run(&["info".as_ref(), spec.path.as_os_str()]).unwrap();
        assert!(text.contains("encrypted: yes"), "{text}");
        // The key opens it; another key does not.
        let started = std::time::Instant::now();
        let pass = disk_passphrase(&SecretBytes::new(key.clone()));
        assert_eq!(pass.expose().len(), 128);
        assert_eq!(&pass.expose()[..4], hex::encode(&key[..2]).as_bytes());
        check_with_key(&spec.path, pass.expose()).unwrap();
        eprintln!(
            "qemu-img check with the key: {} ms",
            started.elapsed().as_millis()
        );
        let mut wrong = pass.expose().clone();
        wrong[0] ^= 1;
        let e = check_with_key(&spec.path, &wrong).unwrap_err().to_string();
        assert!(
            e.contains("Invalid password") || e.contains("keyslot"),
            "{e}"
        );
        // A second run keeps it; a run without the key refuses it, naming it.
        assert_eq!(ensure_overlay(&spec, false).unwrap(), Outcome::Unchanged);
        let plain = OverlaySpec {
            luks: None,
            ..spec.clone()
        };
        let e = ensure_overlay(&plain, false).unwrap_err();
        assert!(
            matches!(
                e,
                ImageError::Encryption {
                    encrypted: true,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("disk.qcow2 is encrypted"), "{e}");
        // And the other way round: a plain disk where LUKS is asked for.
        let p = OverlaySpec {
            path: d.path().join("machines/p/disk.qcow2"),
            luks: None,
            ..spec.clone()
        };
        ensure_overlay(&p, false).unwrap();
        let e = ensure_overlay(
            &OverlaySpec {
                luks: spec.luks.clone(),
                ..p
            },
            false,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("is not encrypted, but its machine asks for LUKS"),
            "{e}"
        );
        // Throw-away overlays of an encrypted machine are encrypted too.
        assert_eq!(fresh_overlay(&spec, false).unwrap(), Outcome::Replaced);
        assert!(info(&spec.path).unwrap().encrypted);
        check_with_key(&spec.path, pass.expose()).unwrap();
    }

    #[cfg(feature = "system-tests")]
    fn key_files() -> Vec<PathBuf> {
        let dir = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                // This process's only: other tests may be making disks at the same time.
                p.to_string_lossy()
                    .contains(&format!(".mv-disk-key-{}-", std::process::id()))
            })
            .collect();
        v.sort();
        v
    }
}
