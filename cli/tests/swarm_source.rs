//! Functions from source on the real Swarm stack of `./build.sh up`: `faas
//! new` + `faas up` of every template (python, node, bash, rust, dockerfile) from a clean
//! folder (the gateway builds each image with its Docker engine, on the
//! base images `./build.sh` made from Debian's packages), and an edit
//! rolled out under continuous load with no failed call.
//!
//! Ignored by a plain `cargo test` (they need the stack); `./build.sh test`
//! runs them on purpose.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::swarm_util::{self, Load, Swarm, failures, rollout_done, unique_prefix};
use crate::util::eventually;

const WAIT: &str = "4m";
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
#[ignore = "needs Docker Swarm: ./build.sh up"]
fn new_then_up_builds_images_and_rolls_out_an_edit_under_load() {
    let swarm = Swarm::connect();
    swarm.login();
    let mut cleanup = swarm.cleanup();
    let prefix = unique_prefix();
    let stack = swarm.write("stack.yml", "");
    std::fs::remove_file(&stack).unwrap();
    let stack = stack.to_str().unwrap().to_owned();
    let names: Vec<(String, &str)> = ["python", "node", "bash", "rust", "dockerfile"]
        .into_iter()
        .map(|lang| (format!("{prefix}-{lang}"), lang))
        .collect();
    for (name, lang) in &names {
        swarm
            .faas(&["new", name, "--lang", lang, "-f", &stack])
            .assert_ok();
        cleanup.function(name);
    }

    let started = Instant::now();
    let up = swarm.faas(&["up", "-f", &stack, "--timeout", WAIT]);
    up.assert_ok();
    eprintln!(
        "faas up of five templates, built and deployed: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    for (name, lang) in &names {
        assert!(
            up.stdout().contains(&format!("Deployed {name}")),
            "{}",
            up.stdout()
        );
        let answer = swarm.http.call(name, &[], "Swarm").unwrap();
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "Hello, Swarm!\n"),
            "{lang}"
        );
        let image = swarm_util::try_docker(&[
            "service",
            "inspect",
            name,
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        ])
        .unwrap();
        assert!(
            image.trim().starts_with(&format!("faas/{name}:")),
            "{lang}: deployed from its digest tag: {image}"
        );
    }

    // Unchanged source: the image is found, nothing is built.
    let (python, _) = &names[0];
    let again = swarm.faas(&["up", "-f", &stack, "--filter", python, "--timeout", WAIT]);
    again.assert_ok();
    assert!(
        again.stdout().contains("unchanged source"),
        "{}",
        again.stdout()
    );

    // An edit rolled out while callers keep calling: every call answers
    // with the old greeting or the new one, none fails.
    let handler = std::path::Path::new(&stack)
        .parent()
        .unwrap()
        .join(python)
        .join("handler.py");
    let text = std::fs::read_to_string(&handler).unwrap();
    std::fs::write(&handler, text.replace("Hello, ", "Goodbye, ")).unwrap();
    let check: swarm_util::Check = Arc::new(|a| {
        if a.body.starts_with("Hello, caller") || a.body.starts_with("Goodbye, caller") {
            Ok(())
        } else {
            Err(format!("unexpected answer {:?}", a.body))
        }
    });
    let load = Load::start(&swarm.http, python, 3, Duration::from_millis(5), check);
    let since = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let update = swarm.faas(&["up", "-f", &stack, "--filter", python, "--timeout", WAIT]);
    update.assert_ok();
    assert!(
        update.stdout().contains(&format!("Updated {python}")),
        "{}",
        update.stdout()
    );
    let served = eventually(ROLLOUT_TIMEOUT, || {
        swarm
            .http
            .call(python, &[], "x")
            .is_ok_and(|a| a.body == "Goodbye, x!\n")
    });
    assert!(served, "the edit is served");
    assert!(
        eventually(ROLLOUT_TIMEOUT, || rollout_done(python)),
        "Swarm finished the rollout"
    );
    let outcomes = load.stop();
    let failed = failures(&outcomes, since);
    assert!(
        failed.is_empty(),
        "calls failed during the rollout ({} calls):\n{failed}",
        outcomes.len()
    );
    eprintln!(
        "{} calls during the rollout, none failed ({:.1}s)",
        outcomes.len(),
        since.elapsed().as_secs_f64()
    );

    // The functions go, then their images (each build leaves one).
    drop(cleanup);
    for (name, _) in &names {
        let gone = eventually(Duration::from_secs(60), || {
            let ids = swarm_util::try_docker(&["image", "ls", "-q", &format!("faas/{name}")])
                .unwrap_or_default();
            ids.split_whitespace()
                .all(|id| swarm_util::try_docker(&["rmi", "-f", id]).is_ok())
        });
        assert!(gone, "the images of {name} could not be removed");
    }
}

