//! Errors of the connection layer.
//!
//! [`LibvirtError`] names the operation, the kind of object and its name; the libvirt message is
//! its [`VirtError`] source (chained, not repeated), so the CLI prints e.g.
//! `libvirt rejected the domain XML of web.multiverse: ...: unsupported configuration: ...`.

use crate::conn::ObjectKind;
use std::fmt;

/// A libvirt error as libvirt reports it: only its message is displayed (the numeric code and
/// domain that the `virt` crate appends are noise for a person, but kept for callers).
#[derive(Debug)]
pub struct VirtError(virt::error::Error);

impl VirtError {
    /// Libvirt's error number, e.g. `ErrorNumber::NoDomain`.
    pub fn code(&self) -> virt::error::ErrorNumber {
        self.0.code()
    }
    /// Libvirt's message.
    pub fn message(&self) -> &str {
        self.0.message()
    }
}

impl From<virt::error::Error> for VirtError {
    fn from(e: virt::error::Error) -> Self {
        VirtError(e)
    }
}

impl fmt::Display for VirtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.message().trim_end_matches('.'))
    }
}

impl std::error::Error for VirtError {}

/// What can go wrong talking to libvirt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LibvirtError {
    /// The URI cannot be opened (daemon not running, socket missing, bad URI, no permission).
    #[error("cannot connect to libvirt at {uri}")]
    Connect {
        /// The URI tried.
        uri: String,
        /// Libvirt's reason.
        #[source]
        source: VirtError,
    },
    /// Listing objects failed.
    #[error("cannot list the {kind}s of {uri}")]
    List {
        /// Kind of object.
        kind: ObjectKind,
        /// The connection URI.
        uri: String,
        /// Libvirt's reason.
        #[source]
        source: VirtError,
    },
    /// The object does not exist.
    #[error("{kind} {name} is not defined")]
    NotFound {
        /// Kind of object.
        kind: ObjectKind,
        /// Its name (UUID for secrets).
        name: String,
    },
    /// Looking up or reading an object failed for another reason than its absence.
    #[error("cannot read {kind} {name}")]
    Read {
        /// Kind of object.
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// Libvirt's reason.
        #[source]
        source: VirtError,
    },
    /// Libvirt refused a definition (invalid XML, schema violation, name or UUID collision).
    #[error("libvirt rejected the {kind} XML{}", name.as_ref().map(|n| format!(" of {n}")).unwrap_or_default())]
    Define {
        /// Kind of object.
        kind: ObjectKind,
        /// The name read from the XML, when it has one.
        name: Option<String>,
        /// Libvirt's message.
        #[source]
        source: VirtError,
    },
    /// Undefining failed.
    #[error("cannot undefine {kind} {name}")]
    Undefine {
        /// Kind of object.
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// Libvirt's reason.
        #[source]
        source: VirtError,
    },
    /// Starting, stopping or refreshing failed.
    #[error("cannot {action} {kind} {name}")]
    Lifecycle {
        /// "start", "shut down", "destroy", "refresh"...
        action: &'static str,
        /// Kind of object.
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// Libvirt's reason.
        #[source]
        source: VirtError,
    },
    /// A name or XML document holds a NUL byte, which no libvirt object can contain.
    #[error("{what} contains a NUL byte")]
    Nul {
        /// What held it ("domain name", "network XML", ...).
        what: String,
    },
    /// libvirt's event loop (needed by `qemu:///embed`) could not be started.
    #[error("cannot start libvirt's event loop for the embedded driver: {what}")]
    EventLoop {
        /// libvirt's or the OS's message.
        what: String,
    },
    /// The operation does not apply to this kind of object.
    #[error("cannot {action} a {kind}")]
    Unsupported {
        /// The operation.
        action: &'static str,
        /// Kind of object.
        kind: ObjectKind,
    },
}

impl LibvirtError {
    /// True when the error says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, LibvirtError::NotFound { .. })
    }

    /// True when the driver behind the URI does not support the call at all (the embedded QEMU
    /// driver, `qemu:///embed`, has no networks, pools, filters or secrets).
    pub fn is_unsupported(&self) -> bool {
        let source = match self {
            LibvirtError::List { source, .. }
            | LibvirtError::Read { source, .. }
            | LibvirtError::Define { source, .. }
            | LibvirtError::Undefine { source, .. }
            | LibvirtError::Lifecycle { source, .. } => source,
            _ => return matches!(self, LibvirtError::Unsupported { .. }),
        };
        source.code() == virt::error::ErrorNumber::NoSupport
    }
}

impl mv_core::Classify for VirtError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

impl mv_core::Classify for LibvirtError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

impl mv_core::Classify for crate::xml::XmlError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

impl mv_core::Classify for crate::backup::BackupError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

impl mv_core::Classify for crate::up::UpError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Failure
    }
}

impl mv_core::Classify for crate::images::ImageError {
    fn class(&self) -> mv_core::ErrorClass {
        use crate::images::ImageError;
        match self {
            // A name or a source file the person gave, or a name already taken.
            ImageError::BadName(_) | ImageError::Source { .. } | ImageError::Exists { .. } => {
                mv_core::ErrorClass::Usage
            }
            _ => mv_core::ErrorClass::Failure,
        }
    }
}

impl mv_core::Classify for crate::restore::RestoreError {
    fn class(&self) -> mv_core::ErrorClass {
        use crate::restore::RestoreError;
        match self {
            // The backup files the person pointed restore at are unreadable or inconsistent.
            RestoreError::Read { .. }
            | RestoreError::Identify { .. }
            | RestoreError::NoName { .. }
            | RestoreError::Duplicate { .. }
            | RestoreError::Empty(_) => mv_core::ErrorClass::Usage,
            _ => mv_core::ErrorClass::Failure,
        }
    }
}
