//! Property test: for random old trees (names chosen to collide in case, to look like images or
//! not, links, nested folders, a new root that already holds some targets), a migration loses
//! no file and changes no byte, every entry the plan leaves is untouched, a second run does
//! nothing, and the undo restores both trees exactly.
#![allow(clippy::unwrap_used)]

use mv_core::layout::Tree;
use mv_migrate::Migration;
use mv_migrate::{Entry, Snapshot};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
enum Kind {
    File(u8),
    Image,
    Dir,
    Link(&'static str),
}

const NAMES: &[&str] = &[
    "Star",
    "star",
    "STAR",
    "Galaxy Router",
    "galaxy_router",
    "Disk.qcow2",
    "disk.qcow2",
    "Data",
    "data",
    "Provision",
    "provision",
    "Star.qcow2",
    "star.QCOW2",
    "Orphan.qcow2",
    "x y",
];

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => any::<u8>().prop_map(Kind::File),
        2 => Just(Kind::Image),
        3 => Just(Kind::Dir),
        1 => prop::sample::select(vec!["../Star", "/nonexistent", "disk.qcow2"]).prop_map(Kind::Link),
    ]
}

fn entry() -> impl Strategy<Value = (Vec<&'static str>, Kind)> {
    (
        prop::sample::select(vec!["Machines", "Data", "Other"]),
        prop::collection::vec(prop::sample::select(NAMES.to_vec()), 1..4),
        kind(),
    )
        .prop_map(|(top, mut rest, k)| {
            rest.insert(0, top);
            (rest, k)
        })
}

fn build(root: &Path, entries: &[(Vec<&'static str>, Kind)]) {
    fs::create_dir_all(root).unwrap();
    'next: for (parts, k) in entries {
        let mut p = root.to_path_buf();
        for (i, part) in parts.iter().enumerate() {
            p.push(part);
            if i + 1 < parts.len() {
                match fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => continue 'next,
                    Err(_) => fs::create_dir(&p).unwrap(),
                }
            }
        }
        if fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        match k {
            Kind::File(b) => fs::write(&p, vec![*b; *b as usize]).unwrap(),
            Kind::Image => {
                let mut img = b"QFI\xfb".to_vec();
                img.resize(512, 1);
                fs::write(&p, img).unwrap();
            }
            Kind::Dir => fs::create_dir(&p).unwrap(),
            Kind::Link(t) => std::os::unix::fs::symlink(t, &p).unwrap(),
        }
    }
}

/// The name of migrate's state folder in a tree, which snapshots leave out.
fn state_name() -> String {
    let dir = Tree::new(Path::new("/")).migrate_state_dir();
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

fn snap(p: &Path) -> Snapshot {
    if !p.exists() {
        return Snapshot::default();
    }
    Snapshot::take(p, &[&state_name()]).unwrap()
}

fn contents(s: &Snapshot, skip_storage: bool) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (p, e) in &s.0 {
        if skip_storage && p.starts_with("storage") {
            continue;
        }
        if matches!(e, Entry::File { .. } | Entry::Symlink { .. }) {
            *m.entry(format!("{e:?}")).or_insert(0) += 1;
        }
    }
    m
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn nothing_is_lost_and_undo_restores(
        old_entries in prop::collection::vec(entry(), 0..25),
        new_entries in prop::collection::vec(
            (prop::sample::select(vec!["star.multiverse", "galaxy-router.multiverse"]),
             prop::sample::select(vec!["disk.qcow2", "data", "Disk.qcow2", "provision"])),
            0..3),
        in_place in any::<bool>(),
    ) {
        let t = tmp();
        let old = t.path().join("old");
        build(&old, &old_entries);
        let new: PathBuf = if in_place { old.clone() } else { t.path().join("new") };
        for (m, name) in &new_entries {
            let p = new.join("machines").join(m).join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            if fs::symlink_metadata(&p).is_err() {
                fs::write(&p, b"already here").unwrap();
            }
        }
        let (old0, new0) = (snap(&old), snap(&new));
        let mut before = contents(&old0, false);
        if !in_place {
            for (k, v) in contents(&new0, false) {
                *before.entry(k).or_insert(0) += v;
            }
        }

        let plan = mv_migrate::plan(&old, &new, None).unwrap();
        let mig = Migration::at(&new);
        mig.start(&plan).unwrap();
        mig.run(None).unwrap();

        let (old1, new1) = (snap(&old), snap(&new));
        let mut after = contents(&old1, false);
        if in_place {
            after = contents(&old1, true);
        } else {
            for (k, v) in contents(&new1, true) {
                *after.entry(k).or_insert(0) += v;
            }
        }
        prop_assert_eq!(&before, &after, "files or links lost or changed");
        for f in plan.findings.iter().filter(|f| f.left_in_place()) {
            let rel = f.path.strip_prefix(&old).unwrap();
            prop_assert_eq!(old0.0.get(rel), old1.0.get(rel), "{} moved or changed", f);
        }
        // Idempotent.
        let again = mig.run(None).unwrap();
        prop_assert_eq!(again.executed, 0);
        prop_assert_eq!(snap(&old), old1);

        mig.undo(None).unwrap();
        prop_assert_eq!(snap(&old).render(), old0.render());
        if !in_place {
            prop_assert_eq!(snap(&new).render(), new0.render());
        }
        prop_assert!(!Tree::new(&new).migrate_state_dir().exists());
    }
}
