//! `guard-emit`, the test tool that was `multiverse guard emit`: it refuses the caller's own
//! network namespace, where udevd and every other listener would act on the event.

use std::process::{Command, Output};

fn emit(netns: &str, product: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_guard-emit"))
        .args(["--netns", netns, "--action", "remove"])
        .args(["--devpath", "/devices/none", "--product", product])
        .output()
        .unwrap()
}

#[test]
fn emit_refuses_the_caller_s_own_network_namespace() {
    let o = emit("/proc/self/ns/net", "1050:0407");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("not another network namespace"));
}

#[test]
fn emit_refuses_a_bad_product() {
    let o = emit("/proc/1/ns/net", "yubikey");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("VID:PID in hex"));
}
