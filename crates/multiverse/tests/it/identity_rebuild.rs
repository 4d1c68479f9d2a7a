//! `multiverse rebuild --words-file F` as wiring of existing commands, without libvirt (`--no-up
//! --no-image`): a tree built by hand with one rotated name, then a new tree holding only
//! `multiverse.toml`, rebuilt from the words. Every public artefact (public keys, onion addresses,
//! fingerprints, rendered configs and libvirt XML) must be byte-identical. The booted part (`up
//! --start`, guests presenting the same host keys) is the genesis tests'.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::{mv, ok, output, FAST, PASS, SPEC_WORDS};
use std::path::{Path, PathBuf};

/// Every file below `dir` with its bytes, sorted by path (missing folder: empty).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                walk(base, &p, out);
            } else if meta.is_file() {
                out.push((
                    p.strip_prefix(base).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The public artefacts of a tree: the public record, every rendered file but seeds and disks,
/// and a fleet export's public files.
fn artefacts(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let fleet = root.join("fleet-out");
    ok(
        mv(root).args(["identity", "fleet", "--out"]).arg(&fleet),
        None,
    );
    let mut all = Vec::new();
    for part in [
        "identity/public.json",
        "machines",
        "libvirt",
        "fleet-out",
        "multiverse.toml",
    ] {
        let p = root.join(part);
        if p.is_file() {
            all.push((PathBuf::from(part), std::fs::read(&p).unwrap()));
        } else {
            for (f, b) in snapshot(&p) {
                let name = f.to_string_lossy().to_string();
                // Secrets and disks are not public artefacts; the rest must match byte for byte.
                if name.ends_with(".qcow2")
                    || name.ends_with("seed.img")
                    || name.ends_with("seed-id")
                {
                    continue;
                }
                all.push((Path::new(part).join(f), b));
            }
        }
    }
    // A rebuilt host has its tree at the same place (/var/multiverse); these two tests' trees
    // differ only by their temporary folders, which rendered paths name.
    let here = root.display().to_string();
    all.into_iter()
        .map(|(p, b)| {
            let b = match String::from_utf8(b) {
                Ok(t) => t.replace(&here, "/TREE").into_bytes(),
                Err(e) => e.into_bytes(),
            };
            (p, b)
        })
        .collect()
}

#[test]
fn rebuild_from_words_and_multiverse_toml_gives_identical_artefacts() {
    // By hand: init, restore, rotate one name, render, pass.
    let a = tempfile::tempdir().unwrap();
    ok(mv(a.path()).arg("init"), None);
    ok(
        mv(a.path()).args(["identity", "restore"]).args(FAST),
        Some(SPEC_WORDS),
    );
    ok(
        mv(a.path()).args(["identity", "rotate", "star.router.multiverse"]),
        None,
    );
    ok(mv(a.path()).arg("render"), None);
    ok(mv(a.path()).args(["pass", "init"]), None);
    ok(mv(a.path()).args(["pass", "machines"]), None);
    let want = artefacts(a.path());
    assert!(
        want.iter().any(|(p, _)| p.ends_with("domain.xml")),
        "rendered XML is compared"
    );

    // A new host: only multiverse.toml (from git) and the words.
    let b = tempfile::tempdir().unwrap();
    std::fs::copy(
        a.path().join("multiverse.toml"),
        b.path().join("multiverse.toml"),
    )
    .unwrap();
    let words = b.path().join("words");
    std::fs::write(&words, SPEC_WORDS).unwrap();
    let pass = b.path().join("pass.txt");
    std::fs::write(&pass, PASS).unwrap();
    let rebuild = || {
        output(
            mv(b.path())
                .args(["rebuild", "--no-up", "--no-image", "--words-file"])
                .arg(&words)
                .arg("--passphrase-file")
                .arg(&pass),
            None,
        )
    };
    let o = rebuild();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("[1/4] identity restore"), "{out}");
    assert!(out.contains("rebuild done: 4 steps"), "{out}");
    let got = artefacts(b.path());
    let names = |v: &[(PathBuf, Vec<u8>)]| v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(names(&got), names(&want));
    for ((p, x), (_, y)) in want.iter().zip(&got) {
        assert!(x == y, "{} differs after the rebuild", p.display());
    }
    // The rotated name really is at epoch 1 on the new host.
    let shown = ok(
        mv(b.path()).args(["--json", "identity", "show", "star.router.multiverse"]),
        None,
    );
    assert!(shown.contains("\"epoch\": 1"), "{shown}");

    // Run again: every step is idempotent.
    assert!(rebuild().status.success());
    // Machines to start are checked against the file before anything runs.
    for (names, says) in [
        (
            vec!["nosuch.app.multiverse"],
            "no virtual machine `nosuch.app.multiverse`",
        ),
        (vec!["star.router.multiverse"], "--no-up starts none"),
    ] {
        let o = output(
            mv(b.path())
                .args(["rebuild", "--no-up", "--no-image", "--words-file"])
                .arg(&words)
                .arg("--passphrase-file")
                .arg(&pass)
                .args(&names),
            None,
        );
        assert_eq!(o.status.code(), Some(2), "{o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{err}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(!out.contains("[1/"), "nothing may run: {out}");
    }
    // Wrong words: it stops at the first step with one clear line, exit 2.
    std::fs::write(&words, SPEC_WORDS.replace("abandon", "zoo")).unwrap();
    let o = rebuild();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rebuild stopped at step 1/4, `identity restore`"),
        "{err}"
    );
}
