//! End-to-end tests on a real Docker Swarm: the stack of `./build.sh up`
//! (gateway `faas_gateway` and the sample functions), driven through the
//! real `docker` CLI and HTTP to the gateway (`FAAS_GATEWAY_URL`, default
//! `http://127.0.0.1:8080`).
//!
//! These tests need Docker and the stack, so they are ignored by a plain `cargo test` and run on purpose (`./build.sh test`,
//! or `cargo test -- --ignored`); once running, a missing piece is a
//! failure saying what to do. Each
//! test creates its own services (unique names, label `faas.test=swarm`)
//! and removes them, even when it fails; they run one at a time.

use crate::swarm_util;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use http::{Method, StatusCode};
use swarm_util::{
    Load, Swarm, docker, failures, running_tasks, service_ps, task_container, task_status,
    try_docker,
};

/// How soon a service change must show at the gateway.
const DISCOVERY_LAG: Duration = Duration::from_secs(2);

/// The seed's quickstart, word for word but for the image (ours is local):
/// `docker service rm catservice`, `docker service create --network=functions
/// --name catservice …`, then both curl forms echo the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn the_seeds_commands_echo_the_body() {
    let swarm = Swarm::connect();
    let _ = try_docker(&["service", "rm", "catservice"]);
    wait_gone("catservice");
    // Attached, as in the seed: returns once the service has converged.
    docker(&[
        "service",
        "create",
        "--network=functions",
        "--name",
        "catservice",
        swarm_util::CATSERVICE,
    ]);
    let mut seed = swarm_util::TestService {
        name: "catservice".to_owned(),
    };
    let tasks = running_tasks("catservice");
    assert_eq!(tasks.len(), 1, "{}", service_ps("catservice"));
    let container = task_container(&tasks[0]);

    let body = "known_hosts line 1\nknown_hosts line 2 \u{2603}\n\u{0}binary\u{7f}".to_owned();
    // The plain service named exactly `catservice` wins over the stack's
    // faas_catservice (label faas.function=catservice): wait until it serves.
    let deadline = Instant::now() + DISCOVERY_LAG;
    loop {
        let answer = swarm.client.invoke("catservice", body.clone()).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        if answer
            .served_by()
            .is_some_and(|by| container.starts_with(&by))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/function/catservice is still served by {:?}, not the new service's container {container}",
            answer.served_by()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Method 1: curl -X POST --data-binary @file http://localhost:8080/function/catservice
    let answer = swarm.client.invoke("catservice", body.clone()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text(), body);
    // Method 2: curl -X POST -H 'x-function: catservice' --data-binary @file http://localhost:8080/
    let answer = swarm
        .client
        .call(
            Method::POST,
            "/",
            &[("x-function", "catservice")],
            body.clone(),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text(), body);
    assert!(
        answer
            .served_by()
            .is_some_and(|by| container.starts_with(&by))
    );

    // Without it, the stack's faas_catservice (if deployed) serves again.
    seed.remove();
    if try_docker(&["service", "inspect", "faas_catservice"]).is_ok() {
        let deadline = Instant::now() + DISCOVERY_LAG + Duration::from_secs(1);
        loop {
            let answer = swarm.client.invoke("catservice", body.clone()).await;
            if answer.status == StatusCode::OK
                && answer.text() == body
                && answer
                    .served_by()
                    .is_some_and(|by| !container.starts_with(&by))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after docker service rm catservice the stack's faas_catservice does not serve: {} {:?}",
                answer.status,
                answer.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A new plain `docker service create --network functions` is routable
/// within 2 s of its container starting; after `docker service rm` it
/// answers 404 within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn a_new_service_is_routable_and_a_removed_one_404s_within_2s() {
    let swarm = Swarm::connect();
    let mut service = swarm.create_service("discover", &[]);
    let name = service.name.clone();
    let path = format!("/function/{name}");

    // Call it until it answers; the call that succeeds marks when it became
    // routable (an unknown function answers 404 at once; a known one with
    // no ready replica is held until one appears).
    let deadline = Instant::now() + swarm_util::START_TIMEOUT;
    let routable = loop {
        let answer = swarm.client.post(&path, "hello").await.unwrap();
        if answer.status == StatusCode::OK {
            assert_eq!(answer.text(), "hello");
            break SystemTime::now();
        }
        assert!(
            matches!(
                answer.status,
                StatusCode::NOT_FOUND | StatusCode::SERVICE_UNAVAILABLE
            ),
            "{path} before it runs: {} {}",
            answer.status,
            answer.text()
        );
        assert!(
            Instant::now() < deadline,
            "{name} never became routable\n{}",
            service_ps(&name)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let tasks = running_tasks(&name);
    assert_eq!(tasks.len(), 1, "{}", service_ps(&name));
    // Routable once its watchdog answers, measured from its container's
    // start: Docker may still call the task `starting` then (its first
    // health check runs 2 s after the start; the gateway probes the
    // watchdog itself).
    let (_, state) = task_status(&tasks[0]);
    assert!(
        state == "running" || state == "starting",
        "{state}: {}",
        service_ps(&name)
    );
    let container = task_container(&tasks[0]);
    let started_at = docker(&["inspect", "--format", "{{.State.StartedAt}}", &container]);
    let started_at = humantime::parse_rfc3339_weak(started_at.trim())
        .unwrap_or_else(|e| panic!("StartedAt {started_at:?}: {e}"));
    let lag = routable
        .duration_since(started_at)
        .unwrap_or_else(|_| panic!("routable before its container started"));
    eprintln!("{name}: routable {lag:?} after its container started (task {state})");
    assert!(
        lag <= DISCOVERY_LAG,
        "{name} became routable {lag:?} after its task was running (limit {DISCOVERY_LAG:?})"
    );

    service.remove();
    let removed = Instant::now();
    loop {
        let answer = swarm.client.post(&path, "bye").await.unwrap();
        if answer.status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            removed.elapsed() <= DISCOVERY_LAG,
            "{path} still answers {} {:?} {:?} after docker service rm",
            answer.status,
            answer.text(),
            removed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "{name}: 404 {:?} after docker service rm",
        removed.elapsed()
    );
    assert!(
        swarm
            .client
            .post(&path, "")
            .await
            .unwrap()
            .text()
            .contains("not found"),
        "the 404 says why"
    );
}

/// Where the stack publishes another protocol: `variable` when set, else
/// the gateway's host and `port`.
fn published(swarm: &Swarm, variable: &str, port: u16) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        let host = swarm
            .gateway
            .trim_start_matches("http://")
            .split([':', '/'])
            .next()
            .unwrap_or("127.0.0.1");
        format!("{host}:{port}")
    })
}

/// The stack publishes CoAP (UDP 5683, or `FAAS_GATEWAY_COAP`): a
/// function on the Swarm answers a CoAP POST, in blocks when it is large.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn a_function_on_the_swarm_answers_over_coap() {
    let swarm = Swarm::connect();
    let service = swarm.create_service("coap", &[]);
    let name = service.name.clone();
    swarm.wait_replicas(&name, 1).await;
    let coap = published(&swarm, "FAAS_GATEWAY_COAP", 5683);
    let body: Vec<u8> = (0..4096u32).map(|i| b'a' + (i % 26) as u8).collect();
    let answer = coap::UdpCoAPClient::post(&format!("coap://{coap}/{name}"), body.clone())
        .await
        .unwrap_or_else(|e| panic!("no CoAP answer from {coap} (is 5683/udp published?): {e}"));
    assert_eq!(
        answer.message.header.code,
        coap_lite::MessageClass::Response(coap_lite::ResponseType::Content),
        "{}",
        String::from_utf8_lossy(&answer.message.payload)
    );
    assert!(answer.message.payload == body, "the echo differs");
    let unknown = coap::UdpCoAPClient::post(&format!("coap://{coap}/{name}-none"), vec![])
        .await
        .unwrap();
    assert_eq!(
        unknown.message.header.code,
        coap_lite::MessageClass::Response(coap_lite::ResponseType::NotFound)
    );
}

