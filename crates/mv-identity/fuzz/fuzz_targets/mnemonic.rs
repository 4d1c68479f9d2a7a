//! Fuzz target: recovery-word parsing (`Root::from_mnemonic`) on arbitrary text. Any input must give
//! a root or a typed error, never a panic; a parsed root must print back to words that parse to it.
//! The same entry point runs in mv-identity's property tests (`mnemonic_parser_never_panics`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(root) = mv_identity::Root::from_mnemonic(text) {
            let again = mv_identity::Root::from_mnemonic(root.mnemonic().expose());
            assert!(again.is_ok_and(|r| r == root));
        }
    }
});
