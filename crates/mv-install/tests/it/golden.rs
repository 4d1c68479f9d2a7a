//! Golden files for everything the installer writes into the new system and for its partition
//! table, from a fixed answer file and fixed disk identifiers: a change to any of them shows up in
//! review. `UPDATE_GOLDEN=1` rewrites them.
#![allow(clippy::unwrap_used)]

use mv_install::golden::{disk_ids, sfdisk_script, target_files};
use mv_install::{Answers, System};

#[test]
fn target_files_and_partition_table_match_the_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(5 << 30)
        .unwrap();
    std::fs::write(dir.path().join("pass"), "correct horse battery\n").unwrap();
    std::fs::create_dir_all(dir.path().join("src/etc")).unwrap();
    std::fs::write(dir.path().join("src/etc/os-release"), "ID=debian\n").unwrap();
    let text = format!(
        "disk = \"{}\"\nsource = \"{}\"\npassphrase_file = \"{}\"\nhostname = \"lab\"\n\
         keymap = \"de\"\ntimezone = \"UTC\"\nconsole = \"ttyS0\"\nkdf_memory_kib = 8192\n",
        disk.display(),
        dir.path().join("src").display(),
        dir.path().join("pass").display()
    );
    let answers = Answers::parse(&text, std::path::Path::new("answers.toml")).unwrap();
    let checked = answers.check(&System::default()).unwrap();
    let ids = disk_ids("0123456789abcdef0123456789abcdef");
    let mut out = String::new();
    for (path, contents, mode) in target_files(&checked, &ids, true) {
        out.push_str(&format!(
            "==> /{} ({mode:04o})\n{contents}\n",
            path.display()
        ));
    }
    mv_testkit::golden("crates/mv-install/tests/golden/target-files.txt", &out);
    mv_testkit::golden(
        "crates/mv-install/tests/golden/sfdisk.txt",
        &sfdisk_script(&ids),
    );
}
