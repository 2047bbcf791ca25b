//! `stream` mode: bodies streamed both ways with constant memory.

use crate::util;

use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_body_streams_through_cat_in_constant_memory() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: u64 = 4 * 1024; // 256 MiB
    let wd = Watchdog::start(&[
        ("mode", "stream"),
        ("fprocess", "cat"),
        ("exec_timeout", "120s"),
    ]);
    // Warm up so the baseline includes the runtime's steady state.
    assert_eq!(post(wd.addr, "/", "warm").await.text(), "warm");
    let baseline_kib = wd.rss_kib("VmRSS:");

    let stream = tokio::net::TcpStream::connect(wd.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::post("/")
        .header("host", "wd")
        .body(Chunks::new(CHUNKS, CHUNK))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut received = 0u64;
    let mut mismatch = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("stream aborted");
        if let Ok(data) = frame.into_data() {
            if mismatch.is_none() && data[..] != *pattern(received, data.len()) {
                mismatch = Some(received);
            }
            received += data.len() as u64;
        }
    }
    assert_eq!(received, CHUNKS * CHUNK as u64);
    assert_eq!(mismatch, None, "output differs from input");

    let peak_kib = wd.rss_kib("VmHWM:");
    let growth_mib = peak_kib.saturating_sub(baseline_kib) as f64 / 1024.0;
    eprintln!("256 MiB streamed: baseline {baseline_kib} KiB, peak {peak_kib} KiB");
    assert!(
        growth_mib < 8.0,
        "RSS grew by {growth_mib:.1} MiB (baseline {baseline_kib} KiB, peak {peak_kib} KiB)"
    );
}

#[tokio::test]
async fn failure_before_any_output_is_a_500_with_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let fail = script(
        dir.path(),
        "fail.sh",
        "cat > /dev/null\necho 'no good' >&2\nexit 4",
    );
    let wd = Watchdog::start_in(
        dir,
        &[
            ("mode", "stream"),
            ("fprocess", &format!("sh {}", fail.display())),
        ],
    );
    let reply = post(wd.addr, "/", "input").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.text(), "no good\n");
    assert!(reply.header("x-max-rss-bytes").is_some());
}

#[tokio::test]
async fn success_without_output_is_an_empty_200() {
    let wd = Watchdog::start(&[("mode", "stream"), ("fprocess", "true")]);
    let reply = post(wd.addr, "/", "ignored").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.is_empty());
}

#[tokio::test]
async fn failure_after_output_aborts_the_response() {
    let dir = tempfile::tempdir().unwrap();
    let fail = script(
        dir.path(),
        "late.sh",
        "echo 'first part'\nsleep 0.2\nexit 1",
    );
    let wd = Watchdog::start_in(
        dir,
        &[
            ("mode", "stream"),
            ("fprocess", &format!("sh {}", fail.display())),
        ],
    );
    let request = Request::post("/").body(Chunks::new(0, 0)).unwrap();
    let result = send(wd.addr, request).await;
    let err = result
        .err()
        .expect("a failed function must not look like a complete success");
    assert!(!err.is_empty());
}

#[tokio::test]
async fn exec_timeout_before_output_is_504_and_kills_the_group() {
    let wd = Watchdog::start(&[
        ("mode", "stream"),
        ("fprocess", "sleep 300"),
        ("exec_timeout", "300ms"),
    ]);
    let reply = post(wd.addr, "/", "").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(eventually(Duration::from_secs(3), || wd.children().is_empty()).await);
}

#[tokio::test]
async fn exec_timeout_mid_stream_aborts_the_response() {
    let dir = tempfile::tempdir().unwrap();
    let slow = script(dir.path(), "slow.sh", "echo started\nsleep 300");
    let wd = Watchdog::start_in(
        dir,
        &[
            ("mode", "stream"),
            ("fprocess", &format!("sh {}", slow.display())),
            ("exec_timeout", "300ms"),
        ],
    );
    let request = Request::post("/").body(Chunks::new(0, 0)).unwrap();
    assert!(send(wd.addr, request).await.is_err());
    assert!(eventually(Duration::from_secs(3), || wd.children().is_empty()).await);
}

#[tokio::test]
async fn output_streams_before_the_process_ends() {
    let dir = tempfile::tempdir().unwrap();
    let ticker = script(dir.path(), "ticker.sh", "echo tick\nsleep 1\necho tock");
    let wd = Watchdog::start_in(
        dir,
        &[
            ("mode", "stream"),
            ("fprocess", &format!("sh {}", ticker.display())),
        ],
    );
    let stream = tokio::net::TcpStream::connect(wd.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let started = std::time::Instant::now();
    let response = sender
        .send_request(
            Request::post("/")
                .header("host", "wd")
                .body(Chunks::new(0, 0))
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"tick\n");
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "first chunk was held back"
    );
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"tock\n");
}

#[tokio::test]
async fn bodies_over_max_body_bytes_are_413() {
    let wd = Watchdog::start(&[
        ("mode", "stream"),
        ("fprocess", "wc -c"),
        ("max_body_bytes", "1k"),
    ]);
    let request = Request::post("/").body(Chunks::new(8, 512)).unwrap();
    let reply = send(wd.addr, request).await.unwrap();
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn resource_use_arrives_as_trailers_when_the_client_accepts_them() {
    let wd = Watchdog::start(&[("mode", "stream"), ("fprocess", "cat")]);
    let stream = tokio::net::TcpStream::connect(wd.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::post("/")
        .header("host", "wd")
        .header("te", "trailers")
        .body(Chunks::new(2, 1000))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("no trailers");
    assert_eq!(collected.to_bytes().len(), 2000);
    for name in [
        "x-cpu-user-seconds",
        "x-cpu-system-seconds",
        "x-max-rss-bytes",
    ] {
        assert!(trailers.contains_key(name), "{name} missing: {trailers:?}");
    }
}

#[tokio::test]
async fn leftover_background_processes_do_not_hold_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let leaver = script(dir.path(), "leaver.sh", "sleep 300 &\necho done");
    let wd = Watchdog::start_in(
        dir,
        &[
            ("mode", "stream"),
            ("fprocess", &format!("sh {}", leaver.display())),
        ],
    );
    let reply = tokio::time::timeout(Duration::from_secs(5), post(wd.addr, "/", ""))
        .await
        .expect("the response waited for the background process");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "done\n");
    assert!(eventually(Duration::from_secs(3), || wd.children().is_empty()).await);
}

#[tokio::test]
async fn a_process_that_escapes_its_group_does_not_hold_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let escaper = script(dir.path(), "escape.sh", "setsid sleep 30 &\necho done");
    let silent = script(dir.path(), "silent.sh", "setsid sleep 30 &\nexit 0");
    for (fprocess, expected) in [(escaper, "done\n"), (silent, "")] {
        let dir = tempfile::tempdir().unwrap();
        let wd = Watchdog::start_in(
            dir,
            &[
                ("mode", "stream"),
                ("fprocess", &format!("sh {}", fprocess.display())),
                ("exec_timeout", "5s"),
            ],
        );
        let started = std::time::Instant::now();
        let reply = post(wd.addr, "/", "").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), expected);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
