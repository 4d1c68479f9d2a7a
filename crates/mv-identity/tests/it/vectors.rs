//! Runs every vector file against the library, byte for byte: the spec's own vectors, kept as data
//! beside the spec (`docs/spec/*.vectors.toml`), and the independent cross-checks in
//! `tests/vectors/` (written by `independent.py`, not by this code).
//!
//! A vector file holds a root (hex), its mnemonic, and per name its `epoch` (0 when absent) and any
//! of the public outputs the spec lists. Fields absent from a name are not checked; unknown fields
//! fail the run so that a typo in a vector file cannot silently disable a check. A last test checks
//! that every value quoted in the spec's text is in its data file, so the two cannot drift apart.
#![allow(clippy::unwrap_used)]

use mv_core::IdentityName;
use mv_identity::pgp::types::KeyDetails as _;
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
    #[serde(default)]
    epoch: u32,
    openpgp_created: Option<u32>,
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
        let root = root.at_epoch(&name, n.epoch);
        let id = root.public_identity(&name).unwrap();
        assert_eq!(id.epoch, n.epoch, "{f}: {} epoch", n.name);
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
        let created = root
            .openpgp(&name)
            .unwrap()
            .primary_key
            .public_key()
            .created_at()
            .as_secs()
            .to_string();
        cmp(
            "openpgp_created",
            &n.openpgp_created.map(|c| c.to_string()),
            &created,
        );
        let luks = hex::encode(Sha256::digest(root.luks_key(&name).expose()));
        cmp("luks_sha256", &n.luks_sha256, &luks);
    }
    checks
}

fn spec_dir() -> std::path::PathBuf {
    mv_testkit::workspace_root().join("docs/spec")
}

fn toml_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn spec_vectors() {
    let files = toml_files(&spec_dir());
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "scramble-v1-epochs.vectors.toml",
            "scramble-v1.vectors.toml"
        ]
    );
    let total: usize = files.iter().map(|f| check(f)).sum();
    // v1: 2 + 5 checks; epochs: 2 + 7 + 6 + 6. A runner that checks nothing must fail.
    assert_eq!(total, 28, "checks run");
}

#[test]
fn independent_vectors() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let files = toml_files(&dir);
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("independent-python-epochs.toml")),
        "the epochs cross-check in {}",
        dir.display()
    );
    assert!(files.len() >= 4, "vector files in {}", dir.display());
    let total: usize = files.iter().map(|f| check(f)).sum();
    assert!(total >= 100, "only {total} checks ran");
}

/// Every value quoted in the spec's test-vector section (`` `…` `` after `field:`) is in its data
/// file: the data is the spec's, not a second opinion.
#[test]
fn spec_text_and_data_agree() {
    for spec in ["scramble-v1", "scramble-v1-epochs"] {
        let text = std::fs::read_to_string(spec_dir().join(format!("{spec}.md"))).unwrap();
        let data =
            std::fs::read_to_string(spec_dir().join(format!("{spec}.vectors.toml"))).unwrap();
        let section = text.split("## Test vectors").nth(1).unwrap();
        let mut quoted = 0;
        for line in section.lines() {
            let Some((_, rest)) = line.split_once(": `") else {
                continue;
            };
            let value = rest.split('`').next().unwrap();
            assert!(
                data.contains(&format!("\"{value}\"")),
                "{spec}: `{value}` not in the data file"
            );
            quoted += 1;
        }
        assert!(quoted >= 6, "{spec}: {quoted} values");
    }
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

/// The independent implementation itself, run now: `independent.py` (Python `cryptography`, not
/// this code) regenerates every committed `independent-python-*.toml`, epochs 1 and 2 included,
/// byte for byte. Needs python3 with `cryptography` (scripts/install-deps.sh); fails without it.
#[cfg(feature = "system-tests")] // runs a real tool
#[test]
fn independent_python_run_now_agrees() {
    let python = mv_testkit::require_tool("python3");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let tmp = tempfile::tempdir().unwrap();
    let words = tmp.path().join("english.txt");
    let list: Vec<&str> = bip39::Language::English.word_list().to_vec();
    std::fs::write(&words, list.join("\n") + "\n").unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let o = std::process::Command::new(python)
        .arg(dir.join("independent.py"))
        .arg(&words)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "independent.py failed (python3-cryptography installed?): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut compared = 0;
    for f in toml_files(&out) {
        let name = f.file_name().unwrap();
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            std::fs::read_to_string(dir.join(name)).unwrap(),
            "{name:?}"
        );
        compared += 1;
    }
    assert_eq!(compared, toml_files(&dir).len());
    assert!(compared >= 4);
}
