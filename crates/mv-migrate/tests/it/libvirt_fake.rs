//! Planner and executor against an in-memory [`Hypervisor`]: which objects are redefined, with
//! which paths, that the undo puts the original XML back, and that a running domain is refused
//! before anything moves. The real-libvirtd version of this lives in
//! crates/multiverse/tests/migrate.rs.
#![allow(clippy::unwrap_used)]

use mv_migrate::Snapshot;
use mv_migrate::{Hypervisor, HypervisorError, ObjectKind};
use mv_migrate::{Migration, Op, PlanError};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

#[derive(Default)]
struct Fake {
    objects: RefCell<BTreeMap<(String, String), (String, bool)>>,
    defines: RefCell<usize>,
}

fn key(kind: ObjectKind) -> String {
    kind.to_string()
}

fn name_of(xml: &str) -> String {
    let a = xml.find("<name>").unwrap() + 6;
    let b = xml.find("</name>").unwrap();
    xml[a..b].to_string()
}

impl Fake {
    fn add(&self, kind: ObjectKind, xml: &str, active: bool) {
        self.objects
            .borrow_mut()
            .insert((key(kind), name_of(xml)), (xml.to_string(), active));
    }
    fn get(&self, kind: ObjectKind, name: &str) -> String {
        self.objects.borrow()[&(key(kind), name.to_string())]
            .0
            .clone()
    }
}

impl Hypervisor for Fake {
    fn list(&self, kind: ObjectKind) -> Result<Vec<String>, HypervisorError> {
        Ok(self
            .objects
            .borrow()
            .keys()
            .filter(|(k, _)| *k == key(kind))
            .map(|(_, n)| n.clone())
            .collect())
    }
    fn xml(&self, kind: ObjectKind, name: &str) -> Result<String, HypervisorError> {
        Ok(self.get(kind, name))
    }
    fn is_active(&self, kind: ObjectKind, name: &str) -> Result<bool, HypervisorError> {
        Ok(self.objects.borrow()[&(key(kind), name.to_string())].1)
    }
    fn define(&self, kind: ObjectKind, xml: &str) -> Result<(), HypervisorError> {
        *self.defines.borrow_mut() += 1;
        let mut o = self.objects.borrow_mut();
        let e = o.get_mut(&(key(kind), name_of(xml))).unwrap();
        e.0 = xml.to_string();
        Ok(())
    }
}

fn old_tree(old: &Path) {
    let m = old.join("Machines");
    fs::create_dir_all(m.join("Web")).unwrap();
    fs::write(m.join("Web/site.conf"), b"x").unwrap();
    let mut img = b"QFI\xfb".to_vec();
    img.resize(4096, 0);
    fs::write(m.join("Web.qcow2"), &img).unwrap();
    fs::write(m.join("Other.qcow2"), &img).unwrap();
    fs::create_dir_all(old.join("Data/Web")).unwrap();
}

fn domain(name: &str, disk: &Path, share: &Path) -> String {
    format!(
        "<domain type='kvm'>\n  <name>{name}</name>\n  <devices>\n    <disk type='file' device='disk'>\n      <source file='{}'/>\n    </disk>\n    <filesystem type='mount'>\n      <source dir='{}'/>\n    </filesystem>\n  </devices>\n</domain>\n",
        disk.display(),
        share.display()
    )
}

fn pool(name: &str, target: &Path) -> String {
    format!(
        "<pool type='dir'>\n  <name>{name}</name>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
        target.display()
    )
}

#[test]
fn domains_and_pools_follow_the_files_and_undo_restores_them() {
    let t = tempfile::tempdir().unwrap();
    let old = fs::canonicalize(t.path()).unwrap().join("old");
    old_tree(&old);
    let hv = Fake::default();
    let web = domain(
        "web",
        &old.join("Machines/Web.qcow2"),
        &old.join("Data/Web"),
    );
    let other = domain(
        "other",
        &old.join("Machines/Other.qcow2"),
        Path::new("/srv/x"),
    );
    let unrelated = domain(
        "unrelated",
        Path::new("/var/lib/x.qcow2"),
        Path::new("/srv"),
    );
    hv.add(ObjectKind::Domain, &web, false);
    hv.add(ObjectKind::Domain, &other, true);
    hv.add(ObjectKind::Domain, &unrelated, true);
    let p = pool("old-machines", &old.join("Machines"));
    hv.add(ObjectKind::Pool, &p, true);

    let plan = mv_migrate::plan(&old, &old, Some(&hv)).unwrap();
    let redefines: Vec<_> = plan
        .ops
        .iter()
        .filter_map(|o| match o {
            Op::Redefine { kind, name, .. } => Some(format!("{kind} {name}")),
            _ => None,
        })
        .collect();
    assert_eq!(redefines, vec!["domain web", "pool old-machines"]);
    // `other` is running but its image matches no machine folder: it is not touched, and the
    // planner says which of its paths stay in the old tree.
    assert!(plan
        .findings
        .iter()
        .any(|f| f.path == old.join("Machines/Other.qcow2")
            && f.to_string().contains("domain other keeps")));

    let before = Snapshot::take(&old, &[]).unwrap();
    let mig = Migration::at(&old);
    mig.start(&plan).unwrap();
    mig.run(Some(&hv)).unwrap();
    let now = hv.get(ObjectKind::Domain, "web");
    assert!(now.contains(&format!(
        "<source file='{}'/>",
        old.join("machines/web.multiverse/disk.qcow2").display()
    )));
    assert!(now.contains(&format!(
        "<source dir='{}'/>",
        old.join("machines/web.multiverse/data").display()
    )));
    assert!(hv
        .get(ObjectKind::Pool, "old-machines")
        .contains(&format!("<path>{}</path>", old.join("storage").display())));
    assert_eq!(hv.get(ObjectKind::Domain, "unrelated"), unrelated);

    // Running again defines nothing more.
    let n = *hv.defines.borrow();
    mig.run(Some(&hv)).unwrap();
    assert_eq!(*hv.defines.borrow(), n);

    mig.undo(Some(&hv)).unwrap().unwrap();
    assert_eq!(hv.get(ObjectKind::Domain, "web"), web);
    assert_eq!(hv.get(ObjectKind::Pool, "old-machines"), p);
    assert_eq!(Snapshot::take(&old, &[]).unwrap(), before);
}

#[test]
fn a_running_domain_using_the_old_tree_is_refused_before_anything_moves() {
    let t = tempfile::tempdir().unwrap();
    let old = fs::canonicalize(t.path()).unwrap().join("old");
    old_tree(&old);
    let hv = Fake::default();
    hv.add(
        ObjectKind::Domain,
        &domain("busy", &old.join("Machines/Web.qcow2"), Path::new("/x")),
        true,
    );
    let err = mv_migrate::plan(&old, &old, Some(&hv)).unwrap_err();
    assert!(matches!(err, PlanError::DomainsRunning { ref names } if names == &["busy"]));
    assert!(err.to_string().contains("busy"));
}
