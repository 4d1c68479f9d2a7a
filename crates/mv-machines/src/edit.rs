//! Editing `multiverse.toml` in place: adding and removing machines without losing the person's
//! comments, ordering or formatting (toml_edit keeps all of it).
//!
//! These functions work on text and return text; they never write, except
//! [`set_epoch_in_file`] (read, edit, validate, write: `identity rotate`'s epoch step). The caller validates the
//! result with [`Topology::parse`](crate::config::Topology::parse) before writing it, so an edit
//! that would make the file invalid (removing the router that serves a network, say) is refused
//! with the usual `FILE:LINE: what` and nothing is written.

use crate::config::{Arch, MachineType, Os, RouterRole, Topology};
use mv_core::MachineName;
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table};

/// What `multiverse machine new` asks for. `None` fields take the type's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMachine {
    /// FQDN.
    pub name: MachineName,
    /// Type (not host).
    pub kind: MachineType,
    /// Architecture (default: the host's).
    pub arch: Option<Arch>,
    /// OS.
    pub os: Option<Os>,
    /// Memory in MiB.
    pub memory_mib: Option<u64>,
    /// vCPUs.
    pub vcpus: Option<u32>,
    /// Networks to attach (default for non-routers: the network the star router serves, else
    /// the last network of the file).
    pub networks: Vec<String>,
    /// Router role (routers only, required for them).
    pub role: Option<RouterRole>,
    /// Router upstream network.
    pub upstream: Option<String>,
    /// Start order.
    pub autostart: Option<u32>,
    /// A new network this router serves (routers only): a `[[networks]]` table is added with
    /// `served_by` set to the router, and the router gets a NIC on it.
    pub serves: Option<NewNetwork>,
}

/// A network created together with the router that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNetwork {
    /// Network name.
    pub name: String,
    /// Subnet (`10.4.4.0/24`).
    pub subnet: crate::config::Ipv4Net,
    /// Bridge name (default `mv` + the network name, cut to 15 characters).
    pub bridge: Option<String>,
}

impl NewNetwork {
    /// The bridge name to use.
    pub fn bridge_name(&self) -> String {
        self.bridge.clone().unwrap_or_else(|| {
            let mut b = format!("mv{}", self.name);
            b.truncate(15);
            b
        })
    }
}

/// Why an edit could not be made (before any validation of the result).
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The text is not TOML at all.
    #[error("{file}: not valid TOML")]
    Parse {
        /// The file, for the message.
        file: String,
        /// Why.
        #[source]
        source: toml_edit::TomlError,
    },
    /// `machines` exists but is not an array of tables (`[[machines]]`).
    #[error("{file}: `machines` must be written as [[machines]] tables to be edited")]
    NotTables {
        /// The file.
        file: String,
    },
    /// The type cannot be added.
    #[error("the host is described in [host]; it cannot be added as a machine")]
    HostType,
    /// A router without a role.
    #[error("a router needs a role: universe, galaxy or star")]
    RouterWithoutRole,
    /// Router options on a non-router.
    #[error("a role, an upstream and served networks are for routers only")]
    RoleOnNonRouter,
    /// No network to attach to.
    #[error("no network to attach `{0}` to")]
    NoNetwork(String),
}

fn doc(text: &str, file: &str) -> Result<DocumentMut, EditError> {
    text.parse::<DocumentMut>()
        .map_err(|source| EditError::Parse {
            file: file.to_string(),
            source,
        })
}

fn lower<T: std::fmt::Debug>(x: T) -> String {
    format!("{x:?}").to_lowercase()
}

/// The default network of a new non-router machine in `current` (a parsed, valid topology).
pub(crate) fn default_network(current: &Topology) -> Option<String> {
    let star = current.vms().find(|m| {
        m.router
            .as_ref()
            .is_some_and(|r| r.role == RouterRole::Star)
    });
    star.and_then(|s| s.router.as_ref()?.serves.first().cloned())
        .or_else(|| current.networks.last().map(|n| n.name.clone()))
}

