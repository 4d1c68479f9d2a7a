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
