//! `faas invoke --async`, `faas invoke-bulk` and `faas executions`: calls
//! queued on a real gateway (process provider, its own queue file), their
//! records, outputs and callbacks.

use crate::util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use util::Gateway;

const ECHO: &str = "  echo:\n    fprocess: cat\n";
const UPPER: &str = "  upper:\n    fprocess: tr a-z A-Z\n";

/// Queues a call with `faas invoke NAME --async …`; returns its id.
fn queue(gw: &Gateway, args: &[&str], body: &[u8]) -> String {
    let run = gw.faas_stdin(args, body);
    run.assert_ok();
    let stdout = run.stdout();
    let id = stdout.trim_end_matches('\n');
    assert!(
        !id.is_empty() && !id.contains(char::is_whitespace),
        "stdout should be just the id: {stdout:?}"
    );
    assert!(
        run.stderr().contains(&format!("queued {id}")),
        "{}",
        run.stderr()
    );
    id.to_string()
}

/// Exit 1 with a last stderr line `faas: …` containing `text` (a `--wait`
/// prints what it queued first).
fn assert_wait_fails_with(run: &util::Run, text: &str) {
    let stderr = run.stderr();
    assert_eq!(
        run.code(),
        Some(1),
        "stdout: {}\nstderr: {stderr}",
        run.stdout()
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("faas: ") && last.contains(text),
        "expected {text:?} in the last line of stderr: {stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("faas:")).count(),
        1,
        "{stderr}"
    );
}

/// `faas executions get ID --json`.
fn record(gw: &Gateway, id: &str) -> Value {
    let run = gw.faas(&["executions", "get", id, "--json"]);
    run.assert_ok();
    serde_json::from_str(&run.stdout()).unwrap()
}

/// The record once the call has finished.
fn finished(gw: &Gateway, id: &str) -> Value {
    let mut last = Value::Null;
    let done = util::eventually(Duration::from_secs(30), || {
        last = record(gw, id);
        matches!(
            last["status"].as_str(),
            Some("succeeded" | "failed" | "dead")
        )
    });
    assert!(done, "execution {id} did not finish: {last}");
    last
}

#[test]
fn an_async_call_prints_its_id_and_its_record_ends_succeeded_after_one_attempt() {
    let gw = Gateway::start();
    gw.deploy(ECHO);
    let id = queue(&gw, &["invoke", "echo", "--async"], b"hello async");

    let record = finished(&gw, &id);
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["attempts"], 1, "{record}");
    assert_eq!(record["function"], "echo", "{record}");
    assert_eq!(record["statusCode"], 200, "{record}");

    let text = gw.faas(&["executions", "get", &id]).assert_ok().stdout();
    for line in [
        format!("ID:           {id}"),
        "Function:     echo".to_string(),
        "Status:       succeeded".to_string(),
        "Attempts:     1".to_string(),
        "Status code:  200".to_string(),
    ] {
        assert!(text.contains(&line), "{line:?} not in\n{text}");
    }

    let output = gw.faas(&["executions", "output", &id]);
    output.assert_ok();
    assert_eq!(output.stdout(), "hello async");
}

#[test]
fn async_wait_prints_the_functions_output() {
    let gw = Gateway::start();
    gw.deploy(UPPER);
    let run = gw.faas_stdin(&["invoke", "upper", "--async", "--wait"], b"shout this");
    run.assert_ok();
    assert_eq!(run.stdout(), "SHOUT THIS");
    assert!(run.stderr().contains("queued "), "{}", run.stderr());
}

#[test]
fn async_wait_on_a_failing_function_exits_1_with_status_and_code() {
    let gw = Gateway::start();
    gw.deploy("  broken:\n    fprocess: false\n");
    let run = gw.faas_stdin(&["invoke", "broken", "--async", "--wait"], b"x");
    assert_wait_fails_with(&run, "of \"broken\" failed, status code 500");
    assert_eq!(run.stdout(), "");
}

#[test]
fn headers_and_query_of_an_async_call_reach_the_function() {
    let gw = Gateway::start();
    gw.deploy("  env:\n    fprocess: env\n");
    let run = gw.faas(&[
        "invoke",
        "env",
        "--async",
        "--wait",
        "-H",
        "X-Trace=abc123",
        "--query",
        "q=a b",
    ]);
    run.assert_ok();
    let out = run.stdout();
    assert!(out.contains("Http_X_Trace=abc123"), "{out}");
    assert!(out.contains("Http_Query=q=a%20b"), "{out}");
    assert!(out.contains("Http_Method=POST"), "{out}");
}

