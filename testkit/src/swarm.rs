//! Docker and the Swarm stack `./build.sh up` deploys. Tests that need
//! them are `#[ignore = "needs Docker Swarm: ./build.sh up"]` and run on
//! purpose (`./build.sh test` does); once running, a missing piece is a
//! failure that says what to do, never a silent pass.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The overlay network functions join.
pub const NETWORK: &str = "functions";

/// The stack's gateway: `FAAS_GATEWAY_URL`, default `http://127.0.0.1:8080`.
pub fn gateway_url() -> String {
    std::env::var("FAAS_GATEWAY_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned())
        .trim()
        .trim_end_matches('/')
        .to_owned()
}

/// One Swarm test at a time per test binary: they time deploys and count
/// lost calls on a shared two-CPU machine.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Docker in Swarm mode, the functions network, `images`, and a healthy
/// gateway at `gateway`; else what is missing and what to run.
pub fn check(gateway: &str, images: &[&str]) -> Result<(), String> {
    let state = try_docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .map_err(|e| format!("no Docker engine answers ({e})"))?;
    if state.trim() != "active" {
        return Err(format!(
            "Docker is not in Swarm mode (state {:?}): run ./build.sh up",
            state.trim()
        ));
    }
    if try_docker(&["network", "inspect", NETWORK]).is_err() {
        return Err(format!(
            "the overlay network {NETWORK:?} does not exist: run ./build.sh up"
        ));
    }
    for image in images {
        if try_docker(&["image", "inspect", "--format", "{{.Id}}", image]).is_err() {
            return Err(format!(
                "the image {image} does not exist: run ./build.sh up"
            ));
        }
    }
    healthz(gateway).map_err(|e| {
        format!(
            "no healthy gateway at {gateway} ({e}): deploy the stack with ./build.sh up (or set FAAS_GATEWAY_URL)"
        )
    })
}

/// `GET /healthz` on a plain `http://host:port` URL, answered 200 within 5 s.
pub fn healthz(gateway: &str) -> Result<(), String> {
    let authority = gateway
        .strip_prefix("http://")
        .ok_or_else(|| format!("{gateway:?} is not an http:// URL"))?
        .split('/')
        .next()
        .unwrap_or_default();
    let timeout = Duration::from_secs(5);
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{authority} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    let status = answer.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
        Err(format!("unhealthy: {status}: {body}"))
    }
}

/// The stack's basic-auth user and password, as `./build.sh up` left them
/// in `.secrets/`.
pub fn credentials() -> Result<(String, String), String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.secrets");
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map(|t| t.trim().to_owned())
            .map_err(|e| {
                format!(
                    "cannot read {}: {e}: run ./build.sh up",
                    dir.join(name).display()
                )
            })
    };
    let user = read("basic-auth-user")?;
    let password = read("basic-auth-password")?;
    if user.is_empty() || password.is_empty() {
        return Err(format!("{} holds empty credentials", dir.display()));
    }
    Ok((user, password))
}

/// `Basic …` for `user` and `password`.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// The environment, or a panic naming what is missing.
pub fn require<T>(ready: Result<T, String>) -> T {
    ready.unwrap_or_else(|why| panic!("the Swarm tests cannot run: {why}"))
}

/// A name no other test (or concurrent run, or leftover of a killed one)
/// uses: `t-<tag>-<pid>-<n>-<nanos>`.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("t-{tag}-{}-{n}-{:x}", std::process::id(), nanos % 0xfff)
}

/// Runs `docker args…`; panics with its stderr if it fails.
pub fn docker(args: &[&str]) -> String {
    try_docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `docker args…`: its stdout, or what went wrong.
pub fn try_docker(args: &[&str]) -> Result<String, String> {
    let output = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "docker {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// `docker service ps` of a service, for failure messages.
pub fn service_ps(service: &str) -> String {
    try_docker(&["service", "ps", "--no-trunc", service]).unwrap_or_else(|e| e)
}
