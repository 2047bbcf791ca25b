//! End-to-end tests of the management API (`/system/…`) on a real Docker
//! Swarm: the gateway of `./build.sh up` deploys, updates, scales and
//! removes functions, reads their logs and manages secrets through Docker,
//! and everything is checked through HTTP (`FAAS_GATEWAY_URL`, default
//! `http://127.0.0.1:8080`) and the `docker` CLI.
//!
//! The API's credentials come from `.secrets/basic-auth-user` and
//! `.secrets/basic-auth-password` (written by `./build.sh up`) when they
//! exist. These tests need Docker and the stack, so they are
//! ignored by a plain `cargo test` and run on purpose (`./build.sh test`,
//! or `cargo test -- --ignored`); once running, a missing piece is a
//! failure saying what to do.
//! Each test deploys its own functions and secrets (unique names, label
//! `faas.test=swarm`) and removes them, even when it fails; they run one at
//! a time.

use crate::swarm_util;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use faas_common::api::{FunctionStatus, LogEntry};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use swarm_util::{
    Answer, Http, Load, START_TIMEOUT, Swarm, TestService, failures, service_ps, try_docker,
    unique_name,
};

/// How soon a change must show at the gateway.
const DISCOVERY_LAG: Duration = Duration::from_secs(2);
/// Longest a rolling update of one replica may take: the new task's health
/// check passes (2 s interval), then the old one drains (10 s).
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(90);

/// The management API of the stack's gateway, with its credentials.
struct Api {
    swarm: Swarm,
    authorization: Option<String>,
}

impl Api {
    /// The stack, when it is there (see [`Swarm::connect`]), and its
    /// gateway serves the management API.
    async fn connect() -> Api {
        let swarm = Swarm::connect();
        let api = Api {
            swarm,
            authorization: credentials(),
        };
        let info = api.get("/system/info").await;
        assert_eq!(
            info.status,
            StatusCode::OK,
            "the gateway at {} has no working management API (GET /system/info: {} {:?}); rebuild and redeploy it with ./build.sh up",
            api.swarm.gateway,
            info.status,
            info.text()
        );
        api
    }

    fn client(&self) -> &Http {
        &self.swarm.client
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = &self.authorization {
            headers.push(("authorization", auth.as_str()));
        }
        headers
    }

    async fn send(&self, method: Method, path: &str, body: impl Into<Bytes>) -> Answer {
        self.client()
            .call(method.clone(), path, &self.headers(), body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, Bytes::new()).await
    }

    async fn send_json(&self, method: Method, path: &str, body: &Value) -> Answer {
        self.send(method, path, body.to_string()).await
    }

    /// `POST /system/functions`; the returned guard removes the service.
    async fn deploy(&self, deployment: &Value) -> (Answer, TestService) {
        let name = deployment["service"]
            .as_str()
            .expect("a deployment names its service")
            .to_owned();
        let guard = TestService { name };
        let answer = self
            .send_json(Method::POST, "/system/functions", deployment)
            .await;
        (answer, guard)
    }

