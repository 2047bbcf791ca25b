//! `faas secret create|list|remove`.

use crate::util;

use util::Gateway;

#[test]
fn secrets_can_be_created_listed_and_removed() {
    let gw = Gateway::start();
    let run = gw.faas(&["secret", "create", "api-key", "--from-literal", "s3cr3t"]);
    run.assert_ok();
    assert!(
        run.stdout().contains("Created secret api-key"),
        "{}",
        run.stdout()
    );
    gw.faas_stdin(&["secret", "create", "from-stdin"], b"piped\n")
        .assert_ok();
    let file = gw.write("key.pem", "-----BEGIN KEY-----\n");
    gw.faas(&[
        "secret",
        "create",
        "from-file",
        "--from-file",
        file.to_str().unwrap(),
    ])
    .assert_ok();

    let list = gw.faas(&["secret", "list"]).assert_ok().stdout();
    assert_eq!(list, "NAME\napi-key\nfrom-file\nfrom-stdin\n");
    let json: serde_json::Value =
        serde_json::from_str(&gw.faas(&["secret", "ls", "--json"]).assert_ok().stdout()).unwrap();
    assert_eq!(json[0]["name"], "api-key");
    assert!(json[0].get("value").is_none(), "{json}");

    gw.faas(&["secret", "create", "api-key", "--from-literal", "again"])
        .assert_fails_with("api-key");

    gw.faas(&["secret", "remove", "api-key"]).assert_ok();
    let list = gw.faas(&["secret", "list"]).assert_ok().stdout();
    assert!(!list.contains("api-key"), "{list}");
    gw.faas(&["secret", "rm", "api-key"])
        .assert_fails_with("secret \"api-key\" not found");
}

#[test]
fn a_secret_needs_a_value() {
    let gw = Gateway::start();
    let run = gw
        .faas_cmd()
        .args(&[
            "secret",
            "create",
            "k",
            "--from-literal",
            "a",
            "--from-file",
            "f",
        ])
        .run();
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
}
