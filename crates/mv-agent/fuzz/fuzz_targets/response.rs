//! Fuzzes the client's HTTP response parser, which reads replies from agents (and, through a
//! host agent, from guests): any bytes must parse or fail, never panic or over-allocate.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mv_agent::client::parse_response(data);
});
