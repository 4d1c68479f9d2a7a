//! The little XML reading this crate needs: which object a document defines, and backup
//! normalisation.
//!
//! What this is not: an XML model of libvirt objects. Libvirt parses and validates the documents;
//! we read only the root element, the object's `<name>` (or `<uuid>` for secrets) and, for
//! normalisation, drop the few elements that change on an unchanged host (a pool's free space).
//! Input is untrusted (files of a backup); every function here returns an error or `None`, never
//! panics, which the proptests and the fuzz target check.

use crate::conn::ObjectKind;
use quick_xml::events::Event;
use quick_xml::Reader;

/// What a document defines, as read from it.
///
/// Names: `<name>` child of the root; a filter's `name` attribute; a secret's `<uuid>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The kind, from the root element (`<domain>`, `<network>`, `<pool>`, `<filter>`, `<secret>`).
    pub kind: ObjectKind,
    /// The object's name (`<name>`; for a secret its `<uuid>`), when present.
    pub name: Option<String>,
    /// The object's `<uuid>`, when present.
    pub uuid: Option<String>,
}

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed XML.
    #[error("not well-formed XML at byte {position}")]
    Malformed {
        /// Byte offset of the problem.
        position: u64,
        /// The parser's message.
        #[source]
        source: quick_xml::Error,
    },
    /// The root element is not a libvirt object this crate handles.
    #[error("root element <{0}> is not a libvirt domain, network, pool, filter or secret")]
    UnknownRoot(String),
    /// No element at all.
    #[error("no root element")]
    Empty,
}

