//! The derived OpenPGP key against gpg, both directions through rpgp (the library the key is built
//! with): gpg verifies a signature we made with the derived key, and we decrypt a message gpg
//! encrypted to the derived key. (The CLI test crates/multiverse/tests/identity.rs covers gpg
//! importing the exported secret key, its fingerprint, and gpg decrypting with it.)
#![allow(clippy::unwrap_used)]

use mv_core::IdentityName;
use mv_identity::pgp::composed::{ArmorOptions, DetachedSignature, Message};
use mv_identity::pgp::crypto::hash::HashAlgorithm;
use mv_identity::pgp::types::Password;
use mv_identity::Root;
use mv_testkit::run_ok;

#[test]
fn gpg_verifies_our_signature_and_we_decrypt_what_gpg_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    // gpg's agent for this home is stopped when `home` drops.
    let home = mv_testkit::gnupg::Home::new(&dir.path().join("gnupg"));
    let g = || home.gpg();

    let root = Root::from_bytes(core::array::from_fn(|i| i as u8));
    let name = IdentityName::parse("universe.router.multiverse").unwrap();
    let key = root.openpgp(&name).unwrap();
    let public = key
        .to_public_key()
        .to_armored_string(ArmorOptions::default())
        .unwrap();
    let pubfile = dir.path().join("public.asc");
    std::fs::write(&pubfile, public).unwrap();
    run_ok(g().arg("--import").arg(&pubfile));

    // A detached signature made by us, verified by gpg.
    let data = b"signed by a key derived from 24 words\n";
    let sig = DetachedSignature::sign_binary_data(
        rand::thread_rng(),
        &key.primary_key,
        &Password::empty(),
        HashAlgorithm::Sha256,
        &data[..],
    )
    .unwrap();
    let sigfile = dir.path().join("data.sig");
    let datafile = dir.path().join("data");
    std::fs::write(&datafile, data).unwrap();
    std::fs::write(
        &sigfile,
        sig.to_armored_string(ArmorOptions::default()).unwrap(),
    )
    .unwrap();
    let out = g()
        .args(["--status-fd", "1", "--verify"])
        .arg(&sigfile)
        .arg(&datafile)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{status}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        status.contains("[GNUPG:] VALIDSIG 90D54FABBDC2BF5C0557AE633041AE0BDB9C30A1"),
        "{status}"
    );
    // A changed byte fails.
    std::fs::write(&datafile, b"signed by someone else\n").unwrap();
    assert!(!g()
        .arg("--verify")
        .arg(&sigfile)
        .arg(&datafile)
        .status()
        .unwrap()
        .success());

    // gpg encrypts to the derived key; we decrypt with the derived secret subkey.
    let msgfile = dir.path().join("msg.txt");
    std::fs::write(&msgfile, "for the derived subkey\n").unwrap();
    let ct = run_ok(
        g().args(["--trust-model", "always", "--armor", "--recipient"])
            .arg("90D54FABBDC2BF5C0557AE633041AE0BDB9C30A1")
            .arg("--output")
            .arg("-")
            .arg("--encrypt")
            .arg(&msgfile),
    );
    let (msg, _) = Message::from_string(&ct).unwrap();
    let mut dec = msg.decrypt(&Password::empty(), &key).unwrap();
    // gpg compresses by default (ZLIB, the first of our preferences).
    if dec.is_compressed() {
        dec = dec.decompress().unwrap();
    }
    assert_eq!(dec.as_data_vec().unwrap(), b"for the derived subkey\n");
}
