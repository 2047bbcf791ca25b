//! The async routes: `POST /async-function/{name}[/{rest}]`,
//! `POST /bulk-function/{name}`, and the execution records under
//! `/system/executions` (behind basic auth with the rest of `/system`).

// Helpers return the early answer itself as their error, as handlers do.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use faas_common::api::{Execution, ExecutionStatus};
use http::header::{
    CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderMap, HeaderValue,
    X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderName, StatusCode};
use serde::Deserialize;

use super::store::{ListFilter, NewCall, StoreError, StoredRequest};
use crate::app::AppState;
use crate::forward::X_CALL_ID;
use crate::reply::text;
use crate::routing::RouteError;

const X_CALLBACK_URL: &str = "x-callback-url";

/// `/async-function/…` and `/bulk-function/…` (open like calls, unless
/// `auth_invoke`).
pub fn call_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/async-function/{name}", post(enqueue))
        .route("/async-function/{name}/", post(enqueue))
        .route("/async-function/{name}/{*rest}", post(enqueue))
        .route("/bulk-function/{name}", post(bulk))
}

/// `/system/executions…` (the caller adds auth).
pub fn system_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/system/executions", get(list))
        .route("/system/executions/bulk", post(bulk_get))
        .route("/system/executions/{id}", get(get_one))
        .route("/system/executions/{id}/output", get(output))
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    text(StatusCode::SERVICE_UNAVAILABLE, e)
}

/// The function named in the path, known to the gateway.
fn known_function(state: &AppState, name: &str) -> Result<(), Response> {
    if !faas_common::is_valid_function_name(name) {
        return Err(text(
            StatusCode::BAD_REQUEST,
            RouteError::InvalidName(name.to_owned()),
        ));
    }
    if state.table.get(name).is_none() {
        return Err(text(
            StatusCode::NOT_FOUND,
            format_args!("function {name:?} not found"),
        ));
    }
    Ok(())
}

/// Room in the queue for `calls` more (507 beyond `max_queued`): a flood
/// of async calls fills a bounded queue, never the disk.
fn room_for(state: &AppState, calls: u64) -> Result<(), Response> {
    let max = state.config.max_queued;
    let queued = state.queue.store.queued();
    if queued + calls > max {
        let mut answer = text(
            StatusCode::INSUFFICIENT_STORAGE,
            format_args!(
                "the async queue is full: {queued} calls wait and max_queued is {max}; try again later"
            ),
        );
        answer
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        return Err(answer);
    }
    Ok(())
}

/// The body, up to `max_async_body` (413 beyond), within `body_timeout`
/// and the shared `max_buffered`.
async fn read_body(state: &AppState, body: Body) -> Result<crate::body::Buffered, Response> {
    let limits = state.body_limits(state.config.max_async_body, "max_async_body");
    crate::body::read(body, limits).await
}

/// `X-Callback-Url`, when given: an absolute http URL to an address the
/// operator allows (see [`super::callback`]).
fn callback_url(state: &AppState, headers: &HeaderMap) -> Result<Option<String>, Response> {
    let Some(value) = headers.get(X_CALLBACK_URL) else {
        return Ok(None);
    };
    let url = String::from_utf8_lossy(value.as_bytes()).trim().to_owned();
    match state.queue.callbacks.check_url(&url) {
        Ok(()) => Ok(Some(url)),
        Err(message) => Err(text(StatusCode::BAD_REQUEST, message)),
    }
}

/// The headers kept with a call: all but hop-by-hop ones and the
/// callback URL (it is the gateway's business).
fn kept_headers(headers: &HeaderMap, id: &str) -> Vec<(String, String)> {
    let mut kept: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| {
            !is_hop_by_hop(name) && *name != X_CALL_ID && name.as_str() != X_CALLBACK_URL
        })
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    kept.push((X_CALL_ID.as_str().to_owned(), id.to_owned()));
    kept
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// The caller's `X-Call-Id` when it is usable and unused, else a new one.
/// The caller's `X-Call-Id` when it is usable and unused, else a new one.
/// An id already taken is refused (409), never silently replaced: a
/// caller that chose an id is told when it is not theirs, so nobody can
/// slip their record under an id another client reads.
fn call_id(state: &AppState, headers: &HeaderMap) -> Result<String, Response> {
    let Some(given) = headers.get(&X_CALL_ID) else {
        return Ok(uuid::Uuid::new_v4().to_string());
    };
    let given = String::from_utf8_lossy(given.as_bytes()).trim().to_owned();
    if given.is_empty()
        || given.len() > 128
        || !given
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(text(
            StatusCode::BAD_REQUEST,
            format_args!(
                "X-Call-Id {given:?} is not usable as an execution id: 1-128 letters, digits, '-', '_' or '.' (or send none)"
            ),
        ));
    }
    match state.queue.store.contains(&given) {
        Ok(false) => Ok(given),
        Ok(true) => Err(id_taken(&given)),
        Err(e) => Err(unavailable(e)),
    }
}

fn id_taken(id: &str) -> Response {
    text(
        StatusCode::CONFLICT,
        format_args!(
            "X-Call-Id {id:?} is already the id of another execution: send another, or none and the gateway makes one"
        ),
    )
}

