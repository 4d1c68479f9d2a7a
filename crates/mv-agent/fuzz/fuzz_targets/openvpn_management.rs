//! Fuzzes the parser of OpenVPN's management answers, which the router agent reads from
//! OpenVPN's socket: any bytes, complete or not, must give a state, "more to read" or an error,
//! never a panic or an unbounded string (the same parser runs in mv-agent's property tests,
//! `stats::openvpn::tests::parse_reply_never_panics`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (eof, data) = match data.split_first() {
        Some((first, rest)) => (first & 1 == 1, rest),
        None => (false, data),
    };
    let _ = mv_agent::stats::openvpn::parse_reply(data, 1_700_000_000, eof);
});
