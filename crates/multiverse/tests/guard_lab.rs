//! The kill switch for real (issue 16), in the lab VM (`mv-lab`): this machine has no USB bus and
//! no device-mapper; the lab's Debian guest has both.
//!
//! `guard_lab` boots the lab once (a blank disk as `vdb`, the token and a decoy stick, both
//! QEMU `usb-storage` so both `46f4:0001`, the stripped binaries over the shared folder,
//! `init_on_free=1`, `-no-shutdown` so QMP answers after the guest powers off) and checks:
//! 1. `guard arm` through the CLI with the token's `VID:PID:SERIAL` read from the guest's sysfs,
//!    `guard watch` in the background, `guard status` finding it through its pidfile;
//! 2. decoys: the decoy stick (same vendor and product, other serial) removed, another USB device
//!    (a `usb-kbd`) plugged and removed, the token removed while paused (`disarm --for`): no step
//!    runs, the watcher and the host stay up;
//! 3. a control pull with a chain without `clear-memory` and without `power-off`: LUKS
//!    suspended (`dmsetup info`), the stand-in machine gone, the keyring cleared, and the memory
//!    dump still holds the page-cache marker;
//! 4. the real pull (`clear-memory` and `power-off` back): `SUSPENDED` printed by a step after
//!    `luks-suspend`, QMP `SHUTDOWN`, and a memory dump taken after it (RAM kept by
//!    `-no-shutdown`) holds neither marker. Latencies from `device_del` are printed.
//!
//! `guard_lab_bench` (ignored; `bench/guard.sh lab`) repeats the pull `MV_GUARD_LAB_RUNS` times
//! (default 20) with `system_reset` between pulls, alternating the watcher and a usbkill-style
//! `lsusb` poller that runs the same chain, and prints min/median/max.
//!
//! There is no QEMU or libvirt in the lab image: the "machine" is a bash process (holding the
//! process marker in its heap) killed by a `command` step, which stands in for
//! `destroy-domains`; `undefine-secrets` has no libvirtd to talk to and is left out.
//!
//! Timing: the watcher's JSON lines go to a file; just before the pull, `tail -F` copies it to
//! the serial console, whose chunks the lab stamps with their arrival `Instant` (the same clock as
//! `device_del` and the QMP events). So "first action" is when the first `action` line reached
//! the host: an upper bound (the action's own completion, plus `tail` and the serial line).
#![allow(clippy::unwrap_used)]

use mv_lab::{Lab, LabSpec, UsbStick};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MV: &str = env!("CARGO_BIN_EXE_multiverse");
const TOKEN_SERIAL: &str = "MVTOKEN0001";
const DECOY_SERIAL: &str = "MVDECOY0002";
const WATCH_LOG: &str = "/var/log/guard-watch.json";
const GUARD: &str = "multiverse --root /var/multiverse";
/// Markers are computed in the guest, so no command typed on the console carries them.
const PROC_MARKER: &str = "MVGUARDPROC-70007-SECRET";
const FILE_MARKER: &str = "MVGUARDFILE-80008-SECRET";

fn lab_ok(lab: &Lab, cmd: &str) -> String {
    match lab.run(cmd) {
        Ok(o) if o.success() => o.stdout,
        Ok(o) => panic!("`{cmd}` failed ({}):\n{}", o.status, o.stdout),
        Err(e) => panic!("`{cmd}`: {e}"),
    }
}

fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

fn share_dir(dir: &Path) -> PathBuf {
    let share = dir.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let strip = mv_testkit::require_tool("strip");
    let st = Command::new(&strip)
        .arg("-o")
        .arg(share.join("multiverse"))
        .arg(MV)
        .status()
        .unwrap();
    assert!(st.success(), "strip multiverse");
    share
}

fn stick(dir: &Path, id: &str, serial: &str) -> UsbStick {
    let image = dir.join(format!("{id}.img"));
    let f = std::fs::File::create(&image).unwrap();
    f.set_len(16 << 20).unwrap();
    UsbStick {
        id: id.into(),
        image,
        serial: Some(serial.into()),
    }
}

