//! Helpers shared by the CLI integration tests in `crates/multiverse/tests/*.rs` (each test file
//! pulls them in with `mod common;`): running the real `multiverse` binary with a clean
//! environment, feeding it stdin, checking its exit status, the spec identity's words and cheap
//! Argon2 parameters, free loopback ports and child processes killed on drop.
//!
//! Not a library: every test file compiles its own copy and uses only some items, hence the
//! crate-wide `dead_code` allowance below.
#![allow(dead_code)]

pub mod lab;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const MV: &str = env!("CARGO_BIN_EXE_multiverse");

/// The words of the spec's test vector (spec/scramble-v1.md).
pub const SPEC_WORDS: &str = "abandon amount liar amount expire adjust cage candy arch gather drum bullet absurd math era live bid rhythm alien crouch range attend journey unaware";

/// The passphrase that seals test identities.
pub const PASS: &str = "correct horse battery staple";

/// Cheap Argon2 parameters: the default 256 MiB costs are tested by mv-seal, not here.
pub const FAST: [&str; 4] = ["--kdf-memory", "1024", "--kdf-iterations", "1"];

/// `multiverse --root <root>` with the passphrase in the environment, no inherited root or log
/// settings, stdin closed, and no session cache (`MULTIVERSE_PASS_CACHE_TTL=0`: every command
/// unseals, and no test leaves an agent behind or reads another's). A test of the cache sets its
/// own TTL and a private `MULTIVERSE_PASS_AGENT_DIR`.
pub fn mv(root: &Path) -> Command {
    note_missing_virt();
    let mut c = Command::new(MV);
    c.arg("--root")
        .arg(root)
        .env("MULTIVERSE_PASSPHRASE", PASS)
        .env("MULTIVERSE_PASS_CACHE_TTL", "0")
        .env_remove("MULTIVERSE_PASS_CACHE_MAX_TTL")
        .env_remove("MULTIVERSE_ROOT")
        .env_remove("MULTIVERSE_LOG")
        .stdin(Stdio::null());
    c
}

/// Says once, on the test's stderr, when `multiverse-virt` is not beside [`MV`]: it is its own
/// package, which `cargo test -p multiverse` does not build, so the libvirt subcommands would fail
/// (or run an older `multiverse-virt` found on PATH).
fn note_missing_virt() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let virt = Path::new(MV).with_file_name("multiverse-virt");
        if !virt.is_file() {
            eprintln!(
                "note: {} is missing: the libvirt subcommands (up, status, migrate, ...) need it; \
                 build it with `cargo build -p multiverse-virt`, or run `cargo test --workspace`",
                virt.display()
            );
        }
    });
}

/// Runs `cmd`, writing `stdin` to it when given; captures stdout and stderr.
pub fn output(cmd: &mut Command, stdin: Option<&str>) -> Output {
    match stdin {
        Some(input) => with_stdin(cmd, input),
        None => cmd.output().unwrap(),
    }
}

/// Runs `cmd` with `input` on its stdin; captures stdout and stderr.
///
/// The input is written from a thread (a large input cannot deadlock against the child's output),
/// and a command that exits without reading it (a bad name refused first) is not a test failure:
/// the broken pipe is ignored and the command's own status and output decide.
pub fn with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.as_bytes().to_vec();
    let writer = std::thread::spawn(move || match stdin.write_all(&input) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Runs `cmd` (with `stdin` when given), which must succeed; returns its stdout.
pub fn ok(cmd: &mut Command, stdin: Option<&str>) -> String {
    let out = output(cmd, stdin);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command expected to fail with exit code 2 and exactly one error line; returns stderr.
pub fn usage_error(cmd: &mut Command, stdin: Option<&str>) -> String {
    let out = output(cmd, stdin);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("error:")).count(),
        1,
        "one error line: {err}"
    );
    err
}

/// Asserts that a finished command succeeded (showing its exit code and both streams otherwise);
/// returns its stdout.
pub fn success(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's stdout, lossily decoded.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's stderr, lossily decoded.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Everything a command printed: stdout, then stderr (for messages that may go to either).
pub fn printed(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `ready` until it holds, panicking after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills a child process on drop (by its PID only) and reaps it.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The tests' cache folder: `MULTIVERSE_TEST_CACHE`, default `/var/cache/multiverse-tests`.
pub fn test_cache_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var("MULTIVERSE_TEST_CACHE")
            .unwrap_or_else(|_| "/var/cache/multiverse-tests".into()),
    )
}

/// A bootable Debian base image built by the real `multiverse image build debian` (default
/// options) into `<test cache>/image-tree/images/debian.qcow2`, with its packages cached in
/// `<test cache>/image-packages/`. Built once per cache: `--if-needed` keeps an image whose
/// manifest names this build's key and whose SHA-256 matches, and `flock` on
/// `<test cache>/.image.lock` keeps two test binaries from building at once. Boot it with
/// `snapshot=on` or through an overlay: never write to it.
pub fn cached_debian_image() -> std::path::PathBuf {
    static IMAGE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| cached_image("image-tree", "debian", &[]))
        .clone()
}

/// The host image `multiverse install` copies (the generic kernel, cryptsetup in the initramfs,
/// GRUB for UEFI), built like [`cached_debian_image`] into `<test cache>/host-tree/images/host.qcow2`.
pub fn cached_host_image() -> std::path::PathBuf {
    static IMAGE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| {
            cached_image(
                "host-tree",
                "host",
                &[
                    "--kernel",
                    "generic",
                    "--include",
                    "cryptsetup,cryptsetup-initramfs,grub-efi-amd64-bin,grub2-common,dosfstools,keyutils",
                ],
            )
        })
        .clone()
}

/// `multiverse image build debian --name NAME ARGS --if-needed` into `<test cache>/TREE`, under
/// the cache's image lock, sharing its package cache.
fn cached_image(tree: &str, name: &str, args: &[&str]) -> std::path::PathBuf {
    for tool in [
        "mmdebstrap",
        "mke2fs",
        "sfdisk",
        "grub-mkimage",
        "qemu-img",
        "flock",
    ] {
        mv_testkit::require_tool(tool);
    }
    let cache = test_cache_dir();
    let tree = cache.join(tree);
    std::fs::create_dir_all(&tree).unwrap();
    let started = Instant::now();
    let out = Command::new("flock")
        .arg(cache.join(".image.lock"))
        .arg(MV)
        .arg("--root")
        .arg(&tree)
        .args(["image", "build", "debian", "--name", name])
        .args(args)
        .arg("--if-needed")
        .env(
            "MULTIVERSE_IMAGE_CACHE",
            cache.join("image-packages/debian-bookworm-x86_64"),
        )
        .env_remove("MULTIVERSE_ROOT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = success(&out);
    eprintln!(
        "cached image {name}: {} ({:.1} s)",
        said.trim(),
        started.elapsed().as_secs_f64()
    );
    tree.join(format!("images/{name}.qcow2"))
}
