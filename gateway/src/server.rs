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
use bytes::Bytes;
use faas_common::serve::Limits;
use faas_common::shutdown::Shutdown;
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::app::AppState;
use crate::forward::Stream;
use crate::{invoke, routing};

/// What every front end (HTTP, CoAP, gRPC) hands its requests to: one
/// place for credentials, routing, the async queue, metrics and scaling,
/// whatever protocol a call arrived by.
#[derive(Clone)]
pub struct Front {
    pub state: Arc<AppState>,
    router: Router,
    /// The gateway's own runtime: requests for the router (the API, and
    /// calls it routes) run there, not on a serving thread, so what they
    /// start outlives their connection.
    main: tokio::runtime::Handle,
    /// tinyFaaS's call listener: `/{name}…` means `/function/{name}…`.
    calls_at_root: bool,
}

impl Front {
    pub fn new(state: Arc<AppState>) -> Front {
        let router = crate::routes::router(state.clone());
        Front {
            state,
            router,
            main: tokio::runtime::Handle::current(),
            calls_at_root: false,
        }
    }

    /// The same front for a listener that only calls, tinyFaaS's way:
    /// every path `/{name}…` is `/function/{name}…` (so nothing else, the
    /// API included, is reachable there).
    pub fn calls_at_root(&self) -> Front {
        Front {
            calls_at_root: true,
            ..self.clone()
        }
    }

    /// One request as if it had come over HTTP from `peer`.
    pub async fn call<B>(&self, peer: SocketAddr, mut request: hyper::Request<B>) -> Response
    where
        B: Into<Stream> + http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        if self.calls_at_root {
            let target = match request.uri().path_and_query() {
                Some(pq) => format!("/function{}", pq.as_str()),
                None => "/function/".to_owned(),
            };
            match target.parse() {
                Ok(uri) => *request.uri_mut() = uri,
                Err(_) => {
                    return crate::reply::text(
                        http::StatusCode::BAD_REQUEST,
                        format_args!("cannot call {target:?}"),
                    );
                }
            }
        }
        handle(self, peer, request)
            .await
            .unwrap_or_else(|never| match never {})
    }
}

/// Serves until `shutdown`, then waits for open connections to finish
/// their in-flight requests. Calls routed by path or header go straight to
/// the forwarder; everything else through the router.
pub async fn serve(listener: TcpListener, front: Front, shutdown: Shutdown) {
    let limits = Limits {
        header_read: front.state.config.read_timeout,
        write: None,
        max_connections: Some(front.state.config.max_connections as usize),
        // tinyFaaS's call listener (opt-in) is served on the main runtime:
        // its own threads would share the main listener's per-thread pools.
        threads: if front.calls_at_root {
            1
        } else {
            front.state.config.serve_threads as usize
        },
    };
    let make = move |peer| {
        let front = front.clone();
        service_fn(move |request: hyper::Request<Incoming>| {
            let front = front.clone();
            async move { Ok::<_, Infallible>(front.call(peer, request).await) }
        })
    };
    faas_common::serve::serve(listener, limits, make, shutdown).await;
}

/// tinyFaaS's clients ask for an async call with a header of any value:
/// such a call to `/function/{name}…` is queued, exactly as if it had been
/// posted to `/async-function/{name}…` (202 and `X-Call-Id`).
pub const X_TINYFAAS_ASYNC: &str = "x-tinyfaas-async";

fn as_async_when_asked<B>(request: &mut hyper::Request<B>) {
    if !request.headers().contains_key(X_TINYFAAS_ASYNC) {
        return;
    }
    let Some(rest) = request.uri().path().strip_prefix("/function/") else {
        return;
    };
    let target = match request.uri().query() {
        Some(query) => format!("/async-function/{rest}?{query}"),
        None => format!("/async-function/{rest}"),
    };
    if let Ok(uri) = target.parse() {
        *request.uri_mut() = uri;
        request.headers_mut().remove(X_TINYFAAS_ASYNC);
    }
}

/// OpenFaaS's callers name a function in a namespace as `name.namespace`
/// (`faas-cli invoke -n …`): with our one namespace, and no function
/// deployed under the longer name, the call goes to `name`.
fn without_namespace<B>(state: &AppState, request: &mut hyper::Request<B>) {
    let path = request.uri().path();
    let Some((prefix, rest)) = ["/function/", "/async-function/"]
        .into_iter()
        .find_map(|prefix| path.strip_prefix(prefix).map(|rest| (prefix, rest)))
    else {
        return;
    };
    let (name, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Some(short) = faas_common::api::strip_namespace(name) else {
        return;
    };
    if state.table.get(name).is_some() {
        return;
    }
    let target = match request.uri().query() {
        Some(query) => format!("{prefix}{short}{tail}?{query}"),
        None => format!("{prefix}{short}{tail}"),
    };
    if let Ok(uri) = target.parse() {
        *request.uri_mut() = uri;
    }
}

/// One request: the gateway's credentials are checked (calls, with
/// `auth_invoke`) and never passed on, then it goes to the forwarder (on
/// the thread serving its connection) or the router (on the gateway's own
/// runtime).
async fn handle<B>(
    front: &Front,
    peer: SocketAddr,
    mut request: hyper::Request<B>,
) -> Result<Response, Infallible>
where
    B: Into<Stream> + http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let state = &front.state;
    // tinyFaaS's management routes (with --tinyfaas) are the API's, not
    // calls: their credentials stay for the router to check.
    let management =
        state.config.tinyfaas && crate::tinyfaas::is_management_path(request.uri().path());
    let call = !management && routing::is_call_path(request.uri().path());
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
    without_namespace(state, &mut request);
    as_async_when_asked(&mut request);
    if let Some(routed) = invoke::route_by_head(&request).filter(|_| !management) {
        return Ok(invoke::call_by_head(state.clone(), peer, request, routed).await);
    }
    request
        .extensions_mut()
        .insert(ConnectInfo::<SocketAddr>(peer));
    let routed = front.router.clone().oneshot(request);
    if faas_common::serve::thread_index().is_none() {
        return Ok(routed.await.unwrap_or_else(|never| match never {}));
    }
    // Aborted if the caller goes away, as it would be on this thread.
    let mut task = AbortOnDrop(front.main.spawn(routed));
    Ok(match (&mut task.0).await {
        Ok(answer) => answer.unwrap_or_else(|never| match never {}),
        Err(e) if e.is_panic() => {
            tracing::error!(error = %e, "a request handler panicked");
            crate::reply::text(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "the gateway failed to handle this request",
            )
        }
        Err(_) => crate::reply::text(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "the gateway is stopping",
        ),
    })
}

/// A task on the main runtime that ends with the request waiting for it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
