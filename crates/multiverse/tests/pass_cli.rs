//! `multiverse pass` as a drop-in for `pass` 1.7.4 and pass-otp: the command line, permissions,
//! overwrite rules, folders with their own recipients, gpg groups, OTP, and the session cache.
//!
//! What pass's own suite checks is covered here in our words (the suite itself stays outside the
//! project: pass 1.7.4's own tests/t*.sh). Every test has its own GNUPGHOME, store, tree and agent folder;
//! gpg, pass and git are required (a missing tool fails the test).
#![allow(clippy::unwrap_used)]

mod common;

use common::{stderr, stdout, with_stdin, FAST};
use mv_testkit::{require_tool, run_ok};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Sandbox {
    dir: tempfile::TempDir,
    fprs: Vec<String>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.mv().arg("lock").output();
        let _ = Command::new("gpgconf")
            .args(["--kill", "all"])
            .env("GNUPGHOME", self.gnupg())
            .status();
    }
}

impl Sandbox {
    /// `keys` ed25519/cv25519 gpg keys without passphrase.
    fn new(keys: usize) -> Sandbox {
        for t in ["gpg", "gpgconf", "pass", "git"] {
            require_tool(t);
        }
        let mut sb = Sandbox {
            dir: tempfile::tempdir().unwrap(),
            fprs: Vec::new(),
        };
        std::fs::create_dir_all(sb.gnupg()).unwrap();
        std::fs::set_permissions(sb.gnupg(), std::fs::Permissions::from_mode(0o700)).unwrap();
        for i in 0..keys {
            let uid = format!("User{i} <user{i}@example.org>");
            run_ok(sb.cmd("gpg").args([
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                &uid,
                "ed25519",
                "cert,sign",
                "never",
            ]));
            let out = run_ok(sb.cmd("gpg").args([
                "--with-colons",
                "--list-keys",
                &format!("user{i}@example.org"),
            ]));
            let fpr = out
                .lines()
                .find(|l| l.starts_with("fpr:"))
                .and_then(|l| l.split(':').nth(9))
                .unwrap()
                .to_string();
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
    fn agent(&self) -> PathBuf {
        self.dir.path().join("agent")
    }
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("GNUPGHOME", self.gnupg())
            .env("PASSWORD_STORE_DIR", self.store())
            .env("MULTIVERSE_ROOT", self.dir.path().join("tree"))
            .env("MULTIVERSE_PASS_AGENT_DIR", self.agent())
            .env_remove("MULTIVERSE_PASS_KEYS")
            .env_remove("MULTIVERSE_PASSPHRASE")
            .env_remove("MULTIVERSE_PASS_CACHE_TTL")
            .env_remove("PASSWORD_STORE_UMASK")
            .env("GIT_AUTHOR_NAME", "T")
            .env("GIT_AUTHOR_EMAIL", "t@example.org")
            .env("GIT_COMMITTER_NAME", "T")
            .env("GIT_COMMITTER_EMAIL", "t@example.org")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        c
    }
    fn mv(&self) -> Command {
        let mut c = self.cmd(common::MV);
        c.arg("pass");
        c
    }
    /// Our binary in gpg mode (as pass's suite runs it).
    fn gpg(&self) -> Command {
        let mut c = self.mv();
        c.arg("--gpg");
        c
    }
    fn pass(&self) -> Command {
        self.cmd("pass")
    }
    fn exists(&self, rel: &str) -> bool {
        self.store().join(rel).exists()
    }
    /// Key ids an entry file is encrypted to (gpg's view), sorted.
    fn key_ids(&self, rel: &str) -> Vec<String> {
        let out = self
            .cmd("gpg")
            .args(["--list-packets", "--batch"])
            .arg(self.store().join(rel))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut ids: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with(":pubkey enc packet:"))
            .filter_map(|l| l.split("keyid ").nth(1))
            .map(|s| s.trim().to_string())
            .collect();
        ids.sort();
        ids
    }
    /// The encryption subkey id of key `i`.
    fn enc_id(&self, i: usize) -> String {
        let out = run_ok(
            self.cmd("gpg")
                .args(["--with-colons", "--list-keys", &self.fprs[i]]),
        );
        out.lines()
            .find(|l| l.starts_with("sub:"))
            .and_then(|l| l.split(':').nth(4))
            .unwrap()
            .to_string()
    }
}

fn ok(c: &mut Command) -> String {
    run_ok(c)
}

fn fails(o: &Output) -> String {
    assert!(!o.status.success(), "should fail: {}", stdout(o));
    stderr(o)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn command_line_is_pass_s() {
    let sb = Sandbox::new(1);
    ok(sb.gpg().args(["init", &sb.fprs[0]]));
    // Unknown options are errors and never become entry names.
    for args in [
        &["insert", "-x", "a"][..],
        &["generate", "--no-symbolz", "a"],
        &["rm", "--bogus", "a"],
        &["otp", "insert", "-z"],
        &["show", "-z", "a"],
    ] {
        let o = with_stdin(sb.gpg().args(args), "pw\n");
        let err = fails(&o);
        assert!(err.contains("Usage: pass"), "{args:?}: {err}");
    }
    let names: Vec<String> = std::fs::read_dir(sb.store())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [".gpg-id"], "nothing was created: {names:?}");
    // `insert -e` from a pipe; `--` ends the options; a unique prefix is the option.
    ok(with_stdin_cmd(
        sb.gpg().args(["insert", "-e", "I am a cred with spaces"]),
        "BLAH!!\n",
    ));
    ok(with_stdin_cmd(
        sb.gpg().args(["insert", "--ec", "--", "-dash"]),
        "d\n",
    ));
    ok(sb.gpg().args(["generate", "--no-symbol", "gen", "19"]));
    // `pass NAME` shows, bare `pass` and `pass show` list.
    assert_eq!(ok(sb.gpg().arg("I am a cred with spaces")), "BLAH!!\n");
    assert_eq!(ok(sb.gpg().args(["show", "--", "-dash"])), "d\n");
    assert_eq!(ok(sb.gpg().arg("gen")).trim().len(), 19);
    let tree = ok(&mut sb.gpg());
    assert_eq!(tree, ok(sb.gpg().arg("show")));
    assert_eq!(ok(sb.gpg().arg("ls")), tree);
    // ASCII off a UTF-8 locale, as tree draws it for pass.
    assert_eq!(
        tree,
        "Password Store\n|-- -dash\n|-- I am a cred with spaces\n`-- gen\n"
    );
    let utf8 = ok(sb.gpg().env("LC_ALL", "C.UTF-8"));
    assert!(
        utf8.contains("├── -dash") && utf8.contains("└── gen"),
        "{utf8}"
    );
    assert!(fails(&sb.gpg().args(["show", "nope"]).output().unwrap())
        .contains("is not in the password store"));
    // --help carries pass's banner.
    assert!(ok(sb.gpg().arg("--help")).contains("pass: the standard unix password manager"));
    // pass's find: the tree of matching names.
    ok(sb.gpg().args(["generate", "Fishies/stuff", "5"]));
    ok(sb.gpg().args(["generate", "Fish", "5"]));
    assert_eq!(
        ok(sb.gpg().args(["find", "fish"])),
        "Search Terms: fish\n|-- Fish\n`-- Fishies\n    `-- stuff\n"
    );
    // Our extras keep working, and --json is a read option everywhere.
    let v: Vec<String> = serde_json::from_str(&ok(sb.gpg().args(["ls", "--json"]))).unwrap();
    assert_eq!(v.len(), 5);
    let v: serde_json::Value = serde_json::from_str(&ok(sb.gpg().args(["--json", "gen"]))).unwrap();
    assert_eq!(v["name"], "gen");
}

fn with_stdin_cmd<'a>(c: &'a mut Command, input: &str) -> &'a mut Command {
    // Feed stdin through a file: `ok` then runs the command as usual.
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), input).unwrap();
    let (file, _path) = f.keep().unwrap();
    c.stdin(Stdio::from(file))
}

