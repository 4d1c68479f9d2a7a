//! The `multiverse-virt` binary itself, hermetically (no libvirtd: every case stops before
//! connecting). The libvirt subcommands are tested end to end through `multiverse`, which execs
//! this binary, in `crates/multiverse/tests/` (libvirt, migrate, genesis...). Being an integration
//! test, this file also makes `cargo test --workspace` build the binary beside `multiverse`.
#![allow(clippy::unwrap_used)]

use std::process::Command;

const VIRT: &str = env!("CARGO_BIN_EXE_multiverse-virt");

fn virt() -> Command {
    let mut c = Command::new(VIRT);
    c.env_remove("MULTIVERSE_ROOT")
        .env_remove("MULTIVERSE_CONNECT")
        .env_remove("MULTIVERSE_LOG");
    c
}

#[test]
fn parses_the_command_line_of_multiverse() {
    let out = virt().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("multiverse {}", env!("CARGO_PKG_VERSION"))
    );
    let out = virt().args(["up", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--no-provision"), "{help}");
}

#[test]
fn a_tree_without_multiverse_toml_is_a_usage_error_before_libvirt() {
    let t = tempfile::tempdir().unwrap();
    for cmd in ["status", "up", "down", "console"] {
        let mut c = virt();
        c.arg("--root").arg(t.path()).arg(cmd);
        if cmd == "console" {
            c.arg("web.multiverse");
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains("multiverse.toml"), "{cmd}: {err}");
        assert!(err.contains("hint: fix "), "{cmd}: {err}");
    }
}
