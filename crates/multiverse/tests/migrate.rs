//! `multiverse migrate` driven through the real binary on fixture trees of the old layout.
//!
//! Each test builds its own old tree (in a fresh temp dir) with every awkward case of issue 6:
//! mixed case, names with spaces, two names differing only in case, a target that already exists,
//! dangling and loose symlinks, files that are not images, an image matching no machine. The
//! fixture fixes every mode and mtime so that two builds are identical and snapshots of different
//! runs compare equal.
#![allow(clippy::unwrap_used)]

mod common;

use common::{success as ok, MV};
use mv_migrate::{Entry, Snapshot};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `.multiverse-migrate`, migrate's state folder inside a tree (`Tree::migrate_state_dir`).
fn state_name() -> String {
    let dir = mv_core::layout::Tree::new("/").migrate_state_dir();
    dir.file_name().unwrap().to_string_lossy().into_owned()
}
const CRASH_ENV: &str = mv_migrate::CRASH_ENV;

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_600_000_000)
}

/// Bytes of a real qcow2 image (made once per test process by qemu-img).
fn qcow2_bytes() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        let qemu_img = mv_testkit::require_tool("qemu-img");
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.qcow2");
        mv_testkit::run_ok(
            Command::new(qemu_img)
                .args(["create", "-q", "-f", "qcow2"])
                .arg(&p)
                .arg("2G"),
        );
        fs::read(&p).unwrap()
    })
}

fn file(p: &Path, contents: &[u8], mode: u32) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, contents).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    let f = fs::OpenOptions::new().write(true).open(p);
    // A read-only mode still lets root open for writing; otherwise set the time first.
    if let Ok(f) = f {
        f.set_modified(t0()).unwrap();
    }
}

fn dir(p: &Path, mode: u32) {
    fs::create_dir_all(p).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn link(p: &Path, target: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, p).unwrap();
}

/// The old layout with every awkward case. Returns nothing: the tests refer to paths by name.
fn old_tree(old: &Path) {
    let m = old.join("Machines");
    let d = old.join("Data");
    dir(old, 0o755);
    dir(&m, 0o750);
    dir(&d, 0o700);
    // A router with a folder, an image, data, nested mixed-case folders and links.
    let star = m.join("Star.Router.Multiverse");
    dir(&star, 0o750);
    file(&star.join("domain.xml"), b"<domain/>\n", 0o644);
    dir(&star.join("Provision"), 0o755);
    file(
        &star.join("Provision/Setup.sh"),
        b"#!/bin/sh\necho hi\n",
        0o755,
    );
    dir(&star.join("Provision/Files"), 0o755);
    file(&star.join("Provision/Files/motd"), b"welcome\n", 0o644);
    link(&star.join("setup"), "Provision/Setup.sh");
    link(&star.join("gone"), "/nonexistent/target");
    file(
        &m.join("Star.Router.Multiverse.qcow2"),
        qcow2_bytes(),
        0o600,
    );
    dir(&d.join("Star.Router.Multiverse/Keys"), 0o700);
    file(
        &d.join("Star.Router.Multiverse/Keys/id"),
        b"secret\n",
        0o600,
    );
    file(&d.join("Star.Router.Multiverse/notes.txt"), b"n\n", 0o644);
    // A name with spaces, upper-case .QCOW2 extension.
    dir(&m.join("Galaxy Router"), 0o755);
    file(&m.join("Galaxy Router/vpn.conf"), b"remote x\n", 0o600);
    file(&m.join("Galaxy Router.QCOW2"), qcow2_bytes(), 0o600);
    // Two folders that differ only in case.
    dir(&m.join("App"), 0o755);
    file(&m.join("App/a"), b"a\n", 0o644);
    dir(&m.join("APP"), 0o755);
    file(&m.join("APP/b"), b"b\n", 0o644);
    // A folder holding its own disk, and a loose image for it too: the second is left.
    dir(&m.join("Controller"), 0o755);
    file(&m.join("Controller/disk.qcow2"), qcow2_bytes(), 0o600);
    file(&m.join("Controller.qcow2"), qcow2_bytes(), 0o600);
    // A machine known only from Data/.
    dir(&d.join("Service VM"), 0o755);
    file(&d.join("Service VM/db"), &[7u8; 5000], 0o640);
    // Images and files that belong nowhere.
    file(&m.join("Orphan.qcow2"), qcow2_bytes(), 0o600);
    file(&m.join("fake.qcow2"), b"not an image", 0o644);
    file(&m.join("Notes.txt"), b"todo\n", 0o644);
    link(&m.join("linked.qcow2"), "../elsewhere.qcow2");
    file(&d.join("loose.txt"), b"l\n", 0o644);
    file(&old.join("README"), b"old notes\n", 0o644);
    // Folder modes last (creating entries inside does not change them, but be explicit).
    dir(old, 0o755);
}

