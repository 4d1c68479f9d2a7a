//! `qemu:///embed?root=DIR`: the QEMU driver inside this process, no daemon. Its own test binary,
//! because a process that loads the embedded driver can no longer reach a daemon.
#![allow(clippy::unwrap_used)]

mod common;

use mv_libvirt::Connection;

#[test]
fn embedded_driver_backs_up_and_restores_domains() {
    // qemu:///embed runs the QEMU driver inside this process: no daemon, domains only. Backup
    // skips the kinds the driver does not have instead of failing.
    mv_testkit::require_tool("qemu-system-x86_64");
    let root = tempfile::tempdir().unwrap();
    let uri = format!("qemu:///embed?root={}", root.path().display());
    let c = Connection::open(&uri).unwrap();
    let name = "embedded.test.multiverse";
    c.define_domain(&common::domain_xml(name)).unwrap();
    let before = c.domain_xml(name, true).unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut own = mv_libvirt::Ownership::default();
    own.machines.insert(name.to_string());
    let report = mv_libvirt::backup(&c, out.path(), &own, false).unwrap();
    assert_eq!(report.files.len(), 1);
    let file = out
        .path()
        .join("machines")
        .join(name)
        .join("libvirt/domain.xml");
    assert!(file.is_file());
    c.undefine_domain(name).unwrap();
    let steps =
        mv_libvirt::restore_plan(&c, mv_libvirt::restore_scan(out.path()).unwrap()).unwrap();
    mv_libvirt::restore_apply(&c, &steps).unwrap();
    assert_eq!(c.domain_xml(name, true).unwrap(), before);
}
