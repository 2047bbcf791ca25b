//! Functions from source on the real Swarm stack of `./build.sh up`: `faas
//! new` + `faas up` of the python, node and bash templates from a clean
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
    let names: Vec<(String, &str)> = ["python", "node", "bash"]
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
        "faas up of three templates, built and deployed: {:.1}s",
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
