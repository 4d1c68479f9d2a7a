//! Whole exported files for the spec's test root, pinned as golden files: a library upgrade that
//! changes one byte of an OpenSSH key file or of the armored OpenPGP key (packet layout,
//! subpackets, preferences) fails here, not on a user's machine. The spec's own vectors only pin
//! public keys and fingerprints. `UPDATE_GOLDEN=1` rewrites them (review the diff!).
#![allow(clippy::unwrap_used)]

use mv_core::IdentityName;
use mv_identity::export::{self, Kind};
use mv_identity::Root;

#[test]
fn exported_files_of_the_spec_root_are_stable() {
    let root = Root::from_bytes(core::array::from_fn(|i| i as u8));
    let name = IdentityName::parse("universe.router.multiverse").unwrap();
    let dir = std::path::Path::new("/nonexistent");
    let files = export::plan(&root, &name, &Kind::ALL, dir, None).unwrap();
    let mut checked = 0;
    for f in &files {
        let file_name = f.path.file_name().unwrap().to_string_lossy().into_owned();
        // Binary files are pinned as hex.
        let text = match std::str::from_utf8(f.contents.expose()) {
            Ok(t) => t.to_string(),
            Err(_) => format!("{}\n", hex::encode(f.contents.expose())),
        };
        mv_testkit::golden(
            format!("crates/mv-identity/tests/golden/universe.router.multiverse/{file_name}"),
            &text,
        );
        checked += 1;
    }
    assert_eq!(checked, 15);
}