fn accepted(body: serde_json::Value, id: Option<&str>) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Some(id) = id
        && let Ok(v) = HeaderValue::from_str(id)
    {
        response.headers_mut().insert(X_CALL_ID, v);
    }
    response
}

async fn enqueue(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let rest = path.strip_prefix("/async-function/").unwrap_or("");
    let (name, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if let Err(answer) = known_function(&state, name) {
        return answer;
    }
    let callback = match callback_url(&state, &parts.headers) {
        Ok(c) => c,
        Err(answer) => return answer,
    };
    if let Err(answer) = room_for(&state, 1) {
        return answer;
    }
    let buffered = match read_body(&state, body).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let body = buffered.bytes.clone();
    let forwarded = match parts.uri.query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_owned(),
    };
    let id = match call_id(&state, &parts.headers) {
        Ok(id) => id,
        Err(answer) => return answer,
    };
    let call = |id: &str| NewCall {
        id: id.to_owned(),
        function: name.to_owned(),
        request: StoredRequest {
            method: parts.method.as_str().to_owned(),
            path: forwarded.clone(),
            headers: kept_headers(&parts.headers, id),
            body: body.clone(),
        },
        callback_url: callback.clone(),
    };
    match state.queue.store.enqueue(vec![call(&id)]).await {
        // A concurrent call given the same X-Call-Id was stored first.
        Err(StoreError::Taken(_)) => id_taken(&id),
        Ok(_) => {
            state.metrics.async_enqueued(started.elapsed());
            state.queue.notify();
            accepted(
                serde_json::json!({"id": id, "function": name, "status": "queued"}),
                Some(&id),
            )
        }
        Err(e) => unavailable(e),
    }
}

/// How many calls of a bulk request go into one transaction: a large
/// request never becomes one huge write.
const BULK_BATCH: usize = 256;

/// One element of a bulk array: its body and whether it was a string.
pub struct Element {
    pub body: Bytes,
    pub text: bool,
}

/// Why a bulk body was refused.
pub enum BulkError {
    NotArray,
    Malformed(String),
    TooMany(u64),
}

/// The array's elements, read one at a time (no tree of the whole array
/// is built), refusing the array at its `max + 1`th element. A string's
/// body is its text, anything else its JSON.
pub fn bulk_elements(body: &[u8], max: u64) -> Result<Vec<Element>, BulkError> {
    use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
    use serde_json::value::RawValue;

    struct Elements {
        max: u64,
    }
    impl<'de> Visitor<'de> for Elements {
        type Value = Vec<Element>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Element>, A::Error> {
            let mut out = Vec::new();
            while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                if out.len() as u64 >= self.max {
                    return Err(A::Error::custom(TOO_MANY));
                }
                let json = raw.get();
                let element = if json.starts_with('"') {
                    let s: String = serde_json::from_str(json).map_err(A::Error::custom)?;
                    Element {
                        body: Bytes::from(s),
                        text: true,
                    }
                } else {
                    // The element's JSON text as sent (already validated):
                    // no tree is built, whatever its size.
                    Element {
                        body: Bytes::copy_from_slice(json.as_bytes()),
                        text: false,
                    }
                };
                out.push(element);
            }
            Ok(out)
        }
    }
    const TOO_MANY: &str = "\0too many elements";

    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
        // Valid JSON but not an array, or not JSON at all.
        return match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => Err(BulkError::NotArray),
            Err(e) => Err(BulkError::Malformed(e.to_string())),
        };
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let elements = de
        .deserialize_seq(Elements { max })
        .and_then(|elements| de.end().map(|()| elements));
    match elements {
        Ok(elements) => Ok(elements),
        Err(e) if e.to_string().starts_with(TOO_MANY) => Err(BulkError::TooMany(max)),
        Err(e) => Err(BulkError::Malformed(e.to_string())),
    }
}

