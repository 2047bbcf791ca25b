//! Prometheus metrics on metrics_port count exactly what was served.

use crate::util;

use std::time::Duration;

use http::StatusCode;
use util::*;

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn counts_requests_by_code_and_method() {
    let dir = tempfile::tempdir().unwrap();
    let maybe = script(dir.path(), "maybe.sh", "read x\n[ \"$x\" = ok ]");
    let wd = Watchdog::start_in(dir, &[("fprocess", &format!("sh {}", maybe.display()))]);
    for _ in 0..7 {
        assert_eq!(post(wd.addr, "/", "ok\n").await.status, StatusCode::OK);
    }
    for _ in 0..2 {
        assert_eq!(
            post(wd.addr, "/", "bad\n").await.status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(get(wd.addr, "/_/health").await.status, StatusCode::OK);

    let reply = get(wd.metrics, "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.text();
    assert_eq!(
        value(&text, r#"http_requests_total{code="200",method="POST"}"#),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"http_requests_total{code="500",method="POST"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"http_request_duration_seconds_count{code="200",method="POST"}"#
        ),
        Some(7.0)
    );
    assert_eq!(value(&text, "http_requests_in_flight"), Some(0.0));
    // Health probes are not function calls.
    assert!(!text.contains(r#"method="GET""#), "{text}");
}

#[tokio::test]
async fn in_flight_gauge_counts_running_requests() {
    let wd = Watchdog::start(&[("fprocess", "sleep 1")]);
    let calls: Vec<_> = (0..3)
        .map(|_| tokio::spawn(post(wd.addr, "/", "")))
        .collect();
    assert!(eventually(Duration::from_secs(3), || wd.children().len() == 3).await);
    let text = get(wd.metrics, "/metrics").await.text();
    assert_eq!(value(&text, "http_requests_in_flight"), Some(3.0), "{text}");
    for call in calls {
        call.await.unwrap();
    }
    let text = get(wd.metrics, "/metrics").await.text();
    assert_eq!(value(&text, "http_requests_in_flight"), Some(0.0));
}

#[tokio::test]
async fn other_paths_on_the_metrics_port_are_404() {
    let wd = Watchdog::start(&[("fprocess", "cat")]);
    assert_eq!(get(wd.metrics, "/").await.status, StatusCode::NOT_FOUND);
}
