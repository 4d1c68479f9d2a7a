//! Security tests: misc (see main.rs and docs/security.md): the migration on a full filesystem,
//! the sealed root read from disk, machine names whose derived paths do not fit, the passphrase in
//! the environment of children, and a closed stdout.
//!
//! Every test drives the real `multiverse` binary. Resource limits are applied to the child only,
//! through `sh -c 'ulimit …; exec …'`, so that an attack that makes the old code allocate without
//! bound ends in a failed allocation (an abort, which the assertions catch) instead of eating
//! the test machine.

use super::common::{self, stderr, FAST};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` under a `max_kib` virtual-memory limit; kills it after `timeout` (the result then
/// has no exit code). Returns its output and how long it ran.
fn run_limited(cmd: &Command, max_kib: u64, timeout: Duration) -> (Output, Duration) {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("ulimit -v {max_kib} && exec \"$0\" \"$@\""))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    let start = Instant::now();
    let mut child = sh.spawn().unwrap();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > timeout {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out, start.elapsed())
}

/// A tree with the default topology and an identity sealed with cheap parameters.
fn tree_with_identity() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    common::ok(common::mv(t.path()).arg("init"), None);
    common::ok(
        common::mv(t.path()).args(["identity", "new"]).args(FAST),
        None,
    );
    t
}

fn sealed_path(root: &Path) -> std::path::PathBuf {
    root.join("identity/root.sealed")
}

// ---- finding 11: the sealed root is untrusted input ----

/// `identity/root.sealed` replaced by a link to /dev/zero: the old code read it whole and grew
/// without bound (8 GB RSS). Now: refused at once, before reading, under a 256 MiB memory limit.
#[test]
fn sealed_root_linked_to_dev_zero_is_refused_without_reading_it() {
    let t = tree_with_identity();
    let p = sealed_path(t.path());
    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
    let mut c = common::mv(t.path());
    c.args(["identity", "show", "universe.router.multiverse"]);
    let (out, took) = run_limited(&c, 256 * 1024, Duration::from_secs(20));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not a sealed identity") && err.contains("symbolic link"),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// A header asking for 4 GiB of Argon2 memory (the old cap, honoured before the tag could fail:
/// 4.2 GB and 20 s per attempt) is refused as malformed before any Argon2 work: under a 512 MiB
/// limit the old code aborted in the allocation.
#[test]
fn sealed_root_with_huge_argon2_memory_is_malformed_before_any_kdf_work() {
    let t = tree_with_identity();
    let p = sealed_path(t.path());
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[8..12].copy_from_slice(&(4u32 * 1024 * 1024).to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let mut c = common::mv(t.path());
    c.args(["identity", "show", "universe.router.multiverse"]);
    let (out, took) = run_limited(&c, 512 * 1024, Duration::from_secs(60));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("malformed") && err.contains("KDF parameters"),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // And `seal` never writes what `open` refuses: the same memory on the command line is bad input.
    let u = tempfile::tempdir().unwrap();
    let err = common::usage_error(
        common::mv(u.path()).args(["identity", "new", "--kdf-memory", "4194304"]),
        None,
    );
    assert!(err.contains("Argon2 memory"), "{err}");
}

/// `--kdf-memory 8` was accepted silently; it still works (tests need cheap seals) but warns.
#[test]
fn weak_kdf_memory_is_warned_about() {
    let t = tempfile::tempdir().unwrap();
    let out = common::output(
        common::mv(t.path()).args([
            "identity",
            "new",
            "--kdf-memory",
            "8",
            "--kdf-iterations",
            "1",
        ]),
        None,
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: Argon2 memory 8 KiB is below 65536 KiB"),
        "{err}"
    );
}

// ---- finding 12: names valid as FQDNs whose derived paths do not fit ----

/// A valid 253-character FQDN (four labels of at most 63).
fn name_253() -> String {
    let n = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(n.len(), 253);
    n
}

/// A 253-character machine name passed validation, then `render` wrote `machines/<name>/` and
/// failed on a derived path (ENAMETOOLONG, exit 1), and every later render failed the same way.
/// Now validation refuses it with the line, before anything is written (exit 2). The agent socket
/// decides: `/run/multiverse/agent/<name>.sock` must fit the 107 bytes of `sun_path`.
#[test]
fn machine_name_whose_derived_paths_do_not_fit_is_refused_before_any_write() {
    let t = tempfile::tempdir().unwrap();
    common::ok(common::mv(t.path()).arg("init"), None);
    let config = t.path().join("multiverse.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    let before_lines = text.lines().count();
    let long = name_253();
    text.push_str(&format!(
        "\n[[machines]]\nname = \"{long}\"\ntype = \"application\"\n"
    ));
    std::fs::write(&config, &text).unwrap();
    let err = common::usage_error(common::mv(t.path()).arg("render"), None);
    assert!(
        err.contains(&format!("multiverse.toml:{}:", before_lines + 3))
            && err.contains("agent socket"),
        "{err}"
    );
    assert!(!t.path().join("machines").join(&long).exists());
    // The longest name that fits is accepted and renders (80 = 107 - len("/run/multiverse/agent/.sock")).
    let fits = format!("{}.{}", "e".repeat(63), "f".repeat(16));
    assert_eq!(fits.len(), 80);
    let text = text.replace(&long, &fits);
    std::fs::write(&config, &text).unwrap();
    common::ok(common::mv(t.path()).arg("render"), None);
    assert!(t
        .path()
        .join("machines")
        .join(&fits)
        .join("domain.xml")
        .exists());
}

/// A config that is not UTF-8 is the person's input: exit 2 and `FILE:LINE:`, not exit 1.
#[test]
fn config_that_is_not_utf8_is_bad_input() {
    let t = tempfile::tempdir().unwrap();
    common::ok(common::mv(t.path()).arg("init"), None);
    let config = t.path().join("multiverse.toml");
    let mut bytes = b"# line 1\n# line 2 \xff\xfe\n".to_vec();
    bytes.extend(std::fs::read(&config).unwrap());
    std::fs::write(&config, bytes).unwrap();
    // `render` and `machine list` load the file; `machine rm` reads it to edit it.
    for args in [
        &["render"][..],
        &["machine", "list"][..],
        &["machine", "rm", "browser.app.multiverse"][..],
    ] {
        let err = common::usage_error(common::mv(t.path()).args(args), None);
        assert!(
            err.contains(&format!("{}:2: not UTF-8", config.display())),
            "{args:?}: {err}"
        );
    }
}

// ---- finding 9: a migration onto a full filesystem ----

/// `migrate` across filesystems onto a destination too small for the data: the copy failed with
/// ENOSPC and left its partial temp file, which kept the destination full, so `--undo` could not
/// even journal `undo-start` ("cannot append to journal"). Now the failed copy removes its temp
/// file and the undo removes leftovers before journaling; the old tree comes back byte for byte.
///
/// The full destination is a real one: a 1 MiB tmpfs mounted in a private mount namespace
/// (`unshare -m`, so nothing leaks to the host), with the whole scenario run inside it.
#[test]
fn migrate_onto_a_full_filesystem_leaves_no_temp_and_undo_restores() {
    let unshare = mv_testkit::require_tool("unshare");
    mv_testkit::require_tool("mount");
    let t = tempfile::tempdir().unwrap();
    let old = t.path().join("old");
    let new = t.path().join("new");
    let conf = old.join("Machines/Web Server/Conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("site"), b"server {}\n").unwrap();
    let www = old.join("Data/Web Server/www");
    std::fs::create_dir_all(&www).unwrap();
    // 3 MiB without a zero block (the copy keeps holes, so zeros would not fill anything).
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let big: Vec<u8> = (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u8) | 1
        })
        .collect();
    std::fs::write(www.join("big.bin"), &big).unwrap();
    std::fs::create_dir(&new).unwrap();
    let before = mv_migrate::Snapshot::take(&old, &[]).unwrap();

    let report = t.path().join("report");
    let script = r#"
        set -u
        mount -t tmpfs -o size=1m tmpfs "$NEW" || exit 90
        "$MV" migrate --from "$OLD" --to "$NEW" --no-libvirt >/dev/null 2>"$REPORT.migrate.err"
        echo $? > "$REPORT.migrate.rc"
        find "$NEW" -name '*.mv-migrate-tmp*' > "$REPORT.temps"
        "$MV" migrate --undo --to "$NEW" --no-libvirt >/dev/null 2>"$REPORT.undo.err"
        echo $? > "$REPORT.undo.rc"
        umount "$NEW"
    "#;
    let out = Command::new(unshare)
        .args(["-m", "sh", "-c", script])
        .env("MV", common::MV)
        .env("OLD", &old)
        .env("NEW", &new)
        .env("REPORT", &report)
        .env_remove("MULTIVERSE_ROOT")
        .output()
        .unwrap();
    assert!(out.status.success(), "namespace: {}", stderr(&out));
    let read = |ext: &str| std::fs::read_to_string(format!("{}.{ext}", report.display())).unwrap();
    assert_eq!(read("migrate.rc").trim(), "1", "{}", read("migrate.err"));
    assert!(
        read("migrate.err").contains("No space left"),
        "{}",
        read("migrate.err")
    );
    assert_eq!(read("temps"), "", "the failed copy left its temp file");
    assert_eq!(read("undo.rc").trim(), "0", "{}", read("undo.err"));
    let after = mv_migrate::Snapshot::take(&old, &[]).unwrap();
    assert_eq!(before, after, "the old tree is back");
}

// ---- finding 13: the passphrase in children's environment, a closed stdout ----

/// `MULTIVERSE_PASSPHRASE` was inherited by every child (git, gpg, the clipboard tool, $EDITOR).
/// A `git` planted first on PATH dumps the environment it gets from `multiverse pass git`: the
/// passphrase is not in it (and an identity command still reads it).
#[test]
fn children_do_not_inherit_the_passphrase() {
    let t = tree_with_identity();
    let bin = t.path().join("fakebin");
    std::fs::create_dir(&bin).unwrap();
    let dump = t.path().join("git-env");
    std::fs::write(bin.join("git"), "#!/bin/sh\nenv > \"$DUMP\"\n").unwrap();
    std::fs::set_permissions(
        bin.join("git"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::create_dir(t.path().join("pass")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    common::ok(
        common::mv(t.path())
            .args(["pass", "git", "status"])
            .env("PATH", &path)
            .env("DUMP", &dump)
            .env_remove("PASSWORD_STORE_DIR"),
        None,
    );
    let env = std::fs::read_to_string(&dump).unwrap();
    assert!(env.contains("DUMP="), "the fake git ran: {env}");
    assert!(!env.contains("MULTIVERSE_PASSPHRASE"), "{env}");
    assert!(!env.contains(common::PASS), "{env}");
    // The variable still works for the command itself.
    let out = common::ok(
        common::mv(t.path()).args(["identity", "show", "universe.router.multiverse"]),
        None,
    );
    assert!(out.contains("openpgp_fingerprint"), "{out}");
}

/// `multiverse machine list | head -c1`: the write to the closed pipe made `println!` panic
/// (exit 101 and a panic message). The pipe here is closed before the command starts, so the
/// first write fails every time; it now ends quietly with exit 0.
#[test]
fn a_closed_stdout_is_a_quiet_exit() {
    let t = tempfile::tempdir().unwrap();
    common::ok(common::mv(t.path()).arg("init"), None);
    for args in [&["machine", "list"][..], &["--json", "machine", "list"][..]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = common::mv(t.path())
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(err, "", "{args:?}");
    }
}
