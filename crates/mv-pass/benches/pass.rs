//! In-process costs of the store: decrypting one entry, and `grep` over 200 entries (parallel).
//! The side-by-side comparison with `pass` is bench/pass.sh.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use mv_pass::{EntryName, Keyring, Store};
use pgp::composed::{EncryptionCaps, KeyType, SecretKeyParamsBuilder, SubkeyParamsBuilder};
use pgp::crypto::ecc_curve::ECCCurve;

fn bench(c: &mut Criterion) {
    let mut enc = SubkeyParamsBuilder::default();
    enc.key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy))
        .can_encrypt(EncryptionCaps::All);
    let mut p = SecretKeyParamsBuilder::default();
    p.key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id("Bench <bench@example.org>".into())
        .subkeys(vec![enc.build().unwrap()]);
    let key = p.build().unwrap().generate(rand::thread_rng()).unwrap();
    let fpr = mv_pass::secret_fingerprint(&key);
    let mut ring = Keyring::new();
    ring.add_secret(key);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    store.init(None, &[fpr], &ring).unwrap();
    for i in 0..200 {
        let name = EntryName::parse(&format!("site{}/entry{i}", i % 10)).unwrap();
        let body = format!("pw{i}-Xk3#pL9q\nuser: user{i}\nurl: https://site{i}.example\n");
        store.insert(&name, body.as_bytes(), true, &ring).unwrap();
    }
    let one = EntryName::parse("site3/entry13").unwrap();
    c.bench_function("show one entry", |b| {
        b.iter(|| store.read(&one, &ring).unwrap())
    });
    c.bench_function("grep 200 entries", |b| {
        b.iter(|| store.grep("user17", false, &ring).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