/// A small old tree: one machine with a folder, a nested folder, a link, an image and data.
fn small_old_tree(old: &Path) {
    let m = old.join("Machines");
    dir(&m.join("Web Server/Conf"), 0o750);
    file(&m.join("Web Server/Conf/site"), b"server {}\n", 0o640);
    link(&m.join("Web Server/current"), "Conf/site");
    file(&m.join("Web Server.qcow2"), qcow2_bytes(), 0o600);
    file(
        &old.join("Data/Web Server/www/index.html"),
        &[b'x'; 70_000],
        0o644,
    );
    file(&m.join("notes.txt"), b"stays\n", 0o644);
}

/// What the new root holds before the migration (an existing target).
fn existing_root(new: &Path) {
    dir(new, 0o755);
    file(
        &new.join("machines/star.router.multiverse/domain.xml"),
        b"<domain>rendered</domain>\n",
        0o644,
    );
    file(&new.join("multiverse.toml"), b"# new\n", 0o644);
}

fn mv(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = Command::new(MV);
    c.args(args)
        .env_remove(CRASH_ENV)
        .env_remove("MULTIVERSE_ROOT");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn migrate_args<'a>(old: &'a str, new: &'a str) -> Vec<&'a str> {
    vec!["migrate", "--from", old, "--to", new, "--no-libvirt"]
}

fn snap(p: &Path) -> Snapshot {
    if !p.exists() {
        return Snapshot::default();
    }
    Snapshot::take(p, &[&state_name()]).unwrap()
}

/// A temp dir on /dev/shm (a tmpfs: fsync costs nothing, which keeps the crash tests fast; and a
/// different filesystem from the default temp dir, for copies across filesystems).
fn shm_tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").expect("this test needs /dev/shm (a tmpfs)")
}

