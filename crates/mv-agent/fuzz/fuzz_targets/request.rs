//! Fuzzes the agent's request router: any method, target and body bytes must give an action or
//! an error, never a panic. The input is split like a request line: `METHOD TARGET\nBODY`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (line, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let line = String::from_utf8_lossy(line);
    let (method, target) = line.split_once(' ').unwrap_or((&line, "/"));
    let _ = mv_agent::parse_request(method, target, body);
});
