//! The journal parser on arbitrary (damaged) bytes: never panics.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = mv_migrate::fuzz::journal(std::path::Path::new("journal"), &text);
});
