//! Which function a call is for, by the brief's rules, in order:
//!
//! 1. `/function/{name}` and `/function/{name}/{rest…}`, any method; `/rest`
//!    and the query string are what the function sees;
//! 2. an `X-Function: {name}` header on any other non-system path;
//! 3. an Alexa skill request (JSON with `session.sessionId`,
//!    `session.application.applicationId` and `request.intent.name`),
//!    routed to the function named exactly like the intent;
//! 4. otherwise 400.
//!
//! Pure functions of the request's parts, so each rule is tested alone.

use faas_common::is_valid_function_name;

pub const NO_ROUTE: &str = "Provide an X-Function header or a valid Alexa SDK request.";

/// Paths the gateway answers itself: never routed by header or Alexa body.
/// Paths that call functions (synchronously or not): everything but the
/// gateway's own routes. `auth_invoke` guards these.
pub fn is_call_path(path: &str) -> bool {
    !is_system_path(path)
        || path.starts_with("/async-function/")
        || path.starts_with("/bulk-function/")
}

pub fn is_system_path(path: &str) -> bool {
    path == "/healthz"
        || path == "/metrics"
        || path == "/system"
        || path.starts_with("/system/")
        || path.starts_with("/async-function/")
        || path.starts_with("/bulk-function/")
}

#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    InvalidName(String),
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteError::InvalidName(name) => write!(
                f,
                "Invalid function name {name:?}: use letters, digits, '_', '.' and '-'"
            ),
        }
    }
}

/// Rule 1. `None` when the path is not under `/function/`; else the name and
/// the path-and-query to forward.
pub fn by_path(path: &str, query: Option<&str>) -> Option<Result<(String, String), RouteError>> {
    let rest = path.strip_prefix("/function/")?;
    let (name, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if !is_valid_function_name(name) {
        return Some(Err(RouteError::InvalidName(name.to_owned())));
    }
    let mut forwarded = String::with_capacity(tail.len() + query.map_or(0, |q| q.len() + 1));
    forwarded.push_str(tail);
    if let Some(q) = query {
        forwarded.push('?');
        forwarded.push_str(q);
    }
    Some(Ok((name.to_owned(), forwarded)))
}

/// Rule 2: the `X-Function` header's value.
pub fn by_header(value: &[u8]) -> Result<String, RouteError> {
    let name = std::str::from_utf8(value).unwrap_or("").trim();
    if is_valid_function_name(name) {
        Ok(name.to_owned())
    } else {
        Err(RouteError::InvalidName(
            String::from_utf8_lossy(value).into_owned(),
        ))
    }
}

/// Rule 3: the intent of an Alexa skill request, if the body is one.
pub fn alexa_intent(body: &[u8]) -> Option<String> {
    let request: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = |pointer: &str| request.pointer(pointer).and_then(|v| v.as_str());
    text("/session/sessionId")?;
    text("/session/application/applicationId")?;
    text("/request/intent/name").map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_paths_forward_the_rest_and_the_query() {
        assert_eq!(
            by_path("/function/echo", None),
            Some(Ok(("echo".into(), "/".into())))
        );
        assert_eq!(
            by_path("/function/echo/", None),
            Some(Ok(("echo".into(), "/".into())))
        );
        assert_eq!(
            by_path("/function/echo/a/b", Some("x=1&y=2")),
            Some(Ok(("echo".into(), "/a/b?x=1&y=2".into())))
        );
        assert_eq!(
            by_path("/function/echo", Some("q")),
            Some(Ok(("echo".into(), "/?q".into())))
        );
        assert_eq!(by_path("/other", None), None);
    }

    #[test]
    fn invalid_names_in_paths_are_refused() {
        for path in [
            "/function/",
            "/function//x",
            "/function/a%20b",
            "/function/a$b/x",
        ] {
            assert!(
                matches!(by_path(path, None), Some(Err(RouteError::InvalidName(_)))),
                "{path}"
            );
        }
    }

    #[test]
    fn header_names_are_validated() {
        assert_eq!(by_header(b"catservice"), Ok("catservice".into()));
        assert!(by_header(b"cat service").is_err());
        assert!(by_header(b"").is_err());
        assert!(by_header(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn alexa_requests_name_their_intent() {
        let body =
            br#"{"session":{"sessionId":"s1","application":{"applicationId":"amzn1.ask.skill.x"}},
            "request":{"type":"IntentRequest","intent":{"name":"HostnameIntent"}}}"#;
        assert_eq!(alexa_intent(body), Some("HostnameIntent".into()));
    }

    #[test]
    fn incomplete_alexa_requests_are_not_routed() {
        for body in [
            &br#"{"request":{"intent":{"name":"X"}}}"#[..],
            br#"{"session":{"sessionId":"s"},"request":{"intent":{"name":"X"}}}"#,
            br#"{"session":{"sessionId":"s","application":{"applicationId":"a"}},"request":{}}"#,
            b"not json",
            b"",
        ] {
            assert_eq!(
                alexa_intent(body),
                None,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn system_paths_are_never_routed() {
        for path in [
            "/healthz",
            "/metrics",
            "/system/functions",
            "/system",
            "/async-function/x",
        ] {
            assert!(is_system_path(path), "{path}");
        }
        for path in ["/", "/anything", "/systemd", "/function/x"] {
            assert!(!is_system_path(path), "{path}");
        }
    }
}
