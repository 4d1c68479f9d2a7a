//! Fuzzes the provision state file's parser (`mv_provision::parse_state`): the bytes of
//! `/var/lib/multiverse/provision-state.json` on a machine's disk, untrusted. It must never
//! panic, and whatever it accepts must write back to bytes it reads as the same state. The same
//! checks run in the test suite as proptests (`tests/state.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = mv_provision::parse_state(data) {
        let mut sorted = s;
        sorted.normalize();
        let again = mv_provision::parse_state(&sorted.to_bytes()).ok();
        assert_eq!(again, Some(sorted));
    }
});
