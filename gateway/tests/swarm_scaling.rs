//! The built-in autoscaler on a real Docker Swarm: the stack's gateway
//! scales a service up under load and back down after it, and starts a
//! service at zero for its first call, which succeeds. Services are created
//! with the `docker` CLI (labels `faas.scale.*`), as a user would, and
//! removed afterwards. These tests need Docker and the stack, so they are
//! ignored by a plain `cargo test` and run on purpose (`./build.sh test`,
//! or `cargo test -- --ignored`); once running, a missing piece is a
//! failure saying what to do.

use crate::swarm_util;

use std::time::{Duration, Instant};

use http::StatusCode;
use swarm_util::{Http, Swarm, TestService, docker, service_ps};

/// Creates a service on the functions network from `image` with `labels`,
/// a 1 s drain (so a stopped task is gone soon) and `replicas`.
fn create(swarm: &Swarm, tag: &str, image: &str, replicas: u32, labels: &[&str]) -> TestService {
    let replicas = replicas.to_string();
    let mut extra = vec![
        "--endpoint-mode",
        "dnsrr",
        "--replicas",
        &replicas,
        "--env",
        "healthcheck_interval=1s",
    ];
    for label in labels {
        extra.extend(["--label", label]);
    }
    swarm.create_service_of(tag, image, &extra)
}

/// The replica count in the service's spec (what the autoscaler set).
fn spec_replicas(service: &str) -> u64 {
    docker(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.Mode.Replicated.Replicas}}",
        service,
    ])
    .trim()
    .parse()
    .unwrap_or_else(|e| panic!("replicas of {service}: {e}"))
}

/// Containers of the service still on this node (running or stopping).
fn containers(service: &str) -> usize {
    docker(&[
        "ps",
        "--quiet",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
    ])
    .split_whitespace()
    .count()
}

async fn ready(client: &Http, function: &str) -> Option<f64> {
    client
        .metrics()
        .await
        .value("gateway_service_count", &[("function_name", function)])
}

/// Waits until `ok` holds for the gateway's ready count of `function`.
async fn until_ready(
    client: &Http,
    function: &str,
    limit: Duration,
    what: &str,
    ok: impl Fn(f64) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let seen = ready(client, function).await;
        if seen.is_some_and(&ok) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{function}: not {what} within {limit:?} (ready {seen:?}, spec {})\n{}",
            spec_replicas(function),
            service_ps(function)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn a_service_scales_up_under_load_within_seconds_and_back_down_after() {
    let swarm = Swarm::connect();
    let client = &swarm.client;
    let service = create(
        &swarm,
        "autoscale",
        "faas/sleep:latest",
        1,
        &[
            "faas.scale.target=1",
            "faas.scale.max=3",
            "faas.scale.window=5s",
        ],
    );
    let name = service.name.clone();
    until_ready(client, &name, Duration::from_secs(60), "ready", |n| {
        n == 1.0
    })
    .await;

    // Six callers of a 0.5 s call: 6 in flight against 1 per replica.
    let started = Instant::now();
    let stop_at = started + Duration::from_secs(15);
    let mut callers = Vec::new();
    for _ in 0..6 {
        let client = client.clone();
        let path = format!("/function/{name}");
        callers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            while Instant::now() < stop_at {
                let answer = client.post(&path, "0.5").await;
                outcomes.push(answer.map(|a| (a.status, a.text())));
            }
            outcomes
        }));
    }
    let up = until_ready(client, &name, Duration::from_secs(14), "at 3", |n| n == 3.0).await;
    eprintln!("{name}: 3 replicas ready {up:?} after the load started");
    assert!(up <= Duration::from_secs(10), "scale-up took {up:?}");
    assert_eq!(spec_replicas(&name), 3);
    let mut outcomes = Vec::new();
    for caller in callers {
        outcomes.extend(caller.await.unwrap());
    }
    let ended = Instant::now();
    let bad: Vec<_> = outcomes
        .iter()
        .filter(|o| !matches!(o, Ok((StatusCode::OK, text)) if text.starts_with("slept 0.5s")))
        .collect();
    assert!(bad.is_empty(), "failed calls while scaling up: {bad:?}");

    // Down to 1 once a 5 s window has passed without the load.
    let down = until_ready(client, &name, Duration::from_secs(30), "back at 1", |n| {
        n == 1.0
    })
    .await;
    let after = ended.elapsed();
    eprintln!("{name}: back at 1 replica {after:?} after the load ({down:?} of waiting)");
    assert!(
        after >= Duration::from_secs(4),
        "scaled down after {after:?}"
    );
    assert_eq!(spec_replicas(&name), 1);
    let metrics = client.metrics().await;
    for direction in ["up", "down"] {
        let events = metrics.value(
            "gateway_scaling_events_total",
            &[("function_name", &name), ("direction", direction)],
        );
        assert!(events.is_some_and(|n| n >= 1.0), "{direction}: {events:?}");
    }
}

#[tokio::test]
#[ignore = "needs Docker Swarm: ./build.sh up"]
async fn a_service_at_zero_starts_for_its_first_call_which_succeeds() {
    let swarm = Swarm::connect();
    let client = &swarm.client;
    let service = create(
        &swarm,
        "fromzero",
        swarm_util::CATSERVICE,
        1,
        &["faas.scale.zero=true", "faas.scale.zero-after=2s"],
    );
    let name = service.name.clone();
    // Idle: the gateway scales it to zero, and its task goes away.
    let deadline = Instant::now() + Duration::from_secs(60);
    while spec_replicas(&name) != 0 || containers(&name) != 0 {
        assert!(
            Instant::now() < deadline,
            "{name} never went to zero: spec {}, containers {}\n{}",
            spec_replicas(&name),
            containers(&name),
            service_ps(&name)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ready(client, &name).await, Some(0.0));

    let started = Instant::now();
    let answer = client.invoke(&name, "first call").await;
    let took = started.elapsed();
    eprintln!("{name}: first call from zero answered in {took:?}");
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.text(), "first call");
    let metrics = client.metrics().await;
    assert_eq!(
        metrics.value(
            "gateway_scaling_events_total",
            &[("function_name", &name), ("direction", "up")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metrics.value(
            "gateway_cold_start_seconds_count",
            &[("function_name", &name)]
        ),
        Some(1.0)
    );
}
