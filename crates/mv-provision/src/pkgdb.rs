//! Which packages a target already has, read from its package database files.
//!
//! Debian: `/var/lib/dpkg/status` (RFC 822-style stanzas; a package counts when its `Status` is
//! `install ok installed`). Alpine: `/lib/apk/db/installed` (`P:name` lines, one block per package).
//! Reading the files rather than running `dpkg-query`/`apk info` works on any mounted root, even one
//! whose package manager cannot run here (Alpine).
//!
//! Both parsers take untrusted bytes and never panic (fuzzed and property-tested).

use std::collections::BTreeSet;

/// Installed packages in a dpkg status file.
pub(crate) fn dpkg_installed(status: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for stanza in status.split("\n\n") {
        let mut name = None;
        let mut installed = false;
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package:") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Status:") {
                installed =
                    v.split_whitespace().collect::<Vec<_>>() == ["install", "ok", "installed"];
            }
        }
        if let (Some(n), true) = (name, installed) {
            if !n.is_empty() {
                out.insert(n);
            }
        }
    }
    out
}

/// Installed packages in an apk `installed` database.
pub(crate) fn apk_installed(db: &str) -> BTreeSet<String> {
    db.lines()
        .filter_map(|l| l.strip_prefix("P:"))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dpkg_status() {
        let s = "Package: tor\nStatus: install ok installed\nVersion: 1\n\nPackage: gone\nStatus: deinstall ok config-files\n\nPackage: nftables\nStatus: install ok installed\n";
        let got: Vec<_> = dpkg_installed(s).into_iter().collect();
        assert_eq!(got, ["nftables", "tor"]);
    }

    #[test]
    fn apk_db() {
        let s = "C:Q1abc\nP:musl\nV:1.2\n\nC:Q1def\nP:tor\nV:0.4\n";
        let got: Vec<_> = apk_installed(s).into_iter().collect();
        assert_eq!(got, ["musl", "tor"]);
    }

    proptest! {
        #[test]
        fn never_panic(s in "(([A-Z][a-z]*: ?[a-z ]*|P:[a-z]*)?\n){0,12}") {
            let _ = dpkg_installed(&s);
            let _ = apk_installed(&s);
        }
    }
}
