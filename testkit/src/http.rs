//! HTTP/1.1 to a real server, one fresh connection per request, and
//! request bodies that come in many chunks.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// A whole answer: status, headers, body and trailers.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends one request on a fresh connection and reads the whole answer.
pub async fn send<B>(addr: SocketAddr, request: Request<B>) -> Result<Reply, String>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut request = request;
    if !request.headers().contains_key(http::header::HOST) {
        request
            .headers_mut()
            .insert(http::header::HOST, addr.to_string().parse().unwrap());
    }
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.map_err(|e| e.to_string())?;
    let trailers = collected.trailers().cloned();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    })
}

/// `POST path` with `body`; panics when no answer comes.
pub async fn post(addr: SocketAddr, path: &str, body: impl Into<Bytes>) -> Reply {
    send(
        addr,
        Request::post(path).body(Full::new(body.into())).unwrap(),
    )
    .await
    .unwrap()
}

/// `GET path`; panics when no answer comes.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(
        addr,
        Request::get(path).body(Full::new(Bytes::new())).unwrap(),
    )
    .await
    .unwrap()
}

/// The value of one Prometheus series in `/metrics` text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A chunked request body of `count` chunks of `size` bytes; byte `i` of
/// the stream is `i % 251`.
pub struct Chunks {
    left: u64,
    size: usize,
    offset: u64,
}

impl Chunks {
    pub fn new(count: u64, size: usize) -> Chunks {
        Chunks {
            left: count,
            size,
            offset: 0,
        }
    }
}

/// Byte `offset` of the [`Chunks`] stream.
pub fn pattern_byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// `len` bytes of the [`Chunks`] stream from `offset` (len ≤ 1 MiB).
pub fn pattern(offset: u64, len: usize) -> &'static [u8] {
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let all = PATTERN.get_or_init(|| (0..251 + (1u64 << 20)).map(|i| (i % 251) as u8).collect());
    let start = (offset % 251) as usize;
    &all[start..start + len]
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        self.left -= 1;
        let chunk = Bytes::copy_from_slice(pattern(self.offset, self.size));
        self.offset += self.size as u64;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
    }
}
