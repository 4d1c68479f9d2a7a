//! Container stability: a fixed input sealed with a fixed salt and nonce must give the committed
//! bytes forever (a change here means files sealed by older builds may no longer open), and the
//! committed bytes must open with the committed passphrase.
#![allow(clippy::unwrap_used)]

use mv_seal::{open, parse, seal_with, KdfParams};

fn vector() -> Vec<u8> {
    let params = KdfParams::new(64, 2, 1).unwrap();
    let salt: [u8; 16] = core::array::from_fn(|i| i as u8);
    let nonce: [u8; 24] = core::array::from_fn(|i| 0xa0 + i as u8);
    seal_with(
        b"multiverse sealed container v1",
        b"correct horse",
        params,
        salt,
        nonce,
    )
}

#[test]
fn container_v1_is_stable() {
    let hex: String = vector().iter().map(|b| format!("{b:02x}")).collect();
    mv_testkit::golden(
        "crates/mv-seal/tests/vectors/container-v1.hex",
        &(hex + "\n"),
    );
}

#[test]
fn committed_vector_opens() {
    let path = mv_testkit::workspace_root().join("crates/mv-seal/tests/vectors/container-v1.hex");
    let text = std::fs::read_to_string(path).unwrap();
    let bytes: Vec<u8> = (0..text.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text.trim()[i..i + 2], 16).unwrap())
        .collect();
    let p = parse(&bytes).unwrap();
    assert_eq!(p.params, KdfParams::new(64, 2, 1).unwrap());
    assert_eq!(
        open(&bytes, b"correct horse").unwrap().expose(),
        b"multiverse sealed container v1"
    );
}
