//! Stack files (faas-cli's YAML) as the process provider and the CLI read
//! them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = faas_common::stack::Stack::parse(text);
    }
});
