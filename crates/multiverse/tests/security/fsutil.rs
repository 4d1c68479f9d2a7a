//! Security tests: fsutil (see main.rs and docs/security.md), finding 4: every writer used
//! `fsutil::write_atomic`, which opened the predictable `.<file>.tmp<pid>` with
//! `O_CREAT|O_TRUNC` (no `O_EXCL`, no `O_NOFOLLOW`). Root exporting keys into a folder of `nobody`
//! then wrote the key into a file `nobody` had planted (and so owned and could read), or through
//! `nobody`'s symlink into a root-owned file.
//!
//! Each test runs as root, makes `nobody` the owner of the export folder, and plants what the
//! attacker would: the old temp names for the next PIDs (as files of `nobody`, and as links to a
//! root-owned victim), a link at the destination and a link in place of the folder. The export
//! must be refused; with `--force` it must write files of root, mode 0600, that `nobody` cannot
//! read, and leave the victims alone.

use super::common::{self, stderr, FAST, SPEC_WORDS};
use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The spec identity's machine and its derived password (scramble-v1 vector).
const NAME: &str = "universe.router.multiverse";
const PASSWORD: &str = "4FUWQoJVIQ8H96Z0Ocdii76e3oRjy5x4";
/// How many PIDs ahead the attacker plants old-style temp names.
const PIDS_AHEAD: u32 = 1500;

fn id(flag: &str) -> u32 {
    let o = Command::new("id").args([flag, "nobody"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

/// A root-run scene: a tree with the spec identity, and `base/` (0755, root) holding `exp/`
/// (owned by nobody) and a root-owned `victim` file.
struct Scene {
    _t: tempfile::TempDir,
    tree: PathBuf,
    base: PathBuf,
    nobody: (u32, u32),
}

impl Scene {
    fn new() -> Scene {
        assert_eq!(
            euid(),
            0,
            "the fsutil security tests run as root (nobody is the attacker)"
        );
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        common::ok(
            common::mv(&tree).args(["identity", "restore"]).args(FAST),
            Some(SPEC_WORDS),
        );
        let base = t.path().join("base");
        std::fs::create_dir(&base).unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(base.join("victim"), "precious\n").unwrap();
        let s = Scene {
            _t: t,
            tree,
            base,
            nobody: (id("-u"), id("-g")),
        };
        let exp = s.exp();
        std::fs::create_dir(&exp).unwrap();
        s.give(&exp);
        s
    }

    fn exp(&self) -> PathBuf {
        self.base.join("exp")
    }

    fn victim(&self) -> PathBuf {
        self.base.join("victim")
    }

    fn give(&self, p: &Path) {
        lchown(p, Some(self.nobody.0), Some(self.nobody.1)).unwrap();
    }

    /// What the attacker plants in `exp` before root's export: for each of the next PIDs, the old
    /// `.password.tmpPID` as a world-writable file of nobody, and `.luks.key.tmpPID` as a link of
    /// nobody to the root-owned victim; plus `luks.key` itself as a link to the victim.
    fn plant(&self) -> u32 {
        let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let exp = self.exp();
        for pid in last + 1..=last + PIDS_AHEAD {
            let f = exp.join(format!(".password.tmp{pid}"));
            std::fs::write(&f, "").unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
            self.give(&f);
            let l = exp.join(format!(".luks.key.tmp{pid}"));
            symlink(self.victim(), &l).unwrap();
            self.give(&l);
        }
        let l = exp.join("luks.key");
        symlink(self.victim(), &l).unwrap();
        self.give(&l);
        last
    }

    fn export(&self, out: &Path, force: bool) -> Output {
        let mut c = common::mv(&self.tree);
        c.args([
            "identity", "export", NAME, "--kind", "password", "--kind", "luks",
        ])
        .arg("--out")
        .arg(out);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    }

    /// Whether nobody can read `p` (with its own credentials, as the attacker would).
    fn nobody_reads(&self, p: &Path) -> bool {
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat"])
            .arg(p)
            .output()
            .unwrap()
            .status
            .success()
    }

    /// Nothing the attacker owns holds the password, the victim is intact, and every file in
    /// `exp` that holds a secret is root's, 0600, unreadable by nobody.
    fn assert_nothing_leaked(&self) {
        assert_eq!(
            std::fs::read_to_string(self.victim()).unwrap(),
            "precious\n",
            "the root-owned victim was overwritten through a planted link"
        );
        for e in std::fs::read_dir(self.exp()).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if !m.file_type().is_file() {
                continue;
            }
            let text = std::fs::read(&p).unwrap();
            let secret = text
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes())
                || p.ends_with("luks.key");
            if secret {
                assert_eq!(
                    m.uid(),
                    0,
                    "{} holds a secret but belongs to uid {}",
                    p.display(),
                    m.uid()
                );
                assert_eq!(m.mode() & 0o777, 0o600, "{}", p.display());
                assert!(!self.nobody_reads(&p), "nobody can read {}", p.display());
            }
        }
    }
}

fn euid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

#[test]
fn export_into_a_folder_of_nobody_is_refused() {
    let s = Scene::new();
    s.plant();
    let o = s.export(&s.exp(), false);
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "export into nobody's folder succeeded: {err}"
    );
    assert!(err.contains("refusing to write secret keys"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(!s.exp().join("password").exists(), "nothing written");
    assert!(std::fs::symlink_metadata(s.exp().join("luks.key"))
        .unwrap()
        .file_type()
        .is_symlink());
    s.assert_nothing_leaked();
}

#[test]
fn forced_export_into_nobodys_folder_writes_only_private_files_of_root() {
    let s = Scene::new();
    s.plant();
    let o = s.export(&s.exp(), true);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("warning") && err.contains("uid"), "{err}");
    let pw = s.exp().join("password");
    assert_eq!(std::fs::read_to_string(&pw).unwrap().trim_end(), PASSWORD);
    let luks = std::fs::symlink_metadata(s.exp().join("luks.key")).unwrap();
    assert!(luks.file_type().is_file(), "the planted link was replaced");
    s.assert_nothing_leaked();
}

#[test]
fn a_link_of_nobody_in_place_of_the_folder_is_never_followed() {
    let s = Scene::new();
    // nobody points exp/keys at a root-owned folder holding a root-owned `password`.
    let target = s.base.join("rootdir");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("password"), "root's own\n").unwrap();
    let link = s.exp().join("keys");
    symlink(&target, &link).unwrap();
    s.give(&link);
    for force in [false, true] {
        let o = s.export(&link, force);
        let err = stderr(&o);
        assert!(!o.status.success(), "--force={force}: {err}");
        assert!(
            err.contains("refusing to write secret keys"),
            "--force={force}: {err}"
        );
        if force {
            assert!(err.contains("symbolic link"), "{err}");
        }
        assert_eq!(
            std::fs::read_to_string(target.join("password")).unwrap(),
            "root's own\n",
            "--force={force}: a root-owned file was overwritten through nobody's link"
        );
        assert!(!target.join("luks.key").exists());
    }
}
