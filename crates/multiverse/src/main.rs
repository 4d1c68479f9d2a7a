//! `multiverse`: the command-line front end of Multiverse OS.
//!
//! This binary only wires: it runs the `multiverse` library's program ([`cli::main`]: parse, run,
//! map errors to exit codes and hints) and, for the libvirt subcommands, execs `multiverse-virt`.
//! Every subcommand lives in the library (`multiverse::cmd`); the work itself is done by the `mv-*`
//! crates (see ARCHITECTURE.md).
//!
//! It does not link libvirt, so that it starts in about a millisecond (`multiverse pass show` is
//! meant to beat `pass show`): the libvirt subcommands (`up`, `down`, `status`, `backup`,
//! `restore`, `image`, `migrate`, `console`, `rebuild`) are parsed here, then run by the sibling binary
//! `multiverse-virt` (its own package, which alone depends on libvirt), which this one execs with
//! the same arguments (docs/cli.md).
//!
//! Exit codes: 0 success, 1 failure, 2 usage or bad input (a malformed config, a bad name, ...).
#![forbid(unsafe_code)]

use multiverse::error::CliError;
use multiverse::{cli, secret_input};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The binary that runs the libvirt subcommands.
const VIRT_BIN: &str = "multiverse-virt";

fn main() -> std::process::ExitCode {
    cli::main(|_, _| exec_virt())
}

/// Replaces this process with `multiverse-virt` and the same arguments (argv[0] included, so
/// usage lines still say `multiverse`); returns only on error.
fn exec_virt() -> Result<(), CliError> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().ok();
    let virt = locate(exe.as_deref(), std::env::var_os("PATH").as_deref()).ok_or_else(|| {
        CliError::failure_msg(format!(
            "this command needs `{VIRT_BIN}` (the part of multiverse that links libvirt), \
             found neither next to {} nor on PATH",
            exe.as_deref()
                .map_or_else(|| "this program".to_string(), |e| e.display().to_string())
        ))
        .with_hint(&format!(
            "install {VIRT_BIN} beside multiverse (`cargo build -p {VIRT_BIN}` builds it)"
        ))
    })?;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "multiverse".into());
    let mut cmd = std::process::Command::new(&virt);
    cmd.arg0(arg0).args(args);
    // `main` took the passphrase out of the environment; `multiverse-virt` is this program, the
    // one exec that gets it back (and takes it out of its own environment in turn).
    if let Some(p) = secret_input::env_passphrase() {
        cmd.env(secret_input::PASSPHRASE_ENV, p.expose());
    }
    let err = cmd.exec();
    Err(CliError::failure(
        anyhow::Error::new(err).context(format!("cannot run {}", virt.display())),
    ))
}

/// Where `multiverse-virt` is: next to this executable (`exe`), else the first executable of that
/// name in the directories of `path` (empty entries, which would mean the current directory,
/// are skipped).
fn locate(exe: Option<&Path>, path: Option<&OsStr>) -> Option<PathBuf> {
    let beside = exe.and_then(Path::parent).map(|d| d.join(VIRT_BIN));
    let on_path = path
        .into_iter()
        .flat_map(std::env::split_paths)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(VIRT_BIN));
    beside.into_iter().chain(on_path).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn make(dir: &Path, mode: u32) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(VIRT_BIN);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn prefers_the_sibling_of_the_executable() {
        let t = tempfile::tempdir().unwrap();
        let sibling = make(&t.path().join("bin"), 0o755);
        make(&t.path().join("path"), 0o755);
        let path = std::env::join_paths([t.path().join("path")]).unwrap();
        let exe = t.path().join("bin/multiverse");
        assert_eq!(locate(Some(&exe), Some(&path)), Some(sibling));
    }

    #[test]
    fn falls_back_to_path_and_skips_non_executables() {
        let t = tempfile::tempdir().unwrap();
        make(&t.path().join("bin"), 0o644);
        make(&t.path().join("a"), 0o600);
        let on_path = make(&t.path().join("b"), 0o755);
        let path = std::env::join_paths([t.path().join("a"), t.path().join("b")]).unwrap();
        let exe = t.path().join("bin/multiverse");
        assert_eq!(locate(Some(&exe), Some(&path)), Some(on_path));
    }

    #[test]
    fn none_when_missing_everywhere() {
        let t = tempfile::tempdir().unwrap();
        let path = std::env::join_paths([t.path().join("nope"), PathBuf::new()]).unwrap();
        assert_eq!(
            locate(Some(&t.path().join("multiverse")), Some(&path)),
            None
        );
        assert_eq!(locate(None, None), None);
    }
}
