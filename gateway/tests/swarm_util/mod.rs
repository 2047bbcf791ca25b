//! Helpers for the end-to-end tests on a real Docker Swarm: the `docker`
//! CLI, test services that remove themselves, HTTP to the stack's gateway,
//! a load generator, and `/metrics` parsing.
//!
//! The stack comes from `./build.sh up`; the gateway is reached at
//! `FAAS_GATEWAY_URL` (default `http://127.0.0.1:8080`).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use testkit::swarm;
pub use testkit::swarm::{NETWORK, docker, service_ps, try_docker, unique_name};

use faas_common::message::error_chain;

/// The image every test service runs: the seed's echo function.
pub const CATSERVICE: &str = "faas/catservice:latest";
/// Longest a test waits for a fresh service's tasks to run and be routed.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The stack under test.
pub struct Swarm {
    pub gateway: String,
    pub client: Http,
    /// Held for the whole test: the tests share a two-CPU machine and
    /// measure latencies and losses, so they run one at a time.
    _serial: MutexGuard<'static, ()>,
}

impl Swarm {
    /// The stack, once Docker, Swarm, the network, the image and the
    /// gateway are all there; else a panic saying what is missing.
    pub fn connect() -> Swarm {
        let serial = swarm::serial();
        let gateway = swarm::gateway_url();
        swarm::require(swarm::check(&gateway, &[CATSERVICE]));
        Swarm {
            client: Http::new(&gateway),
            gateway,
            _serial: serial,
        }
    }

    /// Creates a test service on the functions network, removed when the
    /// returned guard is dropped. `extra` goes before the image.
    pub fn create_service(&self, tag: &str, extra: &[&str]) -> TestService {
        self.create_service_of(tag, CATSERVICE, extra)
    }

    /// [`Swarm::create_service`] with another image.
    pub fn create_service_of(&self, tag: &str, image: &str, extra: &[&str]) -> TestService {
        let name = unique_name(tag);
        let mut args = vec![
            "service",
            "create",
            "--detach",
            "--quiet",
            "--network",
            NETWORK,
            "--name",
            &name,
            "--label",
            "faas.test=swarm",
        ];
        args.extend_from_slice(extra);
        args.push(image);
        docker(&args);
        TestService { name }
    }

