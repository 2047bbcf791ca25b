//! Shared by the faas gateway, watchdog and CLI: value parsers, function
//! names and, with the `stack` feature, the stack file format.

#[cfg(feature = "api")]
pub mod api;
pub mod parse;
#[cfg(feature = "stack")]
pub mod stack;
pub mod time;

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
