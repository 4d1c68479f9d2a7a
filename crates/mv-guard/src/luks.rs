//! The cryptsetup command lines that enrol and use a hidden key.
//!
//! Keys never go on argv: the new key and the unlocking key reach cryptsetup on its stdin
//! (`--key-file -` / the `-` new-key file), the existing passphrase through a file named on argv.
//! The functions return the argv so that callers can show it (dry-run) or run it, and tests can
//! assert it where a real run is impossible (`open` needs device-mapper).

use mv_core::secret::SecretBytes;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Why a cryptsetup call failed.
#[derive(Debug, thiserror::Error)]
pub enum LuksError {
    /// cryptsetup could not start.
    #[error("cannot run cryptsetup")]
    Spawn(#[source] std::io::Error),
    /// cryptsetup refused.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Exit status.
        status: std::process::ExitStatus,
        /// What cryptsetup said.
        stderr: String,
    },
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `cryptsetup luksAddKey`: the new key on stdin, the existing one from a file. `fast_slot`
/// gives the new keyslot PBKDF2 with 1 000 iterations: right for a random 64-byte key (nothing to
/// stretch, and the initramfs unlocks at once), wrong for anything a person chose.
pub fn add_key_argv(device: &Path, existing_key_file: &Path, fast_slot: bool) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "cryptsetup".into(),
        "luksAddKey".into(),
        "--batch-mode".into(),
    ];
    if fast_slot {
        v.extend([
            "--pbkdf".into(),
            "pbkdf2".into(),
            "--pbkdf-force-iterations".into(),
            "1000".into(),
        ]);
    }
    v.extend([
        "--key-file".into(),
        s(existing_key_file),
        s(device),
        "-".into(),
    ]);
    v
}

/// `cryptsetup open --test-passphrase`: checks a key (on stdin) without device-mapper.
pub fn test_argv(device: &Path) -> Vec<String> {
    vec![
        "cryptsetup".into(),
        "open".into(),
        "--test-passphrase".into(),
        "--key-file".into(),
        "-".into(),
        s(device),
    ]
}

/// `cryptsetup open`: maps the device as `/dev/mapper/<name>` with the key on stdin.
pub fn open_argv(device: &Path, name: &str) -> Vec<String> {
    vec![
        "cryptsetup".into(),
        "open".into(),
        "--key-file".into(),
        "-".into(),
        s(device),
        name.into(),
    ]
}

/// Runs an argv with `key` on stdin.
pub fn run_with_key(argv: &[String], key: &SecretBytes) -> Result<(), LuksError> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| LuksError::Spawn(std::io::ErrorKind::InvalidInput.into()))?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(LuksError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A refusal before reading stdin shows up as the exit status below.
        let _ = stdin.write_all(key.expose());
    }
    let out = child.wait_with_output().map_err(LuksError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LuksError::Failed {
            cmd: argv.join(" "),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Whether `key` already opens `device`.
pub fn key_opens(device: &Path, key: &SecretBytes) -> Result<bool, LuksError> {
    match run_with_key(&test_argv(device), key) {
        Ok(()) => Ok(true),
        // cryptsetup exits 2 for "no key available with this passphrase".
        Err(LuksError::Failed { status, .. }) if status.code() == Some(2) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_never_holds_a_key() {
        let d = Path::new("/dev/sda2");
        assert_eq!(
            add_key_argv(d, Path::new("/root/old.key"), true).join(" "),
            "cryptsetup luksAddKey --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file /root/old.key /dev/sda2 -"
        );
        assert_eq!(
            open_argv(d, "cryptroot").join(" "),
            "cryptsetup open --key-file - /dev/sda2 cryptroot"
        );
        assert_eq!(
            test_argv(d).join(" "),
            "cryptsetup open --test-passphrase --key-file - /dev/sda2"
        );
    }
}
