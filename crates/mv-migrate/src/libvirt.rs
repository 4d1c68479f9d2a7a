//! The libvirt side of a migration: which domains and pools point into the old tree, and rewriting
//! their XML to the new paths.
//!
//! The migration talks to libvirt only through the small [`Hypervisor`] trait, so that the planner
//! and the executor are tested with an in-memory fake and run for real over `mv-libvirt`.
//! What is rewritten, and nothing else:
//! - in a domain: the `file` and `dir` attributes of every `<source>` element (disk images,
//!   filesystem shares of a machine's data folder), and the text of `<nvram>`, `<loader>`,
//!   `<kernel>` and `<initrd>` (a UEFI machine's variables file often sits beside its disk);
//! - in a pool: the text of `<path>` (the pool's target folder).
//!
//! Paths are compared as exact strings after XML unescaping; a path spelt differently (through a
//! symlink, with `//`) is not recognised and is reported by the planner if it lies in the old tree.

pub use mv_libvirt::ObjectKind;

/// A failure reported by the libvirt layer, with the object concerned.
#[derive(Debug, thiserror::Error)]
#[error("libvirt: cannot {action} {kind} `{name}`")]
pub struct HypervisorError {
    /// What was being done ("read", "define", "list").
    pub action: &'static str,
    /// Object kind.
    pub kind: ObjectKind,
    /// Object name (empty for a listing).
    pub name: String,
    /// The underlying error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// What the migration needs from libvirt. Implemented over `mv-libvirt` by the CLI and by an
/// in-memory fake in the tests.
pub trait Hypervisor {
    /// Names of every defined object of a kind (active or not).
    fn list(&self, kind: ObjectKind) -> Result<Vec<String>, HypervisorError>;
    /// The persistent (inactive) XML definition of an object.
    fn xml(&self, kind: ObjectKind, name: &str) -> Result<String, HypervisorError>;
    /// Whether the object is running (a domain) or started (a pool).
    fn is_active(&self, kind: ObjectKind, name: &str) -> Result<bool, HypervisorError>;
    /// Replaces the persistent definition of an object by `xml` (same name and UUID).
    fn define(&self, kind: ObjectKind, xml: &str) -> Result<(), HypervisorError>;
}

/// [`Hypervisor`] over a real libvirt connection (`mv-libvirt`).
///
/// Redefining an active pool also restarts it (stop, start: its files stay), so that the new
/// target folder is the one in use; libvirt would otherwise keep the old one until the next start.
#[derive(Debug)]
pub struct Libvirt(pub mv_libvirt::Connection);

impl Libvirt {
    /// Opens `uri` (`qemu:///system`, `test:///default`, ...).
    pub fn open(uri: &str) -> Result<Libvirt, mv_libvirt::LibvirtError> {
        mv_libvirt::Connection::open(uri).map(Libvirt)
    }
}

fn wrap<'a>(
    action: &'static str,
    kind: ObjectKind,
    name: &'a str,
) -> impl FnOnce(mv_libvirt::LibvirtError) -> HypervisorError + 'a {
    move |e| HypervisorError {
        action,
        kind,
        name: name.to_string(),
        source: Box::new(e),
    }
}

impl Hypervisor for Libvirt {
    fn list(&self, kind: ObjectKind) -> Result<Vec<String>, HypervisorError> {
        self.0.list(kind).map_err(wrap("list", kind, ""))
    }
    fn xml(&self, kind: ObjectKind, name: &str) -> Result<String, HypervisorError> {
        self.0
            .xml(kind, name, true)
            .map_err(wrap("read", kind, name))
    }
    fn is_active(&self, kind: ObjectKind, name: &str) -> Result<bool, HypervisorError> {
        self.0
            .is_active(kind, name)
            .map_err(wrap("inspect", kind, name))
    }
    fn define(&self, kind: ObjectKind, xml: &str) -> Result<(), HypervisorError> {
        let name = self.0.define(kind, xml).map_err(wrap("define", kind, ""))?;
        if kind == ObjectKind::Pool && self.is_active(kind, &name)? {
            self.0.stop_pool(&name).map_err(wrap("stop", kind, &name))?;
            self.0
                .start_pool(&name)
                .map_err(wrap("start", kind, &name))?;
        }
        Ok(())
    }
}

/// One path replacement inside an object's XML.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rewrite {
    /// The path as it is now.
    pub old: String,
    /// The path it becomes.
    pub new: String,
}

/// Every path the XML of an object refers to and that [`rewrite`] would consider.
pub(crate) fn paths(kind: ObjectKind, xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    visit(kind, xml, &mut |p| {
        out.push(p.to_string());
        None
    });
    out
}

