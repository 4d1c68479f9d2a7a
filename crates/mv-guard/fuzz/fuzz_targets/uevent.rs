//! Fuzz target: the kernel uevent parser, and the tracker's decision on whatever parses. The
//! parser's property test (`uevent::tests::never_panics`) runs the same entry point.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = mv_guard::Uevent::parse(data) {
        let _ = ev.product();
        let _ = ev.seqnum();
        let mut t = mv_guard::token::Tracker::new(
            mv_guard::token::TokenSpec::VidPid {
                vid: 0x1050,
                pid: 0x0407,
                serial: None,
            },
            Vec::new(),
        );
        let _ = t.on_event(&ev, std::path::Path::new("/nonexistent"));
    }
});
