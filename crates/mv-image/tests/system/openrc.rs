//! The Alpine image's OpenRC first-boot files (`guest/openrc/`), without an Alpine: no Alpine
//! mirror is reachable here, so nothing boots them. What is checked instead:
//! - syntax: `sh -n`, `dash -n` and `busybox sh -n` (BusyBox ash is Alpine's `/bin/sh`);
//! - the services' dependencies as the real `openrc-run … depend` reads them;
//! - the seed stage run for real by `dash` against a fake root (`MULTIVERSE_SEED_ROOT`): a sysfs
//!   with the seed disk's serial, `/dev/vdb` a link to a real block device, and stubs on `PATH`
//!   for `mount`, `umount`, `hostname`, `rc-service`, `sysctl` and `modprobe` that log their
//!   command lines; the seed's own `multiverse` binary is a stub too, which logs and writes what
//!   `apply-seed` would. Not under BusyBox: this host's busybox runs its own applets before
//!   `PATH` (it would set this host's hostname and sysctls), Alpine's does not.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn guest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("guest/openrc")
        .join(name)
}

#[test]
fn scripts_parse_in_every_shell_and_openrc_reads_their_dependencies() {
    let dash = mv_testkit::require_tool("dash");
    let busybox = mv_testkit::require_tool("busybox");
    for name in [
        "multiverse-seed",
        "multiverse-seed-stage",
        "multiverse-ssh-relay",
    ] {
        let f = guest(name);
        mv_testkit::run_ok(Command::new("sh").arg("-n").arg(&f));
        mv_testkit::run_ok(Command::new(&dash).arg("-n").arg(&f));
        mv_testkit::run_ok(Command::new(&busybox).args(["sh", "-n"]).arg(&f));
    }
    // A syntax error would show: `sh -n` fails on one.
    let t = tempfile::tempdir().unwrap();
    let bad = t.path().join("bad");
    std::fs::write(&bad, "if true; then\n").unwrap();
    assert!(!Command::new(&dash)
        .arg("-n")
        .arg(&bad)
        .output()
        .unwrap()
        .status
        .success());

    // openrc-run sources the script: a syntax error shows on stderr (its exit status stays 0).
    let openrc_run = mv_testkit::require_tool("openrc-run");
    for (name, deps) in [
        // In the boot runlevel before the network; not before the firewall (the stage starts it
        // and waits, which would deadlock on a service ordered after this one).
        (
            "multiverse-seed",
            "need localmount\nbefore net\nkeyword -timeout \n",
        ),
        (
            "multiverse-ssh-relay",
            "need localmount\nafter multiverse-seed sshd\n",
        ),
    ] {
        let out = Command::new(&openrc_run)
            .arg(guest(name))
            .arg("depend")
            .env("RC_SVCNAME", name)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{name}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), deps, "{name}");
        let out = Command::new(&openrc_run)
            .arg(guest(name))
            .arg("describe")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(!err.contains("error"), "{err}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Multiverse: "));
    }
    let seed = std::fs::read_to_string(guest("multiverse-seed")).unwrap();
    assert!(seed.contains("\n\t/usr/lib/multiverse/multiverse-seed\n"));
    let relay = std::fs::read_to_string(guest("multiverse-ssh-relay")).unwrap();
    for line in [
        "command=\"/usr/local/sbin/multiverse\"",
        "supervisor=\"supervise-daemon\"",
        "\tcommand_args=\"ssh-relay --port $port\"",
        "\tport=/dev/virtio-ports/org.multiverse.ssh.0",
    ] {
        assert!(relay.contains(&format!("\n{line}\n")), "{line}");
    }
}

/// A fake machine for the seed stage.
struct Machine {
    _t: tempfile::TempDir,
    root: PathBuf,
    bin: PathBuf,
    log: PathBuf,
    seed: PathBuf,
}

const STUB: &str = "#!/bin/sh\nprintf '%s\\n' \"${0##*/} $*\" >> \"$STUB_LOG\"\n";

