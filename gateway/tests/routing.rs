//! The four routing rules, name validation, and their errors, through the
//! real gateway and real function processes.

use crate::util;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use util::*;

const STACK: &str = r#"
functions:
  echo:
    fprocess: cat
  env:
    fprocess: env
  HostnameIntent:
    fprocess: sh intent.sh
"#;

const INTENT: &str = "cat > /dev/null\necho '{\"version\":\"1.0\",\"response\":{\"outputSpeech\":{\"type\":\"PlainText\",\"text\":\"hi from intent\"}}}'\n";

fn gateway() -> Gateway {
    Gateway::start(STACK, &[("intent.sh", INTENT)], &[])
}

fn alexa(intent: &str) -> String {
    format!(
        r#"{{"version":"1.0","session":{{"new":true,"sessionId":"amzn1.echo-api.session.1","application":{{"applicationId":"amzn1.ask.skill.1"}}}},"request":{{"type":"IntentRequest","requestId":"r1","intent":{{"name":"{intent}"}}}}}}"#
    )
}

#[tokio::test]
async fn function_path_routes_any_method_and_forwards_rest_and_query() {
    let gw = gateway();
    let reply = post(gw.addr, "/function/echo", "hello").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "hello");

    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let request = Request::builder()
            .method(method)
            .uri("/function/env/a/b?x=1&y=two")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let env = send(gw.addr, request).await.unwrap().text();
        assert!(env.contains(&format!("Http_Method={method}")), "{env}");
        assert!(env.contains("Http_Path=/a/b\n"), "{env}");
        assert!(env.contains("Http_Query=x=1&y=two\n"), "{env}");
    }
    let env = get(gw.addr, "/function/env").await.text();
    assert!(env.contains("Http_Path=/\n"), "{env}");
}

#[tokio::test]
async fn x_function_header_routes_other_paths_keeping_the_path() {
    let gw = gateway();
    let request = Request::post("/some/where?q=1")
        .header("X-Function", "env")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let env = send(gw.addr, request).await.unwrap().text();
    assert!(
        env.contains("Http_Path=/some/where\n") && env.contains("Http_Query=q=1\n"),
        "{env}"
    );

    // The seed's second form.
    let request = Request::post("/")
        .header("x-function", "echo")
        .body(Full::new(Bytes::from_static(b"known_hosts contents")))
        .unwrap();
    assert_eq!(
        send(gw.addr, request).await.unwrap().text(),
        "known_hosts contents"
    );
}

#[tokio::test]
async fn alexa_requests_reach_the_function_named_like_the_intent() {
    let gw = gateway();
    let reply = post(gw.addr, "/", alexa("HostnameIntent")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let answer: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(answer["response"]["outputSpeech"]["text"], "hi from intent");
}

#[tokio::test]
async fn an_alexa_intent_with_no_such_function_is_404() {
    let gw = gateway();
    let reply = post(gw.addr, "/", alexa("WeatherIntent")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.text(), "function \"WeatherIntent\" not found\n");
}

#[tokio::test]
async fn alexa_bodies_over_the_limit_are_413() {
    let gw = Gateway::start(STACK, &[("intent.sh", INTENT)], &["--max-alexa-body", "1k"]);
    let reply = post(gw.addr, "/", vec![b' '; 4096]).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.text().contains("max_alexa_body"), "{}", reply.text());
}

#[tokio::test]
async fn nothing_to_route_by_is_400_with_the_briefs_message() {
    let gw = gateway();
    for body in ["", "plain text", r#"{"session":{"sessionId":"s"}}"#] {
        let reply = post(gw.addr, "/", body.to_owned()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            reply.text(),
            "Provide an X-Function header or a valid Alexa SDK request.\n"
        );
    }
}

#[tokio::test]
async fn invalid_names_are_400() {
    let gw = gateway();
    for path in ["/function/bad%20name", "/function/a$b", "/function/"] {
        let reply = post(gw.addr, path, "x").await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            reply.text().starts_with("Invalid function name"),
            "{path}: {}",
            reply.text()
        );
    }
    let request = Request::post("/")
        .header("X-Function", "no/slashes")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = send(gw.addr, request).await.unwrap();
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_functions_are_404() {
    let gw = gateway();
    let reply = post(gw.addr, "/function/nope", "x").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.text(), "function \"nope\" not found\n");
}

#[tokio::test]
async fn system_paths_are_never_routed_by_header() {
    let gw = gateway();
    let request = Request::post("/system/anything")
        .header("X-Function", "echo")
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    let reply = send(gw.addr, request).await.unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn healthz_and_metrics_are_open() {
    let gw = gateway();
    assert_eq!(get(gw.addr, "/healthz").await.status, StatusCode::OK);
    let metrics = get(gw.addr, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .text()
            .contains("gateway_service_count{function_name=\"echo\"} 1"),
        "{}",
        metrics.text()
    );
}
