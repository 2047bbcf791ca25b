//! Health lock, readiness, the Docker health probe, and graceful shutdown.

use crate::util;

use std::time::{Duration, Instant};

use http::StatusCode;
use util::*;

#[tokio::test]
async fn health_follows_the_lock_file() {
    let wd = Watchdog::start(&[("fprocess", "cat")]);
    assert!(wd.lock_path().exists(), "lock file not written at start");
    assert_eq!(get(wd.addr, "/_/health").await.status, StatusCode::OK);
    assert_eq!(get(wd.addr, "/_/ready").await.status, StatusCode::OK);

    std::fs::remove_file(wd.lock_path()).unwrap();
    let reply = get(wd.addr, "/_/health").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.text().contains("lock file missing"));
    assert_eq!(
        get(wd.addr, "/_/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    std::fs::write(wd.lock_path(), "").unwrap();
    assert_eq!(get(wd.addr, "/_/health").await.status, StatusCode::OK);
}

#[tokio::test]
async fn suppress_lock_writes_no_file_and_stays_healthy() {
    let wd = Watchdog::start(&[("fprocess", "cat"), ("suppress_lock", "true")]);
    assert!(!wd.lock_path().exists());
    assert_eq!(get(wd.addr, "/_/health").await.status, StatusCode::OK);
}

#[tokio::test]
async fn healthcheck_flag_reports_the_local_instance() {
    let wd = Watchdog::start(&[("fprocess", "cat")]);
    let port = wd.addr.port().to_string();
    let (status, _) = run_to_exit(&[("port", &port)], &["--healthcheck"]);
    assert!(status.success());

    std::fs::remove_file(wd.lock_path()).unwrap();
    let (status, stderr) = run_to_exit(&[("port", &port)], &["--healthcheck"]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("503"), "{stderr}");

    drop(wd);
    let (status, stderr) = run_to_exit(&[("port", &port)], &["--healthcheck"]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let slow = script(dir.path(), "slow.sh", "sleep 1\necho finished");
    let mut wd = Watchdog::start_in(
        dir,
        &[
            ("fprocess", &format!("sh {}", slow.display())),
            ("healthcheck_interval", "300ms"),
        ],
    );
    let call = tokio::spawn(post(wd.addr, "/", ""));
    assert!(eventually(Duration::from_secs(3), || wd.children().len() == 1).await);
    let signalled = Instant::now();
    wd.signal(libc::SIGTERM);

    // Draining: the lock goes and health turns 503 at once, but calls are
    // still served until healthcheck_interval has passed.
    assert!(eventually(Duration::from_secs(1), || !wd.lock_path().exists()).await);
    assert_eq!(
        get(wd.addr, "/_/health").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let reply = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "finished\n");
    let status = wd.wait_exit(Duration::from_secs(5)).await;
    assert!(status.expect("did not exit after draining").success());
    assert!(signalled.elapsed() >= Duration::from_millis(900));
    assert!(tokio::net::TcpStream::connect(wd.addr).await.is_err());
}

#[tokio::test]
async fn sigterm_keeps_accepting_during_healthcheck_interval() {
    let mut wd = Watchdog::start(&[("fprocess", "cat"), ("healthcheck_interval", "500ms")]);
    wd.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let reply = post(wd.addr, "/", "still here").await;
    assert_eq!(reply.text(), "still here");
    let status = wd.wait_exit(Duration::from_secs(5)).await;
    assert!(status.expect("did not exit").success());
}

#[tokio::test]
async fn idle_instance_exits_promptly_on_sigterm() {
    let mut wd = Watchdog::start(&[("fprocess", "cat")]);
    let started = Instant::now();
    wd.signal(libc::SIGTERM);
    let status = wd.wait_exit(Duration::from_secs(5)).await;
    assert!(status.expect("did not exit").success());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_second_signal_kills_running_functions_and_exits_at_once() {
    let mut wd = Watchdog::start(&[
        ("fprocess", "sleep 300"),
        ("exec_timeout", "0"),
        ("healthcheck_interval", "30s"),
    ]);
    let _call = tokio::spawn(post(wd.addr, "/", ""));
    assert!(eventually(Duration::from_secs(3), || wd.children().len() == 1).await);
    let child = wd.children()[0];
    wd.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(100)).await;
    wd.signal(libc::SIGTERM);
    let status = wd
        .wait_exit(Duration::from_secs(3))
        .await
        .expect("did not exit");
    assert_eq!(status.code(), Some(130));
    assert!(
        eventually(Duration::from_secs(3), || !process_exists(child)).await,
        "function outlived the watchdog"
    );
}

/// With `port=0`, a supervisor learns the port actually bound from
/// `port_file` (written whole once listening); a file that cannot be
/// written stops start-up naming the variable.
#[tokio::test]
async fn port_file_tells_the_port_bound() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("port");
    let wd = Watchdog::start(&[("fprocess", "cat"), ("port_file", file.to_str().unwrap())]);
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written, wd.addr.port().to_string());
    assert_eq!(get(wd.addr, "/_/health").await.status, StatusCode::OK);

    let missing = dir.path().join("no/such/dir/port");
    let (status, stderr) = run_to_exit(
        &[
            ("fprocess", "cat"),
            ("port", "0"),
            ("metrics_port", "0"),
            ("port_file", missing.to_str().unwrap()),
        ],
        &[],
    );
    assert!(!status.success());
    assert!(stderr.contains("port_file"), "{stderr}");
}
