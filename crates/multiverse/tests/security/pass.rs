//! Security tests: pass (see main.rs and docs/security.md), finding 5: the password store
//! followed symbolic links planted in it (arriving, say, by `pass git pull` from a remote the
//! attacker can push to). insert, generate, cp and `init -p` wrote outside the store, `rm -r`
//! deleted an outside folder, `mv` pulled an outside file in, `show` printed an outside file, and
//! one dangling link made `ls`, `grep`, `find` and `audit` fail. Also item 13: `fsck` did not
//! report the temporary file a `kill -9` leaves.
//!
//! The store now never follows a link below its folder: writes through one are refused naming the
//! entry, reads of one are refused, listings skip links and `fsck` reports them (and leftover
//! temporary files). Each test plants the link by hand, as a pull would, and drives the real
//! binary with the built-in keyring (the identity's `@user` key; cheap Argon2 parameters).

use super::common::{self, stderr, stdout, with_stdin, FAST, SPEC_WORDS};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A tree with the spec identity, a store initialised for its `@user` key holding `a` and
/// `web/site`, and an `outside` folder the links point into.
struct Store {
    t: tempfile::TempDir,
}

impl Store {
    fn new() -> Store {
        let s = Store {
            t: tempfile::tempdir().unwrap(),
        };
        common::ok(
            common::mv(&s.tree())
                .args(["identity", "restore"])
                .args(FAST),
            Some(SPEC_WORDS),
        );
        std::fs::create_dir(s.outside()).unwrap();
        s.ok(&["init"]);
        s.insert("a", "Xk3#pL9q!vR2mZ8w-a\n");
        s.insert("web/site", "Xk3#pL9q!vR2mZ8w-site\n");
        s
    }

    fn tree(&self) -> PathBuf {
        self.t.path().join("tree")
    }
    fn dir(&self) -> PathBuf {
        self.t.path().join("store")
    }
    fn outside(&self) -> PathBuf {
        self.t.path().join("outside")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = common::mv(&self.tree());
        c.arg("pass")
            .args(args)
            .env("PASSWORD_STORE_DIR", self.dir())
            .env_remove("MULTIVERSE_PASS_KEYS")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        common::success(&self.run(args))
    }

    fn insert(&self, name: &str, secret: &str) {
        let o = with_stdin(&mut self.cmd(&["insert", "-m", name]), secret);
        common::success(&o);
    }

    /// Plants `store/<at>` as a link to `target`.
    fn link(&self, at: &str, target: &Path) {
        let p = self.dir().join(at);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }

    /// A real entry file of this store's key, copied outside (another store of the same person).
    fn outside_entry(&self) -> PathBuf {
        let p = self.outside().join("bank.gpg");
        std::fs::copy(self.dir().join("a.gpg"), &p).unwrap();
        p
    }
}

/// The command failed, naming the entry and the link, and said why.
fn refused(o: &Output, entry: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "not refused: {}{err}", stdout(o));
    assert!(err.contains("symbolic link"), "{err}");
    assert!(err.contains(&format!("`{entry}`")), "{err}");
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn insert_through_a_linked_folder_is_refused() {
    let s = Store::new();
    s.link("mail", &s.outside());
    let o = with_stdin(&mut s.cmd(&["insert", "mail/x"]), "pw\n");
    refused(&o, "mail/x");
    assert!(entries(&s.outside()).is_empty(), "wrote outside the store");
}

#[test]
fn generate_through_a_linked_folder_is_refused() {
    let s = Store::new();
    s.link("mail", &s.outside());
    refused(&s.run(&["generate", "mail/y", "20"]), "mail/y");
    assert!(entries(&s.outside()).is_empty(), "wrote outside the store");
}

#[test]
fn cp_into_a_linked_folder_is_refused() {
    let s = Store::new();
    s.link("mail", &s.outside());
    refused(&s.run(&["cp", "a", "mail/a"]), "mail/a");
    assert!(entries(&s.outside()).is_empty(), "wrote outside the store");
}

#[test]
fn init_p_of_a_linked_folder_is_refused() {
    let s = Store::new();
    s.link("mail", &s.outside());
    refused(&s.run(&["init", "-p", "mail"]), "mail");
    assert!(
        entries(&s.outside()).is_empty(),
        "wrote .gpg-id outside the store"
    );
}

#[test]
fn rm_r_never_deletes_outside_the_store() {
    let s = Store::new();
    std::fs::create_dir_all(s.outside().join("sub")).unwrap();
    std::fs::write(s.outside().join("sub/keep.gpg"), "mine").unwrap();
    s.link("team", &s.outside());
    // Through the link: refused.
    refused(&s.run(&["rm", "-r", "-f", "team/sub"]), "team/sub");
    assert!(s.outside().join("sub/keep.gpg").exists(), "deleted outside");
    // The link itself: removed, what it points to left alone.
    s.ok(&["rm", "-r", "-f", "team"]);
    assert!(std::fs::symlink_metadata(s.dir().join("team")).is_err());
    assert!(s.outside().join("sub/keep.gpg").exists(), "deleted outside");
}

#[test]
fn mv_does_not_pull_an_outside_file_in() {
    let s = Store::new();
    let bank = s.outside_entry();
    s.link("stolen.gpg", &bank);
    refused(&s.run(&["mv", "stolen", "taken"]), "stolen");
    assert!(
        !s.dir().join("taken.gpg").exists(),
        "pulled an outside file in"
    );
    assert!(bank.exists());
}

#[test]
fn show_does_not_follow_a_link_out_of_the_store() {
    let s = Store::new();
    let bank = s.outside_entry();
    s.link("leak.gpg", &bank);
    let o = s.run(&["show", "leak"]);
    assert!(
        !stdout(&o).contains("Xk3#pL9q"),
        "printed an outside file: {}",
        stdout(&o)
    );
    refused(&o, "leak");
}

#[test]
fn a_dangling_link_is_skipped_by_readers_and_reported_by_fsck() {
    let s = Store::new();
    s.link("gone.gpg", Path::new("/nonexistent/gone.gpg"));
    s.link("web/loop", &s.dir().join("web"));
    assert!(s.ok(&["ls"]).contains("site"));
    assert!(s.ok(&["find", "site"]).contains("site"));
    assert!(s.ok(&["grep", "Xk3"]).contains("web/site:"));
    assert!(s.ok(&["audit"]).contains("2 entries audited"));
    let o = s.run(&["fsck"]);
    let out = stdout(&o);
    assert!(!o.status.success(), "fsck found nothing: {out}");
    assert!(
        out.contains("gone.gpg: symbolic link to /nonexistent/gone.gpg (dangling)"),
        "{out}"
    );
    assert!(out.contains("loop: symbolic link to"), "{out}");
}

#[test]
fn fsck_reports_the_temp_file_a_kill_9_leaves() {
    let s = Store::new();
    let tmp = s.dir().join("web/.site.gpg.tmp4242");
    std::fs::write(&tmp, "half").unwrap();
    let o = s.run(&["fsck"]);
    let out = stdout(&o);
    assert!(!o.status.success(), "fsck found nothing: {out}");
    assert!(
        out.contains(&format!("{}: temporary file", tmp.display())),
        "{out}"
    );
    assert!(out.contains("rm -f --"), "{out}");
}
