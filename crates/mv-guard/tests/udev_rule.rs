//! The udev-only kill switch rule: golden file and `udevadm verify`.
#![allow(clippy::unwrap_used)]

fn rule() -> String {
    mv_guard::udev::kill_switch_rule(
        &"1050:0407:CC0123456".parse().unwrap(),
        "/usr/local/bin/multiverse",
        "/var/multiverse",
    )
}

#[test]
fn rule_matches_golden() {
    mv_testkit::golden(
        "crates/mv-guard/tests/golden/85-multiverse-killswitch.rules",
        &rule(),
    );
    mv_testkit::golden(
        "crates/mv-guard/tests/golden/85-multiverse-killswitch-serial.rules",
        &mv_guard::udev::kill_switch_rule(
            &"CC0123456".parse().unwrap(),
            "/usr/local/bin/multiverse",
            "/var/multiverse",
        ),
    );
}

#[test]
fn rule_passes_udevadm_verify() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("85-multiverse-killswitch.rules");
    std::fs::write(&p, rule()).unwrap();
    mv_testkit::assert_udevadm_accepts(&[&p]);
}