    /// Waits until the gateway reports `replicas` ready replicas of
    /// `function` (its `gateway_service_count`), without calling it.
    pub async fn wait_replicas(&self, function: &str, replicas: u64) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let metrics = self.client.metrics().await;
            let seen = metrics.value("gateway_service_count", &[("function_name", function)]);
            if seen == Some(replicas as f64) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the gateway still sees {seen:?} ready replicas of {function:?}, not {replicas}, after {START_TIMEOUT:?}\n{}",
                    service_ps(function)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A service created by a test: `docker service rm` when dropped.
pub struct TestService {
    pub name: String,
}

impl TestService {
    /// Removes the service now.
    pub fn remove(&mut self) {
        if !self.name.is_empty() {
            let _ = try_docker(&["service", "rm", &self.name]);
            self.name.clear();
        }
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Builds `tag` from a Dockerfile given as text (no build context: the
/// Dockerfile may only use `FROM` local images and `RUN`).
pub fn build_image(tag: &str, dockerfile: &str) {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args(["build", "--quiet", "--tag", tag, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run docker build: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(dockerfile.as_bytes())
        .expect("write the Dockerfile to docker build");
    let output = child.wait_with_output().expect("docker build");
    assert!(
        output.status.success(),
        "docker build --tag {tag} failed ({}): {}\n{dockerfile}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Everything every container of `service` (running or exited, on this
/// node) wrote to stdout and stderr.
pub fn service_container_logs(service: &str) -> String {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let containers = docker(&["ps", "--all", "--quiet", "--filter", &filter]);
    let mut all = String::new();
    for container in containers.split_whitespace() {
        let output = Command::new("docker")
            .args(["logs", container])
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker logs: {e}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Swarm prunes a service's old task containers: one listed a moment
        // ago may be gone (its logs with it), which is not a test failure.
        if !output.status.success() && stderr.contains("No such container") {
            continue;
        }
        assert!(
            output.status.success(),
            "docker logs {container} failed ({}): {}",
            output.status,
            stderr.trim()
        );
        all.push_str(&String::from_utf8_lossy(&output.stdout));
        all.push_str(&stderr);
    }
    all
}

/// The container of a service's one running task, once it has one.
pub fn running_container(service: &str) -> Option<String> {
    let tasks = running_tasks(service);
    let [task] = tasks.as_slice() else {
        return None;
    };
    let container = task_container(task);
    let (_, state) = task_status(task);
    (state == "running" && !container.is_empty()).then_some(container)
}

/// `Basic …` for the gateway's `/system` routes, from the `.secrets/`
/// that `./build.sh up` writes; `None` when it wrote none.
pub fn credentials() -> Option<String> {
    let (user, password) = swarm::credentials().ok()?;
    Some(swarm::basic_auth(&user, &password))
}

/// The ids of a service's tasks that are meant to run.
pub fn running_tasks(service: &str) -> Vec<String> {
    docker(&[
        "service",
        "ps",
        "--quiet",
        "--filter",
        "desired-state=running",
        service,
    ])
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

/// A task's container id (tasks on this node).
pub fn task_container(task: &str) -> String {
    docker(&[
        "inspect",
        "--type",
        "task",
        "--format",
        "{{.Status.ContainerStatus.ContainerID}}",
        task,
    ])
    .trim()
    .to_owned()
}

/// When a task last changed state (its status timestamp), and that state.
pub fn task_status(task: &str) -> (SystemTime, String) {
    let out = docker(&[
        "inspect",
        "--type",
        "task",
        "--format",
        "{{.Status.Timestamp.UnixNano}} {{.Status.State}}",
        task,
    ]);
    let mut parts = out.split_whitespace();
    let nanos: u64 = parts
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad task status {out:?}"));
    let state = parts.next().unwrap_or_default().to_owned();
    (UNIX_EPOCH + Duration::from_nanos(nanos), state)
}

/// One answer from the gateway.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn served_by(&self) -> Option<String> {
        self.headers
            .get("x-served-by")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// HTTP to the gateway over pooled keep-alive connections.
#[derive(Clone)]
pub struct Http {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Longest any single call may take in these tests.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Http {
    pub fn new(base: &str) -> Http {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Http {
            base: base.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Answer, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body.into()))
            .map_err(|e| e.to_string())?;
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| error_chain(&e))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| error_chain(&e))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| format!("no answer within {CALL_TIMEOUT:?}"))?
    }

    /// Sends a request and returns as soon as the response headers arrive,
    /// with the body still streaming (for `follow` logs).
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(CALL_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| format!("no answer within {CALL_TIMEOUT:?}"))?
            .map_err(|e| error_chain(&e))
    }

    pub async fn get(&self, path: &str) -> Result<Answer, String> {
        self.call(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> Result<Answer, String> {
        self.call(Method::POST, path, &[], body).await
    }

    /// `POST /function/{name}`, panicking on a transport error.
    pub async fn invoke(&self, function: &str, body: impl Into<Bytes>) -> Answer {
        let path = format!("/function/{function}");
        self.post(&path, body)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    pub async fn metrics(&self) -> Metrics {
        let answer = self
            .get("/metrics")
            .await
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
        assert_eq!(answer.status, StatusCode::OK, "GET /metrics");
        Metrics(answer.text())
    }
}

/// The gateway's `/metrics` text.
pub struct Metrics(pub String);

impl Metrics {
    /// The sample of `name` whose labels include all of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (label_text, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let end = r.find('}')?;
                    (&r[..end], r[end + 1..].trim())
                }
                None if rest.starts_with(' ') => ("", rest.trim()),
                None => return None,
            };
            let found = parse_labels(label_text);
            labels
                .iter()
                .all(|(k, v)| found.get(*k).map(String::as_str) == Some(*v))
                .then(|| value.parse().ok())
                .flatten()
        })
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim_start_matches(',').trim().to_owned();
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, next)) = chars.next() {
                        value.push(match next {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = Some(eq + 2 + i + 1);
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(key, value);
        match end {
            Some(end) => rest = &rest[end..],
            None => break,
        }
    }
    labels
}

/// The outcome of one call made under load.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub at: Instant,
    pub result: Result<(StatusCode, Option<String>), String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        matches!(self.result, Ok((StatusCode::OK, _)))
    }
}

/// `callers` concurrent loops calling `function` until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
}

/// Judges a 200 answer to the body sent: `Err` says what is wrong with it.
pub type BodyCheck = Arc<dyn Fn(&str, &Answer) -> Result<(), String> + Send + Sync>;

impl Load {
    /// Callers of an echo function: a 200 must echo the body sent.
    pub fn start(client: &Http, function: &str, callers: usize) -> Load {
        Load::start_checked(
            client,
            function,
            callers,
            Arc::new(|sent: &str, a: &Answer| {
                if a.body == sent.as_bytes() {
                    Ok(())
                } else {
                    Err(format!("200 with a wrong body {:?}", a.text()))
                }
            }),
        )
    }

    /// Callers whose 200 answers `check` judges (for functions that do not
    /// echo).
    pub fn start_checked(client: &Http, function: &str, callers: usize, check: BodyCheck) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..callers)
            .map(|caller| {
                let client = client.clone();
                let stop = stop.clone();
                let check = check.clone();
                let path = format!("/function/{function}");
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let body = format!("caller {caller} call {n}");
                        n += 1;
                        let result = match client.post(&path, body.clone()).await {
                            Ok(a) if a.status == StatusCode::OK => match check(&body, &a) {
                                Ok(()) => Ok((a.status, a.served_by())),
                                Err(e) => Err(e),
                            },
                            Ok(a) => Ok((a.status, a.served_by())),
                            Err(e) => Err(e),
                        };
                        outcomes.push(Outcome {
                            at: Instant::now(),
                            result,
                        });
                    }
                    outcomes
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stops the callers and returns every outcome, in time order.
    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("load task"));
        }
        all.sort_by_key(|o| o.at);
        all
    }
}

/// A summary of failed outcomes for assertion messages.
pub fn failures(outcomes: &[Outcome], since: Instant) -> String {
    outcomes
        .iter()
        .filter(|o| !o.ok())
        .map(|o| {
            let t = o.at.saturating_duration_since(since).as_secs_f64();
            match &o.result {
                Ok((status, by)) => format!("  {t:.2}s: {status} from {by:?}"),
                Err(e) => format!("  {t:.2}s: {e}"),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