    /// Deploys and waits until one replica is available.
    async fn deploy_ready(&self, deployment: &Value) -> TestService {
        let (answer, guard) = self.deploy(deployment).await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "deploy {deployment}: {}",
            answer.text()
        );
        self.wait_available(&guard.name, 1).await;
        guard
    }

    /// `GET /system/function/{name}`.
    async fn status(&self, name: &str) -> Result<FunctionStatus, Answer> {
        let answer = self.get(&format!("/system/function/{name}")).await;
        if answer.status != StatusCode::OK {
            return Err(answer);
        }
        Ok(serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("GET /system/function/{name}: {e}: {:?}", answer.text())))
    }

    /// Waits until the function wants and has `replicas` available.
    async fn wait_available(&self, name: &str, replicas: u64) -> FunctionStatus {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let status = self.status(name).await;
            if let Ok(s) = &status
                && s.replicas == replicas
                && s.available_replicas == replicas
            {
                return s.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "{name} does not have {replicas} available replicas after {START_TIMEOUT:?}: {:?}\n{}",
                    status.map_err(|a| format!("{} {}", a.status, a.text())),
                    service_ps(name)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `GET /system/secrets`, as names.
    async fn secret_names(&self) -> Vec<String> {
        let answer = self.get("/system/secrets").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let list: Vec<Value> = serde_json::from_slice(&answer.body).expect("a JSON array");
        list.iter()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// `GET /system/logs?…`, non-follow: every line, parsed.
    async fn logs(&self, query: &str) -> (Answer, Vec<LogEntry>) {
        let answer = self.get(&format!("/system/logs?{query}")).await;
        let entries = if answer.status == StatusCode::OK {
            answer
                .text()
                .lines()
                .map(|line| {
                    serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("log line {line:?} is not a log entry: {e}"))
                })
                .collect()
        } else {
            Vec::new()
        };
        (answer, entries)
    }
}

/// `Basic …` from `.secrets/`, when `./build.sh up` wrote the password.
fn credentials() -> Option<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.secrets");
    let password = std::fs::read_to_string(dir.join("basic-auth-password")).ok()?;
    let user = std::fs::read_to_string(dir.join("basic-auth-user"))
        .ok()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "admin".to_owned());
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.trim()));
    Some(format!("Basic {token}"))
}

/// A deployment of the echo function under a fresh name.
fn catservice(tag: &str) -> Value {
    json!({
        "service": unique_name(tag),
        "image": swarm_util::CATSERVICE,
        "labels": {"faas.test": "swarm"},
    })
}

/// A Swarm secret made by a test: `docker secret rm` when dropped (after
/// the functions using it, when declared before them).
struct TestSecret {
    name: String,
}

impl Drop for TestSecret {
    fn drop(&mut self) {
        let _ = try_docker(&["secret", "rm", &self.name]);
    }
}

/// Calls `name` until `done` accepts an answer, within `limit`.
async fn call_until(
    client: &Http,
    name: &str,
    limit: Duration,
    done: impl Fn(&Answer) -> bool,
) -> Answer {
    let deadline = Instant::now() + limit;
    loop {
        let answer = client.invoke(name, "probe").await;
        if done(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "/function/{name} still answers {} {:?} after {limit:?}",
            answer.status,
            answer.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn info_says_the_orchestration_is_swarm() {
    let api = Api::connect().await;
    let answer = api.get("/system/info").await;
    assert_eq!(answer.status, StatusCode::OK);
    let info: Value = serde_json::from_slice(&answer.body).expect("JSON");
    assert_eq!(info["provider"]["orchestration"], "swarm", "{info}");
    assert_eq!(info["provider"]["provider"], "faas", "{info}");
}

/// POST a deployment: 202, then the function is listed with one available
/// replica, its labels and annotations, and answers calls; the same
/// deployment again is 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn a_deployed_function_becomes_available_and_echoes() {
    let api = Api::connect().await;
    let mut deployment = catservice("deploy");
    deployment["envProcess"] = json!("cat");
    deployment["annotations"] = json!({"topic": "demo"});
    let (answer, function) = api.deploy(&deployment).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    let name = function.name.clone();

    let status = api.wait_available(&name, 1).await;
    assert_eq!(status.name, name);
    assert_eq!(status.image, swarm_util::CATSERVICE);
    assert_eq!(status.env_process.as_deref(), Some("cat"));
    assert_eq!(status.labels.get("faas.function"), Some(&name));
    assert_eq!(
        status.labels.get("faas.test").map(String::as_str),
        Some("swarm")
    );
    assert_eq!(
        status.annotations.get("topic").map(String::as_str),
        Some("demo")
    );
    assert!(
        !status
            .labels
            .keys()
            .any(|k| k.starts_with("faas.annotation.")),
        "annotations are not labels: {:?}",
        status.labels
    );
    // As deployed: dnsrr on the functions network, image not pinned.
    let spec = try_docker(&[
        "service",
        "inspect",
        &name,
        "--format",
        "{{.Spec.EndpointSpec.Mode}} {{.Spec.TaskTemplate.ContainerSpec.Image}} {{.Spec.UpdateConfig.Order}}",
    ])
    .expect("the service exists");
    assert_eq!(
        spec.trim(),
        format!("dnsrr {} start-first", swarm_util::CATSERVICE)
    );

    let listed = api.get("/system/functions").await;
    assert_eq!(listed.status, StatusCode::OK);
    let listed: Vec<FunctionStatus> = serde_json::from_slice(&listed.body).expect("JSON");
    assert!(listed.iter().any(|f| f.name == name), "{name} is listed");

    let answer = call_until(api.client(), &name, DISCOVERY_LAG, |a| {
        a.status == StatusCode::OK
    })
    .await;
    assert_eq!(answer.text(), "probe");
    let body = "hello from the management API \u{2603}";
    let answer = api.client().invoke(&name, body).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text(), body);

    let (again, _same_service) = api.deploy(&deployment).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
    assert!(again.text().contains(&name), "{}", again.text());
}

/// Nothing can be pulled here: a deployment of an image this engine does
/// not have is refused up front, naming the image, and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn deploying_a_missing_image_is_refused_naming_it() {
    let api = Api::connect().await;
    let image = format!("faas/{}:latest", unique_name("no-such-image"));
    let mut deployment = catservice("missing");
    deployment["image"] = json!(image);
    let (answer, function) = api.deploy(&deployment).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    assert!(
        answer.text().contains(&image),
        "the answer names the image: {:?}",
        answer.text()
    );
    assert!(
        try_docker(&["service", "inspect", &function.name]).is_err(),
        "no service was created"
    );

    let mut unnamed = catservice("noimage");
    unnamed["image"] = json!("");
    let (answer, _none) = api.deploy(&unnamed).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    assert!(answer.text().contains("image"), "{}", answer.text());
}

