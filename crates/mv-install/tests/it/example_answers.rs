//! `contrib/install/answers.toml`, the documented example answer file, parses as an answer file
//! and shows every field (set, or commented out with its value).
#![allow(clippy::unwrap_used)]

use mv_install::Answers;

const FIELDS: &[&str] = &[
    "disk",
    "source",
    "passphrase_file",
    "hostname",
    "keymap",
    "timezone",
    "token",
    "uplink",
    "passthrough",
    "topology",
    "machines",
    "words_file",
    "services",
    "kdf_memory_kib",
    "console",
    "erase",
    "[luks]",
    "pbkdf",
    "iterations",
];

#[test]
fn the_example_answer_file_parses_and_shows_every_field() {
    let path = mv_testkit::workspace_root().join("contrib/install/answers.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    Answers::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
    // With the commented-out fields set too, it still parses (no unknown names among them).
    let all: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if FIELDS.iter().any(|f| rest.starts_with(&format!("{f} = "))) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    Answers::parse(&all, &path).unwrap_or_else(|e| panic!("{e}"));
    for f in FIELDS {
        let shown = all
            .lines()
            .any(|l| l == *f || l.starts_with(&format!("{f} = ")));
        assert!(shown, "{} does not show `{f}`", path.display());
    }
}
