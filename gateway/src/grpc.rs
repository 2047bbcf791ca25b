//! The gRPC endpoint (HTTP/2, default port 9000): tinyFaaS's service
//! `openfogstack.tinyfaas.tinyfaas.TinyFaaS/Request`, unchanged, and the
//! gateway's own `faas.v1.Functions` (bytes bodies, metadata as headers,
//! the function's status, streamed answers, async calls). Both turn each
//! call into an HTTP request for the [`Front`], like every protocol.
//!
//! The gateway's own refusals (its [`GatewayAnswer`]s: no such function,
//! too large, no replica, timeout, credentials) become gRPC status codes;
//! a function's answer is the function's, whatever its status. A call's
//! `grpc-timeout` bounds it: past the deadline the call is dropped (the
//! function's connection with it) and answered DEADLINE_EXCEEDED. Served
//! by hyper's HTTP/2 server over tonic's routes, so the deadline is ours
//! to answer (tonic's own server would answer CANCELLED).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use faas_common::shutdown::Shutdown;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::{Code, Status};

use crate::forward::X_CALL_ID;
use crate::reply::GatewayAnswer;
use crate::server::Front;

/// The code generated from `proto/` (by `build.rs`).
pub mod pb {
    /// tinyFaaS's interface, as tinyFaaS declares it.
    pub mod tinyfaas {
        tonic::include_proto!("openfogstack.tinyfaas.tinyfaas");
    }
    /// The gateway's own interface.
    pub mod faas {
        tonic::include_proto!("faas.v1");
    }
}

use pb::faas::functions_server::{Functions, FunctionsServer};
use pb::faas::{CallChunk, CallHead, CallReply, CallRequest, Queued, call_chunk};
use pb::tinyfaas::tiny_faa_s_server::{TinyFaaS, TinyFaaSServer};

/// What the gRPC endpoint needs of the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request message, and largest answer a unary call buffers.
    pub max_body: usize,
    /// Connections open at once (more wait in the backlog).
    pub max_connections: usize,
    /// Calls in flight on one connection (HTTP/2 streams).
    pub max_streams: u32,
}

impl Limits {
    pub fn of(config: &crate::Config) -> Limits {
        Limits {
            max_body: usize::try_from(config.grpc_max_body).unwrap_or(usize::MAX),
            max_connections: config.max_connections as usize,
            max_streams: config.grpc_max_streams,
        }
    }
}

/// The caller's address, put in each request's extensions by the accept
/// loop (X-Forwarded-For, like an HTTP call).
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

#[derive(Clone)]
struct Endpoint {
    front: Front,
    max_body: usize,
}

/// Serves both services on `listener` until `shutdown`, then lets open
/// calls finish.
pub async fn serve(listener: TcpListener, front: Front, limits: Limits, mut shutdown: Shutdown) {
    let endpoint = Endpoint {
        front,
        max_body: limits.max_body,
    };
    let routes = tonic::service::Routes::new(
        TinyFaaSServer::new(endpoint.clone()).max_decoding_message_size(limits.max_body),
    )
    .add_service(FunctionsServer::new(endpoint).max_decoding_message_size(limits.max_body))
    .prepare();
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .keep_alive_interval(Some(Duration::from_secs(60)));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        // Waiting for a free slot, too, gives way to a stop.
        let slot = tokio::select! {
            _ = shutdown.wait() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "grpc: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        let max_body = limits.max_body;
        let service =
            tower::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(Peer(peer));
                let mut routes = routes.clone();
                async move {
                    let mut response = tower::Service::call(&mut routes, request)
                        .await
                        .unwrap_or_else(|never| match never {});
                    too_large_is_resource_exhausted(&mut response, max_body);
                    Ok::<_, Infallible>(response)
                }
            });
        let connection =
            http2.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "grpc: connection ended");
            }
            drop(slot);
        });
    }
    graceful.shutdown().await;
}

/// tonic refuses a message over the decoding limit with OUT_OF_RANGE
/// before any handler runs (the handlers never answer it); gRPC's own
/// servers, and callers, expect RESOURCE_EXHAUSTED naming the limit.
fn too_large_is_resource_exhausted<B>(response: &mut http::Response<B>, max_body: usize) {
    let headers = response.headers_mut();
    if headers.get("grpc-status").is_some_and(|s| s == "11") {
        let status = Status::resource_exhausted(format!(
            "the request message is larger than grpc_max_body ({max_body} bytes)"
        ));
        headers.remove("grpc-message");
        let _ = status.add_header(headers);
    }
}

