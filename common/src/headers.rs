//! Header rules every proxy here follows (the gateway to functions, the
//! watchdog to its `http`-mode runner).

use http::header::{self, HeaderMap, HeaderName};

/// Removes the headers that describe one connection, not the message
/// (RFC 9110 §7.6.1), including every header any `Connection` field names
/// (a message may carry several `Connection` fields).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names settles that,
    // where removing each name would hash it.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in ALWAYS {
        headers.remove(name);
    }
    for name in ALWAYS_BY_NAME {
        headers.remove(name);
    }
}

/// The standard names that are always hop-by-hop (`Connection` may name more)…
const ALWAYS: [HeaderName; 7] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];
/// …and the two that `http` has no constant for.
const ALWAYS_BY_NAME: [&str; 2] = ["keep-alive", "proxy-connection"];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    ALWAYS.contains(name) || ALWAYS_BY_NAME.contains(&name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn connection_headers_and_every_header_they_name_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-First"),
        );
        headers.append(header::CONNECTION, HeaderValue::from_static("x-second"));
        for name in ["x-first", "x-second", "keep-alive", "te", "upgrade"] {
            headers.insert(name, HeaderValue::from_static("1"));
        }
        headers.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic eA=="),
        );
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-kept"]);
    }

    #[test]
    fn an_unreadable_connection_value_names_nothing_and_is_still_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_bytes(b"x-a\xff").unwrap(),
        );
        headers.insert("x-a", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert!(!headers.contains_key(header::CONNECTION));
        assert!(headers.contains_key("x-a"));
    }

    #[test]
    fn each_hop_by_hop_header_is_dropped_even_alone() {
        for name in [
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authenticate",
            "proxy-authorization",
            "keep-alive",
            "proxy-connection",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_static("1"));
            headers.insert("x-kept", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut headers);
            let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
            assert_eq!(left, ["x-kept"], "{name}");
        }
    }
}
