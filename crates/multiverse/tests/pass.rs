//! `multiverse pass` against the real `pass` 1.7, gpg 2.2, pass-otp and git, both directions.
//!
//! Every test makes its own temp dir with its own GNUPGHOME (a gpg-made key), store and tree,
//! and kills its gpg-agent at the end. Tools are required: a missing one fails the test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{stderr, stdout, with_stdin, FAST};
use mv_testkit::{require_tool, run_ok};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A sandbox: gpg home with keys, a store folder, a Multiverse tree.
struct Sandbox {
    dir: tempfile::TempDir,
    fprs: Vec<String>,
    /// MULTIVERSE_PASSPHRASE for every command, when set.
    passphrase: Option<String>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Ends this sandbox's key cache agent, if a command started one.
        let _ = self.mv().arg("lock").output();
        let _ = Command::new("gpgconf")
            .arg("--kill")
            .arg("all")
            .env("GNUPGHOME", self.gnupg())
            .status();
    }
}

impl Sandbox {
    /// `keys`: how many gpg keys to make (the first RSA, gpg 2.2's default; others ed25519/cv25519).
    fn new(keys: usize) -> Sandbox {
        for t in ["gpg", "gpgconf", "pass", "git", "oathtool"] {
            require_tool(t);
        }
        let dir = tempfile::tempdir().unwrap();
        let sb = Sandbox {
            dir,
            fprs: Vec::new(),
            passphrase: None,
        };
        std::fs::create_dir_all(sb.gnupg()).unwrap();
        std::fs::set_permissions(
            sb.gnupg(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let mut sb = sb;
        for i in 0..keys {
            let uid = format!("User{i} <user{i}@example.org>");
            let mut c = sb.cmd("gpg");
            c.args(["--batch", "--passphrase", "", "--quick-gen-key", &uid]);
            if i == 0 {
                c.args(["default", "default", "never"]);
            } else {
                c.args(["ed25519", "cert,sign", "never"]);
            }
            run_ok(&mut c);
            let fpr = sb.fpr_of(&format!("user{i}@example.org"));
            if i != 0 {
                run_ok(sb.cmd("gpg").args([
                    "--batch",
                    "--passphrase",
                    "",
                    "--quick-add-key",
                    &fpr,
                    "cv25519",
                    "encr",
                    "never",
                ]));
            }
            sb.fprs.push(fpr);
        }
        sb
    }

    fn gnupg(&self) -> PathBuf {
        self.dir.path().join("gnupg")
    }
    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("tree")
    }

    fn fpr_of(&self, email: &str) -> String {
        let out = run_ok(
            self.cmd("gpg")
                .args(["--with-colons", "--list-keys", email]),
        );
        out.lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_string()
    }

    /// A command with the sandbox's environment.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("GNUPGHOME", self.gnupg())
            .env("PASSWORD_STORE_DIR", self.store())
            .env("MULTIVERSE_ROOT", self.root())
            .env_remove("MULTIVERSE_PASS_KEYS")
            .env("MULTIVERSE_PASS_AGENT_DIR", self.dir.path().join("agent"))
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.org")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.org")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null());
        match &self.passphrase {
            Some(p) => c.env("MULTIVERSE_PASSPHRASE", p),
            None => c.env_remove("MULTIVERSE_PASSPHRASE"),
        };
        c
    }

    fn mv(&self) -> Command {
        let mut c = self.cmd(common::MV);
        c.arg("pass");
        c
    }

    fn pass(&self) -> Command {
        self.cmd("pass")
    }

    /// Imports every gpg secret key into our keyring, sealed under `passphrase` (cheap Argon2
    /// parameters for the test); later commands need MULTIVERSE_PASSPHRASE.
    fn import_keys_sealed(&self, passphrase: &str) {
        for f in &self.fprs {
            let key = run_ok(self.cmd("gpg").args(["--export-secret-keys", "--armor", f]));
            let mut c = self.mv();
            c.args(["key", "import"])
                .args(FAST)
                .env("MULTIVERSE_PASSPHRASE", passphrase);
            let out = with_stdin(&mut c, &key);
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }

    /// Imports every gpg secret key into our keyring, unsealed.
    fn import_keys(&self) {
        for f in &self.fprs {
            let key = run_ok(self.cmd("gpg").args(["--export-secret-keys", "--armor", f]));
            let out = with_stdin(self.mv().args(["key", "import", "--unsealed"]), &key);
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }
}

fn ok(c: &mut Command) -> String {
    run_ok(c)
}

/// pass's grep output without colours: `entry:` headers and lines, as a sorted set.
fn grep_set(text: &str) -> Vec<String> {
    let re_ansi = |s: &str| {
        let mut out = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    let mut v: Vec<String> = text.lines().map(re_ansi).collect();
    v.sort();
    v
}

/// Our TOTP code equals pass-otp's (retrying once across a period boundary).
fn same_totp(sb: &Sandbox, name: &str, digits: usize) {
    for _ in 0..3 {
        let ours1 = ok(sb.mv().args(["otp", name]));
        let theirs = ok(sb.pass().args(["otp", name]));
        let ours2 = ok(sb.mv().args(["otp", name]));
        if ours1 == theirs || ours2 == theirs {
            assert_eq!(theirs.trim().len(), digits);
            return;
        }
    }
    panic!("our TOTP codes for {name} never matched pass otp");
}

const RFC4226_KEY_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

#[test]
fn a_store_made_by_pass_is_read_by_ours() {
    let mut sb = Sandbox::new(2);
    let (a, b) = (sb.fprs[0].clone(), sb.fprs[1].clone());
    let (a, b) = (&a, &b);
    ok(sb.pass().args(["init", a]));
    ok(sb.pass().args(["git", "init"]));
    // A nested .gpg-id: `team/` is shared with the second key.
    ok(sb.pass().args(["init", "-p", "team", a, b]));
    let entries = [
        ("web/mail", "s3cret-1\nuser: alice@example.org\nurl: https://mail.example.org\n"),
        ("team/db prod", "Xk3#pL9q!\nuser: admin\nnotes: line three\n"),
        ("bank/ünïcödé", "ü-pass\n"),
        (
            "otp/acme",
            "otpauth://totp/ACME:alice?secret=HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ&issuer=ACME\n",
        ),
        (
            "otp/sha256",
            "pw\notpauth://totp/X:y?secret=HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ&algorithm=SHA256&digits=8&period=60\n",
        ),
        (
            "otp/counter",
            "otpauth://hotp/H:c?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&counter=0&issuer=H\n",
        ),
    ];
    for (name, body) in entries {
        let o = with_stdin(sb.pass().args(["insert", "-m", name]), body);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    sb.import_keys_sealed("pw");
    // From here on every command of ours unseals the keys with this passphrase.
    sb.passphrase = Some("pw".into());

    for (name, body) in entries {
        assert_eq!(ok(sb.mv().args(["show", name])), body, "{name}");
        assert_eq!(ok(sb.pass().args(["show", name])), body, "{name}");
    }
    assert_eq!(
        ok(sb.mv().args(["show", "--line", "2", "web/mail"])),
        "user: alice@example.org\n"
    );
    let theirs = grep_set(&ok(sb.pass().args(["grep", "user:"])));
    let ours = grep_set(&ok(sb.mv().args(["grep", "user:"])));
    assert_eq!(ours, theirs);
    let json: serde_json::Value =
        serde_json::from_str(&ok(sb.mv().args(["--json", "grep", "admin"]))).unwrap();
    assert_eq!(json["hits"][0]["name"], "team/db prod");
    assert_eq!(json["hits"][0]["lines"][0]["line"], 2);

    same_totp(&sb, "otp/acme", 6);
    same_totp(&sb, "otp/sha256", 8);
    // HOTP: we take counter 1 (RFC 4226: 287082) and store it; pass-otp then takes counter 2.
    assert_eq!(ok(sb.mv().args(["otp", "otp/counter"])).trim(), "287082");
    let theirs = ok(sb.pass().args(["otp", "otp/counter"]));
    // pass-otp prints git's commit summary before the code.
    assert_eq!(theirs.lines().last().unwrap(), "359152");
    assert_eq!(ok(sb.mv().args(["otp", "otp/counter"])).trim(), "969429");
    let log = ok(sb
        .cmd("git")
        .arg("-C")
        .arg(sb.store())
        .args(["log", "--format=%s", "-1"]));
    assert_eq!(log.trim(), "Increment HOTP counter for otp/counter.");

    // Our file list agrees with pass's.
    let names: Vec<String> = serde_json::from_str(&ok(sb.mv().args(["--json", "ls"]))).unwrap();
    let mut want: Vec<&str> = entries.iter().map(|(n, _)| *n).collect();
    want.sort();
    assert_eq!(names, want);
    // fsck: everything addressed to the right keys, mode 0600.
    let o = sb.mv().arg("fsck").output().unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn a_store_written_by_ours_is_read_by_pass() {
    let sb = Sandbox::new(2);
    let (a, b) = (sb.fprs[0].clone(), sb.fprs[1].clone());
    sb.import_keys();
    ok(sb.mv().args(["init", &a]));
    ok(sb.mv().args(["git", "init", "-q"]));
    let o = with_stdin(
        sb.mv().args(["insert", "-m", "web/site one"]),
        "hunter2\nuser: bob\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = with_stdin(sb.mv().args(["insert", "--", "-dash"]), "dash-pw\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let gen = ok(sb.mv().args(["--json", "generate", "gen/π", "40"]));
    let gen: serde_json::Value = serde_json::from_str(&gen).unwrap();
    let pw = gen["password"].as_str().unwrap().to_string();
    assert_eq!(pw.chars().count(), 40);
    ok(sb.mv().args(["cp", "web/site one", "team/site copy"]));
    ok(sb.mv().args(["mv", "web/site one", "web/renamed"]));
    let o = with_stdin(sb.mv().args(["insert", "gone"]), "x\n");
    assert!(o.status.success());
    ok(sb.mv().args(["rm", "gone"]));
    let uri = format!("otpauth://totp/Co:me?secret={RFC4226_KEY_B32}&issuer=Co");
    let o = with_stdin(
        sb.mv().args(["otp", "insert", "otp/co"]),
        &format!("{uri}\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Re-init a subfolder for two keys: its entries are re-encrypted.
    ok(sb.mv().args(["init", "-p", "team", &a, &b]));

    assert_eq!(
        ok(sb.pass().args(["show", "web/renamed"])),
        "hunter2\nuser: bob\n"
    );
    assert_eq!(
        ok(sb.pass().args(["show", "team/site copy"])),
        "hunter2\nuser: bob\n"
    );
    assert_eq!(ok(sb.pass().args(["show", "--", "-dash"])), "dash-pw\n");
    assert_eq!(ok(sb.pass().args(["show", "gen/π"])), format!("{pw}\n"));
    assert_eq!(ok(sb.pass().args(["otp", "uri", "otp/co"])).trim(), uri);
    same_totp(&sb, "otp/co", 6);
    // The subfolder is now readable by the second key alone.
    let team = std::fs::read(sb.store().join("team/site copy.gpg")).unwrap();
    let ids = mv_pass::entry_key_ids(&team).unwrap();
    assert_eq!(ids.len(), 2);
    assert!(!sb.store().join("web/site one.gpg").exists());
    assert!(!sb.store().join("gone.gpg").exists());

    let log = ok(sb
        .cmd("git")
        .arg("-C")
        .arg(sb.store())
        .args(["log", "--format=%s", "--reverse"]));
    let want = [
        format!("Set GPG id to {a}."),
        "Add current contents of password store.".to_string(),
        "Configure git repository for gpg file diff.".to_string(),
        "Add given password for web/site one to store.".to_string(),
        "Add given password for -dash to store.".to_string(),
        "Add generated password for gen/π.".to_string(),
        "Copy web/site one to team/site copy.".to_string(),
        "Rename web/site one to web/renamed.".to_string(),
        "Add given password for gone to store.".to_string(),
        "Remove gone from store.".to_string(),
        "Add OTP secret for otp/co to store.".to_string(),
        format!("Set GPG id to {a}, {b} (team)."),
        format!("Reencrypt password store using new GPG id {a}, {b} (team)."),
    ];
    let got: Vec<&str> = log.lines().collect();
    // Our first init ran before `git init`, so it is folded into "Add current contents".
    assert_eq!(
        got,
        want[1..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let status = ok(sb
        .cmd("git")
        .arg("-C")
        .arg(sb.store())
        .args(["status", "--porcelain"]));
    assert_eq!(status, "", "everything committed, nothing left behind");
    // `ls` draws the same tree as `pass ls` (colours aside).
    let theirs: String = grep_set(&ok(sb.pass().arg("ls"))).join("\n");
    let ours: String = grep_set(&ok(sb.mv().arg("ls"))).join("\n");
    assert_eq!(ours, theirs);
    let theirs_lines: Vec<String> = ok(sb.pass().arg("ls"))
        .lines()
        .skip(1)
        .map(|l| grep_set(l).join(""))
        .collect();
    let ours_lines: Vec<String> = ok(sb.mv().arg("ls"))
        .lines()
        .skip(1)
        .map(String::from)
        .collect();
    assert_eq!(ours_lines, theirs_lines, "same order too");
    // A second identical init changes nothing and says so.
    let again = ok(sb.mv().args(["init", "-p", "team", &a, &b]));
    assert!(again.contains("unchanged"), "{again}");
}

#[test]
fn names_are_checked_and_corrupt_files_are_named() {
    let sb = Sandbox::new(1);
    sb.import_keys();
    let a = sb.fprs[0].clone();
    ok(sb.mv().args(["init", &a]));
    for bad in ["../escape", "/etc/passwd", "a/../../b", ".git/config"] {
        // Refused before stdin is read: a pipe would race with the exit (EPIPE in the writer).
        let o = sb.mv().args(["insert", bad]).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains(bad), "{bad}: {}", stderr(&o));
        assert!(!sb.dir.path().join("escape.gpg").exists());
    }
    for good in ["with space", "ünï/cødé 🔑", "-leading"] {
        let o = with_stdin(sb.mv().args(["insert", "--", good]), "v\n");
        assert!(o.status.success(), "{good}: {}", stderr(&o));
        assert_eq!(ok(sb.mv().args(["show", "--", good])), "v\n");
    }
    std::fs::write(sb.store().join("corrupt.gpg"), b"\x85\x02not pgp").unwrap();
    let o = sb.mv().args(["show", "corrupt"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("corrupt.gpg"), "{}", stderr(&o));
    let o = sb.mv().args(["grep", "v"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "an unreadable file makes grep fail"
    );
    assert!(stdout(&o).contains("with space:"), "others still searched");
    assert!(stderr(&o).contains("corrupt.gpg"), "{}", stderr(&o));
    // fsck names it too.
    let o = sb.mv().arg("fsck").output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("corrupt.gpg: unreadable"),
        "{}",
        stdout(&o)
    );
    // Missing entry: exit 2.
    let o = sb.mv().args(["show", "nope"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn writers_are_serialised_and_crashes_leave_no_partial_entry() {
    let sb = Sandbox::new(1);
    sb.import_keys();
    ok(sb.mv().args(["init", &sb.fprs[0]]));
    let uri = format!("otpauth://hotp/H:c?secret={RFC4226_KEY_B32}&counter=0&issuer=H\n");
    assert!(with_stdin(sb.mv().args(["otp", "insert", "hotp"]), &uri)
        .status
        .success());
    // Eight concurrent HOTP readers: each must get its own counter value.
    let children: Vec<_> = (0..8)
        .map(|_| {
            sb.mv()
                .args(["otp", "hotp"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut codes: Vec<String> = children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
            stdout(&o).trim().to_string()
        })
        .collect();
    codes.sort();
    // RFC 4226 counts 1..=8.
    let mut want = vec![
        "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871",
    ];
    want.sort();
    assert_eq!(codes, want);
    let shown = ok(sb.mv().args(["otp", "uri", "hotp"]));
    assert!(shown.contains("counter=8"), "{shown}");

    // A crash mid-write leaves at most a hidden temp file beside the intact old entry: it is
    // neither listed nor read.
    let entry = sb.store().join("hotp.gpg");
    let before = std::fs::read(&entry).unwrap();
    std::fs::write(
        sb.store().join(".hotp.gpg.tmp99999"),
        &before[..before.len() / 2],
    )
    .unwrap();
    let names: Vec<String> = serde_json::from_str(&ok(sb.mv().args(["--json", "ls"]))).unwrap();
    assert_eq!(names, ["hotp"]);
    assert!(ok(sb.mv().args(["otp", "uri", "hotp"])).contains("counter=8"));
}

#[test]
fn gpg_mode_dry_run_and_idempotence() {
    let sb = Sandbox::new(1);
    let a = sb.fprs[0].clone();
    ok(sb.mv().args(["--gpg", "init", &a]));
    let o = with_stdin(sb.mv().args(["--gpg", "insert", "-m", "x"]), "one\ntwo\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(ok(sb.mv().args(["--gpg", "show", "x"])), "one\ntwo\n");
    assert_eq!(ok(sb.pass().args(["show", "x"])), "one\ntwo\n");
    // --dry-run writes nothing.
    let o = with_stdin(sb.mv().args(["--dry-run", "--gpg", "insert", "y"]), "v\n");
    assert!(o.status.success());
    assert!(stdout(&o).contains("would write"));
    assert!(!sb.store().join("y.gpg").exists());
    ok(sb.mv().args(["--dry-run", "--gpg", "rm", "x"]));
    assert!(sb.store().join("x.gpg").exists());
    // Same content again: unchanged, file untouched.
    let before = std::fs::read(sb.store().join("x.gpg")).unwrap();
    let o = with_stdin(
        sb.mv().args(["--gpg", "insert", "-m", "-f", "x"]),
        "one\ntwo\n",
    );
    assert!(stdout(&o).contains("unchanged"), "{}", stdout(&o));
    assert_eq!(std::fs::read(sb.store().join("x.gpg")).unwrap(), before);
    // otp validate reads the URI from stdin, never argv.
    let o = with_stdin(
        sb.mv().args(["otp", "validate"]),
        "otpauth://totp/a?secret=AAAA\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = with_stdin(
        sb.mv().args(["otp", "validate"]),
        "otpauth://totp/a?nosecret=1\n",
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn machines_get_their_derived_passwords_under_the_identity_key() {
    let sb = Sandbox::new(0);
    let words = "abandon amount liar amount expire adjust cage candy arch gather drum bullet absurd math era live bid rhythm alien crouch range attend journey unaware";
    let mut c = sb.cmd(common::MV);
    c.args([
        "identity",
        "restore",
        "--kdf-memory",
        "1024",
        "--kdf-iterations",
        "1",
    ])
    .env("MULTIVERSE_PASSPHRASE", "correct horse");
    let o = with_stdin(&mut c, words);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::create_dir_all(sb.root().join("machines/universe.router.multiverse")).unwrap();
    let run = |args: &[&str]| {
        let o = sb
            .mv()
            .args(args)
            .env("MULTIVERSE_PASSPHRASE", "correct horse")
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    run(&["init"]); // the identity's @user key
    run(&["machines"]);
    assert_eq!(
        run(&[
            "show",
            "--line",
            "1",
            "machines/universe.router.multiverse/root"
        ])
        .trim(),
        "4FUWQoJVIQ8H96Z0Ocdii76e3oRjy5x4" // spec scramble-v1 vector
    );
    assert!(run(&["machines"]).contains("unchanged"));
    // Unlocked for the session until `lock`; then a wrong passphrase is a usage error (exit 2),
    // not garbage.
    let o = sb
        .mv()
        .args(["show", "machines/universe.router.multiverse/root"])
        .env_remove("MULTIVERSE_PASSPHRASE")
        .output()
        .unwrap();
    assert!(o.status.success(), "cached: {}", stderr(&o));
    ok(sb.mv().arg("lock"));
    let o = sb
        .mv()
        .args(["show", "machines/universe.router.multiverse/root"])
        .env("MULTIVERSE_PASSPHRASE", "wrong")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // Writes need only the certificate the first unlock saved: no passphrase asked.
    let o = with_stdin(sb.mv().args(["insert", "other"]), "x\n");
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn sealed_key_import_needs_the_passphrase() {
    let sb = Sandbox::new(1);
    let key = run_ok(
        sb.cmd("gpg")
            .args(["--export-secret-keys", "--armor", &sb.fprs[0]]),
    );
    let mut c = sb.mv();
    c.args(["key", "import"])
        .args(FAST)
        .env("MULTIVERSE_PASSPHRASE", "pw");
    let o = with_stdin(&mut c, &key);
    assert!(o.status.success(), "{}", stderr(&o));
    let sealed = std::fs::read_dir(sb.root().join("pass-keys"))
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".sec.sealed"))
        .unwrap();
    let bytes = std::fs::read(sealed.path()).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains("PRIVATE KEY"));
    ok(sb.mv().args(["init", &sb.fprs[0]]));
    assert!(with_stdin(sb.mv().args(["insert", "e"]), "v\n")
        .status
        .success());
    let o = sb
        .mv()
        .args(["show", "e"])
        .env("MULTIVERSE_PASSPHRASE", "no")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = sb
        .mv()
        .args(["show", "e"])
        .env("MULTIVERSE_PASSPHRASE", "pw")
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "v\n", "{}", stderr(&o));
    // Unlocked for the session now: no passphrase needed until `lock`.
    assert_eq!(ok(sb.mv().args(["show", "e"])), "v\n");
    ok(sb.mv().arg("lock"));
    let o = sb.mv().args(["show", "e"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn a_writer_killed_mid_write_leaves_a_whole_entry() {
    let sb = Sandbox::new(1);
    sb.import_keys();
    ok(sb.mv().args(["init", &sb.fprs[0]]));
    ok(sb.mv().args(["generate", "e", "64"]));
    // Kill writers at staggered moments (fault injection, not synchronisation): whatever the
    // moment, the entry decrypts to a whole 64-character password afterwards.
    for i in 0..12u64 {
        let mut child = sb
            .mv()
            .args(["generate", "-f", "e", "64"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(i * 7));
        let _ = child.kill();
        let _ = child.wait();
        let shown = ok(sb.mv().args(["show", "e"]));
        assert_eq!(shown.trim_end().chars().count(), 64, "round {i}: {shown:?}");
    }
    let names: Vec<String> = serde_json::from_str(&ok(sb.mv().args(["--json", "ls"]))).unwrap();
    assert_eq!(names, ["e"]);
}

#[test]
fn edit_find_audit_and_fsck() {
    let sb = Sandbox::new(1);
    sb.import_keys();
    ok(sb.mv().args(["init", &sb.fprs[0]]));
    ok(sb.mv().args(["git", "init", "-q"]));
    assert!(with_stdin(sb.mv().args(["insert", "web/a"]), "password1\n")
        .status
        .success());
    assert!(with_stdin(sb.mv().args(["insert", "web/b"]), "password1\n")
        .status
        .success());
    // The editor sees the decrypted entry in a private file and replaces it.
    let editor = sb.dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nstat -c %a \"$1\" > \"$1.mode\"; cp \"$1\" \"$1.seen\"\nprintf 'N3w-Long-pass#word\\nuser: z\\n' > \"$1\"\n\
         mv \"$1.mode\" \"$1.seen\" \"$(dirname \"$0\")/\" 2>/dev/null; true\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = sb
        .mv()
        .args(["edit", "web/a"])
        .env("EDITOR", &editor)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let seen = std::fs::read_dir(sb.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect::<Vec<_>>();
    let mode = seen
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".mode"))
        .unwrap();
    assert_eq!(std::fs::read_to_string(mode).unwrap().trim(), "600");
    let before = seen
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".seen"))
        .unwrap();
    assert_eq!(std::fs::read_to_string(before).unwrap(), "password1\n");
    assert_eq!(
        ok(sb.pass().args(["show", "web/a"])),
        "N3w-Long-pass#word\nuser: z\n"
    );
    let log = ok(sb
        .cmd("git")
        .arg("-C")
        .arg(sb.store())
        .args(["log", "-1", "--format=%s"]));
    assert_eq!(
        log.trim(),
        format!("Edit password for web/a using {}.", editor.display())
    );

    let found: Vec<String> =
        serde_json::from_str(&ok(sb.mv().args(["--json", "find", "A"]))).unwrap();
    assert_eq!(found, ["web/a"]);
    let audit: serde_json::Value =
        serde_json::from_str(&ok(sb.mv().args(["--json", "audit"]))).unwrap();
    assert_eq!(audit["audited"], 2);
    assert_eq!(audit["weak"][0]["name"], "web/b");
    assert_eq!(audit["reused"].as_array().unwrap().len(), 0);
    assert!(
        !audit.to_string().contains("password1"),
        "no password in the report"
    );
    // A world-readable entry is an fsck problem.
    std::fs::set_permissions(
        sb.store().join("web/b.gpg"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let o = sb.mv().args(["--json", "fsck"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let issues: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(issues[0]["problem"], "bad_permissions");
}

/// An X server of our own (Xvfb picks a free display and tells us on stdout), killed by PID at
/// the end; the xclip processes that serve selections on it end with it.
struct Display {
    _server: common::KillOnDrop,
    name: String,
}

impl Display {
    fn start() -> Display {
        require_tool("Xvfb");
        require_tool("xclip");
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "320x200x24",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let server = common::KillOnDrop(child);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
        let n: u32 = line
            .trim()
            .parse()
            .expect("Xvfb did not report its display");
        Display {
            _server: server,
            name: format!(":{n}"),
        }
    }

    fn set(&self, text: &str) {
        let mut c = Command::new("xclip");
        c.args(["-selection", "clipboard"])
            .env("DISPLAY", &self.name)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
    }

    /// The clipboard, None when nobody owns it.
    fn get(&self) -> Option<String> {
        self.selection("clipboard")
    }

    /// The primary selection, None when nobody owns it.
    fn primary(&self) -> Option<String> {
        self.selection("primary")
    }

    fn selection(&self, which: &str) -> Option<String> {
        let o = Command::new("xclip")
            .args(["-o", "-selection", which])
            .env("DISPLAY", &self.name)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        o.status
            .success()
            .then(|| String::from_utf8(o.stdout).unwrap())
    }

    /// Command lines of the clearing jobs (`pass __clip-restore`) working on this display.
    fn clearers(&self) -> Vec<String> {
        let want = format!("DISPLAY={}\0", self.name);
        let mut found = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let p = e.path();
            let (Ok(cmd), Ok(env)) = (
                std::fs::read(p.join("cmdline")),
                std::fs::read(p.join("environ")),
            ) else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&cmd).into_owned();
            let env = String::from_utf8_lossy(&env).into_owned();
            if cmd.contains("__clip-restore")
                && (env.starts_with(&want[..]) || env.contains(&format!("\0{want}")))
            {
                found.push(cmd.replace('\0', " "));
            }
        }
        found
    }
}

/// Polls `cond` every 50 ms for at most 20 s.
/// Polls `cond` for up to 60 s. Generous on purpose: a clearing job sleeps its 2 s and then
/// runs xclip under whatever else the suite runs (booted TCG guests, a compile); 20 s once ran
/// out under that load, while the job itself was right.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond() {
        assert!(std::time::Instant::now() < end, "timed out waiting: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn clip_sandbox() -> Sandbox {
    let sb = Sandbox::new(1);
    sb.import_keys();
    ok(sb.mv().args(["init", &sb.fprs[0]]));
    let o = with_stdin(
        sb.mv().args(["insert", "-m", "web"]),
        "s3cret-first\nuser: me\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    sb
}

#[test]
fn clip_copies_the_password_and_puts_back_the_previous_contents_later() {
    let sb = clip_sandbox();
    let x = Display::start();
    x.set("was-here");
    let o = sb
        .mv()
        .args(["show", "--clip", "web"])
        .env("DISPLAY", &x.name)
        .env("PASSWORD_STORE_CLIP_TIME", "2")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "Copied web to clipboard. Will clear in 2 seconds.\n"
    );
    // The command has returned, the clipboard holds the first line only, and the job that
    // clears it runs on without the secret on its command line.
    assert_eq!(x.get().as_deref(), Some("s3cret-first"));
    let jobs = x.clearers();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert!(!jobs[0].contains("s3cret"), "{}", jobs[0]);
    wait_until("previous contents restored", || {
        x.get().as_deref() == Some("was-here")
    });
    wait_until("clearing job gone", || x.clearers().is_empty());

    // Nothing on the clipboard before: it is emptied.
    let x2 = Display::start();
    assert_eq!(x2.get(), None);
    let o = sb
        .mv()
        .args(["show", "--clip", "web"])
        .env("DISPLAY", &x2.name)
        .env("PASSWORD_STORE_CLIP_TIME", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(x2.get().as_deref(), Some("s3cret-first"));
    wait_until("clipboard emptied", || x2.get().as_deref() == Some(""));

    // A clip time that is not a number is the person's mistake (exit 2), nothing copied.
    let o = sb
        .mv()
        .args(["show", "--clip", "web"])
        .env("DISPLAY", &x2.name)
        .env("PASSWORD_STORE_CLIP_TIME", "soon")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(x2.get().as_deref(), Some(""));
}

#[test]
fn clip_leaves_something_copied_meanwhile_alone() {
    let sb = clip_sandbox();
    let x = Display::start();
    x.set("was-here");
    let clip = |args: &[&str], secs: &str| {
        let o = sb
            .mv()
            .arg("show")
            .args(args)
            .env("DISPLAY", &x.name)
            .env("PASSWORD_STORE_CLIP_TIME", secs)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    };
    // A second --clip within the first one's time replaces its timer (like pass): the first
    // job puts "was-here" back at once, so the second one's "before" is not the first secret.
    clip(&["--clip", "--line", "2", "web"], "30");
    assert_eq!(x.get().as_deref(), Some("user: me"));
    assert_eq!(x.clearers().len(), 1);
    clip(&["--clip", "web"], "1");
    assert_eq!(x.get().as_deref(), Some("s3cret-first"));
    // The first job has answered before exiting: give it a moment to be gone.
    wait_until("one clearing job left", || x.clearers().len() <= 1);
    let jobs = x.clearers();
    assert!(
        jobs.len() == 1 && jobs[0].contains("--secs 1") || x.get().as_deref() == Some("was-here"),
        "{jobs:?}"
    );
    wait_until("clearing job done", || x.clearers().is_empty());
    assert_eq!(x.get().as_deref(), Some("was-here"));

    // Copied by the person meanwhile: not clobbered.
    clip(&["--clip", "--line", "2", "web"], "3");
    assert_eq!(x.get().as_deref(), Some("user: me"));
    assert_eq!(x.clearers().len(), 1);
    x.set("copied meanwhile");
    wait_until("clearing job done", || x.clearers().is_empty());
    assert_eq!(x.get().as_deref(), Some("copied meanwhile"));
}

#[test]
fn the_clearing_job_is_hidden_and_refuses_bad_input() {
    let sb = clip_sandbox();
    let help = ok(sb.mv().arg("--help"));
    assert!(
        help.contains("show") && !help.contains("__clip-restore"),
        "{help}"
    );
    let x = Display::start();
    x.set("untouched");
    for bad in ["", "short", "\u{5}\0\0\0\0\0\0\0ab"] {
        let o = with_stdin(
            sb.mv()
                .args(["__clip-restore", "--secs", "0"])
                .env("DISPLAY", &x.name),
            bad,
        );
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("malformed"), "{}", stderr(&o));
    }
    assert_eq!(x.get().as_deref(), Some("untouched"));
}

#[test]
fn clip_uses_the_x_selection_pass_is_told_to() {
    let sb = clip_sandbox();
    let x = Display::start();
    x.set("board");
    let primary = || x.primary();
    let o = sb
        .mv()
        .args(["show", "--clip", "web"])
        .env("DISPLAY", &x.name)
        .env("PASSWORD_STORE_X_SELECTION", "primary")
        .env("PASSWORD_STORE_CLIP_TIME", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(primary().as_deref(), Some("s3cret-first"));
    assert_eq!(
        x.get().as_deref(),
        Some("board"),
        "the clipboard is untouched"
    );
    wait_until("primary emptied", || primary().as_deref() == Some(""));
    // A selection X does not have is refused before anything is copied.
    let o = sb
        .mv()
        .args(["show", "--clip", "web"])
        .env("DISPLAY", &x.name)
        .env("PASSWORD_STORE_X_SELECTION", "nowhere")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("PASSWORD_STORE_X_SELECTION"));
    assert_eq!(x.get().as_deref(), Some("board"));
}

/// An extension's `clip` (pass's helper) under pass and under ours: the extension's own
/// `X_SELECTION` and `CLIP_TIME` count, the previous contents come back, and the text never
/// reaches a command line.
#[test]
fn an_extension_s_clip_works_as_pass_s() {
    let sb = clip_sandbox();
    let ext = sb.store().join(".extensions");
    std::fs::create_dir_all(&ext).unwrap();
    std::fs::write(
        ext.join("toclip.bash"),
        "pw=\"$(cmd_show \"$1\" | head -n 1)\" || exit 1\n\
         [[ -n $2 ]] && X_SELECTION=\"$2\"\n\
         CLIP_TIME=2\n\
         clip \"$pw\" \"$1\"\n\
         echo after\n",
    )
    .unwrap();
    std::fs::set_permissions(
        ext.join("toclip.bash"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let x = Display::start();
    let run = |c: Command, args: &[&str], display: bool| {
        let mut c = c;
        c.arg("toclip")
            .args(args)
            .env("PASSWORD_STORE_ENABLE_EXTENSIONS", "true")
            .env("PASSWORD_STORE_CLIP_TIME", "99");
        if display {
            c.env("DISPLAY", &x.name);
        }
        // Files, not pipes: pass's xclip keeps its stdout open while it serves the selection.
        let (out, err) = (sb.dir.path().join("out"), sb.dir.path().join("err"));
        c.stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        let status = c.status().unwrap();
        std::process::Output {
            status,
            stdout: std::fs::read(&out).unwrap(),
            stderr: std::fs::read(&err).unwrap(),
        }
    };
    for (who, c) in [("pass", sb.pass()), ("ours", sb.mv())] {
        x.set("was-here");
        let o = run(c, &["web"], true);
        assert!(o.status.success(), "{who}: {}", stderr(&o));
        assert_eq!(
            stdout(&o),
            "Copied web to clipboard. Will clear in 2 seconds.\nafter\n",
            "{who}"
        );
        assert_eq!(x.get().as_deref(), Some("s3cret-first"), "{who}");
        if who == "ours" {
            let jobs = x.clearers();
            assert_eq!(jobs.len(), 1, "{jobs:?}");
            assert!(!jobs[0].contains("s3cret"), "{}", jobs[0]);
        }
        wait_until("previous contents restored", || {
            x.get().as_deref() == Some("was-here")
        });
    }
    wait_until("clearing job gone", || x.clearers().is_empty());
    // The extension's X_SELECTION=primary: the clipboard is left alone.
    let primary = || x.primary();
    let o = run(sb.mv(), &["web", "primary"], true);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(primary().as_deref(), Some("s3cret-first"));
    assert_eq!(x.get().as_deref(), Some("was-here"));
    wait_until("primary emptied", || primary().as_deref() == Some(""));
    // No display: pass's message and status, before anything else.
    for (who, c) in [("pass", sb.pass()), ("ours", sb.mv())] {
        let o = run(c, &["web"], false);
        assert_eq!(o.status.code(), Some(1), "{who}");
        assert_eq!(
            stderr(&o),
            "Error: No X11 or Wayland display detected\n",
            "{who}"
        );
        assert_eq!(stdout(&o), "", "{who}");
    }
}
