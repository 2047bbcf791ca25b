//! `http` mode: one long-lived upstream process, supervised and proxied.
//!
//! The upstream in these tests is another `fwatchdog` (fork mode, `cat`),
//! started through `env` so it gets its own configuration: a real HTTP
//! server that echoes bodies.

use crate::util;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use util::*;

/// A script that optionally waits, then becomes an echoing HTTP server on `port`.
fn upstream_script(dir: &Path, port: u16, delay: &str) -> String {
    let path = script(
        dir,
        "upstream.sh",
        &format!(
            "sleep {delay}\nexec env fprocess=cat mode=fork port={port} metrics_port=0 \
             bind_address=127.0.0.1 suppress_lock=true {BIN}"
        ),
    );
    format!("sh {}", path.display())
}

fn start(delay: &str) -> Watchdog {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let fprocess = upstream_script(dir.path(), port, delay);
    Watchdog::start_in(
        dir,
        &[
            ("mode", "http"),
            ("fprocess", &fprocess),
            ("upstream_url", &format!("http://127.0.0.1:{port}")),
        ],
    )
}

async fn health(wd: &Watchdog) -> StatusCode {
    get(wd.addr, "/_/health").await.status
}

async fn wait_healthy(wd: &Watchdog, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if health(wd).await == StatusCode::OK {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn proxies_requests_to_the_upstream() {
    let wd = start("0");
    assert!(
        wait_healthy(&wd, Duration::from_secs(5)).await,
        "{}",
        wd.log()
    );
    let request = Request::post("/a/path?q=1")
        .header("X-Custom", "kept")
        .header("Content-Type", "text/plain")
        .body(Full::new(Bytes::from_static(b"through the proxy")))
        .unwrap();
    let reply = send(wd.addr, request).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "through the proxy");
    assert_eq!(reply.header("x-cold-start"), Some("true"));
    assert!(reply.header("x-duration-seconds").is_some());
    assert!(reply.header("x-served-by").is_some());
}

#[tokio::test]
async fn request_details_reach_the_upstream() {
    // The upstream is a fork-mode watchdog running `env`: it reports what it received.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = script(
        dir.path(),
        "upstream.sh",
        &format!(
            "exec env fprocess=env mode=fork port={port} metrics_port=0 bind_address=127.0.0.1 \
             suppress_lock=true {BIN}"
        ),
    );
    let wd = Watchdog::start_in(
        dir,
        &[
            ("mode", "http"),
            ("fprocess", &format!("sh {}", path.display())),
            ("upstream_url", &format!("http://127.0.0.1:{port}")),
        ],
    );
    assert!(wait_healthy(&wd, Duration::from_secs(5)).await);
    let request = Request::put("/deep/path?x=y")
        .header("X-Custom", "kept")
        .header("Connection", "keep-alive, X-Hop")
        .header("X-Hop", "dropped")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let env = send(wd.addr, request).await.unwrap().text();
    assert!(env.contains("Http_Method=PUT"), "{env}");
    assert!(env.contains("Http_Path=/deep/path"), "{env}");
    assert!(env.contains("Http_Query=x=y"), "{env}");
    assert!(env.contains("Http_X_Custom=kept"), "{env}");
    assert!(
        !env.contains("Http_X_Hop"),
        "hop-by-hop header forwarded:\n{env}"
    );
}

#[tokio::test]
async fn reports_healthy_only_once_the_upstream_accepts_connections() {
    let wd = start("0.6");
    assert_eq!(health(&wd).await, StatusCode::SERVICE_UNAVAILABLE);
    let reply = post(wd.addr, "/", "early").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.text().contains("not ready"), "{}", reply.text());
    assert!(wait_healthy(&wd, Duration::from_secs(5)).await);
    assert_eq!(post(wd.addr, "/", "later").await.text(), "later");
}

#[tokio::test]
async fn survives_the_upstream_being_killed_and_is_unhealthy_meanwhile() {
    let wd = start("0.5");
    assert!(wait_healthy(&wd, Duration::from_secs(5)).await);
    assert_eq!(post(wd.addr, "/", "before").await.text(), "before");
    let children = wd.children();
    assert_eq!(children.len(), 1, "{children:?}");
    // SAFETY: killing our own test process's grandchild.
    unsafe { libc::kill(children[0], libc::SIGKILL) };

    let mut saw_unhealthy = false;
    for _ in 0..100 {
        if health(&wd).await == StatusCode::SERVICE_UNAVAILABLE {
            saw_unhealthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(saw_unhealthy, "health stayed 200 with the upstream dead");
    assert!(
        wait_healthy(&wd, Duration::from_secs(10)).await,
        "{}",
        wd.log()
    );
    assert_eq!(post(wd.addr, "/", "after").await.text(), "after");
    let restarted = wd.children();
    assert_eq!(restarted.len(), 1);
    assert_ne!(restarted, children);
    assert!(wd.log().contains("restarting the upstream process"));
}

#[tokio::test]
async fn an_upstream_that_cannot_start_is_retried_not_fatal() {
    let wd = Watchdog::start(&[
        ("mode", "http"),
        ("fprocess", "/no/such/server"),
        ("upstream_url", &format!("http://127.0.0.1:{}", free_port())),
    ]);
    // Backoff starts at 100 ms: two restarts come well within 5 s.
    let retried = eventually(Duration::from_secs(5), || {
        wd.log().matches("restarting the upstream process").count() >= 2
    })
    .await;
    let log = wd.log();
    assert!(retried, "{log}");
    assert!(log.contains("cannot exec the upstream process"), "{log}");
    assert_eq!(health(&wd).await, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn an_upstream_slower_than_exec_timeout_is_504() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = script(
        dir.path(),
        "upstream.sh",
        &format!(
            "exec env fprocess='sleep 5' exec_timeout=0 mode=fork port={port} metrics_port=0 \
             bind_address=127.0.0.1 suppress_lock=true {BIN}"
        ),
    );
    let wd = Watchdog::start_in(
        dir,
        &[
            ("mode", "http"),
            ("fprocess", &format!("sh {}", path.display())),
            ("upstream_url", &format!("http://127.0.0.1:{port}")),
            ("exec_timeout", "300ms"),
        ],
    );
    assert!(wait_healthy(&wd, Duration::from_secs(5)).await);
    let reply = post(wd.addr, "/", "").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn sigterm_stops_the_upstream_too() {
    let mut wd = start("0");
    assert!(wait_healthy(&wd, Duration::from_secs(5)).await);
    let upstream = wd.children()[0];
    wd.signal(libc::SIGTERM);
    let status = wd
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("watchdog did not exit");
    assert!(status.success());
    assert!(
        !process_exists(upstream)
            || eventually(Duration::from_secs(2), || !process_exists(upstream)).await
    );
}

#[tokio::test]
async fn the_upstream_dies_with_a_watchdog_killed_outright() {
    let wd = start("0");
    assert!(wait_healthy(&wd, Duration::from_secs(5)).await);
    let upstream = wd.children()[0];
    wd.signal(libc::SIGKILL);
    assert!(
        eventually(Duration::from_secs(3), || !process_exists(upstream)
            || std::fs::read_to_string(format!("/proc/{upstream}/stat"))
                .is_ok_and(|s| s.contains(") Z ")))
        .await,
        "upstream {upstream} outlived its watchdog"
    );
}