/// Reads the kind, name and UUID of a libvirt XML document.
pub fn identify(xml: &str) -> Result<Identity, XmlError> {
    let mut reader = Reader::from_str(xml);
    let mut depth = 0usize;
    let mut kind: Option<ObjectKind> = None;
    let mut current_child: Option<Vec<u8>> = None;
    let mut name: Option<String> = None;
    let mut uuid: Option<String> = None;
    loop {
        let ev = reader.read_event().map_err(|source| XmlError::Malformed {
            position: reader.buffer_position(),
            source,
        })?;
        match ev {
            Event::Start(e) => {
                depth += 1;
                if depth == 1 {
                    let k = root_kind(e.local_name().as_ref())?;
                    if k == ObjectKind::NwFilter {
                        name = attr(&e, b"name");
                    }
                    kind = Some(k);
                } else if depth == 2 {
                    current_child = Some(e.local_name().as_ref().to_vec());
                }
            }
            Event::Empty(e) if depth == 0 => {
                // `<filter name='x'/>`: a root without children; only a filter has its name here.
                let kind = root_kind(e.local_name().as_ref())?;
                let name = if kind == ObjectKind::NwFilter {
                    attr(&e, b"name")
                } else {
                    None
                };
                return Ok(Identity {
                    kind,
                    name,
                    uuid: None,
                });
            }
            Event::Text(t) if depth == 2 => {
                let text = t
                    .unescape()
                    .map_err(|source| XmlError::Malformed {
                        position: reader.buffer_position(),
                        source,
                    })?
                    .trim()
                    .to_string();
                match current_child.as_deref() {
                    Some(b"name") if name.is_none() => name = Some(text),
                    Some(b"uuid") if uuid.is_none() => uuid = Some(text),
                    _ => {}
                }
            }
            Event::End(_) => {
                if depth == 2 {
                    current_child = None;
                }
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let kind = kind.ok_or(XmlError::Empty)?;
    if kind == ObjectKind::Secret {
        name = uuid.clone();
    }
    Ok(Identity { kind, name, uuid })
}

/// An attribute's unescaped value; `None` when absent or malformed.
fn attr(e: &quick_xml::events::BytesStart<'_>, key: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == key)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

fn root_kind(tag: &[u8]) -> Result<ObjectKind, XmlError> {
    Ok(match tag {
        b"domain" => ObjectKind::Domain,
        b"network" => ObjectKind::Network,
        b"pool" => ObjectKind::Pool,
        b"filter" => ObjectKind::NwFilter,
        b"secret" => ObjectKind::Secret,
        other => {
            return Err(XmlError::UnknownRoot(
                String::from_utf8_lossy(other).into_owned(),
            ))
        }
    })
}

/// Normalises an inactive XML dump for the backup: the text libvirt gives, minus what changes on
/// an unchanged host, ending in exactly one newline.
///
/// Only pools carry such values (`<capacity>`, `<allocation>`, `<available>` of the pool itself,
/// which track the free space of the file system). Libvirt ignores them on define, so dropping
/// them loses nothing. Other kinds are returned as they are, so `dumpxml` of a restored object
/// equals the backup byte for byte.
pub fn normalise(kind: ObjectKind, xml: &str) -> String {
    let mut out = String::with_capacity(xml.len() + 1);
    for line in xml.lines() {
        if kind == ObjectKind::Pool && is_pool_size_line(line) {
            continue;
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `  <capacity unit='bytes'>123</capacity>` at the pool's top level (two-space indent, which is
/// how libvirt formats children of the root; volumes' sizes never appear in a pool's XML).
fn is_pool_size_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("  <") else {
        return false;
    };
    ["capacity", "allocation", "available"]
        .iter()
        .any(|t| rest.starts_with(t) && rest[t.len()..].starts_with([' ', '>']))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn identifies_domain() {
        let id = identify(
            "<domain type='kvm'>\n  <name>web.multiverse</name>\n  <uuid>1b4e28ba-2fa1-11d2-883f-0016d3cca427</uuid>\n  <devices><name>x</name></devices>\n</domain>",
        )
        .unwrap();
        assert_eq!(id.kind, ObjectKind::Domain);
        assert_eq!(id.name.as_deref(), Some("web.multiverse"));
        assert_eq!(
            id.uuid.as_deref(),
            Some("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
        );
    }

    #[test]
    fn nested_name_is_not_the_object_name() {
        let id = identify(
            "<pool type='dir'><target><name>no</name></target><name>p&amp;q</name></pool>",
        )
        .unwrap();
        assert_eq!(id.kind, ObjectKind::Pool);
        assert_eq!(id.name.as_deref(), Some("p&q"));
    }

    #[test]
    fn filter_is_named_by_attribute() {
        let id = identify("<filter name='clean-traffic' chain='root'><uuid>u</uuid><filterref filter='x'/></filter>").unwrap();
        assert_eq!(id.kind, ObjectKind::NwFilter);
        assert_eq!(id.name.as_deref(), Some("clean-traffic"));
        assert_eq!(id.uuid.as_deref(), Some("u"));
        let id = identify("<filter name='a&amp;b'/>").unwrap();
        assert_eq!(id.name.as_deref(), Some("a&b"));
    }

    #[test]
    fn secret_is_named_by_uuid() {
        let id = identify("<secret ephemeral='no' private='yes'><uuid>abc</uuid><usage type='volume'><volume>/x</volume></usage></secret>").unwrap();
        assert_eq!(id.kind, ObjectKind::Secret);
        assert_eq!(id.name.as_deref(), Some("abc"));
    }

    #[test]
    fn rejects_unknown_root_and_garbage() {
        assert!(matches!(
            identify("<html><name>x</name></html>"),
            Err(XmlError::UnknownRoot(t)) if t == "html"
        ));
        assert!(matches!(identify(""), Err(XmlError::Empty)));
        assert!(identify("<domain><name>x</nam></domain>").is_err());
    }

    #[test]
    fn normalise_drops_pool_sizes_only() {
        let pool = "<pool type='dir'>\n  <name>p</name>\n  <capacity unit='bytes'>1</capacity>\n  <allocation unit='bytes'>2</allocation>\n  <available unit='bytes'>3</available>\n  <target>\n    <path>/x</path>\n  </target>\n</pool>";
        assert_eq!(
            normalise(ObjectKind::Pool, pool),
            "<pool type='dir'>\n  <name>p</name>\n  <target>\n    <path>/x</path>\n  </target>\n</pool>\n"
        );
        let dom = "<domain>\n  <capacity unit='bytes'>1</capacity>\n</domain>\n";
        assert_eq!(normalise(ObjectKind::Domain, dom), dom);
    }

    proptest! {
        // The same entry point the fuzz target drives: arbitrary input never panics.
        #[test]
        fn identify_never_panics(s in ".{0,300}") {
            let _ = identify(&s);
        }

        #[test]
        fn identify_never_panics_on_xmlish(s in "(<(domain|pool|name|uuid|/name|/domain|x)( a='b')?/?>|[a-z&;<>]){0,40}") {
            let _ = identify(&s);
        }

        #[test]
        fn names_round_trip(name in "[A-Za-z0-9._+-]{1,40}") {
            let xml = format!("<network>\n  <name>{name}</name>\n</network>\n");
            let id = identify(&xml).unwrap();
            prop_assert_eq!(id.name.as_deref(), Some(name.as_str()));
        }

        #[test]
        fn normalise_is_idempotent(s in "(  <capacity>1</capacity>\n|  <name>x</name>\n|[a-z ]{0,10}\n){0,10}") {
            let once = normalise(ObjectKind::Pool, &s);
            prop_assert_eq!(normalise(ObjectKind::Pool, &once), once.clone());
        }
    }
}