/// PUT a deployment that changes an environment variable while callers
/// keep calling: the rolling update (start-first) drops no call, and the
/// new environment shows in the `env` function's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn an_update_under_load_drops_no_call_and_changes_the_environment() {
    let api = Api::connect().await;
    let mut deployment = json!({
        "service": unique_name("update"),
        "image": "faas/env:latest",
        "envVars": {"GREETING": "before"},
        "labels": {"faas.test": "swarm"},
    });
    let function = api.deploy_ready(&deployment).await;
    let name = function.name.clone();
    call_until(api.client(), &name, DISCOVERY_LAG, |a| {
        a.status == StatusCode::OK && a.text().contains("GREETING=before")
    })
    .await;

    let load = Load::start_checked(
        api.client(),
        &name,
        4,
        Arc::new(|_: &str, a: &Answer| {
            let text = a.text();
            if text.contains("GREETING=before") || text.contains("GREETING=after") {
                Ok(())
            } else {
                Err(format!("200 without GREETING: {text:?}"))
            }
        }),
    );
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    deployment["envVars"] = json!({"GREETING": "after"});
    let answer = api
        .send_json(Method::PUT, "/system/functions", &deployment)
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());

    // Until Swarm reports the update done and the old task has stopped.
    let deadline = Instant::now() + ROLLOUT_TIMEOUT;
    loop {
        let state = try_docker(&[
            "service",
            "inspect",
            &name,
            "--format",
            "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
        ])
        .unwrap_or_default();
        let running = try_docker(&[
            "service",
            "ps",
            "--quiet",
            "--filter",
            "desired-state=running",
            &name,
        ])
        .unwrap_or_default();
        let old_gone = try_docker(&[
            "ps",
            "--quiet",
            "--filter",
            &format!("label=com.docker.swarm.service.name={name}"),
        ])
        .unwrap_or_default()
        .lines()
        .count()
            == 1;
        if state.trim() == "completed" && running.lines().count() == 1 && old_gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the update of {name} did not finish within {ROLLOUT_TIMEOUT:?} (state {state:?})\n{}",
            service_ps(&name)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcomes = load.stop().await;

    let failed = outcomes.iter().filter(|o| !o.ok()).count();
    eprintln!(
        "{name}: {} calls during the update, {failed} failed",
        outcomes.len()
    );
    assert!(
        outcomes.len() > 20,
        "the load ran: {} calls",
        outcomes.len()
    );
    assert_eq!(
        failed,
        0,
        "calls failed during the rolling update:\n{}",
        failures(&outcomes, started)
    );
    let answer = api.client().invoke(&name, "").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.text().contains("GREETING=after"),
        "the new environment: {:?}",
        answer.text()
    );
    let status = api.wait_available(&name, 1).await;
    assert_eq!(status.replicas, 1, "an update keeps the replica count");

    let mut unknown = deployment.clone();
    unknown["service"] = json!(unique_name("never-deployed"));
    let answer = api
        .send_json(Method::PUT, "/system/functions", &unknown)
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text());
}

