//! The real `faas` binary end to end on the real Swarm stack of
//! `./build.sh up`: log in with the stack's credentials, deploy a stack
//! file, list, invoke, read logs, scale, update under load, remove; and a
//! secret's life from creation to removal. Everything a user types goes
//! through the CLI; plain HTTP and the `docker` CLI only observe.
//!
//! The gateway is `FAAS_GATEWAY_URL` (default `http://127.0.0.1:8080`).
//! These tests need Docker, the stack and its credentials, so they are
//! ignored by a plain `cargo test` and run on purpose (`./build.sh test`,
//! or `cargo test -- --ignored`); once running, a missing piece is a
//! failure saying what to do. Each test deploys its own functions and secrets (unique
//! names, label `faas.test=swarm`) and removes them even when it fails;
//! they run one at a time and print their timings.

use crate::swarm_util;
use crate::util;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faas_common::api::FunctionStatus;
use swarm_util::{
    Answer, Load, Swarm, TestFunction, failures, rollout_done, service_ps, stack_yaml,
    unique_prefix,
};
use util::{eventually, list_row};

/// Bounds `deploy` and `scale --wait` (their `--timeout`): generous, as
/// the machine is shared and each new task must pass its health check.
const WAIT: &str = "2m";
/// How soon a change must show at the gateway.
const DISCOVERY_LAG: Duration = Duration::from_secs(2);
/// Longest a rolling update of one replica may take: the new task's health
/// check passes (2 s interval), then the old one drains (10 s) and stops.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(90);
/// Docker's log delivery is not instant.
const LOG_LAG: Duration = Duration::from_secs(10);

/// The functions of one flow, named apart from the samples the stack
/// itself runs: it already has `catservice`, `env` and `wordcount`, and a
/// function's name is its service's, so the sample names would collide.
struct Names {
    cat: String,
    env: String,
    wordcount: String,
}

impl Names {
    fn all(&self) -> [&str; 3] {
        [&self.cat, &self.env, &self.wordcount]
    }
}

/// The test stack file: three of `sample-functions/stack.yml`'s functions
/// renamed (image, fprocess and environment kept), plus what the flow
/// needs to observe them.
struct TestStack {
    path: PathBuf,
    gateway: String,
    functions: Vec<TestFunction>,
}

impl TestStack {
    fn new(swarm: &Swarm, names: &Names) -> TestStack {
        let mut cat = TestFunction::from_sample("catservice", &names.cat);
        // The sample writes nothing per call; with write_debug its watchdog
        // logs each call's input, which `faas logs` must then show.
        cat.environment
            .insert("write_debug".to_owned(), "true".to_owned());
        let mut env = TestFunction::from_sample("env", &names.env);
        env.environment
            .insert("GREETING".to_owned(), "before".to_owned());
        let wordcount = TestFunction::from_sample("wordcount", &names.wordcount);
        let stack = TestStack {
            path: swarm.write("stack.yml", ""),
            gateway: swarm.gateway.clone(),
            functions: vec![cat, env, wordcount],
        };
        stack.save();
        stack
    }

    fn save(&self) {
        std::fs::write(&self.path, stack_yaml(&self.gateway, &self.functions))
            .expect("write the stack file");
    }

    fn set_env(&mut self, function: &str, key: &str, value: &str) {
        let f = self
            .functions
            .iter_mut()
            .find(|f| f.name == function)
            .expect("a function of the stack");
        f.environment.insert(key.to_owned(), value.to_owned());
        self.save();
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("a UTF-8 path")
    }
}

/// Durations worth reporting, printed as they happen and at the end.
#[derive(Default)]
struct Timings(Vec<(String, Duration)>);

impl Timings {
    fn record(&mut self, what: &str, took: Duration) {
        eprintln!("timing: {what}: {:.2}s", took.as_secs_f64());
        self.0.push((what.to_owned(), took));
    }

