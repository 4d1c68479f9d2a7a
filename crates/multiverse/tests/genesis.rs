//! Genesis, end to end, as a person runs it: a tree from `multiverse init --lab`, an identity
//! restored from the spec's words, the Debian base image from `multiverse image build debian`
//! (cached in `MULTIVERSE_TEST_CACHE`), then `multiverse up --start` on the star router, a service
//! VM and an application VM through a real libvirtd (its own network namespace:
//! `scripts/lab-libvirtd.sh`) under QEMU TCG, each guest provisioned from its seed disk at first
//! boot. Checked through the real virtio-serial channels: each agent answers as its FQDN with
//! exactly the derived SSH host key; `down` stops every guest by ACPI; a second `up --start`
//! boots the same disks without provisioning them again; `multiverse ssh` reaches sshd over the
//! SSH channel with the derived keys both ways; and after the tree's machines, storage and
//! identity are deleted and restored from the 24 words, the star comes back with the same host
//! key, password (checked against its `/etc/shadow`) and onion address (tor's own `hostname`);
//! last, `identity rotate` of the running star gives it new keys over its SSH channel, and its
//! host key, password and onion address are then the new epoch's.
//!
//! One test function (one boot of the three guests) because each boot costs tens of seconds
//! under TCG; the steps are in the order a person takes them.
#![allow(clippy::unwrap_used)]

mod common;

use common::lab::{lab_tree, mvl, Lab};
use common::{mv, output, SPEC_WORDS};
use std::path::Path;
use std::process::Command;

const STAR: &str = "star.router.multiverse";
const SERVICE: &str = "mail.service.multiverse";
const APP: &str = "browser.app.multiverse";
/// A machine no other test starts: guests' channel sockets (`/run/multiverse/agent/<fqdn>.sock`)
/// are per name, so tests that run at once boot different names.
const SILENT: &str = "controller.multiverse";

fn ok(cmd: &mut Command) -> String {
    common::ok(cmd, None)
}

fn status_json(root: &Path, lab: &Lab) -> Vec<serde_json::Value> {
    let text = ok(&mut mvl(
        root,
        lab,
        &["--json", "status", STAR, SERVICE, APP],
    ));
    serde_json::from_str::<Vec<serde_json::Value>>(&text).unwrap()
}

