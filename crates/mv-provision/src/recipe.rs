//! Recipes: what a machine type needs, as data.
//!
//! A recipe is a TOML file under `recipes/` of this crate (embedded in the binary): packages,
//! services, sysctl keys, kernel modules, files (from a template or from the identity) and users.
//! Recipes `include` others (`router-star` includes `router`, which includes `base`); entries may be
//! limited to one OS (`os = "alpine"`) or to a condition on the machine (`when = "vpn.kind ==
//! 'wireguard'"`, a minijinja expression). A file or folder entry with `each = "<list
//! expression>"` stands for one entry per item, `item` in its path (the star router's onion
//! service folders, one per published service, keyed by `item.machine`: [`FileSpec::machine`]).
//! Resolving a recipe for a machine gives a flat [`Resolved`] list with every condition decided.
//!
//! A file entry names the services that read it with `reload = ["ssh", "sshd"]`, every OS's name
//! at once: resolving keeps the names this machine's resolved recipe enables as services
//! ([`FileSpec::reload`]: `ssh` on Debian, `sshd` on Alpine) and drops the others, and a name that
//! no recipe lists as a service on any OS is [`RecipeError::Reload`] (a typo would otherwise never
//! reload anything). A service whose reload does not re-read its files says `restart = true` in
//! `services` ([`ServiceSpec::restart`]: dnsmasq, whose SIGHUP re-reads only its hosts files).
//! [`crate::apply`](mod@crate::apply) reloads them on a running system when such a file changed.
//!
//! What this is not: a scripting language. There are no hooks or shell commands in recipes; the
//! appliers in [`crate::apply`](mod@crate::apply) know how to install a package or enable a service on each OS.

use crate::model::Os;
use crate::template::{Engine, TemplateError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The recipes compiled into the binary: (name, TOML source).
pub(crate) const EMBEDDED: &[(&str, &str)] = &[
    ("base", include_str!("../recipes/base.toml")),
    ("router", include_str!("../recipes/router.toml")),
    (
        "router-universe",
        include_str!("../recipes/router-universe.toml"),
    ),
    (
        "router-galaxy",
        include_str!("../recipes/router-galaxy.toml"),
    ),
    ("router-star", include_str!("../recipes/router-star.toml")),
    ("controller", include_str!("../recipes/controller.toml")),
    ("service", include_str!("../recipes/service.toml")),
    ("application", include_str!("../recipes/application.toml")),
    ("host", include_str!("../recipes/host.toml")),
];

/// Why a recipe could not be loaded or resolved.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// No recipe of that name.
    #[error("no recipe named {0}")]
    Unknown(String),
    /// The recipe's TOML is malformed.
    #[error("recipe {name}: {message}")]
    Parse {
        /// Recipe name.
        name: String,
        /// What is wrong, with the line.
        message: String,
    },
    /// Includes loop back.
    #[error("recipe {0} includes itself (through {1})")]
    Cycle(String, String),
    /// A `when` expression failed.
    #[error("recipe {recipe}: condition `{expr}`")]
    When {
        /// Recipe name.
        recipe: String,
        /// The expression.
        expr: String,
        /// The template error.
        #[source]
        source: Box<TemplateError>,
    },
    /// A file mode is not octal.
    #[error("recipe {recipe}: file {path} has mode `{mode}`, not an octal mode like \"0644\"")]
    Mode {
        /// Recipe name.
        recipe: String,
        /// The file.
        path: String,
        /// The bad mode.
        mode: String,
    },
    /// An `each` expression is not a list, or an entry's path does not render.
    #[error("recipe {recipe}: `{what}`")]
    Each {
        /// Recipe name.
        recipe: String,
        /// The expression or path.
        what: String,
        /// The template error.
        #[source]
        source: Box<TemplateError>,
    },
    /// A file's `reload` names a service that no recipe lists, on any OS.
    #[error(
        "recipe {recipe}: file {path} reloads `{service}`, which no recipe lists in `services`"
    )]
    Reload {
        /// Recipe name.
        recipe: String,
        /// The file.
        path: String,
        /// The unknown service name.
        service: String,
    },
    /// A file entry has neither or both of `template` and `source`.
    #[error("recipe {recipe}: file {path} needs exactly one of `template` or `source`")]
    FileSource {
        /// Recipe name.
        recipe: String,
        /// The file.
        path: String,
    },
}

