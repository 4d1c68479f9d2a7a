//! XML text: [`escape`] for a value put into a libvirt XML document (text or attribute), and
//! [`unescape`], its inverse for the five predefined entities.
//!
//! Rendered domain XML (mv-machines' templates), the seed and console devices mv-libvirt adds, and
//! the names mv-migrate reads back out of libvirt's XML all go through here, so an `&` in a path
//! is written and read the same way everywhere.
//!
//! What this is not: an XML parser. Numeric character references (`&#38;`) are left as they are
//! by [`unescape`]; callers that need a full reader use one.

/// Escapes `&`, `<`, `>`, `"` and `'` for XML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

/// Replaces the five predefined entities (`&lt;` `&gt;` `&quot;` `&apos;` `&amp;`) by their
/// characters; `&amp;` last, so `&amp;lt;` becomes `&lt;`, not `<`.
pub fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_the_five_and_nothing_else() {
        assert_eq!(
            escape(r#"a&b<c>d"e'f/g"#),
            "a&amp;b&lt;c&gt;d&quot;e&apos;f/g"
        );
        assert_eq!(unescape("&amp;lt;"), "&lt;");
        assert_eq!(unescape("&#38;"), "&#38;");
    }

    proptest! {
        #[test]
        fn unescape_inverts_escape(s in ".*") {
            prop_assert_eq!(unescape(&escape(&s)), s.clone());
            let e = escape(&s);
            prop_assert!(!e.contains('<') && !e.contains('>') && !e.contains('"') && !e.contains('\''));
        }
    }
}