#[test]
fn async_calls_are_always_post() {
    let gw = Gateway::start();
    gw.deploy(ECHO);
    gw.faas(&["invoke", "echo", "--async", "--method", "GET"])
        .assert_fails_with("--async calls are always POST");
}

#[test]
fn a_bulk_file_queues_one_call_per_line_in_order_and_wait_counts_them() {
    let gw = Gateway::start();
    gw.deploy(ECHO);
    let lines: Vec<String> = (0..20).map(|i| format!("{{\"n\": {i}}}")).collect();
    // Blank lines are not payloads.
    let file = gw.write("payloads.jsonl", &format!("{}\n\n", lines.join("\n")));

    let run = gw.faas(&[
        "invoke-bulk",
        "echo",
        "--file",
        file.to_str().unwrap(),
        "--wait",
    ]);
    run.assert_ok();
    let ids: Vec<String> = run.stdout().lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 20, "{}", run.stdout());
    let summary = run.stderr();
    assert!(summary.contains("queued 20 calls to echo"), "{summary}");
    let counts: Vec<Vec<&str>> = summary
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(counts.contains(&vec!["STATUS", "CALLS"]), "{summary}");
    assert!(counts.contains(&vec!["succeeded", "20"]), "{summary}");

    // The ids are in the file's order: each call's body is its own line.
    for i in [0, 7, 19] {
        let output = gw.faas(&["executions", "output", &ids[i]]);
        output.assert_ok();
        let value: Value = serde_json::from_str(&output.stdout()).unwrap();
        assert_eq!(value["n"], i, "call {i}");
    }

    let list = gw.faas(&["executions", "list", "--function", "echo", "--all"]);
    list.assert_ok();
    let table = list.stdout();
    assert!(
        table.starts_with("ID") && table.contains("DURATION"),
        "{table}"
    );
    for id in &ids {
        let row = util::list_row(&table, id).unwrap_or_else(|| panic!("{id} not in\n{table}"));
        assert_eq!(row[1..4], ["echo", "succeeded", "1"], "{table}");
    }
    // Without --all only queued and running calls are listed.
    let active = gw.faas(&["executions", "list", "--function", "echo"]);
    assert_eq!(
        active.assert_ok().stdout().lines().count(),
        1,
        "{}",
        active.stdout()
    );

    // Several ids: one bulk read, one table.
    let mut args = vec!["executions", "get"];
    args.extend(ids[..3].iter().map(String::as_str));
    let many = gw.faas(&args);
    many.assert_ok();
    assert_eq!(many.stdout().lines().count(), 4, "{}", many.stdout());
}

#[test]
fn a_bulk_file_can_come_from_stdin() {
    let gw = Gateway::start();
    gw.deploy(UPPER);
    let run = gw.faas_stdin(
        &["invoke-bulk", "upper", "--file", "-"],
        b"\"abc\"\n\"def\"\n",
    );
    run.assert_ok();
    let ids: Vec<String> = run.stdout().lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 2);
    for (id, want) in ids.iter().zip(["ABC", "DEF"]) {
        finished(&gw, id);
        let output = gw.faas(&["executions", "output", id]);
        assert_eq!(output.assert_ok().stdout(), want);
    }
}

#[test]
fn a_failed_call_in_a_bulk_wait_exits_1() {
    let gw = Gateway::start();
    gw.deploy("  broken:\n    fprocess: false\n");
    let file = gw.write("p.jsonl", "1\n2\n");
    let run = gw.faas(&[
        "invoke-bulk",
        "broken",
        "--file",
        file.to_str().unwrap(),
        "--wait",
    ]);
    assert_wait_fails_with(&run, "2 of 2 calls did not succeed");
    assert_eq!(run.stdout().lines().count(), 2, "{}", run.stdout());
    let stderr = run.stderr();
    let rows: Vec<Vec<&str>> = stderr
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.contains(&vec!["failed", "2"]), "{stderr}");
}

#[test]
fn an_unknown_function_is_not_found() {
    let gw = Gateway::start();
    gw.faas_stdin(&["invoke", "nope", "--async"], b"x")
        .assert_fails_with("function \"nope\" not found");
    let file = gw.write("p.jsonl", "1\n");
    gw.faas(&["invoke-bulk", "nope", "--file", file.to_str().unwrap()])
        .assert_fails_with("function \"nope\" not found");
}