fn stub(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, format!("{STUB}{body}")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Any block device of this machine: `/dev/vdb` in the fake root links to it, so that the stage's
/// `[ -b ]` holds. Nothing opens it (`mount` is a stub).
fn a_block_device() -> PathBuf {
    for e in std::fs::read_dir("/dev").unwrap().flatten() {
        if std::fs::metadata(e.path()).is_ok_and(|m| m.file_type().is_block_device()) {
            return e.path();
        }
    }
    panic!("no block device in /dev: the seed stage test needs one to link /dev/vdb to");
}

impl Machine {
    /// `seed_disk`: whether vdb carries the MVSEED serial; `services`: the seed's services file.
    fn new(seed_disk: bool, services: &str) -> Machine {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let bin = t.path().join("bin");
        let log = t.path().join("log");
        let seed = t.path().join("seed");
        for d in ["sys/block/vda", "sys/block/vdb", "dev", "etc"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("sys/block/vda/serial"), "ROOTDISK\n").unwrap();
        if seed_disk {
            std::fs::write(root.join("sys/block/vdb/serial"), "MVSEED\n").unwrap();
        }
        std::os::unix::fs::symlink(a_block_device(), root.join("dev/vdb")).unwrap();
        std::fs::write(root.join("etc/hostname"), "alpine\n").unwrap();
        std::fs::write(&log, "").unwrap();

        // The seed disk's contents; the stub `mount` copies them to the mount point.
        std::fs::create_dir_all(seed.join("blobs")).unwrap();
        std::fs::write(seed.join("seed-id"), "5eed01\n").unwrap();
        std::fs::write(seed.join("seed.json"), "{}\n").unwrap();
        std::fs::write(seed.join("services"), services).unwrap();
        // The seed's binary: logs, says whether a seed-id was written before it ran, and writes
        // what apply-seed would (the hostname, a sysctl file and a modules file).
        std::fs::write(
            seed.join("multiverse"),
            format!(
                "{STUB}[ \"$FAIL_APPLY\" = 1 ] && exit 3
t=$MULTIVERSE_SEED_ROOT
[ \"$(cat \"$t/var/lib/multiverse/seed-id\" 2>/dev/null)\" = \"$(cat \"$4/seed-id\")\" ] &&
  echo 'the new seed-id was written before the apply' >> \"$STUB_LOG\"
mkdir -p \"$t/etc/sysctl.d\" \"$t/etc/modules-load.d\"
echo mail.service.multiverse > \"$t/etc/hostname\"
echo net.ipv4.ip_forward=1 > \"$t/etc/sysctl.d/90-multiverse.conf\"
echo kernel.kptr_restrict=2 > \"$t/etc/sysctl.d/10-base.conf\"
printf '# galaxy\\nwireguard\\n\\n  ; none\\ntun # vpn\\n' > \"$t/etc/modules-load.d/multiverse.conf\"
"
            ),
        )
        .unwrap();

        std::fs::create_dir_all(&bin).unwrap();
        // mount -o OPTS DEV DIR: the seed appears at DIR.
        stub(
            &bin,
            "mount",
            "eval dir=\\${$#}\ncp -R \"$FAKE_SEED\"/. \"$dir\"\n",
        );
        stub(&bin, "umount", "");
        stub(&bin, "hostname", "");
        // Returns only once the service started: the stage must wait for it.
        stub(
            &bin,
            "rc-service",
            "sleep 0.3\nid=$(cat \"$MULTIVERSE_SEED_ROOT/var/lib/multiverse/seed-id\")\n\
             echo \"rc-service $1 started (seed-id $id)\" >> \"$STUB_LOG\"\n",
        );
        stub(&bin, "sysctl", "");
        stub(&bin, "modprobe", "");
        Machine {
            _t: t,
            root,
            bin,
            log,
            seed,
        }
    }

    fn run(&self, fail_apply: bool) -> (Output, Vec<String>) {
        let dash = mv_testkit::require_tool("dash");
        let path = format!("{}:/usr/bin:/bin", self.bin.display());
        let cmd = |c: &mut Command| {
            c.env_clear()
                .env("PATH", &path)
                .env("STUB_LOG", &self.log)
                .env("FAKE_SEED", &self.seed)
                .env("MULTIVERSE_SEED_ROOT", &self.root)
                .env("FAIL_APPLY", if fail_apply { "1" } else { "0" });
        };
        // The stubs, never this machine's tools (hostname, sysctl and mount would act on it).
        for tool in [
            "mount",
            "umount",
            "hostname",
            "rc-service",
            "sysctl",
            "modprobe",
        ] {
            let mut c = Command::new(&dash);
            cmd(c.arg("-c").arg(format!("command -v {tool}")));
            assert_eq!(
                mv_testkit::run_ok(&mut c).trim(),
                self.bin.join(tool).display().to_string()
            );
        }
        let mut c = Command::new(&dash);
        cmd(c.arg(guest("multiverse-seed-stage")));
        let out = c.output().unwrap();
        let log = std::fs::read_to_string(&self.log).unwrap();
        (out, log.lines().map(str::to_string).collect())
    }

    fn r(&self, p: &str) -> String {
        format!("{}{p}", self.root.display())
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn no_seed_disk_is_nothing_to_do() {
    let m = Machine::new(false, "nftables\n");
    let (out, log) = m.run(false);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        "multiverse-seed: no seed disk, nothing to do\n"
    );
    assert!(log.is_empty(), "{log:?}");
    assert!(!m.root.join("var/lib/multiverse/seed-id").exists());
}

/// The commands of applying seed `id` with the firewall in its services.
fn applied(m: &Machine, id: &str) -> Vec<String> {
    let mnt = m.r("/run/multiverse-seed");
    vec![
        format!("mount -o ro,nodev,nosuid {} {mnt}", m.r("/dev/vdb")),
        format!(
            "multiverse provision apply-seed --seed {mnt} --target {}",
            m.root.display()
        ),
        format!("hostname -F {}", m.r("/etc/hostname")),
        "rc-service nftables start".to_string(),
        format!("rc-service nftables started (seed-id {id})"),
        format!("sysctl -q -p {}", m.r("/etc/sysctl.d/10-base.conf")),
        format!("sysctl -q -p {}", m.r("/etc/sysctl.d/90-multiverse.conf")),
        "modprobe -q wireguard".to_string(),
        "modprobe -q tun".to_string(),
        format!("umount {mnt}"),
    ]
}

#[test]
fn a_new_seed_is_applied_then_the_firewall_then_the_kernel_settings() {
    let m = Machine::new(true, "sshd\nnetworking\nnftables\ndnsmasq\n");
    let (out, log) = m.run(false);
    assert!(out.status.success(), "{out:?}");
    let mnt = m.r("/run/multiverse-seed");
    // Exactly these, in this order: the apply before the seed-id, the hostname, the firewall
    // started and waited for (its "started" line before the next command), the seed-id already
    // written when it starts, then every sysctl file in order and the modules, no other service
    // started (OpenRC starts them from the runlevels the apply linked), and the disk unmounted.
    assert_eq!(log, applied(&m, "5eed01"));
    assert_eq!(
        stdout(&out),
        "multiverse-seed: applying seed 5eed01\nmultiverse-seed: seed 5eed01 applied\n"
    );
    assert_eq!(
        std::fs::read_to_string(m.root.join("var/lib/multiverse/seed-id")).unwrap(),
        "5eed01\n"
    );
    assert!(!m.root.join("var/lib/multiverse/seed-id.tmp").exists());
    let bin = m.root.join("usr/local/sbin/multiverse");
    assert_eq!(
        std::fs::metadata(&bin).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(m.seed.join("multiverse")).unwrap()
    );

    // Applied once: the next boot mounts, compares and does nothing else.
    std::fs::write(&m.log, "").unwrap();
    let (out, log) = m.run(false);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        "multiverse-seed: seed 5eed01 already applied\n"
    );
    assert_eq!(
        log,
        [
            format!("mount -o ro,nodev,nosuid {} {mnt}", m.r("/dev/vdb")),
            format!("umount {mnt}"),
        ]
    );

    // A new seed on a later boot is applied again.
    std::fs::write(m.seed.join("seed-id"), "5eed02\n").unwrap();
    std::fs::write(&m.log, "").unwrap();
    let (out, log) = m.run(false);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(log, applied(&m, "5eed02"));
    assert_eq!(
        std::fs::read_to_string(m.root.join("var/lib/multiverse/seed-id")).unwrap(),
        "5eed02\n"
    );
}

#[test]
fn without_a_firewall_no_service_is_started() {
    let m = Machine::new(true, "sshd\nnetworking\n");
    let (out, log) = m.run(false);
    assert!(out.status.success(), "{out:?}");
    assert!(!log.iter().any(|l| l.starts_with("rc-service")), "{log:?}");
    assert!(log[3].starts_with("sysctl -q -p "), "{log:?}");
    // "nftables" must be a whole line: a service named like it is not the firewall.
    let m = Machine::new(true, "nftables-extra\n");
    let (_, log) = m.run(false);
    assert!(!log.iter().any(|l| l.starts_with("rc-service")), "{log:?}");
}

#[test]
fn a_failed_apply_fails_the_stage_and_leaves_the_seed_to_apply_again() {
    let m = Machine::new(true, "nftables\n");
    let (out, log) = m.run(true);
    assert!(!out.status.success(), "{out:?}");
    let mnt = m.r("/run/multiverse-seed");
    assert_eq!(
        log,
        [
            format!("mount -o ro,nodev,nosuid {} {mnt}", m.r("/dev/vdb")),
            format!(
                "multiverse provision apply-seed --seed {mnt} --target {}",
                m.root.display()
            ),
            format!("umount {mnt}"),
        ]
    );
    assert!(!m.root.join("var/lib/multiverse/seed-id").exists());
}
