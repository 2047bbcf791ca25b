//! End-to-end tests of async calls on a real Docker Swarm: the gateway of
//! `./build.sh up` (queue on the named volume `queue`) takes calls at
//! `/async-function/…`, runs them, and keeps their records at
//! `/system/executions/…` — also across SIGKILLs of its own container.
//!
//! The records are read with the credentials in `.secrets/` (written by
//! `./build.sh up`). These tests need Docker and the stack, so they are
//! ignored by a plain `cargo test` and run on purpose (`./build.sh test`,
//! or `cargo test -- --ignored`); once running, a missing piece is a
//! failure saying what to do. Functions a test deploys have unique names and the
//! label `faas.test=swarm`, and are removed even when the test fails.

use crate::swarm_util;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use faas_common::api::{Execution, ExecutionStatus};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use swarm_util::{
    Answer, Http, START_TIMEOUT, Swarm, TestService, build_image, credentials, docker,
    running_container, running_tasks, service_container_logs, service_ps, task_container,
    unique_name,
};

/// The stack's gateway service.
const GATEWAY_SERVICE: &str = "faas_gateway";
/// catservice plus a script that logs each call's id (see [`RECORDER`]).
const RECORDER_IMAGE: &str = "faas/test-recorder:latest";
/// The recorder: the call's id on stderr, which the watchdog logs ("function
/// wrote to stderr"), then the body echoed back after 0.2 s. At the default
/// `async_concurrency` (4) it runs about 20 calls a second, fewer than the
/// load sends, so every kill finds calls both running and queued.
const RECORDER: &str = r#"FROM faas/catservice:latest
RUN printf '%s\n' '#!/bin/sh' 'echo "recorded $Http_X_Call_Id" >&2' 'sleep 0.2' 'exec cat' > /record.sh
ENV fprocess="sh /record.sh"
LABEL faas.test="swarm"
"#;
/// What the recorder writes before each id.
const RECORD_MARK: &str = "recorded ";

/// The crash test's load: this many async calls, spread evenly over `SEND_OVER`.
const CALLS: usize = 600;
const SEND_OVER: Duration = Duration::from_secs(20);
/// When (into the load) the gateway is killed; a later kill waits until
/// the gateway is back and has served for `SERVE_BETWEEN_KILLS`.
const KILL_AT: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(12)];
const SERVE_BETWEEN_KILLS: Duration = Duration::from_secs(3);
/// Longest one enqueue may take before it counts as unanswered (a call
/// in flight when the gateway dies may otherwise hang).
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest Swarm may take to bring a killed gateway back to a healthy `/healthz`.
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);
/// One `/healthz` probe while it is away (see [`kill_gateway`]).
const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// Longest the accepted calls may take to finish once the load stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Docker's log delivery is not instant.
const LOG_LAG: Duration = Duration::from_secs(15);

/// The stack's gateway with the credentials for `/system/…`.
struct Stack {
    swarm: Swarm,
    authorization: Option<String>,
}

impl Stack {
    fn connect() -> Stack {
        Stack {
            swarm: Swarm::connect(),
            authorization: credentials(),
        }
    }

    fn client(&self) -> &Http {
        &self.swarm.client
    }

    async fn system(&self, method: Method, path: &str, body: impl Into<Bytes>) -> Answer {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = &self.authorization {
            headers.push(("authorization", auth.as_str()));
        }
        self.client()
            .call(method.clone(), path, &headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// `GET /system/executions/{id}`.
    async fn execution(&self, id: &str) -> Execution {
        let path = format!("/system/executions/{id}");
        let answer = self.system(Method::GET, &path, Bytes::new()).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "GET {path}: {}",
            answer.text()
        );
        serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("GET {path}: {e}: {:?}", answer.text()))
    }

