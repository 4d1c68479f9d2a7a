//! The kill switch for real (issue 16), in the lab VM (`mv-lab`): this machine has no USB bus and
//! no device-mapper; the lab's Debian guest has both.
//!
//! `guard_lab` boots the lab once from a lab image with libvirt and QEMU ([`LIBVIRT_PACKAGES`],
//! cached beside the default lab image), with a blank disk as `vdb`, the token and a decoy stick
//! (both QEMU `usb-storage`, so both `46f4:0001`), the stripped `multiverse` and
//! `multiverse-agent` over the shared folder, `init_on_free=1` and `-no-shutdown` (QMP answers
//! after the guest powers off). In the guest: `libvirtd` (`qemu:///system`) with a libvirt
//! secret shaped as `up` defines the controller's LUKS secret (ephemeral, private, a value set)
//! and a tiny TCG domain (32 MiB, no disk) started `--paused`, holding the domain marker in its
//! QEMU process (a `fw_cfg` file QEMU reads into its memory; the file is then deleted and the
//! page cache dropped); the real `multiverse-agent` on TCP with a token file holding the agent
//! marker, and one authenticated request. It checks:
//! 1. `guard arm` through the CLI with the token's `VID:PID:SERIAL` read from the guest's sysfs,
//!    `guard watch` in the background, `guard status` finding it through its pidfile;
//! 2. decoys: the decoy stick (same vendor and product, other serial) removed, another USB device
//!    (a `usb-kbd`) plugged and removed, the token removed while paused (`disarm --for`): no step
//!    runs, the watcher and the host stay up;
//! 3. a control pull with a chain without `clear-memory` and without `power-off`: `virsh
//!    secret-list` empty, the domain shut off and no QEMU process left, the agent gone, LUKS
//!    suspended (`dmsetup info`), the keyring cleared, and the memory dump still holds the
//!    page-cache marker;
//! 4. the real pull (`clear-memory` and `power-off` back): the domain's and the agent's markers
//!    found in their processes' memory (`/proc/PID/mem`) and in a dump just before the pull;
//!    `SUSPENDED` printed by a step after `luks-suspend`, QMP `SHUTDOWN`, and a memory dump taken
//!    after it (RAM kept by `-no-shutdown`) holds none of the three markers. Latencies from
//!    `device_del` are printed.
//!
//! The chain is the default one ([`mv_guard::chain::default_steps`]), in its order and with its
//! real libvirt steps (`undefine-secrets`, `destroy-domains` on `qemu:///system`), plus a step
//! printing `dmsetup info` on the console after `luks-suspend`; only the timeouts of the libvirt
//! steps are longer (virsh and QEMU's exit under nested TCG).
//!
//! `guard_lab_bench` (ignored; `bench/guard.sh lab`) repeats the pull `MV_GUARD_LAB_RUNS` times
//! (default 20) with `system_reset` between pulls, alternating the watcher and a usbkill-style
//! `lsusb` poller that runs the same chain, and prints min/median/max.
//!
//! Timing: the watcher's JSON lines go to a file; just before the pull, `tail -F` copies it to
//! the serial console, whose chunks the lab stamps with their arrival `Instant` (the same clock as
//! `device_del` and the QMP events). So "first action" is when the first `action` line reached
//! the host: an upper bound (the action's own completion, plus `tail` and the serial line).
#![allow(clippy::unwrap_used)]

use mv_guard::chain::{default_steps, Action, Step};
use mv_lab::{Boot, ImageSpec, Lab, LabSpec, UsbStick};
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
const DOMAIN_MARKER: &str = "MVGUARDDOM-60006-SECRET";
const FILE_MARKER: &str = "MVGUARDFILE-80008-SECRET";
const AGENT_MARKER: &str = "MVGUARDAGENT-90009-SECRET";
/// The lab image's packages beyond the default lab image (recommends are not installed):
/// `libvirtd` with its QEMU driver, `virsh`, QEMU.
const LIBVIRT_PACKAGES: &[&str] = &["libvirt-clients", "libvirt-daemon", "qemu-system-x86"];
const URI: &str = "qemu:///system";
const DOMAIN: &str = "guardlab-vm";
/// Fixed, so a second `define` (the benchmark's, after a reset kept the first definition on the
/// lab's disk) updates the domain rather than conflicting with it.
const DOMAIN_UUID: &str = "c647a445-ef17-8e16-bb16-00000000d016";
/// The libvirt secret, shaped as `up` defines a machine's LUKS secret
/// (`templates/luks-secret.xml.j2`: ephemeral, private).
const SECRET_UUID: &str = "c647a445-ef17-8e16-bb16-00000000a016";

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