/// Returns `text` with a `[[machines]]` table for `m` appended. `current` is `text` parsed (for
/// defaults); the caller validates the result.
pub fn add_machine(
    text: &str,
    file: &str,
    current: &Topology,
    m: &NewMachine,
) -> Result<String, EditError> {
    if m.kind == MachineType::Host {
        return Err(EditError::HostType);
    }
    let is_router = m.kind == MachineType::Router;
    if is_router && m.role.is_none() {
        return Err(EditError::RouterWithoutRole);
    }
    if !is_router && (m.role.is_some() || m.upstream.is_some() || m.serves.is_some()) {
        return Err(EditError::RoleOnNonRouter);
    }
    let mut networks = m.networks.clone();
    if let Some(n) = &m.serves {
        if !networks.contains(&n.name) {
            networks.push(n.name.clone());
        }
    }
    if networks.is_empty() && !is_router {
        networks.push(
            default_network(current).ok_or_else(|| EditError::NoNetwork(m.name.to_string()))?,
        );
    }
    let mut d = doc(text, file)?;
    let mut t = Table::new();
    t.insert("name", value(m.name.as_str()));
    t.insert("type", value(m.kind.as_str()));
    if let Some(a) = m.arch {
        t.insert("arch", value(a.as_str()));
    }
    if let Some(o) = m.os {
        t.insert("os", value(o.as_str()));
    }
    if let Some(x) = m.memory_mib {
        t.insert("memory_mib", value(i64::try_from(x).unwrap_or(i64::MAX)));
    }
    if let Some(x) = m.vcpus {
        t.insert("vcpus", value(i64::from(x)));
    }
    if let Some(x) = m.autostart {
        t.insert("autostart", value(i64::from(x)));
    }
    if let Some(role) = m.role {
        let mut r = InlineTable::new();
        r.insert("role", lower(role).into());
        if let Some(u) = &m.upstream {
            r.insert("upstream", u.as_str().into());
        }
        t.insert("router", value(r));
    }
    let mut arr = Array::new();
    for n in &networks {
        let mut a = InlineTable::new();
        a.insert("network", n.as_str().into());
        arr.push(a);
    }
    t.insert("networks", value(arr));
    t.decor_mut().set_prefix("\n");
    if let Some(n) = &m.serves {
        let mut nt = Table::new();
        nt.insert("name", value(n.name.as_str()));
        nt.insert("bridge", value(n.bridge_name()));
        nt.insert("subnet", value(n.subnet.to_string()));
        nt.insert("served_by", value(m.name.as_str()));
        nt.decor_mut().set_prefix("\n");
        match d.get_mut("networks") {
            None => {
                let mut aot = ArrayOfTables::new();
                aot.push(nt);
                d.insert("networks", Item::ArrayOfTables(aot));
            }
            Some(Item::ArrayOfTables(aot)) => aot.push(nt),
            Some(_) => {
                return Err(EditError::NotTables {
                    file: file.to_string(),
                })
            }
        }
    }
    match d.get_mut("machines") {
        None => {
            let mut aot = ArrayOfTables::new();
            aot.push(t);
            d.insert("machines", Item::ArrayOfTables(aot));
        }
        Some(Item::ArrayOfTables(aot)) => aot.push(t),
        Some(_) => {
            return Err(EditError::NotTables {
                file: file.to_string(),
            })
        }
    }
    Ok(d.to_string())
}

/// Returns `text` without the `[[machines]]` table named `name`, or `None` when there is none.
/// The comment lines just above the table go with it.
pub fn remove_machine(
    text: &str,
    file: &str,
    name: &MachineName,
) -> Result<Option<String>, EditError> {
    let mut d = doc(text, file)?;
    let Some(item) = d.get_mut("machines") else {
        return Ok(None);
    };
    let Some(aot) = item.as_array_of_tables_mut() else {
        return Err(EditError::NotTables {
            file: file.to_string(),
        });
    };
    let idx = aot
        .iter()
        .position(|t| t.get("name").and_then(|v| v.as_str()) == Some(name.as_str()));
    let Some(idx) = idx else {
        return Ok(None);
    };
    aot.remove(idx);
    Ok(Some(d.to_string()))
}

