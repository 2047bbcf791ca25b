//! The management API (`/system/…`) as the README's contract states it:
//! routes, shapes, status codes, content types and errors, with and
//! without basic auth, through the real gateway and the process provider's
//! real function processes.

use crate::util;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use util::*;

const STACK: &str = r#"
functions:
  echo:
    fprocess: cat
  env:
    fprocess: env
"#;

/// A function whose stderr (the call's body, marked) lands in its log.
const NOISY_STACK: &str = r#"
functions:
  noisy:
    fprocess: sh noisy.sh
"#;
const NOISY: &str = "body=$(cat)\necho \"marker-$body\" >&2\necho ok\n";

const USER: &str = "admin";
const PASSWORD: &str = "pw-7f3a9c-never-logged";

// ---------------------------------------------------------------- helpers

fn request(
    method: &str,
    path: &str,
    body: impl Into<Bytes>,
    auth: Option<(&str, &str)>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some((user, password)) = auth {
        builder = builder.header(
            "Authorization",
            format!("Basic {}", BASE64.encode(format!("{user}:{password}"))),
        );
    }
    builder.body(Full::new(body.into())).unwrap()
}

/// One request without credentials.
async fn api(gw: &Gateway, method: &str, path: &str, body: impl Into<Bytes>) -> Reply {
    send(gw.addr, request(method, path, body, None))
        .await
        .unwrap()
}

/// One request with the right credentials.
async fn api_as_admin(gw: &Gateway, method: &str, path: &str, body: impl Into<Bytes>) -> Reply {
    send(gw.addr, request(method, path, body, Some((USER, PASSWORD))))
        .await
        .unwrap()
}

/// A JSON answer: `application/json`, parsed.
#[track_caller]
fn json_of(reply: &Reply) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.text()))
}

/// A status with a one-line `text/plain` body (every answer but JSON).
#[track_caller]
fn assert_answer(reply: &Reply, status: StatusCode, needle: &str) {
    let text = reply.text();
    assert_eq!(reply.status, status, "{text}");
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}: {text}",
        reply.header("content-type")
    );
    assert!(
        text.ends_with('\n') && text.trim_end().lines().count() == 1,
        "not one line: {text:?}"
    );
    assert!(
        text.to_lowercase().contains(&needle.to_lowercase()),
        "{text:?} does not mention {needle:?}"
    );
}

async fn status_of(gw: &Gateway, name: &str) -> Value {
    json_of(&api(gw, "GET", &format!("/system/function/{name}"), "").await)
}

