//! `sshd`: a real OpenSSH server on 127.0.0.1 for tests that log in with derived keys.
//!
//! [`Sshd::start`] runs `sshd -D` in the foreground on a free loopback port with the host keys of
//! a fleet folder (`ssh_host_ed25519_key`, `ssh_host_ecdsa_key`) and one `AuthorizedKeysFile` for
//! every user, public-key logins only, and waits until it listens. Its config and log are files in
//! a folder of the test's, named after the port. The server is stopped by its PID on drop (also
//! when the test panics).
//!
//! What this is not: a chrooted or daemonised server, or one that touches the machine's own sshd
//! (only `/run/sshd`, the privilege-separation folder sshd insists on, is created when missing).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A running `sshd` on 127.0.0.1, stopped on drop.
#[derive(Debug)]
pub struct Sshd {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Sshd {
    /// Starts sshd with the host keys in `hostdir` and `authorized` as every user's
    /// authorized_keys; writes `dir/sshd_config.<port>` and logs to `dir/sshd.<port>.log`.
    /// Panics when sshd is missing or does not listen within 10 seconds.
    pub fn start(dir: &Path, hostdir: &Path, authorized: &Path) -> Sshd {
        let sshd = crate::require_tool("sshd");
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = free_port();
        let cfg = dir.join(format!("sshd_config.{port}"));
        std::fs::write(
            &cfg,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nPidFile none\n",
                hostdir.join("ssh_host_ed25519_key").display(),
                hostdir.join("ssh_host_ecdsa_key").display(),
                authorized.display(),
            ),
        )
        .unwrap();
        let log = dir.join(format!("sshd.{port}.log"));
        let child = Command::new(&sshd)
            .arg("-D")
            .arg("-f")
            .arg(&cfg)
            .arg("-E")
            .arg(&log)
            .spawn()
            .unwrap();
        let server = Sshd { child, port, log };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting for sshd to listen; its log:\n{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its log file (`-E`).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// What it has logged so far (empty when nothing yet).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback TCP port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
