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
/// Whether the guest holds the virtio channel `name` open, from a live domain XML: the `state`
/// (`connected`/`disconnected`) libvirt keeps on `<channel><target type='virtio' name=…/>`.
/// `None` when there is no such channel or libvirt does not say (an inactive definition, an
/// older libvirt), and for XML that does not parse.
pub(crate) fn channel_connected(xml: &str, name: &str) -> Option<bool> {
    let mut reader = Reader::from_str(xml);
    let mut in_channel = false;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) if e.local_name().as_ref() == b"channel" => in_channel = true,
            Event::End(e) if e.local_name().as_ref() == b"channel" => in_channel = false,
            Event::Start(e) | Event::Empty(e)
                if in_channel
                    && e.local_name().as_ref() == b"target"
                    && attr(&e, b"name").as_deref() == Some(name) =>
            {
                return match attr(&e, b"state").as_deref() {
                    Some("connected") => Some(true),
                    Some("disconnected") => Some(false),
                    _ => None,
                };
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

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

/// The namespace of the marker `up` puts in a domain's `<metadata>`.
pub(crate) const UP_NS: &str = "https://multiverse-os.org/xmlns/up/1";

/// A parsed element: name, attributes, trimmed text, children. Only for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    name: Vec<u8>,
    attrs: Vec<(Vec<u8>, String)>,
    text: String,
    children: Vec<Node>,
}

