//! Accepting connections: HTTP/1.1 with keep-alive, TCP_NODELAY, a header
//! read timeout, at most `max_connections` open at once (more wait in the
//! kernel's backlog until one closes), the caller's address in each
//! request's extensions, and a graceful stop that lets in-flight calls
//! finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::{AppState, invoke, routing};

/// Serves until `stop` turns true, then waits for open connections to
/// finish their in-flight requests. Calls routed by path or header go
/// straight to the forwarder; everything else through `router`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    router: Router,
    read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(read_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(state.config.max_connections as usize));
    let mut full = false;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                full = false;
                slot
            }
            Err(_) => {
                if !full {
                    tracing::warn!(
                        max_connections = state.config.max_connections,
                        "connection limit reached: new connections wait until one closes"
                    );
                    full = true;
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                    _ = stopped(&mut stop) => break,
                }
            }
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let state = state.clone();
                let service = service_fn(move |mut request: hyper::Request<Incoming>| {
                    let router = router.clone();
                    let state = state.clone();
                    async move {
                        if state.config.auth_invoke
                            && state.credentials.is_some()
                            && routing::is_call_path(request.uri().path())
                        {
                            if !crate::auth::allowed(&state, request.headers()) {
                                return Ok(crate::auth::unauthorized());
                            }
                            // The credentials were for the gateway: no
                            // function sees them, no queue stores them.
                            request.headers_mut().remove(http::header::AUTHORIZATION);
                        } else if request.headers().contains_key(http::header::AUTHORIZATION)
                            && routing::is_call_path(request.uri().path())
                            && state.credentials.as_ref().is_some_and(|c| c.admits(request.headers()))
                        {
                            // The admin's own credentials sent along with a
                            // call (a client that sends them everywhere):
                            // still not the function's business.
                            request.headers_mut().remove(http::header::AUTHORIZATION);
                        }
                        if let Some(routed) = invoke::route_by_head(&request) {
                            return Ok::<_, Infallible>(invoke::call_by_head(state, peer, request, routed).await);
                        }
                        request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                        Ok(router.oneshot(request).await.unwrap_or_else(|never| match never {}))
                    }
                });
                let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