    fn print(&self) {
        eprintln!("timings:");
        for (what, took) in &self.0 {
            eprintln!("  {what:<48} {:>7.2}s", took.as_secs_f64());
        }
    }
}

/// `faas list --json`, parsed.
fn list_json(swarm: &Swarm) -> Vec<FunctionStatus> {
    let out = swarm.faas(&["list", "--json"]).assert_ok().stdout();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("faas list --json: {e}:\n{out}"))
}

fn status_of<'a>(list: &'a [FunctionStatus], name: &str) -> &'a FunctionStatus {
    list.iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} is not in faas list --json: {list:#?}"))
}

/// The stack's credentials are required, a wrong password is refused, and
/// the right one is stored for the gateway.
fn log_in(swarm: &Swarm) {
    swarm
        .faas(&["list"])
        .assert_fails_with("authentication failed; run faas login");
    swarm
        .faas_stdin(
            &["login", "--username", &swarm.user, "--password-stdin"],
            b"not-the-password\n",
        )
        .assert_fails_with("authentication failed: wrong username or password");
    let out = swarm.login().stdout();
    assert!(
        out.contains(&format!("Logged in to {} as {}", swarm.gateway, swarm.user)),
        "{out}"
    );
    assert!(swarm.cli.config_path().exists(), "the login is stored");
}

/// deploy → list → invoke → logs → scale → update under load → remove, as a
/// user would type it, each step checking what the next one relies on.
#[test]
#[ignore = "needs Docker Swarm: ./build.sh up"]
fn a_stack_is_deployed_called_scaled_updated_and_removed_with_the_cli() {
    let swarm = Swarm::connect();
    let mut timings = Timings::default();
    log_in(&swarm);

    let prefix = unique_prefix();
    let names = Names {
        cat: format!("{prefix}-catservice"),
        env: format!("{prefix}-env"),
        wordcount: format!("{prefix}-wordcount"),
    };
    let mut cleanup = swarm.cleanup();
    for name in names.all() {
        cleanup.function(name);
    }
    let mut stack = TestStack::new(&swarm, &names);

    deploy_waits_until_every_replica_is_ready(&swarm, &stack, &names, &mut timings);
    invoke_reaches_each_function(&swarm, &names);
    logs_show_the_call_and_name_the_task(&swarm, &names);
    scale_waits_and_spreads_calls_over_the_replicas(&swarm, &names, &mut timings);
    an_update_under_load_drops_no_call(&swarm, &mut stack, &names, &mut timings);
    remove_stops_the_calls_within_2s(&swarm, &names, &mut timings);
    for name in names.all() {
        cleanup.removed(name);
    }
    timings.print();
}

fn deploy_waits_until_every_replica_is_ready(
    swarm: &Swarm,
    stack: &TestStack,
    names: &Names,
    timings: &mut Timings,
) {
    let started = Instant::now();
    let run = swarm.faas(&["deploy", "-f", stack.path(), "--timeout", WAIT]);
    let took = started.elapsed();
    run.assert_ok();
    eprintln!("{}", run.stderr().trim_end());
    timings.record("deploy 3 functions until ready", took);
    for name in names.all() {
        assert!(
            run.stdout().contains(&format!(
                "Deployed {name}: {}/function/{name}",
                swarm.gateway
            )),
            "{}",
            run.stdout()
        );
    }

    let list = list_json(swarm);
    for name in names.all() {
        let status = status_of(&list, name);
        assert_eq!(
            (status.available_replicas, status.replicas),
            (1, 1),
            "{name} right after deploy: {status:?}\n{}",
            service_ps(name)
        );
        assert_eq!(
            status.labels.get("faas.test").map(String::as_str),
            Some("swarm"),
            "{status:?}"
        );
    }
    assert_eq!(
        status_of(&list, &names.cat).env_process.as_deref(),
        Some("cat")
    );
    assert_eq!(status_of(&list, &names.env).image, "faas/env:latest");

    let table = swarm.faas(&["list"]).assert_ok().stdout();
    for name in names.all() {
        let row = list_row(&table, name).unwrap_or_else(|| panic!("{name} not in\n{table}"));
        assert_eq!(row[2], "1/1", "{table}");
    }

    // The same stack again, without --update, is refused by name.
    swarm
        .faas(&["deploy", "-f", stack.path(), "--filter", &names.cat])
        .assert_fails_with(&format!(
            "function {:?} already exists; deploy with --update",
            names.cat
        ));
}

