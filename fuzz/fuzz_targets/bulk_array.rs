//! `/bulk-function` bodies: the element-by-element reader never keeps more
//! than `max` elements and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(elements) = gateway::queue::api::bulk_elements(data, 16) {
        assert!(elements.len() <= 16);
    }
});
