//! What the repository itself promises: everything the code and the docs cite is in the
//! repository (specs and the design under `docs/`), and nothing points a reader outside it.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every text file the project ships or reads: sources, docs, scripts, configs.
fn text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" || name == "golden" || name == "vectors" {
            continue;
        }
        if p.is_dir() {
            text_files(&p, out);
        } else if ["rs", "md", "sh", "toml", "j2"]
            .iter()
            .any(|ext| p.extension().is_some_and(|e| e == *ext))
        {
            out.push(p);
        }
    }
}

fn project_files() -> Vec<(PathBuf, String)> {
    let root = workspace_root();
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for d in [
        "crates", "docs", "scripts", "bench", "contrib", "fuzz", ".ci",
    ] {
        text_files(&root.join(d), &mut files);
    }
    files
        .into_iter()
        .filter_map(|p| Some((p.clone(), std::fs::read_to_string(&p).ok()?)))
        .collect()
}

/// `docs/…` paths as the text cites them (trailing punctuation trimmed).
fn cited_docs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("docs/") {
        let before = rest[..i].chars().last();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c)))
            .unwrap_or(tail.len());
        let cited = tail[..end].trim_end_matches(['.', '/']);
        // `crates/x/docs/…` or a URL is someone else's folder, not ours.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || "/_-".contains(c))
            && cited.contains('.')
        {
            out.push(cited.to_string());
        }
        rest = &tail[end.max(5)..];
    }
    out
}

#[test]
fn every_cited_doc_is_in_the_repository() {
    let root = workspace_root();
    let mut missing = Vec::new();
    let mut checked = 0;
    for (path, text) in project_files() {
        for cited in cited_docs(&text) {
            checked += 1;
            if !root.join(&cited).exists() {
                missing.push(format!("{} cites {cited}", path.display()));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} citations found: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "cited but not in the repository:\n{}",
        missing.join("\n")
    );
}

#[test]
fn nothing_points_outside_the_repository() {
    // The design and the specs the code follows are copied into docs/; a reader of the repository
    // never needs the development machine's shared folder. (Strings split so this file passes.)
    let outside = [
        concat!("../", "shared"),
        concat!("shared/", "spec"),
        concat!("DESIGN", ".md"),
    ];
    let mut found = Vec::new();
    for (path, text) in project_files() {
        for (n, line) in text.lines().enumerate() {
            if outside.iter().any(|o| line.contains(o)) {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "cite docs/design.md or docs/spec/ instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_citation_scan_finds_what_it_should() {
    assert_eq!(
        cited_docs("see docs/spec/scramble-v1.md, and `docs/cli.md`."),
        ["docs/spec/scramble-v1.md", "docs/cli.md"]
    );
    assert!(cited_docs("crates/x/docs/y.md and https://a/docs/b.md").is_empty());
}
