//! Moving a call's bytes to a replica and back: the only module that talks
//! to functions. Bodies stream both ways; hop-by-hop headers are stripped;
//! `X-Call-Id`, `X-Start-Time`, `X-Forwarded-For` and `X-Forwarded-Host` are
//! set, `X-Gateway-Duration-Seconds` answered; trailers pass through to
//! callers that take them; a replica that refuses the connection is skipped and the call
//! retried once on another, which is safe because nothing was sent.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use bytes::Bytes;
use faas_common::headers::strip_hop_by_hop;
use faas_common::message::error_chain;
use faas_common::serve::PerThread;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::functions::{Function, ReplicaGuard};
use crate::reply::text;

pub const X_CALL_ID: HeaderName = HeaderName::from_static("x-call-id");
pub const X_START_TIME: HeaderName = HeaderName::from_static("x-start-time");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// How long the gateway took from a call's arrival to its function's
/// response head (waiting for a replica, a cold start, the hop, the
/// function): the gateway's own figure beside the watchdog's
/// `X-Duration-Seconds`.
pub const X_GATEWAY_DURATION_SECONDS: HeaderName =
    HeaderName::from_static("x-gateway-duration-seconds");

/// The request body as the upstream client sees it.
pub enum ForwardBody {
    /// Already in memory (an Alexa request): can be sent any number of times.
    Full(Option<Bytes>),
    /// The caller's stream, sent once (no other replica to retry on).
    Direct(Stream),
    /// The caller's stream, taken from the shared slot on the first poll:
    /// while it is still in the slot, nothing has been sent and a retry may
    /// take it instead.
    Lazy {
        slot: Arc<Mutex<Option<Stream>>>,
        taken: Option<Stream>,
    },
}

/// A streaming request body: straight from the connection (the fast
/// path), or already boxed (the router's path).
pub enum Stream {
    Incoming(Incoming),
    Boxed(Body),
}

impl Stream {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self {
            Stream::Incoming(body) => {
                http_body::Body::poll_frame(Pin::new(body), cx).map_err(BoxError::from)
            }
            Stream::Boxed(body) => {
                http_body::Body::poll_frame(Pin::new(body), cx).map_err(BoxError::from)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Stream::Incoming(body) => http_body::Body::size_hint(body),
            Stream::Boxed(body) => http_body::Body::size_hint(body),
        }
    }
}

impl From<Incoming> for Stream {
    fn from(body: Incoming) -> Stream {
        Stream::Incoming(body)
    }
}

