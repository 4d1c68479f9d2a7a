//! Fuzzes the parsers of a target's own files (untrusted bytes from a machine's disk): passwd,
//! group and shadow, dpkg's status, apk's installed database, systemd unit [Install] sections,
//! then plans accounts on top of them. The same entry point runs in the test suite as a proptest
//! (`tests/fuzz_entry.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mv_provision::fuzz_entry(data);
});
