//! Fuzz target: v3 onion address parsing; a parsed address must encode back to itself.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(public) = mv_identity::parse_onion_address(text) {
            assert_eq!(mv_identity::onion_address(&public), text);
        }
    }
});
