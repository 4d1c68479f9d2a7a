//! `up` / `down` / `status` against the real libvirtd, and one machine really started under QEMU
//! (KVM when /dev/kvm is usable, else TCG) from a tiny qcow2 overlay the test makes.
#![allow(clippy::unwrap_used)]

mod common;

use common::{chain, unique, Cleanup};
use mv_libvirt::OverlaySpec;
use mv_libvirt::{down, status, up, Done, MachineSpec, UpError, UpOptions, UpSpec};
use mv_libvirt::{Connection, DomainState, ObjectKind};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Fixture {
    dir: tempfile::TempDir,
    tag: String,
    pool: String,
    spec: UpSpec,
}

fn domain_type() -> &'static str {
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if usable {
        "kvm"
    } else {
        "qemu"
    }
}

fn rendered_domain(name: &str, pool: &str, volume: &str, memory_mib: u32) -> String {
    format!(
        r#"<!-- rendered for the test -->
<domain type="{ty}">
  <name>{name}</name>
  <memory unit="MiB">{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch="x86_64" machine="pc">hvm</type>
    <boot dev="hd"/>
  </os>
  <features>
    <acpi/>
  </features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type="volume" device="disk">
      <driver name="qemu" type="qcow2"/>
      <source pool="{pool}" volume="{volume}"/>
      <target dev="vda" bus="virtio"/>
    </disk>
  </devices>
</domain>
"#,
        ty = domain_type()
    )
}

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

/// A tree with a base image, a pool over storage/ and `n` machines whose disks link into it.
fn fixture(n: usize, clean: &mut Cleanup) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    // libvirt runs QEMU as libvirt-qemu: it must be able to walk into the tree.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tag = unique();
    let root = dir.path();
    let images = root.join("images");
    std::fs::create_dir_all(&images).unwrap();
    mv_testkit::run_ok(
        std::process::Command::new(mv_testkit::require_tool("qemu-img"))
            .args(["create", "-q", "-f", "qcow2"])
            .arg(images.join("tiny.qcow2"))
            .arg("16M"),
    );
    let pool = format!("mvtest-up-{tag}");
    let storage = root.join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    let pool_xml = root.join("libvirt/pool.xml");
    write(&pool_xml, &common::pool_xml(&pool, &storage));
    clean.add(ObjectKind::Pool, &pool);
    let mut machines = Vec::new();
    for i in 0..n {
        let name = format!("m{i}-{tag}.test.multiverse");
        let volume = format!("{name}.qcow2");
        let mdir = root.join("machines").join(&name);
        let disk = mdir.join("disk.qcow2");
        std::fs::create_dir_all(&mdir).unwrap();
        std::os::unix::fs::symlink(
            Path::new("..")
                .join("machines")
                .join(&name)
                .join("disk.qcow2"),
            storage.join(&volume),
        )
        .unwrap();
        let dxml = mdir.join("domain.xml");
        write(&dxml, &rendered_domain(&name, &pool, &volume, 64));
        clean.add(ObjectKind::Domain, &name);
        machines.push(MachineSpec {
            name,
            domain_xml: dxml,
            disks: vec![OverlaySpec {
                path: disk,
                base_name: "tiny".into(),
                base: images.join("tiny.qcow2"),
                size_gib: 0,
                luks: None,
            }],
            throwaway: i == 0,
            runtime_dirs: Vec::new(),
            seed: None,
            console_log: None,
            ssh_socket: None,
            luks_secret: None,
            agent_channel: None,
        });
    }
    Fixture {
        spec: UpSpec {
            pool: Some((pool_xml, storage)),
            networks: Vec::new(),
            machines,
        },
        dir,
        tag,
        pool,
    }
}

fn opts(start: bool) -> UpOptions {
    UpOptions {
        start,
        dry_run: false,
        timeout: Duration::from_secs(60),
    }
}

