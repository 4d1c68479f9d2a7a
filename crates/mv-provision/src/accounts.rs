//! Users and groups, edited in a target's `/etc/passwd`, `/etc/group` and `/etc/shadow`.
//!
//! The target may be an Alpine root that no tool here can `chroot` into, so accounts are edited as
//! files, the way `useradd` would: [`ColonFile`] keeps every line it does not change byte for byte
//! (comments, NIS `+` lines, odd spacing), and [`plan_accounts`] computes the new three files and
//! a list of human-readable changes. Passwords are stored as sha512-crypt (`$6$`); a password that
//! already verifies against the stored hash is left alone, which is what makes a second apply
//! report "no changes" despite random salts.
//!
//! The parsers take untrusted bytes (a target's files); they never panic (fuzzed and
//! property-tested).

use crate::render::DesiredUser;
use sha_crypt::{sha512_check, sha512_simple, Sha512Params};

/// Why accounts could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// A line of passwd/group has a non-numeric id where one is needed.
    #[error("{file} line {line}: malformed entry (expected name:x:uid:gid:... with numeric ids)")]
    Malformed {
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
        /// 1-based line.
        line: usize,
    },
    /// No free id left in the user range.
    #[error("no free {0} id between 1000 and 59999")]
    NoFreeId(&'static str),
    /// The password could not be hashed.
    #[error("cannot hash the password of {0}")]
    Hash(String),
}

/// A colon-separated system file (passwd, group, shadow), line by line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColonFile {
    lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// A comment, blank or NIS line: kept as is.
    Raw(String),
    /// `name:field:field...`
    Entry(Vec<String>),
}

impl ColonFile {
    /// Parses the text of a colon file. Never fails: lines it does not understand are kept raw.
    pub(crate) fn parse(text: &str) -> Self {
        let lines = text
            .lines()
            .map(|l| {
                if l.is_empty() || l.starts_with('#') || l.starts_with('+') || l.starts_with('-') {
                    Line::Raw(l.to_string())
                } else if l.contains(':') {
                    Line::Entry(l.split(':').map(str::to_string).collect())
                } else {
                    Line::Raw(l.to_string())
                }
            })
            .collect();
        ColonFile { lines }
    }

    /// The text, one entry per line, newline-terminated.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            match l {
                Line::Raw(s) => out.push_str(s),
                Line::Entry(f) => out.push_str(&f.join(":")),
            }
            out.push('\n');
        }
        out
    }

    /// The fields of entry `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&[String]> {
        self.lines.iter().find_map(|l| match l {
            Line::Entry(f) if f.first().map(String::as_str) == Some(name) => Some(f.as_slice()),
            _ => None,
        })
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Vec<String>> {
        self.lines.iter_mut().find_map(|l| match l {
            Line::Entry(f) if f.first().map(String::as_str) == Some(name) => Some(f),
            _ => None,
        })
    }

    fn push(&mut self, fields: Vec<String>) {
        self.lines.push(Line::Entry(fields));
    }

    /// Every entry's fields.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &[String]> {
        self.lines.iter().filter_map(|l| match l {
            Line::Entry(f) => Some(f.as_slice()),
            Line::Raw(_) => None,
        })
    }

    /// Numeric ids in field `idx` of every entry (unparseable ones skipped).
    fn ids(&self, idx: usize) -> Vec<u32> {
        self.entries()
            .filter_map(|f| f.get(idx).and_then(|s| s.parse().ok()))
            .collect()
    }
}

/// The three account files of a target, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    /// `/etc/passwd`.
    pub(crate) passwd: ColonFile,
    /// `/etc/group`.
    pub(crate) group: ColonFile,
    /// `/etc/shadow`.
    pub(crate) shadow: ColonFile,
}

impl Accounts {
    /// Parses the three files' texts.
    pub fn parse(passwd: &str, group: &str, shadow: &str) -> Self {
        Accounts {
            passwd: ColonFile::parse(passwd),
            group: ColonFile::parse(group),
            shadow: ColonFile::parse(shadow),
        }
    }

