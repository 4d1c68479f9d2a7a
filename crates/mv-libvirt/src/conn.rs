//! The connection layer: one [`Connection`] to a libvirt URI and uniform operations on every kind
//! of object ([`ObjectKind`]): list, read XML, define, undefine, and the lifecycle calls `up`/`down`
//! need.
//!
//! What this is not: a model of libvirt XML. Objects go in and out as XML text; libvirt is the
//! judge of what is valid. Names are libvirt names (machine FQDNs for machines of the multiverse);
//! secrets are named by their UUID.
//!
//! Every call is a libvirt API call through the `virt` bindings (no `virsh` subprocesses), so a
//! backup of hundreds of domains is one connection and a round trip per object.

use crate::error::{LibvirtError, VirtError};
use std::fmt;
use std::sync::Once;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;
use virt::network::Network;
use virt::nwfilter::NWFilter;
use virt::secret::Secret;
use virt::storage_pool::StoragePool;
use virt::sys;

/// The default URI when neither `--connect` nor `multiverse.toml` says otherwise.
pub const DEFAULT_URI: &str = "qemu:///system";

/// A kind of libvirt object. The order is the order a restore defines them in: what others refer
/// to comes first (secrets → filters → pools → networks → domains).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// A secret (metadata only; values are never read).
    Secret,
    /// A network filter (`<filter>`).
    NwFilter,
    /// A storage pool.
    Pool,
    /// A virtual network.
    Network,
    /// A domain (virtual machine).
    Domain,
}

impl ObjectKind {
    /// Every kind, in restore order.
    pub const ALL: [ObjectKind; 5] = [
        ObjectKind::Secret,
        ObjectKind::NwFilter,
        ObjectKind::Pool,
        ObjectKind::Network,
        ObjectKind::Domain,
    ];

    /// The word used in file names and messages (`domain`, `network`, `pool`, `nwfilter`, `secret`).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Secret => "secret",
            ObjectKind::NwFilter => "nwfilter",
            ObjectKind::Pool => "pool",
            ObjectKind::Network => "network",
            ObjectKind::Domain => "domain",
        }
    }

    /// Parses [`ObjectKind::as_str`].
    pub fn parse(s: &str) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn not_found_code(self) -> ErrorNumber {
        match self {
            ObjectKind::Secret => ErrorNumber::NoSecret,
            ObjectKind::NwFilter => ErrorNumber::NoNwfilter,
            ObjectKind::Pool => ErrorNumber::NoStoragePool,
            ObjectKind::Network => ErrorNumber::NoNetwork,
            ObjectKind::Domain => ErrorNumber::NoDomain,
        }
    }
}

/// Serialised as [`ObjectKind::as_str`].
impl serde::Serialize for ObjectKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Read from [`ObjectKind::as_str`] (the saved plans of `mv-migrate` hold kinds).
impl<'de> serde::Deserialize<'de> for ObjectKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        ObjectKind::parse(&s).ok_or_else(|| {
            serde::de::Error::unknown_variant(
                &s,
                &["secret", "nwfilter", "pool", "network", "domain"],
            )
        })
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The run state of a domain, from libvirt's `virDomainState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainState {
    /// Running (or blocked on a resource, which is still running).
    Running,
    /// Paused by the user or by libvirt.
    Paused,
    /// Being shut down.
    ShuttingDown,
    /// Not running.
    ShutOff,
    /// Crashed.
    Crashed,
    /// Suspended by guest power management.
    Suspended,
    /// Libvirt reports no state.
    Unknown,
}

impl DomainState {
    /// The state libvirt reports as a number (`virDomainState`, the `state` of `virDomainInfo`).
    pub fn from_raw(state: sys::virDomainState) -> DomainState {
        match state {
            sys::VIR_DOMAIN_RUNNING | sys::VIR_DOMAIN_BLOCKED => DomainState::Running,
            sys::VIR_DOMAIN_PAUSED => DomainState::Paused,
            sys::VIR_DOMAIN_SHUTDOWN => DomainState::ShuttingDown,
            sys::VIR_DOMAIN_SHUTOFF => DomainState::ShutOff,
            sys::VIR_DOMAIN_CRASHED => DomainState::Crashed,
            sys::VIR_DOMAIN_PMSUSPENDED => DomainState::Suspended,
            _ => DomainState::Unknown,
        }
    }

