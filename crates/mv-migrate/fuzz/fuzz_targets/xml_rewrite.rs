//! The libvirt XML path scanner on arbitrary text: never panics, and an identity map is identity.
#![no_main]
use mv_migrate::fuzz::rewrite;
use mv_migrate::ObjectKind;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for kind in [ObjectKind::Domain, ObjectKind::Pool] {
        let (out, made) = rewrite(kind, &text, &|_| None);
        assert_eq!(out, text);
        assert!(made.is_empty());
        let _ = rewrite(kind, &text, &|p| Some(format!("/new{p}")));
    }
});