#[test]
fn overwrite_rules_are_pass_s() {
    let sb = Sandbox::new(1);
    ok(sb.gpg().args(["init", &sb.fprs[0]]));
    ok(with_stdin_cmd(
        sb.gpg().args(["insert", "-e", "e"]),
        "one\n",
    ));
    // From a pipe, pass overwrites without -f (its question only comes on a terminal).
    ok(with_stdin_cmd(
        sb.gpg().args(["insert", "-e", "e"]),
        "two\n",
    ));
    assert_eq!(ok(sb.gpg().arg("e")), "two\n");
    // Without -e, a second line must repeat the password.
    let o = with_stdin(sb.gpg().args(["insert", "e"]), "three\nthree!\n");
    assert!(fails(&o).contains("do not match"));
    ok(with_stdin_cmd(
        sb.gpg().args(["insert", "e"]),
        "three\nthree\n",
    ));
    assert_eq!(ok(sb.gpg().arg("e")), "three\n");
    ok(with_stdin_cmd(
        sb.gpg().args(["insert", "-m", "e"]),
        "a\nb\n",
    ));
    ok(sb.gpg().args(["generate", "-i", "e", "7"]));
    let shown = ok(sb.gpg().arg("e"));
    assert!(shown.ends_with("\nb\n") && shown.lines().next().unwrap().len() == 7);
    ok(sb.gpg().args(["generate", "e", "9"]));
    assert_eq!(ok(sb.gpg().arg("e")).trim().len(), 9);
    assert!(
        sb.gpg()
            .args(["generate", "-i", "-f", "e"])
            .output()
            .unwrap()
            .status
            .code()
            == Some(2)
    );
    // rm: a missing entry fails; a folder needs -r.
    fails(&sb.gpg().args(["rm", "nope"]).output().unwrap());
    ok(sb.gpg().args(["generate", "d/x", "5"]));
    fails(&sb.gpg().args(["rm", "d"]).output().unwrap());
    ok(sb.gpg().args(["rm", "-rf", "d/"]));
    assert!(!sb.exists("d"));
}

