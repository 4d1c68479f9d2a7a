//! The fuzz target's entry point under proptest, so the suite runs it without nightly: arbitrary
//! bytes and colon-file-shaped text through every target-file parser; none may panic.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        mv_provision::fuzz_entry(&data);
    }

    #[test]
    fn shaped_text(text in "((root|user|users|[a-z]{1,4})(:[!*$6x0-9a-z/]{0,8}){0,9}\n|Package: [a-z]+\nStatus: install ok installed\n\n|P:[a-z]+\n|\\[Install\\]\nWantedBy=[a-z.]+\n){0,12}") {
        mv_provision::fuzz_entry(text.as_bytes());
    }
}
