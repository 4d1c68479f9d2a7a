//! `guard-emit`, the test tool that was `multiverse guard emit`: it refuses the caller's own
//! network namespace, where udevd and every other listener would act on the event.

use std::process::Command;

#[test]
fn emit_refuses_the_caller_s_own_network_namespace() {
    let o = Command::new(env!("CARGO_BIN_EXE_guard-emit"))
        .args([
            "--netns",
            "/proc/self/ns/net",
            "--action",
            "remove",
            "--devpath",
            "/devices/none",
            "--product",
            "1050:0407",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("not another network namespace"));
}

#[test]
fn emit_refuses_a_bad_product() {
    let o = Command::new(env!("CARGO_BIN_EXE_guard-emit"))
        .args([
            "--netns",
            "/proc/1/ns/net",
            "--action",
            "remove",
            "--devpath",
            "/devices/none",
            "--product",
            "yubikey",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("VID:PID in hex"));
}