#[test]
fn up_is_idempotent_status_agrees_and_one_machine_runs() {
    mv_testkit::require_tool("qemu-system-x86_64");
    let (c, mut clean) = common::connect();
    let f = fixture(2, &mut clean);

    // Dry run: a plan, no change.
    let plan = up(
        &c,
        &f.spec,
        &UpOptions {
            dry_run: true,
            ..opts(false)
        },
    )
    .unwrap();
    assert!(
        plan.items.iter().all(|i| i.done == Done::Created),
        "{plan:?}"
    );
    assert!(!c.exists(ObjectKind::Pool, &f.pool).unwrap());
    assert!(!f.spec.machines[0].disks[0].path.exists());

    let r = up(&c, &f.spec, &opts(false)).unwrap();
    let created: Vec<_> = r.items.iter().map(|i| (i.what, i.done)).collect();
    assert_eq!(
        created,
        vec![
            ("disk", Done::Created),
            ("disk", Done::Created),
            ("pool", Done::Created),
            ("domain", Done::Created),
            ("domain", Done::Created)
        ]
    );
    for m in &f.spec.machines {
        assert!(c.exists(ObjectKind::Domain, &m.name).unwrap());
        assert!(m.disks[0].path.is_file());
    }
    let st = status(&c, &f.spec.machines).unwrap();
    assert!(st.iter().all(|s| s.defined
        && s.state == DomainState::ShutOff
        && s.changed_since_render == Some(false)));

    // Second up: nothing to do.
    let again = up(&c, &f.spec, &opts(false)).unwrap();
    assert!(again.nothing_changed(), "{again:?}");

    // Edit a rendered file: status sees it, up updates just that one.
    let m1 = &f.spec.machines[1];
    let volume = format!("{}.qcow2", m1.name);
    write(
        &m1.domain_xml,
        &rendered_domain(&m1.name, &f.pool, &volume, 96),
    );
    let st = status(&c, &f.spec.machines).unwrap();
    assert_eq!(st[1].changed_since_render, Some(true));
    assert_eq!(st[0].changed_since_render, Some(false));
    let r = up(&c, &f.spec, &opts(false)).unwrap();
    let changed: Vec<_> = r.items.iter().filter(|i| i.done.is_change()).collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(
        (changed[0].name.as_str(), changed[0].done),
        (m1.name.as_str(), Done::Updated)
    );
    assert!(c.domain_xml(&m1.name, true).unwrap().contains("98304"));

    // Start only the first machine (an application VM: fresh overlay), for real.
    let one = UpSpec {
        machines: vec![f.spec.machines[0].clone()],
        ..f.spec.clone()
    };
    let r = up(&c, &one, &opts(true)).unwrap();
    assert!(r.items.iter().any(|i| i.done == Done::Refreshed));
    assert!(r
        .items
        .iter()
        .any(|i| i.what == "domain" && i.done == Done::Started));
    let name = &f.spec.machines[0].name;
    assert_eq!(c.domain_state(name).unwrap(), DomainState::Running);
    assert!(c.domain_is_active(name).unwrap());
    // Running again: already running.
    let r = up(&c, &one, &opts(true)).unwrap();
    assert!(r.nothing_changed(), "{r:?}");
    let st = status(&c, &f.spec.machines).unwrap();
    assert_eq!(st[0].state, DomainState::Running);

    // Down: the guest has no OS to answer ACPI. Without force it is left running and the error
    // says so; with force it is powered off after the timeout.
    let names: Vec<String> = f
        .spec
        .machines
        .iter()
        .rev()
        .map(|m| m.name.clone())
        .collect();
    let err = down(&c, &names, Duration::from_millis(500), false, false).unwrap_err();
    assert!(matches!(err, mv_libvirt::UpError::Timeout { .. }), "{err}");
    assert_eq!(c.domain_state(name).unwrap(), DomainState::Running);
    let r = down(&c, &names, Duration::from_millis(500), false, true).unwrap();
    let d: Vec<_> = r.items.iter().map(|i| i.done).collect();
    assert_eq!(d, vec![Done::AlreadyStopped, Done::Destroyed]);
    assert_eq!(c.domain_state(name).unwrap(), DomainState::ShutOff);
    let r = down(&c, &names, Duration::from_millis(500), false, true).unwrap();
    assert!(r.nothing_changed());
    drop(f.dir);
    let _ = f.tag;
}

/// Nothing half-done: the pool is not defined, nor the first machine, nor its disk made.
fn assert_nothing_made(c: &Connection, f: &Fixture) {
    assert!(!c.exists(ObjectKind::Pool, &f.pool).unwrap());
    assert!(!c
        .exists(ObjectKind::Domain, &f.spec.machines[0].name)
        .unwrap());
    assert!(!f.spec.machines[0].disks[0].path.exists());
}

#[test]
fn missing_base_image_changes_nothing() {
    let (c, mut clean) = common::connect();
    let mut f = fixture(2, &mut clean);
    f.spec.machines[1].disks[0].base = f.dir.path().join("images/absent.qcow2");
    f.spec.machines[1].disks[0].base_name = "absent".into();
    let err = up(&c, &f.spec, &opts(false)).unwrap_err();
    let text = chain(&err);
    assert!(text.contains("base image absent is missing"), "{text}");
    assert_nothing_made(&c, &f);
}

#[test]
fn rejected_domain_undoes_the_run() {
    let (c, mut clean) = common::connect();
    let f = fixture(2, &mut clean);
    let bad = &f.spec.machines[1];
    let text = std::fs::read_to_string(&bad.domain_xml).unwrap().replace(
        "<memory unit=\"MiB\">64</memory>",
        "<memory unit=\"MiB\">lots</memory>",
    );
    write(&bad.domain_xml, &text);
    let err = up(&c, &f.spec, &opts(false)).unwrap_err();
    assert!(matches!(err, UpError::Define { .. }), "{err:?}");
    let msg = chain(&err);
    assert!(msg.contains(&bad.domain_xml.display().to_string()), "{msg}");
    assert!(msg.contains("Invalid value 'lots'"), "{msg}");
    // Nothing half-done.
    assert_nothing_made(&c, &f);
}

