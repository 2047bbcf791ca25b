//! The HTTP side: accepting connections with the configured timeouts,
//! answering `/_/health` and `/_/ready`, admitting requests under
//! `max_inflight`, dispatching to the mode, and decorating every response
//! with `X-Duration-Seconds`, `X-Served-By` and `X-Cold-Start`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::{RequestBody, ResponseBody};
use crate::config::{Config, Mode};
use crate::health::Health;
use crate::io::WriteTimeout;
use crate::metrics::Metrics;
use crate::process::{Reaper, Usage};
use crate::{fork, proxy, stream};

pub const X_DURATION_SECONDS: HeaderName = HeaderName::from_static("x-duration-seconds");
pub const X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");
pub const X_COLD_START: HeaderName = HeaderName::from_static("x-cold-start");
pub const X_CPU_USER_SECONDS: HeaderName = HeaderName::from_static("x-cpu-user-seconds");
pub const X_CPU_SYSTEM_SECONDS: HeaderName = HeaderName::from_static("x-cpu-system-seconds");
pub const X_MAX_RSS_BYTES: HeaderName = HeaderName::from_static("x-max-rss-bytes");

/// Everything a request handler shares.
pub struct State {
    pub config: Config,
    pub reaper: &'static Reaper,
    pub health: Arc<Health>,
    pub metrics: Metrics,
    pub upstream: Option<proxy::Client>,
    hostname: HeaderValue,
    cold: AtomicBool,
    inflight: AtomicUsize,
}

impl State {
    pub fn new(config: Config, health: Arc<Health>, upstream: Option<proxy::Client>) -> State {
        State {
            reaper: Reaper::start(config.reaper),
            config,
            health,
            metrics: Metrics::new(),
            upstream,
            hostname: HeaderValue::from_str(&hostname())
                .unwrap_or(HeaderValue::from_static("unknown")),
            cold: AtomicBool::new(true),
            inflight: AtomicUsize::new(0),
        }
    }

    fn at_capacity(&self) -> bool {
        let max = self.config.max_inflight;
        max > 0 && self.inflight.load(Ordering::SeqCst) >= max
    }
}

/// Counts a request as in flight from admission until its response body is
/// done. Acquired only under `max_inflight`.
pub struct InflightGuard {
    state: Arc<State>,
}

impl InflightGuard {
    fn acquire(state: &Arc<State>) -> Option<InflightGuard> {
        let max = state.config.max_inflight;
        let before = state.inflight.fetch_add(1, Ordering::SeqCst);
        if max > 0 && before >= max {
            state.inflight.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        state.metrics.in_flight.inc();
        Some(InflightGuard {
            state: state.clone(),
        })
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.state.inflight.fetch_sub(1, Ordering::SeqCst);
        self.state.metrics.in_flight.dec();
    }
}

/// A one-line, plain-text answer from the watchdog itself.
pub fn text(status: StatusCode, message: impl std::fmt::Display) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Adds the child's `wait4` resource use to a response.
pub fn add_usage(response: &mut Response<ResponseBody>, usage: &Usage) {
    usage_headers(response.headers_mut(), usage);
}

/// The child's `wait4` resource use as headers (or trailers).
pub fn usage_headers(headers: &mut http::HeaderMap, usage: &Usage) {
    headers.insert(X_CPU_USER_SECONDS, seconds(usage.user));
    headers.insert(X_CPU_SYSTEM_SECONDS, seconds(usage.system));
    headers.insert(X_MAX_RSS_BYTES, HeaderValue::from(usage.max_rss_bytes));
}

fn seconds(d: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("{:.6}", d.as_secs_f64())).expect("digits are a valid header")
}

/// The function's own output: `content_type` if configured, else the
/// request's Content-Type.
pub fn output_content_type(config: &Config, request: &http::request::Parts) -> Option<HeaderValue> {
    config
        .content_type
        .clone()
        .or_else(|| request.headers.get(CONTENT_TYPE).cloned())
}

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
    let cold = state.cold.swap(false, Ordering::Relaxed);
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

/// Per-connection settings.
#[derive(Clone, Copy)]
pub struct Timeouts {
    pub read: Duration,
    pub write: Duration,
}

/// Accepts connections until `stop` turns true, then lets every open
/// connection finish its in-flight request and returns once all are closed.
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<ResponseBody>, Infallible>> + Send + 'static,
{
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.read)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors, usually: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let io = TokioIo::new(WriteTimeout::new(stream, timeouts.write));
                let handler = handler.clone();
                let connection = http.serve_connection(io, service_fn(handler));
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown".into());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
