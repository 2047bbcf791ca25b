//! What the watchdog answers with: one body type for every mode (carrying
//! the in-flight guard, so a streamed response counts until its last
//! byte), its own one-line answers, and the headers it adds to a
//! function's output.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::body::{BodyError, BoxError};
use crate::config::Config;
use crate::process::Usage;
use crate::state::InflightGuard;

pub const X_DURATION_SECONDS: HeaderName = HeaderName::from_static("x-duration-seconds");
pub const X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");
pub const X_COLD_START: HeaderName = HeaderName::from_static("x-cold-start");
pub const X_CPU_USER_SECONDS: HeaderName = HeaderName::from_static("x-cpu-user-seconds");
pub const X_CPU_SYSTEM_SECONDS: HeaderName = HeaderName::from_static("x-cpu-system-seconds");
pub const X_MAX_RSS_BYTES: HeaderName = HeaderName::from_static("x-max-rss-bytes");
pub const X_MEMORY_LIMIT_BYTES: HeaderName = HeaderName::from_static("x-memory-limit-bytes");

/// A streamed body produced here (a `stream`-mode child's output).
type Streamed = Pin<Box<dyn Body<Data = Bytes, Error = std::io::Error> + Send>>;

enum Kind {
    Full(Full<Bytes>),
    Streamed(Streamed),
    Upstream(Incoming),
}

/// The body of every watchdog response.
pub struct ResponseBody {
    kind: Kind,
    guard: Option<InflightGuard>,
}

impl ResponseBody {
    pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
        ResponseBody {
            kind: Kind::Full(Full::new(bytes.into())),
            guard: None,
        }
    }

    pub fn empty() -> ResponseBody {
        ResponseBody::full(Bytes::new())
    }

    pub fn streamed(
        output: impl Body<Data = Bytes, Error = std::io::Error> + Send + 'static,
    ) -> ResponseBody {
        ResponseBody {
            kind: Kind::Streamed(Box::pin(output)),
            guard: None,
        }
    }

    pub fn upstream(body: Incoming) -> ResponseBody {
        ResponseBody {
            kind: Kind::Upstream(body),
            guard: None,
        }
    }

    /// Keeps the request counted as in flight until this body is finished
    /// or dropped.
    pub fn hold(&mut self, guard: InflightGuard) {
        self.guard = Some(guard);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = match &mut self.kind {
            Kind::Full(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
            Kind::Streamed(b) => b.as_mut().poll_frame(cx).map_err(BoxError::from),
            Kind::Upstream(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
        };
        if let Poll::Ready(None) | Poll::Ready(Some(Err(_))) = polled {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_end_stream(),
            Kind::Streamed(b) => b.is_end_stream(),
            Kind::Upstream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => b.size_hint(),
            Kind::Streamed(b) => b.size_hint(),
            Kind::Upstream(b) => b.size_hint(),
        }
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

/// A duration as the seconds header value (`0.001234`).
pub fn seconds(d: Duration) -> HeaderValue {
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

/// The answer when reading the request body failed.
pub fn body_failure(e: BodyError) -> Response<ResponseBody> {
    let status = match e {
        BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        BodyError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
        BodyError::Read(_) => StatusCode::BAD_REQUEST,
    };
    text(status, e)
}
