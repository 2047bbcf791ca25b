//! Shared by the faas gateway, watchdog and CLI: value parsers, function
//! names, one-line messages and, behind features, the stack file format
//! (`stack`), the API shapes (`api`), proxy header rules (`http`), the stop
//! signal (`shutdown`) and the accept loop and logging both servers use
//! (`server`), and the function templates (`templates`).

#[cfg(feature = "api")]
pub mod api;
#[cfg(feature = "http")]
pub mod headers;
#[cfg(feature = "server")]
pub mod logging;
pub mod message;
pub mod parse;
#[cfg(feature = "server")]
pub mod serve;
#[cfg(feature = "shutdown")]
pub mod shutdown;
#[cfg(feature = "stack")]
pub mod stack;
#[cfg(feature = "templates")]
pub mod templates;
pub mod time;
#[cfg(feature = "server")]
pub mod write_timeout;

/// Function names: `[a-zA-Z0-9_.-]+` (they become service names, DNS
/// labels and URL path segments).
pub fn is_valid_function_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_follow_the_brief() {
        for good in ["catservice", "HostnameIntent", "a.b-c_d", "x1"] {
            assert!(is_valid_function_name(good), "{good}");
        }
        for bad in ["", "a b", "a/b", "caf\u{e9}", "x?y", "a%2F"] {
            assert!(!is_valid_function_name(bad), "{bad}");
        }
    }
}