/// Every file's (sha256, size, mode, owner, mtime) and every link's target, as a multiset.
fn contents(s: &Snapshot) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in s.0.values() {
        let key = match e {
            Entry::File { .. } | Entry::Symlink { .. } => format!("{e:?}"),
            _ => continue,
        };
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn fixture_migrates_keeps_every_byte_and_undo_restores_it() {
    let t = tempfile::tempdir().unwrap();
    let old = t.path().join("Old Multiverse");
    let new = t.path().join("new");
    old_tree(&old);
    existing_root(&new);
    let old_before = snap(&old);
    let new_before = snap(&new);

    let out = ok(&mv(&migrate_args(s(&old), s(&new)), &[]));
    let plan_text = out.replace(s(&old), "<OLD>").replace(s(&new), "<NEW>");
    mv_testkit::golden(
        "crates/mv-migrate/tests/golden/fixture-plan.txt",
        &plan_text,
    );

    // The docs/design.md layout.
    let star = new.join("machines/star.router.multiverse");
    assert_eq!(fs::read(star.join("disk.qcow2")).unwrap(), qcow2_bytes());
    assert_eq!(
        fs::read_link(new.join("storage/star.router.multiverse.qcow2")).unwrap(),
        Path::new("../machines/star.router.multiverse/disk.qcow2")
    );
    assert_eq!(
        fs::read(new.join("storage/star.router.multiverse.qcow2")).unwrap(),
        qcow2_bytes(),
        "the storage link resolves"
    );
    assert_eq!(
        fs::read(star.join("provision/files/motd")).unwrap(),
        b"welcome\n"
    );
    assert_eq!(fs::read(star.join("provision/Setup.sh")).unwrap().len(), 18);
    assert_eq!(fs::read(star.join("data/keys/id")).unwrap(), b"secret\n");
    assert_eq!(
        fs::metadata(star.join("data/keys/id"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        fs::read_link(star.join("gone")).unwrap(),
        Path::new("/nonexistent/target")
    );
    let galaxy = new.join("machines/galaxy-router.multiverse");
    assert!(galaxy.join("disk.qcow2").is_file());
    assert!(galaxy.join("vpn.conf").is_file());
    assert!(new
        .join("machines/controller.multiverse/disk.qcow2")
        .is_file());
    assert!(new.join("storage/controller.multiverse.qcow2").exists());
    assert!(new.join("machines/service-vm.multiverse/data/db").is_file());
    // The existing target was not touched; the old file stayed.
    assert_eq!(
        fs::read(star.join("domain.xml")).unwrap(),
        b"<domain>rendered</domain>\n"
    );
    // Left in place, by rule.
    for left in [
        "Machines/Star.Router.Multiverse/domain.xml",
        "Machines/App/a",
        "Machines/APP/b",
        "Machines/Controller.qcow2",
        "Machines/Orphan.qcow2",
        "Machines/fake.qcow2",
        "Machines/Notes.txt",
        "Machines/linked.qcow2",
        "Data/loose.txt",
        "README",
    ] {
        let p = old.join(left);
        assert!(
            fs::symlink_metadata(&p).is_ok(),
            "{left} must stay in place"
        );
        assert_eq!(
            old_before.0.get(Path::new(left)),
            snap(&old).0.get(Path::new(left)),
            "{left} unchanged"
        );
    }
    assert!(!old.join("Data/Star.Router.Multiverse").exists());

    // Every file and link of both trees before is somewhere after, bit for bit (the storage
    // links are the only new entries besides folders).
    let mut before = contents(&old_before);
    for (k, v) in contents(&new_before) {
        *before.entry(k).or_insert(0) += v;
    }
    let mut after = contents(&snap(&old));
    let new_after = snap(&new);
    for (p, e) in &new_after.0 {
        if p.starts_with("storage") {
            continue;
        }
        if matches!(e, Entry::File { .. } | Entry::Symlink { .. }) {
            *after.entry(format!("{e:?}")).or_insert(0) += 1;
        }
    }
    assert_eq!(
        before, after,
        "the same files and links, with the same bytes"
    );

    // A second run changes nothing and says so.
    let again = ok(&mv(&migrate_args(s(&old), s(&new)), &[]));
    assert!(again.contains("already migrated; nothing to do"), "{again}");
    assert_eq!(snap(&new), new_after);

    // The undo restores both trees exactly, and a second undo has nothing to do.
    let out = ok(&mv(
        &["migrate", "--undo", "--to", s(&new), "--no-libvirt"],
        &[],
    ));
    assert!(out.contains("the old tree is back"), "{out}");
    assert_eq!(snap(&old).render(), old_before.render());
    assert_eq!(snap(&new).render(), new_before.render());
    assert!(!new.join(state_name()).exists());
    let out = ok(&mv(
        &["migrate", "--undo", "--to", s(&new), "--no-libvirt"],
        &[],
    ));
    assert!(out.contains("no migration to undo"), "{out}");
}

#[test]
fn dry_run_writes_nothing_and_json_is_stable() {
    let t = tempfile::tempdir().unwrap();
    let old = t.path().join("old");
    old_tree(&old);
    let before = Snapshot::take(&old, &[]).unwrap();
    let mut args = migrate_args(s(&old), s(&old));
    args.extend(["--dry-run", "--json"]);
    let out = ok(&mv(&args, &[]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["dry_run"], true);
    let ops = v["plan"]["ops"].as_array().unwrap();
    assert!(ops.iter().any(|o| o["op"] == "move"
        && o["to"]
            .as_str()
            .unwrap()
            .ends_with("machines/star.router.multiverse/disk.qcow2")));
    let kinds: Vec<&str> = v["plan"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    for k in [
        "case_collision",
        "target_exists",
        "not_an_image",
        "no_machine",
        "loose_symlink",
        "loose_data_file",
        "not_in_old_layout",
        "dangling_symlink",
    ] {
        assert!(kinds.contains(&k), "finding {k} missing from {kinds:?}");
    }
    assert_eq!(
        Snapshot::take(&old, &[]).unwrap(),
        before,
        "dry run wrote nothing"
    );
}

#[test]
fn bad_input_is_a_usage_error() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("missing");
    let out = mv(&migrate_args(s(&missing), s(t.path())), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a folder"));
    let old = t.path().join("old");
    old_tree(&old);
    let inside = old.join("Machines/new");
    let out = mv(&migrate_args(s(&old), s(&inside)), &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = mv(&["migrate", "--to", s(&old)], &[]);
    assert_eq!(out.status.code(), Some(2), "--from is required");
}

/// Runs a migration (or undo) with a crash at every crash point in turn, re-runs it, and checks
/// the result equals `expected`. Returns how many crash points there were.
fn crash_everywhere(
    build: &dyn Fn(&Path, &Path) -> (PathBuf, PathBuf),
    args: &dyn Fn(&Path, &Path) -> Vec<String>,
    prepare: &dyn Fn(&Path, &Path),
    expected: &(Snapshot, Snapshot),
) -> u64 {
    let mut n = 1u64;
    loop {
        let t = tempfile::tempdir().unwrap();
        let shm = shm_tempdir();
        let (old, new) = build(t.path(), shm.path());
        prepare(&old, &new);
        let a = args(&old, &new);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = mv(&a, &[(CRASH_ENV, n.to_string())]);
        if out.status.success() {
            // Fewer than n crash points: every one has been tried.
            assert_eq!((snap(&old), snap(&new)), *expected);
            return n - 1;
        }
        assert_eq!(
            out.status.code(),
            None,
            "crash point {n}: expected an abort, got {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        ok(&mv(&a, &[]));
        let got = (snap(&old), snap(&new));
        if got != *expected {
            panic!(
                "crash at point {n}, then re-run: result differs\n--- expected old\n{}--- got old\n{}--- expected new\n{}--- got new\n{}",
                expected.0.render(),
                got.0.render(),
                expected.1.render(),
                got.1.render()
            );
        }
        n += 1;
    }
}

fn crash_test(build: &dyn Fn(&Path, &Path) -> (PathBuf, PathBuf)) {
    let fwd = |o: &Path, n: &Path| -> Vec<String> {
        migrate_args(s(o), s(n))
            .into_iter()
            .map(String::from)
            .collect()
    };
    let undo = |_: &Path, n: &Path| -> Vec<String> {
        ["migrate", "--undo", "--to", s(n), "--no-libvirt"]
            .into_iter()
            .map(String::from)
            .collect()
    };
    // The uninterrupted runs.
    let t = tempfile::tempdir().unwrap();
    let shm = shm_tempdir();
    let (old, new) = build(t.path(), shm.path());
    let original = (snap(&old), snap(&new));
    ok(&mv(
        &fwd(&old, &new)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &[],
    ));
    let migrated = (snap(&old), snap(&new));
    let plan = fs::read(new.join(state_name()).join("plan.json")).unwrap();

    let points = crash_everywhere(build, &fwd, &|_, _| {}, &migrated);
    eprintln!("migration: crashed and re-ran at each of {points} crash points");
    assert!(
        points > 10,
        "only {points} crash points: the crash points are compiled only with mv-migrate's \
         `test-hooks`, which `cargo test --workspace` turns on for the multiverse-virt it builds \
         (a multiverse-virt built otherwise has none)"
    );
    // The plan saved after a crash is the same plan.
    let t2 = tempfile::tempdir().unwrap();
    let shm2 = shm_tempdir();
    let (o2, n2) = build(t2.path(), shm2.path());
    let _ = mv(
        &fwd(&o2, &n2).iter().map(String::as_str).collect::<Vec<_>>(),
        &[(CRASH_ENV, "5".into())],
    );
    let norm = |text: &[u8], disk: &Path, shm: &Path| {
        String::from_utf8_lossy(text)
            .replace(s(disk), "DISK")
            .replace(s(shm), "SHM")
    };
    assert_eq!(
        norm(
            &fs::read(n2.join(state_name()).join("plan.json")).unwrap(),
            t2.path(),
            shm2.path()
        ),
        norm(&plan, t.path(), shm.path())
    );

    // The undo, crashed everywhere, restores the original.
    let migrate_first = |o: &Path, n: &Path| {
        ok(&mv(
            &fwd(o, n).iter().map(String::as_str).collect::<Vec<_>>(),
            &[],
        ));
    };
    let points = crash_everywhere(build, &undo, &migrate_first, &original);
    eprintln!("undo: crashed and re-ran at each of {points} crash points");
    assert!(points > 10, "only {points} undo crash points");
}

#[test]
fn crash_at_every_step_in_place_then_rerun_equals_uninterrupted() {
    crash_test(&|_disk, shm| {
        let old = shm.join("tree");
        old_tree(&old);
        (old.clone(), old)
    });
}

#[test]
fn crash_at_every_step_across_filesystems() {
    // The old tree on the root filesystem, the new root on /dev/shm: every file is copied,
    // verified and removed instead of renamed, and the new root is created by the migration.
    // A smaller tree than the full fixture: the old side is on a real disk, where every fsync
    // costs, and the loop runs the migration once per crash point.
    crash_test(&|disk, shm| {
        let old = disk.join("old");
        small_old_tree(&old);
        (old, shm.join("new"))
    });
}

/// A small pseudo-random generator (xorshift), seeded and printed so a failure can be replayed.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn kill_9_at_random_moments_then_rerun_loses_nothing() {
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    // A bigger tree so that a run lasts long enough to be hit.
    let build = |t: &Path| {
        let old = t.join("tree");
        old_tree(&old);
        for i in 0..300 {
            file(
                &old.join(format!("Data/Bulk/Sub{}/f{i}", i % 7)),
                format!("{i}").as_bytes(),
                0o644,
            );
        }
        dir(&old.join("Data/Bulk"), 0o755);
        old
    };
    let t = tempfile::tempdir().unwrap();
    let reference = build(t.path());
    let started = std::time::Instant::now();
    ok(&mv(&migrate_args(s(&reference), s(&reference)), &[]));
    let run_us = started.elapsed().as_micros() as u64 + 1;
    let expected = snap(&reference);
    for round in 0..8 {
        let t = tempfile::tempdir().unwrap();
        let old = build(t.path());
        let delay = next(&mut seed) % run_us;
        let mut child = Command::new(MV)
            .args(migrate_args(s(&old), s(&old)))
            .env_remove(CRASH_ENV)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(delay));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        ok(&mv(&migrate_args(s(&old), s(&old)), &[]));
        let got = snap(&old);
        assert_eq!(
            got.render(),
            expected.render(),
            "round {round}, kill after {delay} us"
        );
    }
}

#[test]
fn a_new_root_that_does_not_exist_is_created_and_removed_by_undo() {
    let t = tempfile::tempdir().unwrap();
    let old = t.path().join("old");
    old_tree(&old);
    let before = Snapshot::take(t.path(), &[]).unwrap();
    let new = t.path().join("fresh");
    ok(&mv(&migrate_args(s(&old), s(&new)), &[]));
    assert!(new
        .join("machines/star.router.multiverse/disk.qcow2")
        .is_file());
    ok(&mv(
        &["migrate", "--undo", "--to", s(&new), "--no-libvirt"],
        &[],
    ));
    assert_eq!(
        Snapshot::take(t.path(), &[]).unwrap().render(),
        before.render()
    );
}

/// Undefines (and stops) the libvirt objects a test made, whatever happens to the test.
struct Cleanup {
    domains: Vec<String>,
    pools: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for d in &self.domains {
            let _ = virsh(&["destroy", d]);
            let _ = virsh(&["undefine", d]);
        }
        for p in &self.pools {
            let _ = virsh(&["pool-destroy", p]);
            let _ = virsh(&["pool-undefine", p]);
        }
    }
}

fn virsh(args: &[&str]) -> Output {
    Command::new(mv_testkit::require_tool("virsh"))
        .args(["-c", "qemu:///system"])
        .args(args)
        .output()
        .unwrap()
}

fn virsh_ok(args: &[&str]) -> String {
    let out = virsh(args);
    assert!(
        out.status.success(),
        "virsh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn domain_xml(name: &str, disk: &Path) -> String {
    format!(
        "<domain type='qemu'>\n  <name>{name}</name>\n  <memory unit='MiB'>64</memory>\n  <vcpu>1</vcpu>\n  <os><type arch='x86_64'>hvm</type></os>\n  <devices>\n    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='{}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n  </devices>\n</domain>\n",
        disk.display()
    )
}

#[test]
fn real_libvirtd_domains_and_pool_are_repointed_and_undo_puts_them_back() {
    mv_testkit::require_tool("virsh");
    let t = tempfile::tempdir().unwrap();
    let old = fs::canonicalize(t.path()).unwrap().join("old tree");
    small_old_tree(&old);
    let dom = unique("mvmig-dom");
    let pool = unique("mvmig-pool");
    let _guard = Cleanup {
        domains: vec![dom.clone()],
        pools: vec![pool.clone()],
    };
    let old_disk = old.join("Machines/Web Server.qcow2");
    let dxml = t.path().join("domain.xml");
    fs::write(&dxml, domain_xml(&dom, &old_disk)).unwrap();
    virsh_ok(&["define", s(&dxml)]);
    let pxml = t.path().join("pool.xml");
    fs::write(
        &pxml,
        format!(
            "<pool type='dir'><name>{pool}</name><target><path>{}</path></target></pool>",
            old.join("Machines").display()
        ),
    )
    .unwrap();
    virsh_ok(&["pool-define", s(&pxml)]);
    virsh_ok(&["pool-start", &pool]);
    let before = snap(&old);

    let out = ok(&mv(
        &[
            "migrate",
            "--from",
            s(&old),
            "--to",
            s(&old),
            "--connect",
            "qemu:///system",
        ],
        &[],
    ));
    assert!(out.contains(&format!("define  domain {dom}")), "{out}");
    let new_disk = old.join("machines/web-server.multiverse/disk.qcow2");
    let dump = virsh_ok(&["dumpxml", &dom]);
    assert!(
        dump.contains(&format!("<source file='{}'/>", new_disk.display())),
        "{dump}"
    );
    assert!(!dump.contains(s(&old_disk)));
    let pdump = virsh_ok(&["pool-dumpxml", &pool]);
    assert!(
        pdump.contains(&format!("<path>{}</path>", old.join("storage").display())),
        "{pdump}"
    );
    // The restarted pool sees the disk through its storage/ link.
    let vols = virsh_ok(&["vol-list", &pool]);
    assert!(vols.contains("web-server.multiverse.qcow2"), "{vols}");

    ok(&mv(
        &[
            "migrate",
            "--undo",
            "--to",
            s(&old),
            "--connect",
            "qemu:///system",
        ],
        &[],
    ));
    let dump = virsh_ok(&["dumpxml", &dom]);
    assert!(
        dump.contains(&format!("<source file='{}'/>", old_disk.display())),
        "{dump}"
    );
    let pdump = virsh_ok(&["pool-dumpxml", &pool]);
    assert!(pdump.contains(&format!("<path>{}</path>", old.join("Machines").display())));
    assert_eq!(snap(&old).render(), before.render());
}

#[test]
fn a_running_domain_is_refused_with_a_clear_message_and_nothing_moves() {
    // libvirt's test driver loads a node from a file; its domains are running.
    let t = tempfile::tempdir().unwrap();
    let old = fs::canonicalize(t.path()).unwrap().join("old");
    small_old_tree(&old);
    let node = t.path().join("node.xml");
    fs::write(
        &node,
        format!(
            "<node>\n<domain type='test'>\n  <name>busy-vm</name>\n  <memory>65536</memory>\n  <os><type>hvm</type></os>\n  <devices>\n    <disk type='file' device='disk'>\n      <source file='{}'/>\n      <target dev='vda'/>\n    </disk>\n  </devices>\n</domain>\n</node>\n",
            old.join("Machines/Web Server.qcow2").display()
        ),
    )
    .unwrap();
    let before = Snapshot::take(&old, &[]).unwrap();
    let uri = format!("test://{}", node.display());
    let out = mv(
        &[
            "migrate",
            "--from",
            s(&old),
            "--to",
            s(&old),
            "--connect",
            &uri,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("busy-vm") && err.contains("running"), "{err}");
    assert!(err.contains("shut"), "a hint says what to do: {err}");
    assert_eq!(Snapshot::take(&old, &[]).unwrap(), before);
}

#[test]
fn an_interrupted_migration_can_be_previewed_resumed_or_undone() {
    let t = shm_tempdir();
    let old = t.path().join("tree");
    old_tree(&old);
    let original = snap(&old);
    let fwd = migrate_args(s(&old), s(&old));
    // Crash somewhere in the middle.
    let out = mv(&fwd, &[(CRASH_ENV, "20".into())]);
    assert_eq!(out.status.code(), None, "the crash hook fired");
    let crashed = snap(&old);

    // Previews write nothing.
    let mut dry = fwd.clone();
    dry.push("--dry-run");
    let out = ok(&mv(&dry, &[]));
    assert!(out.contains("an interrupted migration has"), "{out}");
    let out = ok(&mv(
        &[
            "migrate",
            "--undo",
            "--to",
            s(&old),
            "--no-libvirt",
            "--dry-run",
        ],
        &[],
    ));
    assert!(out.contains("dry run: the undo has"), "{out}");
    assert_eq!(snap(&old), crashed);

    // Another --from while this one is in progress is refused.
    let elsewhere = t.path().join("elsewhere");
    old_tree(&elsewhere);
    let out = mv(&migrate_args(s(&elsewhere), s(&old)), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is in progress"));

    // An undo interrupted half-way blocks forward runs until it is finished.
    let out = mv(
        &["migrate", "--undo", "--to", s(&old), "--no-libvirt"],
        &[(CRASH_ENV, "5".into())],
    );
    assert_eq!(out.status.code(), None);
    let out = mv(&fwd, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("half done"));
    ok(&mv(
        &["migrate", "--undo", "--to", s(&old), "--no-libvirt"],
        &[],
    ));
    assert_eq!(snap(&old).render(), original.render());
}
