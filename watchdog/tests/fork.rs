//! `fork` mode: a process per request, output buffered, status from the
//! exit code.

use crate::util;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use util::*;

#[tokio::test]
async fn echoes_every_byte_value() {
    let wd = Watchdog::start(&[("fprocess", "cat")]);
    let body: Vec<u8> = (0..=255u8).cycle().take(256 * 4).collect();
    let reply = post(wd.addr, "/", body.clone()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, body);
}

#[tokio::test]
async fn empty_body_gives_empty_output() {
    let wd = Watchdog::start(&[("fprocess", "cat")]);
    let reply = post(wd.addr, "/", "").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.is_empty());
    let reply = get(wd.addr, "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.is_empty());
}

#[tokio::test]
async fn bodies_larger_than_pipe_buffers_do_not_deadlock() {
    let wd = Watchdog::start(&[("fprocess", "cat")]);
    let body: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let reply = post(wd.addr, "/", body.clone()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), body.len());
    assert!(reply.body == body);
}

#[tokio::test]
async fn request_is_described_in_http_variables() {
    let wd = Watchdog::start(&[("fprocess", "env")]);
    let request = Request::put("/some/path?name=value&x=1")
        .header("X-Custom-Header", "custom value")
        .body(Full::new(Bytes::from_static(b"abc")))
        .unwrap();
    let reply = send(wd.addr, request).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let env = reply.text();
    for expected in [
        "Http_Method=PUT",
        "Http_Path=/some/path",
        "Http_Query=name=value&x=1",
        "Http_X_Custom_Header=custom value",
        "Http_Content_Length=3",
    ] {
        assert!(
            env.lines().any(|l| l == expected),
            "{expected} missing from:\n{env}"
        );
    }
}

#[tokio::test]
async fn cgi_headers_can_be_turned_off() {
    let wd = Watchdog::start(&[("fprocess", "env"), ("cgi_headers", "false")]);
    let reply = post(wd.addr, "/x", "").await;
    assert!(!reply.text().contains("Http_"), "{}", reply.text());
}

#[tokio::test]
async fn non_zero_exit_is_500_with_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let fail = script(
        dir.path(),
        "fail.sh",
        "echo 'partial output'\necho 'it broke: bad input' >&2\nexit 3",
    );
    let wd = Watchdog::start_in(dir, &[("fprocess", &format!("sh {}", fail.display()))]);
    let reply = post(wd.addr, "/", "x").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.text(), "it broke: bad input\n");
}

#[tokio::test]
async fn non_zero_exit_without_stderr_names_the_status() {
    let wd = Watchdog::start(&[("fprocess", "false")]);
    let reply = post(wd.addr, "/", "").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.text(), "function failed: exit status 1\n");
}

#[tokio::test]
async fn combine_output_puts_stderr_in_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let both = script(dir.path(), "both.sh", "echo out\necho err >&2");
    let wd = Watchdog::start_in(
        dir,
        &[
            ("fprocess", &format!("sh {}", both.display())),
            ("combine_output", "true"),
        ],
    );
    let reply = post(wd.addr, "/", "").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "out\nerr\n");
}

#[tokio::test]
async fn a_command_that_cannot_be_executed_is_a_500_saying_so() {
    let wd = Watchdog::start(&[("fprocess", "/no/such/program --flag")]);
    let reply = post(wd.addr, "/", "x").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let text = reply.text();
    assert!(
        text.contains("cannot exec fprocess") && text.contains("/no/such/program"),
        "{text}"
    );
    assert!(text.contains("No such file"), "{text}");
}

#[tokio::test]
async fn exec_timeout_kills_grandchildren_and_answers_504() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let forker = script(
        dir.path(),
        "forker.sh",
        &format!("sleep 300 &\necho $! > {}\nwait", pidfile.display()),
    );
    let wd = Watchdog::start_in(
        dir,
        &[
            ("fprocess", &format!("sh {}", forker.display())),
            ("exec_timeout", "500ms"),
        ],
    );
    let started = std::time::Instant::now();
    let reply = post(wd.addr, "/", "").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(reply.text().contains("exec_timeout"), "{}", reply.text());
    assert!(started.elapsed() < Duration::from_secs(5));
    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(3), || !process_exists(grandchild)).await,
        "grandchild {grandchild} survived (or is a zombie)"
    );
    assert!(eventually(Duration::from_secs(3), || wd.children().is_empty()).await);
}