fn boot(dir: &Path, token: &UsbStick, decoy: Option<&UsbStick>) -> Lab {
    for tool in ["qemu-system-x86_64", "mmdebstrap", "mke2fs"] {
        mv_testkit::require_tool(tool);
    }
    let mut usb = vec![token.clone()];
    usb.extend(decoy.cloned());
    let spec = LabSpec {
        memory_mib: 1024,
        usb,
        no_shutdown: true,
        // MV_GUARD_LAB_INIT_ON_FREE=0: without it, so `clear-memory` fills free memory itself.
        append: if std::env::var("MV_GUARD_LAB_INIT_ON_FREE").as_deref() == Ok("0") {
            Vec::new()
        } else {
            vec!["init_on_free=1".into()]
        },
        ..LabSpec::default()
    }
    .blank_disk(64 << 20)
    .share(share_dir(dir));
    let lab = Lab::boot(spec).expect("lab boot");
    eprintln!(
        "lab booted in {:.1} s",
        lab.boot_time().unwrap_or_default().as_secs_f64()
    );
    lab
}

/// Binary in place, LUKS on vdb (formatted anew: the sysrq power-off loses unsynced files, a
/// reset lab may hold an old header with a lost key) opened as `guardlab`, a secret file for
/// `drop-secrets`, a key in root's keyring. Returns the token's `VID:PID:SERIAL`.
fn setup(lab: &Lab) -> String {
    lab_ok(
        lab,
        "set -e
install -m 0755 /mnt/host/multiverse /usr/local/bin/multiverse
head -c 64 /dev/urandom >/root/luks.key
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 \
  --pbkdf-force-iterations 1000 --key-file /root/luks.key /dev/vdb
cryptsetup open --key-file /root/luks.key /dev/vdb guardlab
mkdir -p /run/multiverse/secrets
head -c 32 /dev/urandom >/run/multiverse/secrets/host.key
keyctl add user guardlab-key lab-keyring-secret @u >/dev/null",
    );
    let found = lab_ok(
        lab,
        &format!(
            "for d in /sys/bus/usb/devices/*; do
  [ \"$(cat $d/serial 2>/dev/null)\" = {TOKEN_SERIAL} ] && echo \"TOKEN=$(cat $d/idVendor):$(cat $d/idProduct):{TOKEN_SERIAL}\"
done; true"
        ),
    );
    found
        .lines()
        .find_map(|l| l.trim().strip_prefix("TOKEN="))
        .unwrap_or_else(|| panic!("token not in the guest's sysfs:\n{found}"))
        .to_string()
}

/// The stand-in machine: a bash process holding the process marker in its heap. Returns its pid.
fn start_machine(lab: &Lab) -> u32 {
    let out = lab_ok(
        lab,
        "setsid bash -c 'S=$(printf \"MVGUARDPROC-%s-SECRET\" $((70000 + 7))); \
         while :; do sleep 1; done' >/dev/null 2>&1 </dev/null & echo PID=$!",
    );
    out.lines()
        .find_map(|l| l.trim().strip_prefix("PID=")?.parse().ok())
        .unwrap_or_else(|| panic!("no pid:\n{out}"))
}

/// A file whose only copy in RAM is the page cache (written back, so clean and droppable).
fn write_file_marker(lab: &Lab) {
    lab_ok(
        lab,
        "printf 'MVGUARDFILE-%s-SECRET' $((80000 + 8)) >/var/tmp/secret.txt; sync; \
         cat /var/tmp/secret.txt >/dev/null",
    );
}

/// The chain for this lab: the default chain's order without the libvirt steps (no libvirtd
/// in the lab image); `kill -9` of the stand-in machine where `destroy-domains` would be; a
/// step printing `dmsetup info` on the console right after `luks-suspend`.
fn chain(machine: u32, memory: bool, power_off: bool) -> String {
    let mut s = format!(
        "[[step]]
action = \"drop-secrets\"
paths = [\"/run/multiverse/secrets\", \"/etc/multiverse/agent.token\"]
timeout_ms = 2000

[[step]]
action = \"clear-keyring\"
timeout_ms = 2000

[[step]]
action = \"command\"
argv = [\"kill\", \"-9\", \"{machine}\"]
timeout_ms = 10000

[[step]]
action = \"luks-suspend\"
timeout_ms = 5000

[[step]]
action = \"command\"
argv = [\"sh\", \"-c\", \"dmsetup info guardlab | sed 's/^/DMINFO /' >/dev/ttyS0\"]
timeout_ms = 2000
"
    );
    if memory {
        s += "\n[[step]]\naction = \"clear-memory\"\ntimeout_ms = 20000\n";
    }
    if power_off {
        s += "\n[[step]]\naction = \"power-off\"\ntimeout_ms = 3000\nfallback = [\"poweroff\", \"-f\"]\n";
    }
    s
}

/// `guard arm` through the CLI, then this lab's chain in place of the default `[[step]]` list.
fn arm(lab: &Lab, token: &str, chain: &str) {
    lab_ok(lab, &format!("{GUARD} guard arm --token {token}"));
    lab_ok(
        lab,
        &format!(
            "set -e; f=/var/multiverse/guard/guard.toml
grep -q '^\\[\\[step\\]\\]' $f
sed -n '/^\\[\\[step\\]\\]/q;p' $f >$f.new
cat >>$f.new <<'EOF'
{chain}EOF
chmod 0600 $f.new; mv $f.new $f"
        ),
    );
}

/// Starts `guard watch --json` in the background (output in [`WATCH_LOG`]), waits for `ready`.
fn start_watcher(lab: &Lab) {
    lab_ok(
        lab,
        &format!(
            ": >{WATCH_LOG}; setsid {GUARD} --json guard watch >>{WATCH_LOG} 2>&1 </dev/null &
for i in $(seq 100); do grep -q '\"event\":\"ready\"' {WATCH_LOG} && exit 0; sleep 0.2; done
cat {WATCH_LOG}; exit 1"
        ),
    );
}

fn watch_log(lab: &Lab) -> String {
    lab_ok(lab, &format!("cat {WATCH_LOG}"))
}

/// Nothing fired: no `fire`/`action` line, the watcher still running (`guard status`), host up.
fn assert_quiet(lab: &Lab, what: &str) {
    // udev and the watcher see the removal within ~100 ms; give TCG time.
    std::thread::sleep(Duration::from_secs(2));
    let log = watch_log(lab);
    assert!(
        !log.contains("\"event\":\"fire\"") && !log.contains("\"event\":\"action\""),
        "{what}: the chain ran:\n{log}"
    );
    let status = lab_ok(lab, &format!("{GUARD} --json guard status"));
    assert!(
        status.contains("\"watcher\":\"running\""),
        "{what}: watcher not running:\n{status}\n{log}"
    );
    assert!(
        lab.events().iter().all(|e| e.name != "SHUTDOWN"),
        "{what}: the guest powered off"
    );
    eprintln!("{what}: no step ran, watcher and host up");
}

/// How the removal is noticed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Detector {
    /// `multiverse guard watch` (netlink uevents).
    Watcher,
    /// usbkill's method: `lsusb` every 250 ms, then `multiverse guard fire` (the same chain).
    Poller,
}

/// One pull's latencies from `device_del`, in ms.
#[derive(Debug, Clone, Copy)]
struct Pull {
    deleted: f64,
    first_action: f64,
    shutdown: Option<f64>,
}

/// Pulls the token with the chain already armed (and, for [`Detector::Watcher`], the watcher
/// running); waits for the first `action` line on the console and, with `power_off`, QMP's
/// `SHUTDOWN`.
fn pull(lab: &Lab, detector: Detector, power_off: bool) -> Pull {
    if detector == Detector::Poller {
        lab_ok(
            lab,
            &format!(
                ": >{WATCH_LOG}; base=$(lsusb)
setsid bash -c 'while [ \"$(lsusb)\" = \"$0\" ]; do sleep 0.25; done
  exec {GUARD} --json guard fire >>{WATCH_LOG} 2>&1' \"$base\" >/dev/null 2>&1 </dev/null &"
            ),
        );
    }
    lab_ok(
        lab,
        &format!("setsid tail -n0 -F {WATCH_LOG} >/dev/ttyS0 2>/dev/null </dev/null &"),
    );
    // tail -F has opened the file and seeked to its end before the next command returns.
    lab_ok(lab, "sleep 0.5");
    let sent = lab.remove_token().expect("device_del");
    let deleted = lab
        .wait_device_deleted(mv_lab::TOKEN_ID, Duration::from_secs(30))
        .expect("DEVICE_DELETED");
    let (_, first) = lab
        .wait_for_timed("\"event\":\"action\"", Duration::from_secs(60))
        .expect("the chain's first action on the console");
    let shutdown = power_off.then(|| {
        let e = lab
            .wait_event("SHUTDOWN", Duration::from_secs(120))
            .expect("QMP SHUTDOWN");
        ms(sent, e.at)
    });
    if power_off {
        eprintln!(
            "chain in the guest: {}",
            chain_offsets(&lab.console_tail(60))
        );
    }
    let p = Pull {
        deleted: ms(sent, deleted.at),
        first_action: ms(sent, first),
        shutdown,
    };
    eprintln!("{detector:?} pull: {p:?} (ms from device_del)");
    p
}

/// The last chain's action lines on the console as `step +ms` from its first action (the
/// guest's clock, `at_ns`: when each op ended).
fn chain_offsets(console: &str) -> String {
    let lines: Vec<&str> = console.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.contains("\"event\":\"fire\""))
        .map_or(0, |i| i + 1);
    let mut first = None;
    let mut out = Vec::new();
    for l in &lines[start..] {
        let Some(i) = l.find('{') else { continue };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l[i..].trim()) else {
            continue;
        };
        if v["event"] != "action" {
            continue;
        }
        let Some(at) = v["at_ns"].as_u64() else {
            continue;
        };
        let first = *first.get_or_insert(at);
        out.push(format!(
            "{} +{:.0}",
            v["step"].as_str().unwrap_or("?"),
            (at - first) as f64 / 1e6
        ));
    }
    out.join(", ")
}

fn dump_has(lab: &Lab, dir: &Path, name: &str) -> (bool, bool) {
    let path = dir.join(name);
    lab.dump_memory(&path).expect("dump-guest-memory");
    // grep, not mv_lab::file_contains: the debug build's byte-window search takes about a
    // minute per needle over 1 GiB, grep under a second.
    let grep = mv_testkit::require_tool("grep");
    let has = |needle: &str| {
        let st = Command::new(&grep)
            .args(["-qaF", needle])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.code() == Some(0) || st.code() == Some(1), "grep {st}");
        st.success()
    };
    let found = (has(PROC_MARKER), has(FILE_MARKER));
    let _ = std::fs::remove_file(&path);
    eprintln!(
        "{name}: process marker {}, page-cache marker {}",
        if found.0 { "FOUND" } else { "absent" },
        if found.1 { "FOUND" } else { "absent" }
    );
    found
}