    /// True unless shut off (a paused or crashed domain still holds its resources).
    pub fn is_active(self) -> bool {
        !matches!(self, DomainState::ShutOff | DomainState::Unknown)
    }

    /// Lower-case word for people and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainState::Running => "running",
            DomainState::Paused => "paused",
            DomainState::ShuttingDown => "shutting_down",
            DomainState::ShutOff => "shut_off",
            DomainState::Crashed => "crashed",
            DomainState::Suspended => "suspended",
            DomainState::Unknown => "unknown",
        }
    }
}

/// One volume of a storage pool, as recorded in a backup (never its contents).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VolumeInfo {
    /// The volume's name in its pool.
    pub name: String,
    /// Its path on the host.
    pub path: String,
}

/// An open connection to libvirt. Closed on drop.
pub struct Connection {
    conn: Connect,
    uri: String,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("uri", &self.uri)
            .finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Nothing useful can be done about a failed close at drop time; the daemon reaps the
        // connection when the socket closes anyway.
        let _ = self.conn.close();
    }
}

static QUIET: Once = Once::new();
static EVENT_LOOP: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();

/// The embedded driver (`qemu:///embed`) runs inside this process and needs libvirt's event loop
/// registered and running; a daemon URI does not. Started once, on a thread that lives as long as
/// the process (libvirt offers no way to stop its default loop).
fn event_loop() -> Result<(), LibvirtError> {
    let res = EVENT_LOOP.get_or_init(|| {
        virt::event::event_register_default_impl().map_err(|e| e.message().to_string())?;
        std::thread::Builder::new()
            .name("libvirt-events".into())
            .spawn(|| loop {
                if virt::event::event_run_default_impl().is_err() {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            })
            .map(drop)
            .map_err(|e| e.to_string())
    });
    res.clone().map_err(|what| LibvirtError::EventLoop { what })
}

fn nul_free(what: impl FnOnce() -> String, s: &str) -> Result<(), LibvirtError> {
    // The `virt` bindings unwrap CString::new, which panics on a NUL byte: refuse it first.
    if s.contains('\0') {
        return Err(LibvirtError::Nul { what: what() });
    }
    Ok(())
}

impl Connection {
    /// Opens `uri` (`qemu:///system`, `qemu:///session`, `qemu:///embed?root=DIR`, `test:///default`...).
    ///
    /// Fails with [`LibvirtError::Connect`] naming the URI when the daemon cannot be reached.
    pub fn open(uri: &str) -> Result<Connection, LibvirtError> {
        // libvirt prints every error to stderr by default; we report them ourselves.
        QUIET.call_once(virt::error::clear_error_callback);
        nul_free(|| "libvirt URI".into(), uri)?;
        // Once the embedded QEMU driver is loaded, libvirt serves every `qemu:///…` URI of this
        // process in-process and disables the remote driver: one process talks either to a
        // daemon or to embedded roots, never both (the tests keep them in separate binaries).
        if uri.starts_with("qemu:///embed") {
            event_loop()?;
        }
        let conn = Connect::open(Some(uri)).map_err(|e| LibvirtError::Connect {
            uri: uri.to_string(),
            source: e.into(),
        })?;
        Ok(Connection {
            conn,
            uri: uri.to_string(),
        })
    }

    /// The URI this connection was opened with.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The underlying `virt` connection, for calls this layer does not wrap.
    pub fn raw(&self) -> &Connect {
        &self.conn
    }

    // ---- generic operations on any kind -------------------------------------------------------

    /// Names of every object of `kind` (active and inactive), sorted. Secrets are listed by UUID.
    pub fn list(&self, kind: ObjectKind) -> Result<Vec<String>, LibvirtError> {
        let list_err = |e: virt::error::Error| LibvirtError::List {
            kind,
            uri: self.uri.clone(),
            source: e.into(),
        };
        let read_err = |e: virt::error::Error| LibvirtError::List {
            kind,
            uri: self.uri.clone(),
            source: e.into(),
        };
        let mut names = match kind {
            ObjectKind::Domain => self
                .conn
                .list_all_domains(0)
                .map_err(list_err)?
                .iter()
                .map(Domain::get_name)
                .collect::<Result<Vec<_>, _>>()
                .map_err(read_err)?,
            ObjectKind::Network => self
                .conn
                .list_all_networks(0)
                .map_err(list_err)?
                .iter()
                .map(Network::get_name)
                .collect::<Result<Vec<_>, _>>()
                .map_err(read_err)?,
            ObjectKind::Pool => self
                .conn
                .list_all_storage_pools(0)
                .map_err(list_err)?
                .iter()
                .map(StoragePool::get_name)
                .collect::<Result<Vec<_>, _>>()
                .map_err(read_err)?,
            ObjectKind::NwFilter => self
                .conn
                .list_all_nw_filters(0)
                .map_err(list_err)?
                .iter()
                .map(NWFilter::get_name)
                .collect::<Result<Vec<_>, _>>()
                .map_err(read_err)?,
            ObjectKind::Secret => self
                .conn
                .list_all_secrets(0)
                .map_err(list_err)?
                .iter()
                .map(Secret::get_uuid_string)
                .collect::<Result<Vec<_>, _>>()
                .map_err(read_err)?,
        };
        names.sort();
        Ok(names)
    }

    /// Whether an object of `kind` named `name` is defined.
    pub fn exists(&self, kind: ObjectKind, name: &str) -> Result<bool, LibvirtError> {
        match self.lookup(kind, name) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The XML of an object. With `inactive`, the persistent definition (what `define` takes and a
    /// backup keeps) rather than the live state of a running object. Never includes secret values
    /// (no `VIR_DOMAIN_XML_SECURE`).
    pub fn xml(
        &self,
        kind: ObjectKind,
        name: &str,
        inactive: bool,
    ) -> Result<String, LibvirtError> {
        let obj = self.lookup(kind, name)?;
        let res = match &obj {
            Obj::Domain(d) => d.get_xml_desc(if inactive {
                sys::VIR_DOMAIN_XML_INACTIVE
            } else {
                0
            }),
            Obj::Network(n) => n.get_xml_desc(if inactive {
                sys::VIR_NETWORK_XML_INACTIVE
            } else {
                0
            }),
            Obj::Pool(p) => p.get_xml_desc(if inactive {
                sys::VIR_STORAGE_XML_INACTIVE
            } else {
                0
            }),
            Obj::NwFilter(f) => f.get_xml_desc(0),
            Obj::Secret(s) => s.get_xml_desc(0),
        };
        res.map_err(|e| self.read_error(kind, name, e))
    }

    /// Defines (or redefines: same name and UUID) an object from its XML; returns its name.
    /// Libvirt's parser rejects a bad document here with its message (`Invalid value 'oops' for
    /// element ...`). Schema validation (`VIR_DOMAIN_DEFINE_VALIDATE`) is deliberately not asked
    /// for: the daemon's RelaxNG validation is not thread-safe in the libxml2 shipped here and
    /// fails spuriously ("Unable to parse RelaxNG schema") under concurrent defines.
    pub fn define(&self, kind: ObjectKind, xml: &str) -> Result<String, LibvirtError> {
        nul_free(|| format!("{kind} XML"), xml)?;
        let define_err = |e: virt::error::Error| LibvirtError::Define {
            kind,
            name: crate::xml::identify(xml).ok().and_then(|i| i.name),
            source: e.into(),
        };
        let name = match kind {
            ObjectKind::Domain => Domain::define_xml(&self.conn, xml).and_then(|d| d.get_name()),
            ObjectKind::Network => Network::define_xml(&self.conn, xml).and_then(|n| n.get_name()),
            ObjectKind::Pool => {
                StoragePool::define_xml(&self.conn, xml, 0).and_then(|p| p.get_name())
            }
            ObjectKind::NwFilter => {
                NWFilter::define_xml(&self.conn, xml).and_then(|f| f.get_name())
            }
            ObjectKind::Secret => {
                Secret::define_xml(&self.conn, xml, 0).and_then(|s| s.get_uuid_string())
            }
        }
        .map_err(define_err)?;
        Ok(name)
    }

    /// Undefines an object. A running domain or active network/pool stays running as a transient
    /// object until stopped (libvirt's rule). A domain's NVRAM file is kept, so a redefinition
    /// finds its UEFI variables again.
    pub fn undefine(&self, kind: ObjectKind, name: &str) -> Result<(), LibvirtError> {
        let obj = self.lookup(kind, name)?;
        let res = match &obj {
            Obj::Domain(d) => d.undefine_flags(
                sys::VIR_DOMAIN_UNDEFINE_KEEP_NVRAM | sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE,
            ),
            Obj::Network(n) => n.undefine(),
            Obj::Pool(p) => p.undefine(),
            Obj::NwFilter(f) => f.undefine(),
            Obj::Secret(s) => s.undefine(),
        };
        res.map_err(|e| LibvirtError::Undefine {
            kind,
            name: name.to_string(),
            source: e.into(),
        })
    }

    /// Whether a domain, network or pool is active (running/started). Filters and secrets have no
    /// run state and are never active.
    pub fn is_active(&self, kind: ObjectKind, name: &str) -> Result<bool, LibvirtError> {
        let obj = self.lookup(kind, name)?;
        let res = match &obj {
            Obj::Domain(d) => d.is_active(),
            Obj::Network(n) => n.is_active(),
            Obj::Pool(p) => p.is_active(),
            Obj::NwFilter(_) | Obj::Secret(_) => Ok(false),
        };
        res.map_err(|e| self.read_error(kind, name, e))
    }

    // ---- secrets ------------------------------------------------------------------------------

    /// Sets the value of the secret `uuid` (an encrypted disk's passphrase). Values go in only:
    /// nothing here ever reads one back.
    pub fn set_secret_value(&self, uuid: &str, value: &[u8]) -> Result<(), LibvirtError> {
        let Obj::Secret(s) = self.lookup(ObjectKind::Secret, uuid)? else {
            return Err(LibvirtError::Unsupported {
                action: "set the value of",
                kind: ObjectKind::Secret,
            });
        };
        s.set_value(value, 0).map_err(|e| LibvirtError::Lifecycle {
            action: "set the value of",
            kind: ObjectKind::Secret,
            name: uuid.to_string(),
            source: e.into(),
        })
    }

    // ---- domains ------------------------------------------------------------------------------

    /// Names of every domain, sorted.
    pub fn list_domains(&self) -> Result<Vec<String>, LibvirtError> {
        self.list(ObjectKind::Domain)
    }
    /// A domain's XML (`inactive`: the persistent definition).
    pub fn domain_xml(&self, name: &str, inactive: bool) -> Result<String, LibvirtError> {
        self.xml(ObjectKind::Domain, name, inactive)
    }
    /// Whether a domain is running (or paused).
    pub fn domain_is_active(&self, name: &str) -> Result<bool, LibvirtError> {
        self.is_active(ObjectKind::Domain, name)
    }
    /// Defines a domain (schema-validated); returns its name.
    pub fn define_domain(&self, xml: &str) -> Result<String, LibvirtError> {
        self.define(ObjectKind::Domain, xml)
    }
    /// Undefines a domain, keeping its NVRAM file.
    pub fn undefine_domain(&self, name: &str) -> Result<(), LibvirtError> {
        self.undefine(ObjectKind::Domain, name)
    }

    /// A domain's run state.
    pub fn domain_state(&self, name: &str) -> Result<DomainState, LibvirtError> {
        let d = self.domain(name)?;
        let (state, _reason) = d
            .get_state()
            .map_err(|e| self.read_error(ObjectKind::Domain, name, e))?;
        Ok(DomainState::from_raw(state))
    }

    /// Starts a defined domain.
    pub fn start_domain(&self, name: &str) -> Result<(), LibvirtError> {
        let d = self.domain(name)?;
        d.create()
            .map(drop)
            .map_err(|e| lifecycle("start", ObjectKind::Domain, name, e))
    }

    /// Asks the guest to shut down (ACPI); returns at once. See [`Connection::destroy_domain`].
    pub fn shutdown_domain(&self, name: &str) -> Result<(), LibvirtError> {
        let d = self.domain(name)?;
        d.shutdown()
            .map(drop)
            .map_err(|e| lifecycle("shut down", ObjectKind::Domain, name, e))
    }

    /// Stops a domain at once (power off).
    pub fn destroy_domain(&self, name: &str) -> Result<(), LibvirtError> {
        let d = self.domain(name)?;
        d.destroy()
            .map_err(|e| lifecycle("destroy", ObjectKind::Domain, name, e))
    }

    // ---- networks -----------------------------------------------------------------------------

    /// Names of every network, sorted.
    pub fn list_networks(&self) -> Result<Vec<String>, LibvirtError> {
        self.list(ObjectKind::Network)
    }
    /// A network's XML.
    pub fn network_xml(&self, name: &str, inactive: bool) -> Result<String, LibvirtError> {
        self.xml(ObjectKind::Network, name, inactive)
    }
    /// Defines a network; returns its name. Does not start it (starting creates a host bridge).
    pub fn define_network(&self, xml: &str) -> Result<String, LibvirtError> {
        self.define(ObjectKind::Network, xml)
    }
    /// Undefines a network.
    pub fn undefine_network(&self, name: &str) -> Result<(), LibvirtError> {
        self.undefine(ObjectKind::Network, name)
    }
    /// Starts a defined network (creates its bridge and firewall rules on the host).
    pub fn start_network(&self, name: &str) -> Result<(), LibvirtError> {
        match self.lookup(ObjectKind::Network, name)? {
            Obj::Network(n) => n
                .create()
                .map(drop)
                .map_err(|e| lifecycle("start", ObjectKind::Network, name, e)),
            _ => unreachable_kind(ObjectKind::Network),
        }
    }

    // ---- storage pools ------------------------------------------------------------------------

    /// Names of every storage pool, sorted.
    pub fn list_pools(&self) -> Result<Vec<String>, LibvirtError> {
        self.list(ObjectKind::Pool)
    }
    /// A pool's XML.
    pub fn pool_xml(&self, name: &str, inactive: bool) -> Result<String, LibvirtError> {
        self.xml(ObjectKind::Pool, name, inactive)
    }
    /// Defines a pool; returns its name.
    pub fn define_pool(&self, xml: &str) -> Result<String, LibvirtError> {
        self.define(ObjectKind::Pool, xml)
    }
    /// Undefines a pool (its files stay).
    pub fn undefine_pool(&self, name: &str) -> Result<(), LibvirtError> {
        self.undefine(ObjectKind::Pool, name)
    }
    /// Starts a defined pool (for a dir pool: checks its folder exists).
    pub fn start_pool(&self, name: &str) -> Result<(), LibvirtError> {
        match self.lookup(ObjectKind::Pool, name)? {
            Obj::Pool(p) => p
                .create(0)
                .map(drop)
                .map_err(|e| lifecycle("start", ObjectKind::Pool, name, e)),
            _ => unreachable_kind(ObjectKind::Pool),
        }
    }
    /// Stops an active pool (its files stay).
    pub fn stop_pool(&self, name: &str) -> Result<(), LibvirtError> {
        match self.lookup(ObjectKind::Pool, name)? {
            Obj::Pool(p) => p
                .destroy()
                .map_err(|e| lifecycle("stop", ObjectKind::Pool, name, e)),
            _ => unreachable_kind(ObjectKind::Pool),
        }
    }

    /// The volumes of an active pool (refreshed first), sorted by name; empty for an inactive pool,
    /// whose volumes libvirt cannot see.
    pub fn pool_volumes(&self, name: &str) -> Result<Vec<VolumeInfo>, LibvirtError> {
        let Obj::Pool(p) = self.lookup(ObjectKind::Pool, name)? else {
            return unreachable_kind(ObjectKind::Pool);
        };
        if !p
            .is_active()
            .map_err(|e| self.read_error(ObjectKind::Pool, name, e))?
        {
            return Ok(Vec::new());
        }
        p.refresh(0)
            .map_err(|e| lifecycle("refresh", ObjectKind::Pool, name, e))?;
        let vols = p
            .list_all_volumes(0)
            .map_err(|e| self.read_error(ObjectKind::Pool, name, e))?;
        let mut out = Vec::with_capacity(vols.len());
        for v in &vols {
            let vol_name = v
                .get_name()
                .map_err(|e| self.read_error(ObjectKind::Pool, name, e))?;
            let path = v
                .get_path()
                .map_err(|e| self.read_error(ObjectKind::Pool, name, e))?;
            out.push(VolumeInfo {
                name: vol_name,
                path,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    // ---- nwfilters and secrets ----------------------------------------------------------------

    /// Names of every network filter, sorted.
    pub fn list_nwfilters(&self) -> Result<Vec<String>, LibvirtError> {
        self.list(ObjectKind::NwFilter)
    }
    /// UUIDs of every secret, sorted.
    pub fn list_secrets(&self) -> Result<Vec<String>, LibvirtError> {
        self.list(ObjectKind::Secret)
    }

    // ---- internals ----------------------------------------------------------------------------

    fn domain(&self, name: &str) -> Result<Domain, LibvirtError> {
        match self.lookup(ObjectKind::Domain, name)? {
            Obj::Domain(d) => Ok(d),
            _ => unreachable_kind(ObjectKind::Domain),
        }
    }

    fn lookup(&self, kind: ObjectKind, name: &str) -> Result<Obj, LibvirtError> {
        nul_free(|| format!("{kind} name"), name)?;
        let c = &self.conn;
        let res = match kind {
            ObjectKind::Domain => Domain::lookup_by_name(c, name).map(Obj::Domain),
            ObjectKind::Network => Network::lookup_by_name(c, name).map(Obj::Network),
            ObjectKind::Pool => StoragePool::lookup_by_name(c, name).map(Obj::Pool),
            ObjectKind::NwFilter => NWFilter::lookup_by_name(c, name).map(Obj::NwFilter),
            ObjectKind::Secret => Secret::lookup_by_uuid_string(c, name).map(Obj::Secret),
        };
        res.map_err(|e| self.read_error(kind, name, e))
    }

    fn read_error(&self, kind: ObjectKind, name: &str, e: virt::error::Error) -> LibvirtError {
        // A secret looked up by a malformed UUID is "not found" too, from the caller's view.
        let missing = e.code() == kind.not_found_code()
            || (kind == ObjectKind::Secret && e.code() == ErrorNumber::InvalidArg);
        if missing {
            LibvirtError::NotFound {
                kind,
                name: name.to_string(),
            }
        } else {
            LibvirtError::Read {
                kind,
                name: name.to_string(),
                source: e.into(),
            }
        }
    }
}

fn lifecycle(
    action: &'static str,
    kind: ObjectKind,
    name: &str,
    e: virt::error::Error,
) -> LibvirtError {
    LibvirtError::Lifecycle {
        action,
        kind,
        name: name.to_string(),
        source: VirtError::from(e),
    }
}

fn unreachable_kind<T>(kind: ObjectKind) -> Result<T, LibvirtError> {
    // `lookup(kind)` only ever returns an object of `kind`; this keeps the match total without a
    // panic.
    Err(LibvirtError::Unsupported {
        action: "look up",
        kind,
    })
}

/// A looked-up object of any kind.
enum Obj {
    Domain(Domain),
    Network(Network),
    Pool(StoragePool),
    NwFilter(NWFilter),
    Secret(Secret),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_order_for_restore() {
        for k in ObjectKind::ALL {
            assert_eq!(ObjectKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ObjectKind::parse("interface"), None);
        // What others refer to is defined first.
        assert!(ObjectKind::Pool < ObjectKind::Domain);
        assert!(ObjectKind::Network < ObjectKind::Domain);
        assert!(ObjectKind::Secret < ObjectKind::Pool);
    }

    #[test]
    fn states() {
        assert_eq!(
            DomainState::from_raw(sys::VIR_DOMAIN_BLOCKED),
            DomainState::Running
        );
        assert!(!DomainState::from_raw(sys::VIR_DOMAIN_SHUTOFF).is_active());
        assert!(DomainState::from_raw(sys::VIR_DOMAIN_PAUSED).is_active());
        assert_eq!(DomainState::from_raw(99), DomainState::Unknown);
    }
}