impl From<Body> for Stream {
    fn from(body: Body) -> Stream {
        Stream::Boxed(body)
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl ForwardBody {
    pub fn lazy(slot: Arc<Mutex<Option<Stream>>>) -> ForwardBody {
        ForwardBody::Lazy { slot, taken: None }
    }
}

impl http_body::Body for ForwardBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut *self {
            ForwardBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ForwardBody::Direct(stream) => stream.poll_frame(cx),
            ForwardBody::Lazy { slot, taken } => {
                if taken.is_none() {
                    *taken = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                }
                match taken {
                    Some(body) => body.poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ForwardBody::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            ForwardBody::Direct(Stream::Incoming(body)) => http_body::Body::is_end_stream(body),
            ForwardBody::Direct(Stream::Boxed(body)) => http_body::Body::is_end_stream(body),
            ForwardBody::Lazy { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ForwardBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ForwardBody::Direct(stream) => stream.size_hint(),
            ForwardBody::Lazy { slot, taken } => match taken {
                Some(body) => body.size_hint(),
                None => slot
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(Stream::size_hint)
                    .unwrap_or_default(),
            },
        }
    }
}

/// What the handler hands over: the body, streaming or in memory.
pub enum CallBody {
    Stream(Stream),
    Buffered(Bytes),
}

/// Keeps the call counted (replica in-flight, the function's in-flight
/// gauge and load) until the response body has been sent.
struct Tracked {
    inner: hyper::body::Incoming,
    _replica: ReplicaGuard,
    _inflight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A call in flight: counted in the function's gauge and in the load the
/// autoscaler reads, from its arrival (waiting for a replica included)
/// until its response body ends.
struct InFlight(Arc<Function>);

impl InFlight {
    fn new(function: &Arc<Function>, now: Instant) -> InFlight {
        function.metrics.inflight.inc();
        function.load.begin(now);
        InFlight(function.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.metrics.inflight.dec();
        self.0.load.end(Instant::now());
    }
}

#[derive(Clone)]
pub struct Forwarder {
    /// A pool per serving thread: a replica's kept-alive connection is
    /// driven by the thread whose calls use it.
    clients: PerThread<Client<HttpConnector, ForwardBody>>,
    upstream_timeout: Duration,
    replica_wait: Duration,
    cold_wait: Duration,
}

impl Forwarder {
    /// `replica_wait`: how long a call waits for a replica to appear;
    /// `cold_wait`: how long while its function starts from zero.
    pub fn new(
        upstream_timeout: Duration,
        replica_wait: Duration,
        cold_wait: Duration,
    ) -> Forwarder {
        Forwarder::on_threads(upstream_timeout, replica_wait, cold_wait, 1)
    }

    /// The same, for calls made on `threads` serving threads.
    pub fn on_threads(
        upstream_timeout: Duration,
        replica_wait: Duration,
        cold_wait: Duration,
        threads: usize,
    ) -> Forwarder {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5).min(upstream_timeout)));
        let clients = PerThread::new(threads, || {
            Client::builder(TokioExecutor::new())
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .build(connector.clone())
        });
        Forwarder {
            clients,
            upstream_timeout,
            replica_wait,
            cold_wait,
        }
    }

    /// Forwards a call to one of `function`'s replicas; `path` is the
    /// path-and-query the function sees; `peer` the caller's address.
    pub async fn forward(
        &self,
        function: &Arc<Function>,
        parts: Parts,
        body: CallBody,
        path: &str,
        peer: SocketAddr,
    ) -> Response<Body> {
        let started = Instant::now();
        let metrics = &function.metrics;
        metrics.started.inc();
        let inflight = InFlight::new(function, started);
        let Parts {
            method,
            mut headers,
            ..
        } = parts;
        // TE is hop-by-hop, but a caller that takes trailers gets the
        // function's (a stream-mode watchdog's resource figures) passed on.
        let trailers = accepts_trailers(&headers);
        let call_id = prepare_headers(&mut headers, peer);
        if trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        let call = Call {
            method,
            headers,
            body,
            path,
            trailers,
        };
        let mut response = match self.attempt(function, call, inflight).await {
            Ok(response) => response,
            Err(e) => text(e.status(), e),
        };
        let elapsed = started.elapsed();
        metrics.observe(response.status(), elapsed);
        let headers = response.headers_mut();
        headers.insert(X_CALL_ID, call_id);
        headers.insert(X_GATEWAY_DURATION_SECONDS, seconds_header(elapsed));
        response
    }

    /// Sends the call to a replica, and once more to another if the first
    /// refused the connection (nothing was sent, so that is safe).
    async fn attempt(
        &self,
        function: &Arc<Function>,
        call: Call<'_>,
        inflight: InFlight,
    ) -> Result<Response<Body>, ForwardError> {
        let Call {
            method,
            headers,
            body,
            path,
            trailers,
        } = call;
        let mut headers = Some(headers);
        let mut pending = match body {
            CallBody::Stream(stream) => Pending::Stream(Some(stream)),
            CallBody::Buffered(bytes) => Pending::Buffered(bytes),
        };
        let mut refused: Vec<SocketAddr> = Vec::new();
        let mut last_error = String::new();
        loop {
            // After a refusal, too, wait for a replica: during a rolling
            // update the refusing one may be the only one until its
            // successor is ready.
            let replica = match function.pick(&refused) {
                Some(replica) => replica,
                None => {
                    // A function that cannot start is refused at once.
                    if let Some(reason) = function.problem() {
                        return Err(ForwardError::CannotStart {
                            function: function.name.clone(),
                            reason,
                        });
                    }
                    function
                        .pick_or_wait(&refused, self.replica_wait, self.cold_wait)
                        .await
                        .map_err(|waited| {
                            ForwardError::no_replica(
                                &function.name,
                                waited,
                                !refused.is_empty(),
                                &last_error,
                            )
                        })?
                }
            };
            let addr = replica.replica().addr;
            let uri = target_uri(replica.replica().authority.clone(), path)?;
            // A retry needs the request again: keep a way back to it for
            // the first attempt.
            let may_retry = refused.is_empty();
            let mut request = Request::new(pending.body(may_retry));
            *request.method_mut() = method.clone();
            *request.uri_mut() = uri;
            *request.headers_mut() = if may_retry {
                headers.clone().unwrap_or_default()
            } else {
                headers.take().unwrap_or_default()
            };
            let sent =
                tokio::time::timeout(self.upstream_timeout, self.clients.get().request(request))
                    .await;
            let e = match sent {
                Ok(Ok(upstream)) => {
                    let (mut parts, incoming) = upstream.into_parts();
                    let declared: Vec<HeaderValue> = if trailers {
                        parts
                            .headers
                            .get_all(header::TRAILER)
                            .iter()
                            .cloned()
                            .collect()
                    } else {
                        Vec::new()
                    };
                    strip_hop_by_hop(&mut parts.headers);
                    // hyper sends only the trailers the head declares.
                    for value in declared {
                        parts.headers.append(header::TRAILER, value);
                    }
                    // Only the gateway itself may ask a client for credentials.
                    parts.headers.remove(crate::auth::AUTH_REQUIRED);
                    let body = Body::new(Tracked {
                        inner: incoming,
                        _replica: replica,
                        _inflight: inflight,
                    });
                    return Ok(Response::from_parts(parts, body));
                }
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(ForwardError::TimedOut {
                        function: function.name.clone(),
                        limit: self.upstream_timeout,
                    });
                }
            };
            let cause = error_chain(&e);
            if e.is_connect() && may_retry && pending.untouched() {
                tracing::warn!(function = %function.name, replica = %addr, error = %cause, "replica refused the connection; retrying on another");
                last_error = cause;
                refused.push(addr);
                continue;
            }
            tracing::warn!(function = %function.name, replica = %addr, error = %cause, "call failed");
            let function = function.name.clone();
            return Err(if e.is_connect() {
                ForwardError::Unreachable { function, cause }
            } else {
                ForwardError::Failed { function, cause }
            });
        }
    }
}

/// A call's request, taken apart for (possibly) two attempts.
struct Call<'a> {
    method: http::Method,
    headers: HeaderMap,
    body: CallBody,
    /// The path-and-query the function sees.
    path: &'a str,
    /// Whether the caller takes trailers (`TE: trailers`).
    trailers: bool,
}

