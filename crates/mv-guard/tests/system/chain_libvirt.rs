//! The chain's `undefine-secrets` step for real, against a libvirtd of its own
//! (`scripts/lab-libvirtd.sh`: private mount and network namespace, its own copy of
//! /etc/libvirt), so undefining *every* secret touches nothing of this machine's libvirtd.
#![allow(clippy::unwrap_used)]

use mv_guard::chain::{Action, Chain, Env, Status, Step};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Lab {
    dir: tempfile::TempDir,
    script: PathBuf,
}

impl Lab {
    fn start() -> (Lab, String) {
        mv_testkit::require_tool("libvirtd");
        let script = mv_testkit::workspace_root().join("scripts/lab-libvirtd.sh");
        let dir = tempfile::tempdir().unwrap();
        let uri = mv_testkit::run_ok(
            Command::new("bash")
                .arg(&script)
                .arg(dir.path())
                .arg("start"),
        );
        (Lab { dir, script }, uri.trim().to_string())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg(self.dir.path())
            .arg("stop")
            .status();
    }
}

fn virsh(uri: &str, args: &[&str]) -> String {
    mv_testkit::run_ok(Command::new("virsh").arg("-c").arg(uri).args(args))
}

fn define_secret(uri: &str, dir: &Path, uuid: &str, ephemeral: &str) {
    let xml = dir.join(format!("{uuid}.xml"));
    std::fs::write(
        &xml,
        format!(
            "<secret ephemeral='{ephemeral}' private='yes'>\n  <uuid>{uuid}</uuid>\n  \
             <description>mv-guard test</description>\n</secret>\n"
        ),
    )
    .unwrap();
    virsh(uri, &["secret-define", xml.to_str().unwrap()]);
    let value = dir.join(format!("{uuid}.value"));
    std::fs::write(&value, b"a disk key that must go").unwrap();
    virsh(
        uri,
        &[
            "secret-set-value",
            uuid,
            "--file",
            value.to_str().unwrap(),
            "--plain",
        ],
    );
}

#[test]
fn undefine_secrets_drops_every_libvirt_secret() {
    mv_testkit::require_tool("virsh");
    let (lab, uri) = Lab::start();
    let uuids = [
        "5b0c1d7e-16aa-4c1e-9d55-000000000001",
        "5b0c1d7e-16aa-4c1e-9d55-000000000002",
    ];
    define_secret(&uri, lab.dir.path(), uuids[0], "yes");
    define_secret(&uri, lab.dir.path(), uuids[1], "no");
    let listed = virsh(&uri, &["secret-list"]);
    assert!(uuids.iter().all(|u| listed.contains(u)), "{listed}");

    let chain = Chain {
        steps: vec![Step {
            action: Action::UndefineSecrets { uri: uri.clone() },
            timeout_ms: 60_000,
            fallback: None,
        }],
        env: Env::default(),
    };
    // Dry-run lists (read-only) and records; nothing is undefined.
    let rec = chain.run(true, |_| {});
    let lines: Vec<&str> = rec.iter().map(|r| r.command.as_str()).collect();
    let want: Vec<String> = uuids
        .iter()
        .map(|u| {
            format!(
                "virsh -c {} secret-undefine {u}",
                mv_guard::chain::Op::Exec(vec![uri.clone()])
            )
        })
        .collect();
    // (The lab's /etc/libvirt is a copy of this machine's: it may hold other secrets too.)
    for w in &want {
        assert!(lines.contains(&w.as_str()), "{w} not in {rec:?}");
    }
    assert!(rec.iter().all(|r| r.status == Status::DryRun));
    assert!(virsh(&uri, &["secret-list"]).contains(uuids[0]));

    let started = std::time::Instant::now();
    let rec = chain.run(false, |_| {});
    eprintln!(
        "undefine-secrets: {} secrets in {} ms",
        rec.len(),
        started.elapsed().as_millis()
    );
    assert!(rec.iter().all(|r| r.status == Status::Ok), "{rec:?}");
    assert!(rec.len() >= 2, "{rec:?}");
    let listed = virsh(&uri, &["secret-list"]);
    assert!(
        mv_guard::chain::parse_secret_list(&listed).is_empty(),
        "{listed}"
    );
    // A second run finds nothing to do.
    let rec = chain.run(false, |_| {});
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].command, "(nothing to do)");
}

