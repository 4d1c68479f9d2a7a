//! `multiverse provision …` driven through the real binary: a tree made by `multiverse init`, an
//! identity restored from the spec's words (cheap Argon2 parameters), then `check` (every config
//! through its own tool), `plan` (diffs, JSON, exact apk command lines) on a fake Alpine root,
//! `apply` twice on a real debootstrapped Debian root, and the bad-input paths (exit code 2, one
//! error line naming the thing to fix). Converging, on Debian roots whose packages and units are
//! faked (no package manager): the lab's galaxy switched between WireGuard and OpenVPN, and star
//! losing the mail service's onion, each apply removing what the machine no longer wants.
#![allow(clippy::unwrap_used)]

mod common;

use common::{free_port, mv, output, FAST, SPEC_WORDS};
use mv_core::{IdentityName, MachineName};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `ok` of a command that reads no stdin.
fn ok(cmd: &mut Command) -> String {
    common::ok(cmd, None)
}

/// `usage_error` of a command that reads no stdin.
fn usage_error(cmd: &mut Command) -> String {
    common::usage_error(cmd, None)
}

/// A tree with the default multiverse.toml and the spec identity.
fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    ok(mv(t.path()).arg("init"));
    let out = output(
        mv(t.path()).args(["identity", "restore"]).args(FAST),
        Some(SPEC_WORDS),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t
}

fn root() -> mv_identity::Root {
    mv_identity::Root::from_mnemonic(SPEC_WORDS).unwrap()
}

fn fake_alpine(dir: &Path) -> PathBuf {
    let r = dir.join("alpine");
    for d in ["etc/init.d", "lib/apk/db"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("etc/alpine-release"), "3.20.3\n").unwrap();
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/ash\n").unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:root\nusers:x:100:\n").unwrap();
    std::fs::write(r.join("etc/shadow"), "root:*::0:::::\n").unwrap();
    std::fs::write(r.join("lib/apk/db/installed"), "P:alpine-base\n\n").unwrap();
    r
}

#[test]
fn check_runs_every_router_config_through_its_tool() {
    for t in ["nft", "dnsmasq", "tor", "sshd", "wg-quick", "unshare"] {
        mv_testkit::require_tool(t);
    }
    let t = tree();
    let out = ok(mv(t.path()).args(["provision", "check", "star.router.multiverse"]));
    for tool in ["sshd", "dnsmasq", "tor", "nft"] {
        assert!(
            out.lines().any(|l| l.starts_with("ok") && l.contains(tool)),
            "{tool}: {out}"
        );
    }
    let json =
        ok(mv(t.path()).args(["--json", "provision", "check", "universe.router.multiverse"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["machine"], "universe.router.multiverse");
    assert!(v["checked"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["tool"] == "nft"));
}

#[test]
fn plan_on_alpine_shows_apk_commands_and_diffs() {
    let t = tree();
    let target = fake_alpine(t.path());
    std::fs::write(target.join("etc/hostname"), "localhost\n").unwrap();
    let out = ok(mv(t.path())
        .args(["provision", "plan", "star.router.multiverse", "--target"])
        .arg(&target));
    let r = target.display().to_string();
    assert!(
        out.contains("+ install packages: openssh nftables dnsmasq tor"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "runs: chroot {r} apk add --no-progress openssh nftables dnsmasq tor"
        )),
        "{out}"
    );
    assert!(out.contains("~ update /etc/hostname (0644 root)"), "{out}");
    assert!(
        out.contains("-localhost") && out.contains("+star"),
        "diff shown: {out}"
    );
    assert!(out.contains("set password of root (sha512-crypt)"));
    // Secrets are never printed.
    assert!(!out.contains("PRIVATE KEY"));
    let pw = root().password(&IdentityName::Machine(
        MachineName::parse("star.router.multiverse").unwrap(),
    ));
    assert!(!out.contains(pw.expose().as_str()));
    // JSON: stable fields.
    let json = ok(mv(t.path())
        .args([
            "--json",
            "provision",
            "plan",
            "star.router.multiverse",
            "--target",
        ])
        .arg(&target));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["machine"], "star.router.multiverse");
    assert_eq!(v["os"], "alpine");
    let changes = v["changes"].as_array().unwrap();
    assert_eq!(changes[0]["kind"], "packages");
    assert_eq!(changes[0]["command"][2], "apk");
    assert!(changes
        .iter()
        .any(|c| c["kind"] == "file" && c["path"] == "/etc/tor/torrc"));
    // --dry-run apply is the plan and changes nothing.
    let before = std::fs::read_to_string(target.join("etc/hostname")).unwrap();
    let dry = ok(mv(t.path())
        .args([
            "--dry-run",
            "provision",
            "apply",
            "star.router.multiverse",
            "--target",
        ])
        .arg(&target));
    assert!(dry.contains("dry run: nothing was changed"));
    assert_eq!(
        std::fs::read_to_string(target.join("etc/hostname")).unwrap(),
        before
    );
}