/// `faas build` with the Docker engine here makes the image the gateway
/// would: the same digest tag, so `faas up` then finds it and builds
/// nothing.
#[test]
#[ignore = "needs Docker Swarm: ./build.sh up"]
fn a_local_build_is_the_image_the_gateway_deploys() {
    let swarm = Swarm::connect();
    swarm.login();
    let watchdog = std::env::var("FAAS_STATIC_FWATCHDOG").expect(
        "FAAS_STATIC_FWATCHDOG names the static fwatchdog to put into images (./build.sh test sets it)",
    );
    let mut cleanup = swarm.cleanup();
    let name = format!("{}-local", unique_prefix());
    let stack = swarm.write("local.yml", "");
    std::fs::remove_file(&stack).unwrap();
    let stack = stack.to_str().unwrap().to_owned();
    swarm
        .faas(&["new", &name, "--lang", "python", "-f", &stack])
        .assert_ok();
    cleanup.function(&name);
    let build = swarm
        .cli
        .command()
        .env("FAAS_FWATCHDOG", &watchdog)
        .args(&["build", "-f", &stack])
        .run();
    build.assert_ok();
    assert!(
        build
            .stdout()
            .contains(&format!("Built {name}: faas/{name}:")),
        "{}",
        build.stdout()
    );
    let up = swarm.faas(&["up", "-f", &stack, "--timeout", WAIT]);
    up.assert_ok();
    assert!(
        up.stdout().contains("unchanged source"),
        "the gateway found the local build: {}",
        up.stdout()
    );
    let answer = swarm.http.call(&name, &[], "local").unwrap();
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "Hello, local!\n")
    );
    drop(cleanup);
    let gone = eventually(Duration::from_secs(60), || {
        let ids = swarm_util::try_docker(&["image", "ls", "-q", &format!("faas/{name}")])
            .unwrap_or_default();
        ids.split_whitespace()
            .all(|id| swarm_util::try_docker(&["rmi", "-f", id]).is_ok())
    });
    assert!(gone, "the images of {name} could not be removed");
}

/// A process killed (and reaped) when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's `docker-registry` on a free loopback port (the engine pushes
/// to loopback registries over plain HTTP), with its storage in `dir`.
fn start_registry(dir: &std::path::Path) -> (Running, String) {
    let program = "/usr/bin/docker-registry";
    assert!(
        std::path::Path::new(program).is_file(),
        "{program} is missing: apt-get install docker-registry (./build.sh test installs it)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("storage").display()
        ),
    )
    .unwrap();
    let child = std::process::Command::new(program)
        .arg("serve")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let registry = format!("127.0.0.1:{port}");
    let up = eventually(Duration::from_secs(20), || {
        ureq::get(&format!("http://{registry}/v2/"))
            .call()
            .is_ok_and(|r| r.status() == 200)
    });
    assert!(up, "the registry did not answer on {registry}");
    (Running(child), registry)
}

