//! The built-in autoscaler with the process provider: functions grow with
//! load and shrink after it, go to zero when idle (opt-in) and come back
//! for the first call, which is held rather than refused; manual scales
//! and AlertManager's webhook are continued from, not fought.

use crate::util;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use util::*;

const SLEEP: &str = include_str!("../../sample-functions/sleep/handler.sh");

/// Deployed at zero, and its watchdog refuses its configuration: no
/// replica ever gets ready.
const BROKEN: &str = r#"
functions:
  broken:
    fprocess: cat
    environment:
      exec_timeout: sometime
    labels:
      faas.scale.min: "0"
"#;

async fn status(gw: &Gateway, name: &str) -> Value {
    let reply = get(gw.addr, &format!("/system/function/{name}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    serde_json::from_slice(&reply.body).unwrap()
}

/// Polls the function's status until `ok` holds; panics after `limit`.
async fn until(
    gw: &Gateway,
    name: &str,
    limit: Duration,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let s = status(gw, name).await;
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: not {what} within {limit:?}: {s}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn replicas(n: u64) -> impl Fn(&Value) -> bool {
    move |s| s["replicas"] == n && s["availableReplicas"] == n
}

/// Polls an async call's record until its status is `status` (it may be
/// queued or running before); panics on another final status or after
/// `limit`.
async fn until_execution(gw: &Gateway, id: &str, status: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let reply = get(gw.addr, &format!("/system/executions/{id}")).await;
        let record: Value = serde_json::from_slice(&reply.body).unwrap();
        if record["status"] == status {
            return record;
        }
        assert!(
            record["status"] == "queued" || record["status"] == "running",
            "{record}"
        );
        assert!(Instant::now() < deadline, "{record}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metrics(gw: &Gateway) -> String {
    get(gw.addr, "/metrics").await.text()
}

fn scaled(text: &str, function: &str, direction: &str) -> f64 {
    metric(
        text,
        &format!(
            "gateway_scaling_events_total{{direction=\"{direction}\",function_name=\"{function}\"}}"
        ),
    )
    .unwrap_or(0.0)
}

async fn api(gw: &Gateway, path: &str, body: &str) -> Reply {
    send(
        gw.addr,
        Request::post(path)
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap(),
    )
    .await
    .unwrap()
}

/// `clients` callers posting `body` back to back until `until`; the status
/// codes they got.
async fn load(
    addr: std::net::SocketAddr,
    path: &str,
    body: &'static str,
    clients: usize,
    until: Instant,
) -> Vec<StatusCode> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            while Instant::now() < until {
                codes.push(post(addr, &path, body).await.status);
            }
            codes
        }));
    }
    let mut codes = Vec::new();
    for task in tasks {
        codes.extend(task.await.unwrap());
    }
    codes
}

