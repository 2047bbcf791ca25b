//! Forwarding: headers, streaming, timeouts, balancing, retries, metrics
//! and graceful shutdown, through the real gateway and real functions.

use crate::util;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use util::*;

#[tokio::test]
async fn forwarding_headers_are_set_and_hop_by_hop_headers_dropped() {
    let gw = Gateway::start("functions:\n  env:\n    fprocess: env\n", &[], &[]);
    let request = Request::post("/function/env")
        .header("Host", "gateway.example:8080")
        .header("X-Forwarded-For", "198.51.100.1")
        .header("Connection", "keep-alive, X-Hop")
        .header("X-Hop", "must not pass")
        .header("X-Kept", "passes")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = send(gw.addr, request).await.unwrap();
    let env = reply.text();
    let call_id = reply
        .header("x-call-id")
        .expect("X-Call-Id on the response")
        .to_owned();
    assert_eq!(call_id.len(), 36, "{call_id}");
    assert!(
        env.contains(&format!("Http_X_Call_Id={call_id}\n")),
        "{env}"
    );
    assert!(
        env.contains("Http_X_Forwarded_For=198.51.100.1, 127.0.0.1\n"),
        "{env}"
    );
    assert!(
        env.contains("Http_X_Forwarded_Host=gateway.example:8080\n"),
        "{env}"
    );
    assert!(env.contains("Http_X_Kept=passes\n"), "{env}");
    assert!(!env.contains("X_Hop"), "{env}");
    let start: u128 = env
        .lines()
        .find_map(|l| l.strip_prefix("Http_X_Start_Time="))
        .expect("X-Start-Time")
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    assert!(
        now >= start && now - start < 10_000_000_000,
        "{start} vs {now}"
    );

    let request = Request::get("/function/env")
        .header("X-Call-Id", "caller-chosen-id")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = send(gw.addr, request).await.unwrap();
    assert_eq!(reply.header("x-call-id"), Some("caller-chosen-id"));
    assert!(reply.text().contains("Http_X_Call_Id=caller-chosen-id\n"));
}

#[tokio::test]
async fn function_status_and_headers_come_back_unchanged() {
    let stack = "functions:\n  fail:\n    fprocess: sh fail.sh\n";
    let gw = Gateway::start(stack, &[("fail.sh", "echo 'bad input' >&2\nexit 3\n")], &[]);
    let reply = post(gw.addr, "/function/fail", "x").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.text(), "bad input\n");
    assert!(
        reply.header("x-duration-seconds").is_some(),
        "the watchdog's headers pass through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_body_streams_both_ways_with_bounded_gateway_memory() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: u64 = 4 * 1024;
    let stack = "functions:\n  cat:\n    fprocess: cat\n    environment:\n      mode: stream\n      exec_timeout: 120s\n";
    let gw = Gateway::start(stack, &[], &[]);
    assert_eq!(post(gw.addr, "/function/cat", "warm").await.text(), "warm");
    let baseline = gw.rss_kib("VmRSS:");

    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::post("/function/cat")
        .header("host", "gw")
        .body(Chunks::new(CHUNKS, CHUNK))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut received = 0u64;
    let mut mismatch = None;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("stream aborted").into_data() {
            if mismatch.is_none() && data[..] != *pattern(received, data.len()) {
                mismatch = Some(received);
            }
            received += data.len() as u64;
        }
    }
    assert_eq!(received, CHUNKS * CHUNK as u64);
    assert_eq!(mismatch, None);
    let peak = gw.rss_kib("VmHWM:");
    let growth_mib = peak.saturating_sub(baseline) as f64 / 1024.0;
    eprintln!("gateway: baseline {baseline} KiB, peak {peak} KiB");
    assert!(growth_mib < 16.0, "gateway RSS grew by {growth_mib:.1} MiB");
}