/// Returns `text` with `[identity.epochs]` giving `name` the epoch `epoch` (the table is created
/// at the end of the file when missing; epoch 0 removes the name's line, as a name absent is at
/// epoch 0). Comments and the rest of the file are kept.
pub(crate) fn set_epoch(
    text: &str,
    file: &str,
    name: &mv_core::IdentityName,
    epoch: u32,
) -> Result<String, EditError> {
    let mut d = doc(text, file)?;
    let identity = d
        .entry("identity")
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| EditError::NotTables {
            file: file.to_string(),
        })?;
    let epochs = identity
        .entry("epochs")
        .or_insert_with(|| Item::Table(Table::new()))
        .as_table_like_mut()
        .ok_or_else(|| EditError::NotTables {
            file: file.to_string(),
        })?;
    if epoch == 0 {
        epochs.remove(name.as_str());
    } else {
        epochs.insert(name.as_str(), value(i64::from(epoch)));
    }
    Ok(d.to_string())
}

/// Why [`set_epoch_in_file`] changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum EpochFileError {
    /// The file cannot be read, or it (or the edited text) is not a valid `multiverse.toml`.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The edit itself failed (not TOML, `identity` not a table).
    #[error(transparent)]
    Edit(#[from] EditError),
    /// Writing the edited file failed.
    #[error(transparent)]
    Write(#[from] mv_core::fsutil::FsError),
}

// Reading and checking the file are about the file the person wrote (as `rotate` always said);
// a failed write is the operation's.
impl mv_core::Classify for EpochFileError {
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            EpochFileError::Config(_) | EpochFileError::Edit(_) => mv_core::ErrorClass::Usage,
            EpochFileError::Write(e) => mv_core::Classify::class(e),
        }
    }
}

