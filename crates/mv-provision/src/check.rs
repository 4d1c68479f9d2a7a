//! Checking generated configurations with the tools that will read them.
//!
//! Every router configuration is handed to its own tool before anyone boots it:
//! `nft -c -f` (inside a new network namespace, so nothing touches the host's rules),
//! `dnsmasq --test -C`, `tor --verify-config` (always with `DisableNetwork 1`), `sshd -t -f` (with
//! the machine's own host keys) and `wg-quick strip`. Each check writes the file to a scratch
//! folder and returns the tool's own words when it refuses.
//!
//! `nft` and `tor` resolve user names (`meta skuid "tor"`, `User tor`) at check time, and the
//! Alpine Tor user does not exist on a Debian build machine, so those two run in a private mount
//! namespace where `/etc/passwd` and `/etc/group` are the host's plus the Tor users.
//!
//! OpenVPN has no syntax-only mode: its config is run in a new network namespace with an empty
//! CA file, so OpenVPN parses every option and stops at loading the CA; "Options error" is a
//! refusal, reaching the CA is a pass.
//!
//! What this is not: a linter of our own. If the tool accepts it, so do we.

use crate::render::{Desired, DesiredFile};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a configuration check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The tool refused the file.
    #[error("{tool} refuses {path}: {message}")]
    Refused {
        /// The tool.
        tool: &'static str,
        /// The file (path on the machine).
        path: String,
        /// The tool's own words.
        message: String,
    },
    /// The tool could not be started.
    #[error("cannot run {tool} (is it installed?)")]
    Spawn {
        /// The tool.
        tool: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The scratch folder could not be written.
    #[error("cannot write {0}")]
    Scratch(PathBuf, #[source] std::io::Error),
}

/// Which tool checks a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `nft -c -f`.
    Nft,
    /// `dnsmasq --test -C`.
    Dnsmasq,
    /// `tor --verify-config`.
    Tor,
    /// `sshd -t -f`.
    Sshd,
    /// `wg-quick strip`.
    WgQuick,
    /// `openvpn --config` up to loading the CA.
    OpenVpn,
}

impl Tool {
    /// The tool that reads the file at `path` on the machine, if we check it.
    pub fn for_path(path: &str) -> Option<Tool> {
        match path {
            "/etc/nftables.conf" | "/etc/nftables.nft" => Some(Tool::Nft),
            "/etc/dnsmasq.conf" => Some(Tool::Dnsmasq),
            "/etc/tor/torrc" => Some(Tool::Tor),
            "/etc/ssh/sshd_config" => Some(Tool::Sshd),
            p if p.starts_with("/etc/wireguard/") && p.ends_with(".conf") => Some(Tool::WgQuick),
            "/etc/openvpn/openvpn.conf" => Some(Tool::OpenVpn),
            p if p.starts_with("/etc/openvpn/client/") && p.ends_with(".conf") => {
                Some(Tool::OpenVpn)
            }
            _ => None,
        }
    }

    /// The tool's name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Nft => "nft",
            Tool::Dnsmasq => "dnsmasq",
            Tool::Tor => "tor",
            Tool::Sshd => "sshd",
            Tool::WgQuick => "wg-quick",
            Tool::OpenVpn => "openvpn",
        }
    }
}

/// One file that passed its check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Path on the machine.
    pub path: String,
    /// The tool that accepted it.
    pub tool: &'static str,
}

fn sbin(tool: &str) -> String {
    for d in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(d).join(tool);
        if p.is_file() {
            return p.display().to_string();
        }
    }
    tool.to_string()
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CheckError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes).map_err(|e| CheckError::Scratch(path.to_path_buf(), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| CheckError::Scratch(path.to_path_buf(), e))
}

/// Runs `argv`; Ok when it exits 0, the tool's output otherwise.
fn run(tool: Tool, path: &str, argv: &[String]) -> Result<(), CheckError> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| CheckError::Spawn {
            tool: tool.name(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let message: Vec<&str> = text
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error") || l.contains("warn") || l.contains("invalid") || l.contains("bad")
        })
        .take(6)
        .collect();
    Err(CheckError::Refused {
        tool: tool.name(),
        path: path.to_string(),
        message: if message.is_empty() {
            text.trim().to_string()
        } else {
            message.join("; ")
        },
    })
}

