//! git for a store that is a git repository: one commit per change, with pass's messages.
//!
//! git runs the way pass runs it: `git -C <store>`, with `GIT_DIR`, `GIT_WORK_TREE` and friends
//! removed from the environment and `GIT_CEILING_DIRECTORIES=<store>/..`, so a store that sits
//! inside some other repository never commits into that one. Paths go after `--`, so an entry
//! named `-rf` is a path, not an option. Nothing secret is ever on git's command line: entries
//! are committed as the encrypted files they are.
//!
//! Every git command also gets `-c core.symlinks=false`: a symbolic link that arrives by `pull`,
//! `merge` or `checkout` is written as a small plain file holding the link's text, never as a
//! link (the store refuses links anyway, see `store`; this keeps them from appearing at all when
//! git runs through us).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Errors running git.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// git could not be started.
    #[error("cannot run git in {dir}")]
    Spawn {
        /// The store.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// git failed.
    #[error("`git {args}` failed in {dir}: {stderr}")]
    Failed {
        /// The store.
        dir: PathBuf,
        /// The arguments (never secret: paths and messages).
        args: String,
        /// git's stderr.
        stderr: String,
    },
}

/// The git repository of a store.
#[derive(Debug, Clone)]
pub struct Git {
    dir: PathBuf,
}

impl Git {
    /// The store's repository, if `<store>/.git` exists.
    pub fn for_store(store: &Path) -> Option<Git> {
        store.join(".git").exists().then(|| Git {
            dir: store.to_path_buf(),
        })
    }

    /// A git command with pass's environment.
    pub fn command(store: &Path) -> Command {
        let mut c = Command::new("git");
        c.arg("-C").arg(store).args(["-c", "core.symlinks=false"]);
        for v in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_NAMESPACE",
            "GIT_INDEX_FILE",
            "GIT_INDEX_VERSION",
            "GIT_OBJECT_DIRECTORY",
            "GIT_COMMON_DIR",
        ] {
            c.env_remove(v);
        }
        c.env("GIT_CEILING_DIRECTORIES", store.join(".."));
        c
    }

    fn run<I, S>(&self, args: I) -> Result<Output, GitError>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let out = Self::command(&self.dir)
            .args(args.clone())
            .output()
            .map_err(|source| GitError::Spawn {
                dir: self.dir.clone(),
                source,
            })?;
        if !out.status.success() {
            let shown: Vec<String> = args
                .into_iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect();
            return Err(GitError::Failed {
                dir: self.dir.clone(),
                args: shown.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out)
    }

    /// Stages `paths` (additions, changes and deletions) and commits them with `message` if
    /// anything changed. Returns whether a commit was made.
    pub fn commit(&self, paths: &[&Path], message: &str) -> Result<bool, GitError> {
        let rel: Vec<PathBuf> = paths
            .iter()
            .map(|p| p.strip_prefix(&self.dir).unwrap_or(p).to_path_buf())
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p
                }
            })
            .collect();
        let mut add: Vec<&OsStr> = vec![OsStr::new("add"), OsStr::new("-A"), OsStr::new("--")];
        add.extend(rel.iter().map(|p| p.as_os_str()));
        self.run(&add)?;
        let mut status: Vec<&OsStr> = vec![
            OsStr::new("status"),
            OsStr::new("--porcelain"),
            OsStr::new("--"),
        ];
        status.extend(rel.iter().map(|p| p.as_os_str()));
        let st = self.run(&status)?;
        if st.stdout.is_empty() {
            return Ok(false);
        }
        let mut commit = vec!["commit", "-q"];
        if self.signs_commits() {
            commit.push("-S");
        }
        commit.extend(["-m", message]);
        self.run(&commit)?;
        Ok(true)
    }

    fn signs_commits(&self) -> bool {
        self.run(["config", "--bool", "--get", "pass.signcommits"])
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
            .unwrap_or(false)
    }

    /// Unix time of the last commit touching each `.gpg` file (for `audit`), from one `git log`.
    pub fn last_change_times(&self) -> Result<std::collections::HashMap<PathBuf, i64>, GitError> {
        let out = self.run(["log", "--format=%x00%ct", "--name-only", "--no-renames"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut map = std::collections::HashMap::new();
        let mut current = 0i64;
        for line in text.lines() {
            if let Some(t) = line.strip_prefix('\0') {
                current = t.trim().parse().unwrap_or(0);
            } else if !line.is_empty() {
                // Newest first: keep the first time seen.
                map.entry(self.dir.join(unquote(line))).or_insert(current);
            }
        }
        Ok(map)
    }
}

/// git quotes unusual path names (`"caf\303\251.gpg"`); undo that.
fn unquote(s: &str) -> String {
    let Some(inner) = s.strip_prefix('"').and_then(|x| x.strip_suffix('"')) else {
        return s.to_string();
    };
    let b = inner.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let n = b[i + 1];
            if i + 3 < b.len() && b[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = b[i + 1..i + 4]
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push((v & 0xff) as u8);
                i += 4;
                continue;
            }
            out.push(match n {
                b'n' => b'\n',
                b't' => b'\t',
                other => other,
            });
            i += 2;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquotes_git_paths() {
        assert_eq!(unquote("plain.gpg"), "plain.gpg");
        assert_eq!(unquote("\"caf\\303\\251.gpg\""), "café.gpg");
        assert_eq!(unquote("\"a\\\"b.gpg\""), "a\"b.gpg");
    }
}
