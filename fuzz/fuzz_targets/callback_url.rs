//! `--callback-allow` entries and `X-Callback-Url` values: a refusal or an
//! acceptance, and never an accepted literal address the policy refuses.
#![no_main]

use gateway::queue::callback::{Allowed, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (allow, url) = text.split_once('\n').unwrap_or(("", text.as_ref()));
    let allowed: Vec<Allowed> = allow.split(',').filter_map(|a| a.parse().ok()).collect();
    let policy = Policy::new(allowed);
    if policy.check_url(url).is_ok()
        && let Ok(uri) = url.trim().parse::<http::Uri>()
        && let Some(host) = uri.host()
        && let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse()
    {
        assert!(policy.allows_ip(ip), "{url:?} accepted");
    }
});