#[test]
fn name_collision_is_refused() {
    let (c, mut clean) = common::connect();
    let f = fixture(1, &mut clean);
    let m = &f.spec.machines[0];
    // Someone else's domain of the same name (libvirt gives it its own UUID).
    c.define_domain(&common::domain_xml(&m.name)).unwrap();
    let text = std::fs::read_to_string(&m.domain_xml).unwrap().replace(
        "</name>",
        "</name>\n  <uuid>0d8e2b94-6b53-4d5c-9d51-3c1f1c8e7a01</uuid>",
    );
    write(&m.domain_xml, &text);
    let err = up(&c, &f.spec, &opts(false)).unwrap_err();
    assert!(matches!(err, UpError::Collision { .. }), "{err:?}");
    assert!(err.to_string().contains("already exists"));
    assert!(!c.exists(ObjectKind::Pool, &f.pool).unwrap());
    let _: PathBuf = m.domain_xml.clone();
}

/// An encrypted machine: `up` defines its ephemeral private secret, sets the value through the
/// API and creates a LUKS qcow2 overlay; QEMU opens it with the secret (the domain runs); with
/// the secret undefined (what the kill switch does first) libvirt refuses to start it; the next
/// `up` sets it again.
#[test]
fn an_encrypted_disk_starts_only_with_its_secret() {
    mv_testkit::require_tool("qemu-system-x86_64");
    let (c, mut clean) = common::connect();
    let mut f = fixture(1, &mut clean);
    let uuid = format!(
        "6d1c2b3a-0000-4000-8000-{:012x}",
        rand::random::<u64>() & 0xffff_ffff_ffff
    );
    clean.add(ObjectKind::Secret, &uuid);
    let m = &mut f.spec.machines[0];
    m.throwaway = false;
    let volume = format!("{}.qcow2", m.name);
    let plain = rendered_domain(&m.name, &f.pool, &volume, 64);
    write(
        &m.domain_xml,
        &plain.replace(
            "<target dev=\"vda\" bus=\"virtio\"/>\n",
            &format!(
                "<target dev=\"vda\" bus=\"virtio\"/>\n      <encryption format=\"luks\">\n        <secret type=\"passphrase\" uuid=\"{uuid}\"/>\n      </encryption>\n"
            ),
        ),
    );
    let secret_xml = f
        .dir
        .path()
        .join("machines")
        .join(&m.name)
        .join("luks-secret.xml");
    write(
        &secret_xml,
        &format!("<secret ephemeral=\"yes\" private=\"yes\">\n  <uuid>{uuid}</uuid>\n  <description>test</description>\n</secret>\n"),
    );
    let key = mv_core::secret::SecretBytes::new((0u8..64).collect());
    let pass = mv_libvirt::disk_passphrase(&key);
    m.disks[0].luks = Some(pass.clone());
    m.luks_secret = Some(mv_libvirt::LuksSecret {
        xml: secret_xml,
        passphrase: pass,
    });
    let name = m.name.clone();

    let r = up(&c, &f.spec, &opts(false)).unwrap();
    let done: Vec<_> = r.items.iter().map(|i| (i.what, i.done)).collect();
    assert_eq!(
        done,
        vec![
            ("secret", Done::Created),
            ("disk", Done::Created),
            ("pool", Done::Created),
            ("domain", Done::Created)
        ]
    );
    assert_eq!(r.items[0].name, uuid);
    let live = c.xml(ObjectKind::Secret, &uuid, true).unwrap();
    assert!(
        live.contains("ephemeral='yes'") && live.contains("private='yes'"),
        "{live}"
    );
    let info = mv_libvirt::image_info(&f.spec.machines[0].disks[0].path).unwrap();
    assert!(info.encrypted, "{info:?}");
    // Idempotent: the secret is unchanged (its value is set again, silently).
    let again = up(&c, &f.spec, &opts(false)).unwrap();
    assert!(again.nothing_changed(), "{again:?}");

    // Unlocked: QEMU opens the LUKS overlay and the machine runs.
    up(&c, &f.spec, &opts(true)).unwrap();
    assert_eq!(c.domain_state(&name).unwrap(), DomainState::Running);
    c.destroy_domain(&name).unwrap();

    // The secret undefined: libvirt refuses to start it.
    c.undefine(ObjectKind::Secret, &uuid).unwrap();
    let err = c.start_domain(&name).unwrap_err();
    let text = chain(&err);
    assert!(text.contains("secret"), "{text}");
    assert_ne!(c.domain_state(&name).unwrap(), DomainState::Running);
    eprintln!("start without the secret: {text}");

    // `up` after unlocking defines and sets it again; the machine starts.
    let r = up(&c, &f.spec, &opts(true)).unwrap();
    assert_eq!(
        (r.items[0].what, r.items[0].done),
        ("secret", Done::Created)
    );
    assert_eq!(c.domain_state(&name).unwrap(), DomainState::Running);
    c.destroy_domain(&name).unwrap();

    // A wrong value: QEMU cannot open the disk, so the start fails.
    c.set_secret_value(&uuid, b"not the passphrase").unwrap();
    let text = chain(&c.start_domain(&name).unwrap_err());
    assert!(
        text.contains("Invalid password") || text.contains("keyslot"),
        "{text}"
    );
}
