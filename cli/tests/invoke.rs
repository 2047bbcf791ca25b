//! `faas invoke`: stdin in, the function's answer out, refusals on stderr.

use crate::util;

use util::Gateway;

#[test]
fn invoke_sends_stdin_and_prints_the_answer_raw() {
    let gw = Gateway::start();
    gw.deploy("  echo:\n    fprocess: cat\n");
    let body: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let run = gw.faas_stdin(&["invoke", "echo"], &body);
    run.assert_ok();
    assert_eq!(run.0.stdout, body);
}

/// FaaSpot-style parameters: one JSON object as the body, sent as JSON,
/// stdin not read.
#[test]
fn parameters_are_sent_as_one_json_object() {
    let gw = Gateway::start();
    gw.deploy("  echo:\n    fprocess: cat\n  env:\n    fprocess: env\n");
    let run = gw.faas_stdin(
        &["invoke", "echo", "-p", "name=user1", "--param", "n=3"],
        b"stdin is not the body",
    );
    run.assert_ok();
    let sent: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(sent, serde_json::json!({"name": "user1", "n": 3}));
    let run = gw.faas(&["invoke", "env", "-p", "a=1"]);
    run.assert_ok();
    assert!(
        run.stdout().contains("Http_Content_Type=application/json"),
        "{}",
        run.stdout()
    );
    gw.faas(&["invoke", "echo", "-p", "a=1", "-p", "a=2"])
        .assert_fails_with("-p a=…: given twice");
}

#[test]
fn headers_and_query_reach_the_function() {
    let gw = Gateway::start();
    gw.deploy("  env:\n    fprocess: env\n");
    let run = gw.faas(&[
        "invoke",
        "env",
        "-H",
        "X-Trace=abc123",
        "--header",
        "X-Team: blue",
        "--query",
        "lang=en",
        "--query",
        "q=a b&c",
        "--method",
        "put",
    ]);
    run.assert_ok();
    let out = run.stdout();
    assert!(out.contains("Http_X_Trace=abc123"), "{out}");
    assert!(out.contains("Http_X_Team=blue"), "{out}");
    assert!(out.contains("Http_Query=lang=en&q=a%20b%26c"), "{out}");
    assert!(out.contains("Http_Method=PUT"), "{out}");
    assert!(out.contains("Http_Content_Type=text/plain"), "{out}");
}

#[test]
fn a_removed_function_is_not_found() {
    let gw = Gateway::start();
    gw.deploy("  echo:\n    fprocess: cat\n");
    gw.faas(&["remove", "echo"]).assert_ok();
    gw.faas_stdin(&["invoke", "echo"], b"hi")
        .assert_fails_with("function \"echo\" not found");
    gw.faas(&["rm", "echo"])
        .assert_fails_with("function \"echo\" not found");
}

#[test]
fn a_failing_function_exits_1_with_its_status() {
    let gw = Gateway::start();
    gw.deploy("  broken:\n    fprocess: false\n");
    let run = gw.faas_stdin(&["invoke", "broken"], b"hi");
    run.assert_fails_with("function \"broken\" answered 500");
    assert!(run.stdout().is_empty(), "{}", run.stdout());
}

#[test]
fn an_invalid_name_never_reaches_the_gateway() {
    let gw = Gateway::start();
    gw.faas(&["invoke", "../system/functions"])
        .assert_fails_with("invalid function name");
}
