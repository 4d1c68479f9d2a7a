//! The shipped boot hooks and udev files: shell syntax (dash, as in an initramfs) and agreement
//! with the generators.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn boot_scripts_parse_with_dash() {
    let dash = mv_testkit::require_tool("dash");
    let root = mv_testkit::workspace_root();
    for f in [
        "contrib/initramfs-tools/hooks/multiverse-guard",
        "contrib/initramfs-tools/scripts/local-top/multiverse-guard",
        "contrib/mkinitfs/multiverse-guard-unlock",
    ] {
        let out = Command::new(&dash)
            .arg("-n")
            .arg(root.join(f))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        // The key and the passphrase never go on a command line in the scripts (a passphrase
        // file on a pipe, `--passphrase-file /dev/stdin`, is where it may come from).
        assert!(
            !text.contains("--passphrase ")
                && !text.contains("--passphrase=")
                && !text.contains("MULTIVERSE_PASSPHRASE"),
            "{f}"
        );
        assert!(
            f.contains("hooks/") || text.contains("guard unlock --token-dir"),
            "{f}"
        );
    }
}

#[test]
fn shipped_kill_switch_rule_is_the_generated_one() {
    let root = mv_testkit::workspace_root();
    let shipped =
        std::fs::read_to_string(root.join("contrib/udev/85-multiverse-killswitch.rules.example"))
            .unwrap();
    let generated = mv_guard::kill_switch_rule(
        &"1050:0407:CHANGEME".parse().unwrap(),
        "/usr/local/bin/multiverse",
        "/var/multiverse",
    );
    assert_eq!(shipped, generated);
}

#[test]
fn shipped_insert_rule_is_the_generated_one() {
    let root = mv_testkit::workspace_root();
    let shipped = std::fs::read_to_string(
        root.join("contrib/udev/85-multiverse-killswitch-insert.rules.example"),
    )
    .unwrap();
    let generated = mv_guard::kill_switch_rule_on(
        &"1050:0407:CHANGEME".parse().unwrap(),
        mv_guard::token::Trigger::Insert,
        "/usr/local/bin/multiverse",
        "/var/multiverse",
    );
    assert_eq!(shipped, generated);
}
