//! Every route: the gateway's own (`/healthz`, `/metrics`, `/system/*`,
//! the async and bulk call routes), then every other path as a call. Calls
//! routed by path or header never get here: `server` sends them straight
//! to the forwarder.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use faas_common::message::one_line;
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};

use crate::app::AppState;
use crate::reply::text;
use crate::{invoke, queue, system};

/// All routes: the gateway's own, then every other path as a call.
pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(system::routes(state.clone()))
        .merge(queue::api::call_routes());
    if state.config.tinyfaas {
        router = router.merge(crate::tinyfaas::routes(state.clone()));
    }
    router
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(invoke::fallback)
        .with_state(state)
}

async fn method_not_allowed(request: axum::extract::Request) -> Response {
    text(
        StatusCode::METHOD_NOT_ALLOWED,
        format_args!(
            "method {} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    if let Err(e) = state.provider.health().await {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format_args!("{} provider unavailable: {e}", state.provider.name()),
        );
    }
    // A queue that cannot write loses no call (each is refused), but the
    // gateway needs a restart (Swarm does it on this answer).
    if let Err(e) = state.queue.store.health() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format_args!("the async queue cannot write: {}", one_line(&e)),
        );
    }
    text(StatusCode::OK, "OK")
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}
