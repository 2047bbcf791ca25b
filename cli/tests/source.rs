//! Functions from source on the process provider: `faas new` + `faas up`
//! for every template, code updates, the handler shapes of OpenFaaS,
//! tinyFaaS, FaaSpot and FaaSET run unchanged, dependencies, and every
//! way a build can be refused (`POST /system/builds`).

use std::path::Path;

use crate::util::Gateway;

/// `faas invoke NAME` with `body`; its stdout, insisting it worked.
fn call(gw: &Gateway, name: &str, body: &str) -> String {
    let run = gw.faas_stdin(&["invoke", name], body.as_bytes());
    run.assert_ok();
    run.stdout()
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The new-user path: `faas new` then `faas up`, for every template the
/// process provider runs, then an edit and `faas up` again.
#[test]
fn new_then_up_serves_every_template_and_picks_up_code_changes() {
    let gw = Gateway::start();
    let templates = ["python", "node", "bash", "rust"];
    for lang in templates {
        let name = format!("hello-{lang}");
        gw.faas(&["new", &name, "--lang", lang]).assert_ok();
    }
    let up = gw.faas(&["up"]);
    up.assert_ok();
    for lang in templates {
        let name = format!("hello-{lang}");
        assert!(
            up.stdout().contains(&format!("Deployed {name}")),
            "{}",
            up.stdout()
        );
        assert_eq!(call(&gw, &name, "Bob"), "Hello, Bob!\n", "{lang}");
    }

    // Edit each sample's greeting; `faas up` builds and rolls them.
    for lang in templates {
        let dir = gw.dir.path().join(format!("hello-{lang}"));
        let sample = match lang {
            "python" => "handler.py",
            "node" => "handler.js",
            "bash" => "handler.sh",
            _ => "src/main.rs",
        };
        let text = std::fs::read_to_string(dir.join(sample)).unwrap();
        assert!(text.contains("Hello, "), "{lang}: {text}");
        std::fs::write(dir.join(sample), text.replace("Hello, ", "Goodbye, ")).unwrap();
    }
    let up = gw.faas(&["up"]);
    up.assert_ok();
    for lang in templates {
        let name = format!("hello-{lang}");
        assert!(
            up.stdout().contains(&format!("Updated {name}")),
            "{}",
            up.stdout()
        );
        assert_eq!(call(&gw, &name, "Bob"), "Goodbye, Bob!\n", "{lang}");
    }

    // Unchanged source: found, not built again.
    let again = gw.faas(&["up", "--filter", "hello-python"]);
    again.assert_ok();
    assert!(
        again.stdout().contains("unchanged source"),
        "{}",
        again.stdout()
    );
    assert!(!again.stderr().contains("Step 1/"), "{}", again.stderr());
}

/// Handlers written for other platforms deploy unchanged with `faas
/// deploy NAME --from`, a folder or a single file.
#[test]
fn handlers_from_other_platforms_run_unchanged() {
    let gw = Gateway::start();
    let d = gw.dir.path();
    // tinyFaaS python: fn(input, headers), echo and show-headers.
    write(
        d,
        "echo/fn.py",
        "import typing\n\ndef fn(input: typing.Optional[str], headers: typing.Optional[typing.Dict[str, str]]) -> typing.Optional[str]:\n    return input\n",
    );
    write(
        d,
        "headers/fn.py",
        "def fn(input, headers):\n    return headers.get('X-Team', 'none') if headers else 'none'\n",
    );
    // tinyFaaS node: module.exports = (req, res) => res.send(...).
    write(
        d,
        "sieve/index.js",
        "module.exports = (req, res) => {\n  const max = 10000;\n  let sieve = [], i, j, primes = [];\n  for (i = 2; i <= max; ++i) {\n    if (!sieve[i]) {\n      primes.push(i);\n      for (j = i << 1; j <= max; j += i) sieve[j] = true;\n    }\n  }\n  res.send('Found ' + primes.length + ' primes under ' + max + '\\n');\n}\n",
    );
    // tinyFaaS binary: fn.sh.
    write(
        d,
        "echo-sh/fn.sh",
        "#!/bin/sh\nINPUT=$(cat)\necho -n \"$INPUT\"\n",
    );
    // FaaSpot: main(args, context), one file.
    write(
        d,
        "hello-world.py",
        "def main(args, context):\n    return {'message': 'hello ' + args.get('name', 'world')}\n",
    );
    // FaaSET: (request, context) returning a dict.
    write(
        d,
        "faaset/handler.py",
        "def hello_world(request, context):\n    return {'message': 'Hello from the cloud ' + str(request['name']) + '!'}\n",
    );
    // A handler file named like a module the runner has loaded already.
    write(
        d,
        "json.py",
        "def encode(request, context):\n    import json\n    return {'text': json.dumps(request)}\n",
    );
    // OpenFaaS node: async (event, context) with a JSON body.
    write(
        d,
        "of-node/handler.js",
        "'use strict'\nmodule.exports = async (event, context) => {\n  return context.status(201).succeed({ got: event.body.n * 2 })\n}\n",
    );
    // OpenFaaS classic python3: handle(req).
    write(
        d,
        "classic/handler.py",
        "def handle(req):\n    return req.upper()\n",
    );

    for (name, from, lang) in [
        ("echo", "echo", None),
        ("headers", "headers", None),
        ("sieve", "sieve", Some("nodejs")),
        ("echo-sh", "echo-sh", Some("binary")),
        ("hello", "hello-world.py", None),
        ("faaset", "faaset", None),
        ("shadow", "json.py", None),
        ("of-node", "of-node", None),
        ("classic", "classic", Some("python3")),
    ] {
        let mut args = vec!["deploy", name, "--from", from];
        if let Some(lang) = lang {
            args.extend(["--lang", lang]);
        }
        gw.faas(&args).assert_ok();
    }
    assert_eq!(call(&gw, "echo", "ping"), "ping");
    let run = gw.faas(&["invoke", "headers", "-H", "X-Team=blue"]);
    run.assert_ok();
    assert_eq!(run.stdout(), "blue");
    assert_eq!(call(&gw, "sieve", ""), "Found 1229 primes under 10000\n");
    assert_eq!(call(&gw, "echo-sh", "abc"), "abc");
    let run = gw.faas(&["invoke", "hello", "-p", "name=user1"]);
    run.assert_ok();
    let answer: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(answer, serde_json::json!({"message": "hello user1"}));
    let run = gw.faas(&["invoke", "faaset", "-p", "name=Steve"]);
    run.assert_ok();
    assert!(
        run.stdout().contains("Hello from the cloud Steve!"),
        "{}",
        run.stdout()
    );
    // Its own `import json` still gets the standard library's.
    let run = gw.faas(&["invoke", "shadow", "-p", "n=1"]);
    run.assert_ok();
    assert_eq!(run.stdout(), r#"{"text": "{\"n\": 1}"}"#);
    let run = gw.faas(&["invoke", "of-node", "-p", "n=21"]);
    run.assert_ok();
    assert_eq!(run.stdout(), r#"{"got":42}"#);
    assert_eq!(call(&gw, "classic", "shout"), "SHOUT");

    // A JSON handler given something else says so, as the caller's mistake.
    let run = gw.faas_stdin(&["invoke", "hello"], b"[1, 2]");
    run.assert_fails_with("must be a JSON object");
}

/// A warm runner measures each call itself: the watchdog's resource
/// headers, as forked processes have them.
#[test]
fn warm_runners_report_each_calls_resource_use() {
    let gw = Gateway::start();
    let d = gw.dir.path();
    write(
        d,
        "busy/handler.py",
        "def handle(event, context):\n    return str(sum(range(2_000_000)))\n",
    );
    write(
        d,
        "busy-node/handler.js",
        "module.exports = async () => { let s = 0; for (let i = 0; i < 3e7; i++) s += i; return String(s) }\n",
    );
    for name in ["busy", "busy-node"] {
        gw.faas(&["deploy", name, "--from", name]).assert_ok();
        let url = format!("{}/function/{name}", gw.url);
        let mut colds = Vec::new();
        for _ in 0..2 {
            let response = ureq::post(&url).send("").unwrap();
            let header = |h: &str| {
                response
                    .headers()
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let user: f64 = header("x-cpu-user-seconds").unwrap().parse().unwrap();
            let system: f64 = header("x-cpu-system-seconds").unwrap().parse().unwrap();
            let rss: u64 = header("x-max-rss-bytes").unwrap().parse().unwrap();
            assert!(user > 0.005, "{name}: a busy call used CPU: {user}");
            assert!(system >= 0.0);
            assert!(rss > 1 << 20, "{name}: {rss}");
            colds.push(header("x-cold-start"));
        }
        assert_eq!(colds, [Some("true".to_owned()), None], "{name}");
    }
}

/// requirements.txt is installed into the function's own folder, from PyPI.
#[test]
fn python_requirements_are_installed_at_build_time() {
    let gw = Gateway::start();
    let d = gw.dir.path();
    write(d, "dep/requirements.txt", "six==1.16.0\n");
    write(
        d,
        "dep/handler.py",
        "import six\n\ndef handle(event, context):\n    return six.__version__\n",
    );
    let run = gw.faas(&["deploy", "dep", "--from", "dep"]);
    run.assert_ok();
    assert_eq!(call(&gw, "dep", ""), "1.16.0");
}

#[test]
fn bad_sources_are_refused_with_the_reason() {
    let gw = Gateway::start();
    let d = gw.dir.path();
    gw.faas(&["new", "x", "--lang", "cobol"]).assert_fails_with(
        "unknown template \"cobol\": use one of bash, dockerfile, node, python, rust",
    );
    std::fs::create_dir_all(d.join("empty")).unwrap();
    gw.faas(&["deploy", "e", "--from", "empty", "--lang", "python"])
        .assert_fails_with("no handler: the python template's code goes in function/");
    write(d, "notes/README.txt", "no code here");
    gw.faas(&["deploy", "n", "--from", "notes"])
        .assert_fails_with("cannot tell the language of notes");

    // The handler check is a build step: its failure is a 422 naming it.
    let run = gw.faas(&["deploy", "n", "--from", "notes", "--lang", "python"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("build step 2 failed (exit status 2): python3 runner.py --check"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("no handler found"),
        "{}",
        run.stderr()
    );

    // A requirement that cannot be installed fails its step, and the
    // function stays as it was (here: absent).
    write(
        d,
        "broken/requirements.txt",
        "this-package-does-not-exist-faas-test==0.0.1\n",
    );
    write(
        d,
        "broken/handler.py",
        "def handle(e, c):\n    return 'x'\n",
    );
    let run = gw.faas(&["deploy", "broken", "--from", "broken"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(
        run.stderr().contains("build step 1 failed"),
        "{}",
        run.stderr()
    );
    gw.faas(&["describe", "broken"])
        .assert_fails_with("not found");
}

/// The raw API: a tar.gz of `deployment.json` + `context/`.
fn context(files: &[(&str, &str)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, text.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn slow_template(seconds: u32) -> String {
    format!(
        "language: slow\ndescription: sleeps\nfprocess: cat\nhandler: function\nsample: x\nbuild:\n  - echo start\n  - sleep {seconds}\n  - echo end\n"
    )
}

fn post_build(gw: &Gateway, body: Vec<u8>, accept: &str) -> (u16, String) {
    let response = ureq::post(&format!("{}/system/builds", gw.url))
        .config()
        .http_status_as_error(false)
        .build()
        .header("Accept", accept)
        .send(&body[..])
        .unwrap();
    let status = response.status().as_u16();
    (status, response.into_body().read_to_string().unwrap())
}

#[test]
fn build_limits_hold() {
    let gw = Gateway::start_with(&[("max_build_context", "2k"), ("build_timeout", "1s")]);
    let big: String = (0..20_000)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    let (status, body) = post_build(
        &gw,
        context(&[
            ("deployment.json", r#"{"service":"big"}"#),
            ("context/Dockerfile", &big),
        ]),
        "*/*",
    );
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("max_build_context"), "{body}");

    let slow = slow_template(30);
    let (status, body) = post_build(
        &gw,
        context(&[
            ("deployment.json", r#"{"service":"slow"}"#),
            ("context/template.yml", &slow),
            ("context/function/x", "x"),
        ]),
        "*/*",
    );
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("build_timeout"), "{body}");
    assert!(body.contains("start"), "the log's last lines: {body}");

    let (status, body) = post_build(&gw, b"not a tarball".to_vec(), "*/*");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a tar.gz"), "{body}");
}

/// Sends every body at once, streamed; each answer's status and log.
fn build_at_once(gw: &Gateway, bodies: Vec<Vec<u8>>) -> Vec<(u16, String)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .into_iter()
            .map(|body| s.spawn(|| post_build(gw, body, "application/x-ndjson")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Two builds of one function never interleave: the second waits.
#[test]
fn one_functions_builds_run_one_at_a_time() {
    let gw = Gateway::start();
    let slow = slow_template(1);
    let bodies: Vec<Vec<u8>> = ["1", "2"]
        .iter()
        .map(|v| {
            context(&[
                ("deployment.json", r#"{"service":"twice"}"#),
                ("context/template.yml", &slow),
                ("context/function/x", v),
            ])
        })
        .collect();
    let logs = build_at_once(&gw, bodies);
    let waited = logs
        .iter()
        .filter(|(_, log)| log.contains("waiting: another build of twice is running"))
        .count();
    assert_eq!(waited, 1, "{logs:?}");
    for (status, log) in &logs {
        assert_eq!(*status, 200);
        let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
        assert!(
            last["result"]["image"]
                .as_str()
                .unwrap()
                .starts_with("faas/twice:"),
            "{log}"
        );
    }
    let run = gw.faas_stdin(&["invoke", "twice"], b"still cat");
    run.assert_ok();
    assert_eq!(run.stdout(), "still cat");
}

/// Builds of different functions run at once, up to `max_builds`.
#[test]
fn at_most_max_builds_run_at_once() {
    let gw = Gateway::start_with(&[("max_builds", "1")]);
    let slow = slow_template(1);
    let bodies: Vec<Vec<u8>> = ["one", "two"]
        .iter()
        .map(|name| {
            let deployment = format!(r#"{{"service":"{name}"}}"#);
            context(&[
                ("deployment.json", &deployment),
                ("context/template.yml", &slow),
                ("context/function/x", name),
            ])
        })
        .collect();
    let logs = build_at_once(&gw, bodies);
    let waited = logs
        .iter()
        .filter(|(_, log)| log.contains("waiting: max_builds builds are running"))
        .count();
    assert_eq!(waited, 1, "{logs:?}");
    assert!(
        logs.iter()
            .all(|(status, log)| *status == 200 && log.contains("\"result\"")),
        "{logs:?}"
    );
}

#[test]
fn builds_need_credentials() {
    let gw = Gateway::start_with(&[("basic_auth_user", "admin"), ("basic_auth_password", "pw")]);
    let (status, _) = post_build(&gw, Vec::new(), "*/*");
    assert_eq!(status, 401);
    let response = ureq::post(&format!("{}/system/builds", gw.url))
        .config()
        .http_status_as_error(false)
        .build()
        .header("Authorization", "Basic YWRtaW46cHc=")
        .send(&b"not a tarball"[..])
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        400,
        "past the credentials check"
    );
}

/// A zip of `files`, base64, as tinyFaaS's `upload.sh` sends it (made with
/// Python's zipfile, as `zip -r` would).
fn zip_base64(files: &[(&str, &str)]) -> String {
    let script = "import base64, io, json, sys, zipfile\n\
        buf = io.BytesIO()\n\
        with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as z:\n\
        \x20   for name, text in json.load(sys.stdin):\n\
        \x20       z.writestr(name, text)\n\
        print(base64.b64encode(buf.getvalue()).decode())\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(files).unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &input).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn post_json(gw: &Gateway, path: &str, body: &serde_json::Value) -> (u16, String) {
    let response = ureq::post(&format!("{}{path}", gw.url))
        .config()
        .http_status_as_error(false)
        .build()
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap();
    let status = response.status().as_u16();
    (status, response.into_body().read_to_string().unwrap())
}

/// tinyFaaS's upload body (name, env, threads, base64 zip) builds and
/// deploys like a build context: `threads` handlers are replicas.
#[test]
fn tinyfaas_upload_bodies_build_and_deploy() {
    let gw = Gateway::start();
    let zip = zip_base64(&[(
        "fn.py",
        "def fn(input, headers):\n    return 'tiny ' + (input or '')\n",
    )]);
    let (status, body) = post_json(
        &gw,
        "/system/builds",
        &serde_json::json!({"name": "tiny", "env": "python3", "threads": 2, "zip": zip}),
    );
    assert_eq!(status, 200, "{body}");
    let result: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(result["deployed"], "created", "{body}");
    assert_eq!(call(&gw, "tiny", "hi"), "tiny hi");
    let run = gw.faas(&["describe", "tiny", "--json"]);
    run.assert_ok();
    let status: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(status["replicas"], 2, "threads are replicas");

    let sh = zip_base64(&[("fn.sh", "#!/bin/sh\necho \"binary $(cat)\"\n")]);
    let (status, body) = post_json(
        &gw,
        "/system/builds",
        &serde_json::json!({"name": "tiny-sh", "env": "binary", "threads": 1, "zip": sh}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(call(&gw, "tiny-sh", "x"), "binary x\n");

    for (bad, want) in [
        (
            serde_json::json!({"name": "t", "env": "cobol", "zip": zip}),
            "unknown env \"cobol\"",
        ),
        (
            serde_json::json!({"name": "t", "env": "python3", "zip": "%%%"}),
            "zip is not base64",
        ),
        (
            serde_json::json!({"name": "t", "env": "python3", "zip": "aGVsbG8="}),
            "not a zip archive",
        ),
        (
            serde_json::json!({"env": "python3", "zip": zip}),
            "missing field `name`",
        ),
    ] {
        let (status, body) = post_json(&gw, "/system/builds", &bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains(want), "{want}: {body}");
    }
}

/// curl, as tinyFaaS's scripts call the gateway: `--data` (so a form's
/// content type), no credentials unless given. Status and body.
fn curl(args: &[&str]) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "120", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap_or(0), body.to_owned())
}

/// A one-file HTTP server on loopback answering every request with `body`
/// (the zip tinyFaaS's /uploadURL fetches).
fn serve_once_more(body: Vec<u8>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut head);
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut stream, reply.as_bytes());
            let _ = std::io::Write::write_all(&mut stream, &body);
        }
    });
    port
}

/// The gateway's "listening" line (it reaches the log a moment after the
/// start is seen).
fn start_line(gw: &Gateway) -> String {
    let listening = || {
        gw.log()
            .lines()
            .find(|l| l.contains("gateway: listening"))
            .map(str::to_owned)
    };
    testkit::wait::eventually_blocking(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_millis(10),
        || listening().is_some(),
    );
    listening().expect("the gateway's start line")
}

/// With `--tinyfaas`, tinyFaaS's scripts work against the gateway as they
/// are: /upload (python3, binary), /uploadURL (from a URL the operator
/// allows), /list, /logs, /delete, /wipe on the gateway's port, and calls
/// as /{name} on a listener of their own (with X-tinyFaaS-Async too).
#[test]
fn tinyfaas_scripts_work_against_the_gateway_unchanged() {
    let gw = Gateway::start_with(&[
        ("tinyfaas", "true"),
        ("tinyfaas_port", "0"),
        ("callback_allow", "127.0.0.1"),
    ]);
    let line = start_line(&gw);
    let line = line.as_str();
    let calls = testkit::proc::field(line, "tinyfaas=").to_owned();
    let coap = testkit::proc::field(line, "coap=").to_owned();
    let url = |path: &str| format!("{}{path}", gw.url);

    // scripts/upload.sh: folder, name, env, threads.
    let zip = zip_base64(&[(
        "fn.py",
        "import sys\ndef fn(input, headers):\n    print('log-marker', file=sys.stderr, flush=True)\n    return 'sieve ' + (input or '')\n",
    )]);
    let body = format!(
        "{{\"name\": \"sieve\", \"env\": \"python3\", \"threads\": 1, \"zip\": \"{zip}\"}}"
    );
    let (status, answer) = curl(&[&url("/upload"), "--data", &body]);
    assert_eq!(status, 200, "{answer}");
    let port = calls.rsplit(':').next().unwrap();
    assert!(
        answer
            .lines()
            .any(|l| l.ends_with(&format!(":{port}/sieve")) && l.starts_with("http://")),
        "{answer}"
    );
    let coap_port = coap.rsplit(':').next().unwrap();
    assert!(
        answer
            .lines()
            .any(|l| l.starts_with("coap://") && l.ends_with(&format!(":{coap_port}/sieve"))),
        "{answer}"
    );
    assert!(answer.lines().any(|l| l.starts_with("grpc://")), "{answer}");

    // Calls, tinyFaaS's way: /{name} on its own listener.
    let (status, out) = curl(&[&format!("http://{calls}/sieve"), "--data", "hi"]);
    assert_eq!((status, out.as_str()), (200, "sieve hi"));
    let (status, _) = curl(&[
        &format!("http://{calls}/sieve"),
        "-H",
        "X-tinyFaaS-Async: true",
        "--data",
        "later",
    ]);
    assert_eq!(status, 202);
    // Only calls there: the API is not.
    let (status, _) = curl(&[&format!("http://{calls}/system/functions")]);
    assert_eq!(status, 404);

    // scripts/uploadURL.sh: url, subfolder, name, env, threads.
    let nested = zip_base64(&[
        ("repo-main/README.md", "a repository"),
        (
            "repo-main/fns/echo/fn.sh",
            "#!/bin/sh\necho \"url $(cat)\"\n",
        ),
    ]);
    let zip_port = serve_once_more(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, nested).unwrap(),
    );
    let body = format!(
        "{{\"name\": \"fromurl\", \"env\": \"binary\",\"threads\": 1,\"url\": \"http://127.0.0.1:{zip_port}/fn.zip\",\"subfolder_path\": \"repo-main/fns/echo\"}}"
    );
    let (status, answer) = curl(&[&url("/uploadURL"), "--data", &body]);
    assert_eq!(status, 200, "{answer}");
    let (_, out) = curl(&[&format!("http://{calls}/fromurl"), "--data", "x"]);
    assert_eq!(out, "url x\n");
    let https = body.replace("http://127.0.0.1", "https://127.0.0.1");
    let (status, answer) = curl(&[&url("/uploadURL"), "--data", &https]);
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("plain http only"), "{answer}");

    // scripts/list.sh, scripts/logs.sh.
    let (status, list) = curl(&[&url("/list")]);
    assert_eq!(status, 200);
    assert_eq!(list, "fromurl\nsieve\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, logs) = curl(&[&url("/logs?name=sieve")]);
        assert_eq!(status, 200, "{logs}");
        if logs
            .lines()
            .any(|l| l.starts_with("sieve ") && l.ends_with(": log-marker"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log-marker in:\n{logs}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // scripts/delete.sh sends the bare name; JSON works too.
    let (status, answer) = curl(&[&url("/delete"), "--data", "sieve"]);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = curl(&[&url("/delete"), "--data", "{\"name\": \"nobody\"}"]);
    assert_eq!(status, 404, "{answer}");
    // scripts/wipe-functions.sh.
    let (status, answer) = curl(&[&url("/wipe"), "--data", ""]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, "deleted fromurl\n");
    assert_eq!(curl(&[&url("/list")]).1, "");
}

/// tinyFaaS's management routes take the API's credentials, and exist
/// only with `--tinyfaas`.
#[test]
fn tinyfaas_routes_are_guarded_and_opt_in() {
    let guarded = Gateway::start_with(&[
        ("tinyfaas", "true"),
        ("tinyfaas_port", "0"),
        ("basic_auth_user", "admin"),
        ("basic_auth_password", "pw-tiny-1"),
    ]);
    for (path, data) in [
        ("/list", None),
        ("/wipe", Some("")),
        ("/delete", Some("x")),
        ("/logs", None),
    ] {
        let mut args = vec![format!("{}{path}", guarded.url)];
        if let Some(d) = data {
            args.extend(["--data".to_owned(), d.to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(curl(&args).0, 401, "{path}");
    }
    let (status, _) = curl(&["-u", "admin:pw-tiny-1", &format!("{}/list", guarded.url)]);
    assert_eq!(status, 200);

    let plain = Gateway::start();
    let (status, answer) = curl(&[&format!("{}/list", plain.url)]);
    assert_eq!(status, 400, "not a route without --tinyfaas: {answer}");
    assert!(
        start_line(&plain).contains("tinyfaas=off"),
        "no tinyFaaS listener"
    );
}
