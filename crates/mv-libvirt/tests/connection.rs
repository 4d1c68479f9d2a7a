//! The connection layer against the real libvirtd (qemu:///system, started by scripts/test.sh).
#![allow(clippy::unwrap_used)]

mod common;

use common::{unique, uri, Cleanup};
use mv_libvirt::{Connection, LibvirtError, ObjectKind};

#[test]
fn unreachable_uri_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!(
        "qemu+unix:///system?socket={}/nosuch.sock",
        dir.path().display()
    );
    let err = Connection::open(&uri).unwrap_err();
    assert!(matches!(err, LibvirtError::Connect { .. }), "{err:?}");
    let text = format!("{err}");
    assert!(text.contains(&uri), "{text}");
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("nosuch.sock"), "{cause}");
}

#[test]
fn define_read_undefine_each_kind() {
    let tag = unique();
    let dir = tempfile::tempdir().unwrap();
    let (c, mut clean) = common::connect();

    let dom = format!("mvtest-conn-{tag}");
    let net = format!("mvtest-conn-{tag}");
    let pool = format!("mvtest-conn-{tag}");
    clean.add(ObjectKind::Domain, &dom);
    clean.add(ObjectKind::Network, &net);
    clean.add(ObjectKind::Pool, &pool);

    assert!(!c.exists(ObjectKind::Domain, &dom).unwrap());
    assert_eq!(c.define_domain(&common::domain_xml(&dom)).unwrap(), dom);
    let bridge = format!("mvt{}", &tag[tag.len() - 8..]);
    assert_eq!(
        c.define_network(&common::network_xml(&net, &bridge))
            .unwrap(),
        net
    );
    assert_eq!(
        c.define_pool(&common::pool_xml(&pool, dir.path())).unwrap(),
        pool
    );

    assert!(c.list_domains().unwrap().contains(&dom));
    assert!(c.list_networks().unwrap().contains(&net));
    assert!(c.list_pools().unwrap().contains(&pool));
    assert!(!c.domain_is_active(&dom).unwrap());
    assert_eq!(
        c.domain_state(&dom).unwrap(),
        mv_libvirt::DomainState::ShutOff
    );

    let xml = c.domain_xml(&dom, true).unwrap();
    assert!(xml.contains(&format!("<name>{dom}</name>")));
    // The XML identifies itself.
    let id = mv_libvirt::identify(&xml).unwrap();
    assert_eq!(id.kind, ObjectKind::Domain);
    assert_eq!(id.name.as_deref(), Some(dom.as_str()));

    // Redefining the same XML is accepted (idempotent define).
    assert_eq!(c.define_domain(&xml).unwrap(), dom);

    // Pool volumes: an inactive pool lists none; an active one sees a file.
    assert!(c.pool_volumes(&pool).unwrap().is_empty());
    std::fs::write(dir.path().join("a.img"), b"x").unwrap();
    c.start_pool(&pool).unwrap();
    let vols = c.pool_volumes(&pool).unwrap();
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0].name, "a.img");
    c.stop_pool(&pool).unwrap();

    c.undefine_domain(&dom).unwrap();
    c.undefine_network(&net).unwrap();
    c.undefine_pool(&pool).unwrap();
    assert!(!c.exists(ObjectKind::Domain, &dom).unwrap());
    let err = c.domain_xml(&dom, true).unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.to_string(), format!("domain {dom} is not defined"));
}

#[test]
fn rejected_domain_xml_carries_libvirts_message() {
    mv_testkit::require_tool("libvirtd");
    let c = Connection::open(&uri()).unwrap();
    let name = format!("mvtest-bad-{}", unique());
    let mut clean = Cleanup::new(&uri());
    clean.add(ObjectKind::Domain, &name);
    let bad = format!(
        "<domain type='qemu'><name>{name}</name><memory>oops</memory><os><type>hvm</type></os></domain>"
    );
    let err = c.define_domain(&bad).unwrap_err();
    assert!(matches!(err, LibvirtError::Define { .. }), "{err:?}");
    assert!(err.to_string().contains(&name), "{err}");
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("Invalid value 'oops'"), "{cause}");
    assert!(!c.exists(ObjectKind::Domain, &name).unwrap());
}

#[test]
fn nul_bytes_are_refused_not_panicked_on() {
    mv_testkit::require_tool("libvirtd");
    let c = Connection::open(&uri()).unwrap();
    assert!(matches!(
        c.exists(ObjectKind::Domain, "a\0b"),
        Err(LibvirtError::Nul { .. })
    ));
    assert!(matches!(
        c.define_network("<network>\0</network>"),
        Err(LibvirtError::Nul { .. })
    ));
}
