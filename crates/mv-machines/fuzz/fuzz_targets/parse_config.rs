//! Fuzzes the `multiverse.toml` reader and, when it accepts, the TOML writer and the render plan:
//! no input may panic, and an accepted topology must round-trip through `to_toml`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mv_machines::fuzz_entry(data);
});
