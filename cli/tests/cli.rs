//! The command line itself: help, completion, usage errors and an
//! unreachable gateway. No gateway needed.

use crate::util;

use util::Faas;

fn faas(args: &[&str]) -> util::Run {
    let dir = tempfile::tempdir().unwrap();
    Faas::new(dir.path()).args(args).run()
}

#[test]
fn every_commands_help_has_an_example() {
    for command in [
        vec![],
        vec!["login"],
        vec!["logout"],
        vec!["deploy"],
        vec!["list"],
        vec!["describe"],
        vec!["invoke"],
        vec!["invoke-bulk"],
        vec!["executions"],
        vec!["executions", "get"],
        vec!["executions", "list"],
        vec!["executions", "output"],
        vec!["remove"],
        vec!["scale"],
        vec!["logs"],
        vec!["secret"],
        vec!["secret", "create"],
        vec!["secret", "list"],
        vec!["secret", "remove"],
        vec!["info"],
        vec!["version"],
        vec!["completion"],
    ] {
        let mut args = command.clone();
        args.push("--help");
        let run = faas(&args);
        run.assert_ok();
        assert!(
            run.stdout().contains("Example"),
            "faas {args:?}:\n{}",
            run.stdout()
        );
    }
}

#[test]
fn completion_prints_a_shell_script() {
    let run = faas(&["completion", "bash"]);
    run.assert_ok();
    let script = run.stdout();
    assert!(
        script.contains("complete") && script.contains("faas"),
        "{script}"
    );
    assert!(script.contains("deploy"), "{script}");
    for shell in ["zsh", "fish"] {
        assert!(!faas(&["completion", shell]).assert_ok().stdout().is_empty());
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(faas(&["scale", "x"]).code(), Some(2));
    assert_eq!(faas(&["frobnicate"]).code(), Some(2));
    assert_eq!(faas(&["list", "--timeout", "soon"]).code(), Some(2));
    assert_eq!(faas(&["invoke", "x", "-H", "novalue"]).code(), Some(2));
    assert_eq!(faas(&["invoke", "x", "--wait"]).code(), Some(2));
    assert_eq!(faas(&["invoke-bulk", "x"]).code(), Some(2));
    assert_eq!(
        faas(&["executions", "list", "--status", "gone"]).code(),
        Some(2)
    );
}

#[test]
fn an_unreachable_gateway_is_one_clear_sentence() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    for args in [
        vec!["list"],
        vec!["describe", "x"],
        vec!["invoke", "x"],
        vec!["invoke", "x", "--async"],
        vec!["logs", "x"],
        vec!["executions", "get", "c0ffee"],
        vec!["executions", "list"],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let run = Faas::new(dir.path())
            .env("FAAS_GATEWAY", &url)
            .args(&args)
            .run();
        run.assert_fails_with(&format!(
            "cannot reach the gateway at {url}: connection refused"
        ));
        assert_eq!(run.stderr().lines().count(), 1, "{}", run.stderr());
    }
}

#[test]
fn the_default_gateway_url_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    Faas::new(dir.path())
        .args(&["--gateway", "https://gw.example", "list"])
        .run()
        .assert_fails_with("without TLS");
}

#[test]
fn version_works_without_a_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let run = Faas::new(dir.path())
        .env("FAAS_GATEWAY", "http://127.0.0.1:1")
        .args(&["version"])
        .run();
    run.assert_ok();
    assert_eq!(
        run.stdout(),
        format!("faas {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert!(
        run.stderr().contains("gateway version unknown"),
        "{}",
        run.stderr()
    );
}