fn node_attrs(e: &quick_xml::events::BytesStart<'_>) -> Vec<(Vec<u8>, String)> {
    let mut v: Vec<(Vec<u8>, String)> = e
        .attributes()
        .flatten()
        .map(|a| {
            (
                a.key.as_ref().to_vec(),
                a.unescape_value()
                    .map(|c| c.into_owned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Parses a document into its root [`Node`]; comments and processing instructions are dropped.
fn parse_tree(xml: &str) -> Result<Node, XmlError> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    loop {
        let ev = reader.read_event().map_err(|source| XmlError::Malformed {
            position: reader.buffer_position(),
            source,
        })?;
        match ev {
            Event::Start(e) => stack.push(Node {
                name: e.name().as_ref().to_vec(),
                attrs: node_attrs(&e),
                text: String::new(),
                children: Vec::new(),
            }),
            Event::Empty(e) => {
                let n = Node {
                    name: e.name().as_ref().to_vec(),
                    attrs: node_attrs(&e),
                    text: String::new(),
                    children: Vec::new(),
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(n),
                    None => return Ok(n),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let text = t.unescape().map_err(|source| XmlError::Malformed {
                        position: reader.buffer_position(),
                        source,
                    })?;
                    top.text.push_str(text.trim());
                }
            }
            Event::End(_) => {
                let Some(done) = stack.pop() else {
                    return Err(XmlError::Empty);
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Event::Eof => return Err(XmlError::Empty),
            _ => {}
        }
    }
}

fn node_subset(a: &Node, b: &Node) -> bool {
    a.name == b.name
        && (a.text.is_empty() || a.text == b.text)
        && a.attrs.iter().all(|x| b.attrs.contains(x))
        && a.children
            .iter()
            .all(|c| b.children.iter().any(|d| node_subset(c, d)))
}

/// True when everything `wanted` says (elements, attributes, text) is also in `live`, which may
/// say more: libvirt fills in defaults (a network's MAC, a pool's permissions) when it defines an
/// object, so "has the host drifted from the rendered file" is a subset test, not equality.
pub(crate) fn is_subset(wanted: &str, live: &str) -> Result<bool, XmlError> {
    Ok(node_subset(&parse_tree(wanted)?, &parse_tree(live)?))
}

/// Inserts `element` (one XML element, e.g. the `up` marker) into the root's `<metadata>`,
/// creating `<metadata>` right after the root's start tag if there is none.
pub(crate) fn inject_metadata(xml: &str, element: &str) -> Result<String, XmlError> {
    let mut reader = Reader::from_str(xml);
    let mut depth = 0usize;
    let mut root_end: Option<usize> = None;
    loop {
        let before = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let ev = reader.read_event().map_err(|source| XmlError::Malformed {
            position: reader.buffer_position(),
            source,
        })?;
        let after = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        match ev {
            Event::Start(e) => {
                depth += 1;
                if depth == 1 {
                    root_end = Some(after);
                } else if depth == 2 && e.local_name().as_ref() == b"metadata" {
                    return Ok(splice(xml, after, after, &format!("\n    {element}")));
                }
            }
            Event::Empty(e) if depth == 1 && e.local_name().as_ref() == b"metadata" => {
                return Ok(splice(
                    xml,
                    before,
                    after,
                    &format!("<metadata>\n    {element}\n  </metadata>"),
                ));
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let at = root_end.ok_or(XmlError::Empty)?;
    Ok(splice(
        xml,
        at,
        at,
        &format!("\n  <metadata>\n    {element}\n  </metadata>"),
    ))
}

/// Adds `<uuid>` right after the root's `<name>` (for a rendered file without one, so a
/// redefinition keeps the host's UUID instead of colliding with it).
pub(crate) fn with_uuid(xml: &str, uuid: &str) -> Result<String, XmlError> {
    let mut reader = Reader::from_str(xml);
    let mut depth = 0usize;
    let mut in_name = false;
    loop {
        let ev = reader.read_event().map_err(|source| XmlError::Malformed {
            position: reader.buffer_position(),
            source,
        })?;
        match ev {
            Event::Start(e) => {
                depth += 1;
                in_name = depth == 2 && e.local_name().as_ref() == b"name";
            }
            Event::End(_) => {
                if depth == 2 && in_name {
                    let at = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
                    let tag = format!("\n  <uuid>{}</uuid>", quick_xml::escape::escape(uuid));
                    return Ok(splice(xml, at, at, &tag));
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
    Err(XmlError::Empty)
}

fn splice(s: &str, from: usize, to: usize, with: &str) -> String {
    let (from, to) = (from.min(s.len()), to.min(s.len()));
    let mut out = String::with_capacity(s.len() + with.len());
    out.push_str(s.get(..from).unwrap_or(s));
    out.push_str(with);
    out.push_str(s.get(to..).unwrap_or(""));
    out
}

/// The `sha256` attribute of the `up` marker (`<x:rendered xmlns:x="UP_NS" sha256=".."/>`) in a
/// domain's XML, if present.
pub(crate) fn rendered_hash(xml: &str) -> Option<String> {
    let mut reader = Reader::from_str(xml);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) if e.local_name().as_ref() == b"rendered" => {
                let ns_ok = e.attributes().flatten().any(|a| {
                    a.key.as_ref().starts_with(b"xmlns")
                        && a.unescape_value().map(|v| v == UP_NS).unwrap_or(false)
                });
                if ns_ok {
                    return attr(&e, b"sha256");
                }
            }
            Ok(Event::Eof) | Err(_) => return None,
            _ => {}
        }
    }
}

/// Networks a domain's interfaces use (`<interface type='network'><source network='x'/>`).
pub(crate) fn referenced_networks(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(root) = parse_tree(xml) else {
        return out;
    };
    for devices in root.children.iter().filter(|c| c.name == b"devices") {
        for iface in devices.children.iter().filter(|c| c.name == b"interface") {
            for src in iface.children.iter().filter(|c| c.name == b"source") {
                if let Some((_, v)) = src.attrs.iter().find(|(k, _)| k == b"network") {
                    if !out.contains(v) {
                        out.push(v.clone());
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// The channel part of a live domain XML as libvirt 9 writes it while the guest's agent
    /// holds its port open and its SSH relay does not.
    const LIVE_CHANNELS: &str =
        "<domain type='qemu' id='1'><name>star.router.multiverse</name><devices>
    <channel type='unix'>
      <source mode='bind' path='/run/multiverse/agent/star.router.multiverse.sock'/>
      <target type='virtio' name='org.multiverse.agent.0' state='connected'/>
      <alias name='channel0'/>
    </channel>
    <channel type='unix'>
      <source mode='bind' path='/run/multiverse/ssh/star.router.multiverse.sock'/>
      <target type='virtio' name='org.multiverse.ssh.0' state='disconnected'/>
    </channel>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices></domain>";

    #[test]
    fn reads_a_channel_s_state_by_name() {
        assert_eq!(
            channel_connected(LIVE_CHANNELS, "org.multiverse.agent.0"),
            Some(true)
        );
        assert_eq!(
            channel_connected(LIVE_CHANNELS, "org.multiverse.ssh.0"),
            Some(false)
        );
        // No such channel; a definition without run-time state; not XML.
        assert_eq!(
            channel_connected(LIVE_CHANNELS, "org.qemu.guest_agent.0"),
            None
        );
        let inactive = LIVE_CHANNELS.replace(" state='connected'", "");
        assert_eq!(channel_connected(&inactive, "org.multiverse.agent.0"), None);
        assert_eq!(channel_connected("<domain><devices>", "x"), None);
        // A `<target name=…>` outside a channel (a console's) is not a channel's.
        let console = "<domain><devices><console><target type='virtio' name='n' state='connected'/></console></devices></domain>";
        assert_eq!(channel_connected(console, "n"), None);
    }

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

    #[test]
    fn subset_ignores_what_libvirt_adds() {
        let wanted =
            "<!-- c --><network>\n  <name>n</name>\n  <bridge name=\"b\" stp=\"on\"/>\n</network>";
        let live = "<network>\n  <name>n</name>\n  <uuid>u</uuid>\n  <bridge name='b' stp='on' delay='0'/>\n  <mac address='52:54:00:00:00:01'/>\n</network>\n";
        assert!(is_subset(wanted, live).unwrap());
        assert!(!is_subset(&wanted.replace("\"b\"", "\"c\""), live).unwrap());
        assert!(!is_subset("<network><name>m</name></network>", live).unwrap());
    }

    #[test]
    fn injects_metadata_marker() {
        let m = format!("<up:rendered xmlns:up=\"{UP_NS}\" sha256=\"ab\"/>");
        let with = "<domain>\n  <name>x</name>\n  <metadata>\n    <a:b xmlns:a=\"q\"/>\n  </metadata>\n</domain>";
        let out = inject_metadata(with, &m).unwrap();
        assert_eq!(rendered_hash(&out).as_deref(), Some("ab"));
        assert!(out.contains("<a:b xmlns:a=\"q\"/>"));
        let without = "<!-- r --><domain type='kvm'>\n  <name>x</name>\n</domain>";
        let out = inject_metadata(without, &m).unwrap();
        assert!(
            out.starts_with("<!-- r --><domain type='kvm'>\n  <metadata>"),
            "{out}"
        );
        assert_eq!(rendered_hash(&out).as_deref(), Some("ab"));
        let empty = "<domain><metadata/><name>x</name></domain>";
        let out = inject_metadata(empty, &m).unwrap();
        assert_eq!(rendered_hash(&out).as_deref(), Some("ab"));
        assert_eq!(identify(&out).unwrap().name.as_deref(), Some("x"));
        // A marker of another namespace is not ours.
        assert_eq!(
            rendered_hash(
                "<domain><metadata><x:rendered xmlns:x='other' sha256='1'/></metadata></domain>"
            ),
            None
        );
    }

    #[test]
    fn adds_uuid_after_name() {
        let out = with_uuid(
            "<domain>\n  <name>x</name>\n  <devices><name>y</name></devices>\n</domain>",
            "u-1",
        )
        .unwrap();
        assert_eq!(out, "<domain>\n  <name>x</name>\n  <uuid>u-1</uuid>\n  <devices><name>y</name></devices>\n</domain>");
        assert_eq!(identify(&out).unwrap().uuid.as_deref(), Some("u-1"));
        assert!(with_uuid("<domain/>", "u").is_err());
    }

    #[test]
    fn finds_referenced_networks() {
        let d = "<domain><devices><interface type='network'><source network='net0'/></interface><interface type='network'><source network='net2'/></interface><disk><source network='no'/></disk></devices></domain>";
        assert_eq!(referenced_networks(d), vec!["net0", "net2"]);
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
        fn subset_is_reflexive_and_inject_keeps_identity(name in "[a-z0-9.-]{1,20}", attr in "[a-z ]{0,10}") {
            let xml = format!("<domain type='{attr}'>\n  <name>{name}</name>\n  <devices/>\n</domain>");
            prop_assert!(is_subset(&xml, &xml).unwrap());
            let out = inject_metadata(&xml, "<m:rendered xmlns:m=\"https://multiverse-os.org/xmlns/up/1\" sha256=\"0\"/>").unwrap();
            prop_assert!(is_subset(&xml, &out).unwrap());
            prop_assert_eq!(identify(&out).unwrap().name, Some(name));
        }

        #[test]
        fn tree_functions_never_panic(s in "(<(domain|metadata|devices|interface|source)( network='x')?/?>|</(domain|metadata|devices)>|[a-z&;<>]){0,40}") {
            let _ = is_subset(&s, &s);
            let _ = inject_metadata(&s, "<x/>");
            let _ = rendered_hash(&s);
            let _ = referenced_networks(&s);
            let _ = with_uuid(&s, "u");
            let _ = crate::images::parse_info(std::path::Path::new("p"), &s);
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