/// The agent binary sits next to `multiverse` in the target folder; built if this test runs
/// alone.
fn agent_bin() -> PathBuf {
    let p = Path::new(MV).with_file_name("multiverse-agent");
    if !p.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        mv_testkit::run_ok(Command::new(cargo).args(["build", "-p", "multiverse-agent"]));
    }
    p
}

fn share_dir(dir: &Path) -> PathBuf {
    let share = dir.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let strip = mv_testkit::require_tool("strip");
    for (name, src) in [
        ("multiverse", PathBuf::from(MV)),
        ("multiverse-agent", agent_bin()),
    ] {
        let st = Command::new(&strip)
            .arg("-o")
            .arg(share.join(name))
            .arg(&src)
            .status()
            .unwrap();
        assert!(st.success(), "strip {name}");
    }
    share
}

/// `MV_GUARD_LAB_INIT_ON_FREE=0`: the lab boots without `init_on_free=1`, so `clear-memory`
/// fills free memory itself.
fn without_init_on_free() -> bool {
    std::env::var("MV_GUARD_LAB_INIT_ON_FREE").as_deref() == Ok("0")
}

/// The lab image with libvirt and QEMU, built on first use (its build time is printed).
fn libvirt_image() -> mv_lab::LabImage {
    let t = Instant::now();
    let spec = ImageSpec {
        extra_packages: LIBVIRT_PACKAGES.iter().map(|s| s.to_string()).collect(),
    };
    let img =
        mv_lab::cached_image(&spec, &mv_lab::test_cache_dir()).expect("the lab image with libvirt");
    eprintln!(
        "lab image with libvirt + QEMU: {} ({:.1} s)",
        img.dir.display(),
        t.elapsed().as_secs_f64()
    );
    img
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
        boot: Boot::Image(libvirt_image()),
        usb,
        no_shutdown: true,
        // MV_GUARD_LAB_INIT_ON_FREE=0: without it, so `clear-memory` fills free memory itself.
        append: if without_init_on_free() {
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
install -m 0755 /mnt/host/multiverse-agent /usr/local/bin/multiverse-agent
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
    let token = found
        .lines()
        .find_map(|l| l.trim().strip_prefix("TOKEN="))
        .unwrap_or_else(|| panic!("token not in the guest's sysfs:\n{found}"))
        .to_string();
    start_libvirt(lab);
    token
}

fn lab_slow(lab: &Lab, cmd: &str, limit: Duration) -> String {
    match lab.run_timeout(cmd, limit) {
        Ok(o) if o.success() => o.stdout,
        Ok(o) => panic!("`{cmd}` failed ({}):\n{}", o.status, o.stdout),
        Err(e) => panic!("`{cmd}`: {e}"),
    }
}

/// `libvirtd` on `qemu:///system` (no systemd unit: started by hand; root's socket without
/// polkit; QEMU as root without a security driver or mount namespace, its output to a file
/// rather than through virtlogd; the `libvirt-qemu` account its QEMU driver looks up at start,
/// which only `libvirt-daemon-system`'s scripts would create) and the domain defined: 32 MiB, TCG, no disk, no devices but
/// a `fw_cfg` file, the domain marker's carrier.
fn start_libvirt(lab: &Lab) {
    let t = Instant::now();
    lab_slow(
        lab,
        &format!(
            "set -e
mkdir -p /etc/libvirt /var/lib/guardlab
printf '%s\\n' 'auth_unix_ro = \"none\"' 'auth_unix_rw = \"none\"' >/etc/libvirt/libvirtd.conf
cat >/etc/libvirt/qemu.conf <<'EOF'
user = \"root\"
group = \"root\"
dynamic_ownership = 0
remember_owner = 0
security_driver = \"none\"
namespaces = []
stdio_handler = \"file\"
EOF
cat >/var/lib/guardlab/{DOMAIN}.xml <<'EOF'
<domain type='qemu'>
  <name>{DOMAIN}</name>
  <uuid>{DOMAIN_UUID}</uuid>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <sysinfo type='fwcfg'>
    <entry name='opt/org.multiverse/marker' file='/var/lib/guardlab/marker'/>
  </sysinfo>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null ||
  useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
pidof libvirtd >/dev/null || libvirtd -d
for i in $(seq 300); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.2; done
virsh -q -c {URI} define /var/lib/guardlab/{DOMAIN}.xml >/dev/null"
        ),
        Duration::from_secs(600),
    );
    eprintln!(
        "libvirtd started and {DOMAIN} defined in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

/// The libvirt secret with a value (from a file made in the guest, then removed).
fn define_secret(lab: &Lab) {
    lab_slow(
        lab,
        &format!(
            "set -e
cat >/var/lib/guardlab/secret.xml <<'EOF'
<secret ephemeral=\"yes\" private=\"yes\">
  <uuid>{SECRET_UUID}</uuid>
  <description>LUKS key of the disks of {DOMAIN} (Multiverse guard lab)</description>
</secret>
EOF
virsh -q -c {URI} secret-define /var/lib/guardlab/secret.xml >/dev/null
(umask 077; head -c 64 /dev/urandom >/root/secret.value)
virsh -q -c {URI} secret-set-value {SECRET_UUID} --file /root/secret.value --plain >/dev/null
shred -u /root/secret.value
virsh -q -c {URI} secret-list | grep -q {SECRET_UUID}"
        ),
        Duration::from_secs(300),
    );
}

/// Starts the domain paused (it costs no CPU): its QEMU reads the marker file (computed here)
/// into its memory as a `fw_cfg` entry; the file is then deleted and the page cache dropped, so
/// the QEMU process holds the only copy. Returns QEMU's pid.
fn start_domain(lab: &Lab) -> u32 {
    let t = Instant::now();
    let out = lab_slow(
        lab,
        &format!(
            "set -e
printf 'MVGUARDDOM-%s-SECRET' $((60000 + 6)) >/var/lib/guardlab/marker
virsh -q -c {URI} start --paused {DOMAIN} >/dev/null
rm /var/lib/guardlab/marker; sync; echo 3 >/proc/sys/vm/drop_caches
virsh -q -c {URI} domstate {DOMAIN}
echo PID=$(pidof -s qemu-system-x86_64)"
        ),
        Duration::from_secs(300),
    );
    assert!(out.contains("paused"), "{DOMAIN} not paused:\n{out}");
    let pid = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("PID=")?.parse().ok())
        .unwrap_or_else(|| panic!("no QEMU pid:\n{out}"));
    eprintln!(
        "{DOMAIN} started paused (QEMU pid {pid}) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    pid
}

/// The real agent on TCP; its token file holds the agent marker (computed here) followed by 32
/// random hex digits (the agent wants at least 32 bytes), and one
/// authenticated request puts the token in its request buffers too. Returns its pid.
fn start_agent(lab: &Lab) -> u32 {
    let out = lab_slow(
        lab,
        "set -e
mkdir -p /etc/multiverse
(umask 077; printf 'MVGUARDAGENT-%s-SECRET-%s' $((90000 + 9)) \\
  \"$(od -An -tx1 -N16 /dev/urandom | tr -d ' \\n')\" >/etc/multiverse/agent.token)
cat >/etc/multiverse/agent.toml <<'EOF'
role = \"service\"
[api]
socket = \"\"
tcp = \"127.0.0.1:7700\"
token_file = \"/etc/multiverse/agent.token\"
EOF
multiverse-agent --config /etc/multiverse/agent.toml --check
setsid multiverse-agent --config /etc/multiverse/agent.toml >/var/log/agent.log 2>&1 </dev/null &
for i in $(seq 300); do grep -q ready /var/log/agent.log && break; sleep 0.2; done
cat /var/log/agent.log
bash -c 'exec 3<>/dev/tcp/127.0.0.1/7700
printf \"GET /v1/info HTTP/1.1\\r\\nHost: lab\\r\\nAuthorization: Bearer %s\\r\\nConnection: close\\r\\n\\r\\n\" \"$(cat /etc/multiverse/agent.token)\" >&3
head -n1 <&3'
echo PID=$(pidof -s multiverse-agent)",
        Duration::from_secs(300),
    );
    assert!(
        out.contains("HTTP/1.1 200"),
        "the agent did not answer the authenticated request:\n{out}"
    );
    out.lines()
        .find_map(|l| l.trim().strip_prefix("PID=")?.parse().ok())
        .unwrap_or_else(|| panic!("no agent pid:\n{out}"))
}

/// Whether process `pid`'s readable memory (`/proc/PID/mem`, region by region) holds the
/// marker that `printf`'s arguments `marker_printf` make in the guest.
fn mem_has(lab: &Lab, pid: u32, marker_printf: &str) -> bool {
    let out = lab_slow(
        lab,
        &format!(
            "m=$(printf {marker_printf}); found=0
while read -r range perms _ _ _ name; do
  case $perms in r*) ;; *) continue ;; esac
  case $name in '[vsyscall]'|'[vvar]') continue ;; esac
  s=$((16#${{range%-*}})); e=$((16#${{range#*-}}))
  if dd if=/proc/{pid}/mem bs=4096 skip=$((s / 4096)) count=$(((e - s) / 4096)) 2>/dev/null \\
     | grep -qaF \"$m\"; then found=1; break; fi
done </proc/{pid}/maps
echo FOUND=$found"
        ),
        Duration::from_secs(600),
    );
    out.contains("FOUND=1")
}

/// A file whose only copy in RAM is the page cache (written back, so clean and droppable).
fn write_file_marker(lab: &Lab) {
    lab_ok(
        lab,
        "printf 'MVGUARDFILE-%s-SECRET' $((80000 + 8)) >/var/tmp/secret.txt; sync; \
         cat /var/tmp/secret.txt >/dev/null",
    );
}

/// The chain for this lab: the default chain ([`default_steps`]: `undefine-secrets`,
/// `drop-secrets` (which kills `multiverse-agent`), `clear-keyring`, `destroy-domains`,
/// `luks-suspend`, `clear-memory`, `power-off`), with a step printing `dmsetup info` on the
/// console right after `luks-suspend`, and longer timeouts for what is slow under TCG: the
/// libvirt steps (each `virsh` a new process; QEMU's exit under nested TCG) and `clear-memory`
/// (a debug build's fill without `init_on_free`). `memory` and `power_off` keep the last two.
fn chain(memory: bool, power_off: bool) -> String {
    #[derive(serde::Serialize)]
    struct Steps {
        step: Vec<Step>,
    }
    let mut steps = Vec::new();
    for mut s in default_steps() {
        match &s.action {
            Action::UndefineSecrets { .. } => s.timeout_ms = 30_000,
            Action::DestroyDomains { .. } => s.timeout_ms = 60_000,
            Action::ClearMemory { .. } if !memory => continue,
            // Without init_on_free the fill (a debug build under TCG) needs far longer.
            Action::ClearMemory { .. } if without_init_on_free() => s.timeout_ms = 120_000,
            Action::ClearMemory { .. } => s.timeout_ms = 20_000,
            Action::PowerOff if !power_off => continue,
            _ => {}
        }
        let suspend = s.action == Action::LuksSuspend;
        steps.push(s);
        if suspend {
            steps.push(Step {
                action: Action::Command {
                    argv: vec![
                        "sh".into(),
                        "-c".into(),
                        "dmsetup info guardlab | sed 's/^/DMINFO /' >/dev/ttyS0".into(),
                    ],
                },
                timeout_ms: 2_000,
                fallback: None,
            });
        }
    }
    toml::to_string(&Steps { step: steps }).unwrap()
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
            .wait_event("SHUTDOWN", Duration::from_secs(240))
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

/// Which markers a memory dump holds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Found {
    /// In the domain's QEMU process.
    domain: bool,
    /// In the agent (its token).
    agent: bool,
    /// In the page cache.
    file: bool,
}

fn dump_has(lab: &Lab, dir: &Path, name: &str) -> Found {
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
    let found = Found {
        domain: has(DOMAIN_MARKER),
        agent: has(AGENT_MARKER),
        file: has(FILE_MARKER),
    };
    let _ = std::fs::remove_file(&path);
    let say = |b: bool| if b { "FOUND" } else { "absent" };
    eprintln!(
        "{name}: domain (QEMU) marker {}, agent token marker {}, page-cache marker {}",
        say(found.domain),
        say(found.agent),
        say(found.file)
    );
    found
}

/// The libvirt secret, the running domain and the agent, before a pull. Returns the pids of
/// QEMU and of the agent.
fn start_targets(lab: &Lab) -> (u32, u32) {
    define_secret(lab);
    let qemu = start_domain(lab);
    let agent = start_agent(lab);
    (qemu, agent)
}

/// The action records of the last chain on the console (the watcher's JSON lines copied there
/// by `tail -F`), as (step, command, status).
fn console_actions(lab: &Lab) -> Vec<(String, String, String)> {
    let console = lab.console_tail(400);
    let lines: Vec<&str> = console.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.contains("\"event\":\"fire\""))
        .map_or(0, |i| i + 1);
    lines[start..]
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l[l.find('{')?..].trim()).ok())
        .filter(|v| v["event"] == "action")
        .map(|v| {
            (
                v["step"].as_str().unwrap_or("").to_string(),
                v["command"].as_str().unwrap_or("").to_string(),
                v["status"].to_string(),
            )
        })
        .collect()
}