/// The stack publishes gRPC (TCP 9000, or `FAAS_GATEWAY_GRPC`): a
/// function on the Swarm answers tinyFaaS's `Request` and our `Call`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn a_function_on_the_swarm_answers_over_grpc() {
    use gateway::grpc::pb::faas::CallRequest;
    use gateway::grpc::pb::faas::functions_client::FunctionsClient;
    use gateway::grpc::pb::tinyfaas::Data;
    use gateway::grpc::pb::tinyfaas::tiny_faa_s_client::TinyFaaSClient;

    let swarm = Swarm::connect();
    let service = swarm.create_service("grpc", &[]);
    let name = service.name.clone();
    swarm.wait_replicas(&name, 1).await;
    let grpc = published(&swarm, "FAAS_GATEWAY_GRPC", 9000);
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("no gRPC at {grpc} (is 9000 published?): {e}"));
    let answer = TinyFaaSClient::new(channel.clone())
        .request(Data {
            function_identifier: name.clone(),
            data: "tinyfaas on swarm".into(),
        })
        .await
        .unwrap();
    assert_eq!(answer.get_ref().response, "tinyfaas on swarm");
    let bytes: Vec<u8> = (0..=255u8).collect();
    let reply = FunctionsClient::new(channel)
        .call(CallRequest {
            function: name,
            body: bytes.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reply.status, reply.body), (200, bytes));
}