#[test]
fn up_start_boots_provisioned_guests_whose_agents_answer_as_themselves() {
    let image = common::cached_debian_image();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    let lab = Lab::start(&tmp.path().join("lab"));

    // The person's path: init (lab topology: Debian everywhere, no passthrough), identity.
    lab_tree(&root, &image);

    // First up: three seeds written, three guests booted in order, each agent answering.
    let first = ok(&mut mvl(
        &root,
        &lab,
        &["up", "--start", "--timeout", "420", STAR, SERVICE, APP],
    ));
    for m in [STAR, SERVICE, APP] {
        assert!(
            first.contains(&format!("seeded          disk     {m}")),
            "{first}"
        );
        let seed = root.join("machines").join(m).join("seed.img");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&seed).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{}", seed.display());
    }
    let pos = |m: &str| {
        first
            .find(&format!("started         domain   {m}"))
            .unwrap()
    };
    assert!(
        pos(STAR) < pos(SERVICE) && pos(SERVICE) < pos(APP),
        "{first}"
    );

    // Every agent answers over virtio-serial, as its own FQDN, with the derived host key.
    for s in status_json(&root, &lab) {
        let name = s["name"].as_str().unwrap();
        assert_eq!(s["state"], "running", "{s}");
        assert_eq!(s["agent"]["reachable"], true, "{s}");
        assert_eq!(s["agent"]["hostname"], name, "{s}");
        assert_eq!(s["agent"]["host_key_matches"], true, "{s}");
    }
    for m in [STAR, SERVICE, APP] {
        let console = std::fs::read_to_string(root.join("machines").join(m).join("console.log"))
            .unwrap_or_default();
        assert!(console.contains("multiverse-seed: seed"), "{m}: {console}");
    }

    // Down: ACPI only, in reverse order; nothing powered off.
    let down = shut_down(&root, &lab, &[STAR, SERVICE, APP]);
    assert!(!down.contains("powered off"), "{down}");
    for m in [STAR, SERVICE, APP] {
        assert!(
            down.contains(&format!("shut down       domain   {m}")),
            "{down}"
        );
    }

    // Second up: the same disks, no new seed, and the guest skips provisioning.
    let second = ok(&mut mvl(
        &root,
        &lab,
        &["up", "--start", "--timeout", "420", STAR],
    ));
    assert!(!second.contains("seeded"), "{second}");
    // A later boot's agent answers before the seed stage has had its say (the agent waits for
    // nothing), so the stage's "already applied" line comes on the console a little later.
    let console_log = root.join("machines").join(STAR).join("console.log");
    common::wait_for(
        "the seed stage's \"already applied\" on the second boot's console",
        std::time::Duration::from_secs(120),
        || {
            std::fs::read_to_string(&console_log)
                .unwrap_or_default()
                .contains("already applied")
        },
    );
    let star = status_json(&root, &lab)
        .into_iter()
        .find(|s| s["name"] == STAR)
        .unwrap();
    assert_eq!(star["agent"]["hostname"], STAR, "{star}");

    // SSH with the derived keys both ways, over the virtio-serial SSH channel: the guest's sshd
    // must present exactly the derived host key (StrictHostKeyChecking yes) and accept @user's.
    let who = ok(&mut mvl(
        &root,
        &lab,
        &["ssh", STAR, "--", "hostname", "-f"],
    ));
    assert_eq!(who.trim(), STAR);
    star_network_is_up(&root, &lab);
    let fingerprint_before = host_key(&root, &lab, STAR);
    let onion_before = guest_onion(&root, &lab);
    assert_eq!(
        onion_before,
        derived_onion(&root),
        "tor's address is not the derived one"
    );
    assert!(
        root_password_is_derived(&root, &lab),
        "root's password in /etc/shadow is not the derived one"
    );
    shut_down(&root, &lab, &[]);

    // A changed machine: the mail service publishes its sshd, so the star gets a new seed. From
    // its second boot on the star's agent starts before the seed stage (the image enables it), so
    // its first answers come from before the new seed; `up` returns only once the agent reports
    // the seed it wrote, and by then the seed's files are on the star.
    let config = mv_machines::Tree::new(&root).config_file();
    let text = std::fs::read_to_string(&config).unwrap();
    let mail_nic = "networks = [{ network = \"net2\", address = \"10.2.2.20\" }]";
    let published = text.replacen(mail_nic, &format!("{mail_nic}\nonion = [22]"), 1);
    assert_ne!(text, published);
    std::fs::write(&config, published).unwrap();
    let changed = ok(&mut mvl(
        &root,
        &lab,
        &["up", "--start", "--timeout", "420", STAR],
    ));
    assert!(
        changed.contains(&format!("seeded          disk     {STAR}")),
        "{changed}"
    );
    let key = ok(&mut mvl(
        &root,
        &lab,
        &[
            "ssh",
            STAR,
            "--",
            &format!("cat /var/lib/multiverse/seed-id; test -s /var/lib/tor/{SERVICE}/hs_ed25519_secret_key && echo key-there"),
        ],
    ));
    let wanted = std::fs::read_to_string(root.join("machines").join(STAR).join("seed-id")).unwrap();
    assert!(key.starts_with(wanted.trim()), "{key} vs {wanted}");
    assert!(key.contains("key-there"), "{key}");
    shut_down(&root, &lab, &[]);

    // Rebuild from the words: a new host with only multiverse.toml (from git), the base image and
    // the 24 words. `rebuild` restores, renders and keeps the pass store; `up` boots.
    for gone in ["machines", "storage", "identity", "libvirt"] {
        let _ = std::fs::remove_dir_all(root.join(gone));
    }
    let words = root.parent().unwrap().join("words");
    std::fs::write(&words, SPEC_WORDS).unwrap();
    ok(mvl(&root, &lab, &["rebuild", "--no-up", "--words-file"]).arg(&words));
    let again = ok(&mut mvl(
        &root,
        &lab,
        &["up", "--start", "--timeout", "420", STAR],
    ));
    assert!(
        again.contains(&format!("seeded          disk     {STAR}")),
        "{again}"
    );
    assert_eq!(host_key(&root, &lab, STAR), fingerprint_before);
    star_network_is_up(&root, &lab);
    assert_eq!(guest_onion(&root, &lab), onion_before);
    assert!(
        root_password_is_derived(&root, &lab),
        "after the rebuild, root's password is not the derived one"
    );

    // A leaked star key: rotate it while the star runs. The star gets its new keys over its SSH
    // channel (logged in with the old ones), and `rotate` checks it then presents the new host
    // key. Afterwards everything derived matches the new epoch, nothing the old one.
    let rotated = output(&mut mvl(&root, &lab, &["identity", "rotate", STAR]), None);
    let said = common::printed(&rotated);
    assert!(rotated.status.success(), "{said}");
    assert!(
        said.contains(&format!("{STAR}: running, provisioned with the new keys"))
            && said.contains("it presents the new host key")
            && !said.contains("warning"),
        "{said}"
    );
    let fingerprint_after = host_key(&root, &lab, STAR);
    assert_ne!(
        fingerprint_after, fingerprint_before,
        "the host key did not change"
    );
    assert_eq!(
        ok(&mut mvl(
            &root,
            &lab,
            &["ssh", STAR, "--", "hostname", "-f"]
        ))
        .trim(),
        STAR,
        "`multiverse ssh` pins the new host key"
    );
    assert!(
        root_password_is_derived(&root, &lab),
        "after the rotation, root's password is not the new derived one"
    );
    let onion_after = derived_onion(&root);
    assert_ne!(onion_after, onion_before);
    let mut published = String::new();
    for _ in 0..24 {
        published = ok(&mut mvl(
            &root,
            &lab,
            &["ssh", STAR, "--", "cat /var/lib/tor/multiverse/hostname"],
        ));
        if published.trim() == onion_after {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
    assert_eq!(
        published.trim(),
        onion_after,
        "tor did not take the new onion key"
    );
    // The running star holds the seed `up` would write now: `up` finds nothing to do and does not
    // wait for a reboot that never comes.
    let after = ok(&mut mvl(
        &root,
        &lab,
        &["up", "--start", "--timeout", "120", STAR],
    ));
    assert!(!after.contains("seeded"), "{after}");
    shut_down(&root, &lab, &[]);
}

/// `down --timeout 360 NAMES` (every machine when empty), ACPI only. On a failure the test
/// shows each guest's last console lines: what the guest was doing when it ignored the request.
fn shut_down(root: &Path, lab: &Lab, names: &[&str]) -> String {
    let out = output(
        mvl(root, lab, &["down", "--timeout", "360"]).args(names),
        None,
    );
    if !out.status.success() {
        for m in [STAR, SERVICE, APP] {
            let log = root.join("machines").join(m).join("console.log");
            eprintln!("--- {m}:\n{}", mv_libvirt::console_tail(&log, 40));
        }
        panic!("down failed: {out:?}");
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The star's first boot brought up the network its seed wrote: both NICs carry their
/// addresses from multiverse.toml, and the firewall, dnsmasq and tor (which bind those addresses)
/// run. (The seed once ran alongside ifupdown, which then raised only the image's `lo`.)
fn star_network_is_up(root: &Path, lab: &Lab) {
    let text = ok(&mut mvl(
        root,
        lab,
        &[
            "ssh",
            STAR,
            "--",
            "for i in $(seq 120); do systemctl is-active -q nftables dnsmasq tor@default && break; sleep 1; done; ip -4 -br addr; systemctl is-active nftables dnsmasq tor@default",
        ],
    ));
    for want in ["10.1.1.2/", "10.2.2.1/"] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    let states: Vec<&str> = text.lines().rev().take(3).collect();
    assert_eq!(states, ["active"; 3], "{text}");
}

/// Whether root's hash in the star's `/etc/shadow` (read over `multiverse ssh`) verifies the
/// derived machine password.
fn root_password_is_derived(root: &Path, lab: &Lab) -> bool {
    let files = ok(&mut mvl(
        root,
        lab,
        &[
            "ssh",
            STAR,
            "--",
            "cat /etc/passwd; echo ====; cat /etc/shadow; echo ====; cat /etc/group",
        ],
    ));
    let parts: Vec<&str> = files.split("====\n").collect();
    assert_eq!(parts.len(), 3, "{files}");
    let out_dir = root.join("export");
    ok(mv(root)
        .args(["identity", "export", STAR, "--kind", "password", "--out"])
        .arg(&out_dir));
    let password = std::fs::read_to_string(out_dir.join("password")).unwrap();
    std::fs::remove_dir_all(&out_dir).unwrap();
    mv_provision::Accounts::parse(parts[0], parts[2], parts[1])
        .password_verifies("root", password.trim())
}

/// The onion address tor on the star wrote from its provisioned key (tor may still be starting).
fn guest_onion(root: &Path, lab: &Lab) -> String {
    let text = ok(&mut mvl(
        root,
        lab,
        &[
            "ssh",
            STAR,
            "--",
            "for i in $(seq 180); do [ -s /var/lib/tor/multiverse/hostname ] && break; sleep 1; done; cat /var/lib/tor/multiverse/hostname || { journalctl -b -u tor@default --no-pager | tail -40; exit 1; }",
        ],
    ));
    text.trim().to_string()
}

/// The star's onion address as the identity derives it.
fn derived_onion(root: &Path) -> String {
    let out_dir = root.join("onion-export");
    ok(mv(root)
        .args(["identity", "export", STAR, "--kind", "onion", "--out"])
        .arg(&out_dir));
    let hostname = std::fs::read_to_string(out_dir.join("hostname")).unwrap();
    std::fs::remove_dir_all(&out_dir).unwrap();
    hostname.trim().to_string()
}

/// The Ed25519 host key fingerprint the machine's agent reports.
fn host_key(root: &Path, lab: &Lab, machine: &str) -> String {
    let s = status_json(root, lab);
    let m = s.iter().find(|s| s["name"] == machine).unwrap();
    assert_eq!(m["agent"]["host_key_matches"], true, "{m}");
    m["agent"]["ssh_host_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["algorithm"] == "ssh-ed25519")
        .map(|k| k["fingerprint"].as_str().unwrap().to_string())
        .unwrap()
}

#[test]
fn a_guest_whose_agent_never_answers_is_one_clear_error_and_is_powered_off() {
    let image = common::cached_debian_image();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    let lab = Lab::start(&tmp.path().join("lab"));
    lab_tree(&root, &image);
    // No seed: the base image has no agent, so nothing ever answers on the channel.
    let out = output(
        &mut mvl(
            &root,
            &lab,
            &["up", "--start", "--no-provision", "--timeout", "25", SILENT],
        ),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = common::stderr(&out);
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("multiverse: error:"))
            .count(),
        1,
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{SILENT} started, but its agent did not answer within"
        )),
        "{err}"
    );
    assert!(err.contains("powered off again"), "{err}");
    // Powered off, still defined (a complete definition, not a half-made one).
    let st: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&mut mvl(&root, &lab, &["--json", "status", SILENT]))).unwrap();
    let app = st.iter().find(|s| s["name"] == SILENT).unwrap();
    assert_eq!(app["state"], "shut_off", "{app}");
    assert_eq!(app["defined"], true, "{app}");
}

