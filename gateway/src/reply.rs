//! The gateway's own answers: one line of plain text with the status that
//! fits, and the helpers that make any message one line (an error and its
//! causes, an engine's multi-line refusal).

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

/// A one-line, plain-text answer from the gateway itself.
pub fn text(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    let mut response = Response::new(Body::from(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Any text as one line: engines sometimes answer with several.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its causes on one line, each said once ("client error
/// (Connect): tcp connect error: Connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    one_line(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Chain(&'static str, Option<Box<Chain>>);

    impl std::fmt::Display for Chain {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Chain {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|c| c as _)
        }
    }

    #[test]
    fn messages_become_one_line_and_causes_are_said_once() {
        assert_eq!(one_line("a\n  b\tc\n"), "a b c");
        let e = Chain(
            "client error (Connect)",
            Some(Box::new(Chain(
                "Connect",
                Some(Box::new(Chain("connection\nrefused", None))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "client error (Connect): connection refused"
        );
    }

    #[test]
    fn answers_are_plain_text_lines() {
        let r = text(StatusCode::NOT_FOUND, "function \"x\" not found");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
    }
}