/// A minimal bookworm from the debootstrap cache (see crates/mv-provision/tests/common).
fn debian_root(dest: &Path) -> PathBuf {
    mv_testkit::require_tool("debootstrap");
    let cache_dir = PathBuf::from(
        std::env::var("MULTIVERSE_TEST_CACHE")
            .unwrap_or_else(|_| "/var/cache/multiverse-tests".into()),
    );
    let cache = cache_dir.join("debootstrap-bookworm");
    std::fs::create_dir_all(&cache_dir).unwrap();
    let script = format!(
        "set -e; if [ -f {c}/etc/debian_version ] && ls {c}/var/lib/apt/lists/*_Packages >/dev/null 2>&1; then exit 0; fi; \
         rm -rf {b}; debootstrap --variant=minbase bookworm {b} http://deb.debian.org/debian; \
         chroot {b} apt-get update -q; rm -rf {c}; mv {b} {c}",
        c = cache.display(),
        b = cache_dir.join(format!("debootstrap-bookworm.building.{}", std::process::id())).display()
    );
    mv_testkit::run_ok(
        Command::new("flock")
            .arg(cache_dir.join(".lock"))
            .args(["sh", "-c", &script]),
    );
    let root = dest.join("debian");
    mv_testkit::run_ok(Command::new("cp").arg("-a").arg(&cache).arg(&root));
    root
}

#[test]
fn apply_on_real_debian_then_no_changes() {
    let t = tree();
    let target = debian_root(t.path());
    let machine = "browser.app.multiverse";
    let out = ok(mv(t.path())
        .args(["provision", "apply", machine, "--target"])
        .arg(&target));
    assert!(out.contains("changes applied"), "{out}");
    assert!(out.contains("create user user"), "{out}");
    let again = ok(mv(t.path())
        .args(["provision", "apply", machine, "--target"])
        .arg(&target));
    assert_eq!(
        again.trim(),
        format!("{machine} on {}: no changes", target.display())
    );
    // The identity's password for this machine verifies against the target's /etc/shadow (glibc
    // crypt through Python, the password on stdin).
    let pw = root().password(&IdentityName::Machine(MachineName::parse(machine).unwrap()));
    let shadow = std::fs::read_to_string(target.join("etc/shadow")).unwrap();
    let hash = shadow
        .lines()
        .find_map(|l| l.strip_prefix("user:"))
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_string();
    let mut py = Command::new("python3")
        .args(["-W", "ignore", "-c", "import crypt,sys; pw=sys.stdin.read(); sys.exit(0 if crypt.crypt(pw,sys.argv[1])==sys.argv[1] else 1)", &hash])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    py.stdin
        .take()
        .unwrap()
        .write_all(pw.expose().as_bytes())
        .unwrap();
    assert!(py.wait().unwrap().success(), "password does not verify");
    // The person's login key is the identity's @user key.
    let user_key = root()
        .ssh_ed25519(&IdentityName::parse("@user").unwrap())
        .unwrap();
    let ak = std::fs::read_to_string(target.join("home/user/.ssh/authorized_keys")).unwrap();
    assert!(ak.contains(mv_identity::public_line(&user_key).as_str()));
    assert!(Command::new("chroot")
        .arg(&target)
        .args(["dpkg", "-s", "ca-certificates"])
        .output()
        .unwrap()
        .status
        .success());
}

