//! Backup → undefine → restore against the real libvirtd: every object comes back with the same
//! `dumpxml`; a failed restore leaves the host as it was; collisions stop before any change.
//!
//! The daemon is shared with other tests, so each test names its objects with a unique tag and,
//! after backing up the whole host, keeps only its own files in the backup before restoring.
#![allow(clippy::unwrap_used)]

mod common;

use common::{chain, unique};
use mv_libvirt::ObjectKind;
use mv_libvirt::{backup, object_path, FileChange, Ownership};
use mv_libvirt::{
    restore_apply as apply, restore_plan as plan, restore_scan as scan, RestoreChange as Change,
    RestoreError,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn uuid() -> String {
    use rand::Rng;
    let b: [u8; 16] = rand::thread_rng().gen();
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes `xml` where a backup in `dir` (default ownership) keeps the object `kind`/`name`;
/// returns that path.
fn write_object(dir: &Path, kind: ObjectKind, name: &str, xml: &str) -> PathBuf {
    let p = object_path(dir, &Ownership::default(), kind, name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, xml).unwrap();
    p
}

/// Deletes every file under `dir` that is not in `keep`.
fn keep_only(dir: &Path, keep: &BTreeSet<PathBuf>) {
    for entry in mv_testkit::files_under(dir) {
        if !keep.contains(&entry) {
            std::fs::remove_file(&entry).unwrap();
        }
    }
}

fn odd_domain_xml(name: &str) -> String {
    format!(
        r#"<domain type='qemu'>
  <name>{name}</name>
  <title>Odd &amp; "quoted" — ünïcode</title>
  <description>line one
line two &lt;not a tag&gt;</description>
  <metadata>
    <mv:machine xmlns:mv="https://example.invalid/multiverse"><mv:role kind="test">odd</mv:role></mv:machine>
  </metadata>
  <memory unit='KiB'>65536</memory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='network'/>
  </os>
  <features><acpi/></features>
  <on_crash>preserve</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='pty'><target port='0'/></serial>
  </devices>
</domain>
"#
    )
}

#[test]
fn backup_undefine_restore_round_trip() {
    let tag = unique();
    let pooldir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (c, mut clean) = common::connect();

    let machine = format!("rt-{tag}.test.multiverse");
    let foreign = format!("mvtest-foreign-{tag}");
    let odd = format!("mvtest odd+ü {tag}");
    let net = format!("mvtest-rt-{tag}");
    let pool = format!("mvtest-rt-{tag}");
    let filter = format!("mvtest-rt-{tag}");
    let secret = uuid();
    let bridge = format!("mvr{}", &tag[tag.len() - 8..]);

    let defs: Vec<(ObjectKind, String)> = vec![
        (ObjectKind::Secret, format!("<secret ephemeral='no' private='yes'>\n  <uuid>{secret}</uuid>\n  <usage type='ceph'>\n    <name>mvtest-{tag}</name>\n  </usage>\n</secret>\n")),
        (ObjectKind::NwFilter, format!("<filter name='{filter}' chain='root'>\n  <rule action='accept' direction='out' priority='500'>\n    <all/>\n  </rule>\n</filter>\n")),
        (ObjectKind::Pool, common::pool_xml(&pool, pooldir.path())),
        (ObjectKind::Network, common::network_xml(&net, &bridge)),
        (ObjectKind::Domain, common::domain_xml(&machine)),
        (ObjectKind::Domain, common::domain_xml(&foreign)),
        (ObjectKind::Domain, odd_domain_xml(&odd)),
    ];
    let mut mine: Vec<(ObjectKind, String)> = Vec::new();
    for (kind, xml) in &defs {
        let name = c.define(*kind, xml).unwrap();
        clean.add(*kind, &name);
        mine.push((*kind, name));
    }
    // An active pool with a volume: its list is backed up too.
    std::fs::write(pooldir.path().join("disk.qcow2"), b"not really").unwrap();
    c.start_pool(&pool).unwrap();

    let original: Vec<String> = mine
        .iter()
        .map(|(k, n)| mv_libvirt::normalise(*k, &c.xml(*k, n, true).unwrap()))
        .collect();

    let mut own = Ownership::default();
    own.machines.insert(machine.clone());
    own.others.insert((ObjectKind::Network, net.clone()));
    let report = backup(&c, out.path(), &own, false).unwrap();
    let my_paths: BTreeSet<PathBuf> = mine
        .iter()
        .map(|(k, n)| object_path(out.path(), &own, *k, n))
        .collect();
    for p in &my_paths {
        assert!(p.is_file(), "{} missing", p.display());
        assert!(report.files.iter().any(|f| &f.path == p));
    }
    assert_eq!(
        object_path(out.path(), &own, ObjectKind::Domain, &machine),
        out.path()
            .join("machines")
            .join(&machine)
            .join("libvirt/domain.xml")
    );
    assert!(object_path(out.path(), &own, ObjectKind::Domain, &foreign)
        .starts_with(out.path().join("backups/foreign/domain")));
    let volumes = object_path(out.path(), &own, ObjectKind::Pool, &pool).with_extension("volumes");
    let listing = std::fs::read_to_string(&volumes).unwrap();
    assert_eq!(
        listing,
        format!(
            "disk.qcow2\t{}\n",
            pooldir.path().join("disk.qcow2").display()
        )
    );
    // Secrets: metadata only.
    let sfile = std::fs::read_to_string(object_path(out.path(), &own, ObjectKind::Secret, &secret))
        .unwrap();
    assert!(sfile.contains(&secret) && !sfile.contains("<value"));

    // A second backup of the unchanged objects writes nothing.
    let again = backup(&c, out.path(), &own, false).unwrap();
    for f in again.files.iter().filter(|f| my_paths.contains(&f.path)) {
        assert_eq!(f.change, FileChange::Unchanged, "{}", f.path.display());
    }

    // Keep only this test's files (other tests' objects on the shared daemon are not ours).
    let mut keep = my_paths.clone();
    keep.insert(volumes);
    keep_only(out.path(), &keep);

    c.stop_pool(&pool).unwrap();
    for (k, n) in mine.iter().rev() {
        c.undefine(*k, n).unwrap();
    }

    let entries = scan(out.path()).unwrap();
    assert_eq!(entries.len(), mine.len());
    let steps = plan(&c, entries).unwrap();
    assert!(steps.iter().all(|s| s.change == Change::Create));
    // Dependency order: kinds never go backwards.
    assert!(steps.windows(2).all(|w| w[0].entry.kind <= w[1].entry.kind));
    let done = apply(&c, &steps).unwrap();
    assert_eq!(done.created.len(), mine.len());

    for ((k, n), before) in mine.iter().zip(&original) {
        let after = mv_libvirt::normalise(*k, &c.xml(*k, n, true).unwrap());
        assert_eq!(&after, before, "{k} {n} differs after restore");
    }

    // Restoring again changes nothing.
    let steps = plan(&c, scan(out.path()).unwrap()).unwrap();
    assert!(steps.iter().all(|s| s.change == Change::Unchanged));
    let done = apply(&c, &steps).unwrap();
    assert!(done.created.is_empty() && done.updated.is_empty());
}

#[test]
fn failed_restore_undoes_what_it_defined() {
    let tag = unique();
    let out = tempfile::tempdir().unwrap();
    let pooldir = tempfile::tempdir().unwrap();
    let otherdir = tempfile::tempdir().unwrap();
    let (c, mut clean) = common::connect();

    let net = format!("mvtest-undo-{tag}");
    let pool = format!("mvtest-undo-{tag}");
    let dom = format!("mvtest-undo-{tag}");
    clean.add(ObjectKind::Network, &net);
    clean.add(ObjectKind::Pool, &pool);
    clean.add(ObjectKind::Domain, &dom);

    // The host has the pool already, pointing elsewhere.
    c.define_pool(&common::pool_xml(&pool, pooldir.path()))
        .unwrap();
    let pool_before = c.pool_xml(&pool, true).unwrap();
    let pool_uuid = mv_libvirt::identify(&pool_before).unwrap().uuid.unwrap();

    let write = |kind, name: &str, xml: &str| write_object(out.path(), kind, name, xml);
    write(
        ObjectKind::Pool,
        &pool,
        &pool_before.replace(
            &pooldir.path().display().to_string(),
            &otherdir.path().display().to_string(),
        ),
    );
    write(
        ObjectKind::Network,
        &net,
        &common::network_xml(&net, &format!("mvu{}", &tag[tag.len() - 8..])),
    );
    let bad = write(
        ObjectKind::Domain,
        &dom,
        &format!("<domain type='qemu'><name>{dom}</name><memory>oops</memory><os><type>hvm</type></os></domain>"),
    );

    let steps = plan(&c, scan(out.path()).unwrap()).unwrap();
    let kinds: Vec<_> = steps
        .iter()
        .map(|s| (s.entry.kind, s.change.clone()))
        .collect();
    assert!(matches!(
        kinds[0],
        (ObjectKind::Pool, Change::Update { .. })
    ));
    if let Change::Update { diff } = &kinds[0].1 {
        assert!(
            diff.contains(&format!("+    <path>{}</path>", otherdir.path().display())),
            "{diff}"
        );
    }
    assert_eq!(kinds[1], (ObjectKind::Network, Change::Create));
    assert_eq!(kinds[2], (ObjectKind::Domain, Change::Create));

    let err = apply(&c, &steps).unwrap_err();
    let RestoreError::Apply {
        path,
        undone,
        undo_failures,
        source,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(path, &bad);
    assert_eq!(*undone, 2);
    assert!(undo_failures.is_empty(), "{undo_failures:?}");
    let msg = chain(&err);
    assert!(msg.contains(&bad.display().to_string()), "{msg}");
    assert!(msg.contains("Invalid value 'oops'"), "{msg}");
    assert!(source.to_string().contains(&dom));

    // Nothing half-done: the network is gone again, the pool is back as it was.
    assert!(!c.exists(ObjectKind::Network, &net).unwrap());
    assert!(!c.exists(ObjectKind::Domain, &dom).unwrap());
    let pool_after = c.pool_xml(&pool, true).unwrap();
    assert_eq!(pool_after, pool_before);
    assert_eq!(
        mv_libvirt::identify(&pool_after).unwrap().uuid.unwrap(),
        pool_uuid
    );
}

#[test]
fn a_file_without_uuid_updates_the_hosts_object() {
    let tag = unique();
    let out = tempfile::tempdir().unwrap();
    let (c, mut clean) = common::connect();
    let dom = format!("mvtest-nouuid-{tag}");
    clean.add(ObjectKind::Domain, &dom);
    c.define_domain(&common::domain_xml(&dom)).unwrap();
    let uuid_before = mv_libvirt::identify(&c.domain_xml(&dom, true).unwrap())
        .unwrap()
        .uuid;
    write_object(
        out.path(),
        ObjectKind::Domain,
        &dom,
        &common::domain_xml(&dom).replace(
            "<memory unit='MiB'>32</memory>",
            "<memory unit='MiB'>48</memory>",
        ),
    );
    let steps = plan(&c, scan(out.path()).unwrap()).unwrap();
    assert!(matches!(steps[0].change, Change::Update { .. }));
    let done = apply(&c, &steps).unwrap();
    assert_eq!(done.updated.len(), 1);
    let after = c.domain_xml(&dom, true).unwrap();
    assert!(after.contains("49152"), "{after}");
    assert_eq!(mv_libvirt::identify(&after).unwrap().uuid, uuid_before);
}

#[test]
fn name_collision_stops_before_any_change() {
    let tag = unique();
    let out = tempfile::tempdir().unwrap();
    let (c, mut clean) = common::connect();
    let dom = format!("mvtest-coll-{tag}");
    let net = format!("mvtest-coll-{tag}");
    clean.add(ObjectKind::Domain, &dom);
    clean.add(ObjectKind::Network, &net);

    c.define_domain(&common::domain_xml(&dom)).unwrap();
    // Same name, another UUID: a different machine.
    let other =
        common::domain_xml(&dom).replace("</name>", &format!("</name>\n  <uuid>{}</uuid>", uuid()));
    write_object(out.path(), ObjectKind::Domain, &dom, &other);
    write_object(
        out.path(),
        ObjectKind::Network,
        &net,
        &common::network_xml(&net, &format!("mvc{}", &tag[tag.len() - 8..])),
    );

    let err = plan(&c, scan(out.path()).unwrap()).unwrap_err();
    assert!(matches!(err, RestoreError::Collision(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&dom) && text.contains("already exists"),
        "{text}"
    );
    assert!(!c.exists(ObjectKind::Network, &net).unwrap());
}