/// Rewrites the paths of `xml` through `map` (which returns the new path, or `None` to keep it).
/// Returns the new XML and the replacements made (empty when nothing matched).
pub(crate) fn rewrite(
    kind: ObjectKind,
    xml: &str,
    map: &dyn Fn(&str) -> Option<String>,
) -> (String, Vec<Rewrite>) {
    let mut made = Vec::new();
    let out = visit(kind, xml, &mut |p| {
        let new = map(p)?;
        made.push(Rewrite {
            old: p.to_string(),
            new: new.clone(),
        });
        Some(new)
    });
    (out, made)
}

/// Applies a list of exact replacements (as recorded in a plan).
pub(crate) fn apply_rewrites(
    kind: ObjectKind,
    xml: &str,
    rewrites: &[Rewrite],
) -> (String, Vec<Rewrite>) {
    rewrite(kind, xml, &|p| {
        rewrites.iter().find(|r| r.old == p).map(|r| r.new.clone())
    })
}

/// Walks the path-bearing places of `xml`, calling `f` with each (unescaped) path; where `f`
/// returns a new path, it replaces the old one (escaped) in the returned text.
fn visit(kind: ObjectKind, xml: &str, f: &mut dyn FnMut(&str) -> Option<String>) -> String {
    let mut out = visit_attrs_and_paths(kind, xml, f);
    if kind == ObjectKind::Domain {
        // Firmware and boot files (a UEFI machine's NVRAM usually lives beside its disk).
        for name in DOMAIN_PATH_ELEMENTS {
            out = rewrite_element_text(&out, name, f);
        }
    }
    out
}

/// Domain elements whose text is a path.
const DOMAIN_PATH_ELEMENTS: [&str; 4] = ["nvram", "loader", "kernel", "initrd"];

/// Rewrites the text of every `<name ...>text</name>` element.
fn rewrite_element_text(
    xml: &str,
    name: &str,
    f: &mut dyn FnMut(&str) -> Option<String>,
) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    let close = format!("</{name}>");
    while let Some(pos) = find_tag(rest, name) {
        let Some(end) = rest[pos..].find('>') else {
            break;
        };
        let text_start = pos + end + 1;
        out.push_str(&rest[..text_start]);
        rest = &rest[text_start..];
        if xml_self_closing(&out) {
            continue;
        }
        let Some(len) = rest.find(&close) else {
            break;
        };
        let raw = &rest[..len];
        // Only plain text: an element holding other elements is left alone.
        if !raw.contains('<') {
            match f(&mv_core::xml::unescape(raw)) {
                Some(new) => out.push_str(&escape(&new)),
                None => out.push_str(raw),
            }
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    out
}

/// Whether the start tag just copied to `out` ends with `/>`.
fn xml_self_closing(out: &str) -> bool {
    out.ends_with("/>")
}

fn visit_attrs_and_paths(
    kind: ObjectKind,
    xml: &str,
    f: &mut dyn FnMut(&str) -> Option<String>,
) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    match kind {
        ObjectKind::Domain => {
            while let Some(pos) = find_tag(rest, "source") {
                let Some(end) = rest[pos..].find('>') else {
                    break;
                };
                let tag_end = pos + end;
                out.push_str(&rest[..pos]);
                out.push_str(&rewrite_attrs(&rest[pos..tag_end], &["file", "dir"], f));
                rest = &rest[tag_end..];
            }
        }
        ObjectKind::Pool => {
            while let Some(pos) = rest.find("<path>") {
                let start = pos + "<path>".len();
                let Some(len) = rest[start..].find("</path>") else {
                    break;
                };
                out.push_str(&rest[..start]);
                let raw = &rest[start..start + len];
                match f(&mv_core::xml::unescape(raw)) {
                    Some(new) => out.push_str(&escape(&new)),
                    None => out.push_str(raw),
                }
                rest = &rest[start + len..];
            }
        }
        // Secrets, filters and networks hold no path into a tree: nothing to rewrite.
        ObjectKind::Secret | ObjectKind::NwFilter | ObjectKind::Network => {}
    }
    out.push_str(rest);
    out
}

/// Position of the next `<name` start tag (followed by whitespace, `/` or `>`).
fn find_tag(s: &str, name: &str) -> Option<usize> {
    let needle = format!("<{name}");
    let mut from = 0;
    while let Some(p) = s[from..].find(&needle) {
        let at = from + p;
        let next = s[at + needle.len()..].chars().next();
        if matches!(next, Some(c) if c.is_whitespace() || c == '/' || c == '>') {
            return Some(at);
        }
        from = at + needle.len();
    }
    None
}

