//! The provision state file's parser (`mv_provision::parse_state`), which reads bytes from a
//! machine's disk: a table of accepted and refused files, and properties (what it writes it reads
//! back; arbitrary bytes and arbitrary JSON never panic).
#![allow(clippy::unwrap_used)]

use mv_provision::{
    parse_state, ManagedFile, ManagedLink, ManagedService, State, StateError, STATE_MAX_BYTES,
    STATE_PATH, STATE_VERSION,
};
use proptest::prelude::*;

const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn file(path: &str, sha: &str) -> String {
    format!(
        r#"{{"version":1,"files":[{{"path":"{path}","sha256":"{sha}"}}],"dirs":[],"services":[]}}"#
    )
}

#[test]
fn table() {
    let cases: Vec<(String, Result<(), &str>)> = vec![
        (
            r#"{"version":1,"files":[],"dirs":[],"services":[]}"#.into(),
            Ok(()),
        ),
        (file("/etc/wireguard/wg0.key", SHA), Ok(())),
        (
            r#"{"version":1,"files":[],"dirs":["/var/lib/tor/x"],"services":[{"name":"wg-quick@wg0","links":[{"link":"/etc/systemd/system/multi-user.target.wants/wg-quick@wg0.service","to":"/lib/systemd/system/wg-quick@.service"}]}]}"#.into(),
            Ok(()),
        ),
        ("".into(), Err("is not valid")),
        ("{".into(), Err("is not valid")),
        ("[]".into(), Err("is not valid")),
        (r#"{"version":2}"#.into(), Err("is format version 2")),
        (r#"{"version":1}"#.into(), Err("is not valid")),
        (
            r#"{"version":1,"files":[],"dirs":[],"services":[],"extra":1}"#.into(),
            Err("is not valid"),
        ),
        (file("etc/x", SHA), Err("not absolute")),
        (file("/", SHA), Err("the root itself")),
        (file("/etc/../x", SHA), Err("`.` or `..`")),
        (file("/etc/./x", SHA), Err("`.` or `..`")),
        (file("/etc//x", SHA), Err("empty component")),
        (file("/etc/x/", SHA), Err("empty component")),
        (file("/etc/\\u0000", SHA), Err("NUL")),
        (
            file("/var/lib/multiverse/provision-state.json", SHA),
            Err("the state file itself"),
        ),
        (file("/etc/x", "abc"), Err("invalid sha256")),
        (file("/etc/x", &SHA.to_uppercase()), Err("invalid sha256")),
        (
            r#"{"version":1,"files":[],"dirs":["/a","/a"],"services":[]}"#.into(),
            Err("lists /a twice"),
        ),
        (
            r#"{"version":1,"files":[],"dirs":[],"services":[{"name":"a/b","links":[]}]}"#.into(),
            Err("not a service name"),
        ),
        (
            r#"{"version":1,"files":[],"dirs":[],"services":[{"name":"a","links":[{"link":"rel","to":"/x"}]}]}"#.into(),
            Err("not absolute"),
        ),
    ];
    for (text, want) in cases {
        let got = parse_state(text.as_bytes());
        match (want, got) {
            (Ok(()), Ok(_)) => {}
            (Err(needle), Err(e)) => {
                let msg = e.to_string();
                assert!(msg.contains(needle), "{text}: {msg} lacks {needle}");
            }
            (want, got) => panic!("{text}: wanted {want:?}, got {got:?}"),
        }
    }
    let big = vec![b' '; STATE_MAX_BYTES + 1];
    assert!(matches!(parse_state(&big), Err(StateError::TooLarge(_))));
}

fn path() -> impl Strategy<Value = String> {
    // A component never starts with a dot, so never is `.` or `..`.
    prop::collection::vec("[a-z0-9@_-][a-z0-9@._-]{0,11}", 1..5)
        .prop_map(|c| format!("/{}", c.join("/")))
}

fn any_state() -> impl Strategy<Value = State> {
    (
        prop::collection::btree_map(path(), "[0-9a-f]{64}", 0..6),
        prop::collection::btree_set(path(), 0..4),
        prop::collection::btree_map(
            "[a-z@-]{1,10}",
            prop::collection::btree_map(path(), path(), 0..3),
            0..4,
        ),
    )
        .prop_map(|(files, dirs, services)| State {
            version: STATE_VERSION,
            files: files
                .into_iter()
                .map(|(path, sha256)| ManagedFile { path, sha256 })
                .collect(),
            dirs: dirs.into_iter().collect(),
            services: services
                .into_iter()
                .map(|(name, links)| ManagedService {
                    name,
                    links: links
                        .into_iter()
                        .map(|(link, to)| ManagedLink { link, to })
                        .collect(),
                })
                .collect(),
        })
        .prop_filter("not the state file", |s| {
            s.files
                .iter()
                .map(|f| &f.path)
                .chain(&s.dirs)
                .all(|p| p != STATE_PATH)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// What is written is read back equal (sorted), and written again byte for byte.
    #[test]
    fn round_trip(s in any_state()) {
        let bytes = s.to_bytes();
        let back = parse_state(&bytes);
        prop_assert!(back.is_ok(), "{:?}", back);
        let back = back.unwrap();
        let mut sorted = s.clone();
        sorted.normalize();
        prop_assert_eq!(&back, &sorted);
        prop_assert_eq!(back.to_bytes(), bytes);
    }

    /// Arbitrary bytes and JSON-shaped text never panic (the fuzz target's entry, too).
    #[test]
    fn never_panics(data in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_state(&data);
        mv_provision::fuzz_entry(&data);
    }

    #[test]
    fn json_shaped_never_panics(text in r#"\{"version":[0-9]{1,3}(,"(files|dirs|services)":\[("[/a-z.]{0,6}"|\{"(path|sha256|name|links|link|to)":"[/a-f0-9.]{0,8}"\}|,)*\])*\}"#) {
        let _ = parse_state(text.as_bytes());
        mv_provision::fuzz_entry(text.as_bytes());
    }
}