/// An entry limited to an OS or a condition. Written as a bare string or a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Item {
    Name(String),
    Full {
        name: String,
        #[serde(default)]
        os: Option<Os>,
        #[serde(default)]
        when: Option<String>,
        #[serde(default)]
        runlevel: Option<String>,
        /// A service only: its reload does not re-read the files that name it in `reload`.
        #[serde(default)]
        restart: bool,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    path: String,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    os: Option<Os>,
    #[serde(default)]
    when: Option<String>,
    #[serde(default)]
    each: Option<String>,
    /// The services that read this file (every OS's name; see the module docs).
    #[serde(default)]
    reload: Vec<String>,
}

/// A folder whose mode and owner the recipe sets (tor's onion service folder must be 0700 and
/// its own).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirEntry {
    path: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    os: Option<Os>,
    #[serde(default)]
    when: Option<String>,
    #[serde(default)]
    each: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    #[serde(default)]
    shell: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    password: PasswordSource,
    #[serde(default)]
    authorized_keys: bool,
    #[serde(default)]
    os: Option<Os>,
}

/// Where a user's password comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PasswordSource {
    /// The identity's machine password.
    Machine,
    /// No password: the account is locked (`!`), keys only.
    #[default]
    Locked,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    packages: Vec<Item>,
    #[serde(default)]
    services: Vec<Item>,
    #[serde(default)]
    modules: Vec<Item>,
    #[serde(default)]
    sysctl: BTreeMap<String, String>,
    #[serde(default, rename = "file")]
    files: Vec<FileEntry>,
    #[serde(default, rename = "dir")]
    dirs: Vec<DirEntry>,
    #[serde(default, rename = "user")]
    users: Vec<UserEntry>,
}

/// Where a file's contents come from once resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub(crate) enum FileSource {
    /// A template by name.
    Template(String),
    /// Something the renderer generates (`sysctl`, `modules`) or takes from the identity
    /// (`ssh_host_ed25519`, `ssh_host_ed25519.pub`...).
    Generated(String),
}

/// A file of the resolved recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct FileSpec {
    /// Absolute path on the machine.
    pub path: String,
    /// Contents' origin.
    pub source: FileSource,
    /// Permission bits.
    pub mode: u32,
    /// Owner user name (group is the user's primary group).
    pub owner: String,
    /// The machine whose identity a generated source takes its key from, when an `each` item
    /// names one (`item.machine`: a published service's onion key on the star router); `None`
    /// for the machine being provisioned.
    pub machine: Option<String>,
    /// The services of this machine that read the file: a running system reloads them when the
    /// file changes. Only services the resolved recipe enables, in the recipe's order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reload: Vec<String>,
}

/// A folder of the resolved recipe: made if missing, then given its owner and mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DirSpec {
    /// Absolute path on the machine.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Owner user name (group is the user's primary group).
    pub owner: String,
}

/// A user of the resolved recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct UserSpec {
    /// Login name.
    pub name: String,
    /// Login shell (`None`: keep the existing or the OS default).
    pub shell: Option<String>,
    /// Supplementary groups, created when missing.
    pub groups: Vec<String>,
    /// Password origin.
    pub password: PasswordSource,
    /// Whether `~/.ssh/authorized_keys` gets the identity's login keys.
    pub authorized_keys: bool,
}

/// A service to enable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceSpec {
    /// Service name (systemd unit without `.service`, or OpenRC script name).
    pub name: String,
    /// OpenRC runlevel (`default` unless the recipe says `boot`); ignored on systemd.
    pub runlevel: String,
    /// The service's reload does not re-read its files (dnsmasq's SIGHUP re-reads only its hosts
    /// files): a changed file restarts it instead. Only systemd can tell the two apart here;
    /// OpenRC services are always restarted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restart: bool,
}