#[tokio::test]
async fn a_function_slower_than_upstream_timeout_is_504() {
    let stack =
        "functions:\n  slow:\n    fprocess: sleep 5\n    environment:\n      exec_timeout: 30s\n";
    let gw = Gateway::start(stack, &[], &["--upstream-timeout", "500ms"]);
    let started = Instant::now();
    let reply = post(gw.addr, "/function/slow", "").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        reply.text().contains("upstream_timeout"),
        "{}",
        reply.text()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn every_answer_says_how_long_the_gateway_took_and_which_replica_served() {
    let stack =
        "functions:\n  slow:\n    fprocess: sh slow.sh\n    labels:\n      faas.scale.min: 2\n";
    let gw = Gateway::start(stack, &[("slow.sh", "sleep 0.2\necho done\n")], &[]);
    let mut replicas = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let reply = post(gw.addr, "/function/slow", "").await;
        assert_eq!(reply.status, StatusCode::OK);
        let seconds = |name: &str| -> f64 { reply.header(name).expect(name).parse().unwrap() };
        let function = seconds("x-duration-seconds");
        let gateway = seconds("x-gateway-duration-seconds");
        assert!(function >= 0.2, "{function}");
        assert!(
            gateway >= function && gateway < function + 1.0,
            "{gateway} vs {function}"
        );
        replicas.insert(reply.header("x-served-by").expect("X-Served-By").to_owned());
    }
    // The process provider names each replica: they share one host name.
    assert_eq!(replicas.len(), 2, "{replicas:?}");
    assert!(
        replicas.iter().all(|r| r.starts_with("slow-")),
        "{replicas:?}"
    );
}

