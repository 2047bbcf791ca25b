//! The HTTP side: answering `/_/health` and `/_/ready`, admitting requests
//! under `max_inflight`, dispatching to the mode, and decorating every
//! response with `X-Duration-Seconds`, `X-Served-By`, `X-Cold-Start` and
//! `X-Memory-Limit-Bytes`.
//! Connections are accepted by `faas_common::serve`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::RequestBody;
use crate::config::Mode;
use crate::response::{
    ResponseBody, X_COLD_START, X_DURATION_SECONDS, X_MEMORY_LIMIT_BYTES, X_SERVED_BY, seconds,
    text,
};
use crate::state::{InflightGuard, State};
use crate::{fork, proxy, stream};

pub async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    match request.uri().path() {
        "/_/health" => return Ok(health(&state)),
        "/_/ready" => return Ok(ready(&state)),
        _ => {}
    }
    let start = Instant::now();
    let method = request.method().clone();
    let mut response = match InflightGuard::acquire(&state) {
        None => text(
            StatusCode::TOO_MANY_REQUESTS,
            format_args!(
                "too many requests in flight (max_inflight={})",
                state.config.max_inflight
            ),
        ),
        Some(guard) => {
            let mut response = invoke(&state, request).await;
            response.body_mut().hold(guard);
            response
        }
    };
    let elapsed = start.elapsed();
    let headers = response.headers_mut();
    headers.insert(X_DURATION_SECONDS, seconds(elapsed));
    headers.insert(X_SERVED_BY, state.hostname.clone());
    if let Some(limit) = &state.memory_limit {
        headers.insert(X_MEMORY_LIMIT_BYTES, limit.clone());
    }
    state.metrics.observe(&method, response.status(), elapsed);
    Ok(response)
}

async fn invoke(state: &Arc<State>, request: Request<Incoming>) -> Response<ResponseBody> {
    let (mut parts, body) = request.into_parts();
    // A process is told the body's length (Http_Content_Length) even when
    // the request had none to declare because it had no body.
    if state.config.mode != Mode::Http
        && http_body::Body::is_end_stream(&body)
        && !parts.headers.contains_key(CONTENT_LENGTH)
    {
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    let limit = state.config.max_body_bytes;
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let (true, Some(length)) = (limit > 0, declared)
        && length > limit
    {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format_args!("request body of {length} bytes exceeds max_body_bytes ({limit} bytes)"),
        );
    }
    let body = RequestBody::new(body, limit, state.config.read_timeout);
    let cold = state.take_cold();
    let mut response = match state.config.mode {
        Mode::Fork => fork::invoke(state, &parts, body).await,
        Mode::Stream => stream::invoke(state, &parts, body).await,
        Mode::Http => proxy::invoke(state, parts, body).await,
    };
    if cold {
        response
            .headers_mut()
            .insert(X_COLD_START, HeaderValue::from_static("true"));
    }
    response
}

fn health(state: &State) -> Response<ResponseBody> {
    match state.health.check() {
        Ok(()) => text(StatusCode::OK, "OK"),
        Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, why.message()),
    }
}

fn ready(state: &State) -> Response<ResponseBody> {
    match state.health.check() {
        Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, why.message()),
        Ok(()) if state.at_capacity() => text(
            StatusCode::TOO_MANY_REQUESTS,
            format_args!("at max_inflight ({})", state.config.max_inflight),
        ),
        Ok(()) => text(StatusCode::OK, "OK"),
    }
}

pub async fn metrics(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    if request.uri().path() != "/metrics" {
        return Ok(text(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics",
        ));
    }
    let mut response = Response::new(ResponseBody::full(state.metrics.render()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
