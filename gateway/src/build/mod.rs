//! Functions from source: `POST /system/builds` takes a build context
//! (`context.rs`), has the provider build it (the process provider runs
//! the template's host steps; Swarm builds an image), tags the result
//! `faas/<name>:<digest>` (same source, same tag, no rebuild) and deploys
//! or updates the function with it.
//!
//! One function's builds run one at a time (a second waits, and says so);
//! at most `max_builds` run at once. The log streams back as ndjson when
//! the caller asks for `application/x-ndjson`; otherwise the answer waits
//! for the end: 200 with the result, or the failure's status (a failed
//! step: 422 with the log's last lines).

pub mod context;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use faas_common::api::Deployment;
use faas_common::message::one_line;
use faas_common::templates::Template;
use futures_util::StreamExt;
use http::StatusCode;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, mpsc};

use crate::app::AppState;
use crate::reply::text;
use context::ContextError;

/// Last log lines kept for a failure's answer.
const TAIL_LINES: usize = 20;
/// Longest log line passed on (the rest is cut, and the line says so).
const MAX_LINE: usize = 4096;
const NDJSON: &str = "application/x-ndjson";

/// What a provider builds.
#[derive(Debug)]
pub struct BuildJob {
    pub function: String,
    /// Hex SHA-256 of the context.
    pub digest: String,
    /// The unpacked source; the provider may move it.
    pub context: PathBuf,
    pub template: Option<Template>,
    /// `--build-arg`s: the Dockerfile's ARGs, the host steps' environment.
    pub build_args: BTreeMap<String, String>,
    pub timeout: Duration,
}

impl BuildJob {
    /// The image (or, on the process provider, the build) the function runs.
    pub fn image(&self) -> String {
        image_tag(&self.function, &self.digest)
    }
}

pub use faas_common::templates::image_tag;

/// A finished build.
#[derive(Debug)]
pub struct Built {
    pub image: String,
    /// Found from an earlier build of the same source: nothing ran.
    pub cached: bool,
}

/// Why a build did not produce something to deploy.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("build step {step} failed ({why}): {command}")]
    StepFailed {
        step: usize,
        command: String,
        why: String,
    },
    #[error("the build did not finish within build_timeout ({0:?}) and was stopped")]
    TimedOut(Duration),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Engine(String),
    /// The registry refused or could not be reached: a 502.
    #[error("{0}")]
    Registry(String),
}