    /// `POST /system/executions/bulk`: the records of `ids`, in order.
    async fn executions(&self, ids: &[String]) -> Vec<Option<Execution>> {
        let body = serde_json::to_string(ids).expect("ids serialize");
        let answer = self
            .system(Method::POST, "/system/executions/bulk", body)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "POST /system/executions/bulk: {}",
            answer.text()
        );
        serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("POST /system/executions/bulk: {e}: {:?}", answer.text()))
    }

    /// How many calls of `function` are queued and running now.
    async fn unfinished(&self, function: &str) -> (usize, usize) {
        let path = format!("/system/executions?function={function}&include_completed=false");
        let answer = self.system(Method::GET, &path, Bytes::new()).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "GET {path}: {}",
            answer.text()
        );
        let records: Vec<Execution> = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("GET {path}: {e}: {:?}", answer.text()));
        let queued = records
            .iter()
            .filter(|r| r.status == ExecutionStatus::Queued)
            .count();
        (queued, records.len() - queued)
    }

    /// Deploys `deployment` and waits until the gateway routes it.
    async fn deploy_routed(&self, deployment: &Value) -> TestService {
        let name = deployment["service"].as_str().expect("a service name");
        let guard = TestService {
            name: name.to_owned(),
        };
        let answer = self
            .system(Method::POST, "/system/functions", deployment.to_string())
            .await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "deploy {deployment}: {}",
            answer.text()
        );
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let answer = self.client().invoke(name, "ready?").await;
            if answer.status == StatusCode::OK {
                return guard;
            }
            assert!(
                Instant::now() < deadline,
                "{name} still answers {} {:?} after {START_TIMEOUT:?}\n{}",
                answer.status,
                answer.text(),
                service_ps(name)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// An async call to the stack's own catservice: 202 with its id (in the
/// header and the body), its record reaches succeeded after one attempt,
/// and its output is the body sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn an_async_call_to_catservice_succeeds_and_its_output_echoes_the_body() {
    let stack = Stack::connect();
    let sent = unique_name("async-body");
    let answer = stack
        .client()
        .post("/async-function/catservice", sent.clone())
        .await
        .expect("POST /async-function/catservice");
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    let id = answer
        .headers
        .get("x-call-id")
        .and_then(|v| v.to_str().ok())
        .expect("a 202 carries X-Call-Id")
        .to_owned();
    let accepted: Value = serde_json::from_slice(&answer.body).expect("a JSON body");
    assert_eq!(
        accepted,
        json!({"id": id, "function": "catservice", "status": "queued"})
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let record = loop {
        let record = stack.execution(&id).await;
        if record.status.is_final() {
            break record;
        }
        assert!(
            Instant::now() < deadline,
            "the call is still {} after 30s: {record:?}",
            record.status.as_str()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(record.status, ExecutionStatus::Succeeded, "{record:?}");
    assert_eq!(record.function, "catservice");
    assert_eq!(record.status_code, Some(200), "{record:?}");
    assert_eq!(record.attempts, 1, "{record:?}");
    assert!(
        record.started_at.is_some() && record.finished_at.is_some(),
        "{record:?}"
    );

    let path = format!("/system/executions/{id}/output");
    let output = stack.system(Method::GET, &path, Bytes::new()).await;
    assert_eq!(
        output.status,
        StatusCode::OK,
        "GET {path}: {}",
        output.text()
    );
    assert_eq!(output.text(), sent);
}

/// What the load generator saw.
#[derive(Default)]
struct Sent {
    /// Ids answered 202, in the order sent.
    accepted: Vec<String>,
    /// Ids sent without an answer (refused, reset, timed out): the gateway
    /// may or may not have stored them.
    unanswered: Vec<String>,
    /// Other answers (404 while a restarted gateway discovers functions, …).
    other: BTreeMap<u16, usize>,
}

/// `calls` async calls to `function`, evenly spread over `over`, each with
/// its own `X-Call-Id` (`{function}-{n}`), tolerating a gateway that is away.
async fn enqueue_steadily(client: Http, function: String, calls: usize, over: Duration) -> Sent {
    let path = format!("/async-function/{function}");
    let start = tokio::time::Instant::now();
    let gap = over / calls as u32;
    let mut sent = Sent::default();
    for n in 0..calls {
        tokio::time::sleep_until(start + gap * n as u32).await;
        let id = format!("{function}-{n}");
        let headers = [("x-call-id", id.as_str())];
        let call = client.call(Method::POST, &path, &headers, format!("call {n}"));
        match tokio::time::timeout(ENQUEUE_TIMEOUT, call).await {
            Ok(Ok(answer)) if answer.status == StatusCode::ACCEPTED => {
                let given = answer
                    .headers
                    .get("x-call-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_else(|| panic!("a 202 without X-Call-Id: {answer:?}"));
                sent.accepted.push(given.to_owned());
            }
            Ok(Ok(answer)) => *sent.other.entry(answer.status.as_u16()).or_default() += 1,
            Ok(Err(_)) | Err(_) => sent.unanswered.push(id),
        }
    }
    sent
}

/// How long a killed gateway took to come back, from the SIGKILL.
struct Restart {
    /// Until Swarm had started its new container.
    container: Duration,
    /// Until the new gateway logged "listening" (its queue open, its
    /// functions discovered).
    listening: Duration,
    /// Until `/healthz` answered 200 here.
    healthy: Duration,
}

/// Kills the gateway's container with SIGKILL and waits until Swarm has
/// started another that answers `/healthz`.
async fn kill_gateway(client: &Http) -> Restart {
    let victim = loop {
        if let Some(container) = running_container(GATEWAY_SERVICE) {
            break container;
        }
        assert!(
            client.get("/healthz").await.is_ok(),
            "{GATEWAY_SERVICE} has no single running task\n{}",
            service_ps(GATEWAY_SERVICE)
        );
        // Answering, but Swarm waits for its health check to call it running.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let killed = Instant::now();
    let killed_at = SystemTime::now();
    docker(&["kill", "--signal", "KILL", &victim]);
    let healthy = loop {
        // A short limit: a connection made while Docker sets up the new
        // container's port can hang until the SYN is sent again (1 s).
        let health = tokio::time::timeout(HEALTH_PROBE_TIMEOUT, client.get("/healthz")).await;
        if let Ok(Ok(answer)) = health
            && answer.status == StatusCode::OK
        {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < RESTART_TIMEOUT,
            "the gateway is not back {RESTART_TIMEOUT:?} after SIGKILL of {victim}\n{}",
            service_ps(GATEWAY_SERVICE)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Swarm calls the new task "starting" until its health check passes:
    // its container is what answered.
    let successor = running_tasks(GATEWAY_SERVICE)
        .iter()
        .map(|task| task_container(task))
        .find(|c| !c.is_empty() && *c != victim)
        .unwrap_or_else(|| {
            panic!(
                "/healthz answers, but {GATEWAY_SERVICE} has no new container\n{}",
                service_ps(GATEWAY_SERVICE)
            )
        });
    let since_kill = |at: &str| {
        humantime::parse_rfc3339_weak(at.trim())
            .ok()
            .and_then(|t| t.duration_since(killed_at).ok())
            .unwrap_or_default()
    };
    let started = docker(&["inspect", "--format", "{{.State.StartedAt}}", &successor]);
    let logs = service_container_logs(GATEWAY_SERVICE);
    let listening = logs
        .lines()
        .filter(|line| line.contains(" listening "))
        .filter_map(|line| line.split_whitespace().next())
        .map(since_kill)
        .find(|d| !d.is_zero())
        .unwrap_or_default();
    Restart {
        container: since_kill(&started),
        listening,
        healthy,
    }
}

/// How often the recorder's logs name each call id.
fn recorded_ids(logs: &str) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for (at, _) in logs.match_indices(RECORD_MARK) {
        let rest = &logs[at + RECORD_MARK.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .unwrap_or(rest.len());
        if end > 0 {
            *seen.entry(rest[..end].to_owned()).or_default() += 1;
        }
    }
    seen
}

/// The durability contract under crashes: while calls stream in, the
/// gateway's container is SIGKILLed twice; every call it answered 202 for
/// still reaches `succeeded`, and the function really ran it.
///
/// "Really ran" is read from the function's own record, not the gateway's:
/// the function (`faas/test-recorder`, catservice plus a small script built
/// here) writes each call's `X-Call-Id` to stderr, its watchdog logs that
/// line, and the test reads the logs of the function's containers from
/// Docker after the fact; nothing the gateway says is trusted for it. (A
/// Deployment cannot mount a volume, and a log line written by the process
/// that served the call is as close to a side effect as these images
/// allow.) Each call is sent with its own `X-Call-Id`, so a call the
/// function ran but the gateway never answered 202 can be told apart from
/// one that came from nowhere. Delivery is at-least-once: an id may be
/// recorded more than once (a call running at the kill runs again), but
/// never more often than its record's `attempts`, since each attempt is
/// stored before it is sent.
///
/// A SIGKILL leaves the kernel's page cache alone: this proves that the
/// stored state survives the process dying at any point (redb's commit
/// protocol, running calls queued again at start), not that the fsync
/// reached the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn killing_the_gateway_twice_under_async_load_loses_no_accepted_call() {
    let stack = Stack::connect();
    build_image(RECORDER_IMAGE, RECORDER);
    let name = unique_name("async-crash");
    let mut function = stack
        .deploy_routed(&json!({
            "service": name,
            "image": RECORDER_IMAGE,
            "labels": {"faas.test": "swarm"},
        }))
        .await;

    let load_started = tokio::time::Instant::now();
    let sender = tokio::spawn(enqueue_steadily(
        stack.client().clone(),
        name.clone(),
        CALLS,
        SEND_OVER,
    ));
    let mut restarts = Vec::new();
    let mut in_flight_at_kills = 0;
    let mut not_before = load_started;
    for at in KILL_AT {
        tokio::time::sleep_until((load_started + at).max(not_before)).await;
        let (queued, running) = stack.unfinished(&name).await;
        in_flight_at_kills += queued + running;
        let at = load_started.elapsed();
        let restart = kill_gateway(stack.client()).await;
        eprintln!(
            "{name}: SIGKILL {} of the gateway at {:.1}s into the load, with {queued} calls queued and \
             {running} running: new container started after {:.2}s, listening after {:.2}s, \
             /healthz 200 after {:.2}s",
            restarts.len() + 1,
            at.as_secs_f64(),
            restart.container.as_secs_f64(),
            restart.listening.as_secs_f64(),
            restart.healthy.as_secs_f64()
        );
        restarts.push(restart.healthy);
        not_before = tokio::time::Instant::now() + SERVE_BETWEEN_KILLS;
    }
    let sent = sender.await.expect("the load generator");
    assert!(
        in_flight_at_kills > 0,
        "no call was queued or running at the kills: they tested nothing"
    );
    let load_ended = Instant::now();
    eprintln!(
        "{name}: {CALLS} calls sent in {:.1}s: {} accepted (202), {} unanswered, other answers {:?}",
        load_started.elapsed().as_secs_f64(),
        sent.accepted.len(),
        sent.unanswered.len(),
        sent.other
    );
    let unique: HashSet<&String> = sent.accepted.iter().collect();
    assert_eq!(
        unique.len(),
        sent.accepted.len(),
        "two 202s carried the same id"
    );
    assert!(
        sent.accepted.len() >= CALLS / 2,
        "only {} of {CALLS} calls were accepted: the test proves little",
        sent.accepted.len()
    );

    // Every accepted call is known and, in time, finished.
    let records = loop {
        let records = stack.executions(&sent.accepted).await;
        let lost: Vec<&String> = sent
            .accepted
            .iter()
            .zip(&records)
            .filter(|(_, r)| r.is_none())
            .map(|(id, _)| id)
            .collect();
        assert!(
            lost.is_empty(),
            "{} accepted calls have no record, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
        let records: Vec<Execution> = records.into_iter().flatten().collect();
        let pending = records.iter().filter(|r| !r.status.is_final()).count();
        if pending == 0 {
            break records;
        }
        assert!(
            load_ended.elapsed() < DRAIN_TIMEOUT,
            "{pending} accepted calls are not finished {DRAIN_TIMEOUT:?} after the load, e.g. {:?}",
            records.iter().find(|r| !r.status.is_final())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let drain = load_ended.elapsed();
    let mut attempts: BTreeMap<u32, usize> = BTreeMap::new();
    for record in &records {
        *attempts.entry(record.attempts).or_default() += 1;
    }
    eprintln!(
        "{name}: all {} accepted calls finished {:.2}s after the load ended; attempts per call {attempts:?}",
        records.len(),
        drain.as_secs_f64()
    );
    let unsuccessful: Vec<&Execution> = records
        .iter()
        .filter(|r| r.status != ExecutionStatus::Succeeded)
        .collect();
    assert!(
        unsuccessful.is_empty(),
        "{} accepted calls did not succeed: {unsuccessful:#?}",
        unsuccessful.len()
    );

    // The function's own record names every accepted call.
    let deadline = Instant::now() + LOG_LAG;
    let recorded = loop {
        let recorded = recorded_ids(&service_container_logs(&name));
        let missing = sent
            .accepted
            .iter()
            .filter(|id| !recorded.contains_key(*id))
            .count();
        if missing == 0 {
            break recorded;
        }
        assert!(
            Instant::now() < deadline,
            "the function never recorded {missing} of the {} accepted calls, e.g. {:?}",
            sent.accepted.len(),
            sent.accepted.iter().find(|id| !recorded.contains_key(*id))
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let twice: Vec<(&String, usize)> = sent
        .accepted
        .iter()
        .filter_map(|id| recorded.get(id).filter(|&&n| n > 1).map(|&n| (id, n)))
        .collect();
    let unanswered: HashSet<&String> = sent.unanswered.iter().collect();
    let extra = recorded
        .keys()
        .filter(|id| id.starts_with(&name) && !unique.contains(id))
        .collect::<Vec<_>>();
    let extra_unanswered = extra.iter().filter(|id| unanswered.contains(**id)).count();
    eprintln!(
        "{name}: the function recorded every accepted call; {} of them more than once {twice:?}; \
         {} calls it ran were not answered 202 ({extra_unanswered} of them sent without an answer)",
        twice.len(),
        extra.len()
    );
    assert_eq!(
        extra.len(),
        extra_unanswered,
        "the function ran calls that were neither accepted nor unanswered: {extra:?}"
    );
    let by_id: HashMap<&str, &Execution> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    for (id, times) in &twice {
        let record = by_id[id.as_str()];
        assert!(
            *times <= record.attempts as usize,
            "{id} ran {times} times but its record counts {} attempts: {record:?}",
            record.attempts
        );
    }
    eprintln!(
        "{name}: gateway restarts after SIGKILL {:?}; drain {:.2}s",
        restarts
            .iter()
            .map(|d| format!("{:.2}s", d.as_secs_f64()))
            .collect::<Vec<_>>(),
        drain.as_secs_f64()
    );
    function.remove();
}