#[test]
fn guard_lab() {
    let dir = tempfile::tempdir().unwrap();
    let token = stick(dir.path(), mv_lab::TOKEN_ID, TOKEN_SERIAL);
    let decoy = stick(dir.path(), "decoy", DECOY_SERIAL);
    let mut lab = boot(dir.path(), &token, Some(&decoy));
    let spec = setup(&lab);
    eprintln!("token: {spec}");
    let machine = start_machine(&lab);
    write_file_marker(&lab);

    // 1. Armed through the CLI, the watcher found through its pidfile.
    arm(&lab, &spec, &chain(machine, false, false));
    start_watcher(&lab);
    let status = lab_ok(&lab, &format!("{GUARD} guard status"));
    eprintln!("guard status:\n{status}");
    let pid = lab_ok(&lab, "cat /var/multiverse/guard/watch.pid");
    let pid = pid.split_whitespace().next().unwrap().to_string();
    assert!(
        status.contains(&pid) && status.contains("running"),
        "status does not name the watcher {pid}:\n{status}"
    );

    // 2. Decoys.
    lab.remove_usb("decoy").unwrap();
    lab.wait_device_deleted("decoy", Duration::from_secs(30))
        .unwrap();
    assert_quiet(&lab, "decoy stick (token's VID:PID, other serial) removed");

    lab.qmp(
        "device_add",
        json!({"driver": "usb-kbd", "id": "kbd", "bus": "xhci.0"}),
    )
    .unwrap();
    lab_ok(
        &lab,
        "for i in $(seq 50); do lsusb | grep -q 0627:0001 && exit 0; sleep 0.2; done; lsusb; exit 1",
    );
    lab.remove_usb("kbd").unwrap();
    lab.wait_device_deleted("kbd", Duration::from_secs(30))
        .unwrap();
    assert_quiet(&lab, "another USB device (usb-kbd) plugged and removed");

    lab_ok(&lab, &format!("{GUARD} guard disarm --for 10m"));
    lab.remove_token().unwrap();
    lab.wait_device_deleted(mv_lab::TOKEN_ID, Duration::from_secs(30))
        .unwrap();
    assert_quiet(&lab, "token removed while paused");
    assert!(watch_log(&lab).contains("\"event\":\"disarmed-ignore\""));
    lab.add_usb(&token).unwrap();
    lab_ok(
        &lab,
        &format!(
            "for i in $(seq 50); do grep -qs {TOKEN_SERIAL} /sys/bus/usb/devices/*/serial && exit 0; sleep 0.2; done; exit 1"
        ),
    );
    lab_ok(&lab, &format!("{GUARD} guard arm --token {spec}"));

    // 3. The control pull: no clear-memory, no power-off.
    let control = pull(&lab, Detector::Watcher, false);
    lab_ok(
        &lab,
        "for i in $(seq 150); do pgrep -f 'guard watch' >/dev/null || { pkill -x tail; exit 0; }; sleep 0.2; done; exit 1",
    );
    let log = watch_log(&lab);
    eprintln!("control chain:\n{log}");
    let dm = lab_ok(&lab, "dmsetup info guardlab");
    assert!(dm.contains("SUSPENDED"), "not suspended:\n{dm}");
    let gone = lab.run(&format!("kill -0 {machine}")).unwrap();
    assert!(!gone.success(), "the stand-in machine still runs");
    let keys = lab_ok(&lab, "keyctl list @u");
    assert!(
        !keys.contains("guardlab-key"),
        "keyring not cleared:\n{keys}"
    );
    let secrets = lab_ok(&lab, "ls -A /run/multiverse/secrets 2>/dev/null; true");
    assert!(secrets.trim().is_empty(), "secrets left: {secrets}");
    let (_, file_found) = dump_has(&lab, dir.path(), "control.dump");
    assert!(
        file_found,
        "control: the page-cache marker should survive a chain without clear-memory"
    );

    // 4. The real pull.
    lab_ok(
        &lab,
        "cryptsetup luksResume --key-file /root/luks.key guardlab; \
         dmsetup info guardlab | grep -q ACTIVE; \
         mkdir -p /run/multiverse/secrets; head -c 32 /dev/urandom >/run/multiverse/secrets/host.key",
    );
    let machine = start_machine(&lab);
    write_file_marker(&lab);
    lab.add_usb(&token).unwrap();
    lab_ok(
        &lab,
        &format!(
            "for i in $(seq 50); do grep -qs {TOKEN_SERIAL} /sys/bus/usb/devices/*/serial && exit 0; sleep 0.2; done; exit 1"
        ),
    );
    arm(&lab, &spec, &chain(machine, true, true));
    start_watcher(&lab);
    let (proc_before, file_before) = dump_has(&lab, dir.path(), "before.dump");
    assert!(
        proc_before && file_before,
        "the markers are not in memory before the pull"
    );
    let real = pull(&lab, Detector::Watcher, true);
    lab.wait_for("SUSPENDED", Duration::from_secs(5))
        .expect("dmsetup info SUSPENDED printed by the step after luks-suspend");
    eprintln!(
        "the real chain, as the console showed it:\n{}",
        lab.console_tail(16)
    );
    let (proc_after, file_after) = dump_has(&lab, dir.path(), "after.dump");
    assert!(
        !proc_after && !file_after,
        "a marker survived the chain (process {proc_after}, page cache {file_after})"
    );
    eprintln!(
        "device_del -> first action: control {:.0} ms, real {:.0} ms; -> SHUTDOWN {:.0} ms",
        control.first_action,
        real.first_action,
        real.shutdown.unwrap()
    );
    lab.power_off().unwrap();
    assert!(!Path::new(&format!("/proc/{}", lab.pid())).exists());
}

