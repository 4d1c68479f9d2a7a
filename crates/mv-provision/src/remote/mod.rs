//! Provisioning a running machine over SSH (`provision apply FQDN --ssh root@host`).
//!
//! The remote machine is planned exactly like a mounted root: `fetch` mirrors the files a plan
//! reads (account files, package database, unit files or init scripts, every managed file, the
//! managed folders' modes and owners) into a local *shadow* folder with one `tar` stream and one
//! `stat` call, and [`crate::apply::plan`] runs on the shadow. Packages are installed with the
//! same command lines prefixed by `ssh` instead of `chroot`. `commit` stages every file, folder
//! and service link locally with its final mode and owner, then sends them in one `tar` stream
//! extracted at `/` on the machine; nothing is sent before everything is staged.
//!
//! Converging: `fetch` also mirrors the machine's provision state file and, with a second `tar`
//! (no recursion), every file, service link and folder it lists, so the plan can check their
//! bytes. `commit` runs the planned removals (`rm -f`, then `rmdir`, which keeps a folder that is
//! not empty on the machine) in the same remote command, before extracting the stream, whose
//! last entry is the new state.
//!
//! Only POSIX `sh`, `tar` (`-T`, as in GNU tar and BusyBox) and `stat -c` are needed on the
//! machine, which Debian and Alpine both have. Paths are single-quoted and a path holding a quote
//! is refused. The SSH options (key, known_hosts pinned to the identity's host keys) are the
//! caller's: this module only appends the remote command.
//!
//! The machine is not trusted with the host: what it sends back (`stat` lines, the tar stream) is
//! only ever written inside the shadow through [`mv_core::confined::RootDir`], and a `stat` line
//! for a folder we did not ask about is ignored. The shadow, the key and known_hosts live in a
//! [`Scratch`] folder: a fresh, unpredictable name made with `mkdtemp` semantics and mode 0700
//! from creation, never an existing folder.
//!
//! [`Session`] is the caller's side of the login: the derived login key and a known_hosts holding
//! exactly the machine's derived host keys, in a [`Scratch`] folder, and the `ssh` command lines
//! built from them. [`proxy_channel`], [`proxy_socks`] and [`relay`] are the two ends of the
//! virtio-serial (or Tor) path that `ssh`'s `ProxyCommand` uses.
//!
//! Why a public module rather than names at the crate root: this is a facade of its own (private
//! submodules, one `pub use` list), and its names (`remote::Session`, `remote::Route`,
//! `remote::relay`, `remote::reprovision`) say what they are only under `remote::`.
//!
//! What this is not: a general remote-execution layer. Files are replaced by `tar`, which
//! unlinks and recreates each one; unlike the local commit this is not a rename, so a crash in
//! the middle of the stream can leave some files new and some old (never a truncated one).

mod proxy;
mod reprovision;
mod session;

pub use proxy::{channel_proxy_command, proxy_channel, proxy_socks, relay, ProxyError};
pub use reprovision::{reprovision, Reprovision, ReprovisionError};
pub use session::{HostKeyCheck, Route, Scratch, Session, SessionError};

use crate::apply::{ApplyError, Runner, Staged, Target};
use crate::model::Os;
use crate::render::Desired;
use mv_core::confined::RootDir;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Quotes any text for `sh` (`'` becomes `'\\''`).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Single-quotes a path for `sh`; refuses a `'` inside (no recipe path has one).
fn quote(s: &str) -> Result<String, ApplyError> {
    if s.contains('\'') {
        return Err(ApplyError::Command {
            command: "ssh".to_string(),
            message: format!("refusing a path with a quote: {s}"),
        });
    }
    Ok(format!("'{s}'"))
}

