//! The udev-only kill switch rule: golden file and `udevadm verify`.
#![allow(clippy::unwrap_used)]

fn rule() -> String {
    mv_guard::kill_switch_rule(
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
        &mv_guard::kill_switch_rule(
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

fn insert_rule() -> String {
    mv_guard::kill_switch_rule_on(
        &"1050:0407:CC0123456".parse().unwrap(),
        mv_guard::token::Trigger::Insert,
        "/usr/local/bin/multiverse",
        "/var/multiverse",
    )
}

#[test]
fn insert_rule_matches_golden_and_passes_udevadm_verify() {
    mv_testkit::golden(
        "crates/mv-guard/tests/golden/85-multiverse-killswitch-insert.rules",
        &insert_rule(),
    );
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("85-multiverse-killswitch.rules");
    let any = mv_guard::kill_switch_rule_on(
        &"CC0123456".parse().unwrap(),
        mv_guard::token::Trigger::Any,
        "/usr/local/bin/multiverse",
        "/var/multiverse",
    );
    std::fs::write(&p, insert_rule() + &any).unwrap();
    mv_testkit::assert_udevadm_accepts(&[&p]);
}