/// A call as the front sees it, from a gRPC request's parts.
struct Call {
    method: http::Method,
    uri: String,
    metadata: HeaderMap,
    body: Vec<u8>,
    peer: SocketAddr,
    deadline: Option<Duration>,
    /// When the call must be answered by (the deadline, a little early).
    until: Option<tokio::time::Instant>,
}

impl Call {
    fn of<T>(
        request: &tonic::Request<T>,
        method: http::Method,
        uri: String,
        body: Vec<u8>,
    ) -> Call {
        let metadata = request.metadata().clone().into_headers();
        let deadline = metadata
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(grpc_timeout);
        Call {
            method,
            uri,
            metadata: call_headers(metadata),
            body,
            peer: request
                .extensions()
                .get::<Peer>()
                .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |p| p.0),
            deadline,
            until: deadline.map(|d| tokio::time::Instant::now() + early(d)),
        }
    }
}

/// The caller's metadata as the call's headers: gRPC's own (content type,
/// `te`, `grpc-*`) and binary (`-bin`) entries stay behind.
fn call_headers(mut metadata: HeaderMap) -> HeaderMap {
    let own: Vec<http::HeaderName> = metadata
        .keys()
        .filter(|k| {
            let k = k.as_str();
            // content-length counts the gRPC framing, not the body.
            k == "content-type"
                || k == "content-length"
                || k == "host"
                || k == "te"
                || k.starts_with("grpc-")
                || k.ends_with("-bin")
        })
        .cloned()
        .collect();
    for name in own {
        metadata.remove(name);
    }
    metadata
}

/// A `grpc-timeout` value (`100m`, `5S`, …) as a duration.
fn grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl Endpoint {
    /// Runs `call` through the front within its deadline; the gateway's
    /// own refusals come back as gRPC statuses.
    async fn run(&self, call: Call) -> Result<http::Response<Body>, Status> {
        // The message is in memory (tonic read it, up to grpc_max_body):
        // counted against max_buffered while the call is made.
        let limits = self
            .front
            .state
            .body_limits(self.max_body as u64, "grpc_max_body");
        let held = match crate::body::read(Body::from(call.body), limits).await {
            Ok(held) => held,
            Err(answer) => return Err(refusal(answer).await),
        };
        let mut builder = http::Request::builder().method(call.method).uri(&call.uri);
        if let Some(headers) = builder.headers_mut() {
            *headers = call.metadata;
        }
        let request = builder.body(Body::from(held.bytes.clone())).map_err(|e| {
            Status::invalid_argument(format!("cannot make a call of {}: {e}", call.uri))
        })?;
        let response = within(
            call.until,
            call.deadline,
            self.front.call(call.peer, request),
        )
        .await?;
        drop(held);
        if response.extensions().get::<GatewayAnswer>().is_some() {
            return Err(refusal(response).await);
        }
        Ok(response)
    }

    /// A unary call's whole answer, up to `max_body`.
    async fn whole(
        &self,
        response: http::Response<Body>,
        (until, deadline): (Option<tokio::time::Instant>, Option<Duration>),
    ) -> Result<(StatusCode, String, Bytes), Status> {
        let status = response.status();
        let call_id = call_id(response.headers());
        let limited = http_body_util::Limited::new(response.into_body(), self.max_body);
        match within(until, deadline, limited.collect()).await? {
            Ok(body) => Ok((status, call_id, body.to_bytes())),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(Status::resource_exhausted(format!(
                    "the function's answer is larger than grpc_max_body ({} bytes): use CallStream",
                    self.max_body
                )))
            }
            Err(e) => Err(Status::unavailable(format!(
                "the function's answer broke off: {e}"
            ))),
        }
    }
}

