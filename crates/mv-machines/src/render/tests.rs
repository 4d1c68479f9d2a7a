//! Tests of rendering: golden files for the default topology, idempotence, dry runs, and
//! "nothing written" on errors.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::Arch;
use std::collections::BTreeMap;

/// Every rendered file of the default topology for `arch`, keyed by path relative to the root.
fn default_files(arch: Arch) -> BTreeMap<String, String> {
    let tree = Tree::new("/var/multiverse");
    let engine = Engine::new(BUILTIN, None);
    let outs = plan_with(&engine, &tree, &Topology::default_for_arch(arch)).unwrap();
    outs.into_iter()
        .filter_map(|o| match o {
            Output::File { path, contents } => Some((
                path.strip_prefix("/var/multiverse")
                    .unwrap()
                    .display()
                    .to_string(),
                contents,
            )),
            Output::Symlink { .. } => None,
        })
        .collect()
}

#[test]
fn golden_default_output() {
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let files = default_files(arch);
        assert_eq!(
            files.len(),
            7 + 6 + 1 + 3 + 1,
            "machine.toml x7, domain x6, the controller's LUKS secret, networks x3, pool"
        );
        for (rel, contents) in files {
            mv_testkit::golden(
                format!("crates/mv-machines/tests/golden/{arch}/{rel}"),
                &contents,
            );
        }
    }
}

#[test]
fn domain_shape_follows_type_and_arch() {
    let x = default_files(Arch::X86_64);
    let ctl = &x["machines/controller.multiverse/domain.xml"];
    assert!(ctl.contains(r#"machine="q35""#));
    assert!(ctl.contains("/usr/share/OVMF/OVMF_CODE.fd"));
    assert!(ctl.contains(r#"<iommu model="intel">"#));
    assert!(ctl.contains(r#"bus="0x01" slot="0x00" function="0x1""#));
    let uni = &x["machines/universe.router.multiverse/domain.xml"];
    assert!(uni.contains(r#"bus="0x03""#), "universe gets its NIC");
    assert!(
        !uni.contains("OVMF"),
        "routers boot with the default firmware on x86"
    );
    for (p, c) in &x {
        if p.ends_with("domain.xml") {
            assert!(c.contains(r#"name="org.multiverse.agent.0""#), "{p}");
            assert!(c.contains("<acpi/>"), "{p}");
        }
    }
    let a = default_files(Arch::Aarch64);
    let ctl = &a["machines/controller.multiverse/domain.xml"];
    assert!(ctl.contains(r#"machine="virt""#));
    assert!(ctl.contains("AAVMF_CODE.fd"));
    assert!(ctl.contains(r#"<iommu model="smmuv3">"#));
    let net = &a["libvirt/networks/net1.xml"];
    assert!(!net.contains("<forward"), "isolated");
    assert!(!net.contains("<ip"), "no host address");
}

#[test]
fn render_twice_changes_nothing_and_dry_run_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let tree = Tree::new(d.path());
    let t = Topology::default_topology();
    let r = render_tree(&tree, &t, true).unwrap();
    assert!(r.entries.iter().all(|(_, c)| *c == Change::Created));
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        0,
        "dry run wrote"
    );
    let r = render_tree(&tree, &t, false).unwrap();
    assert!(!r.nothing_changed());
    let link = tree.storage_link(&t.machines[1].name);
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../machines/universe.router.multiverse/disk.qcow2")
    );
    let r = render_tree(&tree, &t, false).unwrap();
    assert!(r.nothing_changed(), "{:?}", r.changed().collect::<Vec<_>>());
    // The batch writer (used for this first render) left no temporary file behind.
    let mut stack = vec![d.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            assert!(
                !e.file_name().to_string_lossy().starts_with('.'),
                "{:?}",
                e.path()
            );
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    // A changed machine changes only its own files.
    let mut t2 = t.clone();
    t2.machines[5].memory_mib = 1024;
    let r = render_tree(&tree, &t2, false).unwrap();
    let changed: Vec<_> = r.changed().collect();
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert!(changed
        .iter()
        .all(|p| p.starts_with(tree.machine_dir(&t.machines[5].name))));
}

#[test]
fn undefined_variable_in_override_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let tree = Tree::new(d.path());
    std::fs::create_dir_all(tree.templates_dir()).unwrap();
    std::fs::write(
        tree.templates_dir().join("network.xml.j2"),
        "<network>\n  <name>{{ network.nmae }}</name>\n</network>\n",
    )
    .unwrap();
    let err = render_tree(&tree, &Topology::default_topology(), false).unwrap_err();
    let RenderError::Template { source, .. } = &err else {
        panic!("{err:?}")
    };
    let msg = source.to_string();
    assert!(
        msg.contains("network.xml.j2:2: undefined variable `network.nmae`"),
        "{msg}"
    );
    let entries: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "only templates/ exists");
}

#[test]
fn a_real_file_in_storage_is_never_replaced() {
    let d = tempfile::tempdir().unwrap();
    let tree = Tree::new(d.path());
    let t = Topology::default_topology();
    std::fs::create_dir_all(tree.storage_dir()).unwrap();
    let disk = tree.storage_link(&t.machines[2].name);
    std::fs::write(&disk, b"old disk").unwrap();
    let err = render_tree(&tree, &t, false).unwrap_err();
    assert!(matches!(err, RenderError::StorageOccupied { .. }), "{err}");
    assert_eq!(std::fs::read(&disk).unwrap(), b"old disk");
    assert!(!tree.machines_dir().exists(), "nothing written");
}

#[test]
fn uuids_are_stable_and_well_formed() {
    let u = stable_uuid("domain", "a.b");
    assert_eq!(u, stable_uuid("domain", "a.b"));
    assert_ne!(u, stable_uuid("network", "a.b"));
    assert_eq!(u.len(), 36);
    assert_eq!(&u[14..15], "8");
}