#[test]
fn bad_input_is_exit_2_with_one_clear_line() {
    let t = tree();
    let target = fake_alpine(t.path());
    // `provision plan <machine>` against the fake Alpine root, which must be refused.
    let plan_error = |machine: &str| {
        usage_error(
            mv(t.path())
                .args(["provision", "plan", machine, "--target"])
                .arg(&target),
        )
    };
    let err = plan_error("nope.multiverse");
    assert!(
        err.contains("no machine nope.multiverse in multiverse.toml"),
        "{err}"
    );
    let err = plan_error("Star");
    assert!(err.contains("upper-case"), "{err}");
    // The galaxy router needs its VPN provider's settings.
    let err = usage_error(mv(t.path()).args(["provision", "check", "galaxy.router.multiverse"]));
    assert!(
        err.contains("machines/galaxy.router.multiverse/provision/vpn.toml"),
        "{err}"
    );
    // A Debian machine against an Alpine root.
    let err = plan_error("controller.multiverse");
    assert!(err.contains("is not a debian root filesystem"), "{err}");
    // A template override with a typo names template, line and variable.
    let o = t.path().join("templates/provision");
    std::fs::create_dir_all(&o).unwrap();
    std::fs::write(
        o.join("router-torrc.j2"),
        "User {{ tor.user }}\nSocksPort {{ tor.sock_port }}\n",
    )
    .unwrap();
    let err = usage_error(mv(t.path()).args(["provision", "check", "star.router.multiverse"]));
    let expected = format!(
        "{}:2: undefined variable `tor.sock_port` in template `router-torrc.j2`",
        o.join("router-torrc.j2").display()
    );
    assert!(err.contains(&expected), "{err}");
}

#[test]
fn galaxy_with_vpn_settings_renders_and_checks() {
    mv_testkit::require_tool("wg-quick");
    let t = tree();
    let dir = t.path().join("machines/galaxy.router.multiverse/provision");
    mv_testkit::write_vpn_settings(
        &dir.join("vpn.toml"),
        "198.51.100.7",
        "10.64.12.34/32",
        "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",
        mv_testkit::TEST_WIREGUARD_KEY,
    );
    let out = ok(mv(t.path()).args(["provision", "check", "galaxy.router.multiverse"]));
    assert!(
        out.contains("wg-quick") && out.contains("/etc/wireguard/wg0.conf"),
        "{out}"
    );
    // render writes the public files into the tree, idempotently.
    let first = ok(mv(t.path()).args(["provision", "render", "galaxy.router.multiverse"]));
    assert!(first.contains("wrote"));
    let nft = std::fs::read_to_string(dir.join("files/etc/nftables.nft")).unwrap();
    assert!(nft.contains("ip daddr 198.51.100.7 udp dport 51820 accept"));
    assert!(
        !dir.join("files/etc/ssh/ssh_host_ed25519_key").exists(),
        "no secrets in the tree"
    );
    let second = ok(mv(t.path()).args(["provision", "render", "galaxy.router.multiverse"]));
    assert!(second.trim().ends_with("no changes"), "{second}");
}