impl BuildError {
    pub fn status(&self) -> StatusCode {
        match self {
            BuildError::StepFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            BuildError::TimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
            BuildError::Invalid(_) => StatusCode::BAD_REQUEST,
            BuildError::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
            BuildError::Registry(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Where a build's output goes: to the caller (when it streams) and into
/// the tail kept for a failure's answer.
pub struct BuildLog {
    events: mpsc::Sender<serde_json::Value>,
    tail: Mutex<VecDeque<String>>,
}

impl BuildLog {
    /// One line of output.
    pub async fn line(&self, line: &str) {
        let line = cut(line.trim_end());
        {
            let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.clone());
        }
        // A caller that went away does not stop the build.
        let _ = self.events.send(json!({ "stream": line })).await;
    }

    fn tail(&self) -> Vec<String> {
        self.tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

fn cut(line: &str) -> String {
    if line.len() <= MAX_LINE {
        return line.to_owned();
    }
    let mut end = MAX_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (line cut at {MAX_LINE} bytes)", &line[..end])
}

/// The builds under way: one function's run one at a time, `max_builds`
/// at once.
pub struct Builds {
    slots: Semaphore,
    per_function: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Where request bodies are received and unpacked.
    staging: PathBuf,
}

impl Builds {
    pub fn new(max_builds: u32, state_dir: &Path) -> Builds {
        Builds {
            slots: Semaphore::new(max_builds as usize),
            per_function: Mutex::new(HashMap::new()),
            staging: state_dir.join("builds").join("staging"),
        }
    }

    /// Drops a function's lock once no build holds or waits for it, so
    /// the map does not grow with every name ever built.
    fn forget_idle(&self, function: &str) {
        let mut locks = self.per_function.lock().unwrap_or_else(|e| e.into_inner());
        if locks
            .get(function)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(function);
        }
    }

    fn lock_for(&self, function: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.per_function
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(function.to_owned())
            .or_default()
            .clone()
    }
}

#[derive(Debug, Deserialize)]
pub struct BuildQuery {
    /// `false`: build only, deploy nothing.
    #[serde(default = "yes")]
    deploy: bool,
}

impl BuildQuery {
    /// Build, then deploy (the default).
    pub fn deploying() -> BuildQuery {
        BuildQuery { deploy: true }
    }
}

fn yes() -> bool {
    true
}

/// `POST /system/builds`.
pub async fn build(
    State(state): State<Arc<AppState>>,
    Query(query): Query<BuildQuery>,
    request: Request,
) -> Response {
    let streamed = request
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(NDJSON));
    // tinyFaaS's upload body is JSON; ours is a tar.gz.
    let tinyfaas = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let work = match Staged::receive(&state, request).await {
        Ok(work) => work,
        Err(answer) => return answer,
    };
    let max_unpacked = state.config.max_build_context.saturating_mul(4);
    let archive = work.archive.clone();
    let dir = work.dir.clone();
    let unpacked = match tokio::task::spawn_blocking(move || match tinyfaas {
        true => context::from_tinyfaas(&archive, &dir, max_unpacked),
        false => context::unpack(&archive, &dir, max_unpacked),
    })
    .await
    {
        Ok(Ok(unpacked)) => unpacked,
        Ok(Err(e @ ContextError::TooLarge(_))) => {
            return text(StatusCode::PAYLOAD_TOO_LARGE, e.to_string());
        }
        Ok(Err(e @ ContextError::Invalid(_))) => {
            return text(StatusCode::BAD_REQUEST, one_line(&e.to_string()));
        }
        Ok(Err(e)) => {
            return text(StatusCode::INTERNAL_SERVER_ERROR, one_line(&e.to_string()));
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if let Err(answer) =
        crate::system::check_deployment(&unpacked.deployment, state.config.max_replicas)
    {
        return answer;
    }
    let mut deployment = unpacked.deployment;
    if let Some(template) = &unpacked.template {
        if deployment.env_process.is_none() {
            deployment.env_process = template.fprocess.clone();
        }
        for (key, value) in &template.environment {
            deployment
                .env_vars
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
    }
    let job = BuildJob {
        function: deployment.service.clone(),
        digest: unpacked.digest,
        context: unpacked.context,
        template: unpacked.template,
        build_args: unpacked.build_args,
        timeout: state.config.build_timeout,
    };
    let (events, received) = mpsc::channel(64);
    let log = BuildLog {
        events,
        tail: Mutex::new(VecDeque::new()),
    };
    let task = tokio::spawn(run(state, job, deployment, query.deploy, log, work));
    if streamed {
        stream_answer(received, task)
    } else {
        held_answer(received, task).await
    }
}

/// The build's outcome: the final ndjson event, or the status and message
/// of a failure with the log's last lines.
type Outcome = Result<serde_json::Value, (StatusCode, String, Vec<String>)>;

/// Takes the function's turn and a build slot, builds and deploys, then
/// lets go of the function's lock entry if nobody else waits on it.
async fn run(
    state: Arc<AppState>,
    job: BuildJob,
    deployment: Deployment,
    deploy: bool,
    log: BuildLog,
    work: Staged,
) -> Outcome {
    let function = job.function.clone();
    let lock = state.builds.lock_for(&function);
    let outcome = {
        let _one = match lock.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                log.line(&format!("waiting: another build of {function} is running"))
                    .await;
                lock.lock().await
            }
        };
        let _slot = match state.builds.slots.try_acquire() {
            Ok(slot) => slot,
            Err(_) => {
                log.line("waiting: max_builds builds are running").await;
                state
                    .builds
                    .slots
                    .acquire()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        build_and_deploy(&state, job, deployment, deploy, &log, work).await
    };
    drop(lock);
    state.builds.forget_idle(&function);
    outcome
}

async fn build_and_deploy(
    state: &Arc<AppState>,
    job: BuildJob,
    mut deployment: Deployment,
    deploy: bool,
    log: &BuildLog,
    work: Staged,
) -> Outcome {
    let built = state.provider.build(&job, log).await;
    drop(work);
    let built = match built {
        Ok(built) => built,
        Err(e) => {
            tracing::warn!(function = %job.function, error = %e, "build failed");
            return Err((e.status(), e.to_string(), log.tail()));
        }
    };
    tracing::info!(function = %job.function, image = %built.image, cached = built.cached, "built");
    let mut result = json!({
        "function": job.function,
        "image": built.image,
        "digest": format!("sha256:{}", job.digest),
        "cached": built.cached,
    });
    if !deploy {
        return Ok(json!({ "result": result }));
    }
    deployment.image = built.image.clone();
    let existing = state.table.get(&job.function);
    let exists = existing.is_some();
    // The replicas of the version being replaced: the rollout is done once
    // the function's desired count is ready without any of them.
    let old: HashSet<String> = existing
        .map(|f| f.replicas().iter().map(|r| r.id.clone()).collect())
        .unwrap_or_default();
    // The same image again (unchanged source): nothing to roll out.
    let image_before = match exists {
        false => None,
        true => state.provider.list().await.ok().and_then(|all| {
            all.into_iter()
                .find(|f| f.name == job.function)
                .map(|f| f.image)
        }),
    };
    log.line(&format!(
        "{} {} with {}",
        if exists { "updating" } else { "deploying" },
        job.function,
        built.image
    ))
    .await;
    let done = if exists {
        state.provider.update(deployment).await
    } else {
        state.provider.deploy(deployment).await
    };
    if let Err(e) = done {
        return Err((e.status(), e.to_string(), log.tail()));
    }
    if exists && image_before.as_deref() != Some(built.image.as_str()) {
        rolled_out(state, &job, &old, log).await?;
    }
    result["deployed"] = json!(if exists { "updated" } else { "created" });
    Ok(json!({ "result": result }))
}

/// Waits until the updated function serves only its new version: its
/// desired count of ready replicas, and none from before the update still
/// taking calls (Swarm rolls start-first: the old ones serve until the new
/// are healthy, then drain). At most `build_timeout`.
async fn rolled_out(
    state: &AppState,
    job: &BuildJob,
    old: &HashSet<String>,
    log: &BuildLog,
) -> Result<(), (StatusCode, String, Vec<String>)> {
    let deadline = tokio::time::Instant::now() + job.timeout;
    let mut said = None;
    loop {
        let Some(function) = state.table.get(&job.function) else {
            return Err((
                StatusCode::CONFLICT,
                format!("{} was removed while it was being updated", job.function),
                log.tail(),
            ));
        };
        let desired = function.desired().unwrap_or(1) as usize;
        let replicas = function.replicas();
        let ready =
            |r: &&Arc<crate::functions::Replica>| r.state == crate::functions::ReplicaState::Ready;
        let fresh = replicas
            .iter()
            .filter(ready)
            .filter(|r| !old.contains(&r.id))
            .count();
        let stale = replicas
            .iter()
            .filter(ready)
            .filter(|r| old.contains(&r.id))
            .count();
        if fresh >= desired && stale == 0 {
            return Ok(());
        }
        if said != Some(fresh) {
            log.line(&format!(
                "rolling out: {fresh}/{desired} replicas of the new version ready"
            ))
            .await;
            said = Some(fresh);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err((
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the new version of {} was not ready within build_timeout ({:?}); the previous one serves until it is",
                    job.function, job.timeout
                ),
                log.tail(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn failure_event(status: StatusCode, message: &str) -> serde_json::Value {
    json!({ "error": one_line(message), "status": status.as_u16() })
}

fn stream_answer(
    received: mpsc::Receiver<serde_json::Value>,
    task: tokio::task::JoinHandle<Outcome>,
) -> Response {
    let log = tokio_stream_of(received);
    let end = futures_util::stream::once(async move {
        match task.await {
            Ok(Ok(event)) => event,
            Ok(Err((status, message, _))) => failure_event(status, &message),
            Err(e) => failure_event(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    });
    let lines = log.chain(end).map(|event| {
        let mut line = event.to_string();
        line.push('\n');
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line))
    });
    let mut response = Body::from_stream(lines).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    response
}

fn tokio_stream_of(
    mut received: mpsc::Receiver<serde_json::Value>,
) -> impl futures_util::Stream<Item = serde_json::Value> {
    futures_util::stream::poll_fn(move |cx| received.poll_recv(cx))
}

async fn held_answer(
    received: mpsc::Receiver<serde_json::Value>,
    task: tokio::task::JoinHandle<Outcome>,
) -> Response {
    // Drained so the build never waits on a reader.
    let drain = tokio::spawn(tokio_stream_of(received).for_each(|_| async {}));
    let outcome = task.await;
    let _ = drain.await;
    match outcome {
        Ok(Ok(event)) => axum::Json(event["result"].clone()).into_response(),
        Ok(Err((status, message, tail))) => {
            let mut body = one_line(&message);
            if !tail.is_empty() {
                body.push_str("\nlast lines of the build log:\n");
                body.push_str(&tail.join("\n"));
            }
            body.push('\n');
            (
                status,
                [(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                )],
                body,
            )
                .into_response()
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A request's archive on disk and the folder it unpacks into, both
/// removed when dropped.
struct Staged {
    archive: PathBuf,
    dir: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.archive);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Staged {
    /// Receives the body to a file, at most `max_build_context` bytes
    /// (then 413), each chunk within `body_timeout`.
    async fn receive(state: &AppState, request: Request) -> Result<Staged, Response> {
        let max = state.config.max_build_context;
        let too_large = || {
            text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format_args!("the build context is larger than {max} bytes (max_build_context)"),
            )
        };
        if request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|n| n > max)
        {
            return Err(too_large());
        }
        let staging = &state.builds.staging;
        let internal = |e: std::io::Error| {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format_args!("cannot stage the build context: {e}"),
            )
        };
        tokio::fs::create_dir_all(staging).await.map_err(internal)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let staged = Staged {
            archive: staging.join(format!("{id}.tar.gz")),
            dir: staging.join(&id),
        };
        tokio::fs::create_dir(&staged.dir).await.map_err(internal)?;
        let mut file = tokio::fs::File::create(&staged.archive)
            .await
            .map_err(internal)?;
        let mut body = request.into_body();
        let mut received: u64 = 0;
        loop {
            let frame = match tokio::time::timeout(state.config.body_timeout, body.frame()).await {
                Err(_) => {
                    return Err(text(
                        StatusCode::REQUEST_TIMEOUT,
                        "the build context stalled (body_timeout)",
                    ));
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(text(
                        StatusCode::BAD_REQUEST,
                        format_args!("the build context could not be read: {e}"),
                    ));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                received += data.len() as u64;
                if received > max {
                    return Err(too_large());
                }
                file.write_all(&data).await.map_err(internal)?;
            }
        }
        file.flush().await.map_err(internal)?;
        Ok(staged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_functions_lock_is_forgotten_only_when_nobody_holds_it() {
        let builds = Builds::new(1, Path::new("/nonexistent"));
        let held = builds.lock_for("a");
        drop(builds.lock_for("b"));
        builds.forget_idle("a");
        builds.forget_idle("b");
        let names: Vec<String> = builds
            .per_function
            .lock()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(names, ["a"]);
        assert!(
            Arc::ptr_eq(&held, &builds.lock_for("a")),
            "one lock per function"
        );
    }

    #[test]
    fn long_log_lines_are_cut_on_a_character_boundary() {
        let line = "é".repeat(MAX_LINE);
        let cut = cut(&line);
        assert!(
            cut.ends_with(&format!("(line cut at {MAX_LINE} bytes)")),
            "{}",
            &cut[cut.len() - 40..]
        );
        assert!(cut.len() < line.len());
        assert_eq!(super::cut("short"), "short");
    }
}
