//! `faas login`/`logout` against a gateway that requires basic auth.

use crate::util;

use util::{DENY_PY, Gateway};

const USER: &str = "admin";
const PASSWORD: &str = "s3cr3t-pw";

fn guarded() -> Gateway {
    Gateway::start_with(&[("basic_auth_user", USER), ("basic_auth_password", PASSWORD)])
}

#[test]
fn a_wrong_password_is_refused_and_not_stored() {
    let gw = guarded();
    gw.faas_stdin(&["login", "--password-stdin"], b"wrong\n")
        .assert_fails_with("authentication failed: wrong username or password");
    assert!(!gw.config_path().exists());
}

#[test]
fn without_a_login_the_api_says_to_log_in() {
    let gw = guarded();
    gw.faas(&["list"])
        .assert_fails_with("authentication failed; run faas login");
}

#[test]
fn a_login_is_stored_privately_and_used_until_logout() {
    use std::os::unix::fs::PermissionsExt;
    let gw = guarded();
    let run = gw.faas_stdin(
        &["login", "--username", USER, "--password-stdin"],
        format!("{PASSWORD}\n").as_bytes(),
    );
    run.assert_ok();
    assert!(
        run.stdout().contains(&format!("Logged in to {}", gw.url)),
        "{}",
        run.stdout()
    );

    let path = gw.config_path();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(stored["gateways"][&gw.url]["username"], USER);

    gw.deploy("  echo:\n    fprocess: cat\n");
    gw.faas(&["list"]).assert_ok();
    // A trailing slash is the same gateway.
    gw.faas_cmd()
        .env("FAAS_GATEWAY", format!("{}/", gw.url))
        .args(&["list"])
        .run()
        .assert_ok();
    // Function calls stay open and never get the admin password.
    let run = gw.faas_stdin(&["invoke", "echo"], b"open");
    run.assert_ok();
    assert_eq!(run.stdout(), "open");

    gw.faas(&["logout"]).assert_ok();
    gw.faas(&["list"])
        .assert_fails_with("authentication failed; run faas login");
}

#[test]
fn environment_credentials_win_over_the_stored_login() {
    let gw = guarded();
    gw.faas_cmd()
        .env("FAAS_PASSWORD", PASSWORD)
        .args(&["list"])
        .run()
        .assert_ok();
    gw.faas_cmd()
        .env("FAAS_USERNAME", USER)
        .env("FAAS_PASSWORD", "nope")
        .args(&["list"])
        .run()
        .assert_fails_with("authentication failed");
}

#[test]
fn calls_carry_credentials_only_when_the_gateway_demands_them() {
    let gw = Gateway::start_with(&[
        ("basic_auth_user", USER),
        ("basic_auth_password", PASSWORD),
        ("auth_invoke", "true"),
    ]);
    gw.faas_cmd()
        .env("FAAS_PASSWORD", PASSWORD)
        .args(&[
            "deploy",
            "-f",
            gw.stack("  echo:\n    fprocess: cat\n").to_str().unwrap(),
        ])
        .run()
        .assert_ok();
    gw.faas_stdin(&["invoke", "echo"], b"x")
        .assert_fails_with("authentication failed");
    let run = gw
        .faas_cmd()
        .env("FAAS_PASSWORD", PASSWORD)
        .args(&["invoke", "echo"])
        .stdin(b"guarded")
        .run();
    run.assert_ok();
    assert_eq!(run.stdout(), "guarded");
}

/// A function that answers 401 as if it were the gateway never gets the
/// stored password: the CLI resends credentials only on the gateway's own
/// 401 (which carries a marker no function's answer can).
#[test]
fn a_function_asking_for_credentials_never_gets_the_login() {
    let gw = guarded();
    gw.write("deny.py", DENY_PY);
    gw.faas_cmd()
        .env("FAAS_PASSWORD", PASSWORD)
        .args(&[
            "deploy",
            "-f",
            gw.stack(
                "  deny:\n    fprocess: python3 deny.py\n    environment:\n      mode: http\n",
            )
            .to_str()
            .unwrap(),
        ])
        .run()
        .assert_ok();
    let run = gw
        .faas_cmd()
        .env("FAAS_PASSWORD", PASSWORD)
        .args(&["invoke", "deny"])
        .stdin(b"x")
        .run();
    assert!(!run.0.status.success(), "{}", run.stdout());
    let seen = std::fs::read_to_string(gw.dir.path().join("seen.txt")).unwrap();
    assert_eq!(seen.trim(), "None", "the function was sent: {seen}");
}
