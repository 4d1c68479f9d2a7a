//! Fuzzes everything the store reads from untrusted entry files and names: the OpenPGP message
//! headers, the `otpauth://` line parser and labels, entry names, gpg.conf groups and the session
//! agent's requests (`mv_pass::fuzz_entry`).
//! Run: `cargo +nightly fuzz run entry` in crates/mv-pass/fuzz. The same entry point runs in the
//! normal test suite as a proptest (`fuzz_entry_never_panics`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mv_pass::fuzz_entry(data);
});
