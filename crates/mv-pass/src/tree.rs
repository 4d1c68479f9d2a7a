//! `pass ls` and `pass find` output: entry names drawn as tree(1) draws them for pass, byte
//! for byte, without colours.
//!
//! What this is not: it does not read the locale (the caller picks a [`TreeStyle`], as tree
//! does from `LC_ALL`, `LC_CTYPE`, `LANG`) nor list the store ([`crate::Store::list`]).

use crate::EntryName;
use std::collections::BTreeMap;
use std::io::Write;

/// tree(1)'s line drawing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeStyle {
    /// Box-drawing characters (a UTF-8 locale).
    Unicode,
    /// `|--` and `` `-- `` (any other locale).
    Ascii,
}

struct Glyphs {
    mid: &'static str,
    last: &'static str,
    bar: &'static str,
    gap: &'static str,
}

#[derive(Default)]
struct Node(BTreeMap<String, Node>);

/// Writes `title`, then `names` as a tree; with `strip`, that folder prefix is removed from
/// each name (names outside it are left out).
pub fn write_tree(
    out: &mut impl Write,
    title: &str,
    names: &[EntryName],
    strip: Option<&str>,
    style: TreeStyle,
) -> std::io::Result<()> {
    let mut root = Node::default();
    for n in names {
        let s = match strip {
            Some(p) => n
                .as_str()
                .strip_prefix(p)
                .map(|x| x.trim_start_matches('/')),
            None => Some(n.as_str()),
        };
        let Some(s) = s else { continue };
        let mut cur = &mut root;
        for part in s.split('/') {
            cur = cur.0.entry(part.to_string()).or_default();
        }
    }
    // tree(1), which pass uses, pads the bar with two no-break spaces on UTF-8.
    let glyphs = match style {
        TreeStyle::Unicode => Glyphs {
            mid: "├── ",
            last: "└── ",
            bar: "│\u{a0}\u{a0} ",
            gap: "    ",
        },
        TreeStyle::Ascii => Glyphs {
            mid: "|-- ",
            last: "`-- ",
            bar: "|   ",
            gap: "    ",
        },
    };
    fn walk(node: &Node, prefix: &str, g: &Glyphs, out: &mut impl Write) -> std::io::Result<()> {
        let n = node.0.len();
        for (i, (name, child)) in node.0.iter().enumerate() {
            let last = i + 1 == n;
            writeln!(out, "{prefix}{}{name}", if last { g.last } else { g.mid })?;
            let deeper = format!("{prefix}{}", if last { g.gap } else { g.bar });
            walk(child, &deeper, g, out)?;
        }
        Ok(())
    }
    writeln!(out, "{title}")?;
    walk(&root, "", &glyphs, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_as_tree_does() {
        let names: Vec<EntryName> = ["a/x", "a/y", "b"]
            .iter()
            .map(|s| EntryName::parse(s).unwrap())
            .collect();
        let mut out = Vec::new();
        write_tree(&mut out, "T", &names, None, TreeStyle::Ascii).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "T\n|-- a\n|   |-- x\n|   `-- y\n`-- b\n"
        );
        let mut out = Vec::new();
        write_tree(&mut out, "a", &names, Some("a"), TreeStyle::Unicode).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a\n├── x\n└── y\n");
    }
}