fn invoke_reaches_each_function(swarm: &Swarm, names: &Names) {
    let out = swarm
        .faas_stdin(&["invoke", &names.cat], b"hello swarm")
        .assert_ok()
        .stdout();
    assert_eq!(out, "hello swarm");

    let out = swarm
        .faas_stdin(&["invoke", &names.wordcount], b"one two three\nfour\n")
        .assert_ok()
        .stdout();
    let counts: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(counts, ["2", "4", "19"], "lines, words, bytes: {out:?}");

    let out = swarm
        .faas(&["invoke", &names.env, "-H", "X-Test=1"])
        .assert_ok()
        .stdout();
    for line in ["Http_X_Test=1", "GREETING=before", "Http_Method=POST"] {
        assert!(
            out.lines().any(|l| l == line),
            "{line:?} not in the env function's output:\n{out}"
        );
    }
}

fn logs_show_the_call_and_name_the_task(swarm: &Swarm, names: &Names) {
    let marker = format!("marker-{}", unique_prefix());
    swarm
        .faas_stdin(&["invoke", &names.cat], marker.as_bytes())
        .assert_ok();
    let mut out = String::new();
    let found = eventually(LOG_LAG, || {
        out = swarm
            .faas(&["logs", &names.cat, "--tail", "50"])
            .assert_ok()
            .stdout();
        out.contains(&marker)
    });
    assert!(found, "faas logs never showed {marker:?}:\n{out}");

    // `timestamp instance text`, the instance being the task
    // (`<service>.<slot>.<task id>`).
    let task = format!("{}.1.", names.cat);
    for line in out.lines() {
        let cols: Vec<&str> = line.splitn(3, ' ').collect();
        assert_eq!(cols.len(), 3, "{line:?}");
        assert!(
            cols[0].len() >= 20 && cols[0].as_bytes()[10] == b'T',
            "RFC 3339 timestamp first: {line:?}"
        );
        assert!(cols[1].starts_with(&task), "the task second: {line:?}");
    }
    assert!(
        out.lines()
            .any(|l| l.contains("watchdog: listening") && l.contains("fprocess=cat")),
        "the watchdog's start is logged:\n{out}"
    );

    let json = swarm
        .faas(&["logs", &names.cat, "--tail", "50", "--json"])
        .assert_ok()
        .stdout();
    let entry: serde_json::Value = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .find(|v: &serde_json::Value| v["text"].as_str().is_some_and(|t| t.contains(&marker)))
        .unwrap_or_else(|| panic!("{marker:?} not in faas logs --json:\n{json}"));
    assert_eq!(entry["name"], names.cat.as_str(), "{entry}");
}