#[test]
fn everything_is_private_under_umask_077() {
    let sb = Sandbox::new(1);
    ok(sb.mv().args(["init", &sb.fprs[0]]));
    ok(sb.mv().args(["git", "init", "-q"]));
    let key = run_ok(
        sb.cmd("gpg")
            .args(["--export-secret-keys", "--armor", &sb.fprs[0]]),
    );
    let o = with_stdin(sb.mv().args(["key", "import", "--unsealed"]), &key);
    assert!(o.status.success(), "{}", stderr(&o));
    ok(sb.mv().args(["generate", "web/mail/a", "12"]));
    ok(sb.mv().args(["init", "-p", "team", &sb.fprs[0]]));
    for p in ["", "web", "web/mail", "team", ".git"] {
        assert_eq!(mode(&sb.store().join(p)), 0o700, "{p}");
    }
    for p in [
        ".gpg-id",
        "team/.gpg-id",
        "web/mail/a.gpg",
        ".gitattributes",
    ] {
        assert_eq!(mode(&sb.store().join(p)), 0o600, "{p}");
    }
    let o = sb.mv().arg("fsck").output().unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    // What pass's umask prevents, fsck reports: a listable folder, a readable .gpg-id.
    std::fs::set_permissions(
        sb.store().join("web"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        sb.store().join(".gpg-id"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let o = sb.mv().args(["--json", "fsck"]).output().unwrap();
    assert!(!o.status.success());
    let issues: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    let bad: Vec<String> = issues
        .iter()
        .filter(|i| i["problem"] == "bad_permissions")
        .map(|i| i["file"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bad.len(), 2, "{issues:?}");
    // PASSWORD_STORE_UMASK is honoured for what git writes, like pass.
    let o = sb
        .mv()
        .args(["generate", "web/b", "5"])
        .env("PASSWORD_STORE_UMASK", "022")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        mode(&sb.store().join("web/b.gpg")),
        0o600,
        "entries stay 0600"
    );
}

#[test]
fn folders_keep_their_recipients_and_groups_work() {
    let sb = Sandbox::new(3);
    let (k0, k1, k2) = (&sb.fprs[0], &sb.fprs[1], &sb.fprs[2]);
    std::fs::write(
        sb.gnupg().join("gpg.conf"),
        format!("group two = {k1} {k2}\ngroup big group = {k0} {k1} {k2}\n"),
    )
    .unwrap();
    ok(sb.gpg().args(["init", k0]));
    ok(sb.gpg().args(["git", "init"]));
    ok(with_stdin_cmd(
        sb.gpg().args(["insert", "-e", "folder/cred"]),
        "pw\n",
    ));
    // A group (with a space in its name) is its members.
    ok(sb.gpg().args(["init", "big group"]));
    let all = {
        let mut v = vec![sb.enc_id(0), sb.enc_id(1), sb.enc_id(2)];
        v.sort();
        v
    };
    assert_eq!(sb.key_ids("folder/cred.gpg"), all);
    // The same keys named one by one: the entry is not rewritten.
    let before = std::fs::read(sb.store().join("folder/cred.gpg")).unwrap();
    ok(sb.gpg().args(["init", k2, k0, k1]));
    assert_eq!(
        std::fs::read(sb.store().join("folder/cred.gpg")).unwrap(),
        before
    );
    // An unknown recipient changes nothing, .gpg-id included.
    let id_before = std::fs::read(sb.store().join(".gpg-id")).unwrap();
    fails(
        &sb.gpg()
            .args(["init", "nobody@nowhere.example"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        std::fs::read(sb.store().join(".gpg-id")).unwrap(),
        id_before
    );
    ok(sb.gpg().args(["init", k0]));
    // A folder with its own recipients moves with them, into a folder named with `/`.
    ok(sb.gpg().args(["init", "-p", "team", "two"]));
    ok(sb.gpg().args(["cp", "folder/cred", "team/"]));
    let mut two = vec![sb.enc_id(1), sb.enc_id(2)];
    two.sort();
    assert_eq!(sb.key_ids("team/cred.gpg"), two);
    ok(sb.gpg().args(["mv", "team", "shared/"]));
    assert!(sb.exists("shared/team/.gpg-id") && !sb.exists("team"));
    assert_eq!(sb.key_ids("shared/team/cred.gpg"), two);
    // `init -p SUB ""` removes its .gpg-id and re-encrypts for the recipients above.
    ok(sb.gpg().args(["init", "-p", "shared/team", ""]));
    assert!(!sb.exists("shared/team/.gpg-id"));
    assert_eq!(sb.key_ids("shared/team/cred.gpg"), vec![sb.enc_id(0)]);
    // An entry into `dir/` that does not exist yet: dir/entry.
    ok(sb.gpg().args(["mv", "folder/cred", "newdir/"]));
    assert!(sb.exists("newdir/cred.gpg") && !sb.exists("newdir.gpg") && !sb.exists("folder"));
    // pass reads it all, and git saw every change.
    assert_eq!(ok(sb.pass().args(["show", "newdir/cred"])), "pw\n");
    let st = run_ok(
        sb.cmd("git")
            .arg("-C")
            .arg(sb.store())
            .args(["status", "--porcelain"]),
    );
    assert_eq!(st, "");
}

#[test]
fn otp_insert_append_and_names_from_labels() {
    let sb = Sandbox::new(1);
    require_tool("oathtool");
    ok(sb.gpg().args(["init", &sb.fprs[0]]));
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    // The name from the label, host:port kept.
    let uri = format!("otpauth://totp/alice@google.com:443?secret={secret}&issuer=Google");
    ok(with_stdin_cmd(
        sb.gpg().args(["otp", "insert"]),
        &format!("{uri}\n"),
    ));
    assert!(sb.exists("Google/alice@google.com:443.gpg"));
    assert_eq!(
        ok(sb
            .pass()
            .args(["otp", "uri", "Google/alice@google.com:443"]))
        .trim(),
        uri
    );
    // --secret with --issuer/--account builds pass-otp's URI.
    ok(with_stdin_cmd(
        sb.gpg().args([
            "otp", "insert", "-s", "-i", "Big Co", "-a", "me@x.org", "web/otp",
        ]),
        &format!("{secret}\n"),
    ));
    assert_eq!(
        ok(sb.gpg().args(["otp", "uri", "web/otp"])).trim(),
        format!("otpauth://totp/Big+Co:me%40x.org?secret={secret}&issuer=Big+Co")
    );
    fails(&with_stdin(
        sb.gpg().args(["otp", "insert", "-s", "x"]),
        "AAAA\n",
    ));
    // append: to an entry without OTP, then replacing its OTP line.
    ok(with_stdin_cmd(
        sb.gpg().args(["insert", "-m", "site"]),
        "pw\nuser: me\n",
    ));
    ok(with_stdin_cmd(
        sb.gpg().args(["otp", "append", "site"]),
        &format!("{uri}\n"),
    ));
    assert_eq!(
        ok(sb.pass().args(["show", "site"])),
        format!("pw\nuser: me\n{uri}\n")
    );
    let codes = (
        ok(sb.gpg().args(["otp", "site"])),
        ok(sb.pass().args(["otp", "site"])),
    );
    assert_eq!(codes.0.trim().len(), 6);
    let hotp = format!("otpauth://hotp/x?secret={secret}&counter=0");
    ok(with_stdin_cmd(
        sb.gpg().args(["otp", "append", "-f", "site"]),
        &format!("{hotp}\n"),
    ));
    assert_eq!(
        ok(sb.pass().args(["show", "site"])),
        format!("pw\nuser: me\n{hotp}\n")
    );
    assert_eq!(ok(sb.gpg().args(["otp", "code", "site"])).trim(), "287082");
    fails(&with_stdin(
        sb.gpg().args(["otp", "append", "missing"]),
        &format!("{uri}\n"),
    ));
    let v: serde_json::Value =
        serde_json::from_str(&ok(sb.gpg().args(["otp", "uri", "--json", "web/otp"]))).unwrap();
    assert_eq!(v["issuer"], "Big Co");
}

/// A sandbox whose key is sealed (the default) under "pw" with `kdf` Argon2 arguments.
fn sealed_sandbox(kdf: &[&str]) -> Sandbox {
    let sb = Sandbox::new(1);
    let key = run_ok(
        sb.cmd("gpg")
            .args(["--export-secret-keys", "--armor", &sb.fprs[0]]),
    );
    let o = with_stdin(
        sb.mv()
            .args(["key", "import"])
            .args(kdf)
            .env("MULTIVERSE_PASSPHRASE", "pw"),
        &key,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    ok(sb.mv().args(["init", &sb.fprs[0]]));
    ok(with_stdin_cmd(sb.mv().args(["insert", "-e", "e"]), "v\n"));
    sb
}

fn show_with(sb: &Sandbox, pass: Option<&str>) -> Output {
    let mut c = sb.mv();
    c.args(["show", "e"]);
    if let Some(p) = pass {
        c.env("MULTIVERSE_PASSPHRASE", p);
    }
    c.output().unwrap()
}

#[test]
fn the_session_cache_unlocks_once_expires_and_locks() {
    let sb = sealed_sandbox(&FAST);
    // A wrong passphrase fails and caches nothing.
    assert_eq!(show_with(&sb, Some("wrong")).status.code(), Some(2));
    assert_eq!(show_with(&sb, None).status.code(), Some(2));
    let o = show_with(&sb, Some("pw"));
    assert_eq!(stdout(&o), "v\n", "{}", stderr(&o));
    assert!(stderr(&o).contains("unlocked for this session"));
    // Now without any passphrase, also for grep and writes that re-encrypt.
    assert_eq!(stdout(&show_with(&sb, None)), "v\n");
    assert!(ok(sb.mv().args(["grep", "v"])).contains("e:"));
    // Nothing secret on disk in the agent folder: the socket and an empty lock file, private.
    assert_eq!(mode(&sb.agent()), 0o700);
    for e in std::fs::read_dir(sb.agent()).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        assert_eq!(m.permissions().mode() & 0o077, 0, "{:?}", e.path());
        assert!(m.len() == 0, "{:?} holds bytes", e.path());
    }
    // `pass lock` forgets.
    assert!(ok(sb.mv().arg("lock")).contains("locked"));
    assert_eq!(show_with(&sb, None).status.code(), Some(2));
    // A short timeout expires it.
    let mut c = sb.mv();
    c.args(["show", "e"])
        .env("MULTIVERSE_PASSPHRASE", "pw")
        .env("MULTIVERSE_PASS_CACHE_TTL", "1");
    assert_eq!(stdout(&c.output().unwrap()), "v\n");
    assert_eq!(
        stdout(&show_with(&sb, None)),
        "v\n",
        "still within the second"
    );
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(show_with(&sb, None).status.code(), Some(2), "expired");
    // TTL 0: no cache at all.
    let mut c = sb.mv();
    c.args(["show", "e"])
        .env("MULTIVERSE_PASSPHRASE", "pw")
        .env("MULTIVERSE_PASS_CACHE_TTL", "0");
    assert_eq!(stdout(&c.output().unwrap()), "v\n");
    assert_eq!(show_with(&sb, None).status.code(), Some(2));
}

#[test]
fn concurrent_first_unlocks_unseal_once() {
    // An unseal that takes a while (64 MiB, 3 passes), so that the commands overlap.
    let sb = sealed_sandbox(&["--kdf-memory", "65536", "--kdf-iterations", "3"]);
    let children: Vec<_> = (0..4)
        .map(|_| {
            let mut c = sb.mv();
            c.args(["show", "e"])
                .env("MULTIVERSE_PASSPHRASE", "pw")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    let mut unlocked = 0;
    for ch in children {
        let o = ch.wait_with_output().unwrap();
        assert_eq!(stdout(&o), "v\n", "{}", stderr(&o));
        unlocked += stderr(&o).matches("unlocked for this session").count();
    }
    assert_eq!(unlocked, 1, "exactly one command unsealed");
}

#[test]
fn another_user_cannot_reach_the_cache() {
    let runuser = require_tool("runuser");
    // The system python (a per-user one may not run as nobody).
    let python = if Path::new("/usr/bin/python3").is_file() {
        PathBuf::from("/usr/bin/python3")
    } else {
        require_tool("python3")
    };
    let sb = sealed_sandbox(&FAST);
    assert_eq!(stdout(&show_with(&sb, Some("pw"))), "v\n");
    // As nobody, with the same agent folder: refused (the folder is 0700).
    let top = sb.dir.path();
    std::fs::set_permissions(top, std::fs::Permissions::from_mode(0o711)).unwrap();
    let o = Command::new(&runuser)
        .args(["-u", "nobody", "--"])
        .arg(common::MV)
        .args(["pass", "show", "e"])
        .env("PASSWORD_STORE_DIR", sb.store())
        .env("MULTIVERSE_PASS_AGENT_DIR", sb.agent())
        .env("MULTIVERSE_ROOT", top.join("tree"))
        .env_remove("MULTIVERSE_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_ne!(stdout(&o), "v\n");
    // Even with the folder and socket opened up, the agent checks the peer's uid.
    std::fs::set_permissions(sb.agent(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let sock = sb.agent().join("pass-agent.sock");
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    // The cache id of the sealed key: its kind and the SHA-256 of the sealed file.
    let sealed = std::fs::read_dir(top.join("tree/pass-keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".sec.sealed"))
        .unwrap();
    let sum = run_ok(Command::new(require_tool("sha256sum")).arg(&sealed));
    let id = format!("sealed:{}", sum.split_whitespace().next().unwrap());
    let script = "import socket,struct,sys\n\
                  s=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n\
                  i=sys.argv[3].encode()\n\
                  s.sendall(sys.argv[2].encode()+struct.pack('<I',len(i))+i)\n\
                  print(s.recv(1).decode())";
    let ask = |as_nobody: bool, op: &str| -> String {
        let mut c = if as_nobody {
            let mut c = Command::new(&runuser);
            c.args(["-u", "nobody", "--"]).arg(&python);
            c
        } else {
            Command::new(&python)
        };
        let o = c
            .args(["-c", script])
            .arg(&sock)
            .args([op, &id])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).trim().to_string()
    };
    assert_eq!(ask(false, "G"), "Y", "the id is right: we get the key");
    assert_eq!(ask(true, "G"), "E", "another user is refused");
    assert_eq!(ask(true, "L"), "E", "and may not lock it either");
    std::fs::set_permissions(sb.agent(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(top, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(
        stdout(&show_with(&sb, None)),
        "v\n",
        "still unlocked for us"
    );
}

#[test]
fn missing_public_keys_come_from_gpg_read_only_and_it_is_said_once() {
    let sb = Sandbox::new(2);
    let key = run_ok(
        sb.cmd("gpg")
            .args(["--export-secret-keys", "--armor", &sb.fprs[0]]),
    );
    let o = with_stdin(sb.mv().args(["key", "import", "--unsealed"]), &key);
    assert!(o.status.success(), "{}", stderr(&o));
    ok(sb.mv().args(["init", &sb.fprs[0]]));
    ok(with_stdin_cmd(sb.mv().args(["insert", "-e", "a"]), "pw\n"));
    let gpg_files = |sb: &Sandbox| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(sb.gnupg())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && !p.to_string_lossy().contains("random_seed"))
            .map(|p| (p.to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
            .collect();
        v.sort();
        v
    };
    let before = gpg_files(&sb);
    // User1's key is only in gpg's keyring: a shared folder for both works at once.
    let o = sb
        .mv()
        .args(["init", "-p", "shared", &sb.fprs[0], "user1@example.org"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let said = stderr(&o);
    assert_eq!(said.matches("from gpg's keyring").count(), 1, "{said}");
    assert!(said.contains(&sb.fprs[1]), "{said}");
    let o = sb.mv().args(["mv", "a", "shared/"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("from gpg's keyring"), "said once only");
    let mut want = vec![sb.enc_id(0), sb.enc_id(1)];
    want.sort();
    assert_eq!(sb.key_ids("shared/a.gpg"), want);
    assert_eq!(gpg_files(&sb), before, "gpg's keyring is only read");
    // Without gpg's copy either, the recipient is an error naming it, and nothing changed.
    let o = sb
        .mv()
        .args(["init", "-p", "other", "nobody@nowhere.example"])
        .output()
        .unwrap();
    assert!(fails(&o).contains("nobody@nowhere.example"));
    assert!(!sb.exists("other/.gpg-id"));
}

#[test]
fn the_cache_ends_at_its_maximum_lifetime_even_in_constant_use() {
    let sb = sealed_sandbox(&FAST);
    // A bad value is one clear error naming the variable, and unlocks nothing.
    for (var, val) in [
        ("MULTIVERSE_PASS_CACHE_MAX_TTL", "8h"),
        ("MULTIVERSE_PASS_CACHE_TTL", "-1"),
    ] {
        let o = sb
            .mv()
            .args(["show", "e"])
            .env("MULTIVERSE_PASSPHRASE", "pw")
            .env(var, val)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{var}={val}");
        assert!(stderr(&o).contains(var), "{}", stderr(&o));
        assert_eq!(stdout(&o), "");
    }
    assert!(!sb.agent().join("pass-agent.sock").exists());
    // The default maximum is said on unlock: 8 hours.
    let o = show_with(&sb, Some("pw"));
    assert!(
        stderr(&o).contains("600 s after last use, 28800 s at most"),
        "{}",
        stderr(&o)
    );
    ok(sb.mv().arg("lock"));
    // Idle timeout 10 min, maximum 3 s: used every 300 ms, the key still goes after 3 s.
    let o = sb
        .mv()
        .args(["show", "e"])
        .env("MULTIVERSE_PASSPHRASE", "pw")
        .env("MULTIVERSE_PASS_CACHE_MAX_TTL", "3")
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "v\n", "{}", stderr(&o));
    let unlocked = std::time::Instant::now();
    assert!(stderr(&o).contains("3 s at most"), "{}", stderr(&o));
    let mut uses = 0;
    loop {
        let o = show_with(&sb, None);
        if !o.status.success() {
            assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
            break;
        }
        assert_eq!(stdout(&o), "v\n");
        uses += 1;
        assert!(
            unlocked.elapsed() < std::time::Duration::from_secs(6),
            "the key outlived its maximum lifetime"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert!(uses >= 3, "the cache served meanwhile ({uses} uses)");
    assert!(
        unlocked.elapsed() >= std::time::Duration::from_millis(2500),
        "{:?}",
        unlocked.elapsed()
    );
}

/// Locks nobody's session cache when dropped (a failed test leaves no agent behind).
struct NobodyCache {
    runuser: PathBuf,
}

impl Drop for NobodyCache {
    fn drop(&mut self) {
        let _ = Command::new(&self.runuser)
            .args(["-u", "nobody", "--"])
            .arg(common::MV)
            .args(["pass", "lock"])
            .env_remove("MULTIVERSE_PASS_AGENT_DIR")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("TMPDIR")
            .output();
    }
}

/// The kill switch's first step, run by root's `guard fire` as the watcher runs it, ends the
/// session cache of a user (here nobody, whose cache is where any user's is when there is no
/// XDG_RUNTIME_DIR: /tmp/multiverse-UID): the key is gone, the next command asks again.
#[test]
fn the_kill_switch_s_first_step_ends_a_user_s_session_cache() {
    let runuser = require_tool("runuser");
    let sb = sealed_sandbox(&FAST);
    let top = sb.dir.path().to_path_buf();
    run_ok(
        Command::new(require_tool("chown"))
            .args(["-R", "nobody:nogroup"])
            .arg(&top),
    );
    let _cleanup = NobodyCache {
        runuser: runuser.clone(),
    };
    let as_nobody = |args: &[&str], pass: Option<&str>| -> Output {
        let mut c = Command::new(&runuser);
        c.args(["-u", "nobody", "--"])
            .arg(common::MV)
            .arg("pass")
            .args(args)
            .env("GNUPGHOME", sb.gnupg())
            .env("PASSWORD_STORE_DIR", sb.store())
            .env("MULTIVERSE_ROOT", top.join("tree"))
            .env_remove("MULTIVERSE_PASS_AGENT_DIR")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("TMPDIR")
            .env_remove("MULTIVERSE_PASS_CACHE_TTL")
            .env_remove("MULTIVERSE_PASS_CACHE_MAX_TTL")
            .env_remove("MULTIVERSE_PASSPHRASE")
            .stdin(Stdio::null());
        if let Some(p) = pass {
            c.env("MULTIVERSE_PASSPHRASE", p);
        }
        c.output().unwrap()
    };
    // A cache left by an earlier run goes first.
    as_nobody(&["lock"], None);
    let sock = Path::new("/tmp/multiverse-65534/pass-agent.sock");
    let o = as_nobody(&["show", "e"], Some("pw"));
    assert_eq!(stdout(&o), "v\n", "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unlocked for this session"),
        "{}",
        stderr(&o)
    );
    let o = as_nobody(&["show", "e"], None);
    assert_eq!(stdout(&o), "v\n", "cached: {}", stderr(&o));
    assert!(sock.exists());

    // Root's guard tree, with a chain of the first step alone (and a secret file it wipes).
    let g = tempfile::tempdir().unwrap();
    let secret = g.path().join("secret.key");
    std::fs::write(&secret, "s3cret").unwrap();
    std::fs::create_dir_all(g.path().join("tree/guard")).unwrap();
    std::fs::write(
        g.path().join("tree/guard/guard.toml"),
        format!(
            "armed = false\n\n[[step]]\naction = \"drop-secrets\"\npaths = [{:?}]\ntimeout_ms = 5000\n",
            secret.display().to_string()
        ),
    )
    .unwrap();
    let o = Command::new(common::MV)
        .arg("--json")
        .arg("--root")
        .arg(g.path().join("tree"))
        .args(["guard", "fire"])
        .env_remove("MULTIVERSE_PASS_AGENT_DIR")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("TMPDIR")
        .env_remove("MULTIVERSE_ROOT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let events: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<(String, String)> = events
        .iter()
        .filter(|v| v["event"] == "action")
        .map(|v| {
            (
                v["command"].as_str().unwrap().to_string(),
                v["status"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        steps[0],
        (format!("{} pass lock --all", common::MV), "\"ok\"".into()),
        "the first op of the first step: {steps:?}"
    );
    assert!(
        !secret.exists(),
        "the step went on to wipe the secret files"
    );

    // The agent has ended and nobody's next command has to unlock again.
    assert!(!sock.exists(), "the agent is gone with its socket");
    let o = as_nobody(&["show", "e"], None);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert_eq!(stdout(&o), "");
    let o = as_nobody(&["show", "e"], Some("pw"));
    assert!(
        stderr(&o).contains("unlocked for this session"),
        "{}",
        stderr(&o)
    );
}

/// Text without ANSI colour sequences (pass's tree and grep output are coloured).
fn no_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
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
}

/// An editor script that runs `body` with the file as $1.
fn editor(sb: &Sandbox, name: &str, body: &str) -> PathBuf {
    let p = sb.dir.path().join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn edit_without_a_change_fails_like_pass() {
    let sb = Sandbox::new(1);
    ok(sb.gpg().args(["init", &sb.fprs[0]]));
    ok(sb.gpg().args(["git", "init", "-q"]));
    ok(with_stdin_cmd(
        sb.gpg().args(["insert", "-m", "a"]),
        "pw\nuser: x\n",
    ));
    let commits = |sb: &Sandbox| ok(sb.gpg().args(["git", "rev-list", "--count", "HEAD"]));
    let before = commits(&sb);
    let touch = editor(&sb, "touch.sh", "touch \"$1\"");
    let nothing = editor(&sb, "nothing.sh", "true");
    let same = editor(&sb, "same.sh", "cp \"$1\" \"$1.x\"; mv \"$1.x\" \"$1\"");
    for (ed, name, theirs_says) in [
        (&nothing, "a", "Password unchanged."),
        (&same, "a", "Password unchanged."),
        (&touch, "a", "Password unchanged."),
        (&nothing, "new", "New password not saved."),
    ] {
        let theirs = sb
            .pass()
            .args(["edit", name])
            .env("EDITOR", ed)
            .output()
            .unwrap();
        let ours = sb
            .gpg()
            .args(["edit", name])
            .env("EDITOR", ed)
            .output()
            .unwrap();
        assert_eq!(
            theirs.status.code(),
            Some(1),
            "pass edit {name} with {ed:?}: {} {}",
            stdout(&theirs),
            stderr(&theirs)
        );
        assert!(stderr(&theirs).contains(theirs_says), "{}", stderr(&theirs));
        assert_eq!(
            ours.status.code(),
            Some(1),
            "{ed:?} {name}: {}",
            stderr(&ours)
        );
        let said = stderr(&ours);
        let want = if theirs_says.starts_with("New") {
            format!("New password for {name} not saved.")
        } else {
            format!("Password for {name} unchanged.")
        };
        assert!(said.contains(&want), "{said}");
        assert_eq!(said.lines().count(), 1, "one clear error: {said}");
    }
    assert!(!sb.exists("new.gpg"));
    assert_eq!(commits(&sb), before, "nothing committed");
    // A new entry the editor leaves empty is saved, empty, by both (pass's pipefail).
    ok(sb.pass().args(["edit", "new2"]).env("EDITOR", &touch));
    ok(sb.gpg().args(["edit", "new3"]).env("EDITOR", &touch));
    assert_eq!(ok(sb.pass().arg("new3")), "");
    assert_eq!(ok(sb.gpg().arg("new2")), "");
    assert_eq!(ok(sb.gpg().arg("a")), "pw\nuser: x\n");
    // A real change still saves, from both.
    let change = editor(&sb, "change.sh", "echo more >> \"$1\"");
    ok(sb.gpg().args(["edit", "a"]).env("EDITOR", &change));
    assert_eq!(ok(sb.pass().arg("a")), "pw\nuser: x\nmore\n");
}

#[test]
fn find_matches_names_as_pass_s_tree_does() {
    let sb = Sandbox::new(1);
    ok(sb.gpg().args(["init", &sb.fprs[0]]));
    for n in [
        "Fish",
        "Fishies/stuff",
        "Fishies/other",
        "web/a",
        "Web/bank",
        "mail/gmail",
        "cards/visa",
        "deep/er/most",
        "a-b",
        "Fishies/sub/c",
        "x/fishy/a",
        "x/fishy/sub/fishdeep/f",
    ] {
        ok(with_stdin_cmd(sb.gpg().args(["insert", "-e", n]), "pw\n"));
    }
    for terms in [
        &["fish"][..],
        &["WEB"],
        &["a"],
        &["gpg"],
        &["f*s"],
        &["w?b"],
        &["[bv]"],
        &["[!a-z]"],
        &["mail", "visa"],
        &["er"],
        &["nothing"],
        &["ank|isa"],
        &["a/b"],
        &["-"],
        &["es/s"],
        &["FISH", "nothing"],
    ] {
        let theirs = ok(sb.pass().arg("find").args(terms));
        let ours = ok(sb.gpg().arg("find").args(terms));
        assert_eq!(ours, no_ansi(&theirs), "find {terms:?}");
    }
    let v: Vec<String> =
        serde_json::from_str(&ok(sb.gpg().args(["find", "--json", "w?b"]))).unwrap();
    assert_eq!(v, ["Web/bank", "web/a"]);
}

/// Output of `pass grep` as (entry, its lines) in name order, colours removed: pass walks the
/// store in directory order, we in name order.
fn grep_blocks(text: &str, names: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for l in no_ansi(text).lines() {
        match l.strip_suffix(':').filter(|n| names.contains(n)) {
            Some(n) => out.push((n.to_string(), String::new())),
            None => {
                let cur = out.last_mut().unwrap();
                cur.1.push_str(l);
                cur.1.push('\n');
            }
        }
    }
    out.sort();
    out
}

#[test]
fn grep_takes_grep_s_options_as_pass_does() {
    let sb = Sandbox::new(1);
    ok(sb.gpg().args(["init", &sb.fprs[0]]));
    let entries = [
        ("a", "Pass+Word\nuser: alice\nurl: https://a.example\n"),
        ("b", "x\nAlice\n\nline (paren) x\nmalice\n"),
        ("c/d", "nothing here\r\nlast line without newline"),
        ("e", "-v\n-e and --json\n"),
    ];
    for (n, text) in entries {
        ok(with_stdin_cmd(sb.gpg().args(["insert", "-m", n]), text));
    }
    let names: Vec<&str> = entries.iter().map(|(n, _)| *n).collect();
    for args in [
        &["alice"][..],
        &["-i", "alice"],
        &["-v", "alice"],
        &["-c", "e"],
        &["-n", "e"],
        &["-w", "alice"],
        &["-x", "x"],
        &["-E", "Pass.Word|paren"],
        &["Pass+Word"],
        &["Pass\\+Word"],
        &["-F", "(paren)"],
        &["\\(paren\\)"],
        &["-e", "x", "-e", "url"],
        &["-m1", "e"],
        &["-iv", "-e", "A"],
        &["--ignore-case", "ALICE"],
        &["--regexp=url"],
        &["--", "-v"],
        &["-e", "--json"],
        &["^[[:upper:]]"],
        &["out$"],
        &["\\<line\\>"],
        &["a\nurl"],
        // Options only grep itself knows: it runs, once per entry, as for pass.
        &["-o", "alic."],
        &["-A1", "x"],
        &["--only", "a.i"],
        &["-E", "a{"],
        &["\\(a\\)\\1"],
    ] {
        let theirs = sb.pass().arg("grep").args(args).output().unwrap();
        let ours = sb.gpg().arg("grep").args(args).output().unwrap();
        assert!(ours.status.success(), "{args:?}: {}", stderr(&ours));
        assert_eq!(
            grep_blocks(&stdout(&ours), &names),
            grep_blocks(&stdout(&theirs), &names),
            "grep {args:?}"
        );
    }
    // grep's own refusals are one error (pass repeats grep's per entry and exits 0).
    for args in [&["-E", "("][..], &["--no-such-option", "x"], &["-i"]] {
        let o = sb.gpg().arg("grep").args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(stdout(&o), "");
        assert_eq!(
            stderr(&o).lines().filter(|l| l.contains("error")).count(),
            1,
            "{}",
            stderr(&o)
        );
    }
    // --json: the hits with line numbers (none when grep itself chose the lines).
    let v: serde_json::Value =
        serde_json::from_str(&ok(sb.gpg().args(["grep", "--json", "-i", "ALICE"]))).unwrap();
    assert_eq!(v["hits"][0]["name"], "a");
    assert_eq!(v["hits"][0]["lines"][0]["line"], 2);
    assert_eq!(v["hits"][1]["lines"][1]["text"], "malice");
    let v: serde_json::Value =
        serde_json::from_str(&ok(sb.gpg().args(["grep", "-o", "--json", "alic."]))).unwrap();
    assert_eq!(
        v["hits"][0]["lines"][0],
        serde_json::json!({"line": null, "text": "alice"})
    );
}

#[test]
fn generated_passwords_follow_pass_s_character_sets() {
    let tr = require_tool("tr");
    let sb = Sandbox::new(1);
    ok(sb.gpg().args(["init", &sb.fprs[0]]));
    // What `LC_ALL=C tr -dc SET` keeps of every ASCII character but NUL and newline.
    let kept = |set: &str| -> Vec<u8> {
        let all: String = (1u8..128).filter(|b| *b != b'\n').map(char::from).collect();
        let o = with_stdin(
            Command::new(&tr).args(["-dc", set]).env("LC_ALL", "C"),
            &all,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let mut v = o.stdout;
        v.sort_unstable();
        v
    };
    let chars = |pw: &str| -> Vec<u8> {
        let mut v = pw.as_bytes().to_vec();
        v.sort_unstable();
        v.dedup();
        v
    };
    let json_pw = |o: &Output| -> String {
        let v: serde_json::Value = serde_json::from_str(&stdout(o)).unwrap();
        v["password"].as_str().unwrap().to_string()
    };
    for (var, flag, set) in [
        ("PASSWORD_STORE_CHARACTER_SET", None, "a-c"),
        ("PASSWORD_STORE_CHARACTER_SET", None, "[:digit:]x-z_"),
        ("PASSWORD_STORE_CHARACTER_SET", None, "\\101-C\\-"),
        (
            "PASSWORD_STORE_CHARACTER_SET",
            None,
            "[:upper:][=_=][:punct:]",
        ),
        (
            "PASSWORD_STORE_CHARACTER_SET_NO_SYMBOLS",
            Some("-n"),
            "[:lower:]",
        ),
    ] {
        let want = kept(set);
        let mut c = sb.gpg();
        c.args(["--json", "generate", "-f"])
            .args(flag)
            .args(["ours", "3000"])
            .env(var, set);
        let ours = json_pw(&c.output().unwrap());
        assert_eq!(ours.len(), 3000);
        assert_eq!(
            chars(&ours),
            want,
            "{var}={set:?}: every character of tr's set, no other"
        );
        let mut c = sb.pass();
        c.args(["generate", "-f"])
            .args(flag)
            .args(["theirs", "200"])
            .env(var, set);
        ok(&mut c);
        let theirs = ok(sb.pass().arg("theirs"));
        assert!(
            chars(theirs.trim_end()).iter().all(|b| want.contains(b)),
            "{set}: {theirs}"
        );
    }
    // The other variable is ignored; the length comes from PASSWORD_STORE_GENERATED_LENGTH
    // (empty: pass's 25).
    let mut c = sb.gpg();
    c.args(["--json", "generate", "-f", "-n", "x"])
        .env("PASSWORD_STORE_CHARACTER_SET", "a")
        .env("PASSWORD_STORE_GENERATED_LENGTH", "7");
    let pw = json_pw(&c.output().unwrap());
    assert_eq!(pw.len(), 7);
    assert!(pw.bytes().all(|b| b.is_ascii_alphanumeric()) && pw != "aaaaaaa");
    let mut c = sb.gpg();
    c.args(["--json", "generate", "-f", "x"])
        .env("PASSWORD_STORE_GENERATED_LENGTH", "");
    assert_eq!(json_pw(&c.output().unwrap()).len(), 25);
    // A set tr refuses, or one that leaves nothing to draw from, is one clear error.
    for set in ["z-a", "[:nope:]", "\\n", "é"] {
        let o = sb
            .gpg()
            .args(["generate", "-f", "bad"])
            .env("PASSWORD_STORE_CHARACTER_SET", set)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{set}");
        assert!(
            stderr(&o).contains("PASSWORD_STORE_CHARACTER_SET="),
            "{}",
            stderr(&o)
        );
        assert!(!sb.exists("bad.gpg"));
    }
}

#[test]
fn password_store_key_replaces_the_recipients() {
    let sb = Sandbox::new(2);
    ok(sb.gpg().args(["init", &sb.fprs[0]]));
    let key1 = sb.fprs[1].clone();
    ok(with_stdin_cmd(
        sb.gpg()
            .args(["insert", "-e", "ours"])
            .env("PASSWORD_STORE_KEY", &key1),
        "pw\n",
    ));
    ok(with_stdin_cmd(
        sb.pass()
            .args(["insert", "-e", "theirs"])
            .env("PASSWORD_STORE_KEY", &key1),
        "pw\n",
    ));
    assert_eq!(sb.key_ids("ours.gpg"), [sb.enc_id(1)]);
    assert_eq!(sb.key_ids("theirs.gpg"), [sb.enc_id(1)]);
    // Several ids, separated by white space; the in-process keyring too (keys imported).
    let both = format!("{} {}", sb.fprs[0], sb.fprs[1]);
    let mut want = vec![sb.enc_id(0), sb.enc_id(1)];
    want.sort();
    ok(sb
        .gpg()
        .args(["generate", "g", "5"])
        .env("PASSWORD_STORE_KEY", &both));
    assert_eq!(sb.key_ids("g.gpg"), want);
    // `mv` re-encrypts for it, as pass's does.
    ok(sb
        .gpg()
        .args(["mv", "g", "h"])
        .env("PASSWORD_STORE_KEY", &key1));
    assert_eq!(sb.key_ids("h.gpg"), [sb.enc_id(1)]);
    // No .gpg-id needed at all.
    let bare = sb.dir.path().join("bare");
    ok(with_stdin_cmd(
        sb.gpg()
            .args(["insert", "-e", "x"])
            .env("PASSWORD_STORE_DIR", &bare)
            .env("PASSWORD_STORE_KEY", &key1),
        "pw\n",
    ));
    assert!(bare.join("x.gpg").is_file() && !bare.join(".gpg-id").exists());
    assert_eq!(
        ok(sb.pass().arg("x").env("PASSWORD_STORE_DIR", &bare)),
        "pw\n"
    );
}

#[test]
fn password_store_signing_key_signs_and_checks_gpg_id() {
    let sb = Sandbox::new(2);
    let (k0, k1) = (sb.fprs[0].clone(), sb.fprs[1].clone());
    let insert = |c: &mut Command, name: &str, signer: &str| -> Output {
        with_stdin(
            c.args(["insert", "-e", name])
                .env("PASSWORD_STORE_SIGNING_KEY", signer),
            "pw\n",
        )
    };
    // Our init signs .gpg-id; gpg and pass accept the signature.
    ok(sb
        .gpg()
        .args(["init", &k0])
        .env("PASSWORD_STORE_SIGNING_KEY", &k0));
    assert!(sb.exists(".gpg-id.sig"));
    ok(sb
        .cmd("gpg")
        .arg("--verify")
        .arg(sb.store().join(".gpg-id.sig"))
        .arg(sb.store().join(".gpg-id")));
    for c in [sb.gpg(), sb.mv(), sb.pass()] {
        let mut c = c;
        let o = insert(&mut c, "a", &k0);
        assert!(o.status.success(), "{:?}: {}", c.get_program(), stderr(&o));
    }
    // pass's signature of a folder's .gpg-id is accepted by ours.
    ok(sb
        .pass()
        .args(["init", "-p", "sub", &k0])
        .env("PASSWORD_STORE_SIGNING_KEY", &k0));
    assert!(sb.exists("sub/.gpg-id.sig"));
    assert!(insert(&mut sb.gpg(), "sub/x", &k0).status.success());
    // A folder moves with its signature, and stays usable, as after pass's `mv`.
    ok(sb
        .gpg()
        .args(["mv", "sub", "moved/"])
        .env("PASSWORD_STORE_SIGNING_KEY", &k0));
    assert!(sb.exists("moved/sub/.gpg-id.sig") && !sb.exists("sub"));
    assert!(insert(&mut sb.pass(), "moved/sub/y", &k0).status.success());
    assert!(insert(&mut sb.gpg(), "moved/sub/z", &k0).status.success());
    // Not by a signing key: refused by both, before anything is written.
    for c in [sb.gpg(), sb.pass()] {
        let mut c = c;
        let o = insert(&mut c, "b", &k1);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("is invalid"), "{}", stderr(&o));
    }
    // A .gpg-id changed behind its signature: refused by both.
    let id = sb.store().join(".gpg-id");
    std::fs::write(&id, format!("{k0}\n{k1}\n")).unwrap();
    for c in [sb.gpg(), sb.mv(), sb.pass()] {
        let mut c = c;
        let o = insert(&mut c, "b", &k0);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("is invalid"), "{}", stderr(&o));
    }
    assert!(!sb.exists("b.gpg"));
    // No signature at all.
    std::fs::remove_file(sb.store().join(".gpg-id.sig")).unwrap();
    for c in [sb.gpg(), sb.pass()] {
        let mut c = c;
        let o = insert(&mut c, "b", &k0);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    }
    // Without the variable nothing is checked (pass's rule); reading never checks.
    assert!(with_stdin(sb.gpg().args(["insert", "-e", "b"]), "pw\n")
        .status
        .success());
    assert_eq!(
        ok(sb.gpg().arg("a").env("PASSWORD_STORE_SIGNING_KEY", &k1)),
        "pw\n"
    );
    // Re-signing with init makes it good again, committed like pass's.
    ok(sb.gpg().args(["git", "init", "-q"]));
    ok(sb
        .gpg()
        .args(["init", &k0, &k1])
        .env("PASSWORD_STORE_SIGNING_KEY", &k0));
    let log = ok(sb.gpg().args(["git", "log", "--format=%s"]));
    assert!(
        log.contains(&format!("Signing new GPG id with {k0}.")),
        "{log}"
    );
    assert!(insert(&mut sb.pass(), "c", &k0).status.success());
}

/// fsck with `PASSWORD_STORE_SIGNING_KEY`: a `.gpg-id` whose signature is missing, does not
/// verify, or is by another key is named with its folder, once, not as "no .gpg-id".
#[test]
fn fsck_says_what_is_wrong_with_a_gpg_id_signature() {
    let sb = Sandbox::new(2);
    let (k0, k1) = (sb.fprs[0].clone(), sb.fprs[1].clone());
    let signed = |c: &mut Command| -> String { ok(c.env("PASSWORD_STORE_SIGNING_KEY", &k0)) };
    signed(sb.gpg().args(["init", &k0]));
    signed(sb.gpg().args(["init", "-p", "web", &k0]));
    for name in ["top", "web/a", "web/b"] {
        ok(with_stdin_cmd(
            sb.gpg()
                .args(["insert", "-e", name])
                .env("PASSWORD_STORE_SIGNING_KEY", &k0),
            "pw\n",
        ));
    }
    let fsck = |json: bool| -> Output {
        let mut c = sb.gpg();
        if json {
            c.arg("--json");
        }
        c.arg("fsck")
            .env("PASSWORD_STORE_SIGNING_KEY", &k0)
            .output()
            .unwrap()
    };
    let o = fsck(false);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "store is healthy\n");
    let web_id = sb.store().join("web/.gpg-id");
    let web_sig = sb.store().join("web/.gpg-id.sig");
    let only_line = |o: &Output| -> String {
        assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
        let out = stdout(o);
        assert_eq!(
            out.lines().count(),
            1,
            "one problem, not one per entry: {out}"
        );
        assert!(!out.contains("no .gpg-id applies"), "{out}");
        assert!(stderr(o).contains("1 problem(s) found"), "{}", stderr(o));
        out
    };

    // Missing.
    std::fs::remove_file(&web_sig).unwrap();
    let out = only_line(&fsck(false));
    assert_eq!(
        out,
        format!(
            "{}: folder `web`: .gpg-id has no signature (.gpg-id.sig) while \
             PASSWORD_STORE_SIGNING_KEY is set, so pass and ours refuse to encrypt there; sign \
             it again with `init`\n",
            web_id.display()
        )
    );
    // Without the variable nothing is checked, as in pass.
    assert!(sb.gpg().arg("fsck").output().unwrap().status.success());

    // Does not verify: .gpg-id changed after it was signed.
    signed(sb.gpg().args(["init", "-p", "web", &k0]));
    assert!(fsck(false).status.success());
    let text = std::fs::read_to_string(&web_id).unwrap();
    std::fs::write(&web_id, format!("{text}# changed\n")).unwrap();
    let out = only_line(&fsck(false));
    assert!(
        out.starts_with(&format!(
            "{}: folder `web`: .gpg-id.sig does not verify (",
            web_id.display()
        )),
        "{out}"
    );
    std::fs::write(&web_id, &text).unwrap();
    assert!(fsck(false).status.success());

    // A good signature by a key not in PASSWORD_STORE_SIGNING_KEY.
    ok(sb
        .cmd("gpg")
        .args(["--batch", "--yes", "--default-key", &k1, "--detach-sign"])
        .arg(&web_id));
    let out = only_line(&fsck(false));
    assert_eq!(
        out,
        format!(
            "{}: folder `web`: .gpg-id.sig is a good signature by {k1}, which is not a key of \
             PASSWORD_STORE_SIGNING_KEY (40-digit fingerprints)\n",
            web_id.display()
        )
    );
    let o = fsck(true);
    let issues: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        issues,
        serde_json::json!([{
            "file": web_id.display().to_string(),
            "problem": "gpg_id_signature_wrong_key",
            "folder": "web",
            "signers": [k1],
        }])
    );
    // Writes there are refused with the same reason.
    let o = with_stdin(
        sb.gpg()
            .args(["insert", "-e", "web/c"])
            .env("PASSWORD_STORE_SIGNING_KEY", &k0),
        "pw\n",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!(
            "is made by {k1}, not by a key of PASSWORD_STORE_SIGNING_KEY"
        )),
        "{}",
        stderr(&o)
    );
    // Both keys allowed: good again.
    let o = sb
        .gpg()
        .arg("fsck")
        .env("PASSWORD_STORE_SIGNING_KEY", format!("{k0} {k1}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stdout(&o));

    // The top folder, and a folder with a .gpg-id and no entries, are checked too.
    std::fs::remove_file(sb.store().join(".gpg-id.sig")).unwrap();
    ok(sb.gpg().args(["init", "-p", "empty", &k0]));
    let o = fsck(false);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with(&format!(
            "{}: the store's top folder: .gpg-id has no signature",
            sb.store().join(".gpg-id").display()
        )),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{}: folder `empty`: .gpg-id has no signature",
            sb.store().join("empty/.gpg-id").display()
        )),
        "{out}"
    );
    assert!(
        lines[2].contains("folder `web`: .gpg-id.sig is a good signature by"),
        "{out}"
    );
}

#[test]
fn extensions_run_as_pass_runs_them() {
    let sb = Sandbox::new(1);
    ok(sb.gpg().args(["init", &sb.fprs[0]]));
    ok(with_stdin_cmd(
        sb.gpg().args(["insert", "-e", "web/a"]),
        "pw\n",
    ));
    let ext = sb.store().join(".extensions");
    std::fs::create_dir_all(&ext).unwrap();
    std::fs::write(
        ext.join("hello.bash"),
        "check_sneaky_paths \"$@\"\n\
         echo \"args: $*; command: $COMMAND; program: $PROGRAM\"\n\
         [[ $PREFIX == \"$PASSWORD_STORE_DIR\" && -d $EXTENSIONS ]] && echo dirs ok\n\
         set_gpg_recipients web\n\
         echo \"recipients: ${GPG_RECIPIENTS[*]}\"\n\
         echo \"length $GENERATED_LENGTH, clip $CLIP_TIME s\"\n\
         cmd_show \"$1\"\n\
         yesno 'sure?'\n\
         tmpdir; [[ -d $SECURE_TMPDIR ]] && echo tmp ok\n\
         exit 3\n",
    )
    .unwrap();
    // Like pass, only an executable file counts.
    let not_yet = sb
        .gpg()
        .arg("hello")
        .env("PASSWORD_STORE_ENABLE_EXTENSIONS", "true")
        .output()
        .unwrap();
    assert!(
        stderr(&not_yet).contains("not in the password store"),
        "{}",
        stderr(&not_yet)
    );
    std::fs::set_permissions(
        ext.join("hello.bash"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let run = |c: &mut Command, args: &[&str], enable: bool| -> Output {
        c.args(args);
        if enable {
            c.env("PASSWORD_STORE_ENABLE_EXTENSIONS", "true");
        }
        c.output().unwrap()
    };
    let theirs = run(&mut sb.pass(), &["hello", "web/a", "x"], true);
    let ours = run(&mut sb.gpg(), &["hello", "web/a", "x"], true);
    let want = format!(
        "args: web/a x; command: hello; program: pass\ndirs ok\nrecipients: {}\n\
         length 25, clip 45 s\npw\ntmp ok\n",
        sb.fprs[0]
    );
    assert_eq!(stdout(&theirs), want, "{}", stderr(&theirs));
    assert_eq!(stdout(&ours), want, "{}", stderr(&ours));
    assert_eq!(theirs.status.code(), Some(3));
    assert_eq!(ours.status.code(), Some(3), "the extension's exit status");
    // pass's helpers die as pass's do.
    for c in [sb.pass(), sb.gpg()] {
        let mut c = c;
        let o = run(&mut c, &["hello", "../x"], true);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("sneaky path"), "{}", stderr(&o));
    }
    // Not enabled: the word is an entry name, as for pass.
    for c in [sb.pass(), sb.gpg()] {
        let mut c = c;
        let o = run(&mut c, &["hello"], false);
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("not in the password store"),
            "{}",
            stderr(&o)
        );
    }
    // With PASSWORD_STORE_SIGNING_KEY an extension runs only with a good signature (and
    // set_gpg_recipients checks .gpg-id's, as pass's does).
    let signer = &sb.fprs[0];
    ok(sb
        .gpg()
        .args(["init", signer])
        .env("PASSWORD_STORE_SIGNING_KEY", signer));
    for c in [sb.pass(), sb.gpg()] {
        let mut c = c;
        c.env("PASSWORD_STORE_SIGNING_KEY", signer);
        let o = run(&mut c, &["hello", "web/a"], true);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
        assert_eq!(stdout(&o), "");
    }
    ok(sb
        .cmd("gpg")
        .args(["--batch", "--detach-sign"])
        .arg(ext.join("hello.bash")));
    for c in [sb.pass(), sb.gpg()] {
        let mut c = c;
        c.env("PASSWORD_STORE_SIGNING_KEY", signer);
        let o = run(&mut c, &["hello", "web/a"], true);
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    }
    // A native command is never an extension's.
    std::fs::write(ext.join("show.bash"), "echo hijacked\n").unwrap();
    std::fs::set_permissions(
        ext.join("show.bash"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    assert_eq!(
        ok(sb
            .gpg()
            .args(["show", "web/a"])
            .env("PASSWORD_STORE_ENABLE_EXTENSIONS", "true")),
        "pw\n"
    );
}

/// An extension that uses pass's helpers and variables, for [`extension_helpers_are_pass_s`].
const HELPERS_EXTENSION: &str = r#"check_sneaky_paths "$@"
echo "prefix ${PREFIX#"$PASSWORD_STORE_DIR"}. extensions ${EXTENSIONS#"$PREFIX"/} program $PROGRAM command $COMMAND"
echo "selection $X_SELECTION clip $CLIP_TIME length $GENERATED_LENGTH set $CHARACTER_SET / $CHARACTER_SET_NO_SYMBOLS"
echo "gpg $GPG opts ${GPG_OPTS[*]}"
echo "tools $GETOPT / $SHRED / $BASE64 / $SYSTEM_EXTENSION_DIR"
declare -F clip qrcode die yesno check_sneaky_paths verify_file set_gpg_recipients reencrypt_path \
	tmpdir set_git git_add_file git_commit cmd_show cmd_insert cmd_edit cmd_generate cmd_delete \
	cmd_copy_move cmd_find cmd_grep cmd_init cmd_git cmd_version cmd_usage \
	cmd_extension_or_show cmd_extension | tr '\n' ' '; echo
pw="$(cmd_show "$1" | head -n 1)"
qrcode "$pw" "$1"
echo "qrcode status $?"
yesno "Go on?" && echo "yesno says yes off a terminal"
tmpdir nowarn
[[ $SECURE_TMPDIR == /dev/shm/pass.* && -d $SECURE_TMPDIR ]] && echo "tmpdir ok"
echo "$SECURE_TMPDIR" > "$2"
[[ $3 == die ]] && die "stopping at $1"
echo end
"#;

/// pass's shell helpers and variables, as an extension sees them under pass and under ours:
/// the same output, the same exit status, `qrcode` run as pass runs `qrencode`.
#[test]
fn extension_helpers_are_pass_s() {
    let sb = Sandbox::new(1);
    ok(sb.gpg().args(["init", &sb.fprs[0]]));
    ok(with_stdin_cmd(
        sb.gpg().args(["insert", "-m", "web/a"]),
        "pw one\nuser: me\n",
    ));
    let ext = sb.store().join(".extensions");
    std::fs::create_dir_all(&ext).unwrap();
    std::fs::write(ext.join("helpers.bash"), HELPERS_EXTENSION).unwrap();
    std::fs::set_permissions(
        ext.join("helpers.bash"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    // A stand-in qrencode that records its argv and stdin.
    let bin = sb.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = sb.dir.path().join("qr");
    std::fs::write(
        bin.join("qrencode"),
        "#!/bin/sh\nprintf '%s\\n' \"$*\" > \"$QR_LOG.argv\"\ncat > \"$QR_LOG.stdin\"\necho '[QR]'\n",
    )
    .unwrap();
    std::fs::set_permissions(bin.join("qrencode"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path_with_qr = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let tmp_note = sb.dir.path().join("tmpdir-was");
    let run = |c: Command, qr: bool, extra: &[&str]| -> Output {
        let mut c = c;
        c.args(["helpers", "web/a"])
            .arg(&tmp_note)
            .args(extra)
            .env("PASSWORD_STORE_ENABLE_EXTENSIONS", "true")
            .env("PASSWORD_STORE_CLIP_TIME", "7")
            .env("PASSWORD_STORE_GPG_OPTS", "--no-tty")
            .env("QR_LOG", &log);
        if qr {
            c.env("PATH", &path_with_qr);
        }
        c.output().unwrap()
    };
    let want_head = "prefix . extensions .extensions program pass command helpers\n\
         selection clipboard clip 7 length 25 set [:punct:][:alnum:] / [:alnum:]\n";
    let mut seen = Vec::new();
    for (who, c) in [("pass", sb.pass()), ("ours", sb.gpg())] {
        let _ = std::fs::remove_file(log.with_extension("argv"));
        let o = run(c, true, &[]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(0), "{who}: {}", stderr(&o));
        assert!(out.starts_with(want_head), "{who}: {out}");
        assert!(
            out.ends_with("[QR]\nqrcode status 0\nyesno says yes off a terminal\ntmpdir ok\nend\n"),
            "{who}: {out}"
        );
        // qrencode got pass's arguments and the password on stdin, without a newline.
        assert_eq!(
            std::fs::read_to_string(log.with_extension("argv")).unwrap(),
            "-t utf8\n",
            "{who}"
        );
        assert_eq!(
            std::fs::read_to_string(log.with_extension("stdin")).unwrap(),
            "pw one",
            "{who}"
        );
        // tmpdir's folder is gone once the extension has ended.
        let tmp = std::fs::read_to_string(&tmp_note).unwrap();
        assert!(!Path::new(tmp.trim()).exists(), "{who}: {tmp}");
        seen.push(out);
    }
    assert_eq!(seen[0], seen[1], "pass and ours print the same");
    assert!(seen[1].contains(" reencrypt_path "), "{}", seen[1]);

    // Without qrencode: pass's call fails with bash's "command not found" (127) and the
    // extension goes on; ours says the same without pass's line number.
    let plain_path = std::env::var("PATH").unwrap_or_default();
    assert!(
        !plain_path
            .split(':')
            .any(|d| Path::new(d).join("qrencode").exists()),
        "this check needs qrencode absent from PATH"
    );
    let theirs = run(sb.pass(), false, &[]);
    let ours = run(sb.gpg(), false, &[]);
    assert_eq!(stdout(&theirs), stdout(&ours));
    assert!(
        stdout(&ours).contains("\nqrcode status 127\n"),
        "{}",
        stdout(&ours)
    );
    assert_eq!(stderr(&ours), "pass: qrencode: command not found\n");
    let line_no = regex_lite_strip(&stderr(&theirs));
    assert_eq!(
        line_no,
        "pass: qrencode: command not found\n",
        "{}",
        stderr(&theirs)
    );

    // die and check_sneaky_paths end the extension with status 1 and pass's message.
    for c in [sb.pass(), sb.gpg()] {
        let o = run(c, true, &["die"]);
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(stderr(&o), "stopping at web/a\n");
        assert!(stdout(&o).ends_with("tmpdir ok\n"), "{}", stdout(&o));
    }
    for c in [sb.pass(), sb.gpg()] {
        let mut c = c;
        let o = c
            .args(["helpers", "web/../../etc"])
            .env("PASSWORD_STORE_ENABLE_EXTENSIONS", "true")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(
            stderr(&o),
            "Error: You've attempted to pass a sneaky path to pass. Go home.\n"
        );
        assert_eq!(stdout(&o), "");
    }
}

/// pass's stderr for a missing command, `/usr/bin/pass: line N: WHAT`, as `pass: WHAT`.
fn regex_lite_strip(s: &str) -> String {
    s.lines()
        .map(|l| {
            let l = l.strip_prefix("/usr/bin/").unwrap_or(l);
            match l.split_once(": line ") {
                Some((head, rest)) => match rest.split_once(": ") {
                    Some((n, tail)) if n.bytes().all(|b| b.is_ascii_digit()) => {
                        format!("{head}: {tail}\n")
                    }
                    _ => format!("{l}\n"),
                },
                None => format!("{l}\n"),
            }
        })
        .collect()
}

#[test]
fn every_read_command_speaks_json() {
    let sb = Sandbox::new(1);
    ok(sb.gpg().args(["init", &sb.fprs[0]]));
    ok(with_stdin_cmd(
        sb.gpg().args(["insert", "-m", "web/a"]),
        "pw\nuser: me\notpauth://totp/Ex:me?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Ex\n",
    ));
    let json = |args: &[&str]| -> serde_json::Value {
        let out = ok(sb.gpg().arg("--json").args(args));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };
    assert_eq!(json(&["show", "web/a"])["password"], "pw");
    assert_eq!(json(&["web/a"])["name"], "web/a");
    assert_eq!(json(&["ls"]), serde_json::json!(["web/a"]));
    assert_eq!(json(&["show", "web"]), serde_json::json!(["web/a"]));
    assert_eq!(json(&["find", "we"]), serde_json::json!(["web/a"]));
    assert_eq!(
        json(&["grep", "user"])["hits"][0]["lines"][0]["text"],
        "user: me"
    );
    let code = json(&["otp", "web/a"]);
    assert_eq!(code["code"].as_str().unwrap().len(), 6, "{code}");
    assert!(json(&["otp", "uri", "web/a"])
        .to_string()
        .contains("otpauth://"));
}

/// `multiverse [GLOBAL…] pass …` skips clap's tree of every subcommand (issue 17): global options
/// still work on both sides of `pass`, and errors read as before, clap's and pass's alike.
#[test]
fn global_options_around_pass_read_as_before() {
    let sb = Sandbox::new(1);
    ok(sb.gpg().args(["init", &sb.fprs[0]]));
    ok(with_stdin_cmd(sb.gpg().args(["insert", "-m", "e"]), "v\n"));
    let top = || sb.cmd(common::MV);
    let json = |c: &mut Command| -> serde_json::Value { serde_json::from_str(&ok(c)).unwrap() };
    assert_eq!(
        json(top().args(["--json", "pass", "--gpg", "show", "e"]))["password"],
        "v"
    );
    assert_eq!(
        json(top().args(["pass", "--json", "--gpg", "e"]))["password"],
        "v"
    );
    assert_eq!(
        json(top().args(["-v", "pass", "--gpg", "--json", "e"]))["name"],
        "e"
    );
    // --root, before `pass` and after it, is the tree the keys are looked for in.
    let other = sb.dir.path().join("other");
    for args in [
        vec![
            "--root".to_string(),
            other.display().to_string(),
            "pass".into(),
        ],
        vec!["pass".into(), format!("--root={}", other.display())],
    ] {
        let o = top().args(&args).args(["show", "e"]).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = fails(&o);
        assert!(
            err.contains(&format!("{}/pass-keys holds none", other.display())),
            "{args:?}: {err}"
        );
    }
    // pass's errors: an unknown option is never an entry name.
    let o = top().args(["pass", "--bogus", "e"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = fails(&o);
    assert!(
        err.contains("pass: unrecognized option '--bogus'") && err.contains("Usage: pass"),
        "{err}"
    );
    // clap's errors, before `pass`.
    for (args, says) in [
        (
            &["--bogus", "pass", "e"][..],
            "unexpected argument '--bogus'",
        ),
        (
            &["--root", "", "pass", "e"],
            "a value is required for '--root <ROOT>'",
        ),
        (
            &["--json", "--json", "pass", "e"],
            "cannot be used multiple times",
        ),
    ] {
        let o = top().args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = fails(&o);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