fn stats(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return "-".into();
    }
    format!(
        "{:8.0} {:8.0} {:8.0}",
        v[0],
        v[(v.len() - 1) / 2],
        v[v.len() - 1]
    )
}

/// `bench/guard.sh lab`: `MV_GUARD_LAB_RUNS` pulls (default 20) for each detector, with a
/// `system_reset` after each power-off.
#[test]
#[ignore = "the lab benchmark: bench/guard.sh lab"]
fn guard_lab_bench() {
    let runs: usize = std::env::var("MV_GUARD_LAB_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let token = stick(dir.path(), mv_lab::TOKEN_ID, TOKEN_SERIAL);
    let mut lab = boot(dir.path(), &token, None);
    let mut results: Vec<(Detector, Pull)> = Vec::new();
    for i in 0..runs * 2 {
        let detector = if i % 2 == 0 {
            Detector::Watcher
        } else {
            Detector::Poller
        };
        if i > 0 {
            let t = Instant::now();
            lab.qmp("system_reset", serde_json::Value::Null).unwrap();
            lab.qmp("cont", serde_json::Value::Null).unwrap();
            lab.attach_shell(Duration::from_secs(300)).unwrap();
            lab_ok(
                &lab,
                "mount -t 9p -o trans=virtio,version=9p2000.L,ro host /mnt/host",
            );
            lab.add_usb(&token).unwrap();
            lab_ok(
                &lab,
                &format!(
                    "for i in $(seq 50); do grep -qs {TOKEN_SERIAL} /sys/bus/usb/devices/*/serial && exit 0; sleep 0.2; done; exit 1"
                ),
            );
            eprintln!("reset to shell: {:.1} s", t.elapsed().as_secs_f64());
        }
        let spec = setup(&lab);
        let machine = start_machine(&lab);
        arm(&lab, &spec, &chain(machine, true, true));
        if detector == Detector::Watcher {
            start_watcher(&lab);
        }
        results.push((detector, pull(&lab, detector, true)));
    }
    lab.power_off().unwrap();
    println!("\nlab (TCG, 1 vCPU): ms from QMP device_del, {runs} pulls each (min / median / max)");
    let mut deleted: Vec<f64> = results.iter().map(|r| r.1.deleted).collect();
    println!("QMP DEVICE_DELETED (all pulls): {}", stats(&mut deleted));
    println!(
        "{:<46} {:>26} {:>26}",
        "detector", "-> first action", "-> SHUTDOWN"
    );
    for (d, name) in [
        (Detector::Watcher, "multiverse guard watch (netlink)"),
        (
            Detector::Poller,
            "usbkill-style lsusb poll 250 ms, same chain",
        ),
    ] {
        let mut first: Vec<f64> = results
            .iter()
            .filter(|r| r.0 == d)
            .map(|r| r.1.first_action)
            .collect();
        let mut down: Vec<f64> = results
            .iter()
            .filter(|r| r.0 == d)
            .filter_map(|r| r.1.shutdown)
            .collect();
        println!("{name:<46} {} {}", stats(&mut first), stats(&mut down));
    }
}