/// Scale to 3: three available replicas; back to 1: one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn scaling_to_three_and_back_to_one() {
    let api = Api::connect().await;
    let function = api.deploy_ready(&catservice("scale")).await;
    let name = function.name.clone();
    let path = format!("/system/scale-function/{name}");

    for replicas in [3, 1] {
        let answer = api
            .send_json(
                Method::POST,
                &path,
                &json!({"serviceName": name, "replicas": replicas}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
        api.wait_available(&name, replicas).await;
        api.swarm.wait_replicas(&name, replicas).await;
    }
    let answer = api.client().invoke(&name, "still here").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text(), "still here");

    let answer = api
        .send_json(
            Method::POST,
            &format!("/system/scale-function/{}", unique_name("nobody")),
            &json!({"replicas": 2}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text());
}

/// The watchdog logs each start and, with `write_debug`, each call's
/// output: both come back from `/system/logs` as ndjson entries naming the
/// function and the task, oldest first; `tail` cuts; unknown is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn logs_return_the_watchdogs_lines_as_ndjson() {
    let api = Api::connect().await;
    let mut deployment = catservice("logs");
    deployment["envVars"] = json!({"write_debug": "true"});
    let function = api.deploy_ready(&deployment).await;
    let name = function.name.clone();
    let marker = unique_name("marker");
    call_until(api.client(), &name, DISCOVERY_LAG, |a| {
        a.status == StatusCode::OK
    })
    .await;
    let answer = api.client().invoke(&name, marker.clone()).await;
    assert_eq!(answer.status, StatusCode::OK);

    // Docker's log delivery is not instant: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let (answer, entries) = api.logs(&format!("name={name}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert_eq!(
            answer
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/x-ndjson")
        );
        if entries.iter().any(|e| e.text.contains(&marker)) {
            break entries;
        }
        assert!(
            Instant::now() < deadline,
            "the logs of {name} never showed {marker:?}: {entries:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        entries.iter().any(|e| e.text.contains("listening")),
        "the watchdog's start is logged: {entries:#?}"
    );
    for entry in &entries {
        assert_eq!(entry.name, name);
        assert_eq!(entry.namespace, "");
        assert!(
            entry.instance.starts_with(&format!("{name}.1.")),
            "instance is the task: {entry:?}"
        );
        assert!(
            entry.timestamp.len() >= 20 && entry.timestamp.as_bytes()[10] == b'T',
            "RFC 3339 timestamp: {entry:?}"
        );
        assert!(!entry.text.is_empty() && !entry.text.ends_with('\n'));
    }
    let stamps: Vec<&str> = entries.iter().map(|e| e.timestamp.as_str()).collect();
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(stamps, sorted, "oldest first");

    let (answer, tail) = api.logs(&format!("name={name}&tail=1")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(tail.len(), 1, "tail=1: {tail:#?}");
    assert_eq!(tail[0], entries[entries.len() - 1], "the latest line");

    let (answer, _) = api.logs(&format!("name={}", unique_name("nobody"))).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text());
}