    /// uid and primary gid of `user`.
    pub fn ids_of(&self, user: &str) -> Option<(u32, u32)> {
        let f = self.passwd.get(user)?;
        Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
    }

    /// Whether `password` verifies against `user`'s stored hash.
    pub fn password_verifies(&self, user: &str, password: &str) -> bool {
        self.shadow
            .get(user)
            .and_then(|f| f.get(1))
            .is_some_and(|h| h.starts_with("$6$") && sha512_check(password, h).is_ok())
    }
}

fn free_id(used: &[u32], preferred: Option<u32>, what: &'static str) -> Result<u32, AccountsError> {
    if let Some(p) = preferred {
        if !used.contains(&p) {
            return Ok(p);
        }
    }
    (1000..60000)
        .find(|i| !used.contains(i))
        .ok_or(AccountsError::NoFreeId(what))
}

fn days_since_epoch() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    (secs / 86_400).to_string()
}

/// Hashes a password with sha512-crypt and a fresh random salt.
pub fn hash_password(user: &str, password: &str) -> Result<String, AccountsError> {
    let params = Sha512Params::new(sha_crypt::ROUNDS_DEFAULT)
        .map_err(|_| AccountsError::Hash(user.to_string()))?;
    sha512_simple(password, &params).map_err(|_| AccountsError::Hash(user.to_string()))
}

fn is_locked(hash: &str) -> bool {
    hash.starts_with('!') || hash.starts_with('*')
}