/// Rewrites the values of the named attributes inside one start tag's text.
fn rewrite_attrs(tag: &str, names: &[&str], f: &mut dyn FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(tag.len());
    let mut rest = tag;
    loop {
        // Next attribute among `names`, preceded by whitespace and followed by `=` and a quote.
        let mut best: Option<(usize, usize, char)> = None;
        for n in names {
            let mut from = 0;
            while let Some(p) = rest[from..].find(n) {
                let at = from + p;
                let before_ok = at > 0 && rest[..at].ends_with(char::is_whitespace);
                let after = &rest[at + n.len()..];
                let trimmed = after.trim_start();
                if before_ok && trimmed.starts_with('=') {
                    let val = trimmed[1..].trim_start();
                    if let Some(q) = val.chars().next().filter(|c| *c == '\'' || *c == '"') {
                        let vstart = tag_offset(rest, val) + 1;
                        if best.is_none_or(|(b, _, _)| vstart < b) {
                            best = Some((vstart, at, q));
                        }
                        break;
                    }
                }
                from = at + n.len();
            }
        }
        let Some((vstart, _, q)) = best else {
            break;
        };
        let Some(vlen) = rest[vstart..].find(q) else {
            break;
        };
        out.push_str(&rest[..vstart]);
        let raw = &rest[vstart..vstart + vlen];
        match f(&mv_core::xml::unescape(raw)) {
            Some(new) => out.push_str(&escape(&new)),
            None => out.push_str(raw),
        }
        rest = &rest[vstart + vlen..];
    }
    out.push_str(rest);
    out
}

/// Byte offset of the sub-slice `inner` inside `outer`.
fn tag_offset(outer: &str, inner: &str) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DOMAIN: &str = "<domain type='kvm'>\n  <name>t</name>\n  <devices>\n    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='/old/Machines/Star.qcow2'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n    <filesystem type='mount'>\n      <source dir=\"/old/Data/Star &amp; Co\"/>\n    </filesystem>\n    <serial type='pty'><source path='/dev/pts/1'/></serial>\n  </devices>\n</domain>\n";

    #[test]
    fn finds_domain_paths() {
        assert_eq!(
            paths(ObjectKind::Domain, DOMAIN),
            vec!["/old/Machines/Star.qcow2", "/old/Data/Star & Co"]
        );
    }

    #[test]
    fn rewrites_domain_paths_and_nothing_else() {
        let (out, made) = rewrite(ObjectKind::Domain, DOMAIN, &|p| {
            p.strip_prefix("/old/")
                .map(|r| format!("/new/{}", r.to_lowercase()))
        });
        assert_eq!(made.len(), 2);
        assert!(out.contains("<source file='/new/machines/star.qcow2'/>"));
        assert!(out.contains("<source dir=\"/new/data/star &amp; co\"/>"));
        assert!(out.contains("<source path='/dev/pts/1'/>"));
        // Undoing with the recorded rewrites gives the original text back.
        let back: Vec<Rewrite> = made
            .iter()
            .map(|r| Rewrite {
                old: r.new.clone(),
                new: r.old.clone(),
            })
            .collect();
        assert_eq!(apply_rewrites(ObjectKind::Domain, &out, &back).0, DOMAIN);
    }

    #[test]
    fn rewrites_firmware_paths() {
        let xml = "<domain><os><loader readonly='yes' type='pflash'>/usr/share/OVMF/CODE.fd</loader><nvram template='/usr/share/OVMF/VARS.fd'>/old/Machines/C/VARS.fd</nvram><kernel/></os></domain>";
        assert_eq!(
            paths(ObjectKind::Domain, xml),
            // In pass order: `<source>` attributes, then nvram, loader, kernel, initrd.
            vec!["/old/Machines/C/VARS.fd", "/usr/share/OVMF/CODE.fd"]
        );
        let (out, made) = rewrite(ObjectKind::Domain, xml, &|p| {
            (p == "/old/Machines/C/VARS.fd").then(|| "/new/machines/c/VARS.fd".to_string())
        });
        assert_eq!(made.len(), 1);
        assert!(out.contains("'/usr/share/OVMF/VARS.fd'>/new/machines/c/VARS.fd</nvram>"));
        assert!(out.contains("<kernel/>"));
    }

    #[test]
    fn rewrites_pool_target() {
        let pool =
            "<pool type='dir'><name>p</name><target><path>/old/Machines</path></target></pool>";
        assert_eq!(paths(ObjectKind::Pool, pool), vec!["/old/Machines"]);
        let (out, made) = rewrite(ObjectKind::Pool, pool, &|p| {
            (p == "/old/Machines").then(|| "/new/storage".to_string())
        });
        assert_eq!(made.len(), 1);
        assert!(out.contains("<path>/new/storage</path>"));
    }

    proptest! {
        /// Arbitrary text never panics the scanner, and an identity map changes nothing.
        #[test]
        fn identity_map_is_identity(s in "\\PC{0,200}") {
            let (out, made) = rewrite(ObjectKind::Domain, &s, &|_| None);
            prop_assert_eq!(&out, &s);
            prop_assert!(made.is_empty());
            let (out, _) = rewrite(ObjectKind::Pool, &s, &|_| None);
            prop_assert_eq!(&out, &s);
        }

        #[test]
        fn escaping_round_trips(p in "/[a-zA-Z0-9 &'\"<>/._-]{1,40}") {
            let xml = format!("<source file='{}'/>", escape(&p));
            prop_assert_eq!(paths(ObjectKind::Domain, &xml), vec![p]);
        }
    }
}
