//! Async calls as the README's "Asynchronous calls" section promises them:
//! enqueue and bulk routes, execution records and outputs, retries, dead
//! letters, callbacks, retention, per-function concurrency, and durability
//! across SIGKILL and SIGTERM, through the real gateway and the process
//! provider's real function processes.

use crate::util;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use faas_common::api::{Execution, ExecutionStatus};
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use util::*;

// ---------------------------------------------------------------- helpers

/// POSTs `body` to `path` with extra headers; `Err` when the gateway
/// cannot be reached.
async fn try_post(
    addr: SocketAddr,
    path: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let mut builder = Request::post(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    send(addr, builder.body(Full::new(body.into())).unwrap()).await
}

async fn post_with(
    addr: SocketAddr,
    path: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> Reply {
    try_post(addr, path, body, headers).await.unwrap()
}

/// The 202 of an enqueue: its id, after checking that the `X-Call-Id`
/// header and the JSON agree and say `queued`.
fn accepted_id(reply: &Reply, function: &str) -> String {
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    let id = body["id"].as_str().expect("an id").to_owned();
    assert!(!id.is_empty());
    assert_eq!(reply.header("x-call-id"), Some(id.as_str()), "{body}");
    assert_eq!(body["function"], function, "{body}");
    assert_eq!(body["status"], "queued", "{body}");
    id
}

/// Enqueues one call to `/async-function/{target}`; its id.
async fn enqueue(addr: SocketAddr, target: &str, body: &str, headers: &[(&str, &str)]) -> String {
    let reply = post_with(
        addr,
        &format!("/async-function/{target}"),
        body.to_owned(),
        headers,
    )
    .await;
    let function = target.split(['/', '?']).next().unwrap();
    accepted_id(&reply, function)
}

/// An execution record, or `None` on 404.
async fn record(addr: SocketAddr, id: &str) -> Option<Execution> {
    let reply = get(addr, &format!("/system/executions/{id}")).await;
    match reply.status {
        StatusCode::NOT_FOUND => None,
        StatusCode::OK => Some(serde_json::from_slice(&reply.body).unwrap()),
        other => panic!("{other}: {}", reply.text()),
    }
}

/// `POST /system/executions/bulk`.
async fn records(addr: SocketAddr, ids: &[String]) -> Vec<Option<Execution>> {
    let reply = post(addr, "/system/executions/bulk", json!(ids).to_string()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    serde_json::from_slice(&reply.body).unwrap()
}

/// `GET /system/executions?{query}`.
async fn list(addr: SocketAddr, query: &str) -> Vec<Execution> {
    let reply = get(addr, &format!("/system/executions?{query}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    serde_json::from_slice(&reply.body).unwrap()
}

fn ids_of(records: &[Execution]) -> Vec<&str> {
    records.iter().map(|e| e.id.as_str()).collect()
}

/// Waits until every call has reached a final state; their records.
async fn until_final(addr: SocketAddr, ids: &[String], limit: Duration) -> Vec<Execution> {
    let deadline = Instant::now() + limit;
    loop {
        let found = records(addr, ids).await;
        if found
            .iter()
            .all(|r| r.as_ref().is_some_and(|e| e.status.is_final()))
        {
            return found.into_iter().map(Option::unwrap).collect();
        }
        if Instant::now() > deadline {
            let pending: Vec<_> = found
                .iter()
                .zip(ids)
                .filter(|(r, _)| !r.as_ref().is_some_and(|e| e.status.is_final()))
                .take(5)
                .collect();
            panic!("not final within {limit:?}: {pending:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn until_one_final(addr: SocketAddr, id: &str) -> Execution {
    until_final(addr, &[id.to_owned()], Duration::from_secs(15))
        .await
        .remove(0)
}

/// Waits until `cond` holds for the call's record; the record.
async fn until_record(
    addr: SocketAddr,
    id: &str,
    limit: Duration,
    cond: impl Fn(&Execution) -> bool,
) -> Execution {
    let deadline = Instant::now() + limit;
    loop {
        let found = record(addr, id).await;
        if let Some(e) = found.as_ref().filter(|e| cond(e)) {
            return e.clone();
        }
        assert!(Instant::now() < deadline, "{id}: {found:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn output(addr: SocketAddr, id: &str) -> Reply {
    get(addr, &format!("/system/executions/{id}/output")).await
}

fn time(rfc3339: &Option<String>) -> SystemTime {
    humantime::parse_rfc3339(rfc3339.as_deref().expect("a timestamp")).unwrap()
}

#[track_caller]
fn assert_succeeded_once(e: &Execution) {
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:?}");
    assert_eq!(e.attempts, 1, "{e:?}");
    assert_eq!(e.status_code, Some(200), "{e:?}");
    assert_eq!(e.error, None, "{e:?}");
}

/// A random duration in `[low, high)`.
fn random_between(low: Duration, high: Duration) -> Duration {
    let span = (high - low).as_millis();
    low + Duration::from_millis((uuid::Uuid::new_v4().as_u128() % span) as u64)
}

// ------------------------------------------------------- enqueue and run

const CALL_STACK: &str = r#"
functions:
  env:
    fprocess: env
    environment:
      content_type: text/x-env
  echo:
    fprocess: cat
"#;

#[tokio::test]
async fn tinyfaas_clients_queue_a_call_with_their_async_header() {
    let gw = Gateway::start(CALL_STACK, &[], &[]);
    // tinyFaaS's header, any value: the call is queued, path and query kept.
    let reply = post_with(
        gw.addr,
        "/function/env/some/rest?a=1",
        "hi",
        &[("X-tinyFaaS-Async", "true")],
    )
    .await;
    let id = accepted_id(&reply, "env");
    let e = until_one_final(gw.addr, &id).await;
    assert_succeeded_once(&e);
    let env = output(gw.addr, &id).await.text();
    assert!(env.lines().any(|l| l == "Http_Path=/some/rest"), "{env}");
    assert!(env.lines().any(|l| l == "Http_Query=a=1"), "{env}");
    assert!(
        !env.contains("Tinyfaas"),
        "the header is the gateway's: {env}"
    );
    // Without it, the same call is answered at once.
    let sync = post_with(gw.addr, "/function/echo", "hi", &[]).await;
    assert_eq!((sync.status, sync.text().as_str()), (StatusCode::OK, "hi"));
    // The queue's own refusals hold: an unknown function is 404.
    let unknown = post_with(gw.addr, "/function/nope", "x", &[("X-tinyFaaS-Async", "1")]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text());
}

#[tokio::test]
async fn async_call_is_queued_run_once_and_its_output_kept() {
    let gw = Gateway::start(CALL_STACK, &[], &[]);

    // The caller's X-Call-Id is the id, and the function sees it, the
    // path after its name and the query.
    let id = enqueue(
        gw.addr,
        "env/some/rest?a=1&b=two",
        "hi",
        &[("X-Call-Id", "given-call-1")],
    )
    .await;
    assert_eq!(id, "given-call-1");
    let e = until_one_final(gw.addr, &id).await;
    assert_succeeded_once(&e);
    assert_eq!(e.function, "env");
    assert!(e.duration_seconds.is_some_and(|d| d > 0.0), "{e:?}");
    let (created, started, finished) = (
        humantime::parse_rfc3339(&e.created_at).unwrap(),
        time(&e.started_at),
        time(&e.finished_at),
    );
    assert!(created <= started && started <= finished, "{e:?}");
    let out = output(gw.addr, &id).await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text());
    assert_eq!(out.header("content-type"), Some("text/x-env"));
    let env = out.text();
    for line in [
        "Http_X_Call_Id=given-call-1",
        "Http_Path=/some/rest",
        "Http_Query=a=1&b=two",
        "Http_Method=POST",
    ] {
        assert!(env.lines().any(|l| l == line), "no {line} in:\n{env}");
    }

    // The record's JSON has the README's field names.
    let raw: Value =
        serde_json::from_slice(&get(gw.addr, "/system/executions/given-call-1").await.body)
            .unwrap();
    for key in [
        "id",
        "function",
        "status",
        "createdAt",
        "startedAt",
        "finishedAt",
        "attempts",
        "statusCode",
        "durationSeconds",
        "error",
    ] {
        assert!(raw.get(key).is_some(), "no {key} in {raw}");
    }
    assert_eq!(raw["status"], "succeeded");
    // What the replica reported about the call is kept with it.
    let figures = &raw["figures"];
    assert!(figures["functionSeconds"].as_f64().unwrap() > 0.0, "{raw}");
    assert!(figures["cpuUserSeconds"].as_f64().is_some(), "{raw}");
    assert!(figures["maxRssBytes"].as_u64().unwrap() > 0, "{raw}");
    assert!(
        figures["servedBy"].as_str().unwrap().starts_with("env-"),
        "{raw}"
    );

    // A used X-Call-Id is refused, never silently replaced: the record
    // under it stays the first caller's.
    let again = post_with(
        gw.addr,
        "/async-function/echo",
        "x",
        &[("X-Call-Id", "given-call-1")],
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
    assert!(again.text().contains("given-call-1"), "{}", again.text());
    let unusable = post_with(
        gw.addr,
        "/async-function/echo",
        "x",
        &[("X-Call-Id", "a/b")],
    )
    .await;
    assert_eq!(
        unusable.status,
        StatusCode::BAD_REQUEST,
        "{}",
        unusable.text()
    );

    // Without one, the gateway makes the id; the output keeps the body and
    // its content type.
    let id = enqueue(
        gw.addr,
        "echo",
        r#"{"n": 1}"#,
        &[("Content-Type", "application/json")],
    )
    .await;
    assert_succeeded_once(&until_one_final(gw.addr, &id).await);
    let out = output(gw.addr, &id).await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(out.header("content-type"), Some("application/json"));
    assert_eq!(out.text(), r#"{"n": 1}"#);

    assert_eq!(
        get(gw.addr, "/system/executions/no-such-call").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        output(gw.addr, "no-such-call").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn concurrent_calls_with_one_call_id_one_wins_the_others_are_refused() {
    let gw = Gateway::start(CALL_STACK, &[], &[]);
    let mut tasks = JoinSet::new();
    for n in 0..16 {
        let addr = gw.addr;
        tasks.spawn(async move {
            let reply = post_with(
                addr,
                &format!("/async-function/env?n={n}"),
                "",
                &[("X-Call-Id", "same-id")],
            )
            .await;
            (reply, n)
        });
    }
    let mut accepted = Vec::new();
    let mut refused = 0;
    while let Some(call) = tasks.join_next().await {
        let (reply, n) = call.unwrap();
        match reply.status {
            StatusCode::ACCEPTED => accepted.push((accepted_id(&reply, "env"), n)),
            StatusCode::CONFLICT => refused += 1,
            other => panic!("{other}: {}", reply.text()),
        }
    }
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert_eq!(refused, 15);
    let (id, n) = &accepted[0];
    assert_eq!(id, "same-id");
    let e = until_one_final(gw.addr, id).await;
    assert_succeeded_once(&e);
    // The one accepted ran its own request, under its id.
    let env = output(gw.addr, id).await.text();
    let lines: Vec<&str> = env.lines().collect();
    assert!(lines.contains(&"Http_X_Call_Id=same-id"), "{env}");
    assert!(
        lines.contains(&format!("Http_Query=n={n}").as_str()),
        "{env}"
    );
}

#[tokio::test]
async fn enqueue_refuses_what_it_cannot_run_and_keeps_no_record_of_it() {
    let gw = Gateway::start(
        CALL_STACK,
        &[],
        &["--max-async-body", "1k", "--async-max-output", "100"],
    );
    let refused = [
        ("/async-function/nope", "x".repeat(10), vec![], 404),
        ("/bulk-function/nope", r#"["a"]"#.into(), vec![], 404),
        ("/async-function/bad!name", "x".into(), vec![], 400),
        ("/async-function/echo", "x".repeat(2000), vec![], 413),
        (
            "/async-function/echo",
            "x".into(),
            vec![("X-Callback-Url", "ftp://127.0.0.1/done")],
            400,
        ),
        (
            "/async-function/echo",
            "x".into(),
            vec![("X-Callback-Url", "/done")],
            400,
        ),
        (
            "/async-function/echo",
            "x".into(),
            vec![("X-Callback-Url", "not a url")],
            400,
        ),
    ];
    for (path, body, headers, status) in refused {
        let reply = post_with(gw.addr, path, body, &headers).await;
        assert_eq!(
            reply.status.as_u16(),
            status,
            "{path} {headers:?}: {}",
            reply.text()
        );
        assert!(reply.header("x-call-id").is_none(), "{path}");
    }
    // Just under the limit is fine; its output is kept up to
    // --async-max-output, and says so.
    let id = enqueue(gw.addr, "echo", &"x".repeat(1000), &[]).await;
    assert_eq!(ids_of(&list(gw.addr, "").await), [id.as_str()]);
    assert_succeeded_once(&until_one_final(gw.addr, &id).await);
    let out = output(gw.addr, &id).await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(out.text(), "x".repeat(100));
    assert_eq!(out.header("x-output-truncated"), Some("true"));
}

const BULK_STACK: &str = r#"
functions:
  upper:
    fprocess: tr a-z A-Z
    labels:
      faas.async.concurrency: "8"
  echo:
    fprocess: cat
"#;

/// The outputs of finished calls, in order.
async fn outputs(addr: SocketAddr, ids: &[String]) -> Vec<String> {
    let mut tasks = JoinSet::new();
    let stripes = 8;
    for stripe in 0..stripes {
        let mine: Vec<(usize, String)> = ids
            .iter()
            .cloned()
            .enumerate()
            .skip(stripe)
            .step_by(stripes)
            .collect();
        tasks.spawn(async move {
            let mut got = Vec::new();
            for (i, id) in mine {
                let reply = output(addr, &id).await;
                assert_eq!(reply.status, StatusCode::OK, "{id}: {}", reply.text());
                got.push((i, reply.text()));
            }
            got
        });
    }
    let mut all = vec![String::new(); ids.len()];
    while let Some(got) = tasks.join_next().await {
        for (i, text) in got.unwrap() {
            all[i] = text;
        }
    }
    all
}

#[tokio::test]
async fn bulk_call_makes_one_call_per_element_in_order() {
    let gw = Gateway::start(BULK_STACK, &[], &[]);
    let items: Vec<String> = (0..1000).map(|i| format!("item-{i}")).collect();
    let started = Instant::now();
    let reply = post(gw.addr, "/bulk-function/upper", json!(items).to_string()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["function"], "upper");
    let ids: Vec<String> = serde_json::from_value(body["ids"].clone()).unwrap();
    assert_eq!(ids.len(), 1000);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1000, "ids repeat");
    let done = until_final(gw.addr, &ids, Duration::from_secs(40)).await;
    eprintln!("1000 bulk calls finished in {:?}", started.elapsed());
    for e in &done {
        assert_succeeded_once(e);
    }
    // Oldest first: the records list in the array's order.
    let listed = list(gw.addr, "function=upper").await;
    assert_eq!(
        ids_of(&listed),
        ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let got = outputs(gw.addr, &ids).await;
    for (i, text) in got.iter().enumerate() {
        assert_eq!(*text, format!("ITEM-{i}"));
    }

    // A string element's body is the string, anything else its JSON text
    // as sent.
    let reply = post(
        gw.addr,
        "/bulk-function/echo",
        r#"[1, {"a": 2}, "three", null]"#,
    )
    .await;
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{body}");
    let ids: Vec<String> = serde_json::from_value(body["ids"].clone()).unwrap();
    until_final(gw.addr, &ids, Duration::from_secs(10)).await;
    assert_eq!(
        outputs(gw.addr, &ids).await,
        ["1", r#"{"a": 2}"#, "three", "null"]
    );

    let malformed = post(gw.addr, "/bulk-function/echo", "[\"a\",\n \"b\"").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert!(malformed.text().contains("line 2"), "{}", malformed.text());
    for not_an_array in [r#"{"a": 1}"#, r#""a""#, "3"] {
        let reply = post(gw.addr, "/bulk-function/echo", not_an_array).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{not_an_array}");
        assert!(reply.text().contains("array"), "{}", reply.text());
    }
    assert_eq!(list(gw.addr, "function=echo").await.len(), 4);
}

// ---------------------------------------------------- retries and failures

const FLAKY_STACK: &str = r#"
functions:
  flaky:
    fprocess: sh flaky.sh
    labels:
      faas.async.retry-codes: "500"
  busy:
    fprocess: sleep 0.3
    environment:
      max_inflight: "1"
"#;
/// Fails (exit 1: the watchdog answers 500) the first two times.
const FLAKY: &str = r#"n=$(( $(cat attempts 2>/dev/null || echo 0) + 1 ))
echo "$n" > attempts
if [ "$n" -le 2 ]; then echo "attempt $n failed" >&2; exit 1; fi
echo "ok after $n"
"#;

#[tokio::test]
async fn retried_call_succeeds_after_two_failures() {
    let gw = Gateway::start(
        FLAKY_STACK,
        &[("flaky.sh", FLAKY)],
        &["--async-retry-base", "50ms"],
    );
    let id = enqueue(gw.addr, "flaky", "", &[]).await;
    let e = until_one_final(gw.addr, &id).await;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:?}");
    assert_eq!(e.attempts, 3, "{e:?}");
    assert_eq!(e.status_code, Some(200));
    assert_eq!(e.error, None, "a success clears the last error: {e:?}");
    assert_eq!(output(gw.addr, &id).await.text(), "ok after 3\n");
    let metrics = get(gw.addr, "/metrics").await.text();
    assert_eq!(
        metric(
            &metrics,
            r#"gateway_async_retries_total{function_name="flaky"}"#
        ),
        Some(2.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn busy_function_is_retried_until_it_has_room() {
    let gw = Gateway::start(
        FLAKY_STACK,
        &[("flaky.sh", FLAKY)],
        &["--async-retry-base", "50ms"],
    );
    // One call at a time fits; the watchdog answers 429 to the others
    // (3 sent at once: the default concurrency is 4), which are retried.
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(enqueue(gw.addr, "busy", "", &[]).await);
    }
    let done = until_final(gw.addr, &ids, Duration::from_secs(20)).await;
    for e in &done {
        assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:?}");
        assert_eq!(e.error, None, "{e:?}");
    }
    assert!(done.iter().any(|e| e.attempts > 1), "{done:?}");
    let retried: u32 = done.iter().map(|e| e.attempts - 1).sum();
    let metrics = get(gw.addr, "/metrics").await.text();
    assert_eq!(
        metric(
            &metrics,
            r#"gateway_async_retries_total{function_name="busy"}"#
        ),
        Some(f64::from(retried)),
        "{metrics}"
    );
}

const FAILING_STACK: &str = r#"
functions:
  broken:
    fprocess: sh broken.sh
    labels:
      faas.async.retry-codes: "500"
      faas.async.max-retries: "2"
  failing:
    fprocess: sh broken.sh
  slow:
    fprocess: sleep 3
"#;
const BROKEN: &str = "echo 'broken: disk on fire' >&2\nexit 1\n";

#[tokio::test]
async fn failing_calls_end_dead_or_failed_with_their_error_and_are_listed() {
    let gw = Gateway::start(
        FAILING_STACK,
        &[("broken.sh", BROKEN)],
        &["--async-retry-base", "50ms"],
    );
    let broken = enqueue(gw.addr, "broken", "", &[]).await;
    let failing = enqueue(gw.addr, "failing", "", &[]).await;
    let slow = enqueue(gw.addr, "slow", "", &[]).await;

    // Retried on 500 until max-retries is spent: dead, last error kept.
    let e = until_one_final(gw.addr, &broken).await;
    assert_eq!(e.status, ExecutionStatus::Dead, "{e:?}");
    assert_eq!(e.attempts, 3, "{e:?}");
    assert_eq!(e.status_code, Some(500));
    assert!(
        e.error
            .as_deref()
            .is_some_and(|m| m.contains("disk on fire")),
        "{e:?}"
    );

    // 500 is not retried by default: failed after one attempt, the
    // function's stderr in the error.
    let e = until_one_final(gw.addr, &failing).await;
    assert_eq!(e.status, ExecutionStatus::Failed, "{e:?}");
    assert_eq!(e.attempts, 1, "{e:?}");
    assert_eq!(e.status_code, Some(500));
    assert!(
        e.error
            .as_deref()
            .is_some_and(|m| m.contains("disk on fire")),
        "{e:?}"
    );

    assert_eq!(ids_of(&list(gw.addr, "").await), [&broken, &failing, &slow]);
    assert_eq!(ids_of(&list(gw.addr, "status=dead").await), [&broken]);
    assert_eq!(ids_of(&list(gw.addr, "status=failed").await), [&failing]);
    assert_eq!(ids_of(&list(gw.addr, "function=failing").await), [&failing]);
    assert!(
        list(gw.addr, "function=failing&status=dead")
            .await
            .is_empty()
    );
    let pending = list(gw.addr, "include_completed=false").await;
    assert_eq!(ids_of(&pending), [&slow], "{pending:?}");
    assert!(!pending[0].status.is_final());
    let bad = get(gw.addr, "/system/executions?status=lost").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
}

// ------------------------------------------------------------- callbacks

/// A request the callback server received.
#[derive(Debug)]
struct Received {
    head: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A plain HTTP/1.1 server: every request goes to the channel as soon as
/// it is read, and is answered 200, the n-th after `delays[n]` (none
/// beyond the list).
fn callback_server(delays: Vec<Duration>) -> (SocketAddr, mpsc::Receiver<Received>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let tx = tx.clone();
            let delay = delays.get(n).copied().unwrap_or_default();
            std::thread::spawn(move || {
                if let Some(received) = read_request(&stream) {
                    let _ = tx.send(received);
                    std::thread::sleep(delay);
                    let _ = (&stream).write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                }
            });
        }
    });
    (addr, rx)
}

fn read_request(stream: &std::net::TcpStream) -> Option<Received> {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    reader.read_line(&mut head).ok()?;
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        head: head.trim_end().to_owned(),
        headers,
        body,
    })
}

/// An address nothing listens on.
fn refusing_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

const CALLBACK_STACK: &str = r#"
functions:
  upper:
    fprocess: tr a-z A-Z
"#;

#[tokio::test]
async fn callback_gets_the_result_and_its_delivery_is_recorded() {
    let gw = Gateway::start(
        CALLBACK_STACK,
        &[],
        &[
            "--async-retry-base",
            "50ms",
            "--async-retry-max",
            "100ms",
            "--async-max-retries",
            "2",
            // The test's receiver is on loopback, which callbacks may not
            // reach unless the operator allows it.
            "--callback-allow",
            "127.0.0.1",
        ],
    );
    let (server, received) = callback_server(vec![]);
    let url = format!("http://{server}/done?batch=7");
    let id = enqueue(
        gw.addr,
        "upper",
        "hello callback",
        &[("X-Callback-Url", &url)],
    )
    .await;
    let got = received
        .recv_timeout(Duration::from_secs(15))
        .expect("a callback");
    assert_eq!(got.head, "POST /done?batch=7 HTTP/1.1");
    assert_eq!(got.headers["x-call-id"], id);
    assert_eq!(got.headers["x-function-name"], "upper");
    assert_eq!(got.headers["x-function-status"], "200");
    let duration: f64 = got.headers["x-duration-seconds"].parse().unwrap();
    assert!(duration > 0.0 && duration < 10.0, "{duration}");
    assert_eq!(got.body, b"HELLO CALLBACK");
    let e = until_record(gw.addr, &id, Duration::from_secs(5), |e| {
        e.callback.as_ref().is_some_and(|c| c.status != "pending")
    })
    .await;
    assert_succeeded_once(&e);
    let callback = e.callback.unwrap();
    assert_eq!(callback.url, url);
    assert_eq!(callback.status, "delivered", "{callback:?}");
    assert_eq!(callback.attempts, 1);
    assert_eq!(callback.status_code, Some(200));
    assert_eq!(callback.error, None);

    // Nobody listening: retried like calls (1 + 2 attempts), then failed,
    // recorded; the call itself still succeeded.
    let url = format!("http://{}/done", refusing_address());
    let id = enqueue(gw.addr, "upper", "x", &[("X-Callback-Url", &url)]).await;
    let e = until_record(gw.addr, &id, Duration::from_secs(10), |e| {
        e.callback.as_ref().is_some_and(|c| c.status != "pending")
    })
    .await;
    assert_succeeded_once(&e);
    let callback = e.callback.unwrap();
    assert_eq!(callback.status, "failed", "{callback:?}");
    assert_eq!(callback.attempts, 3, "{callback:?}");
    assert!(
        callback
            .error
            .as_deref()
            .is_some_and(|m| m.contains("cannot reach")),
        "{callback:?}"
    );
    assert!(received.try_recv().is_err(), "no other callback");
}

// -------------------------------------------------------------- retention

const RETENTION_STACK: &str = r#"
functions:
  echo:
    fprocess: cat
  slow:
    fprocess: sleep 3
    labels:
      faas.async.concurrency: "1"
"#;

#[tokio::test]
async fn finished_records_are_purged_after_retention_and_pending_ones_kept() {
    let gw = Gateway::start(RETENTION_STACK, &[], &["--async-retention", "1s"]);
    let done = enqueue(gw.addr, "echo", "x", &[]).await;
    let finished = time(&until_one_final(gw.addr, &done).await.finished_at);
    let running = enqueue(gw.addr, "slow", "", &[]).await;
    let queued = enqueue(gw.addr, "slow", "", &[]).await;
    let enqueued = SystemTime::now();

    let deadline = Instant::now() + Duration::from_secs(5);
    while record(gw.addr, &done).await.is_some() {
        assert!(Instant::now() < deadline, "never purged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kept_for = SystemTime::now().duration_since(finished).unwrap();
    assert!(
        kept_for >= Duration::from_millis(950),
        "purged after {kept_for:?}"
    );
    assert_eq!(output(gw.addr, &done).await.status, StatusCode::NOT_FOUND);

    // Calls older than the retention but not finished stay.
    let older = enqueued + Duration::from_millis(1300);
    if let Ok(wait) = older.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    let pending = records(gw.addr, &[running.clone(), queued.clone()]).await;
    let status: Vec<_> = pending
        .iter()
        .map(|r| r.as_ref().map(|e| e.status))
        .collect();
    assert_eq!(
        status,
        [
            Some(ExecutionStatus::Running),
            Some(ExecutionStatus::Queued)
        ]
    );
}

// ------------------------------------------------------------ concurrency

const SERIAL_STACK: &str = r#"
functions:
  serial:
    fprocess: sh span.sh serial.log
    labels:
      faas.async.concurrency: "1"
  parallel:
    fprocess: sh span.sh parallel.log
"#;
/// Logs when it started and ended (ns), 200 ms apart.
const SPAN: &str = "start=$(date +%s%N)\nsleep 0.2\necho \"$start $(date +%s%N)\" >> \"$1\"\n";

/// The (start, end) spans a function logged, by start.
fn spans(dir: &std::path::Path, log: &str) -> Vec<(u128, u128)> {
    let text = std::fs::read_to_string(dir.join(log)).unwrap();
    let mut spans: Vec<(u128, u128)> = text
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    spans.sort_unstable();
    spans
}

#[tokio::test]
async fn concurrency_label_limits_calls_running_at_once() {
    let gw = Gateway::start(SERIAL_STACK, &[("span.sh", SPAN)], &[]);
    let mut serial = Vec::new();
    for _ in 0..5 {
        serial.push(enqueue(gw.addr, "serial", "", &[]).await);
    }
    let mut parallel = Vec::new();
    for _ in 0..4 {
        parallel.push(enqueue(gw.addr, "parallel", "", &[]).await);
    }
    // The last serial call waits its turn: no output yet.
    let waiting = output(gw.addr, &serial[4]).await;
    assert_eq!(waiting.status, StatusCode::NOT_FOUND, "{}", waiting.text());

    let done = until_final(gw.addr, &serial, Duration::from_secs(15)).await;
    until_final(gw.addr, &parallel, Duration::from_secs(15)).await;
    let spans_serial = spans(gw.dir.path(), "serial.log");
    assert_eq!(spans_serial.len(), 5);
    for pair in spans_serial.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "overlap: {pair:?}");
    }
    let total = spans_serial[4].1 - spans_serial[0].0;
    assert!(total >= 1_000_000_000, "5 × 200 ms in {total} ns");
    // The records agree: each starts after the one before finished.
    let mut by_start: Vec<_> = done
        .iter()
        .map(|e| (time(&e.started_at), time(&e.finished_at)))
        .collect();
    by_start.sort();
    for pair in by_start.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "records overlap: {pair:?}");
    }
    // Without the label (default 4), the same calls do overlap: the
    // measurement can see it.
    let spans_parallel = spans(gw.dir.path(), "parallel.log");
    assert!(
        spans_parallel.windows(2).any(|p| p[1].0 < p[0].1),
        "{spans_parallel:?}"
    );
}

// ------------------------------------------------------------- durability

/// Runs slower than calls arrive, so each kill finds calls queued as well
/// as running.
const RECORD_STACK: &str = r#"
functions:
  record:
    fprocess: sh record.sh
    labels:
      faas.async.concurrency: "2"
"#;
/// Appends the call's id to calls.log (one write: lines do not tear).
const RECORD: &str = "printf '%s\\n' \"$Http_X_Call_Id\" >> calls.log\n";

const CALLS: usize = 1500;
const CLIENTS: usize = 4;
const KILLS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_accepted_call() {
    let mut gw = Gateway::start(
        RECORD_STACK,
        &[("record.sh", RECORD)],
        &["--async-retry-base", "50ms"],
    );
    let addr = Arc::new(Mutex::new(gw.addr));
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let unreachable = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut clients = JoinSet::new();
    for client in 0..CLIENTS {
        let (addr, accepted, unreachable, refused, stop) = (
            addr.clone(),
            accepted.clone(),
            unreachable.clone(),
            refused.clone(),
            stop.clone(),
        );
        clients.spawn(async move {
            let mut n = 0;
            while accepted.lock().unwrap().len() < CALLS && !stop.load(Ordering::Relaxed) {
                let target = *addr.lock().unwrap();
                n += 1;
                match try_post(
                    target,
                    "/async-function/record",
                    format!("{client}-{n}"),
                    &[],
                )
                .await
                {
                    Ok(reply) if reply.status == StatusCode::ACCEPTED => {
                        accepted.lock().unwrap().push(accepted_id(&reply, "record"));
                    }
                    Ok(reply) => {
                        refused
                            .lock()
                            .unwrap()
                            .push(format!("{}: {}", reply.status, reply.text()))
                    }
                    // The gateway is down (or went down mid-request).
                    Err(_) => {
                        unreachable.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                // Spread the calls over the kills.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }

    let mut kills = Vec::new();
    for _ in 0..KILLS {
        let wait = random_between(Duration::from_millis(100), Duration::from_millis(600));
        tokio::time::sleep(wait).await;
        let at_kill = accepted.lock().unwrap().len();
        let ran = std::fs::read_to_string(gw.dir.path().join("calls.log"))
            .map_or(0, |log| log.lines().count());
        let restart = Instant::now();
        tokio::task::block_in_place(|| gw.restart());
        *addr.lock().unwrap() = gw.addr;
        kills.push((wait, at_kill, ran, restart.elapsed()));
    }
    let enqueue_deadline = Instant::now() + Duration::from_secs(30);
    while !clients.is_empty() {
        tokio::select! {
            done = clients.join_next() => { done.unwrap().unwrap(); }
            () = tokio::time::sleep_until(enqueue_deadline.into()) => {
                stop.store(true, Ordering::Relaxed);
            }
        }
    }
    let enqueued_in = started.elapsed();
    let refused = refused.lock().unwrap().clone();
    assert!(refused.is_empty(), "answers other than 202: {refused:?}");
    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.len() >= CALLS, "only {} accepted", accepted.len());

    let done = until_final(gw.addr, &accepted, Duration::from_secs(40)).await;
    let not_succeeded: Vec<_> = done
        .iter()
        .filter(|e| e.status != ExecutionStatus::Succeeded)
        .collect();
    assert!(not_succeeded.is_empty(), "{not_succeeded:?}");

    let log = std::fs::read_to_string(gw.dir.path().join("calls.log")).unwrap();
    let mut runs: HashMap<&str, usize> = HashMap::new();
    for line in log.lines() {
        *runs.entry(line).or_default() += 1;
    }
    let missing: Vec<_> = accepted
        .iter()
        .filter(|id| !runs.contains_key(id.as_str()))
        .collect();
    let accepted_set: HashSet<&str> = accepted.iter().map(String::as_str).collect();
    let unacknowledged = runs.keys().filter(|id| !accepted_set.contains(*id)).count();
    let duplicates: usize = runs.values().map(|n| n - 1).sum();
    let rerun = done.iter().filter(|e| e.attempts > 1).count();
    let requeued: usize = gw
        .log()
        .lines()
        .filter(|l| l.contains("queued again"))
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<usize>().ok())
        .sum();
    eprintln!(
        "crash test: accepted {}, unreachable requests {}, kills {} (wait, accepted before, runs before, restart took: {kills:?}), \
         enqueued in {enqueued_in:?}, all succeeded after {:?}; \
         lines {}, duplicate runs {duplicates}, records with attempts > 1: {rerun}, \
         requeued at restarts: {requeued}, ran without a 202 seen: {unacknowledged}",
        accepted.len(),
        unreachable.load(Ordering::Relaxed),
        kills.len(),
        started.elapsed(),
        log.lines().count(),
    );
    assert!(
        missing.is_empty(),
        "{} accepted calls never ran: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(kills.len(), KILLS);
}

const DRAIN_STACK: &str = r#"
functions:
  slow:
    fprocess: sh slow.sh
    labels:
      faas.async.concurrency: "2"
"#;
/// Takes a second, then says which call it was, here and in done.log.
const SLOW: &str =
    "sleep 1\necho \"done $Http_X_Call_Id\"\nprintf '%s\\n' \"$Http_X_Call_Id\" >> done.log\n";

#[tokio::test]
async fn sigterm_lets_running_calls_finish_and_leaves_queued_ones_queued() {
    let mut gw = Gateway::start(DRAIN_STACK, &[("slow.sh", SLOW)], &[]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(enqueue(gw.addr, "slow", "", &[]).await);
    }
    for id in &ids[..2] {
        until_record(gw.addr, id, Duration::from_secs(5), |e| {
            e.status == ExecutionStatus::Running
        })
        .await;
    }
    let term = Instant::now();
    gw.signal(libc::SIGTERM);
    let status = gw.wait_exit(Duration::from_secs(15)).await.expect("exits");
    assert!(status.success(), "{status:?}\n{}", gw.log());
    assert!(
        term.elapsed() >= Duration::from_millis(300),
        "exited after {:?}: did it wait for the calls?",
        term.elapsed()
    );

    // Started again on the same queue: the two that were running finished
    // before the exit (once: not run again); the queued one runs now.
    gw.restart();
    for id in &ids[..2] {
        let e = record(gw.addr, id).await.unwrap();
        assert_succeeded_once(&e);
        assert_eq!(output(gw.addr, id).await.text(), format!("done {id}\n"));
    }
    let third = record(gw.addr, &ids[2]).await.unwrap();
    assert!(third.attempts <= 1 && !third.status.is_final(), "{third:?}");
    assert_succeeded_once(&until_one_final(gw.addr, &ids[2]).await);
    let log = std::fs::read_to_string(gw.dir.path().join("done.log")).unwrap();
    let mut lines: Vec<_> = log.lines().collect();
    lines.sort_unstable();
    let mut expected: Vec<_> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(lines, expected, "each call ran once");
}

/// Whether the call's callback has an outcome.
fn called_back(e: &Execution) -> bool {
    e.callback.as_ref().is_some_and(|c| c.status != "pending")
}

#[tokio::test]
async fn sigterm_waits_for_a_callback_being_delivered() {
    let mut gw = Gateway::start(CALLBACK_STACK, &[], &["--callback-allow", "127.0.0.1"]);
    let (server, received) = callback_server(vec![Duration::from_millis(800)]);
    let url = format!("http://{server}/done");
    let id = enqueue(gw.addr, "upper", "x", &[("X-Callback-Url", &url)]).await;
    received
        .recv_timeout(Duration::from_secs(10))
        .expect("a callback");
    let term = Instant::now();
    gw.signal(libc::SIGTERM);
    let status = gw.wait_exit(Duration::from_secs(15)).await.expect("exits");
    assert!(status.success(), "{status:?}\n{}", gw.log());
    assert!(
        term.elapsed() >= Duration::from_millis(500),
        "exited after {:?}, before the callback was answered",
        term.elapsed()
    );
    gw.restart();
    let e = record(gw.addr, &id).await.unwrap();
    let callback = e.callback.expect("a callback record");
    assert_eq!(callback.status, "delivered", "{callback:?}\n{}", gw.log());
    assert_eq!(callback.attempts, 1);
    assert!(received.try_recv().is_err(), "delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_cut_by_sigkill_is_delivered_after_the_restart() {
    let mut gw = Gateway::start(CALLBACK_STACK, &[], &["--callback-allow", "127.0.0.1"]);
    // The first delivery is never answered: the gateway dies waiting.
    let (server, received) = callback_server(vec![Duration::from_secs(5)]);
    let url = format!("http://{server}/done");
    let id = enqueue(gw.addr, "upper", "again", &[("X-Callback-Url", &url)]).await;
    let first = received
        .recv_timeout(Duration::from_secs(10))
        .expect("a callback");
    assert_eq!(first.headers["x-call-id"], id);
    tokio::task::block_in_place(|| gw.restart());
    let second = received
        .recv_timeout(Duration::from_secs(10))
        .expect("the callback again after the restart");
    assert_eq!(second.headers["x-call-id"], id);
    assert_eq!(second.headers["x-function-status"], "200");
    assert_eq!(second.body, b"AGAIN");
    let e = until_record(gw.addr, &id, Duration::from_secs(5), called_back).await;
    assert_succeeded_once(&e);
    assert_eq!(e.callback.unwrap().status, "delivered");
}
