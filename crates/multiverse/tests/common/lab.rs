//! A lab libvirtd for tests that boot guests: `scripts/lab-libvirtd.sh` starts a libvirtd and
//! virtlogd in their own mount and network namespace (the guests' bridges, taps and packets
//! never touch this machine's network); [`Lab`] stops them, with every guest, on drop. [`mvl`]
//! runs `multiverse` against it under TCG.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A libvirtd in its own mount and network namespace, stopped (with its guests) on drop.
pub struct Lab {
    pub dir: PathBuf,
    pub uri: String,
    /// The binaries the seeds carry, copied when the lab starts: a rebuild of `target/` during
    /// a long run would otherwise change every seed, and a second `up` would provision again.
    pub seed_bin: PathBuf,
    pub agent_bin: PathBuf,
}

fn lab_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lab-libvirtd.sh")
}

impl Lab {
    /// Starts the lab's daemons in `dir` (made if missing).
    pub fn start(dir: &Path) -> Lab {
        for tool in [
            "libvirtd",
            "virtlogd",
            "qemu-system-x86_64",
            "mke2fs",
            "unshare",
        ] {
            mv_testkit::require_tool(tool);
        }
        let out = Command::new("bash")
            .arg(lab_script())
            .arg(dir)
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lab libvirtd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seed_bin = dir.join("multiverse");
        let agent_bin = dir.join("multiverse-agent");
        let built = Path::new(env!("CARGO_BIN_EXE_multiverse"));
        std::fs::copy(built, &seed_bin).unwrap();
        std::fs::copy(built.with_file_name("multiverse-agent"), &agent_bin).unwrap();
        Lab {
            dir: dir.to_path_buf(),
            uri: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            seed_bin,
            agent_bin,
        }
    }

    /// The PID of the lab's libvirtd: its network namespace is the guests' (`nsenter -t PID -n`).
    pub fn pid(&self) -> u32 {
        std::fs::read_to_string(self.dir.join("libvirtd.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// `program` run inside the lab's network namespace (this machine's mount namespace).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid().to_string())
            .args(["-n", "--", program]);
        c
    }

    /// Runs `sh -c script` in the lab's network namespace; panics with its output on failure.
    pub fn sh(&self, script: &str) -> String {
        let out = self.command("sh").args(["-c", script]).output().unwrap();
        assert!(out.status.success(), "lab: {script}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(lab_script())
            .arg(&self.dir)
            .arg("stop")
            .status();
    }
}

/// `multiverse` on the lab's libvirtd, under TCG, with the lab's copies of the binaries seeds
/// carry.
pub fn mvl(root: &Path, lab: &Lab, args: &[&str]) -> Command {
    let mut c = super::mv(root);
    c.args(args)
        .env("MULTIVERSE_CONNECT", &lab.uri)
        .env("MULTIVERSE_ACCEL", "tcg")
        .env("MULTIVERSE_SEED_BIN", &lab.seed_bin)
        .env("MULTIVERSE_AGENT_BIN", &lab.agent_bin);
    c
}

/// A tree from `init --lab` with the spec identity, its `images/debian.qcow2` a link to `image`.
pub fn lab_tree(root: &Path, image: &Path) {
    super::ok(
        super::mv(root)
            .args(["init", "--lab"])
            .env("MULTIVERSE_ACCEL", "tcg"),
        None,
    );
    let mut restore = super::mv(root);
    restore.args(["identity", "restore"]).args(super::FAST);
    super::ok(&mut restore, Some(super::SPEC_WORDS));
    std::fs::create_dir_all(root.join("images")).unwrap();
    std::os::unix::fs::symlink(image, root.join("images/debian.qcow2")).unwrap();
}