fn scale_waits_and_spreads_calls_over_the_replicas(
    swarm: &Swarm,
    names: &Names,
    timings: &mut Timings,
) {
    for replicas in [3u64, 1] {
        let n = replicas.to_string();
        let started = Instant::now();
        let run = swarm.faas(&[
            "scale",
            &names.cat,
            "--replicas",
            &n,
            "--wait",
            "--timeout",
            WAIT,
        ]);
        let took = started.elapsed();
        run.assert_ok();
        timings.record(&format!("scale --wait to {replicas}"), took);

        let status = status_of(&list_json(swarm), &names.cat).clone();
        assert_eq!(
            (status.available_replicas, status.replicas),
            (replicas, replicas),
            "after scale --wait {replicas}: {status:?}\n{}",
            service_ps(&names.cat)
        );
        let table = swarm.faas(&["list"]).assert_ok().stdout();
        let row = list_row(&table, &names.cat).expect("listed");
        assert_eq!(row[2], format!("{replicas}/{replicas}"), "{table}");

        // Every replica serves (the watchdog stamps X-Served-By with its
        // container's host name).
        let mut served_by = BTreeSet::new();
        let mut calls = 0;
        let spread = eventually(Duration::from_secs(10), || {
            for _ in 0..10 {
                calls += 1;
                let answer = swarm
                    .http
                    .call(&names.cat, &[], "who")
                    .unwrap_or_else(|e| panic!("/function/{}: {e}", names.cat));
                assert_eq!(
                    (answer.status, answer.body.as_str()),
                    (200, "who"),
                    "{answer:?}"
                );
                served_by.extend(answer.served_by);
            }
            served_by.len() as u64 >= replicas
        });
        assert!(
            spread && served_by.len() as u64 == replicas,
            "{calls} calls at {replicas} replicas were served by {served_by:?}"
        );
    }
}

