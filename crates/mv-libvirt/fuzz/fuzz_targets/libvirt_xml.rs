//! Fuzzes every reader of untrusted XML in mv-libvirt (backup files given to `restore`, rendered
//! files given to `up`, `qemu-img info` output). They must return errors, never panic. The same
//! entry points run under proptest in `src/xml.rs`, so the suite covers them without nightly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mv_libvirt::fuzz as xml;
use mv_libvirt::ObjectKind;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = xml::identify(s);
    let _ = xml::normalise(ObjectKind::Pool, s);
    let _ = xml::is_subset(s, s);
    let _ = xml::inject_metadata(s, "<m:rendered xmlns:m=\"x\" sha256=\"0\"/>");
    let _ = xml::with_uuid(s, "u");
    let _ = xml::rendered_hash(s);
    let _ = xml::referenced_networks(s);
    let _ = xml::parse_info(std::path::Path::new("fuzz"), s);
});
