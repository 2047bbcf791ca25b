//! `faas describe`, `scale`, `logs` and `info` against a real gateway.

use crate::util;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use util::{Gateway, eventually, list_row};

#[test]
fn describe_shows_state_command_and_urls() {
    let gw = Gateway::start();
    gw.deploy("  echo:\n    fprocess: cat\n    annotations:\n      topic: demo\n");
    gw.faas_stdin(&["invoke", "echo"], b"hi").assert_ok();
    let text = gw.faas(&["describe", "echo"]).assert_ok().stdout();
    for want in [
        "Name:              echo".to_string(),
        "Status:            Ready".to_string(),
        "Replicas:          1".to_string(),
        "Available:         1".to_string(),
        "Invocations:       1".to_string(),
        "Function process:  cat".to_string(),
        "topic=demo".to_string(),
        format!("URL:               {}/function/echo", gw.url),
        format!("Async URL:         {}/async-function/echo", gw.url),
        "Scaling:           1-20 replicas, target 10 in flight per replica".to_string(),
        "never to zero".to_string(),
    ] {
        assert!(text.contains(&want), "{want:?} not in\n{text}");
    }

    let json: serde_json::Value = serde_json::from_str(
        &gw.faas(&["describe", "echo", "--json"])
            .assert_ok()
            .stdout(),
    )
    .unwrap();
    assert_eq!(json["name"], "echo");
    assert_eq!(json["availableReplicas"], 1);
    assert_eq!(json["url"], format!("{}/function/echo", gw.url));

    gw.faas(&["describe", "nope"])
        .assert_fails_with("function \"nope\" not found");
}

#[test]
fn scale_to_two_then_list_shows_two_of_two() {
    let gw = Gateway::start();
    gw.deploy("  echo:\n    fprocess: cat\n");
    let run = gw.faas(&["scale", "echo", "--replicas", "2", "--wait"]);
    run.assert_ok();
    assert!(
        run.stdout().contains("Scaled echo to 2 replicas"),
        "{}",
        run.stdout()
    );
    let list = gw.faas(&["list", "-v"]).assert_ok().stdout();
    let row = list_row(&list, "echo").unwrap();
    assert_eq!(row[2], "2/2", "{list}");
    assert!(list.lines().next().unwrap().contains("IMAGE"), "{list}");
    assert!(list.lines().next().unwrap().contains("CREATED"), "{list}");

    let json: serde_json::Value =
        serde_json::from_str(&gw.faas(&["list", "--json"]).assert_ok().stdout()).unwrap();
    assert_eq!(json[0]["replicas"], 2);

    gw.faas(&["scale", "nope", "--replicas", "1"])
        .assert_fails_with("function \"nope\" not found");
}

/// A function that writes a line to stderr (the watchdog's log) per call.
fn deploy_logger(gw: &Gateway) {
    let script = gw.write("log.sh", "echo \"called with $(cat)\" >&2\necho ok\n");
    gw.deploy(&format!(
        "  logger:\n    fprocess: sh {}\n",
        script.display()
    ));
}

#[test]
fn logs_show_what_the_function_wrote() {
    let gw = Gateway::start();
    deploy_logger(&gw);
    gw.faas_stdin(&["invoke", "logger"], b"first").assert_ok();
    let mut last = String::new();
    let found = eventually(Duration::from_secs(10), || {
        last = gw.faas(&["logs", "logger"]).assert_ok().stdout();
        last.contains("called with first")
    });
    assert!(found, "no log line in:\n{last}\ngateway log:\n{}", gw.log());
    // `timestamp instance text`
    let line = last
        .lines()
        .find(|l| l.contains("called with first"))
        .unwrap();
    let mut cols = line.split_whitespace();
    assert!(cols.next().unwrap().contains('T'), "{line}");
    assert!(cols.next().is_some(), "{line}");

    let json = gw
        .faas(&["logs", "logger", "--json", "--tail", "100"])
        .assert_ok()
        .stdout();
    let entry = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| {
            v["text"]
                .as_str()
                .unwrap_or_default()
                .contains("called with first")
        })
        .unwrap_or_else(|| panic!("not in --json output:\n{json}"));
    assert_eq!(entry["name"], "logger");

    gw.faas(&["logs", "nope"])
        .assert_fails_with("function \"nope\" not found");
}

#[test]
fn logs_follow_streams_lines_as_they_come() {
    let gw = Gateway::start();
    deploy_logger(&gw);
    let mut follower = gw
        .faas_cmd()
        .args(&["logs", "logger", "--follow", "--since", "1s"])
        .spawn();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Calls made while the follower is connected show up without it exiting.
    let mut seen = Vec::new();
    let found = eventually(Duration::from_secs(15), || {
        gw.faas_stdin(&["invoke", "logger"], b"live").assert_ok();
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            seen.push(line);
        }
        seen.iter().any(|l| l.contains("called with live"))
    });
    let still_running = follower.try_wait().unwrap().is_none();
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(found, "follower printed: {seen:?}");
    assert!(still_running, "logs --follow exited early");
}

#[test]
fn info_names_the_provider_and_both_versions() {
    let gw = Gateway::start();
    let text = gw.faas(&["info"]).assert_ok().stdout();
    assert!(text.contains("Orchestration:    process"), "{text}");
    assert!(
        text.contains(&format!("CLI version:      {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&gw.faas(&["info", "--json"]).assert_ok().stdout()).unwrap();
    assert_eq!(json["info"]["provider"]["orchestration"], "process");

    let version = gw.faas(&["version"]).assert_ok().stdout();
    assert!(
        version.starts_with(&format!("faas {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    assert!(version.contains("gateway"), "{version}");
}