/// A recipe resolved for one machine: every include merged, every condition decided.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Resolved {
    /// Recipe names in include order (`base`, `router`, `router-star`).
    pub recipes: Vec<String>,
    /// Packages, in order of first mention.
    pub packages: Vec<String>,
    /// Services to enable.
    pub services: Vec<ServiceSpec>,
    /// Kernel modules loaded at boot.
    pub modules: Vec<String>,
    /// sysctl keys (later recipes override earlier ones).
    pub sysctl: BTreeMap<String, String>,
    /// Files; a later recipe's entry for the same path replaces an earlier one.
    pub files: Vec<FileSpec>,
    /// Folders with a set mode and owner; a later entry for the same path replaces an earlier.
    pub dirs: Vec<DirSpec>,
    /// Users.
    pub users: Vec<UserSpec>,
}

fn source_of(name: &str) -> Result<&'static str, RecipeError> {
    EMBEDDED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| RecipeError::Unknown(name.to_string()))
}

fn parse(name: &str, src: &str) -> Result<RecipeFile, RecipeError> {
    toml::from_str(src).map_err(|e| {
        let line = e
            .span()
            .map(|s| src[..s.start.min(src.len())].lines().count().max(1))
            .unwrap_or(0);
        RecipeError::Parse {
            name: name.to_string(),
            message: format!("line {line}: {}", e.message()),
        }
    })
}

/// An octal permission mode of a recipe's file or folder (`"0644"`).
fn parse_mode(recipe: &str, path: &str, text: &str) -> Result<u32, RecipeError> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| RecipeError::Mode {
            recipe: recipe.to_string(),
            path: path.to_string(),
            mode: text.to_string(),
        })
}

/// Resolves recipe `name` for a machine whose template context is `ctx`, on `os`.
pub(crate) fn resolve(
    name: &str,
    os: Os,
    engine: &Engine,
    ctx: &serde_json::Value,
) -> Result<Resolved, RecipeError> {
    let mut out = Resolved::default();
    let mut stack = Vec::new();
    resolve_into(name, os, engine, ctx, &mut out, &mut stack)?;
    // A file reloads only what this machine runs, once, in the order the recipes enable them.
    for f in &mut out.files {
        f.reload = out
            .services
            .iter()
            .filter(|s| f.reload.contains(&s.name))
            .map(|s| s.name.clone())
            .collect();
    }
    Ok(out)
}

