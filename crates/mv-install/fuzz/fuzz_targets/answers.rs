//! Fuzzes the answer file's reader (`Answers::parse`): any text is a value or one `FILE:LINE`
//! error whose line lies inside the text, never a panic. The same property runs under proptest in
//! `src/answers.rs`, so the suite covers it without nightly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = mv_install::Answers::parse(text, Path::new("fuzz.toml")) {
        assert!(e.line >= 1 && e.line <= text.lines().count().max(1) + 1);
    }
});
