//! The generated rules: golden file, and `udevadm verify` where the installed udev has it.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn host_rules_match_golden() {
    mv_testkit::golden(
        "crates/mv-host/tests/golden/70-multiverse-host.rules",
        &mv_host::host_rules("kvm"),
    );
}

#[test]
fn host_rules_pass_udevadm_verify() {
    let udevadm = mv_testkit::require_tool("udevadm");
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(mv_host::HOST_RULES_FILE);
    std::fs::write(&p, mv_host::host_rules("kvm")).unwrap();
    let help = Command::new(&udevadm).arg("--help").output().unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("verify"),
        "this udevadm has no `verify` (systemd >= 254 has it)"
    );
    mv_testkit::assert_udevadm_accepts(&[&p]);
    // And it does catch a broken rule (the check can fail).
    std::fs::write(&p, "KERNEL==\"kvm\", GROUP=\"kvm\" MODE=\"0660\"\n").unwrap();
    assert!(!mv_testkit::udevadm_verify(&[&p]).status.success());
}