/// Every service name any embedded recipe lists, on any OS and under any condition: what a
/// file's `reload` may name. (A recipe that does not parse is reported by its own resolve.)
fn known_services() -> Vec<String> {
    let mut names: Vec<String> = EMBEDDED
        .iter()
        .filter_map(|(n, src)| parse(n, src).ok())
        .flat_map(|r| r.services)
        .map(|it| match it {
            Item::Name(n) | Item::Full { name: n, .. } => n,
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn resolve_into(
    name: &str,
    os: Os,
    engine: &Engine,
    ctx: &serde_json::Value,
    out: &mut Resolved,
    stack: &mut Vec<String>,
) -> Result<(), RecipeError> {
    if stack.iter().any(|s| s == name) {
        return Err(RecipeError::Cycle(name.to_string(), stack.join(" -> ")));
    }
    if out.recipes.iter().any(|r| r == name) {
        return Ok(()); // already merged through another include
    }
    let file = parse(name, source_of(name)?)?;
    stack.push(name.to_string());
    for inc in &file.include {
        resolve_into(inc, os, engine, ctx, out, stack)?;
    }
    stack.pop();
    out.recipes.push(name.to_string());

    let applies = |item_os: Option<Os>, when: Option<&str>| -> Result<bool, RecipeError> {
        if item_os.is_some_and(|o| o != os) {
            return Ok(false);
        }
        match when {
            None => Ok(true),
            Some(expr) => engine
                .eval_bool(&format!("recipe {name}"), expr, ctx)
                .map_err(|source| RecipeError::When {
                    recipe: name.to_string(),
                    expr: expr.to_string(),
                    source: Box::new(source),
                }),
        }
    };
    // (name, runlevel, restart) of each entry that applies.
    type Entry = (String, Option<String>, bool);
    let items = |list: &[Item]| -> Result<Vec<Entry>, RecipeError> {
        let mut v = Vec::new();
        for it in list {
            match it {
                Item::Name(n) => v.push((n.clone(), None, false)),
                Item::Full {
                    name: n,
                    os: o,
                    when,
                    runlevel,
                    restart,
                } => {
                    if applies(*o, when.as_deref())? {
                        v.push((n.clone(), runlevel.clone(), *restart));
                    }
                }
            }
        }
        Ok(v)
    };
    for (p, ..) in items(&file.packages)? {
        if !out.packages.contains(&p) {
            out.packages.push(p);
        }
    }
    for (s, lvl, restart) in items(&file.services)? {
        if !out.services.iter().any(|x| x.name == s) {
            out.services.push(ServiceSpec {
                name: s,
                runlevel: lvl.unwrap_or_else(|| "default".to_string()),
                restart,
            });
        }
    }
    for (m, ..) in items(&file.modules)? {
        if !out.modules.contains(&m) {
            out.modules.push(m);
        }
    }
    // An entry with `each = "<list expression>"` stands for one entry per item, `item` in its
    // path: (path, the item's `machine`) per item, or the path alone without `each`.
    let expand =
        |path: &str, each: Option<&str>| -> Result<Vec<(String, Option<String>)>, RecipeError> {
            let Some(expr) = each else {
                return Ok(vec![(path.to_string(), None)]);
            };
            let err = |what: &str| {
                let (recipe, what) = (name.to_string(), what.to_string());
                move |e: TemplateError| RecipeError::Each {
                    recipe,
                    what,
                    source: Box::new(e),
                }
            };
            let origin = format!("recipe {name}");
            let mut v = Vec::new();
            for item in engine.eval_list(&origin, expr, ctx).map_err(err(expr))? {
                let mut with_item = ctx.clone();
                with_item["item"] = item.clone();
                let p = engine
                    .render_inline(&origin, path, &with_item)
                    .map_err(err(path))?;
                let machine = item["machine"].as_str().map(str::to_string);
                v.push((p, machine));
            }
            Ok(v)
        };
    out.sysctl.extend(file.sysctl.clone());
    // Checked whether or not an entry applies here: a typo is an error on every machine.
    check_reload(name, &file)?;
    for f in &file.files {
        if !applies(f.os, f.when.as_deref())? {
            continue;
        }
        for (path, machine) in expand(&f.path, f.each.as_deref())? {
            let f = FileEntry {
                path,
                each: None,
                ..f.clone()
            };
            add_file(name, &f, machine, out)?;
        }
    }
    for d in &file.dirs {
        if !applies(d.os, d.when.as_deref())? {
            continue;
        }
        for (path, _) in expand(&d.path, d.each.as_deref())? {
            let mode = parse_mode(name, &path, d.mode.as_deref().unwrap_or("0755"))?;
            let spec = DirSpec {
                path,
                mode,
                owner: d.owner.clone().unwrap_or_else(|| "root".to_string()),
            };
            match out.dirs.iter_mut().find(|x| x.path == spec.path) {
                Some(existing) => *existing = spec,
                None => out.dirs.push(spec),
            }
        }
    }
    add_users(&file, os, out);
    Ok(())
}

/// Every `reload` of recipe `name`'s files names a service some recipe lists.
fn check_reload(name: &str, file: &RecipeFile) -> Result<(), RecipeError> {
    if file.files.iter().all(|f| f.reload.is_empty()) {
        return Ok(());
    }
    let known = known_services();
    for f in &file.files {
        if let Some(bad) = f.reload.iter().find(|s| !known.contains(s)) {
            return Err(RecipeError::Reload {
                recipe: name.to_string(),
                path: f.path.clone(),
                service: bad.clone(),
            });
        }
    }
    Ok(())
}

/// Adds (or replaces, by path) one file entry of recipe `name`.
fn add_file(
    name: &str,
    f: &FileEntry,
    machine: Option<String>,
    out: &mut Resolved,
) -> Result<(), RecipeError> {
    let source = match (&f.template, &f.source) {
        (Some(t), None) => FileSource::Template(t.clone()),
        (None, Some(s)) => FileSource::Generated(s.clone()),
        _ => {
            return Err(RecipeError::FileSource {
                recipe: name.to_string(),
                path: f.path.clone(),
            })
        }
    };
    let mode = parse_mode(name, &f.path, f.mode.as_deref().unwrap_or("0644"))?;
    let spec = FileSpec {
        path: f.path.clone(),
        source,
        mode,
        owner: f.owner.clone().unwrap_or_else(|| "root".to_string()),
        machine,
        // Filtered to this machine's services once every recipe is merged ([`resolve`]).
        reload: f.reload.clone(),
    };
    match out.files.iter_mut().find(|x| x.path == spec.path) {
        Some(existing) => *existing = spec,
        None => out.files.push(spec),
    }
    Ok(())
}

/// Adds (or replaces, by name) the users of a recipe.
fn add_users(file: &RecipeFile, os: Os, out: &mut Resolved) {
    for u in &file.users {
        if u.os.is_some_and(|o| o != os) {
            continue;
        }
        let spec = UserSpec {
            name: u.name.clone(),
            shell: u.shell.clone(),
            groups: u.groups.clone(),
            password: u.password,
            authorized_keys: u.authorized_keys,
        };
        match out.users.iter_mut().find(|x| x.name == spec.name) {
            Some(existing) => *existing = spec,
            None => out.users.push(spec),
        }
    }
}

// Recipes and their overrides are files the person edits.
impl mv_core::Classify for RecipeError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_recipe_parses() {
        for (name, src) in EMBEDDED {
            let r = parse(name, src).unwrap();
            for inc in &r.include {
                source_of(inc).unwrap();
            }
            check_reload(name, &r).unwrap();
        }
    }

    /// `reload` keeps this machine's own name of each service, once, and drops the others.
    #[test]
    fn reload_keeps_the_machines_own_services() {
        let e = Engine::embedded();
        let ctx = serde_json::json!({"machine": {"arch": "x86_64", "kind": "router"}, "upstream": null, "vpn": {"kind": "wireguard"}, "tor": {"onion_services": []}});
        let reload = |r: &Resolved, path: &str| -> Vec<String> {
            r.files
                .iter()
                .find(|f| f.path == path)
                .unwrap_or_else(|| panic!("{path}"))
                .reload
                .clone()
        };
        let star = resolve("router-star", Os::Debian, &e, &ctx).unwrap();
        assert_eq!(reload(&star, "/etc/ssh/sshd_config"), ["ssh"]);
        assert_eq!(reload(&star, "/etc/tor/torrc"), ["tor"]);
        assert_eq!(reload(&star, "/etc/nftables.conf"), ["nftables"]);
        assert_eq!(reload(&star, "/etc/dnsmasq.conf"), ["dnsmasq"]);
        assert!(reload(&star, "/etc/hostname").is_empty());
        let dnsmasq = star.services.iter().find(|s| s.name == "dnsmasq").unwrap();
        assert!(dnsmasq.restart);
        let star = resolve("router-star", Os::Alpine, &e, &ctx).unwrap();
        assert_eq!(reload(&star, "/etc/ssh/ssh_host_ed25519_key"), ["sshd"]);
        assert_eq!(
            reload(&star, "/var/lib/tor/multiverse/hs_ed25519_secret_key"),
            ["tor"]
        );
        // Galaxy's WireGuard: wg-quick@wg0 on Debian; no such service on Alpine (`local`).
        let galaxy = resolve("router-galaxy", Os::Debian, &e, &ctx).unwrap();
        assert_eq!(reload(&galaxy, "/etc/wireguard/wg0.key"), ["wg-quick@wg0"]);
        let galaxy = resolve("router-galaxy", Os::Alpine, &e, &ctx).unwrap();
        assert!(reload(&galaxy, "/etc/wireguard/wg0.conf").is_empty());
    }

    /// A `reload` that names no service of any recipe is an error naming the file, even on an
    /// entry for another OS.
    #[test]
    fn reload_of_an_unknown_service_is_an_error() {
        let src = "description = \"d\"\n[[file]]\npath = \"/etc/a\"\ntemplate = \"a.j2\"\nos = \"alpine\"\nreload = [\"ssh\", \"shd\"]\n";
        let err = check_reload("x", &parse("x", src).unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "recipe x: file /etc/a reloads `shd`, which no recipe lists in `services`"
        );
    }

    #[test]
    fn parse_errors_name_recipe_and_line() {
        let err = parse("x", "description = \"d\"\n\npackages = [1]\n").unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with("recipe x: line 3:"), "{s}");
    }

    #[test]
    fn includes_merge_and_os_filters() {
        let e = Engine::embedded();
        let ctx = serde_json::json!({"machine": {"arch": "x86_64", "kind": "router"}, "upstream": null, "vpn": null, "tor": {"onion_services": []}});
        let r = resolve("router-star", Os::Debian, &e, &ctx).unwrap();
        assert_eq!(r.recipes, ["base", "router", "router-star"]);
        assert!(r.packages.contains(&"tor".to_string()));
        assert!(r.packages.contains(&"openssh-server".to_string()));
        assert!(!r.packages.contains(&"openssh".to_string()));
        assert_eq!(
            r.sysctl.get("net.ipv4.ip_forward").map(String::as_str),
            Some("1")
        );
        assert!(r.files.iter().any(|f| f.path == "/etc/nftables.conf"));
        assert!(!r.files.iter().any(|f| f.path == "/etc/nftables.nft"));
        let a = resolve("router-star", Os::Alpine, &e, &ctx).unwrap();
        assert!(a.files.iter().any(|f| f.path == "/etc/nftables.nft"));
        let sysctl = a.services.iter().find(|s| s.name == "sysctl").unwrap();
        assert_eq!(sysctl.runlevel, "boot");
    }

    /// `each` makes one entry per item, with `item` in the path and `item.machine` as the
    /// machine whose keys a generated source uses; a value that is no list is an error.
    #[test]
    fn each_makes_one_entry_per_item() {
        let e = Engine::embedded();
        let mut ctx = serde_json::json!({"machine": {"arch": "x86_64", "kind": "router"}, "upstream": null, "vpn": null, "tor": {"onion_services": [
            {"machine": "a.service.multiverse", "dir": "/var/lib/tor/a.service.multiverse"},
            {"machine": "b.service.multiverse", "dir": "/var/lib/tor/b.service.multiverse"},
        ]}});
        let r = resolve("router-star", Os::Alpine, &e, &ctx).unwrap();
        let keys: Vec<(&str, Option<&str>, &str)> = r
            .files
            .iter()
            .filter(|f| f.path.ends_with("hs_ed25519_secret_key"))
            .map(|f| (f.path.as_str(), f.machine.as_deref(), f.owner.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("/var/lib/tor/multiverse/hs_ed25519_secret_key", None, "tor"),
                (
                    "/var/lib/tor/a.service.multiverse/hs_ed25519_secret_key",
                    Some("a.service.multiverse"),
                    "tor"
                ),
                (
                    "/var/lib/tor/b.service.multiverse/hs_ed25519_secret_key",
                    Some("b.service.multiverse"),
                    "tor"
                ),
            ]
        );
        let dirs: Vec<&str> = r
            .dirs
            .iter()
            .filter(|d| d.path.starts_with("/var/lib/tor/"))
            .map(|d| d.path.as_str())
            .collect();
        assert_eq!(
            dirs,
            [
                "/var/lib/tor/multiverse",
                "/var/lib/tor/a.service.multiverse",
                "/var/lib/tor/b.service.multiverse"
            ]
        );
        ctx["tor"]["onion_services"] = serde_json::json!(3);
        let err = resolve("router-star", Os::Alpine, &e, &ctx).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("recipe router-star: `tor.onion_services`"),
            "{err}"
        );
    }

    #[test]
    fn when_conditions_pick_the_vpn() {
        let e = Engine::embedded();
        let wg = serde_json::json!({"machine": {"arch": "x86_64", "kind": "router"}, "upstream": null, "vpn": {"kind": "wireguard"}});
        let r = resolve("router-galaxy", Os::Debian, &e, &wg).unwrap();
        assert!(r.packages.contains(&"wireguard-tools".to_string()));
        assert!(!r.packages.contains(&"openvpn".to_string()));
        assert!(r.services.iter().any(|s| s.name == "wg-quick@wg0"));
    }
}
