//! read_timeout and write_timeout protect the watchdog from stalled clients.

use crate::util;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use util::*;

#[tokio::test]
async fn a_request_body_that_stalls_past_read_timeout_is_408() {
    let wd = Watchdog::start(&[("fprocess", "cat"), ("read_timeout", "300ms")]);
    let mut client = tokio::net::TcpStream::connect(wd.addr).await.unwrap();
    client
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("read_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(eventually(Duration::from_secs(3), || wd.children().is_empty()).await);
}

#[tokio::test]
async fn headers_that_never_finish_are_dropped_after_read_timeout() {
    let wd = Watchdog::start(&[("fprocess", "cat"), ("read_timeout", "300ms")]);
    let mut client = tokio::net::TcpStream::connect(wd.addr).await.unwrap();
    client
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "connection still open after read_timeout");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_write_timeout() {
    let wd = Watchdog::start(&[
        ("mode", "stream"),
        ("fprocess", "cat /dev/zero"),
        ("write_timeout", "300ms"),
        ("exec_timeout", "0"),
    ]);
    let mut client = tokio::net::TcpStream::connect(wd.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(3), || wd.children().len() == 1).await);
    // Read nothing: socket buffers fill, the watchdog's writes block.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        eventually(Duration::from_secs(3), || wd.children().is_empty()).await,
        "the process outlived a client that stopped reading"
    );
    let mut sink = vec![0u8; 1 << 20];
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match client.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "connection was not closed");
}