async fn names(gw: &Gateway) -> Vec<String> {
    json_of(&api(gw, "GET", "/system/functions", "").await)
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the function wants and has `n` replicas.
async fn until_replicas(gw: &Gateway, name: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = status_of(gw, name).await;
        if status["replicas"] == n && status["availableReplicas"] == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached {n} replicas: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn scale(gw: &Gateway, name: &str, replicas: u64) -> Reply {
    api(
        gw,
        "POST",
        &format!("/system/scale-function/{name}"),
        json!({"serviceName": name, "replicas": replicas}).to_string(),
    )
    .await
}

/// The log lines `GET /system/logs?{query}` answers, parsed.
async fn log_lines(gw: &Gateway, query: &str) -> Vec<Value> {
    let reply = api(gw, "GET", &format!("/system/logs?{query}"), "").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/x-ndjson"));
    reply
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

fn texts(lines: &[Value]) -> Vec<&str> {
    lines.iter().map(|l| l["text"].as_str().unwrap()).collect()
}

/// Runs the gateway until it exits (it must, within 10 s): status, stderr.
fn run_to_exit(flags: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(testkit::proc::LOCAL_GATEWAY)
        .arg("--state-dir")
        .arg(state.path())
        .args(flags)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway started instead of refusing to");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

// ------------------------------------------------------ list and describe

#[tokio::test]
async fn functions_are_listed_in_openfaas_shape_with_their_call_counts() {
    let gw = Gateway::start(STACK, &[], &[]);
    for _ in 0..3 {
        assert_eq!(post(gw.addr, "/function/echo", "hi").await.text(), "hi");
    }

    let list = json_of(&api(&gw, "GET", "/system/functions", "").await);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let echo = list.iter().find(|f| f["name"] == "echo").unwrap();
    let keys: BTreeSet<&str> = echo.as_object().unwrap().keys().map(|k| &**k).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "name",
            "namespace",
            "image",
            "envProcess",
            "labels",
            "annotations",
            "replicas",
            "availableReplicas",
            "invocationCount",
            "createdAt",
            "readOnlyRootFilesystem",
            // Ours: the autoscaler's settings and decisions.
            "scaling",
        ])
    );
    assert_eq!(echo["scaling"]["min"], 1);
    assert_eq!(echo["scaling"]["max"], 20);
    assert_eq!(echo["scaling"]["type"], "capacity");
    assert_eq!(echo["envProcess"], "cat");
    assert_eq!(echo["replicas"], 1);
    assert_eq!(echo["availableReplicas"], 1);
    assert_eq!(echo["invocationCount"], 3);
    assert!(echo["labels"].is_object() && echo["annotations"].is_object());
    let created = humantime::parse_rfc3339_weak(echo["createdAt"].as_str().unwrap()).unwrap();
    let age = SystemTime::now().duration_since(created).unwrap();
    assert!(age < Duration::from_secs(60), "{age:?}");
    let env = list.iter().find(|f| f["name"] == "env").unwrap();
    assert_eq!(env["invocationCount"], 0);

    // One function: the same status.
    let one = status_of(&gw, "echo").await;
    assert_eq!(&one, echo);
    assert_answer(
        &api(&gw, "GET", "/system/function/nope", "").await,
        StatusCode::NOT_FOUND,
        "nope",
    );
    assert_answer(
        &api(&gw, "GET", "/system/function/bad$name", "").await,
        StatusCode::BAD_REQUEST,
        "invalid function name",
    );
}

// ----------------------------------------------------------------- deploy

#[tokio::test]
async fn a_deployed_function_runs_and_starts_scale_min_replicas() {
    let gw = Gateway::start(STACK, &[], &[]);
    let deployment = json!({
        "service": "upper",
        "image": "faas/upper:latest",
        "envProcess": "tr a-z A-Z",
        "labels": {"team": "docs"},
        "annotations": {"topic": "demo"},
    });
    let reply = api(&gw, "POST", "/system/functions", deployment.to_string()).await;
    assert_answer(&reply, StatusCode::ACCEPTED, "upper");
    let call = post(gw.addr, "/function/upper", "hello world").await;
    assert_eq!(call.status, StatusCode::OK, "{}", call.text());
    assert_eq!(call.text(), "HELLO WORLD");
    let status = status_of(&gw, "upper").await;
    assert_eq!(status["image"], "faas/upper:latest");
    assert_eq!(status["envProcess"], "tr a-z A-Z");
    assert_eq!(status["labels"]["team"], "docs");
    assert_eq!(status["annotations"]["topic"], "demo");
    assert_eq!(status["invocationCount"], 1);

    let pair = json!({"service": "pair", "envProcess": "cat", "labels": {"faas.scale.min": "2"}});
    let reply = api(&gw, "POST", "/system/functions", pair.to_string()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    assert_eq!(status_of(&gw, "pair").await["replicas"], 2);
    until_replicas(&gw, "pair", 2).await;
    assert_eq!(names(&gw).await, ["echo", "env", "pair", "upper"]);
}

#[tokio::test]
async fn bad_deployments_are_refused_with_the_reason() {
    let gw = Gateway::start(STACK, &[], &["--max-api-body", "1k"]);
    let cases: &[(&str, StatusCode, &str)] = &[
        ("{\"service\": ", StatusCode::BAD_REQUEST, "malformed JSON"),
        (
            r#"{"service": 5}"#,
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        ("", StatusCode::BAD_REQUEST, "empty"),
        (
            r#"{"image": "x", "envProcess": "cat"}"#,
            StatusCode::BAD_REQUEST,
            "service",
        ),
        (
            r#"{"service": "a b", "envProcess": "cat"}"#,
            StatusCode::BAD_REQUEST,
            "invalid function name",
        ),
        (
            r#"{"service": "imageonly", "image": "faas/x:latest"}"#,
            StatusCode::BAD_REQUEST,
            "envProcess",
        ),
        (
            r#"{"service": "m", "envProcess": "cat", "limits": {"memory": "lots"}}"#,
            StatusCode::BAD_REQUEST,
            "limits.memory",
        ),
        (
            r#"{"service": "c", "envProcess": "cat", "requests": {"cpu": "fast"}}"#,
            StatusCode::BAD_REQUEST,
            "requests.cpu",
        ),
        (
            r#"{"service": "n", "envProcess": "cat", "labels": {"faas.scale.min": "two"}}"#,
            StatusCode::BAD_REQUEST,
            "faas.scale.min",
        ),
        (
            r#"{"service": "n", "envProcess": "cat", "labels": {"faas.scale.min": "101"}}"#,
            StatusCode::BAD_REQUEST,
            "max_replicas",
        ),
        (
            r#"{"service": "echo", "envProcess": "cat"}"#,
            StatusCode::CONFLICT,
            "already exists",
        ),
        (
            r#"{"service": "s", "envProcess": "cat", "secrets": ["no-such-secret"]}"#,
            StatusCode::BAD_REQUEST,
            "no-such-secret",
        ),
    ];
    for (body, status, needle) in cases {
        let reply = api(&gw, "POST", "/system/functions", *body).await;
        assert_answer(&reply, *status, needle);
    }
    let big =
        json!({"service": "big", "envProcess": "cat", "annotations": {"a": "x".repeat(2048)}});
    let reply = api(&gw, "POST", "/system/functions", big.to_string()).await;
    assert_answer(&reply, StatusCode::PAYLOAD_TOO_LARGE, "max_api_body");
    // Without a Content-Length too (chunked).
    let chunked = send(
        gw.addr,
        Request::post("/system/functions")
            .body(Chunks::new(2, 1024))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_answer(&chunked, StatusCode::PAYLOAD_TOO_LARGE, "max_api_body");
    // Refused means nothing was deployed, and the duplicate kept its command.
    assert_eq!(names(&gw).await, ["echo", "env"]);
    assert_eq!(post(gw.addr, "/function/echo", "same").await.text(), "same");
}

#[tokio::test]
async fn bodies_up_to_max_api_body_are_accepted() {
    // Larger than any default body limit of the HTTP stack (2 MiB).
    let gw = Gateway::start(STACK, &[], &["--max-api-body", "4m"]);
    let big =
        json!({"service": "big", "envProcess": "cat", "annotations": {"a": "x".repeat(3 << 20)}});
    let reply = api(&gw, "POST", "/system/functions", big.to_string()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    assert_eq!(post(gw.addr, "/function/big", "ok").await.text(), "ok");

    // A client that asks first (curl does, for large bodies) is refused
    // before it sends the body.
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /system/functions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        gw.addr,
        5 << 20
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer without the body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 413 ") && answer.contains("max_api_body"),
        "{answer}"
    );
}

// ----------------------------------------------------------------- update

#[tokio::test]
async fn an_update_changes_the_environment_and_keeps_the_replica_count() {
    let gw = Gateway::start(STACK, &[], &[]);
    assert_eq!(scale(&gw, "env", 2).await.status, StatusCode::ACCEPTED);
    until_replicas(&gw, "env", 2).await;

    let update =
        json!({"service": "env", "envProcess": "env", "envVars": {"GREETING": "hello-v2"}});
    let reply = api(&gw, "PUT", "/system/functions", update.to_string()).await;
    assert_answer(&reply, StatusCode::ACCEPTED, "env");
    for _ in 0..4 {
        let out = get(gw.addr, "/function/env").await.text();
        assert!(out.contains("GREETING=hello-v2\n"), "{out}");
    }
    until_replicas(&gw, "env", 2).await;

    let unknown = json!({"service": "nope", "envProcess": "cat"});
    let reply = api(&gw, "PUT", "/system/functions", unknown.to_string()).await;
    assert_answer(&reply, StatusCode::NOT_FOUND, "nope");
    assert_answer(
        &api(&gw, "PUT", "/system/functions", "{").await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    let reply = api(&gw, "PUT", "/system/functions", r#"{"service": "env"}"#).await;
    assert_answer(&reply, StatusCode::BAD_REQUEST, "envProcess");
    // A refused update leaves the function as it was.
    let out = get(gw.addr, "/function/env").await.text();
    assert!(out.contains("GREETING=hello-v2\n"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_fails_during_a_rolling_update() {
    let stack = "functions:\n  env:\n    fprocess: env\n    environment:\n      VERSION: one\n";
    // No waiting for a replica: a gap between old and new ones would fail calls.
    let gw = Gateway::start(stack, &[], &["--replica-wait", "20ms"]);
    let addr = gw.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for _ in 0..2 {
        let stop = stop.clone();
        let calls = calls.clone();
        callers.push(tokio::spawn(async move {
            // (when the call started, its outcome)
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let outcome = match send(addr, request("GET", "/function/env", "", None)).await {
                    Ok(r) if r.status == StatusCode::OK && r.text().contains("VERSION=one\n") => {
                        Ok("one")
                    }
                    Ok(r) if r.status == StatusCode::OK && r.text().contains("VERSION=two\n") => {
                        Ok("two")
                    }
                    Ok(r) => Err(format!("{}: {}", r.status, r.text())),
                    Err(e) => Err(e),
                };
                seen.push((started, outcome));
                calls.fetch_add(1, Ordering::Relaxed);
            }
            seen
        }));
    }
    // Calls are flowing before the update, and go on well after it.
    let count = || calls.load(Ordering::Relaxed);
    assert!(eventually(Duration::from_secs(10), || count() >= 20).await);
    let update = json!({"service": "env", "envProcess": "env", "envVars": {"VERSION": "two"}});
    let reply = api(&gw, "PUT", "/system/functions", update.to_string()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    let updated = Instant::now();
    let at_update = count();
    assert!(eventually(Duration::from_secs(10), || count() >= at_update + 40).await);
    stop.store(true, Ordering::Relaxed);

    let mut seen = Vec::new();
    for caller in callers {
        seen.extend(caller.await.unwrap());
    }
    let failed: Vec<_> = seen.iter().filter(|(_, o)| o.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed: {failed:?}",
        failed.len(),
        seen.len()
    );
    assert!(seen.iter().any(|(_, o)| *o == Ok("one")));
    // Once the update has answered, only the new version serves.
    let after: Vec<_> = seen.iter().filter(|(at, _)| *at > updated).collect();
    assert!(!after.is_empty());
    assert!(after.iter().all(|(_, o)| *o == Ok("two")), "{after:?}");
}

// ----------------------------------------------------------------- remove

#[tokio::test]
async fn a_removed_function_is_gone() {
    let gw = Gateway::start(STACK, &[], &[]);
    let reply = api(
        &gw,
        "DELETE",
        "/system/functions",
        r#"{"functionName": "echo"}"#,
    )
    .await;
    assert_answer(&reply, StatusCode::OK, "echo");
    assert_eq!(
        post(gw.addr, "/function/echo", "x").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(names(&gw).await, ["env"]);
    assert_answer(
        &api(&gw, "GET", "/system/function/echo", "").await,
        StatusCode::NOT_FOUND,
        "echo",
    );

    let reply = api(
        &gw,
        "DELETE",
        "/system/functions",
        r#"{"functionName": "echo"}"#,
    )
    .await;
    assert_answer(&reply, StatusCode::NOT_FOUND, "echo");
    for (body, needle) in [
        ("{}", "functionName"),
        (r#"{"functionName": ""}"#, "functionName"),
        ("{\"functionName\"", "malformed"),
        ("", "empty"),
    ] {
        let reply = api(&gw, "DELETE", "/system/functions", body).await;
        assert_answer(&reply, StatusCode::BAD_REQUEST, needle);
    }
    assert_eq!(names(&gw).await, ["env"]);
}

// ------------------------------------------------------------------ scale

#[tokio::test]
async fn scaling_starts_and_stops_replicas_down_to_zero_and_a_call_wakes_it() {
    let gw = Gateway::start(
        "functions:\n  echo:\n    fprocess: cat\n",
        &[],
        &["--max-replicas", "5", "--replica-wait", "300ms"],
    );
    assert_answer(&scale(&gw, "echo", 3).await, StatusCode::ACCEPTED, "echo");
    until_replicas(&gw, "echo", 3).await;
    assert!(
        eventually(Duration::from_secs(5), || gw.children().len() == 3).await,
        "{:?}",
        gw.children()
    );
    assert_eq!(post(gw.addr, "/function/echo", "3").await.text(), "3");

    assert_eq!(scale(&gw, "echo", 1).await.status, StatusCode::ACCEPTED);
    until_replicas(&gw, "echo", 1).await;
    assert!(
        eventually(Duration::from_secs(5), || gw.children().len() == 1).await,
        "{:?}",
        gw.children()
    );

    assert_eq!(scale(&gw, "echo", 0).await.status, StatusCode::ACCEPTED);
    until_replicas(&gw, "echo", 0).await;
    assert!(
        eventually(Duration::from_secs(5), || gw.children().is_empty()).await,
        "{:?}",
        gw.children()
    );
    // At zero, a call is held while one replica starts, not refused
    // (replica_wait is 300ms; a cold start may take longer).
    assert_eq!(status_of(&gw, "echo").await["replicas"], 0);
    let reply = post(gw.addr, "/function/echo", "woken").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), "woken");
    until_replicas(&gw, "echo", 1).await;

    // Over --max-replicas 5.
    assert_answer(
        &scale(&gw, "echo", 6).await,
        StatusCode::BAD_REQUEST,
        "max_replicas",
    );
    assert_eq!(status_of(&gw, "echo").await["replicas"], 1);
}

#[tokio::test]
async fn bad_scale_requests_are_refused_with_the_reason() {
    let gw = Gateway::start(STACK, &[], &[]);
    let path = "/system/scale-function/echo";
    for (body, needle) in [
        (
            r#"{"serviceName": "echo", "replicas": 101}"#,
            "max_replicas",
        ),
        (r#"{"serviceName": "echo", "replicas": -1}"#, "out of range"),
        (
            r#"{"serviceName": "echo", "replicas": 1.5}"#,
            "out of range",
        ),
        (r#"{"serviceName": "echo"}"#, "replicas"),
        (r#"{"serviceName": "env", "replicas": 1}"#, "serviceName"),
        ("{\"replicas\": ", "malformed"),
        ("", "empty"),
    ] {
        assert_answer(
            &api(&gw, "POST", path, body).await,
            StatusCode::BAD_REQUEST,
            needle,
        );
    }
    assert_answer(
        &api(
            &gw,
            "POST",
            "/system/scale-function/nope",
            r#"{"replicas": 1}"#,
        )
        .await,
        StatusCode::NOT_FOUND,
        "nope",
    );
    assert_answer(
        &api(
            &gw,
            "POST",
            "/system/scale-function/bad$name",
            r#"{"replicas": 1}"#,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid function name",
    );
    // serviceName may be left out.
    let reply = api(&gw, "POST", path, r#"{"replicas": 2}"#).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    until_replicas(&gw, "echo", 2).await;
}

// ------------------------------------------------------------------- info

#[tokio::test]
async fn info_names_the_process_provider_and_the_release() {
    let gw = Gateway::start(STACK, &[], &[]);
    let info = json_of(&api(&gw, "GET", "/system/info", "").await);
    assert_eq!(info["provider"]["provider"], "faas");
    assert_eq!(info["provider"]["orchestration"], "process");
    assert_eq!(
        info["provider"]["version"]["release"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(info["version"]["release"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["arch"], std::env::consts::ARCH);
    let limits = info["provider"]["resourceLimits"].as_str().unwrap();
    assert!(
        limits.starts_with("cgroup v") || limits.starts_with("address-space limit"),
        "{limits}"
    );
}

/// What OpenFaaS's `faas-cli` sends with `-n`: `GET /system/namespaces`,
/// `namespace=` on `/system/*` queries, `/function/name.namespace` for
/// calls. Our one namespace (or OpenFaaS's default) is accepted, another
/// is a namespace we do not have, never silently the same functions.
#[tokio::test]
async fn namespaces_are_listed_and_only_ours_is_accepted() {
    let gw = Gateway::start(STACK, &[], &[]);
    assert_eq!(
        json_of(&api(&gw, "GET", "/system/namespaces", "").await),
        json!(["faas"])
    );
    for ns in ["faas", "openfaas-fn", ""] {
        let listed =
            json_of(&api(&gw, "GET", &format!("/system/functions?namespace={ns}"), "").await);
        assert_eq!(listed.as_array().unwrap().len(), 2, "{ns}: {listed}");
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["namespace"] == "faas")
        );
        let echo = json_of(
            &api(
                &gw,
                "GET",
                &format!("/system/function/echo?namespace={ns}"),
                "",
            )
            .await,
        );
        assert_eq!(echo["name"], "echo");
    }
    for path in [
        "/system/functions?namespace=staging",
        "/system/function/echo?namespace=staging",
        "/system/logs?name=echo&namespace=staging",
        "/system/secrets?namespace=staging",
    ] {
        assert_answer(
            &api(&gw, "GET", path, "").await,
            StatusCode::NOT_FOUND,
            "namespace \"staging\" not found",
        );
    }
    // Calls: `name.namespace` is the function in our namespace.
    for path in ["/function/echo.faas", "/function/echo.openfaas-fn/sub?x=1"] {
        let reply = post(gw.addr, path, "namespaced").await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        assert_eq!(reply.text(), "namespaced");
    }
    let queued = post(gw.addr, "/async-function/echo.faas", "later").await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{}", queued.text());
    let elsewhere = post(gw.addr, "/function/echo.staging", "x").await;
    assert_eq!(
        elsewhere.status,
        StatusCode::NOT_FOUND,
        "{}",
        elsewhere.text()
    );
}

/// Allocates as many MiB as the body says.
const HOG: &str =
    "import sys\nn = int(sys.stdin.read() or 1)\nblock = bytearray(n << 20)\nprint(len(block))\n";

#[tokio::test]
async fn a_status_holds_the_whole_deployment_and_limits_hold_on_the_process_provider() {
    let gw = Gateway::start(STACK, &[("hog.py", HOG)], &[]);
    let deployment = json!({
        "service": "hog",
        "image": "faas/hog:1",
        "envProcess": "python3 hog.py",
        "envVars": {"PYTHONDONTWRITEBYTECODE": "1"},
        "labels": {"team": "lab"},
        "constraints": ["node.role == manager"],
        "limits": {"memory": "64m"},
        "requests": {"memory": "32m", "cpu": "0.1"},
    });
    let reply = api(&gw, "POST", "/system/functions", deployment.to_string()).await;
    assert_answer(&reply, StatusCode::ACCEPTED, "hog");
    until_replicas(&gw, "hog", 1).await;
    let status = status_of(&gw, "hog").await;
    for field in ["envVars", "constraints", "limits", "requests"] {
        assert_eq!(status[field], deployment[field], "{field}");
    }
    assert_eq!(status["readOnlyRootFilesystem"], false);

    // The replica runs under its limit, and says so.
    let small = post(gw.addr, "/function/hog", "8").await;
    assert_eq!(small.status, StatusCode::OK, "{}", small.text());
    assert_eq!(small.header("x-memory-limit-bytes"), Some("67108864"));
    let big = post(gw.addr, "/function/hog", "200").await;
    assert_eq!(
        big.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        big.text()
    );

    // The status, with one setting changed, is an update that keeps the rest.
    let mut update = status.clone();
    update["service"] = status["name"].clone();
    update["limits"]["memory"] = json!("256m");
    let reply = api(&gw, "PUT", "/system/functions", update.to_string()).await;
    assert_answer(&reply, StatusCode::ACCEPTED, "hog");
    let roomy = post(gw.addr, "/function/hog", "200").await;
    assert_eq!(roomy.status, StatusCode::OK, "{}", roomy.text());
    assert_eq!(roomy.header("x-memory-limit-bytes"), Some("268435456"));
    let after = status_of(&gw, "hog").await;
    assert_eq!(after["limits"]["memory"], "256m");
    assert_eq!(after["envVars"], deployment["envVars"]);
    assert_eq!(after["labels"]["team"], "lab");

    let bad = json!({"service": "hog2", "envProcess": "cat", "limits": {"memory": "lots"}});
    let reply = api(&gw, "POST", "/system/functions", bad.to_string()).await;
    assert_answer(&reply, StatusCode::BAD_REQUEST, "limits.memory \"lots\"");
}

// ------------------------------------------------------------------- logs

#[tokio::test]
async fn logs_are_ndjson_and_hold_what_the_function_wrote_to_stderr() {
    let gw = Gateway::start(NOISY_STACK, &[("noisy.sh", NOISY)], &[]);
    for i in 1..=3 {
        let reply = post(gw.addr, "/function/noisy", format!("call{i}")).await;
        assert_eq!(reply.text(), "ok\n");
    }
    // The replica's output reaches the log book asynchronously.
    let deadline = Instant::now() + Duration::from_secs(5);
    let all = loop {
        let lines = log_lines(&gw, "name=noisy").await;
        if texts(&lines).iter().any(|t| t.contains("marker-call3")) {
            break lines;
        }
        assert!(Instant::now() < deadline, "no marker-call3 in {lines:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for line in &all {
        assert_eq!(line["name"], "noisy", "{line}");
        assert!(!line["instance"].as_str().unwrap().is_empty(), "{line}");
        humantime::parse_rfc3339_weak(line["timestamp"].as_str().unwrap()).unwrap();
        assert!(line["text"].is_string(), "{line}");
    }
    let all = texts(&all);
    let position = |marker: &str| all.iter().position(|t| t.contains(marker)).unwrap();
    assert!(position("marker-call1") < position("marker-call2"));
    assert!(position("marker-call2") < position("marker-call3"));

    let tail = log_lines(&gw, "name=noisy&tail=2").await;
    assert_eq!(texts(&tail), all[all.len() - 2..]);
    assert!(log_lines(&gw, "name=noisy&tail=0").await.is_empty());
    let recent = log_lines(&gw, "name=noisy&since=1m").await;
    assert!(texts(&recent).iter().any(|t| t.contains("marker-call1")));
    assert!(
        log_lines(&gw, "name=noisy&since=2099-01-01T00:00:00Z")
            .await
            .is_empty()
    );

    for (query, status, needle) in [
        ("", StatusCode::BAD_REQUEST, "name"),
        ("name=", StatusCode::BAD_REQUEST, "name"),
        ("name=nope", StatusCode::NOT_FOUND, "nope"),
        ("name=noisy&tail=ten", StatusCode::BAD_REQUEST, "tail"),
        (
            "name=noisy&since=yesterday",
            StatusCode::BAD_REQUEST,
            "since",
        ),
    ] {
        let reply = api(&gw, "GET", &format!("/system/logs?{query}"), "").await;
        assert_answer(&reply, status, needle);
    }
}

/// A gateway that logs only warnings (so [`Gateway::start`] cannot see it
/// start), killed when dropped.
struct QuietGateway {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl QuietGateway {
    async fn start(stack: &str, files: &[(&str, &str)]) -> QuietGateway {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in files {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        std::fs::write(dir.path().join("stack.yml"), stack).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(BIN)
            .args([
                "--provider",
                "process",
                "--bind-address",
                "127.0.0.1",
                "--coap-port",
                "0",
                "--grpc-port",
                "0",
            ])
            .args(["--port", &port.to_string()])
            .args(["--auth", "none", "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("-f")
            .arg(dir.path().join("stack.yml"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let gw = QuietGateway {
            child,
            addr: ([127, 0, 0, 1], port).into(),
            _dir: dir,
        };
        // It listens once the stack's functions are ready.
        let deadline = Instant::now() + Duration::from_secs(15);
        while send(gw.addr, request("GET", "/healthz", "", None))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the gateway did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gw
    }
}

impl Drop for QuietGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn function_stderr_is_logged_however_quiet_the_gateway_is() {
    let gw = QuietGateway::start(NOISY_STACK, &[("noisy.sh", NOISY)]).await;
    assert_eq!(
        post(gw.addr, "/function/noisy", "quiet").await.text(),
        "ok\n"
    );
    let found = eventually_async(Duration::from_secs(5), || async {
        let reply = get(gw.addr, "/system/logs?name=noisy").await;
        reply.text().contains("marker-quiet")
    })
    .await;
    assert!(
        found,
        "{}",
        get(gw.addr, "/system/logs?name=noisy").await.text()
    );
}

/// The gateway's end of the connection from `client_port`, if still open.
fn server_socket_open(gateway_port: u16, client_port: u16) -> bool {
    let local = format!("0100007F:{gateway_port:04X}");
    let remote = format!("0100007F:{client_port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .any(|l| {
            let mut fields = l.split_whitespace().skip(1);
            fields.next() == Some(&local) && fields.next() == Some(&remote)
        })
}

#[tokio::test]
async fn followed_logs_stream_new_lines_until_the_client_leaves() {
    let gw = Gateway::start(NOISY_STACK, &[("noisy.sh", NOISY)], &[]);
    post(gw.addr, "/function/noisy", "before").await;

    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let client_port = stream.local_addr().unwrap().port();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let mut follow = request("GET", "/system/logs?name=noisy&follow=true", "", None);
    follow
        .headers_mut()
        .insert("host", gw.addr.to_string().parse().unwrap());
    let response = sender.send_request(follow).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut body = response.into_body();

    // The headers came: the gateway subscribed to new lines before it
    // answered, so the next line is ours without waiting.
    assert_eq!(
        post(gw.addr, "/function/noisy", "live").await.text(),
        "ok\n"
    );
    let mut received = String::new();
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                received.push_str(&String::from_utf8_lossy(&data));
            }
            if received.contains("marker-live") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "streamed so far: {received}");
    for line in received.lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        assert_eq!(entry["name"], "noisy");
    }
    assert!(server_socket_open(gw.addr.port(), client_port));

    // The client leaves: the gateway closes its end and keeps serving.
    drop(body);
    drop(sender);
    conn.abort();
    let _ = conn.await;
    assert!(
        eventually(Duration::from_secs(5), || !server_socket_open(
            gw.addr.port(),
            client_port
        ))
        .await,
        "the gateway kept the followed stream open"
    );
    assert_eq!(get(gw.addr, "/healthz").await.status, StatusCode::OK);
    assert_eq!(
        post(gw.addr, "/function/noisy", "after").await.text(),
        "ok\n"
    );
    assert_eq!(names(&gw).await, ["noisy"]);
}

// ---------------------------------------------------------------- secrets

#[tokio::test]
async fn secrets_are_created_listed_mounted_and_removed() {
    let reader = "cat \"$secret_mount_path/$Http_Query\"\n";
    let gw = Gateway::start(STACK, &[("read.sh", reader)], &[]);
    let reply = api(
        &gw,
        "POST",
        "/system/secrets",
        r#"{"name": "api-key", "value": "s3cr3t-value"}"#,
    )
    .await;
    assert_answer(&reply, StatusCode::CREATED, "api-key");
    let raw = b"raw\x00bytes\xff";
    let body = json!({"name": "raw.bin", "rawValue": BASE64.encode(raw)});
    let reply = api(&gw, "POST", "/system/secrets", body.to_string()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());

    let listed = api(&gw, "GET", "/system/secrets", "").await;
    assert_eq!(
        json_of(&listed),
        json!([{"name": "api-key"}, {"name": "raw.bin"}])
    );
    assert!(!listed.text().contains("s3cr3t"));

    for (body, status, needle) in [
        (
            r#"{"name": "api-key", "value": "again"}"#,
            StatusCode::CONFLICT,
            "already exists",
        ),
        (
            r#"{"name": "../escape", "value": "x"}"#,
            StatusCode::BAD_REQUEST,
            "invalid secret name",
        ),
        (
            r#"{"name": "-dash", "value": "x"}"#,
            StatusCode::BAD_REQUEST,
            "invalid secret name",
        ),
        (r#"{"name": "novalue"}"#, StatusCode::BAD_REQUEST, "value"),
        (
            r#"{"name": "badraw", "rawValue": "not base64!"}"#,
            StatusCode::BAD_REQUEST,
            "base64",
        ),
        ("{\"name\": ", StatusCode::BAD_REQUEST, "malformed"),
    ] {
        let reply = api(&gw, "POST", "/system/secrets", body).await;
        assert_answer(&reply, status, needle);
    }
    // A function reads the secrets it names from $secret_mount_path.
    let deployment = json!({
        "service": "reader",
        "envProcess": "sh read.sh",
        "secrets": ["api-key", "raw.bin"],
    });
    let reply = api(&gw, "POST", "/system/functions", deployment.to_string()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    let read = get(gw.addr, "/function/reader?api-key").await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text());
    assert_eq!(
        read.text(),
        "s3cr3t-value",
        "the duplicate kept the first value"
    );
    assert_eq!(
        &get(gw.addr, "/function/reader?raw.bin").await.body[..],
        raw
    );

    let remove = r#"{"name": "api-key"}"#;
    let reply = api(&gw, "DELETE", "/system/secrets", remove).await;
    assert_answer(&reply, StatusCode::CONFLICT, "reader");
    // `faas-cli secret update`: not while a function mounts it.
    let update = r#"{"name": "api-key", "value": "rotated"}"#;
    let reply = api(&gw, "PUT", "/system/secrets", update).await;
    assert_answer(&reply, StatusCode::CONFLICT, "reader");
    let reply = api(
        &gw,
        "DELETE",
        "/system/functions",
        r#"{"functionName": "reader"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = api(&gw, "PUT", "/system/secrets", update).await;
    assert_answer(&reply, StatusCode::OK, "updated secret api-key");
    let reply = api(
        &gw,
        "PUT",
        "/system/secrets",
        r#"{"name": "nosuch", "value": "x"}"#,
    )
    .await;
    assert_answer(&reply, StatusCode::NOT_FOUND, "nosuch");
    let deployment =
        json!({"service": "reader2", "envProcess": "sh read.sh", "secrets": ["api-key"]});
    let reply = api(&gw, "POST", "/system/functions", deployment.to_string()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    assert_eq!(
        get(gw.addr, "/function/reader2?api-key").await.text(),
        "rotated"
    );
    let reply = api(
        &gw,
        "DELETE",
        "/system/functions",
        r#"{"functionName": "reader2"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_answer(
        &api(&gw, "DELETE", "/system/secrets", remove).await,
        StatusCode::OK,
        "api-key",
    );
    assert_answer(
        &api(&gw, "DELETE", "/system/secrets", remove).await,
        StatusCode::NOT_FOUND,
        "api-key",
    );
    assert_answer(
        &api(&gw, "DELETE", "/system/secrets", "{}").await,
        StatusCode::BAD_REQUEST,
        "name",
    );
    assert_eq!(
        json_of(&api(&gw, "GET", "/system/secrets", "").await),
        json!([{"name": "raw.bin"}])
    );
}

// ------------------------------------------------------------------- auth

/// Every `/system` route, with a body that succeeds when let in, and the
/// status it then answers; in an order that works on the [`STACK`].
const ROUTES: &[(&str, &str, &str, u16)] = &[
    ("GET", "/system/functions", "", 200),
    (
        "POST",
        "/system/functions",
        r#"{"service": "authed", "envProcess": "cat"}"#,
        202,
    ),
    (
        "PUT",
        "/system/functions",
        r#"{"service": "authed", "envProcess": "cat", "envVars": {"v": "2"}}"#,
        202,
    ),
    ("GET", "/system/function/authed", "", 200),
    (
        "POST",
        "/system/scale-function/authed",
        r#"{"serviceName": "authed", "replicas": 1}"#,
        202,
    ),
    ("GET", "/system/info", "", 200),
    ("GET", "/system/namespaces", "", 200),
    ("GET", "/system/logs?name=authed", "", 200),
    (
        "POST",
        "/system/secrets",
        r#"{"name": "k", "value": "v"}"#,
        201,
    ),
    ("GET", "/system/secrets", "", 200),
    (
        "PUT",
        "/system/secrets",
        r#"{"name": "k", "value": "v2"}"#,
        200,
    ),
    ("DELETE", "/system/secrets", r#"{"name": "k"}"#, 200),
    (
        "DELETE",
        "/system/functions",
        r#"{"functionName": "authed"}"#,
        200,
    ),
];

/// Every route refuses a caller without the right credentials, and none
/// of the refused requests has an effect.
async fn assert_all_routes_refuse_strangers(gw: &Gateway) {
    let wrong = BASE64.encode(format!("{USER}:wrong"));
    let half = BASE64.encode(USER);
    let attempts: [Option<String>; 6] = [
        None,
        Some(format!("Basic {wrong}")),
        Some(format!(
            "Basic {}",
            BASE64.encode(format!("root:{PASSWORD}"))
        )),
        Some(format!("Basic {half}")),
        Some("Basic !!!".to_owned()),
        Some(format!("Bearer {PASSWORD}")),
    ];
    for (method, path, body, _) in ROUTES {
        for authorization in &attempts {
            let mut request = request(method, path, *body, None);
            if let Some(value) = authorization {
                request
                    .headers_mut()
                    .insert("authorization", value.parse().unwrap());
            }
            let reply = send(gw.addr, request).await.unwrap();
            assert_answer(&reply, StatusCode::UNAUTHORIZED, "auth");
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Basic realm=\"faas\""),
                "{method} {path}"
            );
        }
    }
}

async fn assert_all_routes_admit_the_user(gw: &Gateway) {
    for (method, path, body, status) in ROUTES {
        let reply = api_as_admin(gw, method, path, *body).await;
        assert_eq!(
            reply.status.as_u16(),
            *status,
            "{method} {path}: {}",
            reply.text()
        );
    }
}

/// `/healthz`, `/metrics` and (without `--auth-invoke`) calls stay open.
async fn assert_open_routes_are_open(gw: &Gateway) {
    assert_eq!(get(gw.addr, "/healthz").await.status, StatusCode::OK);
    assert_eq!(get(gw.addr, "/metrics").await.status, StatusCode::OK);
    let call = post(gw.addr, "/function/echo", "open").await;
    assert_eq!(call.status, StatusCode::OK);
    assert_eq!(call.text(), "open");
    let by_header = send(
        gw.addr,
        Request::post("/anywhere")
            .header("X-Function", "echo")
            .body(Full::new(Bytes::from_static(b"header")))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(by_header.text(), "header");
}

#[tokio::test]
async fn credentials_from_the_environment_guard_every_system_route() {
    let empty = tempfile::tempdir().unwrap();
    let gw = Gateway::start_with_env(
        STACK,
        &[],
        &["--secret-mount-path", empty.path().to_str().unwrap()],
        &[("basic_auth_user", USER), ("basic_auth_password", PASSWORD)],
    );
    assert_all_routes_refuse_strangers(&gw).await;
    assert_open_routes_are_open(&gw).await;
    assert_all_routes_admit_the_user(&gw).await;
    // Functions never see the gateway's credentials.
    let env = get(gw.addr, "/function/env").await.text();
    assert!(env.contains("PATH=") && !env.contains(PASSWORD), "{env}");
    assert!(gw.log().contains("basic auth"), "{}", gw.log());
    assert!(!gw.log().contains(PASSWORD), "{}", gw.log());
}

#[tokio::test]
async fn credentials_from_secret_files_guard_every_system_route() {
    let secrets = tempfile::tempdir().unwrap();
    // As `echo … > file` writes them: the trailing newline is not part of it.
    std::fs::write(secrets.path().join("basic-auth-user"), format!("{USER}\n")).unwrap();
    std::fs::write(
        secrets.path().join("basic-auth-password"),
        format!("{PASSWORD}\n"),
    )
    .unwrap();
    let gw = Gateway::start(
        STACK,
        &[],
        &["--secret-mount-path", secrets.path().to_str().unwrap()],
    );
    assert_all_routes_refuse_strangers(&gw).await;
    assert_open_routes_are_open(&gw).await;
    assert_all_routes_admit_the_user(&gw).await;
    assert!(!gw.log().contains(PASSWORD), "{}", gw.log());
}

#[tokio::test]
async fn auth_invoke_guards_calls_too_but_not_health() {
    let empty = tempfile::tempdir().unwrap();
    let gw = Gateway::start_with_env(
        STACK,
        &[],
        &[
            "--secret-mount-path",
            empty.path().to_str().unwrap(),
            "--auth-invoke",
        ],
        &[("basic_auth_user", USER), ("basic_auth_password", PASSWORD)],
    );
    let by_path = || request("POST", "/function/echo/x?y=1", "hi", None);
    let by_header = || {
        let mut r = request("POST", "/anywhere", "hi", None);
        r.headers_mut()
            .insert("x-function", "echo".parse().unwrap());
        r
    };
    for call in [by_path(), by_header()] {
        let reply = send(gw.addr, call).await.unwrap();
        assert_answer(&reply, StatusCode::UNAUTHORIZED, "auth");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Basic realm=\"faas\"")
        );
    }
    let wrong = request("POST", "/function/echo", "hi", Some((USER, "wrong")));
    assert_eq!(
        send(gw.addr, wrong).await.unwrap().status,
        StatusCode::UNAUTHORIZED
    );
    for mut call in [by_path(), by_header()] {
        call.headers_mut().insert(
            "authorization",
            format!("Basic {}", BASE64.encode(format!("{USER}:{PASSWORD}")))
                .parse()
                .unwrap(),
        );
        let reply = send(gw.addr, call).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.text(), "hi");
    }
    assert_eq!(get(gw.addr, "/healthz").await.status, StatusCode::OK);
    assert_eq!(get(gw.addr, "/metrics").await.status, StatusCode::OK);
    assert_eq!(
        api(&gw, "GET", "/system/functions", "").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(!gw.log().contains(PASSWORD), "{}", gw.log());
}

#[tokio::test]
async fn half_a_pair_of_credentials_stops_start_up() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_str().unwrap();
    let (status, stderr) = run_to_exit(&["--secret-mount-path", dir], &[("basic_auth_user", USER)]);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("basic_auth_password is missing"),
        "{stderr}"
    );

    let (status, stderr) = run_to_exit(
        &["--secret-mount-path", dir],
        &[("basic_auth_password", PASSWORD)],
    );
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("basic_auth_user is missing"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");

    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("basic-auth-user"), USER).unwrap();
    let (status, stderr) = run_to_exit(
        &["--secret-mount-path", secrets.path().to_str().unwrap()],
        &[],
    );
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("basic-auth-password does not"), "{stderr}");
}

// ------------------------------------------------------------ other paths

#[tokio::test]
async fn unknown_system_paths_are_404_and_wrong_methods_405() {
    let gw = Gateway::start(STACK, &[], &[]);
    assert_answer(
        &api(&gw, "GET", "/system/nope", "").await,
        StatusCode::NOT_FOUND,
        "/system/nope",
    );
    assert_answer(
        &api(&gw, "PATCH", "/system/functions", "{}").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "PATCH",
    );
    assert_answer(
        &api(&gw, "DELETE", "/system/info", "").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "DELETE",
    );
}