/// Whether a request's `TE` names `trailers`.
fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("trailers")
        })
}

/// Why a call got no answer from its function; each knows its status.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error(
        "function {function:?} is scaled to zero and no replica became ready within {}s (scale_from_zero_wait)",
        waited.as_secs_f64()
    )]
    Cold { function: String, waited: Duration },
    #[error("function {function:?} has no ready replica (waited {}s)", waited.as_secs_f64())]
    NoReplica { function: String, waited: Duration },
    #[error("function {function:?} cannot start: {reason}")]
    CannotStart { function: String, reason: String },
    #[error("function {function:?} is unreachable: {cause}")]
    Unreachable { function: String, cause: String },
    #[error("function {function:?} failed: {cause}")]
    Failed { function: String, cause: String },
    #[error(
        "function {function:?} did not answer within upstream_timeout ({}s)",
        limit.as_secs_f64()
    )]
    TimedOut { function: String, limit: Duration },
    #[error("cannot forward path {path:?}: {cause}")]
    BadPath { path: String, cause: String },
}

impl ForwardError {
    /// No replica to send to: cold, none ready, or (after a refusal) the
    /// one that refused was all there was.
    fn no_replica(
        function: &str,
        waited: crate::functions::balance::Waited,
        after_refusal: bool,
        last_error: &str,
    ) -> ForwardError {
        let function = function.to_owned();
        if after_refusal {
            ForwardError::Unreachable {
                function,
                cause: last_error.to_owned(),
            }
        } else if waited.cold {
            ForwardError::Cold {
                function,
                waited: waited.waited,
            }
        } else {
            ForwardError::NoReplica {
                function,
                waited: waited.waited,
            }
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ForwardError::Cold { .. }
            | ForwardError::NoReplica { .. }
            | ForwardError::CannotStart { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ForwardError::Unreachable { .. } | ForwardError::Failed { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ForwardError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
            ForwardError::BadPath { .. } => StatusCode::BAD_REQUEST,
        }
    }
}

/// The replica's URI for `path`.
fn target_uri(authority: http::uri::Authority, path: &str) -> Result<Uri, ForwardError> {
    Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| ForwardError::BadPath {
            path: path.to_owned(),
            cause: e.to_string(),
        })
}

/// The request body between attempts.
enum Pending {
    /// Not yet handed to any attempt.
    Stream(Option<Stream>),
    /// Handed over through a slot: still there means nothing was sent.
    Slot(Arc<Mutex<Option<Stream>>>),
    Buffered(Bytes),
}

impl Pending {
    /// The body for the next attempt; `keep` keeps a way back to it.
    fn body(&mut self, keep: bool) -> ForwardBody {
        match self {
            Pending::Stream(stream) if keep => {
                let slot = Arc::new(Mutex::new(stream.take()));
                *self = Pending::Slot(slot.clone());
                ForwardBody::lazy(slot)
            }
            Pending::Stream(stream) => match stream.take() {
                Some(stream) => ForwardBody::Direct(stream),
                None => ForwardBody::Full(None),
            },
            Pending::Slot(slot) => ForwardBody::lazy(slot.clone()),
            Pending::Buffered(bytes) => ForwardBody::Full(Some(bytes.clone())),
        }
    }

