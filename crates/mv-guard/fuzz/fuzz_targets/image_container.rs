//! Fuzz target: PNG decoding and the hidden-container reveal on arbitrary bytes (cheap KDF). The
//! same entry point runs in mv-guard's property tests (`container::tests::fuzz_entry_never_panics`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mv_guard::container::reveal_bytes_for_fuzzing(data);
});