/// `work` within the call's deadline (DEADLINE_EXCEEDED past it; the
/// work, and the function's call with it, dropped).
async fn within<T>(
    until: Option<tokio::time::Instant>,
    deadline: Option<Duration>,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Status> {
    match until {
        Some(until) => tokio::time::timeout_at(until, work).await.map_err(|_| {
            Status::deadline_exceeded(format!(
                "no answer within the call's deadline ({:?}); the call was stopped",
                deadline.unwrap_or_default()
            ))
        }),
        None => Ok(work.await),
    }
}

fn early(deadline: Duration) -> Duration {
    deadline.saturating_sub((deadline / 10).min(Duration::from_millis(50)))
}

fn call_id(headers: &HeaderMap) -> String {
    headers
        .get(X_CALL_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The gateway's own refusal as the gRPC status that means the same.
async fn refusal(response: http::Response<Body>) -> Status {
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&body).trim().to_owned();
    Status::new(code_of(status), message)
}

/// An HTTP status as a gRPC code (gRPC's own HTTP mapping, widened to the
/// gateway's statuses).
fn code_of(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        408 | 504 => Code::DeadlineExceeded,
        409 => Code::AlreadyExists,
        413 | 429 | 507 => Code::ResourceExhausted,
        501 => Code::Unimplemented,
        502 | 503 => Code::Unavailable,
        s if (200..300).contains(&s) => Code::Ok,
        s if (400..500).contains(&s) => Code::FailedPrecondition,
        _ => Code::Internal,
    }
}

/// `/function/{name}{path}?{query}` for a request naming a function.
fn call_uri(prefix: &str, function: &str, path: &str, query: &str) -> Result<String, Status> {
    if !faas_common::is_valid_function_name(function) {
        return Err(Status::invalid_argument(format!(
            "invalid function name {function:?}: use letters, digits, '_', '.' and '-'"
        )));
    }
    if !path.is_empty() && !path.starts_with('/') {
        return Err(Status::invalid_argument(format!(
            "path {path:?} must start with '/'"
        )));
    }
    let mut uri = format!("/{prefix}/{function}{path}");
    if !query.is_empty() {
        uri.push('?');
        uri.push_str(query);
    }
    uri.parse::<http::Uri>()
        .map_err(|e| Status::invalid_argument(format!("bad path or query {uri:?}: {e}")))?;
    Ok(uri)
}

fn method_of(method: &str) -> Result<http::Method, Status> {
    if method.is_empty() {
        return Ok(http::Method::POST);
    }
    http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| Status::invalid_argument(format!("bad method {method:?}")))
}

#[tonic::async_trait]
impl TinyFaaS for Endpoint {
    async fn request(
        &self,
        request: tonic::Request<pb::tinyfaas::Data>,
    ) -> Result<tonic::Response<pb::tinyfaas::Response>, Status> {
        let data = request.get_ref();
        let uri = call_uri("function", &data.function_identifier, "", "")?;
        let body = data.data.clone().into_bytes();
        let call = Call::of(&request, http::Method::POST, uri, body);
        let deadline = (call.until, call.deadline);
        let response = self.run(call).await?;
        let (status, _, body) = self.whole(response, deadline).await?;
        if !status.is_success() {
            return Err(Status::new(
                Code::Unknown,
                format!(
                    "function {} answered {status}: {}",
                    request.get_ref().function_identifier,
                    String::from_utf8_lossy(&body).trim()
                ),
            ));
        }
        // tinyFaaS's answer is text: a function's bytes that are not UTF-8
        // cannot travel in it.
        let response = String::from_utf8(body.to_vec()).map_err(|_| {
            Status::internal(
                "the function's answer is not UTF-8 text, which tinyFaaS's Response carries: call it through faas.v1.Functions/Call for bytes",
            )
        })?;
        Ok(tonic::Response::new(pb::tinyfaas::Response { response }))
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<CallChunk, Status>> + Send>>;

impl Endpoint {
    fn call_of(&self, request: &tonic::Request<CallRequest>, prefix: &str) -> Result<Call, Status> {
        let r = request.get_ref();
        let uri = call_uri(prefix, &r.function, &r.path, &r.query)?;
        let method = method_of(&r.method)?;
        Ok(Call::of(request, method, uri, r.body.clone()))
    }
}

/// The function's headers as response metadata (those gRPC can carry).
fn metadata_of(headers: &HeaderMap) -> tonic::metadata::MetadataMap {
    let mut kept = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if n == "content-type"
            || n == "content-length"
            || n == "transfer-encoding"
            || n.starts_with("grpc-")
        {
            continue;
        }
        kept.append(name.clone(), value.clone());
    }
    tonic::metadata::MetadataMap::from_headers(kept)
}

#[tonic::async_trait]
impl Functions for Endpoint {
    async fn call(
        &self,
        request: tonic::Request<CallRequest>,
    ) -> Result<tonic::Response<CallReply>, Status> {
        let call = self.call_of(&request, "function")?;
        let deadline = (call.until, call.deadline);
        let response = self.run(call).await?;
        let metadata = metadata_of(response.headers());
        let (status, call_id, body) = self.whole(response, deadline).await?;
        let mut reply = tonic::Response::new(CallReply {
            status: u32::from(status.as_u16()),
            body: body.to_vec(),
            call_id,
        });
        *reply.metadata_mut() = metadata;
        Ok(reply)
    }

    type CallStreamStream = ChunkStream;