    /// Whether a retry may send the body again (nothing of it was sent).
    fn untouched(&self) -> bool {
        match self {
            Pending::Stream(stream) => stream.is_some(),
            Pending::Slot(slot) => slot.lock().unwrap_or_else(|e| e.into_inner()).is_some(),
            Pending::Buffered(_) => true,
        }
    }
}

/// Strips hop-by-hop headers and sets the forwarding ones. Returns the call
/// id (the caller's, or a new one).
fn prepare_headers(headers: &mut HeaderMap, peer: SocketAddr) -> HeaderValue {
    strip_hop_by_hop(headers);
    let call_id = match headers.get(&X_CALL_ID) {
        Some(id) if !id.is_empty() => id.clone(),
        _ => {
            let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
            uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
            let id = HeaderValue::from_bytes(&text).expect("a uuid is a valid header");
            headers.insert(X_CALL_ID, id.clone());
            id
        }
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    headers.insert(X_START_TIME, HeaderValue::from(nanos as u64));
    let client_ip = client_ip_header(peer.ip());
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(earlier) if !earlier.trim().is_empty() => {
            HeaderValue::from_str(&format!("{earlier}, {}", peer.ip())).ok()
        }
        _ => Some(client_ip),
    };
    if let Some(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST, host);
    }
    call_id
}

/// The caller's address as a header value. Calls come from few addresses
/// (a load balancer, a client on a keep-alive connection): each thread
/// keeps the last one it wrote, so most calls copy it instead of formatting it.
fn client_ip_header(ip: std::net::IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(std::net::IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((kept, value)) if *kept == ip => value.clone(),
        _ => {
            let value =
                HeaderValue::from_str(&ip.to_string()).expect("an address is a valid header");
            *last = Some((ip, value.clone()));
            value
        }
    })
}