fn run_sh(runner: &dyn Runner, script: &str, what: &str) -> Result<String, ApplyError> {
    // bash for `pipefail`: a failed ssh must fail the pipeline, not look like an empty tar.
    let argv = vec![
        "bash".to_string(),
        "-c".to_string(),
        format!("set -o pipefail; {script}"),
    ];
    let out = runner.run(&argv, &[]).map_err(|source| ApplyError::Spawn {
        program: "bash".to_string(),
        source,
    })?;
    if !out.success {
        return Err(ApplyError::Command {
            command: what.to_string(),
            // ssh's own reason first; the local tar's complaint about an empty stream is noise.
            message: {
                let lines: Vec<&str> = out
                    .stderr
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with("tar:"))
                    .collect();
                lines[lines.len().saturating_sub(3)..].join("; ")
            },
        });
    }
    Ok(out.stdout)
}

fn ssh_prefix(ssh: &[String]) -> Result<String, ApplyError> {
    Ok(ssh
        .iter()
        .map(|a| sh_quote(a))
        .collect::<Vec<_>>()
        .join(" "))
}

/// Mirrors what a plan of `desired` reads from the machine into `target`'s shadow folder.
pub(crate) fn fetch(
    target: &Target,
    ssh: &[String],
    desired: &Desired,
    runner: &dyn Runner,
) -> Result<(), ApplyError> {
    let shadow = target.root();
    let werr = |p: &Path| {
        let path = p.to_path_buf();
        move |source| ApplyError::Write { path, source }
    };
    if shadow.exists() {
        fs::remove_dir_all(shadow).map_err(werr(shadow))?;
    }
    fs::create_dir_all(shadow).map_err(werr(shadow))?;
    fs::set_permissions(shadow, fs::Permissions::from_mode(0o700)).map_err(werr(shadow))?;

    let mut paths: Vec<String> = [
        "etc/debian_version",
        "etc/alpine-release",
        "etc/passwd",
        "etc/group",
        "etc/shadow",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match target.os() {
        Os::Debian => paths.extend(
            [
                "var/lib/dpkg/status",
                "etc/systemd/system",
                "lib/systemd/system",
                "usr/lib/systemd/system",
            ]
            .map(String::from),
        ),
        Os::Alpine => {
            paths.extend(["lib/apk/db/installed", "etc/init.d", "etc/runlevels"].map(String::from))
        }
    }
    for f in &desired.files {
        paths.push(f.path.trim_start_matches('/').to_string());
    }
    paths.push(crate::state::STATE_PATH.trim_start_matches('/').to_string());
    let prefix = ssh_prefix(ssh)?;

    // Folders: mode and owner only (their contents may be large: a home folder).
    let asked: Vec<&str> = desired
        .dirs
        .iter()
        .map(|d| d.path.trim_start_matches('/'))
        .collect();
    let dirs: Vec<String> = desired
        .dirs
        .iter()
        .map(|d| quote(d.path.trim_start_matches('/')))
        .collect::<Result<_, _>>()?;
    if !dirs.is_empty() {
        let remote = format!(
            "cd / && for d in {}; do if [ -d \"$d\" ]; then stat -c '%a %u %g %n' \"$d\"; fi; done; true",
            dirs.join(" ")
        );
        let out = run_sh(
            runner,
            &format!("{prefix} {}", sh_quote(&remote)),
            "ssh stat of the managed folders",
        )?;
        for line in out.lines() {
            let mut parts = line.splitn(4, ' ');
            let (Some(mode), Some(uid), Some(gid), Some(rel)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(mode), Ok(uid), Ok(gid)) = (
                u32::from_str_radix(mode, 8),
                uid.parse::<u32>(),
                gid.parse::<u32>(),
            ) else {
                continue;
            };
            // The machine's answer names the folder: only one we asked about, and only inside
            // the shadow.
            if !asked.contains(&rel.trim_start_matches('/')) {
                continue;
            }
            let p = shadow.join(rel.trim_start_matches('/'));
            let sdir = RootDir::open(shadow).map_err(werr(shadow))?;
            sdir.create_dir_all(rel, 0o755).map_err(werr(&p))?;
            sdir.set_owner(rel, uid, gid).map_err(werr(&p))?;
            sdir.set_mode(rel, mode).map_err(werr(&p))?;
        }
    }

    // Files and unit folders: one tar stream, numeric owners.
    let list: Vec<String> = paths.iter().map(|p| quote(p)).collect::<Result<_, _>>()?;
    let remote = format!(
        "cd / && for p in {}; do if [ -e \"$p\" ] || [ -L \"$p\" ]; then echo \"$p\"; fi; done | tar -cf - -T -",
        list.join(" ")
    );
    let shadow_q = quote(&shadow.display().to_string())?;
    run_sh(
        runner,
        &format!(
            "{prefix} {} | tar -xpf - --numeric-owner -C {shadow_q}",
            sh_quote(&remote)
        ),
        "ssh tar of the machine's files",
    )?;

    // What the previous apply managed and the plan may remove: its files and service links,
    // and its folders without their contents (a folder that is not empty on the machine is
    // then kept by `rmdir` there). An unreadable state is the plan's error to report.
    let sdir = RootDir::open(shadow).map_err(werr(shadow))?;
    let Ok(Some(bytes)) = sdir.read_opt(crate::state::STATE_PATH) else {
        return Ok(());
    };
    let Ok(old) = crate::state::parse(&bytes) else {
        return Ok(());
    };
    let known: std::collections::BTreeSet<&str> = paths.iter().map(String::as_str).collect();
    let mut more: Vec<String> = old
        .files
        .iter()
        .map(|f| f.path.as_str())
        .chain(
            old.services
                .iter()
                .flat_map(|s| s.links.iter().map(|l| l.link.as_str())),
        )
        .chain(old.dirs.iter().map(String::as_str))
        .map(|p| p.trim_start_matches('/'))
        .filter(|p| !known.contains(p))
        .map(quote)
        .collect::<Result<_, _>>()?;
    more.sort();
    more.dedup();
    if more.is_empty() {
        return Ok(());
    }
    let remote = format!(
        "cd / && for p in {}; do if [ -e \"$p\" ] || [ -L \"$p\" ]; then echo \"$p\"; fi; done | tar --no-recursion -cf - -T -",
        more.join(" ")
    );
    run_sh(
        runner,
        &format!(
            "{prefix} {} | tar -xpf - --numeric-owner -C {shadow_q}",
            sh_quote(&remote)
        ),
        "ssh tar of the files multiverse managed",
    )?;
    Ok(())
}

/// Sends everything `staged` (built against the shadow) to the machine in one tar stream.
/// Returns the stops and reloads (`staged.stops` then `staged.reloads`, by index) that failed on
/// the machine, with the last lines they printed.
pub(crate) fn commit(
    target: &Target,
    ssh: &[String],
    staged: &Staged,
    runner: &dyn Runner,
) -> Result<Vec<(usize, String)>, ApplyError> {
    let shadow = target.root();
    let stage = shadow.with_file_name(format!(
        "{}.stage",
        shadow
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let werr = |p: &Path| {
        let path = p.to_path_buf();
        move |source| ApplyError::Write { path, source }
    };
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(&stage).map_err(werr(&stage))?;
    fs::set_permissions(&stage, fs::Permissions::from_mode(0o700)).map_err(werr(&stage))?;
    struct Gone<'a>(&'a Path);
    impl Drop for Gone<'_> {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(self.0);
        }
    }
    let _gone = Gone(&stage);

    // Built through a descriptor of our own folder like everything else written from a plan.
    let sdir = RootDir::open(&stage).map_err(werr(&stage))?;
    let rel = |p: &str| -> String { p.trim_start_matches('/').to_string() };
    let parent_of = |p: &str| {
        Path::new(p)
            .parent()
            .map_or_else(|| "/".to_string(), |d| d.display().to_string())
    };
    let mut list = Vec::new();
    for (dir, mode, uid, gid) in &staged.dirs {
        let p = stage.join(rel(dir));
        sdir.create_dir_all(dir, 0o755).map_err(werr(&p))?;
        sdir.set_owner(dir, *uid, *gid).map_err(werr(&p))?;
        sdir.set_mode(dir, *mode).map_err(werr(&p))?;
        list.push(rel(dir));
    }
    for f in &staged.files {
        let p = stage.join(rel(&f.dest));
        sdir.create_dir_all(parent_of(&f.dest), 0o755)
            .map_err(werr(&p))?;
        sdir.write_new(&f.dest, f.contents.bytes(), f.mode, Some((f.uid, f.gid)))
            .map_err(werr(&p))?;
        list.push(rel(&f.dest));
    }
    for (link, to) in &staged.links {
        let p = stage.join(rel(link));
        sdir.create_dir_all(parent_of(link), 0o755)
            .map_err(werr(&p))?;
        sdir.symlink(to, link).map_err(werr(&p))?;
        list.push(rel(link));
    }
    // The state goes last in the stream, after everything it describes.
    if let Some(bytes) = &staged.state {
        let path = crate::state::STATE_PATH;
        let p = stage.join(rel(path));
        sdir.create_dir_all(parent_of(path), 0o755)
            .map_err(werr(&p))?;
        sdir.write_new(path, bytes, 0o600, Some((0, 0)))
            .map_err(werr(&p))?;
        list.push(rel(path));
    }
    // Removals run on the machine before the stream is extracted: a crash between them leaves
    // the old state, whose removals a rerun finds done. `rmdir` keeps a folder that is not
    // empty there.
    let mut removals = Vec::new();
    let gone: Vec<String> = staged
        .unlinks
        .iter()
        .chain(&staged.removes)
        .map(|p| quote(p))
        .collect::<Result<_, _>>()?;
    if !gone.is_empty() {
        removals.push(format!("rm -f -- {}", gone.join(" ")));
    }
    for d in &staged.rmdirs {
        removals.push(format!("{{ rmdir -- {} 2>/dev/null || true; }}", quote(d)?));
    }
    // The stops and reloads run in the same session, after the files are in place: once the
    // stream has replaced sshd's host keys, a new connection would meet the new key (which the
    // caller's known_hosts may not list yet: a rotation logs in with the old one). Each one's
    // failure is a line on stdout, never a failed commit.
    let post: Vec<&Vec<String>> = staged
        .stops
        .iter()
        .chain(&staged.reloads)
        .map(|(_, argv)| argv)
        .collect();
    if list.is_empty() && removals.is_empty() && post.is_empty() {
        return Ok(Vec::new());
    }
    let mut after = String::new();
    for (i, argv) in post.iter().enumerate() {
        let words = argv.get(ssh.len()..).unwrap_or_default();
        let cmd = words
            .iter()
            .map(|w| quote(w))
            .collect::<Result<Vec<_>, _>>()?
            .join(" ");
        after.push_str(&format!(
            "; out=$({cmd} 2>&1) || printf '{POST_FAILED} {i} %s\\n' \"$(printf '%s' \"$out\" | tail -n 2 | tr '\\n' ' ')\""
        ));
    }
    let prefix = ssh_prefix(ssh)?;
    let remove = if removals.is_empty() {
        String::new()
    } else {
        format!("cd / && {} && ", removals.join(" && "))
    };
    let failures = |stdout: String| -> Vec<(usize, String)> {
        stdout
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(POST_FAILED)?.trim();
                let (i, why) = rest.split_once(' ').unwrap_or((rest, ""));
                Some((i.parse().ok()?, why.trim().to_string()))
            })
            .collect()
    };
    if list.is_empty() {
        let out = run_sh(
            runner,
            &format!("{prefix} {}", sh_quote(&format!("{remove}true{after}"))),
            "ssh removal on the machine",
        )?;
        return Ok(failures(out));
    }
    let list_file = stage.join(".list");
    fs::write(&list_file, format!("{}\n", list.join("\n"))).map_err(werr(&list_file))?;
    let out = run_sh(
        runner,
        &format!(
            "tar -C {} --numeric-owner --no-recursion -cpf - -T {} | {prefix} {}",
            quote(&stage.display().to_string())?,
            quote(&list_file.display().to_string())?,
            sh_quote(&format!("{remove}tar -C / -xpf - && true{after}"))
        ),
        "ssh tar to the machine",
    )?;
    Ok(failures(out))
}

/// What the commit's remote script prints for a stop or reload that failed: `MARK INDEX WHY`.
const POST_FAILED: &str = "multiverse-post-commit-failed";