/// An sshd on 127.0.0.1 whose sessions are chrooted into a Debian root: a stand-in for a running
/// machine. Its host key is the identity's host key of `machine`, so `--ssh` pins it.
struct Sshd {
    pid: i32,
    dir: PathBuf,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sshd_into_debian(machine: &str) -> (Sshd, PathBuf) {
    let sshd = mv_testkit::require_tool("sshd");
    // ChrootDirectory needs root-owned, not group/other-writable path components: not /tmp.
    let base = PathBuf::from("/var/cache/multiverse-tests");
    std::fs::create_dir_all(&base).unwrap();
    let dir = base.join(format!("ssh-target.{}.{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = debian_root(&dir);
    let r = root();
    let host_key = r
        .ssh_host_ed25519(&IdentityName::parse(machine).unwrap())
        .unwrap();
    let hk = dir.join("host_key");
    std::fs::write(
        &hk,
        host_key
            .to_openssh(mv_identity::ssh_key::LineEnding::LF)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let user = r
        .ssh_ed25519(&IdentityName::parse("@user").unwrap())
        .unwrap();
    std::fs::write(
        dir.join("authorized_keys"),
        format!("{}\n", mv_identity::public_line(&user)),
    )
    .unwrap();
    let port = free_port();
    let d = dir.display();
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nUsePAM no\nStrictModes no\nChrootDirectory {}\n",
            target.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    mv_testkit::run_ok(
        Command::new(sshd)
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .arg("-E")
            .arg(dir.join("log")),
    );
    // sshd daemonises once it listens; its pid file is written then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(dir.join("sshd.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break pid;
            }
        }
        assert!(std::time::Instant::now() < deadline, "sshd did not start");
        std::thread::yield_now();
    };
    (Sshd { pid, dir, port }, target)
}

#[test]
fn apply_over_ssh_with_pinned_host_key() {
    let t = tree();
    let machine = "browser.app.multiverse";
    let (sshd, target) = sshd_into_debian(machine);
    let port = sshd.port.to_string();
    let ssh_args = ["--ssh", "root@127.0.0.1", "--port", port.as_str()];
    // A host key that is not the identity's is refused (a different machine's name here).
    let other = usage_or_failure(
        mv(t.path())
            .args(["provision", "plan", "controller.multiverse"])
            .args(ssh_args),
    );
    assert!(other.contains("Host key verification failed"), "{other}");
    assert!(
        other.contains("hint: check that the machine is up"),
        "{other}"
    );
    let plan = ok(mv(t.path())
        .args(["provision", "plan", machine])
        .args(ssh_args));
    assert!(
        plan.contains("on root@127.0.0.1:") && plan.contains("+ install packages:"),
        "{plan}"
    );
    let out = ok(mv(t.path())
        .args(["provision", "apply", machine])
        .args(ssh_args));
    assert!(out.contains("changes applied"), "{out}");
    let again = ok(mv(t.path())
        .args(["provision", "apply", machine])
        .args(ssh_args));
    assert_eq!(
        again.trim(),
        format!("{machine} on root@127.0.0.1: no changes")
    );
    // Converging over SSH: a file and a service link the state says an earlier apply made are
    // removed on the machine (read back through the tar stream, removed by `rm` there).
    let state_path = target.join("var/lib/multiverse/provision-state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    std::fs::write(target.join("etc/old-recipe.conf"), "old\n").unwrap();
    let link = "etc/systemd/system/multi-user.target.wants/old-recipe.service";
    std::os::unix::fs::symlink("/lib/systemd/system/old-recipe.service", target.join(link))
        .unwrap();
    let files = state["files"].as_array_mut().unwrap();
    files.push(serde_json::json!({
        "path": "/etc/old-recipe.conf",
        "sha256": mv_provision::sha256_hex(b"old\n"),
    }));
    // Edited since: its recorded bytes were others.
    std::fs::write(target.join("etc/old-recipe.keep"), "edited\n").unwrap();
    files.push(serde_json::json!({
        "path": "/etc/old-recipe.keep",
        "sha256": mv_provision::sha256_hex(b"as written\n"),
    }));
    state["services"].as_array_mut().unwrap().push(serde_json::json!({
        "name": "old-recipe",
        "links": [{ "link": format!("/{link}"), "to": "/lib/systemd/system/old-recipe.service" }],
    }));
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    let out = output(
        mv(t.path())
            .args(["provision", "apply", machine])
            .args(ssh_args),
        None,
    );
    let stdout = common::success(&out);
    let stderr = common::stderr(&out);
    assert!(stdout.contains("- remove /etc/old-recipe.conf"), "{stdout}");
    assert!(
        stdout.contains(&format!("- disable service old-recipe (/{link})")),
        "{stdout}"
    );
    assert!(
        stdout.contains("- stop service old-recipe"),
        "a running system over SSH: {stdout}"
    );
    assert!(
        stderr.contains(
            "warning: left in place: /etc/old-recipe.keep: changed since multiverse wrote it"
        ),
        "{stderr}"
    );
    assert!(!target.join("etc/old-recipe.conf").exists());
    assert!(std::fs::symlink_metadata(target.join(link)).is_err());
    assert!(target.join("etc/old-recipe.keep").exists());
    let again = ok(mv(t.path())
        .args(["provision", "apply", machine])
        .args(ssh_args));
    assert!(again.trim().ends_with("no changes"), "{again}");
    // The machine really changed (seen from outside the chroot).
    assert_eq!(
        std::fs::read_to_string(target.join("etc/hostname")).unwrap(),
        "browser\n"
    );
    let home = std::fs::metadata(target.join("home/user")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((home.uid(), home.mode() & 0o777), (1000, 0o750));
    assert!(Command::new("chroot")
        .arg(&target)
        .args(["dpkg", "-s", "ca-certificates"])
        .output()
        .unwrap()
        .status
        .success());
    drop(sshd);
}

fn usage_or_failure(cmd: &mut Command) -> String {
    let out = output(cmd, None);
    assert!(!out.status.success(), "{cmd:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A Debian root with nothing installed: enough for `plan` (dpkg's status, the account files).
fn fake_debian(dir: &Path) -> PathBuf {
    let r = dir.join("debian");
    for d in ["etc", "var/lib/dpkg"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("etc/debian_version"), "12.8\n").unwrap();
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:\nusers:x:100:\n").unwrap();
    std::fs::write(r.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    std::fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
    r
}

/// The lab topology (`init --lab`, all Debian): every machine passes `provision check` and
/// `provision plan` on a Debian root, and each plan installs the agent: the binary from this
/// build, its systemd unit, and an agent.toml (guests: with the virtio port, started by udev).
#[test]
fn lab_every_machine_checks_and_plans_on_debian() {
    let t = tempfile::tempdir().unwrap();
    ok(mv(t.path()).args(["init", "--lab"]));
    let out = output(
        mv(t.path()).args(["identity", "restore"]).args(FAST),
        Some(SPEC_WORDS),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = fake_debian(t.path());
    let machines = [
        "host.multiverse",
        "universe.router.multiverse",
        "galaxy.router.multiverse",
        "star.router.multiverse",
        "controller.multiverse",
        "mail.service.multiverse",
        "browser.app.multiverse",
    ];
    for m in machines {
        ok(mv(t.path()).args(["provision", "check", m]));
        let json = ok(mv(t.path())
            .args(["--json", "provision", "plan", m, "--target"])
            .arg(&target));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["os"], "debian", "{m}");
        let files: Vec<&str> = v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["kind"] == "file")
            .map(|c| c["path"].as_str().unwrap())
            .collect();
        for f in [
            "/usr/bin/multiverse-agent",
            "/etc/systemd/system/multiverse-agent.service",
            "/etc/multiverse/agent.toml",
        ] {
            assert!(files.contains(&f), "{m}: {f} not in {files:?}");
        }
        let guest = m != "host.multiverse";
        assert_eq!(
            files.contains(&"/etc/udev/rules.d/60-multiverse-agent.rules"),
            guest,
            "{m}: {files:?}"
        );
        assert_eq!(
            files.contains(&"/usr/bin/multiverse-agent-libvirt"),
            !guest,
            "{m}: {files:?}"
        );
    }
}

/// The lab tree (`init --lab`, the spec identity), with `edit` applied to its multiverse.toml.
fn lab_tree(edit: impl FnOnce(String) -> String) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    ok(mv(t.path()).args(["init", "--lab"]));
    let toml = t.path().join("multiverse.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, edit(text)).unwrap();
    let out = output(
        mv(t.path()).args(["identity", "restore"]).args(FAST),
        Some(SPEC_WORDS),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t
}

/// `edit` on the tree's multiverse.toml, which must change it.
fn edit_config(tree: &Path, edit: impl FnOnce(&str) -> String) {
    let toml = tree.join("multiverse.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let new = edit(&text);
    assert_ne!(new, text, "the edit changed nothing");
    std::fs::write(&toml, new).unwrap();
}

/// A bare Debian root with tor's user (star's onion folders belong to it).
fn converge_root(dir: &Path) -> PathBuf {
    let r = fake_debian(dir);
    std::fs::create_dir_all(r.join("lib/systemd/system")).unwrap();
    std::fs::write(
        r.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\ndebian-tor:x:101:101::/var/lib/tor:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        r.join("etc/group"),
        "root:x:0:\nusers:x:100:\ndebian-tor:x:101:\n",
    )
    .unwrap();
    r
}

/// Makes `machine`'s plan on `root` need no package manager: every package it would install is
/// added to dpkg's status, and each service enabled once installed gets a stub unit.
fn fake_installs(tree: &Path, machine: &str, root: &Path) {
    let json = ok(mv(tree)
        .args(["--json", "provision", "plan", machine, "--target"])
        .arg(root));
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    for c in plan["changes"].as_array().unwrap() {
        match c["kind"].as_str().unwrap() {
            "packages" => {
                for p in c["packages"].as_array().unwrap() {
                    status.push_str(&format!(
                        "Package: {}\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n",
                        p.as_str().unwrap()
                    ));
                }
            }
            "service_after_install" => {
                let name = c["name"].as_str().unwrap();
                let unit = match name.split_once('@') {
                    Some((prefix, _)) => format!("{prefix}@.service"),
                    None => format!("{name}.service"),
                };
                std::fs::write(
                    root.join("lib/systemd/system").join(unit),
                    "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
                )
                .unwrap();
            }
            _ => {}
        }
    }
    std::fs::write(root.join("var/lib/dpkg/status"), status).unwrap();
}

/// `provision apply MACHINE --target ROOT` after [`fake_installs`]: (stdout, stderr).
fn converge(tree: &Path, machine: &str, root: &Path) -> (String, String) {
    fake_installs(tree, machine, root);
    let out = output(
        mv(tree)
            .args(["provision", "apply", machine, "--target"])
            .arg(root),
        None,
    );
    let stdout = common::success(&out);
    (stdout, common::stderr(&out))
}

const GALAXY: &str = "galaxy.router.multiverse";
const STAR: &str = "star.router.multiverse";
const WG_LINK: &str = "etc/systemd/system/multi-user.target.wants/wg-quick@wg0.service";
const OVPN_LINK: &str = "etc/systemd/system/multi-user.target.wants/openvpn-client@galaxy.service";
const WIREGUARD: &str = "router = { role = \"galaxy\", vpn = \"wireguard\"";
const OPENVPN: &str = "router = { role = \"galaxy\", vpn = \"openvpn\"";

fn write_wireguard(tree: &Path) {
    mv_testkit::write_vpn_settings(
        &mv_provision::vpn_file(tree, &GALAXY.parse().unwrap()),
        "198.51.100.7",
        "10.64.12.34/32",
        "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",
        mv_testkit::TEST_WIREGUARD_KEY,
    );
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// galaxy on WireGuard, then on OpenVPN, then back: each apply disables the VPN the machine no
/// longer uses and removes its files (the WireGuard private key included), and a file edited by
/// hand is left in place with a warning.
#[test]
fn switching_the_vpn_removes_what_the_old_one_put_there() {
    let t = lab_tree(|s| s);
    let tree = t.path();
    write_wireguard(tree);
    let root = converge_root(tree);
    let (out, _) = converge(tree, GALAXY, &root);
    assert!(
        out.contains("+ record /var/lib/multiverse/provision-state.json"),
        "{out}"
    );
    assert!(root.join(WG_LINK).is_symlink());
    assert!(root.join("etc/wireguard/wg0.key").is_file());
    use std::os::unix::fs::MetadataExt;
    let state = root.join("var/lib/multiverse/provision-state.json");
    assert_eq!(std::fs::metadata(&state).unwrap().mode() & 0o7777, 0o600);
    let (again, _) = converge(tree, GALAXY, &root);
    assert_eq!(
        again.trim(),
        format!("{GALAXY} on {}: no changes", root.display())
    );

    // OpenVPN: the dry run shows the removals and changes nothing.
    edit_config(tree, |s| s.replacen(WIREGUARD, OPENVPN, 1));
    mv_testkit::openvpn::write_openvpn_settings(
        &mv_provision::vpn_file(tree, &GALAXY.parse().unwrap()),
        &mv_testkit::openvpn::Settings {
            endpoint: "198.51.100.7",
            port: 1194,
            address: "10.64.12.34/24",
            ca_pem: mv_testkit::openvpn::TEST_CA_PEM,
            user: "galaxy",
            password: "not-a-real-password",
            tls_crypt: None,
        },
    );
    fake_installs(tree, GALAXY, &root);
    let dry = ok(mv(tree)
        .args(["--dry-run", "provision", "apply", GALAXY, "--target"])
        .arg(&root));
    for line in [
        format!("- disable service wg-quick@wg0 (/{WG_LINK})"),
        "- remove /etc/wireguard/wg0.key (no longer wanted)".to_string(),
        "- remove /etc/wireguard/wg0.conf (no longer wanted)".to_string(),
        "~ update /var/lib/multiverse/provision-state.json".to_string(),
    ] {
        assert!(dry.contains(&line), "{line} not in {dry}");
    }
    assert!(root.join("etc/wireguard/wg0.key").is_file());
    let (out, err) = converge(tree, GALAXY, &root);
    assert!(out.contains("- disable service wg-quick@wg0"), "{out}");
    assert!(!err.contains("warning"), "{err}");
    assert!(!exists(&root.join(WG_LINK)), "wg-quick@wg0 still enabled");
    assert!(!exists(&root.join("etc/wireguard/wg0.key")), "key left");
    assert!(!exists(&root.join("etc/wireguard/wg0.conf")));
    assert!(root.join(OVPN_LINK).is_symlink());
    assert!(root.join("etc/openvpn/client/credentials").is_file());

    // Back to WireGuard, with galaxy.conf edited by hand: left in place, with a warning.
    let conf = root.join("etc/openvpn/client/galaxy.conf");
    let mut edited = std::fs::read_to_string(&conf).unwrap();
    edited.push_str("verb 4\n");
    std::fs::write(&conf, &edited).unwrap();
    edit_config(tree, |s| s.replacen(OPENVPN, WIREGUARD, 1));
    write_wireguard(tree);
    let (out, err) = converge(tree, GALAXY, &root);
    assert!(
        err.contains(
            "warning: left in place: /etc/openvpn/client/galaxy.conf: changed since multiverse wrote it"
        ),
        "{err}"
    );
    assert!(
        out.contains("- remove /etc/openvpn/client/credentials"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
    assert!(!exists(&root.join("etc/openvpn/client/credentials")));
    assert!(!exists(&root.join(OVPN_LINK)));
    assert!(root.join(WG_LINK).is_symlink());
    assert!(root.join("etc/wireguard/wg0.key").is_file());
    // Handed over to the person: no warning and no change next time.
    let (again, err) = converge(tree, GALAXY, &root);
    assert!(again.trim().ends_with("no changes"), "{again}");
    assert!(err.is_empty(), "{err}");
}

/// The mail service's line in the lab topology.
const MAIL_NIC: &str = "networks = [{ network = \"net2\", address = \"10.2.2.20\" }]";

/// star publishes the mail service's onion (its HiddenServiceDir key from mail's identity); once
/// mail drops `onion`, the next apply removes that key and its folder. A state file that is not
/// one stops apply before it changes anything.
#[test]
fn dropping_an_onion_removes_its_key_from_star() {
    let t = lab_tree(|s| s.replacen(MAIL_NIC, &format!("{MAIL_NIC}\nonion = [22]"), 1));
    let tree = t.path();
    let root = converge_root(tree);
    converge(tree, STAR, &root);
    let hs = root.join("var/lib/tor/mail.service.multiverse");
    let key = hs.join("hs_ed25519_secret_key");
    assert!(key.is_file());
    let torrc = std::fs::read_to_string(root.join("etc/tor/torrc")).unwrap();
    assert!(torrc.contains("mail.service.multiverse"), "{torrc}");

    edit_config(tree, |s| s.replacen("\nonion = [22]", "", 1));
    let (out, err) = converge(tree, STAR, &root);
    assert!(
        out.contains("- remove /var/lib/tor/mail.service.multiverse/hs_ed25519_secret_key"),
        "{out}"
    );
    assert!(err.is_empty(), "{err}");
    assert!(!exists(&key), "mail's onion key left on star");
    assert!(!exists(&hs), "its empty folder left");
    // star's own onion stays.
    assert!(root
        .join("var/lib/tor/multiverse/hs_ed25519_secret_key")
        .is_file());
    let (again, _) = converge(tree, STAR, &root);
    assert!(again.trim().ends_with("no changes"), "{again}");

    // A corrupt state: one error naming it, a hint, and nothing written.
    let state = root.join("var/lib/multiverse/provision-state.json");
    std::fs::write(&state, "{\"version\": 1, \"files\": [").unwrap();
    edit_config(tree, |s| {
        s.replacen(MAIL_NIC, &format!("{MAIL_NIC}\nonion = [22]"), 1)
    });
    let err = usage_error(
        mv(tree)
            .args(["provision", "apply", STAR, "--target"])
            .arg(&root),
    );
    assert!(
        err.contains(&format!("provision state {}", state.display())),
        "{err}"
    );
    assert!(
        err.contains("hint: nothing was changed; delete that file"),
        "{err}"
    );
    assert!(!exists(&key));
    // Deleted: the machine is adopted as it is, and the state written again.
    std::fs::remove_file(&state).unwrap();
    let (out, _) = converge(tree, STAR, &root);
    assert!(
        out.contains("+ record /var/lib/multiverse/provision-state.json"),
        "{out}"
    );
    assert!(key.is_file());
}