/// With 3 replicas, each serves at least 20% of 300 calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn three_replicas_share_300_calls() {
    let swarm = Swarm::connect();
    let service = swarm.create_service("balance", &["--replicas", "3"]);
    swarm.wait_replicas(&service.name, 3).await;

    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..300 {
        let body = format!("call {i}");
        let answer = swarm.client.invoke(&service.name, body.clone()).await;
        assert_eq!(answer.status, StatusCode::OK, "call {i}: {}", answer.text());
        assert_eq!(answer.text(), body);
        let by = answer.served_by().expect("X-Served-By");
        *served.entry(by).or_default() += 1;
    }
    eprintln!("{}: calls per replica {served:?}", service.name);
    assert_eq!(served.len(), 3, "{served:?}");
    for (replica, calls) in &served {
        assert!(
            *calls >= 60,
            "replica {replica} served {calls} of 300 calls: {served:?}"
        );
    }
}

/// A rolling `docker service update --force` (Swarm's defaults: one task at
/// a time, stop-first) under continuous load from 4 callers loses no call.
/// Two replicas: with one, stop-first leaves no task at all while the new
/// one starts (the stack's functions use start-first for that, see the next
/// test).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn a_rolling_update_under_load_loses_no_call() {
    let swarm = Swarm::connect();
    let service = swarm.create_service("rolling", &["--replicas", "2"]);
    rolling_update_loses_nothing(&swarm, &service.name, 2).await;
}

/// The same with one replica updated start-first, as the stack deploys its
/// functions (docker-compose.yml's update_config).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn a_start_first_rolling_update_of_one_replica_loses_no_call() {
    let swarm = Swarm::connect();
    let service = swarm.create_service("startfirst", &["--update-order", "start-first"]);
    rolling_update_loses_nothing(&swarm, &service.name, 1).await;
}

async fn rolling_update_loses_nothing(swarm: &swarm_util::Swarm, name: &str, replicas: u64) {
    swarm.wait_replicas(name, replicas).await;
    let before: BTreeSet<String> = running_tasks(name).into_iter().collect();

    let load = Load::start(&swarm.client, name, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let update = tokio::task::spawn_blocking({
        let name = name.to_owned();
        move || docker(&["service", "update", "--force", "--quiet", &name])
    });
    update.await.unwrap();
    let took = started.elapsed();
    // Calls keep going onto the new tasks for a while.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcomes = load.stop().await;

    let after: BTreeSet<String> = running_tasks(name).into_iter().collect();
    assert!(
        before.is_disjoint(&after),
        "the update replaced no task: before {before:?}, after {after:?}"
    );
    let failed = outcomes.iter().filter(|o| !o.ok()).count();
    let servers: BTreeSet<_> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok().and_then(|(_, by)| by.clone()))
        .collect();
    eprintln!(
        "{name}: update took {took:?}; {} calls, {failed} failed, served by {servers:?}",
        outcomes.len()
    );
    assert!(
        outcomes.len() >= 100,
        "only {} calls made during the update",
        outcomes.len()
    );
    assert!(
        servers.len() > replicas as usize,
        "old and new tasks should both have served: {servers:?}"
    );
    assert_eq!(
        failed,
        0,
        "calls failed during the rolling update:\n{}",
        failures(&outcomes, started)
    );
}

