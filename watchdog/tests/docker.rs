//! The `catservice` image, built `FROM scratch` around the static
//! fwatchdog, runs on Docker, echoes, and turns healthy.
//!
//! Needs Docker and the static binary from `./build.sh binaries`, so it is
//! ignored by a plain `cargo test` and run on purpose (`./build.sh test`
//! does); once running, a missing prerequisite is a failure saying what to
//! do.

use crate::util;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::StatusCode;

/// The prerequisite, or a failure naming it.
fn require<T>(ready: Result<T, String>) -> T {
    ready.unwrap_or_else(|why| panic!("the Docker test cannot run: {why}"))
}

fn docker(args: &[&str]) -> Result<String, String> {
    testkit::swarm::try_docker(args).map(|out| out.trim().to_owned())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn static_fwatchdog() -> Result<PathBuf, String> {
    let path = std::env::var_os("FAAS_STATIC_FWATCHDOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/x86_64-unknown-linux-musl/release/fwatchdog"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "static fwatchdog not found at {} (run ./build.sh binaries)",
            path.display()
        ))
    }
}

/// Removes the container and image even when an assertion fails.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.container]);
        let _ = docker(&["rmi", "-f", &self.image]);
    }
}

#[tokio::test]
#[ignore = "needs Docker and ./build.sh binaries"]
async fn catservice_image_echoes_and_turns_healthy() {
    require(docker(&["version", "--format", "{{.Server.Version}}"]));
    let fwatchdog = require(static_fwatchdog());
    let busybox = Path::new("/bin/busybox");
    require(if busybox.is_file() {
        Ok(())
    } else {
        Err("/bin/busybox missing (apt-get install busybox-static)".to_owned())
    });

    // The build context, as build.sh stages it.
    let context = tempfile::tempdir().unwrap();
    let source = repo_root().join("sample-functions/catservice");
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), context.path().join(entry.file_name())).unwrap();
    }
    std::fs::copy(&fwatchdog, context.path().join("fwatchdog")).unwrap();
    std::fs::copy(busybox, context.path().join("busybox")).unwrap();

    let tag = format!("faas-test/catservice:{}", std::process::id());
    let name = format!("faas-test-catservice-{}", std::process::id());
    let _cleanup = Cleanup {
        container: name.clone(),
        image: tag.clone(),
    };
    docker(&["build", "-q", "-t", &tag, context.path().to_str().unwrap()]).unwrap();
    let size: u64 = docker(&["image", "inspect", "-f", "{{.Size}}", &tag])
        .unwrap()
        .parse()
        .unwrap();
    assert!(size < 5_000_000, "catservice image is {size} bytes");

    docker(&["run", "-d", "--name", &name, "-p", "127.0.0.1::8080", &tag]).unwrap();
    let published = docker(&["port", &name, "8080/tcp"]).unwrap();
    let addr: std::net::SocketAddr = published.lines().next().unwrap().parse().unwrap();

    let body: Vec<u8> = (0..=255u8).collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    let reply = loop {
        let request = http::Request::post("/")
            .body(http_body_util::Full::new(bytes::Bytes::from(body.clone())))
            .unwrap();
        match util::send(addr, request).await {
            Ok(reply) => break reply,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!(
                "catservice never answered: {e}\n{}",
                docker(&["logs", &name]).unwrap_or_default()
            ),
        }
    };
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, body);
    let container_id = docker(&["inspect", "-f", "{{.Config.Hostname}}", &name]).unwrap();
    assert_eq!(reply.header("x-served-by"), Some(container_id.as_str()));

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = docker(&["inspect", "-f", "{{.State.Health.Status}}", &name]).unwrap();
        if health == "healthy" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health is still {health:?}\n{}",
            docker(&["inspect", "-f", "{{json .State.Health}}", &name]).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