#[test]
fn a_corrupt_base_image_stops_up_before_anything_is_made() {
    mv_testkit::require_tool("qemu-img");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    let lab = Lab::start(&tmp.path().join("lab"));
    let junk = tmp.path().join("junk.qcow2");
    std::fs::write(&junk, b"QFI\xfb this is not a qcow2 image at all").unwrap();
    lab_tree(&root, &junk);
    let out = output(
        &mut mvl(&root, &lab, &["up", "--start", "--no-provision", STAR]),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = common::stderr(&out);
    assert!(err.contains(&format!("disk of {STAR}")), "{err}");
    assert!(!root.join("machines").join(STAR).join("disk.qcow2").exists());
    let listed = Command::new("virsh")
        .args(["-c", &lab.uri, "list", "--all", "--name"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listed.stdout).trim().is_empty(),
        "{listed:?}"
    );
}

/// A tree on a full filesystem: `up` stops at the first write it cannot make, with one line that
/// says what could not be written and why, and leaves no seed, disk or half-written file in the
/// tree and no domain in libvirt. The tree lives on a 24 MiB tmpfs in a mount namespace of its
/// own (the seed carries the multiverse binary, so it cannot fit).
#[test]
fn a_full_disk_stops_up_with_one_clear_line_and_nothing_half_made() {
    mv_testkit::require_tool("unshare");
    let image = common::cached_debian_image();
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let lab = Lab::start(&tmp.path().join("lab"));
    let root = small.join("tree");
    let bin = env!("CARGO_BIN_EXE_multiverse");
    // Inside the namespace: mount the small filesystem, make the tree there, then `up`; the
    // listing of the tree afterwards is printed for the checks below (the mount ends with it).
    let script = format!(
        r#"set -e
mount -t tmpfs -o size=24m tmpfs {small}
{bin} --root {root} init --lab >/dev/null
printf '%s\n' "$WORDS" | {bin} --root {root} identity restore --kdf-memory 1024 --kdf-iterations 1 >/dev/null 2>&1
mkdir -p {root}/images && ln -s {image} {root}/images/debian.qcow2
find {root}/machines {root}/storage -mindepth 1 2>/dev/null | sort > {small}/../before
set +e
{bin} --root {root} up --start {STAR} 2>{small}/../up.err >/dev/null
echo "exit=$?"
find {root}/machines {root}/storage -mindepth 1 2>/dev/null | sort
"#,
        small = small.display(),
        root = root.display(),
        image = image.display(),
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env("WORDS", common::SPEC_WORDS)
        .env("MULTIVERSE_PASSPHRASE", common::PASS)
        .env("MULTIVERSE_CONNECT", &lab.uri)
        .env("MULTIVERSE_ACCEL", "tcg")
        .env_remove("MULTIVERSE_ROOT")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    let err = std::fs::read_to_string(tmp.path().join("up.err")).unwrap();
    assert!(listing.contains("exit=1"), "{listing}\n{err}");
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("multiverse: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        err.contains("No space left on device") || err.contains("no space"),
        "{err}"
    );
    // Nothing half-made: the tree lists exactly what `init` made before `up` (no seed, no disk,
    // no scratch or temp file).
    let before = std::fs::read_to_string(tmp.path().join("before")).unwrap();
    let after: Vec<&str> = listing.lines().skip(1).collect();
    assert_eq!(after, before.lines().collect::<Vec<_>>(), "{err}");
    assert!(err.contains(&format!("seed disk of {STAR}")), "{err}");
    assert!(err.contains("hint:"), "{err}");
    let listed = Command::new("virsh")
        .args(["-c", &lab.uri, "list", "--all", "--name"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listed.stdout).trim().is_empty(),
        "{listed:?}"
    );
}