/// `follow=true` stays open and delivers a line written after it opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn followed_logs_stream_new_lines() {
    let api = Api::connect().await;
    let mut deployment = catservice("follow");
    deployment["envVars"] = json!({"write_debug": "true"});
    let function = api.deploy_ready(&deployment).await;
    let name = function.name.clone();
    call_until(api.client(), &name, DISCOVERY_LAG, |a| {
        a.status == StatusCode::OK
    })
    .await;

    let response = api
        .client()
        .open(
            Method::GET,
            &format!("/system/logs?name={name}&follow=true&tail=0"),
            &api.headers(),
        )
        .await
        .expect("GET /system/logs?follow=true");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let marker = unique_name("followed");
    let answer = api.client().invoke(&name, marker.clone()).await;
    assert_eq!(answer.status, StatusCode::OK);

    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("the log stream");
            if let Some(data) = frame.data_ref() {
                seen.push_str(&String::from_utf8_lossy(data));
                if seen.contains(&marker) {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "the followed logs of {name} did not deliver {marker:?}: {seen:?}"
    );
    let line = seen
        .lines()
        .find(|l| l.contains(&marker))
        .expect("the marker's line");
    let entry: LogEntry = serde_json::from_str(line).expect("an ndjson entry");
    assert_eq!(entry.name, name);
    drop(body);
}