#[test]
fn an_unknown_execution_is_not_found() {
    let gw = Gateway::start();
    gw.faas(&["executions", "get", "no-such-id"])
        .assert_fails_with("execution \"no-such-id\" not found");
    gw.faas(&["executions", "output", "no-such-id"])
        .assert_fails_with("execution \"no-such-id\" not found");
}

#[test]
fn a_malformed_line_is_named_and_nothing_is_queued() {
    let gw = Gateway::start();
    gw.deploy(ECHO);
    let file = gw.write("p.jsonl", "{\"ok\": 1}\n\n{\"broken\": }\n3\n");
    let run = gw.faas(&["invoke-bulk", "echo", "--file", file.to_str().unwrap()]);
    run.assert_fails_with("p.jsonl line 3: not a JSON value");
    assert_eq!(run.stdout(), "");
    let all = gw.faas(&["executions", "list", "--all", "--json"]);
    let records: Vec<Value> = serde_json::from_str(&all.assert_ok().stdout()).unwrap();
    assert!(records.is_empty(), "{records:?}");
}

#[test]
fn the_output_of_an_unfinished_call_is_refused_with_its_status() {
    let gw = Gateway::start();
    gw.deploy("  slow:\n    fprocess: sleep 5\n");
    let id = queue(&gw, &["invoke", "slow", "--async"], b"");
    gw.faas(&["executions", "output", &id])
        .assert_fails_with("has not finished");
    let listed = gw.faas(&["executions", "list", "--function", "slow"]);
    assert!(
        util::list_row(&listed.assert_ok().stdout(), &id).is_some(),
        "{}",
        listed.stdout()
    );
}

#[test]
fn a_wait_gives_up_at_the_timeout() {
    let gw = Gateway::start();
    gw.deploy("  slow:\n    fprocess: sleep 5\n");
    let run = gw.faas(&["invoke", "slow", "--async", "--wait", "--timeout", "1s"]);
    assert_wait_fails_with(&run, "timed out after 1s waiting for execution");
}

#[test]
fn a_callback_url_receives_the_answer_with_the_call_id() {
    // The receiver is on loopback: the operator allows it.
    let gw = Gateway::start_with(&[("callback_allow", "127.0.0.1")]);
    gw.deploy(UPPER);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/done", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let _ = tx.send(receive_one(stream));
        }
    });

    let id = queue(
        &gw,
        &["invoke", "upper", "--async", "--callback", &url],
        b"call me back",
    );
    let (head, body) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("no callback within 30s");
    assert!(head.starts_with("POST /done "), "{head}");
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    assert_eq!(header("X-Call-Id").as_deref(), Some(id.as_str()), "{head}");
    assert_eq!(
        header("X-Function-Status").as_deref(),
        Some("200"),
        "{head}"
    );
    assert_eq!(body, b"CALL ME BACK");

    let mut last = Value::Null;
    let delivered = util::eventually(Duration::from_secs(10), || {
        last = record(&gw, &id);
        last["callback"]["status"] == "delivered"
    });
    assert!(delivered, "{last}");
    let text = gw.faas(&["executions", "get", &id]).assert_ok().stdout();
    assert!(
        text.contains(&format!("Callback:     {url} (delivered")),
        "{text}"
    );
}

#[test]
fn a_guarded_gateway_takes_async_calls_and_the_cli_reads_records_with_credentials() {
    let gw = Gateway::start_with(&[
        ("basic_auth_user", "admin"),
        ("basic_auth_password", "s3cr3t-pw"),
    ]);
    let stack = gw.stack(UPPER);
    gw.faas_cmd()
        .env("FAAS_PASSWORD", "s3cr3t-pw")
        .args(&["deploy", "-f", stack.to_str().unwrap()])
        .run()
        .assert_ok();
    let run = gw
        .faas_cmd()
        .env("FAAS_PASSWORD", "s3cr3t-pw")
        .args(&["invoke", "upper", "--async", "--wait"])
        .stdin(b"guarded")
        .run();
    run.assert_ok();
    assert_eq!(run.stdout(), "GUARDED");
    gw.faas(&["executions", "list"])
        .assert_fails_with("authentication failed; run faas login");
}

/// Reads one HTTP/1.1 request (Content-Length or chunked body), answers
/// 200, and returns its head and body.
fn receive_one(stream: std::net::TcpStream) -> (String, Vec<u8>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_ascii_lowercase())
    };
    let mut body = Vec::new();
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body).unwrap();
    } else if header("transfer-encoding").as_deref() == Some("chunked") {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let mut stream = stream;
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    (head, body)
}
