//! The front door: connections are accepted by `faas_common::serve` (a
//! header read timeout, at most `max_connections` open, a graceful stop);
//! each request then has the gateway's credentials checked and removed,
//! the caller's address put in its extensions, and goes to the forwarder
//! (calls routed by path or header) or the router (everything else).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::Response;
use faas_common::serve::Limits;
use faas_common::shutdown::Shutdown;
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::app::AppState;
use crate::{invoke, routing};

/// Serves until `shutdown`, then waits for open connections to finish
/// their in-flight requests. Calls routed by path or header go straight to
/// the forwarder; everything else through `router`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    router: Router,
    shutdown: Shutdown,
) {
    let limits = Limits {
        header_read: state.config.read_timeout,
        write: None,
        max_connections: Some(state.config.max_connections as usize),
    };
    let make = move |peer| {
        let (state, router) = (state.clone(), router.clone());
        service_fn(move |request| handle(state.clone(), router.clone(), peer, request))
    };
    faas_common::serve::serve(listener, limits, make, shutdown).await;
}

/// One request: the gateway's credentials are checked (calls, with
/// `auth_invoke`) and never passed on, then it goes to the forwarder or
/// the router.
async fn handle(
    state: Arc<AppState>,
    router: Router,
    peer: SocketAddr,
    mut request: hyper::Request<Incoming>,
) -> Result<Response, Infallible> {
    let call = routing::is_call_path(request.uri().path());
    if state.config.auth_invoke && state.credentials.is_some() && call {
        if !crate::auth::allowed(state.credentials.as_deref(), request.headers()) {
            return Ok(crate::auth::unauthorized());
        }
        // The credentials were for the gateway: no function sees them, no
        // queue stores them.
        request.headers_mut().remove(http::header::AUTHORIZATION);
    } else if call
        && request.headers().contains_key(http::header::AUTHORIZATION)
        && state
            .credentials
            .as_ref()
            .is_some_and(|c| c.admits(request.headers()))
    {
        // The admin's own credentials sent along with a call (a client that
        // sends them everywhere): still not the function's business.
        request.headers_mut().remove(http::header::AUTHORIZATION);
    }
    if let Some(routed) = invoke::route_by_head(&request) {
        return Ok(invoke::call_by_head(state, peer, request, routed).await);
    }
    request
        .extensions_mut()
        .insert(ConnectInfo::<SocketAddr>(peer));
    Ok(router
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {}))
}