#[tokio::test]
async fn leftover_background_processes_do_not_hold_the_response() {
    // The shell exits at once but leaves `sleep` holding stdout open.
    let dir = tempfile::tempdir().unwrap();
    let leaver = script(dir.path(), "leaver.sh", "sleep 300 &\necho done");
    let wd = Watchdog::start_in(dir, &[("fprocess", &format!("sh {}", leaver.display()))]);
    let reply = tokio::time::timeout(Duration::from_secs(5), post(wd.addr, "/", ""))
        .await
        .expect("the response waited for the background process");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "done\n");
    assert!(eventually(Duration::from_secs(3), || wd.children().is_empty()).await);
}

#[tokio::test]
async fn a_client_that_hangs_up_takes_its_process_with_it() {
    use tokio::io::AsyncWriteExt;
    let wd = Watchdog::start(&[("fprocess", "sleep 300"), ("exec_timeout", "0")]);
    let mut client = tokio::net::TcpStream::connect(wd.addr).await.unwrap();
    client
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(3), || wd.children().len() == 1).await);
    drop(client);
    assert!(
        eventually(Duration::from_secs(3), || wd.children().is_empty()).await,
        "process kept running after the client left"
    );
}

#[tokio::test]
async fn a_hundred_concurrent_requests_all_get_their_own_answer() {
    let wd = Watchdog::start(&[("fprocess", "cat")]);
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let addr = wd.addr;
            tokio::spawn(async move {
                let body = format!("request number {i} ").repeat(i + 1);
                let reply = post(addr, "/", body.clone()).await;
                (reply.status, reply.text() == body)
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), (StatusCode::OK, true));
    }
    assert!(
        eventually(Duration::from_secs(3), || wd.children().is_empty()).await,
        "zombies left"
    );
}

#[tokio::test]
async fn max_inflight_turns_excess_requests_away_with_429() {
    let wd = Watchdog::start(&[("fprocess", "sleep 1"), ("max_inflight", "1")]);
    let first = tokio::spawn(post(wd.addr, "/", ""));
    assert!(eventually(Duration::from_secs(3), || wd.children().len() == 1).await);
    let second = post(wd.addr, "/", "").await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        second.text().contains("max_inflight=1"),
        "{}",
        second.text()
    );
    assert_eq!(
        get(wd.addr, "/_/ready").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    assert_eq!(get(wd.addr, "/_/ready").await.status, StatusCode::OK);
    assert_eq!(post(wd.addr, "/", "").await.status, StatusCode::OK);
}

#[tokio::test]
async fn bodies_over_max_body_bytes_are_413() {
    let wd = Watchdog::start(&[("fprocess", "cat"), ("max_body_bytes", "1k")]);
    // Declared length: refused before anything runs.
    let reply = post(wd.addr, "/", vec![b'x'; 2048]).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.text().contains("max_body_bytes"), "{}", reply.text());
    // Chunked, no length: refused once the limit is crossed.
    let body = Chunks::new(4, 512);
    let reply = send(wd.addr, Request::post("/").body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    // At the limit: fine.
    let reply = post(wd.addr, "/", vec![b'z'; 1024]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), 1024);
}

