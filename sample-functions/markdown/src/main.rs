//! `markdown`: a sample `http`-mode function that renders Markdown to HTML.
//!
//! It is a small HTTP/1.1 server (keep-alive, `TCP_NODELAY`) that the
//! watchdog starts once and proxies every request to. Whatever the method
//! and path, the request body is read as UTF-8 Markdown and answered as
//! `text/html; charset=utf-8`; a body that is not UTF-8 gets a 400, and an
//! empty body (a plain GET) renders as an empty page.
//!
//! Environment:
//! - `PORT`: the port to listen on, default 8082 (the watchdog's default
//!   `upstream_url` is `http://127.0.0.1:8082`). It always binds
//!   127.0.0.1: only the watchdog in the same container talks to it.
//!
//! SIGTERM or SIGINT stops accepting, lets in-flight requests finish (for
//! at most [`DRAIN_TIMEOUT`]) and exits 0.
//!
//! Raw HTML inside the Markdown is escaped and shown as text, never passed
//! through, so a caller cannot inject `<script>` into the page. Link targets
//! are not filtered: do not serve the output to other people's browsers
//! without a sanitiser.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use pulldown_cmark::{Event, Options, Parser};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

const PORT: &str = "PORT";
const DEFAULT_PORT: u16 = 8082;
/// How long in-flight requests may take to finish after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

fn main() -> ExitCode {
    let port = match std::env::var(PORT) {
        Err(_) => DEFAULT_PORT,
        Ok(v) => match v.trim().parse::<u16>() {
            Ok(port) => port,
            Err(_) => {
                eprintln!("markdown: {PORT}={v:?} is invalid: expected a TCP port number");
                return ExitCode::from(2);
            }
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the Tokio runtime");
    let result = runtime.block_on(async {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        eprintln!("markdown: listening on {addr}");
        serve(listener, shutdown_signal()).await;
        eprintln!("markdown: stopped");
        Ok::<(), String>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("markdown: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves connections from `listener` until `shutdown` resolves, then
/// drains the open ones.
async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let mut http = http1::Builder::new();
    http.keep_alive(true).timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Usually out of file descriptors: back off, don't spin.
                    eprintln!("markdown: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service_fn(handle)));
        tokio::spawn(async move {
            // A client hanging up mid-request is its business, not an error here.
            let _ = conn.await;
        });
    }

    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            eprintln!("markdown: connections still open after {DRAIN_TIMEOUT:?}, exiting anyway");
        }
    }
}

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Ok(respond(
                StatusCode::BAD_REQUEST,
                TEXT,
                format!("cannot read the request body: {e}\n"),
            ));
        }
    };
    Ok(match std::str::from_utf8(&body) {
        Ok(markdown) => respond(StatusCode::OK, HTML, render(markdown)),
        Err(_) => respond(
            StatusCode::BAD_REQUEST,
            TEXT,
            "request body is not valid UTF-8 Markdown\n".to_owned(),
        ),
    })
}

fn respond(status: StatusCode, content_type: HeaderValue, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}

/// Renders CommonMark plus tables, strikethrough and task lists to HTML.
/// Raw HTML in the input comes out escaped, as text.
fn render(markdown: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        other => other,
    });
    let mut html = String::with_capacity(markdown.len() + markdown.len() / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term = signal(SignalKind::terminate()).expect("cannot handle SIGTERM");
    let mut int = signal(SignalKind::interrupt()).expect("cannot handle SIGINT");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heading_becomes_h1() {
        assert_eq!(render("# hi"), "<h1>hi</h1>\n");
    }

    #[test]
    fn list_becomes_ul() {
        assert_eq!(
            render("- one\n- two\n"),
            "<ul>\n<li>one</li>\n<li>two</li>\n</ul>\n"
        );
    }

    #[test]
    fn script_block_is_escaped() {
        let html = render("<script>alert(1)</script>\n");
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
    }

    #[test]
    fn inline_script_is_escaped() {
        let html = render("hello <script>alert(1)</script> world");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.starts_with("<p>hello &lt;script&gt;"), "{html}");
    }

    #[test]
    fn empty_input_renders_empty() {
        assert_eq!(render(""), "");
    }

    #[test]
    fn tables_are_enabled() {
        assert!(render("| a |\n|---|\n| 1 |\n").contains("<table>"));
    }

    /// Sends one request over a fresh connection; returns status,
    /// content type and body.
    async fn call(
        addr: SocketAddr,
        method: &str,
        body: &'static [u8],
    ) -> (StatusCode, String, Bytes) {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let request = Request::builder()
            .method(method)
            .uri("/any/path?x=1")
            .header("host", "localhost")
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, content_type, body)
    }

    #[tokio::test]
    async fn serves_html_and_rejects_invalid_utf8_then_stops_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, async {
            let _ = stopped.await;
        }));

        let (status, content_type, body) = call(addr, "POST", b"# hi").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "text/html; charset=utf-8");
        assert_eq!(body, "<h1>hi</h1>\n");

        let (status, _, body) = call(addr, "GET", b"").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.is_empty());

        let (status, content_type, body) = call(addr, "POST", b"\xff\xfe").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(content_type.starts_with("text/plain"));
        assert_eq!(body, "request body is not valid UTF-8 Markdown\n");

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("server did not stop")
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
