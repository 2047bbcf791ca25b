//! The call handler: picks the function by the routing rules, answers the
//! caller's mistakes (400, 404, 413) itself, and hands the rest to the
//! forwarder.
//!
//! Rules 1 and 2 (path and `X-Function` header) are decided from the
//! request head alone, so they take a fast path straight from the
//! connection, with the body never boxed or buffered. Everything else goes
//! through the axum router: the gateway's own routes, then the fallback
//! here for rules 3 (Alexa, which needs the body) and 4.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use http::StatusCode;

use crate::app::AppState;
use crate::forward::{CallBody, Stream};
use crate::reply::text;
use crate::routing::{self, NO_ROUTE, RouteError};

/// Rules 1 and 2: the function and the path it sees, when the request head
/// names one. `None`: not a call by path or header.
pub fn route_by_head<B>(
    request: &http::Request<B>,
) -> Option<Result<(String, String), RouteError>> {
    let uri = request.uri();
    if let Some(routed) = routing::by_path(uri.path(), uri.query()) {
        return Some(routed);
    }
    if routing::is_system_path(uri.path()) {
        return None;
    }
    let header = request.headers().get("x-function")?;
    let forwarded = uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    Some(routing::by_header(header.as_bytes()).map(|name| (name, forwarded)))
}

/// The fast path for calls routed by path or header.
pub async fn call_by_head<B: Into<Stream>>(
    state: Arc<AppState>,
    peer: SocketAddr,
    request: http::Request<B>,
    routed: Result<(String, String), RouteError>,
) -> Response {
    match routed {
        Ok((name, forwarded)) => {
            let (parts, body) = request.into_parts();
            call(
                &state,
                &name,
                parts,
                CallBody::Stream(body.into()),
                &forwarded,
                peer,
            )
            .await
        }
        Err(e) => text(StatusCode::BAD_REQUEST, e),
    }
}

/// The router's fallback: rule 3 (an Alexa skill request, read up to
/// `max_alexa_body`), else rule 4. Unknown system paths are 404.
pub async fn fallback(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let path = request.uri().path();
    if routing::is_system_path(path) {
        return text(StatusCode::NOT_FOUND, format_args!("not found: {path}"));
    }
    let (parts, body) = request.into_parts();
    let forwarded = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let limits = state.body_limits(state.config.max_alexa_body, "max_alexa_body");
    // Held (and counted against max_buffered) until the call is answered.
    let buffered = match crate::body::read(body, limits).await {
        Ok(buffered) => buffered,
        Err(mut answer) => {
            if answer.status() == StatusCode::PAYLOAD_TOO_LARGE {
                answer = text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format_args!(
                        "request body is larger than max_alexa_body ({} bytes); {NO_ROUTE}",
                        state.config.max_alexa_body
                    ),
                );
            }
            return answer;
        }
    };
    let bytes = buffered.bytes.clone();
    match routing::alexa_intent(&bytes) {
        Some(intent) if faas_common::is_valid_function_name(&intent) => {
            call(
                &state,
                &intent,
                parts,
                CallBody::Buffered(bytes),
                &forwarded,
                peer,
            )
            .await
        }
        Some(intent) => text(StatusCode::BAD_REQUEST, RouteError::InvalidName(intent)),
        None => text(StatusCode::BAD_REQUEST, NO_ROUTE),
    }
}

async fn call(
    state: &AppState,
    name: &str,
    parts: http::request::Parts,
    body: CallBody,
    path: &str,
    peer: SocketAddr,
) -> Response {
    match state.table.get(name) {
        Some(function) => {
            state
                .forwarder
                .forward(&function, parts, body, path, peer)
                .await
        }
        None => text(
            StatusCode::NOT_FOUND,
            format_args!("function {name:?} not found"),
        ),
    }
}
