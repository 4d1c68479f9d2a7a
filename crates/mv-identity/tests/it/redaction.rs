//! Secrets never reach `Debug` output: for every builder, the `{:?}` text of what it returns must
//! not contain the secret in any of the encodings a log line might show (hex, base64, the text).
#![allow(clippy::unwrap_used)]

use mv_core::IdentityName;
use mv_identity::{Purpose, Root};

fn encodings(secret: &[u8]) -> Vec<String> {
    use data_encoding::{BASE64, BASE64_NOPAD, HEXLOWER, HEXUPPER};
    let mut v = vec![
        HEXLOWER.encode(secret),
        HEXUPPER.encode(secret),
        BASE64.encode(secret),
        BASE64_NOPAD.encode(secret),
        // Rust's own `{:?}` of a byte slice, as a derived Debug would print it.
        format!("{secret:?}").trim_matches(['[', ']']).to_string(),
    ];
    if let Ok(s) = std::str::from_utf8(secret) {
        v.push(s.to_string());
    }
    v
}

fn assert_redacted(what: &str, debug: &str, secret: &[u8]) {
    for e in encodings(secret) {
        // Only long encodings are meaningful (a short one could match by chance).
        if e.len() >= 16 {
            assert!(
                !debug.contains(&e),
                "{what}: Debug output shows the secret: {debug}"
            );
        }
    }
}

#[test]
fn debug_output_never_shows_secrets() {
    let root = Root::from_bytes([0x5a; 32]);
    let name = IdentityName::parse("universe.router.multiverse").unwrap();
    assert_eq!(format!("{root:?}"), "Root([REDACTED])");
    assert_redacted("root", &format!("{root:?}"), root.expose_bytes());

    for p in Purpose::ALL {
        let d = root.derive_default(p, &name);
        assert_eq!(format!("{d:?}"), "Secret([REDACTED])");
    }
    let pw = root.password(&name);
    assert_redacted("password", &format!("{pw:?}"), pw.expose().as_bytes());
    let luks = root.luks_key(&name);
    assert_redacted("luks", &format!("{luks:?}"), luks.expose());
    let words = root.mnemonic();
    assert_redacted("mnemonic", &format!("{words:?}"), words.expose().as_bytes());

    let onion = root.onion_v3(&name);
    assert_redacted(
        "onion",
        &format!("{onion:?}"),
        &onion.secret_file.expose()[32..],
    );

    let seed = root.derive_default(Purpose::SshEd25519, &name);
    let key = root.ssh_ed25519(&name).unwrap();
    assert_redacted("ssh-ed25519", &format!("{key:?}"), seed.expose());
    let host_seed = root.derive_default(Purpose::SshHostEd25519, &name);
    let host = root.ssh_host_ed25519(&name).unwrap();
    assert_redacted("ssh-host-ed25519", &format!("{host:?}"), host_seed.expose());
    let ecdsa = root.ssh_ecdsa_p256(&name).unwrap();
    let d = ecdsa
        .key_data()
        .ecdsa()
        .unwrap()
        .private_key_bytes()
        .to_vec();
    assert_redacted("ssh-ecdsa-p256", &format!("{ecdsa:?}"), &d);

    let pgp_seed = root.derive_default(Purpose::OpenpgpEd25519, &name);
    let pgp = root.openpgp(&name).unwrap();
    assert_redacted("openpgp", &format!("{pgp:?}"), pgp_seed.expose());
}
