//! The routing rules on arbitrary paths, queries, `X-Function` values and
//! bodies (the Alexa detection): no panic, and what is routed is valid.
#![no_main]

use gateway::routing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (text.as_ref(), None),
    };
    if let Some(Ok((name, forwarded))) = routing::by_path(path, query) {
        assert!(faas_common::is_valid_function_name(&name), "{name:?}");
        assert!(forwarded.starts_with('/'), "{forwarded:?}");
    }
    if let Ok(name) = routing::by_header(data) {
        assert!(faas_common::is_valid_function_name(&name), "{name:?}");
    }
    let _ = routing::is_system_path(path);
    let _ = routing::is_call_path(path);
    let _ = routing::alexa_intent(data);
});
