//! A replica that refuses connections is skipped, and the call retried once
//! on another, because nothing was sent. Drives the forwarder directly with
//! a real listening replica and a real refused address.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use gateway::forward::{CallBody, Forwarder, Stream};
use gateway::functions::{Discovered, ReplicaInfo, ReplicaState, Table};
use gateway::metrics::Metrics;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// A replica that echoes the body back.
async fn echo_replica() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// An address nothing listens on.
fn refusing_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn table_with(replicas: &[SocketAddr]) -> Arc<gateway::functions::Function> {
    let table = Table::new(Arc::new(Metrics::new()));
    table.upsert(Discovered {
        name: "f".into(),
        replicas: replicas
            .iter()
            .enumerate()
            .map(|(i, addr)| ReplicaInfo {
                id: i.to_string(),
                addr: *addr,
                state: ReplicaState::Ready,
            })
            .collect(),
        labels: BTreeMap::new(),
        desired: None,
        problem: None,
    });
    table.get("f").unwrap()
}

async fn call(
    forwarder: &Forwarder,
    function: &Arc<gateway::functions::Function>,
    body: &'static str,
) -> (StatusCode, String) {
    let (parts, ()) = Request::post("/").body(()).unwrap().into_parts();
    let response = forwarder
        .forward(
            function,
            parts,
            CallBody::Stream(Stream::Boxed(Body::from(body))),
            "/",
            "127.0.0.1:9".parse().unwrap(),
        )
        .await;
    let status = response.status();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&text).into_owned())
}

#[tokio::test]
async fn a_refused_connection_is_retried_on_another_replica() {
    let good = echo_replica().await;
    let bad = refusing_address();
    let function = table_with(&[bad, good]);
    let forwarder = Forwarder::new(
        Duration::from_secs(5),
        Duration::from_millis(100),
        Duration::from_secs(30),
    );
    // Least in flight, ties round robin: over several calls the refusing
    // replica comes first at least once, and every call still succeeds.
    for i in 0..6 {
        let (status, text) = call(&forwarder, &function, "streamed body").await;
        assert_eq!(status, StatusCode::OK, "call {i}: {text}");
        assert_eq!(text, "streamed body");
    }
}

#[tokio::test]
async fn when_every_replica_refuses_the_answer_is_502_naming_the_cause() {
    let function = table_with(&[refusing_address(), refusing_address()]);
    let forwarder = Forwarder::new(
        Duration::from_secs(5),
        Duration::from_millis(100),
        Duration::from_secs(30),
    );
    let (status, text) = call(&forwarder, &function, "x").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(text.starts_with("function \"f\" is unreachable"), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
}

#[tokio::test]
async fn no_replica_at_all_is_503_after_waiting() {
    let function = table_with(&[]);
    let forwarder = Forwarder::new(
        Duration::from_secs(5),
        Duration::from_millis(200),
        Duration::from_secs(30),
    );
    let started = std::time::Instant::now();
    let (status, text) = call(&forwarder, &function, "x").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(text, "function \"f\" has no ready replica (waited 0.2s)\n");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn a_buffered_body_survives_a_retry_too() {
    let good = echo_replica().await;
    let function = table_with(&[refusing_address(), good]);
    let forwarder = Forwarder::new(
        Duration::from_secs(5),
        Duration::from_millis(100),
        Duration::from_secs(30),
    );
    for _ in 0..4 {
        let (parts, ()) = Request::post("/").body(()).unwrap().into_parts();
        let response = forwarder
            .forward(
                &function,
                parts,
                CallBody::Buffered(Bytes::from_static(b"alexa json")),
                "/",
                "127.0.0.1:9".parse().unwrap(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&text[..], b"alexa json");
    }
}

#[tokio::test]
async fn when_the_only_replica_refuses_the_call_waits_for_its_successor() {
    // A rolling update with stop-first: the old replica has closed its
    // listener, the new one is not ready yet.
    let table = Table::new(Arc::new(Metrics::new()));
    let old = refusing_address();
    let replica = |id: &str, addr: SocketAddr| ReplicaInfo {
        id: id.into(),
        addr,
        state: ReplicaState::Ready,
    };
    table.upsert(Discovered {
        name: "f".into(),
        replicas: vec![replica("old", old)],
        labels: BTreeMap::new(),
        desired: None,
        problem: None,
    });
    let function = table.get("f").unwrap();
    let forwarder = Forwarder::new(
        Duration::from_secs(5),
        Duration::from_secs(3),
        Duration::from_secs(30),
    );
    let successor = echo_replica().await;
    let arrives = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        table.upsert(Discovered {
            name: "f".into(),
            replicas: vec![replica("new", successor)],
            labels: BTreeMap::new(),
            desired: None,
            problem: None,
        });
        table
    });
    let (status, text) = call(&forwarder, &function, "not lost").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(text, "not lost");
    drop(arrives.await.unwrap());
}