    async fn call_stream(
        &self,
        request: tonic::Request<CallRequest>,
    ) -> Result<tonic::Response<ChunkStream>, Status> {
        let call = self.call_of(&request, "function")?;
        let (until, deadline) = (call.until, call.deadline);
        let response = self.run(call).await?;
        let metadata = metadata_of(response.headers());
        let head = CallChunk {
            part: Some(call_chunk::Part::Head(CallHead {
                status: u32::from(response.status().as_u16()),
                call_id: call_id(response.headers()),
            })),
        };
        let body = response
            .into_body()
            .into_data_stream()
            .map(|piece| match piece {
                Ok(data) => Ok(CallChunk {
                    part: Some(call_chunk::Part::Data(data.to_vec())),
                }),
                Err(e) => Err(Status::unavailable(format!(
                    "the function's answer broke off: {e}"
                ))),
            });
        // The deadline holds for the whole answer: past it the stream ends
        // with DEADLINE_EXCEEDED (and the function's call is dropped).
        let body = futures_util::stream::unfold(Some(Box::pin(body)), move |body| async move {
            let mut body = body?;
            match within(until, deadline, body.next()).await {
                Ok(Some(piece)) => Some((piece, Some(body))),
                Ok(None) => None,
                Err(status) => Some((Err(status), None)),
            }
        });
        let stream: ChunkStream = Box::pin(futures_util::stream::iter([Ok(head)]).chain(body));
        let mut reply = tonic::Response::new(stream);
        *reply.metadata_mut() = metadata;
        Ok(reply)
    }

    async fn call_async(
        &self,
        request: tonic::Request<CallRequest>,
    ) -> Result<tonic::Response<Queued>, Status> {
        let call = self.call_of(&request, "async-function")?;
        let deadline = (call.until, call.deadline);
        let response = self.run(call).await?;
        let (status, _, body) = self.whole(response, deadline).await?;
        if status != StatusCode::ACCEPTED {
            return Err(Status::new(
                code_of(status),
                String::from_utf8_lossy(&body).trim().to_owned(),
            ));
        }
        let queued: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| Status::internal(format!("the queue's answer is not JSON: {e}")))?;
        let text = |key: &str| queued[key].as_str().unwrap_or_default().to_owned();
        Ok(tonic::Response::new(Queued {
            id: text("id"),
            function: text("function"),
            status: text("status"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_are_read_in_every_unit() {
        assert_eq!(grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(grpc_timeout("250u"), Some(Duration::from_micros(250)));
        assert_eq!(grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "5", "S", "5s", "123456789S", "-1S"] {
            assert_eq!(grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn statuses_become_the_codes_grpc_clients_expect() {
        assert_eq!(code_of(StatusCode::NOT_FOUND), Code::NotFound);
        assert_eq!(
            code_of(StatusCode::PAYLOAD_TOO_LARGE),
            Code::ResourceExhausted
        );
        assert_eq!(
            code_of(StatusCode::INSUFFICIENT_STORAGE),
            Code::ResourceExhausted
        );
        assert_eq!(code_of(StatusCode::SERVICE_UNAVAILABLE), Code::Unavailable);
        assert_eq!(code_of(StatusCode::GATEWAY_TIMEOUT), Code::DeadlineExceeded);
        assert_eq!(code_of(StatusCode::UNAUTHORIZED), Code::Unauthenticated);
        assert_eq!(code_of(StatusCode::INTERNAL_SERVER_ERROR), Code::Internal);
    }

    #[test]
    fn calls_name_a_valid_function_and_a_rooted_path() {
        assert_eq!(
            call_uri("function", "echo", "", "").unwrap(),
            "/function/echo"
        );
        assert_eq!(
            call_uri("function", "echo", "/a/b", "x=1").unwrap(),
            "/function/echo/a/b?x=1"
        );
        assert_eq!(
            call_uri("function", "../system", "", "")
                .unwrap_err()
                .code(),
            Code::InvalidArgument
        );
        assert_eq!(
            call_uri("function", "echo", "a", "").unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(
            call_uri("function", "echo", "/a b", "").unwrap_err().code(),
            Code::InvalidArgument
        );
        let mut metadata = HeaderMap::new();
        metadata.insert("content-type", "application/grpc".parse().unwrap());
        metadata.insert("grpc-timeout", "1S".parse().unwrap());
        metadata.insert("x-trace", "t1".parse().unwrap());
        metadata.insert("authorization", "Basic eA==".parse().unwrap());
        metadata.insert("content-length", "105".parse().unwrap());
        metadata.insert("host", "gw:9000".parse().unwrap());
        let kept = call_headers(metadata);
        assert_eq!(kept.len(), 2);
        assert!(kept.contains_key("x-trace") && kept.contains_key("authorization"));
    }
}
