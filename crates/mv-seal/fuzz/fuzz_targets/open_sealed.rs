//! Fuzz target: the sealed-container parser (and, for cheap parameters, the AEAD open) on
//! arbitrary bytes. The same entry point runs in mv-seal's property tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mv_seal::fuzz_open(data);
});