/// Killing one replica's container under load costs at most a handful of
/// calls; the rest succeed, and the function keeps serving afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn killing_a_replica_under_load_costs_at_most_a_handful_of_calls() {
    let swarm = Swarm::connect();
    let service = swarm.create_service("kill", &["--replicas", "3"]);
    let name = service.name.clone();
    swarm.wait_replicas(&name, 3).await;
    let tasks = running_tasks(&name);
    let victim = task_container(&tasks[0]);

    let load = Load::start(&swarm.client, &name, 4);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = Instant::now();
    docker(&["kill", &victim]);
    // Long enough for Swarm to notice and start a replacement.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let outcomes = load.stop().await;

    let failed = outcomes.iter().filter(|o| !o.ok()).count();
    let served_by_victim = |o: &&swarm_util::Outcome| {
        o.result
            .as_ref()
            .is_ok_and(|(_, by)| by.as_deref().is_some_and(|by| victim.starts_with(by)))
    };
    let victim_before = outcomes
        .iter()
        .filter(|o| o.at < killed)
        .filter(served_by_victim)
        .count();
    let victim_last = outcomes
        .iter()
        .filter(served_by_victim)
        .map(|o| o.at.saturating_duration_since(killed))
        .max();
    eprintln!(
        "{name}: {} calls under load, {failed} failed after killing {} (it served {victim_before} before; its last answer {victim_last:?} after the kill)",
        outcomes.len(),
        &victim[..12]
    );
    assert!(
        victim_before > 0,
        "the killed replica served none of the calls before the kill"
    );
    assert!(
        failed <= 5,
        "{failed} calls failed after killing one of 3 replicas:\n{}",
        failures(&outcomes, killed)
    );
    let after_kill = outcomes.iter().filter(|o| o.at > killed).count();
    assert!(
        after_kill >= 100,
        "only {after_kill} calls made after the kill"
    );

    // And it keeps serving.
    for i in 0..30 {
        let body = format!("after {i}");
        let answer = swarm.client.invoke(&name, body.clone()).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert_eq!(answer.text(), body);
    }
}

/// An Alexa skill request for `HostnameIntent` POSTed to `/` reaches the
/// stack's HostnameIntent function, which answers with its hostname.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn an_alexa_hostname_intent_reaches_the_hostname_intent_function() {
    let swarm = Swarm::connect();
    let request = serde_json::json!({
        "version": "1.0",
        "session": {
            "new": true,
            "sessionId": "amzn1.echo-api.session.0000-test",
            "application": { "applicationId": "amzn1.ask.skill.0000-test" },
            "user": { "userId": "amzn1.ask.account.TEST" }
        },
        "request": {
            "type": "IntentRequest",
            "requestId": "amzn1.echo-api.request.0000-test",
            "locale": "en-US",
            "timestamp": "2017-01-01T00:00:00Z",
            "intent": { "name": "HostnameIntent", "slots": {} }
        }
    });
    let answer = swarm
        .client
        .call(
            Method::POST,
            "/",
            &[("content-type", "application/json")],
            serde_json::to_vec(&request).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{} (is the stack's HostnameIntent deployed? ./build.sh up)",
        answer.text()
    );
    let response: serde_json::Value = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", answer.text()));
    assert_eq!(response["version"], "1.0", "{response}");
    let speech = &response["response"]["outputSpeech"];
    assert_eq!(speech["type"], "PlainText", "{response}");
    let text = speech["text"].as_str().unwrap_or_default();
    let hostname = text
        .strip_prefix("My hostname is ")
        .unwrap_or_else(|| panic!("unexpected speech {text:?}"));
    assert!(
        !hostname.trim().is_empty() && Some(hostname.trim()) == answer.served_by().as_deref(),
        "the hostname {hostname:?} is the serving container's ({:?})",
        answer.served_by()
    );
}

/// After N calls to a fresh function, the gateway's counters say exactly N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn metrics_count_exactly_the_calls_made() {
    let swarm = Swarm::connect();
    let service = swarm.create_service("metrics", &[]);
    let name = service.name.clone();
    swarm.wait_replicas(&name, 1).await;
    const N: usize = 37;
    for i in 0..N {
        let answer = swarm.client.invoke(&name, format!("{i}")).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    // One unknown-path call that is not this function's must not count.
    let _ = swarm.client.post("/function/t-no-such-function", "").await;
    let metrics = swarm.client.metrics().await;
    let labels = [("function_name", name.as_str()), ("code", "200")];
    let n = N as f64;
    assert_eq!(
        metrics.value("gateway_function_invocation_total", &labels),
        Some(n),
        "{}",
        metrics.0
    );
    assert_eq!(
        metrics.value("gateway_functions_seconds_count", &labels),
        Some(n)
    );
    assert_eq!(
        metrics.value(
            "gateway_function_invocation_started",
            &[("function_name", &name)]
        ),
        Some(n)
    );
    assert_eq!(
        metrics.value("gateway_service_count", &[("function_name", &name)]),
        Some(1.0)
    );
    for code in ["404", "500", "502", "503", "504"] {
        let v = metrics
            .value(
                "gateway_function_invocation_total",
                &[("function_name", &name), ("code", code)],
            )
            .unwrap_or(0.0);
        assert_eq!(v, 0.0, "code {code}");
    }
}

/// Waits until no service `name` exists (a previous run's, or a user's).
fn wait_gone(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while try_docker(&["service", "inspect", name]).is_ok() {
        assert!(Instant::now() < deadline, "service {name} is still there");
        std::thread::sleep(Duration::from_millis(100));
    }
}