/// The default chain's host-side steps for real, in their order, on a lab libvirtd running a
/// machine whose disk is a LUKS qcow2 keyed by a libvirt secret (as `up` makes the controller's):
/// the secret is undefined first, the key in the kernel keyring is cleared, the machine is
/// destroyed, and afterwards libvirt refuses to start it. The kernel-wide parts write into a
/// fixture procfs here (drop_caches, compact_memory, sysrq), and `drop-secrets` is left out: its
/// `pass lock --all` reaches every session cache on this machine.
#[test]
fn the_chain_kills_an_encrypted_machine_for_good() {
    mv_testkit::require_tool("virsh");
    let qemu_img = mv_testkit::require_tool("qemu-img");
    mv_testkit::require_tool("qemu-system-x86_64");
    let keyctl = mv_testkit::require_tool("keyctl");
    let (lab, uri) = Lab::start();
    let d = lab.dir.path();
    let uuid = "5b0c1d7e-16aa-4c1e-9d55-0000000000e1";
    let name = format!("mvg-{}", std::process::id());

    // The secret and the encrypted disk.
    define_secret(&uri, d, uuid, "yes");
    let pass = d.join(format!("{uuid}.value"));
    let disk = d.join("disk.qcow2");
    mv_testkit::run_ok(
        Command::new(&qemu_img)
            .args(["create", "-q", "--object"])
            .arg(format!("secret,id=k,format=raw,file={}", pass.display()))
            .args([
                "-o",
                "encrypt.format=luks,encrypt.key-secret=k,encrypt.iter-time=10",
                "-f",
                "qcow2",
            ])
            .arg(&disk)
            .arg("16M"),
    );
    let xml = d.join("domain.xml");
    std::fs::write(
        &xml,
        format!(
            "<domain type='qemu'>\n  <name>{name}</name>\n  <memory unit='MiB'>64</memory>\n  \
             <vcpu>1</vcpu>\n  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n  </os>\n  \
             <features>\n    <acpi/>\n  </features>\n  <devices>\n    \
             <emulator>/usr/bin/qemu-system-x86_64</emulator>\n    \
             <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      \
             <source file='{}'/>\n      <target dev='vda' bus='virtio'/>\n      \
             <encryption format='luks'>\n        <secret type='passphrase' uuid='{uuid}'/>\n      \
             </encryption>\n    </disk>\n  </devices>\n</domain>\n",
            disk.display()
        ),
    )
    .unwrap();
    virsh(&uri, &["define", xml.to_str().unwrap()]);
    virsh(&uri, &["start", &name]);
    assert!(virsh(&uri, &["list", "--name", "--state-running"]).contains(&name));

    // A key in a keyring of the test's own (root's @u is shared with the machine).
    let kc = |args: &[&str]| {
        mv_testkit::run_ok(Command::new(&keyctl).args(args))
            .trim()
            .to_string()
    };
    let ring = kc(&[
        "newring",
        &format!("mv-guard-chain-{}", std::process::id()),
        "@u",
    ]);
    kc(&["add", "user", "mv-guard-marker", "s3cret-marker", &ring]);

    // Fixture procfs: the command line has init_on_free=1 (no fill), and every file exists.
    let proc_root = d.join("proc");
    std::fs::create_dir_all(proc_root.join("sys/vm")).unwrap();
    std::fs::create_dir_all(proc_root.join("sys/kernel")).unwrap();
    std::fs::write(proc_root.join("cmdline"), "ro init_on_free=1\n").unwrap();
    let mut steps = mv_guard::chain::default_steps();
    steps.retain(|s| !matches!(s.action, Action::DropSecrets { .. }));
    for s in &mut steps {
        s.timeout_ms = 60_000;
        match &mut s.action {
            Action::UndefineSecrets { uri: u } | Action::DestroyDomains { uri: u } => {
                *u = uri.clone();
            }
            Action::ClearKeyring { keyrings } => *keyrings = vec![ring.clone()],
            _ => {}
        }
    }
    let chain = Chain {
        steps,
        env: Env {
            sys: d.join("sys"),
            proc_root: proc_root.clone(),
            filler: None,
        },
    };
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let rec = chain.run(false, |_| {});
    eprintln!(
        "chain on the lab, ms after the start when each op ended: {}",
        rec.iter()
            .map(|r| format!(
                "{} {:.1}",
                r.step,
                (r.at_ns.saturating_sub(t0)) as f64 / 1e6
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let p = proc_root.display().to_string();
    let got: Vec<(&str, &str)> = rec
        .iter()
        .map(|r| (r.step.as_str(), r.command.as_str()))
        .collect();
    let undefine = format!(
        "virsh -c {} secret-undefine {uuid}",
        mv_guard::chain::Op::Exec(vec![uri.clone()])
    );
    let destroy = format!(
        "virsh -c {} destroy {name}",
        mv_guard::chain::Op::Exec(vec![uri.clone()])
    );
    let keyring = format!("keyctl clear {ring}");
    let (drop_caches, compact, sysrq, trigger) = (
        format!("echo 3 > {p}/sys/vm/drop_caches"),
        format!("echo 1 > {p}/sys/vm/compact_memory"),
        format!("echo 1 > {p}/sys/kernel/sysrq"),
        format!("echo o > {p}/sysrq-trigger"),
    );
    // (The lab's /etc/libvirt is a copy of this machine's: other secrets may go too.)
    let ours: Vec<(&str, &str)> = got
        .iter()
        .copied()
        .filter(|(s, c)| *s != "undefine-secrets" || *c == undefine)
        .collect();
    assert_eq!(
        ours,
        vec![
            ("undefine-secrets", undefine.as_str()),
            ("clear-keyring", keyring.as_str()),
            ("destroy-domains", destroy.as_str()),
            ("luks-suspend", "(nothing to do)"),
            ("clear-memory", drop_caches.as_str()),
            ("clear-memory", compact.as_str()),
            ("power-off", sysrq.as_str()),
            ("power-off", trigger.as_str()),
        ],
        "{rec:?}"
    );
    assert!(rec.iter().all(|r| r.status == Status::Ok), "{rec:?}");
    assert_eq!(
        std::fs::read_to_string(proc_root.join("sysrq-trigger")).unwrap(),
        "o"
    );

    // After: no secret, no active machine, the key gone, and the machine cannot start again.
    assert!(mv_guard::chain::parse_secret_list(&virsh(&uri, &["secret-list"])).is_empty());
    // Not active at all (a paused domain would be listed too).
    assert!(!virsh(&uri, &["list", "--name"]).contains(&name));
    assert_eq!(kc(&["list", &ring]), "keyring is empty");
    kc(&["unlink", &ring, "@u"]);
    let o = Command::new("virsh")
        .args(["-c", &uri, "start", &name])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Secret not found"), "{err}");
    virsh(&uri, &["undefine", &name]);
}