#[tokio::test]
async fn sleep_grows_to_its_max_under_load_and_returns_to_min_after_the_window() {
    let stack = r#"
functions:
  sleep:
    fprocess: sh handler.sh
    labels:
      faas.scale.target: "1"
      faas.scale.max: "4"
      faas.scale.window: "4s"
"#;
    let gw = Gateway::start(stack, &[("handler.sh", SLEEP)], &[]);
    until(&gw, "sleep", Duration::from_secs(10), "at 1", replicas(1)).await;

    // Six callers of a 0.3 s function: 6 in flight against 1 per replica.
    let started = Instant::now();
    let running = tokio::spawn(load(
        gw.addr,
        "/function/sleep",
        "0.3",
        6,
        started + Duration::from_secs(8),
    ));
    let grown = until(&gw, "sleep", Duration::from_secs(8), "at 4", replicas(4)).await;
    let ready_after = started.elapsed();
    eprintln!("4 replicas ready {ready_after:?} after the load started");
    assert!(gw.children().len() >= 4, "{:?}", gw.children());
    // Straight to 4 in a panic, or in two steps when the load began late
    // in a tick (its first reading then averages less than 6 in flight).
    let decision = &grown["scaling"]["lastDecision"];
    assert_eq!(decision["to"], 4, "{grown}");
    assert!(decision["from"].as_u64().unwrap() < 4, "{grown}");
    assert!(ready_after < Duration::from_secs(5), "{ready_after:?}");

    let codes = running.await.unwrap();
    let ended = Instant::now();
    assert!(codes.len() > 50, "{}", codes.len());
    assert!(
        codes.iter().all(|c| *c == StatusCode::OK),
        "calls failed while scaling: {:?}",
        codes
            .iter()
            .filter(|c| **c != StatusCode::OK)
            .collect::<Vec<_>>()
    );

    // Back to min, but only once a whole 4 s window has needed no more.
    let shrunk = until(
        &gw,
        "sleep",
        Duration::from_secs(12),
        "back at 1",
        replicas(1),
    )
    .await;
    let after = ended.elapsed();
    assert!(
        after >= Duration::from_secs(3),
        "scaled down {after:?} after the load"
    );
    // (Perhaps in steps, as the last calls drained: 4 → 2 → 1.)
    let decision = &shrunk["scaling"]["lastDecision"];
    assert_eq!(decision["to"], 1, "{shrunk}");
    assert!(decision["from"].as_u64().unwrap() > 1, "{shrunk}");
    assert!(
        decision["reason"]
            .as_str()
            .unwrap()
            .contains("were enough for the last 4s"),
        "{decision}"
    );
    assert!(
        eventually(Duration::from_secs(12), || gw.children().len() == 1).await,
        "{:?}",
        gw.children()
    );
    let text = metrics(&gw).await;
    assert!(scaled(&text, "sleep", "up") >= 1.0, "{text}");
    assert!(scaled(&text, "sleep", "down") >= 1.0, "{text}");
    assert_eq!(
        metric(&text, "gateway_replicas_desired{function_name=\"sleep\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "gateway_service_count{function_name=\"sleep\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn an_idle_function_goes_to_zero_and_its_first_call_is_held_until_a_replica_is_ready() {
    let stack = r#"
functions:
  echo:
    fprocess: cat
    labels:
      faas.scale.zero: "true"
      faas.scale.zero-after: "1s"
"#;
    let gw = Gateway::start(stack, &[], &["--replica-wait", "100ms"]);
    // Never called: it idles out too.
    let zero = until(&gw, "echo", Duration::from_secs(10), "at zero", replicas(0)).await;
    assert!(
        zero["scaling"]["lastDecision"]["reason"]
            .as_str()
            .unwrap()
            .contains("idle"),
        "{zero}"
    );
    assert!(
        eventually(Duration::from_secs(10), || gw.children().is_empty()).await,
        "{:?}",
        gw.children()
    );

    // Held past replica_wait (100 ms) while the replica starts, then served.
    let started = Instant::now();
    let reply = post(gw.addr, "/function/echo", "first").await;
    let took = started.elapsed();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), "first");
    eprintln!("cold start through the gateway: {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let text = metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "gateway_cold_start_seconds_count{function_name=\"echo\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(scaled(&text, "echo", "up"), 1.0);
}

#[tokio::test]
async fn fifty_concurrent_first_calls_cause_one_scale_up() {
    let stack = r#"
functions:
  echo:
    fprocess: cat
    labels:
      faas.scale.zero: "true"
      faas.scale.zero-after: "2s"
      faas.scale.target: "1000"
"#;
    let gw = Gateway::start(stack, &[], &[]);
    until(&gw, "echo", Duration::from_secs(10), "at zero", replicas(0)).await;
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let addr = gw.addr;
            tokio::spawn(async move { post(addr, "/function/echo", format!("call-{i}")).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let reply = call.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.text(), format!("call-{i}"));
    }
    let text = metrics(&gw).await;
    assert_eq!(scaled(&text, "echo", "up"), 1.0, "{text}");
    assert_eq!(
        metric(
            &text,
            "gateway_cold_start_seconds_count{function_name=\"echo\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn an_async_call_to_a_function_at_zero_waits_in_the_queue_and_runs_once() {
    let stack = r#"
functions:
  echo:
    fprocess: cat
    labels:
      faas.scale.zero: "true"
      faas.scale.zero-after: "1s"
"#;
    let gw = Gateway::start(stack, &[], &[]);
    until(&gw, "echo", Duration::from_secs(10), "at zero", replicas(0)).await;
    let reply = post(gw.addr, "/async-function/echo", "later").await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    let id = reply.header("x-call-id").unwrap().to_owned();
    let record = until_execution(&gw, &id, "succeeded", Duration::from_secs(15)).await;
    // Not retried: it waited for the replica instead of failing on it.
    assert_eq!(record["attempts"], 1, "{record}");
    let output = get(gw.addr, &format!("/system/executions/{id}/output")).await;
    assert_eq!(output.text(), "later");
}

#[tokio::test]
async fn a_function_that_cannot_start_from_zero_answers_503_after_the_wait() {
    let gw = Gateway::start(
        BROKEN,
        &[],
        &[
            "--scale-from-zero-wait",
            "1500ms",
            "--replica-wait",
            "200ms",
        ],
    );
    assert_eq!(status(&gw, "broken").await["replicas"], 0);
    let started = Instant::now();
    let reply = post(gw.addr, "/function/broken", "x").await;
    let took = started.elapsed();
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    let text = reply.text();
    assert!(
        text.contains("scaled to zero") && text.contains("scale_from_zero_wait"),
        "{text}"
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn async_calls_to_a_function_that_cannot_start_are_not_held_forever() {
    let gw = Gateway::start(
        BROKEN,
        &[],
        &[
            "--scale-from-zero-wait",
            "1s",
            "--replica-wait",
            "200ms",
            "--async-max-retries",
            "1",
            "--async-retry-base",
            "100ms",
        ],
    );
    let reply = post(gw.addr, "/async-function/broken", "x").await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    let id = reply.header("x-call-id").unwrap().to_owned();
    let record = until_execution(&gw, &id, "dead", Duration::from_secs(20)).await;
    // Held for the cold start's wait, then tried and retried: a record
    // that says why, not a call queued forever.
    assert_eq!(record["attempts"], 2, "{record}");
    assert_eq!(record["statusCode"], 503, "{record}");
    assert!(
        record["error"].as_str().unwrap().contains("scaled to zero"),
        "{record}"
    );
}

#[tokio::test]
async fn a_manual_scale_is_kept_for_a_window_then_the_autoscaler_continues_from_it() {
    let stack = r#"
functions:
  echo:
    fprocess: cat
    labels:
      faas.scale.window: "3s"
"#;
    let gw = Gateway::start(stack, &[], &[]);
    let reply = api(&gw, "/system/scale-function/echo", r#"{"replicas": 3}"#).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    let set = Instant::now();
    until(&gw, "echo", Duration::from_secs(10), "at 3", replicas(3)).await;
    let back = until(
        &gw,
        "echo",
        Duration::from_secs(10),
        "back at 1",
        replicas(1),
    )
    .await;
    let kept = set.elapsed();
    assert!(kept >= Duration::from_millis(2500), "kept only {kept:?}");
    assert_eq!(back["scaling"]["lastDecision"]["from"], 3, "{back}");

    // With autoscale off, a manual count stays.
    let gw = Gateway::start(stack, &[], &["--autoscale", "false"]);
    api(&gw, "/system/scale-function/echo", r#"{"replicas": 2}"#).await;
    until(&gw, "echo", Duration::from_secs(10), "at 2", replicas(2)).await;
    // What is tested is that nothing happens: the wait is past the 3 s
    // window after which an enabled autoscaler went back to 1 (above).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = status(&gw, "echo").await;
    assert_eq!(s["replicas"], 2, "{s}");
    assert_eq!(s["scaling"]["enabled"], false, "{s}");
}

#[tokio::test]
async fn alertmanager_alerts_step_replicas_up_and_resolve_to_min() {
    let stack = r#"
functions:
  echo:
    fprocess: cat
    labels:
      faas.scale.max: "10"
"#;
    let gw = Gateway::start(stack, &[], &[]);
    let alert = |status: &str, function: &str| {
        format!(
            r#"{{"receiver":"scale-up","status":"{status}","alerts":[{{"status":"{status}","labels":{{"alertname":"APIHighInvocationRate","function_name":"{function}"}}}}]}}"#
        )
    };
    // 20 % of max 10: two more per firing alert.
    let reply = api(&gw, "/system/alert", &alert("firing", "echo")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), "echo: 1 -> 3 replicas (firing)\n");
    until(&gw, "echo", Duration::from_secs(10), "at 3", replicas(3)).await;
    // OpenFaaS's `name.namespace` spelling reaches it too.
    let reply = api(&gw, "/system/alert", &alert("firing", "echo.openfaas-fn")).await;
    assert_eq!(reply.text(), "echo: 3 -> 5 replicas (firing)\n");
    let reply = api(&gw, "/system/alert", &alert("resolved", "echo")).await;
    assert_eq!(reply.text(), "echo: 5 -> 1 replicas (resolved)\n");
    until(&gw, "echo", Duration::from_secs(10), "at 1", replicas(1)).await;

    let reply = api(&gw, "/system/alert", &alert("firing", "nope")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text());
    assert_eq!(reply.text(), "function \"nope\" not found\n");
    let reply = api(&gw, "/system/alert", "{\"alerts\": 3}").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.text().starts_with("malformed JSON"),
        "{}",
        reply.text()
    );
}
