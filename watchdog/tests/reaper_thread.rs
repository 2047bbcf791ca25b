//! The fallback reaper (`reaper=thread`, used where pidfds are unavailable)
//! keeps every process guarantee the default one gives.

use crate::util;

use std::time::Duration;

use http::StatusCode;
use util::*;

const THREAD: (&str, &str) = ("reaper", "thread");

#[tokio::test]
async fn echoes_and_reports_resource_use() {
    let wd = Watchdog::start(&[THREAD, ("fprocess", "cat")]);
    for i in 0..20 {
        let body = format!("call {i}");
        let reply = post(wd.addr, "/", body.clone()).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), body);
        assert!(reply.header("x-max-rss-bytes").is_some());
    }
    assert!(eventually(Duration::from_secs(3), || wd.children().is_empty()).await);
}

#[tokio::test]
async fn exit_codes_are_reported() {
    let wd = Watchdog::start(&[THREAD, ("fprocess", "false")]);
    let reply = post(wd.addr, "/", "").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.text(), "function failed: exit status 1\n");
}

#[tokio::test]
async fn exec_timeout_kills_grandchildren() {
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
            THREAD,
            ("fprocess", &format!("sh {}", forker.display())),
            ("exec_timeout", "300ms"),
        ],
    );
    assert_eq!(
        post(wd.addr, "/", "").await.status,
        StatusCode::GATEWAY_TIMEOUT
    );
    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(eventually(Duration::from_secs(3), || !process_exists(grandchild)).await);
}

#[tokio::test]
async fn leftovers_are_killed_when_the_leader_exits() {
    let dir = tempfile::tempdir().unwrap();
    let leaver = script(dir.path(), "leaver.sh", "sleep 300 &\necho done");
    for mode in ["fork", "stream"] {
        let dir = tempfile::tempdir().unwrap();
        let wd = Watchdog::start_in(
            dir,
            &[
                THREAD,
                ("mode", mode),
                ("fprocess", &format!("sh {}", leaver.display())),
            ],
        );
        let reply = tokio::time::timeout(Duration::from_secs(5), post(wd.addr, "/", ""))
            .await
            .expect("the response waited for the background process");
        assert_eq!(reply.text(), "done\n");
        assert!(eventually(Duration::from_secs(3), || wd.children().is_empty()).await);
    }
}

#[tokio::test]
async fn concurrent_calls_each_get_their_own_exit() {
    let wd = Watchdog::start(&[THREAD, ("fprocess", "cat")]);
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let addr = wd.addr;
            tokio::spawn(async move {
                let body = format!("n{i}").repeat(i + 1);
                post(addr, "/", body.clone()).await.text() == body
            })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap());
    }
}

#[tokio::test]
async fn a_client_that_hangs_up_takes_its_process_with_it() {
    use tokio::io::AsyncWriteExt;
    let wd = Watchdog::start(&[THREAD, ("fprocess", "sleep 300"), ("exec_timeout", "0")]);
    let mut client = tokio::net::TcpStream::connect(wd.addr).await.unwrap();
    client
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(3), || wd.children().len() == 1).await);
    drop(client);
    assert!(eventually(Duration::from_secs(3), || wd.children().is_empty()).await);
}
