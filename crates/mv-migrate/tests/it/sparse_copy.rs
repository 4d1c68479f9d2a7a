//! A copy across filesystems keeps holes and every byte: a 64 MiB sparse file with data at both
//! ends moves from the root filesystem to /dev/shm taking (almost) no space, with the same SHA-256.
#![allow(clippy::unwrap_used)]

use mv_migrate::sha256_file;
use mv_migrate::{Migration, Op};
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;

#[test]
fn cross_filesystem_copy_keeps_holes_and_bytes() {
    let disk = tempfile::tempdir().unwrap();
    let shm = tempfile::tempdir_in("/dev/shm").expect("this test needs /dev/shm (a tmpfs)");
    let old = disk.path().join("old");
    let dir = old.join("Machines/Big");
    fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.raw");
    let mut f = fs::File::create(&big).unwrap();
    f.write_all(b"head").unwrap();
    f.seek(SeekFrom::Start(64 << 20)).unwrap();
    f.write_all(b"tail").unwrap();
    drop(f);
    let sum = sha256_file(&big).unwrap();
    let new = shm.path().join("new");

    let plan = mv_migrate::plan(&old, &new, None).unwrap();
    assert!(plan
        .ops
        .iter()
        .any(|o| matches!(o, Op::Move { cross_fs: true, .. })));
    let mig = Migration::at(&new);
    mig.start(&plan).unwrap();
    mig.run(None).unwrap();

    let moved = new.join("machines/big.multiverse/big.raw");
    let m = fs::metadata(&moved).unwrap();
    assert_eq!(m.len(), (64 << 20) + 4);
    assert!(
        m.blocks() * 512 < 64 << 10,
        "holes kept: {} blocks",
        m.blocks()
    );
    assert_eq!(sha256_file(&moved).unwrap(), sum);
    assert!(
        !big.exists(),
        "the source is removed after the verified copy"
    );

    Migration::at(&new).undo(None).unwrap();
    assert_eq!(sha256_file(&big).unwrap(), sum);
    assert!(fs::metadata(&big).unwrap().blocks() * 512 < 64 << 10);
    assert!(!new.exists(), "the root the migration created is gone");
}