/// Gives `name` the epoch `epoch` in `[identity.epochs]` of the `multiverse.toml` at `path`:
/// the file is read (now: it may have been edited since it was loaded), edited with
/// `set_epoch`, the result validated with [`Topology::parse`], and written atomically with the
/// file's own mode. `Ok(false)`: the file already gives `name` that epoch, nothing is written
/// (so a rerun after a crash is a no-op).
pub fn set_epoch_in_file(
    path: &std::path::Path,
    name: &mv_core::IdentityName,
    epoch: u32,
) -> Result<bool, EpochFileError> {
    let text = Topology::read_text(path)?;
    let now = Topology::parse(&text, path)?;
    if now.epochs.get(name) == epoch {
        return Ok(false);
    }
    let edited = set_epoch(&text, &path.display().to_string(), name, epoch)?;
    Topology::parse(&edited, path)?;
    let mode = std::fs::metadata(path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
        .unwrap_or(mv_core::fsutil::PUBLIC_MODE);
    mv_core::fsutil::write_atomic(path, edited.as_bytes(), mode)?;
    Ok(true)
}

// Every edit error is about the arguments or the file the person wrote.
impl mv_core::Classify for EditError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Usage
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::DEFAULT_TOML;
    use std::path::Path;

    fn nm(s: &str) -> MachineName {
        MachineName::parse(s).unwrap()
    }

    fn new(name: &str, kind: MachineType) -> NewMachine {
        NewMachine {
            name: nm(name),
            kind,
            arch: None,
            os: None,
            memory_mib: None,
            vcpus: None,
            networks: vec![],
            role: None,
            upstream: None,
            autostart: None,
            serves: None,
        }
    }

    #[test]
    fn add_keeps_comments_and_validates() {
        let cur = Topology::parse(DEFAULT_TOML, Path::new("m.toml")).unwrap();
        let mut m = new("vault.service.multiverse", MachineType::Service);
        m.memory_mib = Some(768);
        let out = add_machine(DEFAULT_TOML, "m.toml", &cur, &m).unwrap();
        assert!(
            out.starts_with(DEFAULT_TOML.trim_end()),
            "existing text untouched"
        );
        assert!(out.contains("# Star: the Tor transparent proxy."));
        let t = Topology::parse(&out, Path::new("m.toml")).unwrap();
        let v = t.machine(&nm("vault.service.multiverse")).unwrap();
        assert_eq!(v.memory_mib, 768);
        assert_eq!(v.networks[0].network, "net2");
        // And removing it gives the original text back.
        let back = remove_machine(&out, "m.toml", &nm("vault.service.multiverse"))
            .unwrap()
            .unwrap();
        assert_eq!(back.trim_end(), DEFAULT_TOML.trim_end());
    }

    #[test]
    fn routers_need_a_role() {
        let cur = Topology::default_topology();
        let m = new("moon.router.multiverse", MachineType::Router);
        assert!(matches!(
            add_machine(DEFAULT_TOML, "m", &cur, &m),
            Err(EditError::RouterWithoutRole)
        ));
        let mut s = new("x.multiverse", MachineType::Service);
        s.role = Some(RouterRole::Star);
        assert!(matches!(
            add_machine(DEFAULT_TOML, "m", &cur, &s),
            Err(EditError::RoleOnNonRouter)
        ));
    }

    #[test]
    fn a_router_with_its_new_network() {
        let cur = Topology::default_topology();
        let mut m = new("moon.router.multiverse", MachineType::Router);
        m.role = Some(RouterRole::Star);
        m.upstream = Some("net1".into());
        m.networks = vec!["net1".into()];
        m.serves = Some(NewNetwork {
            name: "net4".into(),
            subnet: "10.4.4.0/24".parse().unwrap(),
            bridge: None,
        });
        let out = add_machine(DEFAULT_TOML, "m", &cur, &m).unwrap();
        let t = Topology::parse(&out, Path::new("m")).unwrap();
        let n = t.network("net4").unwrap();
        assert_eq!(n.bridge, "mvnet4");
        assert_eq!(
            n.served_by.as_ref().map(|b| b.as_str()),
            Some("moon.router.multiverse")
        );
        let r = t.machine(&nm("moon.router.multiverse")).unwrap();
        assert_eq!(r.router.as_ref().unwrap().serves, ["net4"]);
        assert_eq!(r.networks[1].address, Some("10.4.4.1".parse().unwrap()));
    }

    #[test]
    fn remove_missing_is_none_and_removing_a_serving_router_is_invalid() {
        assert!(remove_machine(DEFAULT_TOML, "m", &nm("no.such.machine"))
            .unwrap()
            .is_none());
        let out = remove_machine(DEFAULT_TOML, "m", &nm("star.router.multiverse"))
            .unwrap()
            .unwrap();
        let e = Topology::parse(&out, Path::new("m")).unwrap_err();
        assert!(e.to_string().contains("no router serves it"), "{e}");
    }
}

#[cfg(test)]
mod epoch_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::DEFAULT_TOML;
    use std::path::Path;

    #[test]
    fn set_epoch_keeps_comments_and_validates() {
        let star = mv_core::IdentityName::parse("star.router.multiverse").unwrap();
        let one = set_epoch(DEFAULT_TOML, "m.toml", &star, 1).unwrap();
        assert!(one.starts_with(&DEFAULT_TOML[..200]), "comments kept");
        let t = Topology::parse(&one, Path::new("m.toml")).unwrap();
        assert_eq!(t.epochs.get(&star), 1);
        let two = set_epoch(&one, "m.toml", &star, 2).unwrap();
        assert_eq!(two.matches("star.router.multiverse\" = ").count(), 1);
        let t = Topology::parse(&two, Path::new("m.toml")).unwrap();
        assert_eq!(t.epochs.get(&star), 2);
        let commented = format!(
            "{}# keep me\n[identity.epochs]\n# and me\n\"@user\" = 3\n",
            DEFAULT_TOML
        );
        let edited = set_epoch(&commented, "m.toml", &star, 1).unwrap();
        assert!(
            edited.contains("# keep me") && edited.contains("# and me"),
            "{edited}"
        );
        let t = Topology::parse(&edited, Path::new("m.toml")).unwrap();
        assert_eq!(
            t.epochs
                .get(&mv_core::IdentityName::parse("@user").unwrap()),
            3
        );
    }
}