fn an_update_under_load_drops_no_call(
    swarm: &Swarm,
    stack: &mut TestStack,
    names: &Names,
    timings: &mut Timings,
) {
    let env = names.env.as_str();
    let check = Arc::new(|a: &Answer| {
        if a.body.contains("GREETING=before") || a.body.contains("GREETING=after") {
            Ok(())
        } else {
            Err(format!("200 without GREETING: {:?}", a.body))
        }
    });
    let load = Load::start(&swarm.http, env, 3, Duration::from_millis(5), check);
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(500));

    stack.set_env(env, "GREETING", "after");
    let update = Instant::now();
    let run = swarm.faas(&[
        "deploy",
        "-f",
        stack.path(),
        "--filter",
        env,
        "--update",
        "--timeout",
        WAIT,
    ]);
    let command_took = update.elapsed();
    run.assert_ok();
    assert!(
        run.stdout().contains(&format!("Updated {env}")),
        "{}",
        run.stdout()
    );
    eprintln!("{}", run.stderr().trim_end());
    timings.record("deploy --update (the command)", command_took);

    // Until the new environment is served, then until Swarm has finished
    // the rollout and the replaced task is gone: no call may fail meanwhile.
    let mut polls = Vec::new();
    let new_value = loop {
        let answer = swarm.http.call(env, &[], "");
        let served =
            matches!(&answer, Ok(a) if a.status == 200 && a.body.contains("GREETING=after"));
        polls.push(answer);
        if served {
            break update.elapsed();
        }
        if update.elapsed() > ROLLOUT_TIMEOUT {
            panic!(
                "{env} still serves the old environment {ROLLOUT_TIMEOUT:?} after the update\n{}",
                service_ps(env)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    timings.record("update until the new value is served", new_value);
    while !rollout_done(env) {
        if update.elapsed() > ROLLOUT_TIMEOUT {
            panic!(
                "the update of {env} did not finish within {ROLLOUT_TIMEOUT:?}\n{}",
                service_ps(env)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    timings.record("update until the old task is gone", update.elapsed());
    std::thread::sleep(Duration::from_secs(1));
    let outcomes = load.stop();

    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    eprintln!(
        "{env}: {} calls under load during the update, {failed} failed",
        outcomes.len()
    );
    assert!(outcomes.len() > 20, "the load ran: {outcomes:?}");
    assert_eq!(
        failed,
        0,
        "calls failed during the rolling update:\n{}",
        failures(&outcomes, started)
    );
    for answer in &polls {
        assert!(
            matches!(answer, Ok(a) if a.status == 200),
            "a probe failed during the update: {answer:?}"
        );
    }

    let out = swarm.faas(&["invoke", env]).assert_ok().stdout();
    assert!(
        out.lines().any(|l| l == "GREETING=after") && !out.contains("GREETING=before"),
        "the new environment:\n{out}"
    );
    let status = status_of(&list_json(swarm), env).clone();
    assert_eq!(
        (status.available_replicas, status.replicas),
        (1, 1),
        "an update keeps the replica count: {status:?}"
    );
}

fn remove_stops_the_calls_within_2s(swarm: &Swarm, names: &Names, timings: &mut Timings) {
    for name in names.all() {
        let out = swarm.faas(&["remove", name]).assert_ok().stdout();
        assert_eq!(out, format!("Removed {name}\n"));
        let removed = Instant::now();
        let mut last = None;
        let gone = eventually(DISCOVERY_LAG, || {
            last = Some(swarm.http.call(name, &[], "after removal"));
            matches!(&last, Some(Ok(a)) if a.status == 404)
        });
        assert!(
            gone,
            "/function/{name} still answers {last:?} {DISCOVERY_LAG:?} after faas remove"
        );
        timings.record(&format!("remove {name} until 404"), removed.elapsed());
        swarm
            .faas(&["invoke", name])
            .assert_fails_with(&format!("function {name:?} not found"));
        swarm
            .faas(&["remove", name])
            .assert_fails_with(&format!("function {name:?} not found"));
    }
    let list = list_json(swarm);
    for name in names.all() {
        assert!(
            !list.iter().any(|f| f.name == name),
            "{name} is still listed"
        );
    }
}

/// A secret's life through the CLI: created, listed, mounted into a
/// function that prints it, refused removal while in use (Docker's words),
/// removed once the function is gone, and no longer listed.
#[test]
#[ignore = "needs Docker Swarm: ./build.sh up"]
fn a_secret_is_mounted_and_cannot_be_removed_while_in_use() {
    let swarm = Swarm::connect();
    swarm.login();
    let prefix = unique_prefix();
    let secret = format!("{prefix}-apikey");
    let function = format!("{prefix}-reads-secret");
    let value = format!("s3cr3t value of {prefix}");
    let mut cleanup = swarm.cleanup();
    cleanup.function(&function);
    cleanup.secret(&secret);

    let out = swarm
        .faas(&["secret", "create", &secret, "--from-literal", &value])
        .assert_ok()
        .stdout();
    assert_eq!(out, format!("Created secret {secret}\n"));
    let list = swarm.faas(&["secret", "list"]).assert_ok().stdout();
    assert!(
        list_row(&list, &secret).is_some(),
        "{secret} not in\n{list}"
    );

    let mut reader = TestFunction::new(&function, "faas/catservice:latest");
    reader.fprocess = Some(format!("cat /run/secrets/{secret}"));
    reader.secrets = vec![secret.clone()];
    let path = swarm.write("secret.yml", &stack_yaml(&swarm.gateway, &[reader]));
    let started = Instant::now();
    swarm
        .faas(&["deploy", "-f", path.to_str().unwrap(), "--timeout", WAIT])
        .assert_ok();
    eprintln!(
        "timing: deploy a function with a secret until ready: {:.2}s",
        started.elapsed().as_secs_f64()
    );
    let out = swarm.faas(&["invoke", &function]).assert_ok().stdout();
    assert_eq!(out, value, "the function prints the mounted secret");

    let refused = swarm.faas(&["secret", "remove", &secret]);
    refused.assert_fails_with("in use");
    assert!(
        refused.stderr().contains(&function),
        "Docker's refusal names the function: {}",
        refused.stderr()
    );

    swarm.faas(&["remove", &function]).assert_ok();
    cleanup.removed(&function);
    let out = swarm
        .faas(&["secret", "remove", &secret])
        .assert_ok()
        .stdout();
    assert_eq!(out, format!("Removed secret {secret}\n"));
    cleanup.removed(&secret);
    let list = swarm.faas(&["secret", "list"]).assert_ok().stdout();
    assert!(
        list_row(&list, &secret).is_none(),
        "{secret} still in\n{list}"
    );
    swarm
        .faas(&["secret", "remove", &secret])
        .assert_fails_with(&format!("secret {secret:?} not found"));
}