/// With `--registry`, an image built from source is pushed and the
/// function deployed by digest, pullable by every node. A second gateway
/// (on the host, against the same engine, with the registry set) builds;
/// the stack's gateway, which finds every function on the network, serves
/// the calls.
#[test]
#[ignore = "needs Docker Swarm: ./build.sh up"]
fn with_a_registry_images_are_pushed_and_deployed_by_digest() {
    let swarm = Swarm::connect();
    let watchdog = std::env::var("FAAS_STATIC_FWATCHDOG").expect(
        "FAAS_STATIC_FWATCHDOG names the static fwatchdog to put into images (./build.sh test sets it)",
    );
    let scratch = tempfile::tempdir().unwrap();
    let (_registry_process, registry) = start_registry(scratch.path());

    let mut cmd = std::process::Command::new(crate::util::gateway_bin());
    cmd.args([
        "--provider",
        "swarm",
        "--port",
        "0",
        "--bind-address",
        "127.0.0.1",
        "--coap-port",
        "0",
        "--grpc-port",
        "0",
    ])
    .env_clear()
    .env("PATH", std::env::var("PATH").unwrap_or_default())
    .env("RUST_LOG", "info")
    .env("registry", &registry)
    .env("fwatchdog", &watchdog)
    .env("auth", "none")
    // The stack's gateway scales; this one only builds and deploys.
    .env("autoscale", "false")
    .env("state_dir", scratch.path().join("state"))
    .env("queue_path", scratch.path().join("queue.redb"));
    let log = testkit::proc::Log::default();
    let (gateway, line) =
        testkit::proc::start_until(cmd, "listening", Duration::from_secs(30), &log);
    let _gateway = Running(gateway);
    let port = testkit::proc::field(&line, "addr=")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let builder = format!("http://127.0.0.1:{port}");

    let name = format!("{}-reg", unique_prefix());
    let stack = scratch.path().join("stack.yml");
    let stack = stack.to_str().unwrap();
    let faas = |args: &[&str]| {
        crate::util::Faas::new(scratch.path())
            .env("FAAS_GATEWAY", &builder)
            .args(args)
            .run()
    };
    faas(&["new", &name, "--lang", "python", "-f", stack]).assert_ok();
    let mut cleanup = swarm.cleanup();
    cleanup.function(&name);
    let up = faas(&["up", "-f", stack, "--timeout", WAIT]);
    up.assert_ok();
    assert!(
        up.stderr()
            .contains(&format!("pushing {registry}/faas/{name}:")),
        "{}",
        up.stderr()
    );

    let image = swarm_util::try_docker(&[
        "service",
        "inspect",
        &name,
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
    ])
    .unwrap();
    assert!(
        image
            .trim()
            .starts_with(&format!("{registry}/faas/{name}@sha256:")),
        "deployed by digest from the registry: {image}"
    );
    let tags = ureq::get(&format!("http://{registry}/v2/faas/{name}/tags/list"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let tags: serde_json::Value = serde_json::from_str(&tags).unwrap();
    assert_eq!(tags["tags"].as_array().map(Vec::len), Some(1), "{tags}");

    let served = eventually(Duration::from_secs(30), || {
        swarm
            .http
            .call(&name, &[], "registry")
            .is_ok_and(|a| a.status == 200 && a.body == "Hello, registry!\n")
    });
    assert!(
        served,
        "the stack's gateway serves the function built elsewhere"
    );

    // Not the stack gateway's to remove: it goes by docker service rm.
    drop(cleanup);
    let gone = eventually(Duration::from_secs(60), || {
        let ids = swarm_util::try_docker(&[
            "image",
            "ls",
            "-q",
            "--filter",
            &format!("reference=*/faas/{name}"),
            "--filter",
            &format!("reference=faas/{name}"),
        ])
        .unwrap_or_default();
        ids.split_whitespace()
            .all(|id| swarm_util::try_docker(&["rmi", "-f", id]).is_ok())
    });
    assert!(gone, "the images of {name} could not be removed");
}