/// Computes the account files with `users` in place. Returns the new files and one line per
/// change; no changes means the files are already right.
pub(crate) fn plan_accounts(
    current: &Accounts,
    users: &[DesiredUser],
    default_shell: &str,
) -> Result<(Accounts, Vec<String>), AccountsError> {
    let mut next = current.clone();
    let mut changes = Vec::new();
    for u in users {
        // Supplementary groups first, so a new user can join them.
        for g in &u.groups {
            if next.group.get(g).is_none() {
                let gid = free_id(&next.group.ids(2), None, "group")?;
                next.group
                    .push(vec![g.clone(), "x".into(), gid.to_string(), String::new()]);
                changes.push(format!("create group {g} (gid {gid})"));
            }
        }
        if next.passwd.get(&u.name).is_none() {
            let uid = free_id(&next.passwd.ids(2), None, "user")?;
            let gid = match next.group.get(&u.name) {
                Some(f) => {
                    f.get(2)
                        .and_then(|s| s.parse().ok())
                        .ok_or(AccountsError::Malformed {
                            file: "/etc/group",
                            line: 0,
                        })?
                }
                None => {
                    let gid = free_id(&next.group.ids(2), Some(uid), "group")?;
                    next.group.push(vec![
                        u.name.clone(),
                        "x".into(),
                        gid.to_string(),
                        String::new(),
                    ]);
                    gid
                }
            };
            let shell = u.shell.clone().unwrap_or_else(|| default_shell.to_string());
            next.passwd.push(vec![
                u.name.clone(),
                "x".into(),
                uid.to_string(),
                gid.to_string(),
                String::new(),
                u.home.clone(),
                shell,
            ]);
            changes.push(format!(
                "create user {} (uid {uid}, home {})",
                u.name, u.home
            ));
        } else if let Some(shell) = &u.shell {
            if let Some(f) = next.passwd.get_mut(&u.name) {
                while f.len() < 7 {
                    f.push(String::new());
                }
                if &f[6] != shell {
                    changes.push(format!("set shell of {} to {shell}", u.name));
                    f[6] = shell.clone();
                }
            }
        }
        for g in &u.groups {
            if let Some(f) = next.group.get_mut(g) {
                while f.len() < 4 {
                    f.push(String::new());
                }
                let mut members: Vec<String> = f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect();
                if !members.contains(&u.name) {
                    members.push(u.name.clone());
                    f[3] = members.join(",");
                    changes.push(format!("add {} to group {g}", u.name));
                }
            }
        }
        // Password.
        if next.shadow.get(&u.name).is_none() {
            next.shadow.push(vec![
                u.name.clone(),
                "!".into(),
                days_since_epoch(),
                "0".into(),
                "99999".into(),
                "7".into(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        let stored = next
            .shadow
            .get(&u.name)
            .and_then(|f| f.get(1).cloned())
            .unwrap_or_default();
        match &u.password {
            Some(pw) => {
                let ok = stored.starts_with("$6$") && sha512_check(pw.expose(), &stored).is_ok();
                if !ok {
                    let hash = hash_password(&u.name, pw.expose())?;
                    if let Some(f) = next.shadow.get_mut(&u.name) {
                        while f.len() < 9 {
                            f.push(String::new());
                        }
                        f[1] = hash;
                        f[2] = days_since_epoch();
                    }
                    changes.push(format!("set password of {} (sha512-crypt)", u.name));
                }
            }
            None => {
                if !is_locked(&stored) {
                    if let Some(f) = next.shadow.get_mut(&u.name) {
                        f[1] = "!".into();
                    }
                    changes.push(format!("lock password of {}", u.name));
                }
            }
        }
    }
    Ok((next, changes))
}

// The target's own account files: nothing the person typed.
impl mv_core::Classify for AccountsError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mv_core::secret::SecretString;
    use proptest::prelude::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\n# comment\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nusers:x:100:\n";
    const SHADOW: &str = "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n";

    fn user(name: &str, pw: Option<&str>) -> DesiredUser {
        DesiredUser {
            name: name.into(),
            shell: Some("/bin/sh".into()),
            home: format!("/home/{name}"),
            groups: vec!["users".into()],
            password: pw.map(|p| SecretString::new(p.into())),
        }
    }

    #[test]
    fn creates_then_changes_nothing() {
        let cur = Accounts::parse(PASSWD, GROUP, SHADOW);
        let users = [user("user", Some("pw1"))];
        let (next, changes) = plan_accounts(&cur, &users, "/bin/sh").unwrap();
        assert_eq!(
            changes,
            [
                "create user user (uid 1000, home /home/user)",
                "add user to group users",
                "set password of user (sha512-crypt)"
            ]
        );
        assert!(next
            .passwd
            .render()
            .contains("user:x:1000:1000::/home/user:/bin/sh\n"));
        assert!(next.group.render().contains("users:x:100:user\n"));
        assert!(next.group.render().contains("user:x:1000:\n"));
        assert!(next.password_verifies("user", "pw1"));
        assert!(!next.password_verifies("user", "pw2"));
        // The comment survives untouched.
        assert!(next.passwd.render().contains("# comment\n"));
        let (again, none) = plan_accounts(&next, &users, "/bin/sh").unwrap();
        assert!(none.is_empty(), "{none:?}");
        assert_eq!(again, next);
        // A new password is noticed.
        let (_, c) = plan_accounts(&next, &[user("user", Some("pw2"))], "/bin/sh").unwrap();
        assert_eq!(c, ["set password of user (sha512-crypt)"]);
    }

    #[test]
    fn root_password_and_lock() {
        let cur = Accounts::parse(PASSWD, GROUP, SHADOW);
        let mut root = user("root", Some("r00t"));
        root.groups.clear();
        root.shell = None;
        let (next, changes) = plan_accounts(&cur, &[root], "/bin/sh").unwrap();
        assert_eq!(changes, ["set password of root (sha512-crypt)"]);
        assert!(next.password_verifies("root", "r00t"));
        let mut locked = user("root", None);
        locked.groups.clear();
        locked.shell = None;
        let (l, c) = plan_accounts(&next, &[locked], "/bin/sh").unwrap();
        assert_eq!(c, ["lock password of root"]);
        assert!(l.shadow.render().starts_with("root:!:"));
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips_lines(text in "([a-z:#+0-9x]{0,30}\n){0,8}") {
            let f = ColonFile::parse(&text);
            let rendered = f.render();
            prop_assert_eq!(ColonFile::parse(&rendered), f);
            let a = Accounts::parse(&text, &text, &text);
            let _ = plan_accounts(&a, &[user("u", None)], "/bin/sh");
        }
    }
}