/// `elapsed` in seconds with six decimals (`0.000123`), without going
/// through floating point formatting.
fn seconds_header(elapsed: Duration) -> HeaderValue {
    let micros = elapsed.as_micros();
    let (whole, fraction) = (micros / 1_000_000, (micros % 1_000_000) as u32);
    let mut text = [0u8; 48];
    let mut at = text.len();
    let mut digit = |d: u8| {
        at -= 1;
        text[at] = b'0' + d;
    };
    let mut rest = fraction;
    for _ in 0..6 {
        digit((rest % 10) as u8);
        rest /= 10;
    }
    at -= 1;
    text[at] = b'.';
    let mut rest = whole;
    loop {
        at -= 1;
        text[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&text[at..]).expect("digits are a valid header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_without_a_replica_says_why_with_the_status_that_fits() {
        let waited = |cold| crate::functions::balance::Waited {
            cold,
            waited: Duration::from_millis(1500),
        };
        let cold = ForwardError::no_replica("f", waited(true), false, "");
        assert_eq!(cold.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            cold.to_string(),
            "function \"f\" is scaled to zero and no replica became ready within 1.5s (scale_from_zero_wait)"
        );
        let none = ForwardError::no_replica("f", waited(false), false, "");
        assert_eq!(none.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            none.to_string(),
            "function \"f\" has no ready replica (waited 1.5s)"
        );
        // After a refusal the one replica there was is the story, cold or not.
        let refused = ForwardError::no_replica("f", waited(true), true, "connection refused");
        assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            refused.to_string(),
            "function \"f\" is unreachable: connection refused"
        );
    }

    #[test]
    fn a_function_that_cannot_start_is_503_naming_why() {
        let e = ForwardError::CannotStart {
            function: "markdown".into(),
            reason: "its program \"markdown\" is not in its folder or on PATH".into(),
        };
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            e.to_string(),
            "function \"markdown\" cannot start: its program \"markdown\" is not in its folder or on PATH"
        );
    }

    #[test]
    fn answers_that_never_came_are_502_504_and_a_bad_path_400() {
        let failed = ForwardError::Failed {
            function: "f".into(),
            cause: "connection reset".into(),
        };
        assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
        let slow = ForwardError::TimedOut {
            function: "f".into(),
            limit: Duration::from_secs(60),
        };
        assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            slow.to_string(),
            "function \"f\" did not answer within upstream_timeout (60s)"
        );
        let authority = http::uri::Authority::from_static("10.0.0.2:8080");
        let bad = target_uri(authority.clone(), "/a b").unwrap_err();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert!(
            bad.to_string().starts_with("cannot forward path \"/a b\""),
            "{bad}"
        );
        assert_eq!(
            target_uri(authority, "/x?y=1").unwrap().to_string(),
            "http://10.0.0.2:8080/x?y=1"
        );
    }

    #[test]
    fn forwarding_headers_are_set_and_hop_by_hop_ones_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("gw.example:8080"));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        let id = prepare_headers(&mut headers, "192.0.2.7:5555".parse().unwrap());
        assert!(!headers.contains_key("x-secret-hop"));
        assert!(!headers.contains_key(header::CONNECTION));
        assert!(!headers.contains_key(header::TE));
        assert_eq!(headers[X_FORWARDED_FOR], "10.0.0.1, 192.0.2.7");
        assert_eq!(headers[X_FORWARDED_HOST], "gw.example:8080");
        assert_eq!(headers[X_CALL_ID], id);
        assert_eq!(id.len(), 36);
        let start: u128 = headers[X_START_TIME].to_str().unwrap().parse().unwrap();
        assert!(start > 1_700_000_000_000_000_000);
    }

    #[test]
    fn a_callers_call_id_is_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(X_CALL_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(
            prepare_headers(&mut headers, "127.0.0.1:1".parse().unwrap()),
            "abc-123"
        );
    }

    #[test]
    fn durations_are_seconds_with_six_decimals() {
        for (elapsed, text) in [
            (Duration::ZERO, "0.000000"),
            (Duration::from_nanos(999), "0.000000"),
            (Duration::from_micros(123), "0.000123"),
            (Duration::from_millis(1500), "1.500000"),
            (Duration::from_secs(86_400 * 365), "31536000.000000"),
            (Duration::MAX, "18446744073709551615.999999"),
        ] {
            assert_eq!(seconds_header(elapsed), text);
        }
    }

    #[test]
    fn the_callers_address_is_written_for_each_address() {
        let a: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(client_ip_header(a), "192.0.2.7");
        assert_eq!(client_ip_header(a), "192.0.2.7");
        assert_eq!(client_ip_header(b), "2001:db8::1");
        assert_eq!(client_ip_header(a), "192.0.2.7");
    }
}
