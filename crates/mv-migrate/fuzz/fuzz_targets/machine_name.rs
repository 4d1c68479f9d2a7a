//! Folder names of an old tree (any bytes) to machine names: never panics, always valid.
#![no_main]
use std::os::unix::ffi::OsStrExt;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let name = std::ffi::OsStr::from_bytes(data);
    if let Some(m) = mv_migrate::fuzz::machine_name(name) {
        assert!(mv_core_check(m.as_str()));
    }
    let _ = mv_migrate::fuzz::lower_folder(name);
    let _ = mv_migrate::fuzz::qcow2_stem(name);
});

fn mv_core_check(s: &str) -> bool {
    !s.is_empty()
        && s.contains('.')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}