#[tokio::test]
async fn a_streamed_functions_resource_figures_reach_callers_that_take_trailers() {
    let stack = "functions:\n  stream:\n    fprocess: cat\n    environment:\n      mode: stream\n";
    let gw = Gateway::start(stack, &[], &[]);
    let request = |te: Option<&str>| {
        let mut builder = Request::post("/function/stream");
        if let Some(te) = te {
            builder = builder.header("TE", te);
        }
        builder
            .body(Full::new(Bytes::from_static(b"streamed")))
            .unwrap()
    };
    let reply = send(gw.addr, request(Some("trailers"))).await.unwrap();
    assert_eq!(reply.text(), "streamed");
    let trailers = reply
        .trailers
        .expect("trailers for a caller that takes them");
    for name in [
        "x-cpu-user-seconds",
        "x-cpu-system-seconds",
        "x-max-rss-bytes",
    ] {
        let value: f64 = trailers[name].to_str().unwrap().parse().unwrap();
        assert!(value >= 0.0, "{name}: {value}");
    }
    assert!(
        trailers["x-max-rss-bytes"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    let plain = send(gw.addr, request(None)).await.unwrap();
    assert_eq!(plain.text(), "streamed");
    assert!(
        plain.trailers.is_none(),
        "no trailers for a caller that did not ask"
    );
}

#[tokio::test]
async fn calls_are_balanced_across_three_replicas() {
    let stack =
        "functions:\n  who:\n    fprocess: sh who.sh\n    labels:\n      faas.scale.min: 3\n";
    let gw = Gateway::start(stack, &[("who.sh", "echo $TMPDIR\n")], &[]);
    let mut served: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        let reply = post(gw.addr, "/function/who", "").await;
        assert_eq!(reply.status, StatusCode::OK);
        *served.entry(reply.text()).or_default() += 1;
    }
    assert_eq!(served.len(), 3, "{served:?}");
    for (replica, count) in &served {
        assert!(
            *count >= 60,
            "replica {replica} served only {count} of 300: {served:?}"
        );
    }
}

#[tokio::test]
async fn concurrent_calls_prefer_the_least_busy_replica() {
    let stack =
        "functions:\n  slow:\n    fprocess: sh slow.sh\n    labels:\n      faas.scale.min: 2\n";
    let gw = Gateway::start(stack, &[("slow.sh", "sleep 0.5\necho $TMPDIR\n")], &[]);
    let calls: Vec<_> = (0..4)
        .map(|_| tokio::spawn(post(gw.addr, "/function/slow", "")))
        .collect();
    let mut served: HashMap<String, usize> = HashMap::new();
    for call in calls {
        *served.entry(call.await.unwrap().text()).or_default() += 1;
    }
    assert_eq!(
        served.values().copied().collect::<Vec<_>>(),
        vec![2, 2],
        "{served:?}"
    );
}

#[tokio::test]
async fn metrics_count_exactly_the_calls_made() {
    let stack = "functions:\n  ok:\n    fprocess: cat\n  bad:\n    fprocess: \"false\"\n";
    let gw = Gateway::start(stack, &[], &[]);
    for _ in 0..7 {
        assert_eq!(
            post(gw.addr, "/function/ok", "x").await.status,
            StatusCode::OK
        );
    }
    for _ in 0..3 {
        assert_eq!(
            post(gw.addr, "/function/bad", "x").await.status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(
        post(gw.addr, "/function/missing", "x").await.status,
        StatusCode::NOT_FOUND
    );
    let text = get(gw.addr, "/metrics").await.text();
    let value = |series: &str| metric(&text, series);
    assert_eq!(
        value(r#"gateway_function_invocation_total{code="200",function_name="ok"}"#),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        value(r#"gateway_function_invocation_total{code="500",function_name="bad"}"#),
        Some(3.0)
    );
    assert_eq!(
        value(r#"gateway_functions_seconds_count{code="200",function_name="ok"}"#),
        Some(7.0)
    );
    assert_eq!(
        value(r#"gateway_function_invocation_started{function_name="ok"}"#),
        Some(7.0)
    );
    assert_eq!(
        value(r#"gateway_function_invocation_started{function_name="bad"}"#),
        Some(3.0)
    );
    assert_eq!(
        value(r#"gateway_service_count{function_name="ok"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(r#"gateway_function_invocation_inflight{function_name="ok"}"#),
        Some(0.0)
    );
    assert!(!text.contains("missing"), "unknown functions get no series");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_calls_and_stops_the_functions() {
    let stack = "functions:\n  slow:\n    fprocess: sh slow.sh\n";
    let mut gw = Gateway::start(stack, &[("slow.sh", "sleep 1\necho finished\n")], &[]);
    let replicas = gw.children();
    assert!(!replicas.is_empty());
    let call = tokio::spawn(post(gw.addr, "/function/slow", ""));
    // SIGTERM once the call is in flight at the gateway.
    let addr = gw.addr;
    let in_flight = eventually_async(Duration::from_secs(5), || async move {
        let text = get(addr, "/metrics").await.text();
        metric(
            &text,
            r#"gateway_function_invocation_inflight{function_name="slow"}"#,
        ) == Some(1.0)
    })
    .await;
    assert!(in_flight, "the call never showed as in flight");
    gw.signal(libc::SIGTERM);
    let reply = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "finished\n");
    let status = gw
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("gateway did not exit");
    assert!(status.success(), "{status:?}\n{}", gw.log());
    for pid in replicas {
        assert!(
            eventually(Duration::from_secs(3), || !process_exists(pid)).await,
            "replica {pid} outlived the gateway"
        );
    }
}

#[tokio::test]
async fn functions_die_with_a_gateway_killed_outright() {
    let gw = Gateway::start("functions:\n  echo:\n    fprocess: cat\n", &[], &[]);
    let replicas = gw.children();
    assert!(!replicas.is_empty());
    gw.signal(libc::SIGKILL);
    for pid in replicas {
        assert!(
            eventually(Duration::from_secs(5), || !process_exists(pid)).await,
            "replica {pid} outlived the gateway"
        );
    }
}

#[tokio::test]
async fn a_dead_replica_is_restarted() {
    let gw = Gateway::start("functions:\n  echo:\n    fprocess: cat\n", &[], &[]);
    let first = gw.children();
    assert_eq!(first.len(), 1);
    // SAFETY: killing our own test's grandchild.
    unsafe { libc::kill(first[0], libc::SIGKILL) };
    assert!(
        eventually(Duration::from_secs(10), || {
            let now = gw.children();
            now.len() == 1 && now != first
        })
        .await
    );
    // Routable again once the new replica is healthy (calls wait for it).
    let reply = post(gw.addr, "/function/echo", "back").await;
    assert_eq!(reply.text(), "back");
}

/// A function whose program does not exist (the quickstart's `markdown`
/// before it is built) is reported once, shown in its status, and its calls
/// are refused at once with a 503 naming the program instead of waiting
/// for a replica; once the program is there, it starts.
#[tokio::test]
async fn a_function_whose_program_is_missing_is_refused_at_once_until_it_appears() {
    let stack = "functions:\n  later:\n    fprocess: ./later.sh\n    labels:\n      faas.scale.min: \"2\"\n";
    let launched = Instant::now();
    let gw = Gateway::start(stack, &[], &["--replica-wait", "20s"]);
    // It does not hold up the gateway's start either (that waits up to 15 s
    // for the stack's functions to be ready).
    assert!(
        launched.elapsed() < Duration::from_secs(10),
        "started after {:?}",
        launched.elapsed()
    );

    let asked = Instant::now();
    let reply = post(gw.addr, "/function/later", "hello").await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        asked.elapsed()
    );
    assert!(
        reply.text().contains(
            "function \"later\" cannot start: its program \"./later.sh\" is not in its folder"
        ),
        "{}",
        reply.text()
    );
    // Callers learn the program, not where the server keeps it.
    let folder = gw.dir.path().to_str().unwrap();
    assert!(!reply.text().contains(folder), "{}", reply.text());
    let status = get(gw.addr, "/system/function/later").await;
    assert_eq!(status.status, StatusCode::OK);
    assert!(
        status.text().contains("\"problem\":\"its program"),
        "{}",
        status.text()
    );

    let script = gw.dir.path().join("later.sh");
    std::fs::write(&script, "#!/bin/sh\nexec cat\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let addr = gw.addr;
    let started = eventually_async(Duration::from_secs(15), || async move {
        let reply = post(addr, "/function/later", "hello").await;
        reply.status == StatusCode::OK && reply.text() == "hello"
    })
    .await;
    assert!(started, "{}", gw.log());
    let status = get(gw.addr, "/system/function/later").await.text();
    assert!(!status.contains("problem"), "{status}");
    // Two replicas looked for it every 2 s: said once.
    assert_eq!(
        gw.log().matches("cannot start: its program").count(),
        1,
        "{}",
        gw.log()
    );
}

/// An update to a program that is not there fails at once saying why; the
/// previous version keeps serving and shows no problem.
#[tokio::test]
async fn an_update_to_a_missing_program_is_refused_saying_why_and_the_old_version_serves() {
    let gw = Gateway::start("functions:\n  echo:\n    fprocess: cat\n", &[], &[]);
    let update = r#"{"service": "echo", "envProcess": "./nowhere.sh"}"#;
    let asked = Instant::now();
    let request = Request::put("/system/functions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(update)))
        .unwrap();
    let reply = send(gw.addr, request).await.unwrap();
    // Not the 15 s an update may take to become ready.
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "took {:?}",
        asked.elapsed()
    );
    assert!(
        reply.status.is_server_error(),
        "{} {}",
        reply.status,
        reply.text()
    );
    assert!(
        reply
            .text()
            .contains("cannot start: its program \"./nowhere.sh\""),
        "{}",
        reply.text()
    );
    assert_eq!(
        post(gw.addr, "/function/echo", "still here").await.text(),
        "still here"
    );
    let status = get(gw.addr, "/system/function/echo").await.text();
    assert!(!status.contains("problem"), "{status}");
}
