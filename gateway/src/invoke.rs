//! The call handler: picks the function by the routing rules, answers the
//! caller's mistakes (400, 404, 413) itself, and hands the rest to the
//! forwarder.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use http::StatusCode;
use http_body_util::{BodyExt, Limited};

use crate::AppState;
use crate::forward::{CallBody, text};
use crate::routing::{self, NO_ROUTE};

pub async fn invoke(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();

    // 1. /function/{name}[/rest]
    if let Some(routed) = routing::by_path(path, parts.uri.query()) {
        return match routed {
            Ok((name, forwarded)) => {
                call(
                    &state,
                    &name,
                    parts,
                    CallBody::Stream(body),
                    &forwarded,
                    peer,
                )
                .await
            }
            Err(e) => text(StatusCode::BAD_REQUEST, e),
        };
    }
    if routing::is_system_path(path) {
        return text(StatusCode::NOT_FOUND, format_args!("not found: {path}"));
    }
    let forwarded = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| "/".into());

    // 2. X-Function
    if let Some(header) = parts.headers.get("x-function") {
        return match routing::by_header(header.as_bytes()) {
            Ok(name) => {
                call(
                    &state,
                    &name,
                    parts,
                    CallBody::Stream(body),
                    &forwarded,
                    peer,
                )
                .await
            }
            Err(e) => text(StatusCode::BAD_REQUEST, e),
        };
    }

    // 3. An Alexa skill request, read up to max_alexa_body.
    let limit = state.config.max_alexa_body;
    let bytes = match Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format_args!(
                    "request body is larger than max_alexa_body ({limit} bytes); {NO_ROUTE}"
                ),
            );
        }
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format_args!("cannot read the request body: {e}"),
            );
        }
    };
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
        Some(intent) => text(
            StatusCode::BAD_REQUEST,
            routing::RouteError::InvalidName(intent),
        ),
        // 4.
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
