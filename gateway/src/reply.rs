//! The gateway's own answers: one line of plain text with the status that
//! fits. Making any message one line is `faas_common::message`'s job.

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

/// Marks an answer the gateway made itself (not a function's), in the
/// response's extensions: never sent, so no function can forge it. The
/// gRPC endpoint answers these as gRPC status codes.
#[derive(Debug, Clone, Copy)]
pub struct GatewayAnswer;

/// A one-line, plain-text answer from the gateway itself.
pub fn text(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    let mut response = Response::new(Body::from(format!("{message}\n")));
    *response.status_mut() = status;
    response.extensions_mut().insert(GatewayAnswer);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

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