/// Account files with the host's users plus the Tor users of both OSes.
fn user_overlay(scratch: &Path) -> Result<(PathBuf, PathBuf), CheckError> {
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let mut group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    for (i, name) in ["tor", "debian-tor"].iter().enumerate() {
        if !passwd.lines().any(|l| l.split(':').next() == Some(name)) {
            let id = 64_000 + i;
            passwd.push_str(&format!("{name}:x:{id}:{id}::/var/lib/tor:/sbin/nologin\n"));
            group.push_str(&format!("{name}:x:{id}:\n"));
        }
    }
    let p = scratch.join("passwd");
    let g = scratch.join("group");
    write(&p, passwd.as_bytes(), 0o644)?;
    write(&g, group.as_bytes(), 0o644)?;
    Ok((p, g))
}

/// `unshare -n -m` with the user overlay bound over /etc/passwd and /etc/group, then `argv`.
fn isolated(scratch: &Path, argv: Vec<String>) -> Result<Vec<String>, CheckError> {
    let (p, g) = user_overlay(scratch)?;
    let mut v: Vec<String> = [
        "unshare",
        "-n",
        "-m",
        "--",
        "sh",
        "-c",
        "mount --bind \"$1\" /etc/passwd && mount --bind \"$2\" /etc/group && shift 2 && exec \"$@\"",
        "sh",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(p.display().to_string());
    v.push(g.display().to_string());
    v.extend(argv);
    Ok(v)
}

/// Checks one file with its tool. `all` is every file of the machine (sshd needs the host keys).
pub fn check_file(
    file: &DesiredFile,
    all: &[DesiredFile],
    scratch: &Path,
) -> Result<Option<Checked>, CheckError> {
    let Some(tool) = Tool::for_path(&file.path) else {
        return Ok(None);
    };
    let base = file.path.rsplit('/').next().unwrap_or("config");
    let local = scratch.join(base);
    let s = |p: &Path| p.display().to_string();
    match tool {
        Tool::Nft => {
            write(&local, file.contents.bytes(), 0o600)?;
            let argv = isolated(
                scratch,
                vec![sbin("nft"), "-c".into(), "-f".into(), s(&local)],
            )?;
            run(tool, &file.path, &argv)?;
        }
        Tool::Dnsmasq => {
            write(&local, file.contents.bytes(), 0o600)?;
            run(
                tool,
                &file.path,
                &[sbin("dnsmasq"), "--test".into(), "-C".into(), s(&local)],
            )?;
        }
        Tool::Tor => {
            // The check must not touch the host's /var/lib/tor: DataDirectory becomes a scratch
            // folder owned by the torrc's User (tor checks it can use it after switching user).
            let (passwd, _) = user_overlay(scratch)?;
            let passwd = std::fs::read_to_string(&passwd).unwrap_or_default();
            let data = scratch.join("tor-data");
            std::fs::create_dir_all(&data).map_err(|e| CheckError::Scratch(data.clone(), e))?;
            let mut text = String::new();
            for line in String::from_utf8_lossy(file.contents.bytes()).lines() {
                if line.starts_with("DataDirectory ") {
                    text.push_str(&format!("DataDirectory {}\n", data.display()));
                    continue;
                }
                if let Some(user) = line.strip_prefix("User ") {
                    let ids = passwd.lines().find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.first() == Some(&user.trim()) && f.len() > 3)
                            .then(|| (f[2].parse().ok(), f[3].parse().ok()))
                    });
                    if let Some((uid, gid)) = ids {
                        std::os::unix::fs::chown(&data, uid, gid)
                            .map_err(|e| CheckError::Scratch(data.clone(), e))?;
                        // tor must be able to reach the folder after dropping privileges.
                        use std::os::unix::fs::PermissionsExt;
                        let _ = std::fs::set_permissions(
                            scratch,
                            std::fs::Permissions::from_mode(0o755),
                        );
                    }
                }
                text.push_str(line);
                text.push('\n');
            }
            std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(|e| CheckError::Scratch(data.clone(), e))?;
            write(&local, text.as_bytes(), 0o644)?;
            let argv = isolated(
                scratch,
                vec![
                    sbin("tor"),
                    "--verify-config".into(),
                    "--defaults-torrc".into(),
                    "/dev/null".into(),
                    "-f".into(),
                    s(&local),
                    // Never a tor that could reach a network; it runs in a new netns anyway.
                    "--DisableNetwork".into(),
                    "1".into(),
                ],
            )?;
            run(tool, &file.path, &argv)?;
        }
        Tool::Sshd => {
            // Check with the machine's own host keys, copied next to the config.
            let mut text = String::new();
            for line in String::from_utf8_lossy(file.contents.bytes()).lines() {
                if let Some(key_path) = line.strip_prefix("HostKey ") {
                    let key = all.iter().find(|f| f.path == key_path.trim());
                    if let Some(key) = key {
                        let kl = scratch.join(key_path.trim().rsplit('/').next().unwrap_or("key"));
                        write(&kl, key.contents.bytes(), 0o600)?;
                        text.push_str(&format!("HostKey {}\n", kl.display()));
                        continue;
                    }
                }
                text.push_str(line);
                text.push('\n');
            }
            write(&local, text.as_bytes(), 0o600)?;
            let _ = std::fs::create_dir_all("/run/sshd");
            run(
                tool,
                &file.path,
                &[sbin("sshd"), "-t".into(), "-f".into(), s(&local)],
            )?;
        }
        Tool::WgQuick => {
            // wg-quick takes the interface name from the file name.
            write(&local, file.contents.bytes(), 0o600)?;
            run(
                tool,
                &file.path,
                &[sbin("wg-quick"), "strip".into(), s(&local)],
            )?;
        }
        Tool::OpenVpn => {
            // The provider's files are checked at render and the secret ones are not handed to
            // a tool: stand-ins in the scratch folder. OpenVPN stops at the empty CA; with
            // `persist-key` it loads the tls-crypt key before that, so its stand-in is a
            // well-formed static key of no one's (bytes 00, 01 … ff).
            let ca = scratch.join("ca.crt");
            let creds = scratch.join("credentials");
            let tls_crypt = scratch.join("tls-crypt.key");
            write(&ca, b"", 0o600)?;
            write(&creds, b"user\npassword\n", 0o600)?;
            let mut key = String::from("-----BEGIN OpenVPN Static key V1-----\n");
            for row in 0..16u8 {
                for col in 0..16u8 {
                    key.push_str(&format!("{:02x}", row * 16 + col));
                }
                key.push('\n');
            }
            key.push_str("-----END OpenVPN Static key V1-----\n");
            write(&tls_crypt, key.as_bytes(), 0o600)?;
            let mut text = String::new();
            for line in String::from_utf8_lossy(file.contents.bytes()).lines() {
                if line.starts_with("ca ") {
                    text.push_str(&format!("ca {}\n", ca.display()));
                } else if line.starts_with("auth-user-pass ") {
                    text.push_str(&format!("auth-user-pass {}\n", creds.display()));
                } else if line.starts_with("tls-crypt ") {
                    text.push_str(&format!("tls-crypt {}\n", tls_crypt.display()));
                } else if line.starts_with("management ") {
                    // OpenVPN opens its management socket before it loads the CA: a scratch
                    // socket, never the machine's path on the host that checks.
                    text.push_str(&format!(
                        "management {} unix\n",
                        scratch.join("management.sock").display()
                    ));
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
            write(&local, text.as_bytes(), 0o600)?;
            let out = Command::new("unshare")
                .args(["-n", "timeout", "10"])
                .arg(sbin("openvpn"))
                .args(["--config", &s(&local), "--verb", "1"])
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|source| CheckError::Spawn {
                    tool: tool.name(),
                    source,
                })?;
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if !all.contains("Cannot load CA certificate file") || all.contains("Options error") {
                let message: Vec<&str> = all
                    .lines()
                    .filter(|l| l.contains("error") || l.contains("Error"))
                    .take(4)
                    .collect();
                return Err(CheckError::Refused {
                    tool: tool.name(),
                    path: file.path.clone(),
                    message: if message.is_empty() {
                        all.trim().to_string()
                    } else {
                        message.join("; ")
                    },
                });
            }
        }
    }
    Ok(Some(Checked {
        path: file.path.clone(),
        tool: tool.name(),
    }))
}

/// Checks every file of `desired` that has a tool; returns what was checked.
pub fn check_all(desired: &Desired, scratch: &Path) -> Result<Vec<Checked>, CheckError> {
    let mut out = Vec::new();
    for f in &desired.files {
        let dir = scratch.join(out.len().to_string());
        std::fs::create_dir_all(&dir).map_err(|e| CheckError::Scratch(dir.clone(), e))?;
        if let Some(c) = check_file(f, &desired.files, &dir)? {
            out.push(c);
        }
    }
    Ok(out)
}

// A tool refused a rendered file or could not run: a failure, not the person's input.
impl mv_core::Classify for CheckError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}
