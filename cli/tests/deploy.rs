//! `faas deploy` against a real gateway: stack files, filters, updates and
//! waiting for replicas.

use crate::util;

use util::{Gateway, list_row};

const TWO_FUNCTIONS: &str = "  echo:\n    fprocess: cat\n  env:\n    fprocess: env\n";

#[test]
fn deploy_waits_until_every_function_is_ready_and_list_shows_them() {
    let gw = Gateway::start();
    let stack = gw.stack(TWO_FUNCTIONS);
    let run = gw.faas(&["deploy", "-f", stack.to_str().unwrap()]);
    run.assert_ok();
    let stdout = run.stdout();
    assert!(
        stdout.contains(&format!("Deployed echo: {}/function/echo", gw.url)),
        "{stdout}"
    );
    assert!(stdout.contains("Deployed env"), "{stdout}");
    // stderr is not a terminal here: plain progress lines, no redraws.
    assert!(
        run.stderr().contains("echo: ready (1/1 replicas)"),
        "{}",
        run.stderr()
    );

    let list = gw.faas(&["list"]);
    list.assert_ok();
    let text = list.stdout();
    assert!(text.starts_with("NAME"), "{text}");
    assert_eq!(list_row(&text, "echo").unwrap()[2], "1/1", "{text}");
    assert_eq!(list_row(&text, "env").unwrap()[2], "1/1", "{text}");
}

#[test]
fn filter_deploys_only_the_matching_function() {
    let gw = Gateway::start();
    let stack = gw.stack(TWO_FUNCTIONS);
    gw.faas(&["deploy", "-f", stack.to_str().unwrap(), "--filter", "env"])
        .assert_ok();
    let list = gw.faas(&["list"]).assert_ok().stdout();
    assert!(list_row(&list, "env").is_some(), "{list}");
    assert!(list_row(&list, "echo").is_none(), "{list}");

    gw.faas(&["deploy", "-f", stack.to_str().unwrap(), "--filter", "nope"])
        .assert_fails_with("no function in");
}

#[test]
fn deploying_an_existing_function_again_needs_update() {
    let gw = Gateway::start();
    let stack = gw.stack("  echo:\n    fprocess: cat\n");
    let file = stack.to_str().unwrap();
    gw.faas(&["deploy", "-f", file]).assert_ok();

    gw.faas(&["deploy", "-f", file, "--no-wait"])
        .assert_fails_with("function \"echo\" already exists; deploy with --update");

    gw.stack("  echo:\n    fprocess: cat\n    labels:\n      team: blue\n");
    let run = gw.faas(&["deploy", "-f", file, "--update"]);
    run.assert_ok();
    assert!(run.stdout().contains("Updated echo"), "{}", run.stdout());
    let describe = gw.faas(&["describe", "echo"]).assert_ok().stdout();
    assert!(describe.contains("team=blue"), "{describe}");

    // --update creates what does not exist yet.
    gw.stack("  fresh:\n    fprocess: cat\n");
    let run = gw.faas(&["deploy", "-f", file, "--update"]);
    run.assert_ok();
    assert!(run.stdout().contains("Deployed fresh"), "{}", run.stdout());
}

#[test]
fn the_stack_files_gateway_is_used_when_none_is_given() {
    let gw = Gateway::start();
    let stack = gw.write(
        "stack.yml",
        &format!(
            "provider:\n  name: openfaas\n  gateway: {}/\nfunctions:\n  echo:\n    fprocess: cat\n",
            gw.url
        ),
    );
    // No FAAS_GATEWAY: the stack file says where.
    util::Faas::new(gw.dir.path())
        .args(&["deploy", "-f", stack.to_str().unwrap()])
        .run()
        .assert_ok();
    let list = gw.faas(&["list"]).assert_ok().stdout();
    assert!(list_row(&list, "echo").is_some(), "{list}");
}

#[test]
fn a_refused_deployment_shows_the_gateways_reason() {
    let gw = Gateway::start();
    // The process provider needs a command to run.
    let stack = gw.stack("  noproc:\n    image: faas/x:latest\n");
    let run = gw.faas(&["deploy", "-f", stack.to_str().unwrap()]);
    run.assert_fails_with("noproc");
    assert_eq!(run.stderr().lines().count(), 1, "{}", run.stderr());
}

#[test]
fn a_missing_stack_file_is_named() {
    let gw = Gateway::start();
    gw.faas(&["deploy", "-f", "nowhere.yml"])
        .assert_fails_with("nowhere.yml");
}
