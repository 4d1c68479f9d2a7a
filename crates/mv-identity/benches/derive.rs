//! `cargo bench -p mv-identity`: the cost of each builder for one name, and of the whole public
//! identity (what `identity show` and `fleet` compute per machine). No Argon2 here: unsealing is
//! mv-seal's cost and is measured by bench/identity.sh.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use mv_core::IdentityName;
use mv_identity::{Purpose, Root};
use std::hint::black_box;

fn builders(c: &mut Criterion) {
    let root = Root::from_bytes([7; 32]);
    let name = IdentityName::parse("universe.router.multiverse").unwrap();
    c.bench_function("hkdf derive 32 bytes", |b| {
        b.iter(|| root.derive_default(black_box(Purpose::SshEd25519), &name))
    });
    c.bench_function("ssh_ed25519", |b| {
        b.iter(|| root.ssh_ed25519(black_box(&name)).unwrap())
    });
    c.bench_function("ssh_ecdsa_p256", |b| {
        b.iter(|| root.ssh_ecdsa_p256(black_box(&name)).unwrap())
    });
    c.bench_function("onion_v3", |b| b.iter(|| root.onion_v3(black_box(&name))));
    c.bench_function("openpgp", |b| {
        b.iter(|| root.openpgp(black_box(&name)).unwrap())
    });
    c.bench_function("password", |b| b.iter(|| root.password(black_box(&name))));
    c.bench_function("public_identity", |b| {
        b.iter(|| root.public_identity(black_box(&name)).unwrap())
    });
}

criterion_group!(benches, builders);
criterion_main!(benches);