async fn bulk(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let started = Instant::now();
    if let Err(answer) = known_function(&state, &name) {
        return answer;
    }
    let (parts, body) = request.into_parts();
    let callback = match callback_url(&state, &parts.headers) {
        Ok(c) => c,
        Err(answer) => return answer,
    };
    let buffered = match read_body(&state, body).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let max = state.config.max_bulk_items;
    let items = match bulk_elements(&buffered.bytes, max) {
        Ok(items) => items,
        Err(BulkError::NotArray) => {
            return text(
                StatusCode::BAD_REQUEST,
                "expected a JSON array: each element becomes one call",
            );
        }
        Err(BulkError::Malformed(e)) => {
            return text(
                StatusCode::BAD_REQUEST,
                format_args!("malformed JSON array: {e}"),
            );
        }
        Err(BulkError::TooMany(max)) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format_args!(
                    "the array has more than max_bulk_items ({max}) elements: send it in parts"
                ),
            );
        }
    };
    drop(buffered);
    if items.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "the array is empty: nothing to run",
        );
    }
    if let Err(answer) = room_for(&state, items.len() as u64) {
        return answer;
    }
    // A failing store refuses the request before any of it is written.
    if let Err(e) = state.queue.store.health() {
        return unavailable(format_args!("the async queue cannot write: {e}"));
    }
    let content_type = parts.headers.get(CONTENT_TYPE).cloned();
    let text_type = content_type
        .as_ref()
        .filter(|v| !v.as_bytes().starts_with(b"application/json"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain; charset=utf-8")
        .to_owned();
    let total = items.len();
    let mut ids = Vec::with_capacity(total);
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let calls: Vec<NewCall> = items
            .by_ref()
            .take(BULK_BATCH)
            .map(|item| {
                let id = uuid::Uuid::new_v4().to_string();
                ids.push(id.clone());
                let ct = if item.text {
                    text_type.clone()
                } else {
                    "application/json".to_owned()
                };
                NewCall {
                    id: id.clone(),
                    function: name.clone(),
                    request: StoredRequest {
                        method: "POST".into(),
                        path: "/".into(),
                        headers: vec![
                            (X_CALL_ID.as_str().to_owned(), id),
                            (CONTENT_TYPE.as_str().to_owned(), ct),
                        ],
                        body: item.body,
                    },
                    callback_url: callback.clone(),
                }
            })
            .collect();
        let batch = calls.len();
        if let Err(e) = state.queue.store.enqueue(calls).await {
            let queued = ids.len() - batch;
            if queued > 0 {
                state.queue.notify();
            }
            return unavailable(format_args!(
                "{queued} of {total} calls were queued before the queue failed ({e}); GET /system/executions?function={name} lists them"
            ));
        }
    }
    state.metrics.async_enqueued(started.elapsed());
    state.queue.notify();
    accepted(serde_json::json!({"function": name, "ids": ids}), None)
}

async fn get_one(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.queue.store.get(&id) {
        Ok(Some(e)) => Json(e).into_response(),
        Ok(None) => text(
            StatusCode::NOT_FOUND,
            format_args!("execution {id:?} not found"),
        ),
        Err(e) => unavailable(e),
    }
}

async fn output(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.queue.store.get(&id) {
        Ok(None) => {
            return text(
                StatusCode::NOT_FOUND,
                format_args!("execution {id:?} not found"),
            );
        }
        Ok(Some(e)) if !e.status.is_final() => {
            return text(
                StatusCode::NOT_FOUND,
                format_args!(
                    "execution {id:?} has no output yet: it is {}",
                    e.status.as_str()
                ),
            );
        }
        Err(e) => return unavailable(e),
        Ok(Some(_)) => {}
    }
    match state.queue.store.output(&id) {
        Ok(Some(o)) => {
            let mut response = Response::new(Body::from(o.body));
            let headers = response.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&o.content_type) {
                headers.insert(CONTENT_TYPE, v);
            }
            // A function's output is served from the API's own origin: never
            // sniffed, and active content (HTML, SVG, XML, scripts) only as a
            // download, so it cannot run as the API's page.
            headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            if is_active(&o.content_type) {
                headers.insert(
                    CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment; filename=\"output\""),
                );
                headers.insert(
                    CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("default-src 'none'; sandbox"),
                );
            }
            if o.truncated {
                response
                    .headers_mut()
                    .insert("x-output-truncated", HeaderValue::from_static("true"));
            }
            response
        }
        Ok(None) => text(
            StatusCode::NOT_FOUND,
            format_args!(
                "execution {id:?} finished without an output (the function could not be reached)"
            ),
        ),
        Err(e) => unavailable(e),
    }
}

/// Content types a browser would render or run rather than show as data.
fn is_active(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.is_empty()
        || essence.contains("html")
        || essence.contains("xml")
        || essence.contains("javascript")
        || essence.contains("ecmascript")
        || essence == "application/pdf"
        || essence == "text/css"
        || essence == "multipart/x-mixed-replace"
}

#[derive(Deserialize)]
struct ListParams {
    function: Option<String>,
    status: Option<String>,
    include_completed: Option<String>,
}

async fn list(State(state): State<Arc<AppState>>, Query(params): Query<ListParams>) -> Response {
    let status = match params.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match s.parse::<ExecutionStatus>() {
            Ok(s) => Some(s),
            Err(e) => return text(StatusCode::BAD_REQUEST, e),
        },
    };
    let include_completed = match params.include_completed.as_deref() {
        None | Some("") => true,
        Some(v) => match faas_common::parse::parse_bool(v) {
            Ok(b) => b,
            Err(hint) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format_args!("include_completed {v:?}: {hint}"),
                );
            }
        },
    };
    let filter = ListFilter {
        function: params.function.filter(|f| !f.is_empty()),
        status,
        include_completed,
    };
    match state.queue.store.list(&filter) {
        Ok(records) => Json(records).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn bulk_get(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let ids: Vec<String> = match serde_json::from_slice(&body) {
        Ok(ids) => ids,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format_args!("expected a JSON array of execution ids: {e}"),
            );
        }
    };
    let mut records: Vec<Option<Execution>> = Vec::with_capacity(ids.len());
    for id in &ids {
        match state.queue.store.get(id) {
            Ok(r) => records.push(r),
            Err(e) => return unavailable(e),
        }
    }
    Json(records).into_response()
}
