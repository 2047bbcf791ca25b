//! The value parsers behind every flag, variable and label: durations,
//! sizes, CPUs, booleans.
#![no_main]

use faas_common::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse::parse_duration(text);
        let _ = parse::parse_bytes(text);
        let _ = parse::parse_cpus(text);
        let _ = parse::parse_bool(text);
    }
});
