//! Runs every spec vector file in `tests/vectors/` against the library, byte for byte.
//!
//! A vector file holds a root (hex), its mnemonic, and per name any of the public outputs the spec
//! lists. Fields absent from a name are not checked; unknown fields fail the run so that a typo in a
//! vector file cannot silently disable a check.
#![allow(clippy::unwrap_used)]

use mv_core::IdentityName;
use mv_identity::Root;
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorFile {
    root: String,
    mnemonic: String,
    names: Vec<NameVector>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameVector {
    name: String,
    ssh_ed25519: Option<String>,
    ssh_ecdsa_p256: Option<String>,
    ssh_host_ed25519: Option<String>,
    ssh_host_ecdsa_p256: Option<String>,
    onion: Option<String>,
    openpgp_fingerprint: Option<String>,
    password: Option<String>,
    luks_sha256: Option<String>,
}

fn check(file: &std::path::Path) -> usize {
    let text = std::fs::read_to_string(file).unwrap();
    let v: VectorFile = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let bytes: [u8; 32] = hex::decode(&v.root).unwrap().try_into().unwrap();
    let root = Root::from_bytes(bytes);
    let f = file.display();
    assert_eq!(root.mnemonic().expose(), &v.mnemonic, "{f}: mnemonic");
    assert_eq!(
        Root::from_mnemonic(&v.mnemonic).unwrap(),
        root,
        "{f}: restore"
    );
    let mut checks = 2;
    for n in &v.names {
        let name = IdentityName::parse(&n.name).unwrap();
        let id = root.public_identity(&name).unwrap();
        let mut cmp = |field: &str, want: &Option<String>, got: &str| {
            if let Some(want) = want {
                assert_eq!(got, want, "{f}: {} {field}", n.name);
                checks += 1;
            }
        };
        cmp("ssh_ed25519", &n.ssh_ed25519, &id.ssh_ed25519);
        cmp("ssh_ecdsa_p256", &n.ssh_ecdsa_p256, &id.ssh_ecdsa_p256);
        cmp(
            "ssh_host_ed25519",
            &n.ssh_host_ed25519,
            &id.ssh_host_ed25519,
        );
        cmp(
            "ssh_host_ecdsa_p256",
            &n.ssh_host_ecdsa_p256,
            &id.ssh_host_ecdsa_p256,
        );
        cmp("onion", &n.onion, &id.onion);
        cmp(
            "openpgp_fingerprint",
            &n.openpgp_fingerprint,
            &id.openpgp_fingerprint,
        );
        cmp("password", &n.password, root.password(&name).expose());
        let luks = hex::encode(Sha256::digest(root.luks_key(&name).expose()));
        cmp("luks_sha256", &n.luks_sha256, &luks);
    }
    checks
}

#[test]
fn spec_vectors() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no vector files in {}", dir.display());
    let total: usize = files.iter().map(|f| check(f)).sum();
    // The spec file alone has 2 + 5 checks; a runner that checks nothing must fail.
    assert!(total >= 7, "only {total} checks ran");
}

#[test]
fn same_root_same_output_every_run() {
    let root = Root::from_bytes([42; 32]);
    let name = IdentityName::parse("star.router.multiverse").unwrap();
    let a = root.public_identity(&name).unwrap();
    let b = Root::from_mnemonic(root.mnemonic().expose())
        .unwrap()
        .public_identity(&name)
        .unwrap();
    assert_eq!(a, b);
    let k1 = root
        .ssh_ed25519(&name)
        .unwrap()
        .to_openssh(Default::default())
        .unwrap();
    let k2 = root
        .ssh_ed25519(&name)
        .unwrap()
        .to_openssh(Default::default())
        .unwrap();
    assert_eq!(*k1, *k2);
}
