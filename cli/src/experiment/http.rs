//! The experiment's HTTP client: hyper's HTTP/1.1 connections, kept alive
//! in a small pool of our own so each call knows whether it opened a
//! connection and how long that took (`connect_ms`), reads the whole
//! answer (`client_ms` ends at its last byte) and its trailers (a
//! streamed function's resource figures).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// Where the gateway is.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The `Host` header.
    pub authority: HeaderValue,
    /// The gateway URL's path, before `/function/…` (usually empty).
    pub prefix: String,
}

impl Target {
    /// Resolves the gateway URL (`http://host:port[/prefix]`).
    pub async fn resolve(gateway: &str) -> Result<Target, String> {
        let uri: http::Uri = gateway
            .parse()
            .map_err(|e| format!("the gateway URL {gateway:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "experiments call the gateway over plain http, not {gateway:?}"
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("the gateway URL {gateway:?} names no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} has no address"))?;
        Ok(Target {
            addr,
            authority: HeaderValue::from_str(authority.as_str())
                .map_err(|e| format!("bad host in {gateway:?}: {e}"))?,
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }
}

/// One answer, or what stopped it.
#[derive(Debug, Default)]
pub struct Exchange {
    /// 0 when no answer came.
    pub status: u16,
    pub headers: HeaderMap,
    pub trailers: Option<HeaderMap>,
    /// The answer's first bytes (up to the pool's `keep`).
    pub body: Bytes,
    /// The answer's whole length.
    pub bytes_out: u64,
    /// Time to open the connection, when this call opened one.
    pub connect: Option<Duration>,
    /// From the call's start to the answer's last byte (or the failure).
    pub elapsed: Duration,
    pub error: Option<String>,
}

/// Idle keep-alive connections to the gateway, shared by the callers.
pub struct Pool {
    target: Target,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    /// The most bytes of an answer kept (the rest is counted, not kept).
    keep: usize,
}

impl Pool {
    pub fn new(target: Target, keep: usize) -> Pool {
        Pool {
            target,
            idle: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// The gateway's prefix.
    pub fn prefix(&self) -> &str {
        &self.target.prefix
    }

    /// `path` (with its query) on the gateway, as a request target.
    pub fn uri(&self, path: &str) -> http::Uri {
        format!("{}{path}", self.target.prefix)
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/"))
    }

    /// Sends one request (`uri`: a path, from [`Pool::uri`]) and reads its
    /// answer to the end, all within `timeout`. `started` is when the call
    /// counts from (an open-loop call's scheduled time).
    pub async fn send(
        &self,
        started: Instant,
        method: &Method,
        uri: &http::Uri,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Exchange {
        let mut exchange = Exchange::default();
        let deadline = started + timeout;
        let outcome = tokio::time::timeout_at(
            deadline.into(),
            self.exchange(method, uri, headers, body, &mut exchange),
        )
        .await;
        exchange.elapsed = started.elapsed();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => exchange.error = Some(e),
            Err(_) => {
                exchange.error = Some(format!(
                    "no complete answer within the timeout ({}s)",
                    timeout.as_secs_f64()
                ))
            }
        }
        exchange
    }

    async fn exchange(
        &self,
        method: &Method,
        uri: &http::Uri,
        headers: HeaderMap,
        body: Bytes,
        exchange: &mut Exchange,
    ) -> Result<(), String> {
        let mut sender = match self.take() {
            Some(sender) => sender,
            None => {
                let opening = Instant::now();
                let sender = self.connect().await?;
                exchange.connect = Some(opening.elapsed());
                sender
            }
        };
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = headers;
        request
            .headers_mut()
            .insert(header::HOST, self.target.authority.clone());
        // A streamed output's resource figures come as trailers.
        request
            .headers_mut()
            .insert(header::TE, HeaderValue::from_static("trailers"));
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("the gateway did not answer: {}", cause(&e)))?;
        let closing = response
            .headers()
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let (parts, mut incoming) = response.into_parts();
        exchange.status = parts.status.as_u16();
        exchange.headers = parts.headers;
        let mut kept = Vec::new();
        let mut total = 0usize;
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| format!("the answer broke off: {}", cause(&e)))?;
            match frame.into_data() {
                Ok(data) => {
                    total += data.len();
                    let room = self.keep.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
                Err(frame) => exchange.trailers = frame.into_trailers().ok(),
            }
        }
        exchange.body = Bytes::from(kept);
        exchange.bytes_out = total as u64;
        if !closing {
            self.give_back(sender);
        }
        Ok(())
    }

    fn take(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(sender) = idle.pop() {
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    fn give_back(&self, sender: SendRequest<Full<Bytes>>) {
        if !sender.is_closed() {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = tokio::net::TcpStream::connect(self.target.addr)
            .await
            .map_err(|e| format!("cannot connect to the gateway at {}: {e}", self.target.addr))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("cannot talk to the gateway: {}", cause(&e)))?;
        tokio::spawn(connection);
        Ok(sender)
    }
}

/// An error with its causes, on one line.
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_gateway_url_resolves_with_its_prefix() {
        let t = Target::resolve("http://127.0.0.1:8080/base/")
            .await
            .unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.prefix, "/base");
        let e = Target::resolve("https://127.0.0.1").await.unwrap_err();
        assert!(e.contains("plain http"), "{e}");
    }
}