/// The libvirt and agent ops of a chain's record ran, and succeeded.
fn assert_real_steps(actions: &[(String, String, String)], what: &str) {
    let ok = |step: &str, command: &str| {
        actions
            .iter()
            .any(|(s, c, st)| s == step && c.ends_with(command) && st == "\"ok\"")
    };
    for (step, command) in [
        (
            "undefine-secrets",
            format!("virsh -c {URI} secret-undefine {SECRET_UUID}"),
        ),
        (
            "drop-secrets",
            "kill-processes -KILL --exe multiverse-agent".to_string(),
        ),
        (
            "drop-secrets",
            "wipe-and-remove /etc/multiverse/agent.token".to_string(),
        ),
        (
            "destroy-domains",
            format!("virsh -c {URI} destroy {DOMAIN}"),
        ),
    ] {
        assert!(
            ok(step, &command),
            "{what}: no successful `{command}` ({step}) in the chain's record: {actions:#?}"
        );
    }
}

#[test]
fn guard_lab() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let token = stick(dir.path(), mv_lab::TOKEN_ID, TOKEN_SERIAL);
    let decoy = stick(dir.path(), "decoy", DECOY_SERIAL);
    let mut lab = boot(dir.path(), &token, Some(&decoy));
    let spec = setup(&lab);
    eprintln!("token: {spec}");
    let (qemu, agent) = start_targets(&lab);
    write_file_marker(&lab);

    // 1. Armed through the CLI, the watcher found through its pidfile.
    arm(&lab, &spec, &chain(false, false));
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
    // Still there after the decoys.
    let up = lab_ok(
        &lab,
        &format!(
            "virsh -q -c {URI} domstate {DOMAIN}; virsh -q -c {URI} secret-list; kill -0 {agent} && echo agent-up"
        ),
    );
    assert!(
        up.contains("paused") && up.contains(SECRET_UUID) && up.contains("agent-up"),
        "{up}"
    );

    // 3. The control pull: no clear-memory, no power-off.
    let control = pull(&lab, Detector::Watcher, false);
    lab_ok(
        &lab,
        "for i in $(seq 300); do pgrep -f 'guard watch' >/dev/null || { pkill -x tail; exit 0; }; sleep 0.2; done; exit 1",
    );
    let log = watch_log(&lab);
    eprintln!("control chain:\n{log}");
    let actions: Vec<(String, String, String)> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "action")
        .map(|v| {
            (
                v["step"].as_str().unwrap_or("").to_string(),
                v["command"].as_str().unwrap_or("").to_string(),
                v["status"].to_string(),
            )
        })
        .collect();
    assert_real_steps(&actions, "control");
    let secrets = lab_ok(&lab, &format!("virsh -q -c {URI} secret-list"));
    assert!(
        secrets.trim().is_empty(),
        "libvirt secrets left:\n{secrets}"
    );
    let listed = lab_ok(&lab, &format!("virsh -q -c {URI} list --all"));
    eprintln!("virsh list --all after the control pull:\n{listed}");
    assert!(
        listed.contains(DOMAIN) && listed.contains("shut off"),
        "{DOMAIN} still running:\n{listed}"
    );
    let left = lab_ok(
        &lab,
        &format!(
            "pgrep -l qemu-system; kill -0 {qemu} 2>/dev/null && echo qemu-{qemu}; \
             pidof multiverse-agent; kill -0 {agent} 2>/dev/null && echo agent-{agent}; true"
        ),
    );
    assert!(
        left.trim().is_empty(),
        "QEMU or the agent still runs:\n{left}"
    );
    let token_file = lab_ok(&lab, "ls -A /etc/multiverse/agent.token 2>/dev/null; true");
    assert!(
        token_file.trim().is_empty(),
        "agent token left: {token_file}"
    );
    let dm = lab_ok(&lab, "dmsetup info guardlab");
    assert!(dm.contains("SUSPENDED"), "not suspended:\n{dm}");
    let keys = lab_ok(&lab, "keyctl list @u");
    assert!(
        !keys.contains("guardlab-key"),
        "keyring not cleared:\n{keys}"
    );
    let secrets = lab_ok(&lab, "ls -A /run/multiverse/secrets 2>/dev/null; true");
    assert!(secrets.trim().is_empty(), "secrets left: {secrets}");
    let found = dump_has(&lab, dir.path(), "control.dump");
    assert!(
        found.file,
        "control: the page-cache marker should survive a chain without clear-memory"
    );

    // 4. The real pull.
    lab_ok(
        &lab,
        "cryptsetup luksResume --key-file /root/luks.key guardlab; \
         dmsetup info guardlab | grep -q ACTIVE; \
         mkdir -p /run/multiverse/secrets; head -c 32 /dev/urandom >/run/multiverse/secrets/host.key",
    );
    let (qemu, agent) = start_targets(&lab);
    write_file_marker(&lab);
    lab.add_usb(&token).unwrap();
    lab_ok(
        &lab,
        &format!(
            "for i in $(seq 50); do grep -qs {TOKEN_SERIAL} /sys/bus/usb/devices/*/serial && exit 0; sleep 0.2; done; exit 1"
        ),
    );
    arm(&lab, &spec, &chain(true, true));
    start_watcher(&lab);
    let in_qemu = mem_has(&lab, qemu, "'MVGUARDDOM-%s-SECRET' $((60000 + 6))");
    let in_agent = mem_has(&lab, agent, "'MVGUARDAGENT-%s-SECRET' $((90000 + 9))");
    eprintln!(
        "/proc/PID/mem: domain marker in QEMU {in_qemu}, token marker in the agent {in_agent}"
    );
    assert!(
        in_qemu && in_agent,
        "the markers are not in their processes (QEMU {in_qemu}, agent {in_agent})"
    );
    let before = dump_has(&lab, dir.path(), "before.dump");
    assert!(
        before.domain && before.agent && before.file,
        "the markers are not in memory before the pull: {before:?}"
    );
    let real = pull(&lab, Detector::Watcher, true);
    lab.wait_for("SUSPENDED", Duration::from_secs(5))
        .expect("dmsetup info SUSPENDED printed by the step after luks-suspend");
    eprintln!(
        "the real chain, as the console showed it:\n{}",
        lab.console_tail(24)
    );
    assert_real_steps(&console_actions(&lab), "real pull");
    let after = dump_has(&lab, dir.path(), "after.dump");
    assert!(
        !after.domain && !after.agent && !after.file,
        "a marker survived the chain: {after:?}{}",
        if without_init_on_free() {
            " (without init_on_free=1 the filler child writes free memory down to the kernel's \
             reserve: docs/guard.md, \"Without init_on_free=1\")"
        } else {
            ""
        }
    );
    eprintln!(
        "device_del -> first action: control {:.0} ms, real {:.0} ms; -> SHUTDOWN {:.0} ms",
        control.first_action,
        real.first_action,
        real.shutdown.unwrap()
    );
    lab.power_off().unwrap();
    assert!(!Path::new(&format!("/proc/{}", lab.pid())).exists());
    eprintln!("guard_lab: {:.1} s", t0.elapsed().as_secs_f64());
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
        start_targets(&lab);
        arm(&lab, &spec, &chain(true, true));
        if detector == Detector::Watcher {
            start_watcher(&lab);
        }
        let p = pull(&lab, detector, true);
        // One line per pull as it happens: a run cut short still leaves its numbers.
        eprintln!(
            "pull {} of {}: {detector:?}: DEVICE_DELETED {:.0} ms, first action {:.0} ms, SHUTDOWN {}",
            i + 1,
            runs * 2,
            p.deleted,
            p.first_action,
            p.shutdown
                .map_or_else(|| "-".to_string(), |ms| format!("{ms:.0} ms"))
        );
        results.push((detector, p));
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