#[tokio::test]
async fn output_over_max_output_bytes_is_an_error_not_a_truncation() {
    let wd = Watchdog::start(&[("fprocess", "cat"), ("max_output_bytes", "1k")]);
    let reply = post(wd.addr, "/", vec![b'x'; 4096]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.text().contains("max_output_bytes"),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn responses_carry_timing_identity_and_resource_use() {
    let wd = Watchdog::start(&[("fprocess", "cat")]);
    let first = post(wd.addr, "/", "one").await;
    let second = post(wd.addr, "/", "two").await;
    assert_eq!(first.header("x-cold-start"), Some("true"));
    assert_eq!(second.header("x-cold-start"), None);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for reply in [&first, &second] {
        let duration: f64 = reply.header("x-duration-seconds").unwrap().parse().unwrap();
        assert!(duration > 0.0 && duration < 5.0);
        assert_eq!(reply.header("x-served-by"), Some(hostname.trim()));
        let user: f64 = reply.header("x-cpu-user-seconds").unwrap().parse().unwrap();
        let system: f64 = reply
            .header("x-cpu-system-seconds")
            .unwrap()
            .parse()
            .unwrap();
        assert!(user >= 0.0 && system >= 0.0);
        let rss: u64 = reply.header("x-max-rss-bytes").unwrap().parse().unwrap();
        assert!(rss > 100 * 1024, "{rss}");
    }
}

#[tokio::test]
async fn cpu_time_of_a_busy_function_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let busy = script(
        dir.path(),
        "busy.sh",
        "i=0\nwhile [ $i -lt 200000 ]; do i=$((i+1)); done\necho $i",
    );
    let wd = Watchdog::start_in(dir, &[("fprocess", &format!("sh {}", busy.display()))]);
    let reply = post(wd.addr, "/", "").await;
    assert_eq!(reply.status, StatusCode::OK);
    let user: f64 = reply.header("x-cpu-user-seconds").unwrap().parse().unwrap();
    let system: f64 = reply
        .header("x-cpu-system-seconds")
        .unwrap()
        .parse()
        .unwrap();
    assert!(user + system > 0.01, "user {user} system {system}");
}

#[tokio::test]
async fn content_type_follows_the_request_unless_forced() {
    let wd = Watchdog::start(&[("fprocess", "cat")]);
    let request = Request::post("/")
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let reply = send(wd.addr, request).await.unwrap();
    assert_eq!(reply.header("content-type"), Some("application/json"));

    let forced = Watchdog::start(&[("fprocess", "cat"), ("content_type", "text/csv")]);
    let request = Request::post("/")
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from_static(b"a,b")))
        .unwrap();
    let reply = send(forced.addr, request).await.unwrap();
    assert_eq!(reply.header("content-type"), Some("text/csv"));
}

#[tokio::test]
async fn works_even_when_started_with_sigchld_ignored() {
    let wd = Watchdog::start_ignoring_sigchld(&[("fprocess", "cat"), ("exec_timeout", "3s")]);
    let reply = tokio::time::timeout(Duration::from_secs(5), post(wd.addr, "/", "still answered"))
        .await
        .expect("hung: exits were reaped by the kernel behind our back");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "still answered");
}

#[tokio::test]
async fn a_process_that_escapes_its_group_does_not_hold_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let escaper = script(dir.path(), "escape.sh", "setsid sleep 30 &\necho done");
    let wd = Watchdog::start_in(
        dir,
        &[
            ("fprocess", &format!("sh {}", escaper.display())),
            ("exec_timeout", "5s"),
        ],
    );
    let started = std::time::Instant::now();
    let reply = post(wd.addr, "/", "").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), "done\n");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_oversized_header_is_the_callers_fault() {
    let wd = Watchdog::start(&[("fprocess", "cat")]);
    let request = Request::post("/")
        .header("X-Big", "x".repeat(140 * 1024))
        .body(Full::new(Bytes::from_static(b"body")))
        .unwrap();
    let reply = send(wd.addr, request).await.unwrap();
    assert_eq!(
        reply.status,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn an_empty_body_is_described_as_length_zero() {
    let wd = Watchdog::start(&[("fprocess", "env")]);
    let env = get(wd.addr, "/").await.text();
    assert!(env.lines().any(|l| l == "Http_Content_Length=0"), "{env}");
}

#[tokio::test]
async fn a_huge_max_output_bytes_is_just_unlimited_in_practice() {
    let wd = Watchdog::start(&[
        ("fprocess", "cat"),
        ("max_output_bytes", "18446744073709551615"),
    ]);
    assert_eq!(post(wd.addr, "/", "fine").await.text(), "fine");
}