/// A secret's life: created (201), listed, mounted into a function at
/// `/run/secrets/<name>` (the function reads it back, on a read-only root),
/// refused removal while in use (409 in Docker's words), removed once the
/// function is gone (200), and no longer listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn secrets_are_mounted_and_cannot_go_while_in_use() {
    let api = Api::connect().await;
    let secret = TestSecret {
        name: unique_name("secret"),
    };
    let value = format!("s3cr3t {}", unique_name("value"));
    let answer = api
        .send_json(
            Method::POST,
            "/system/secrets",
            &json!({"name": secret.name, "value": value}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    assert!(api.secret_names().await.contains(&secret.name));
    let again = api
        .send_json(
            Method::POST,
            "/system/secrets",
            &json!({"name": secret.name, "value": "other"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());

    let mut deployment = catservice("reads-secret");
    deployment["envProcess"] = json!(format!("cat /run/secrets/{}", secret.name));
    deployment["secrets"] = json!([secret.name]);
    deployment["readOnlyRootFilesystem"] = json!(true);
    let mut function = api.deploy_ready(&deployment).await;
    let name = function.name.clone();
    let answer = call_until(api.client(), &name, DISCOVERY_LAG, |a| {
        a.status == StatusCode::OK
    })
    .await;
    assert_eq!(
        answer.text(),
        value,
        "the function reads the mounted secret"
    );

    let refused = api
        .send_json(
            Method::DELETE,
            "/system/secrets",
            &json!({"name": secret.name}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text());
    assert!(
        refused.text().contains("in use") && refused.text().contains(&name),
        "Docker's words: {:?}",
        refused.text()
    );

    let answer = api
        .send_json(
            Method::DELETE,
            "/system/functions",
            &json!({"functionName": name}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    function.remove();
    let answer = api
        .send_json(
            Method::DELETE,
            "/system/secrets",
            &json!({"name": secret.name}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert!(!api.secret_names().await.contains(&secret.name));
    let answer = api
        .send_json(
            Method::DELETE,
            "/system/secrets",
            &json!({"name": secret.name}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text());

    let mut missing = catservice("no-secret");
    missing["secrets"] = json!([unique_name("never-created")]);
    let (answer, _none) = api.deploy(&missing).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    assert!(
        answer.text().contains("does not exist"),
        "{}",
        answer.text()
    );
}

/// DELETE a function: 200, and calls answer 404 within 2 s; again: 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn a_removed_function_answers_404_within_2s() {
    let api = Api::connect().await;
    let function = api.deploy_ready(&catservice("remove")).await;
    let name = function.name.clone();
    call_until(api.client(), &name, DISCOVERY_LAG, |a| {
        a.status == StatusCode::OK
    })
    .await;

    let answer = api
        .send_json(
            Method::DELETE,
            "/system/functions",
            &json!({"functionName": name}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let removed = Instant::now();
    call_until(api.client(), &name, DISCOVERY_LAG, |a| {
        a.status == StatusCode::NOT_FOUND
    })
    .await;
    eprintln!("{name}: 404 {:?} after DELETE", removed.elapsed());
    let status = api.status(&name).await;
    assert!(
        matches!(&status, Err(a) if a.status == StatusCode::NOT_FOUND),
        "GET /system/function/{name} after DELETE: {:?}",
        status.map_err(|a| a.status)
    );
    let answer = api
        .send_json(
            Method::DELETE,
            "/system/functions",
            &json!({"functionName": name}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text());
}

/// Creates a Swarm secret outside the API (as another stack or an operator
/// would), labelled for cleanup but not as the API's own.
fn foreign_secret(value: &str) -> TestSecret {
    let secret = TestSecret {
        name: unique_name("foreign"),
    };
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), value).unwrap();
    swarm_util::docker(&[
        "secret",
        "create",
        "--label",
        "faas.test=swarm",
        &secret.name,
        file.path().to_str().unwrap(),
    ]);
    secret
}

/// The API lists, mounts and removes only the secrets it created: another
/// stack's secret and the gateway's own credentials are invisible to it,
/// cannot be mounted into a function (and so read), and cannot be removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn the_api_sees_only_the_secrets_it_created() {
    let api = Api::connect().await;
    let foreign = foreign_secret("not yours");
    let own_credentials: Vec<String> = swarm_util::docker(&[
        "secret",
        "ls",
        "--filter",
        "label=faas.auth=true",
        "--format",
        "{{.Name}}",
    ])
    .lines()
    .map(str::to_owned)
    .collect();
    assert!(
        !own_credentials.is_empty(),
        "the stack's credentials are Swarm secrets"
    );
    let listed = api.secret_names().await;
    for hidden in own_credentials.iter().chain([&foreign.name]) {
        assert!(!listed.contains(hidden), "{hidden} listed: {listed:?}");
    }

    for hidden in own_credentials.iter().chain([&foreign.name]) {
        let mut deployment = catservice("steal");
        deployment["envProcess"] = json!(format!("cat /run/secrets/{hidden}"));
        deployment["secrets"] = json!([hidden]);
        let (answer, _guard) = api.deploy(&deployment).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{hidden}: {}",
            answer.text()
        );
        assert!(
            answer.text().contains("does not exist"),
            "{}",
            answer.text()
        );

        let answer = api
            .send_json(Method::DELETE, "/system/secrets", &json!({"name": hidden}))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{hidden}: {}",
            answer.text()
        );
        assert!(
            try_docker(&["secret", "inspect", hidden]).is_ok(),
            "{hidden} was removed"
        );
    }
}

/// A service someone else created on the functions network (here with the
/// Docker socket mounted, the takeover target) is a function: it
/// can be called and scaled, but the API refuses to update (and so
/// re-image) or remove it, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn services_the_gateway_did_not_deploy_cannot_be_taken_over() {
    let api = Api::connect().await;
    let service = api.swarm.create_service(
        "foreign",
        &[
            "--mount",
            "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock",
        ],
    );
    let name = service.name.clone();
    call_until(api.client(), &name, START_TIMEOUT, |a| {
        a.status == StatusCode::OK
    })
    .await;
    let image = || {
        swarm_util::docker(&[
            "service",
            "inspect",
            &name,
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        ])
    };
    let before = image();

    let takeover = json!({"service": name, "image": "faas/env:latest", "envProcess": "env"});
    let answer = api
        .send_json(Method::PUT, "/system/functions", &takeover)
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text());
    assert!(
        answer.text().contains("did not deploy"),
        "{}",
        answer.text()
    );
    assert_eq!(image(), before, "the image was replaced");

    let answer = api
        .send_json(
            Method::DELETE,
            "/system/functions",
            &json!({"functionName": name}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text());
    assert!(
        try_docker(&["service", "inspect", &name]).is_ok(),
        "removed"
    );

    let answer = api
        .send_json(
            Method::POST,
            &format!("/system/scale-function/{name}"),
            &json!({"serviceName": name, "replicas": 2}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    api.wait_available(&name, 2).await;
}

/// Two services claiming one function name: the one the gateway deployed
/// serves it, whatever else claims it, and the conflict is shown in the
/// function's status instead of calls silently going elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn a_contested_name_is_served_by_the_gateways_own_service_and_shown() {
    let api = Api::connect().await;
    let name = unique_name("contested");
    let deployment = json!({
        "service": name,
        "image": "faas/env:latest",
        "envVars": {"MARK": "deployed-by-the-gateway"},
        "labels": {"faas.test": "swarm"},
    });
    let _ours = api.deploy_ready(&deployment).await;
    // Another service claims the same name on the functions network: the
    // gateway's own deployment keeps serving it, and the conflict, silent
    // before, is shown.
    let label = format!("faas.function={name}");
    let _theirs = api.swarm.create_service("claimant", &["--label", &label]);
    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        let status = api.status(&name).await.expect("listed");
        if status.conflict.is_some() {
            break status;
        }
        assert!(Instant::now() < deadline, "no conflict shown: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let conflict = status.conflict.unwrap();
    assert!(
        conflict.contains(&format!("served by {name:?}"))
            && conflict.contains("deployed by the gateway"),
        "{conflict}"
    );
    for _ in 0..10 {
        let answer = api.client().invoke(&name, "x").await;
        assert!(
            answer.text().contains("MARK=deployed-by-the-gateway"),
            "a call went to the other service: {:?}",
            answer.text()
        );
    }
}

/// The case: another stack's service literally named `N` (OpenFaaS
/// style: `com.openfaas.function`, not on our functions network) and this
/// kind of stack's `<stack>_N` on the functions network. The reachable one
/// serves `N`, every time, and the conflict is shown; the old rule (exact
/// name first) sent every call to the unreachable one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn a_contested_name_is_never_served_by_another_stacks_unreachable_service() {
    let api = Api::connect().await;
    let name = unique_name("md");
    let openfaas_label = format!("com.openfaas.function={name}");
    swarm_util::docker(&[
        "service",
        "create",
        "--detach",
        "--quiet",
        "--name",
        &name,
        "--label",
        &openfaas_label,
        "--label",
        "faas.test=swarm",
        swarm_util::CATSERVICE,
    ]);
    let _theirs = TestService { name: name.clone() };
    let stack = format!("t-stk{}", std::process::id());
    let ours_name = format!("{stack}_{name}");
    let function_label = format!("faas.function={name}");
    let namespace_label = format!("com.docker.stack.namespace={stack}");
    swarm_util::docker(&[
        "service",
        "create",
        "--detach",
        "--quiet",
        "--name",
        &ours_name,
        "--network",
        swarm_util::NETWORK,
        "--label",
        &function_label,
        "--label",
        &namespace_label,
        "--label",
        "faas.test=swarm",
        "--env",
        "MARK=on-the-functions-network",
        "faas/env:latest",
    ]);
    let _stack = TestService {
        name: ours_name.clone(),
    };

    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Ok(status) = api.status(&name).await
            && status.conflict.is_some()
            && status.available_replicas > 0
        {
            break status;
        }
        assert!(Instant::now() < deadline, "no conflict shown for {name}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let conflict = status.conflict.unwrap();
    assert!(
        conflict.contains(&format!("served by {ours_name:?}")) && conflict.contains(&name),
        "{conflict}"
    );
    for _ in 0..10 {
        let answer = api.client().invoke(&name, "x").await;
        assert!(
            answer.text().contains("MARK=on-the-functions-network"),
            "{} {:?}",
            answer.status,
            answer.text()
        );
    }
}
