//! The process provider: every replica of a function is a local `fwatchdog`
//! child listening on a loopback port. It needs no Docker, so a newcomer can
//! try faas with `cargo run`, and most gateway tests run fast against it.
//!
//! Each replica has a supervisor task: it picks a free port, starts the
//! watchdog (in the function's handler folder, with the function's
//! environment), publishes the replica once `/_/health` answers 200, and
//! restarts it with backoff if it dies. Children get SIGTERM when the
//! gateway stops, and the kernel sends it too if the gateway dies first.

mod build;
mod launcher;
mod limits;
mod logbook;
mod replica;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use faas_common::api::{Deployment, FunctionStatus, LogEntry};
use faas_common::shutdown::{self, Trigger};
use faas_common::stack::Stack;
use futures_util::stream::BoxStream;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;

use super::{LogQuery, Provider, ProviderError, min_replicas, validate_secret_name};
use crate::build::{BuildError, BuildJob, BuildLog, Built};
use crate::functions::Table;
pub use launcher::Launcher;
use limits::{Confinement, Limits};
use logbook::LogBook;
use replica::{PROBE_EVERY, ReplicaCtx, Spec, publish};

const NAME: &str = "process";
/// How long `start` waits for the stack's functions to become ready.
const START_WAIT: Duration = Duration::from_secs(15);

struct ReplicaHandle {
    id: String,
    stop: Trigger,
    task: JoinHandle<()>,
}

struct Managed {
    spec: Arc<Spec>,
    logs: Arc<LogBook>,
    created_at: SystemTime,
    replicas: Vec<ReplicaHandle>,
    /// Ready replicas: id → port.
    ready: Arc<Mutex<BTreeMap<String, u16>>>,
    /// `replicas.len()`, for the replicas' own publishing.
    desired: Arc<AtomicU64>,
    /// Why it cannot start, when its program is missing.
    problem: Arc<Mutex<Option<String>>>,
}

pub struct ProcessProvider {
    launcher: Launcher,
    stack: Option<(Stack, PathBuf)>,
    state_dir: PathBuf,
    functions: tokio::sync::Mutex<BTreeMap<String, Managed>>,
    table: OnceLock<Arc<Table>>,
    probe: Client<HttpConnector, Empty<Bytes>>,
    next_id: std::sync::atomic::AtomicU64,
    log_lines: usize,
    /// Longest function output line kept (`log_line_bytes`).
    log_line_bytes: usize,
    /// Secrets: one file each; copied into a replica's own folder when its
    /// function names them.
    secrets_dir: PathBuf,
    /// Functions built from source, one folder per build (kept across
    /// restarts: the same source is not built twice).
    builds_dir: PathBuf,
    /// How replicas' `limits` are enforced.
    confinement: Arc<Confinement>,
}

impl ProcessProvider {
    /// `stack`: the stack file to run at start, if any.
    /// `log_lines`: how many output lines to keep per function, each up to
    /// `log_line_bytes`. `state_dir`: the gateway's private directory; this
    /// provider keeps its replicas' folders and its secrets in a folder of
    /// its own there.
    pub fn new(
        launcher: Launcher,
        stack: Option<&Path>,
        (log_lines, log_line_bytes): (usize, usize),
        state_dir: &Path,
    ) -> Result<ProcessProvider, ProviderError> {
        let stack = match stack {
            None => None,
            Some(path) => {
                let loaded =
                    Stack::load(path).map_err(|e| ProviderError::Invalid(e.to_string()))?;
                let dir = path
                    .parent()
                    .map(Path::to_path_buf)
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or_else(|| PathBuf::from("."));
                Some((loaded, dir))
            }
        };
        let builds_dir = state_dir.join("builds");
        let state_dir = state_dir.join(format!("process-{}", std::process::id()));
        Ok(ProcessProvider {
            builds_dir,
            launcher,
            stack,
            secrets_dir: state_dir.join("secrets"),
            state_dir,
            log_lines,
            log_line_bytes,
            functions: tokio::sync::Mutex::new(BTreeMap::new()),
            table: OnceLock::new(),
            probe: Client::builder(TokioExecutor::new()).build_http(),
            next_id: std::sync::atomic::AtomicU64::new(1),
            confinement: Arc::new(Confinement::detect()),
        })
    }

    /// The folder of a build this provider made, when the deployment's
    /// image names one (`faas/<name>:<digest>`).
    fn built_folder(&self, deployment: &Deployment) -> Option<PathBuf> {
        build::built_folder(&self.builds_dir, &deployment.service, &deployment.image)
    }

    fn table(&self) -> &Arc<Table> {
        self.table
            .get()
            .expect("the provider is started before use")
    }

    async fn add(&self, deployment: Deployment, workdir: PathBuf) -> Result<(), ProviderError> {
        validate(&deployment)?;
        let replicas = min_replicas(&deployment.labels)?;
        self.check_secrets(&deployment)?;
        let mut functions = self.functions.lock().await;
        if functions.contains_key(&deployment.service) {
            return Err(ProviderError::Conflict(deployment.service.clone()));
        }
        let spec = Arc::new(Spec {
            function: deployment.service.clone(),
            deployment,
            workdir,
        });
        let mut managed = Managed {
            logs: Arc::new(LogBook::new(&spec.function, self.log_lines)),
            spec: spec.clone(),
            created_at: SystemTime::now(),
            replicas: Vec::new(),
            ready: Arc::new(Mutex::new(BTreeMap::new())),
            desired: Arc::new(AtomicU64::new(replicas)),
            problem: Arc::new(Mutex::new(None)),
        };
        for _ in 0..replicas {
            let handle = self.start_replica(&managed, spec.clone());
            managed.replicas.push(handle);
        }
        // Known (and answering 503 until a replica is ready) from now on.
        self.publish(&managed);
        functions.insert(spec.function.clone(), managed);
        Ok(())
    }

    fn start_replica(&self, managed: &Managed, spec: Arc<Spec>) -> ReplicaHandle {
        let id = format!(
            "{}-{}",
            spec.function,
            self.next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (stop, stopped) = shutdown::channel();
        let ctx = ReplicaCtx {
            id: id.clone(),
            spec,
            launcher: self.launcher.clone(),
            tmpdir: self.state_dir.join(&id),
            secrets_dir: self.secrets_dir.clone(),
            logs: managed.logs.clone(),
            log_line_bytes: self.log_line_bytes,
            ready: managed.ready.clone(),
            desired: managed.desired.clone(),
            problem: managed.problem.clone(),
            table: self.table().clone(),
            probe: self.probe.clone(),
            confinement: self.confinement.clone(),
        };
        let task = tokio::spawn(ctx.supervise(stopped));
        ReplicaHandle { id, stop, task }
    }

    fn publish(&self, managed: &Managed) {
        managed
            .desired
            .store(managed.replicas.len() as u64, Ordering::Relaxed);
        publish(
            self.table(),
            &managed.spec.function,
            &managed.ready,
            &managed.spec.deployment.labels,
            managed.replicas.len() as u64,
            &managed.problem,
        );
    }

    /// Every secret a deployment names must exist.
    fn check_secrets(&self, deployment: &Deployment) -> Result<(), ProviderError> {
        for name in &deployment.secrets {
            validate_secret_name(name)?;
            if !self.secrets_dir.join(name).is_file() {
                return Err(ProviderError::Invalid(format!(
                    "secret {name:?} does not exist; create it first (faas secret create)"
                )));
            }
        }
        Ok(())
    }

    async fn stop_replicas(handles: Vec<ReplicaHandle>) {
        for handle in &handles {
            handle.stop.fire();
        }
        for handle in handles {
            let _ = handle.task.await;
        }
    }

    /// Starts the stack file's functions and waits (a while) until each has
    /// a ready replica.
    async fn run_stack(&self) -> Result<(), ProviderError> {
        let Some((stack, dir)) = &self.stack else {
            return Ok(());
        };
        for (name, function) in &stack.functions {
            let workdir = match &function.handler {
                Some(handler) if dir.join(handler).is_dir() => dir.join(handler),
                _ => dir.clone(),
            };
            self.add(function.deployment(name), workdir).await?;
        }
        let deadline = Instant::now() + START_WAIT;
        for name in stack.functions.keys() {
            // Every replica asked for (none for a function deployed at
            // zero), or a reason it cannot start (said already, in the log).
            let all_ready = || {
                self.table().get(name).is_some_and(|f| {
                    f.ready_count() as u64 >= f.desired().unwrap_or(1) || f.problem().is_some()
                })
            };
            while !all_ready() && Instant::now() < deadline {
                tokio::time::sleep(PROBE_EVERY).await;
            }
            if !all_ready() {
                tracing::warn!(function = %name, "not every replica became ready within {START_WAIT:?}; still trying");
            }
        }
        Ok(())
    }
}

fn validate(deployment: &Deployment) -> Result<(), ProviderError> {
    if !faas_common::is_valid_function_name(&deployment.service) {
        return Err(ProviderError::Invalid(format!(
            "invalid function name {:?}: use letters, digits, '_', '.' and '-'",
            deployment.service
        )));
    }
    if deployment
        .env_process
        .as_deref()
        .is_none_or(|p| p.trim().is_empty())
    {
        return Err(ProviderError::Invalid(format!(
            "function {:?} has no fprocess (envProcess): the process provider runs commands, not images",
            deployment.service
        )));
    }
    Limits::parse(deployment.limits.as_ref())?;
    Ok(())
}

#[async_trait]
impl Provider for ProcessProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn limits(&self) -> String {
        self.confinement.describe()
    }

    async fn start(self: Arc<Self>, table: Arc<Table>) -> Result<(), ProviderError> {
        let _ = self.table.set(table);
        std::fs::create_dir_all(&self.state_dir).map_err(|e| {
            ProviderError::Unavailable(format!("cannot create {}: {e}", self.state_dir.display()))
        })?;
        tracing::info!(watchdog = ?self.launcher, limits = %self.confinement.describe(), "process provider starting");
        self.run_stack().await
    }

    async fn health(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn list(&self) -> Result<Vec<FunctionStatus>, ProviderError> {
        let functions = self.functions.lock().await;
        Ok(functions
            .values()
            .map(|m| {
                let d = &m.spec.deployment;
                FunctionStatus {
                    name: d.service.clone(),
                    namespace: faas_common::api::NAMESPACE.to_owned(),
                    image: d.image.clone(),
                    env_process: d.env_process.clone(),
                    env_vars: d.env_vars.clone(),
                    labels: d.labels.clone(),
                    annotations: d.annotations.clone(),
                    constraints: d.constraints.clone(),
                    secrets: d.secrets.clone(),
                    limits: d.limits.clone(),
                    requests: d.requests.clone(),
                    read_only_root_filesystem: d.read_only_root_filesystem,
                    replicas: m.replicas.len() as u64,
                    available_replicas: m.ready.lock().unwrap_or_else(|e| e.into_inner()).len()
                        as u64,
                    // An update returns once the old replicas are stopped.
                    stale_replicas: 0,
                    invocation_count: 0,
                    created_at: Some(faas_common::time::rfc3339(m.created_at)),
                    scaling: None,
                    conflict: None,
                    problem: m.problem.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                }
            })
            .collect())
    }

    async fn deploy(&self, deployment: Deployment) -> Result<(), ProviderError> {
        let workdir = self.built_folder(&deployment).unwrap_or_else(|| {
            self.stack
                .as_ref()
                .map(|(_, dir)| dir.clone())
                .unwrap_or_else(|| PathBuf::from("."))
        });
        self.add(deployment, workdir).await
    }

    async fn build(&self, job: &BuildJob, log: &BuildLog) -> Result<Built, BuildError> {
        build::build(&self.builds_dir, job, log).await
    }

    async fn update(&self, deployment: Deployment) -> Result<(), ProviderError> {
        validate(&deployment)?;
        self.check_secrets(&deployment)?;
        let mut functions = self.functions.lock().await;
        let managed = functions
            .get_mut(&deployment.service)
            .ok_or_else(|| ProviderError::NotFound(deployment.service.clone()))?;
        // Rolling: new replicas first, the old ones stop once the new are ready.
        let spec = Arc::new(Spec {
            function: deployment.service.clone(),
            workdir: self
                .built_folder(&deployment)
                .unwrap_or_else(|| managed.spec.workdir.clone()),
            deployment,
        });
        let count = managed.replicas.len();
        let old: Vec<ReplicaHandle> = std::mem::take(&mut managed.replicas);
        let old_spec = std::mem::replace(&mut managed.spec, spec.clone());
        for _ in 0..count {
            let handle = self.start_replica(managed, spec.clone());
            managed.replicas.push(handle);
        }
        let new_ids: Vec<String> = managed.replicas.iter().map(|r| r.id.clone()).collect();
        let ready = managed.ready.clone();
        let problem = managed.problem.clone();
        drop(functions);
        let deadline = Instant::now() + START_WAIT;
        let cannot_start = || problem.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let all_up = || {
            ready
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .filter(|id| new_ids.contains(id))
                .count()
                == count
        };
        while !all_up() && cannot_start().is_none() && Instant::now() < deadline {
            tokio::time::sleep(PROBE_EVERY).await;
        }
        if all_up() {
            ProcessProvider::stop_replicas(old).await;
            return Ok(());
        }
        let why = cannot_start();
        // The new replicas never became ready: the old ones keep serving
        // (unless the function changed meanwhile), the new ones go.
        let mut functions = self.functions.lock().await;
        let failed = match functions.get_mut(&spec.function) {
            Some(managed) if Arc::ptr_eq(&managed.spec, &spec) => {
                managed.spec = old_spec;
                // The problem was the new version's: the old one runs.
                *managed.problem.lock().unwrap_or_else(|e| e.into_inner()) = None;
                let failed = std::mem::replace(&mut managed.replicas, old);
                self.publish(managed);
                failed
            }
            _ => old,
        };
        drop(functions);
        ProcessProvider::stop_replicas(failed).await;
        Err(ProviderError::Engine(match why {
            Some(why) => format!(
                "the updated {:?} cannot start: {why}: the previous version keeps serving",
                spec.function
            ),
            None => format!(
                "the updated {:?} did not become ready within {START_WAIT:?} (see its logs): the previous version keeps serving",
                spec.function
            ),
        }))
    }

    async fn remove(&self, name: &str) -> Result<(), ProviderError> {
        let managed = self
            .functions
            .lock()
            .await
            .remove(name)
            .ok_or_else(|| ProviderError::NotFound(name.to_owned()))?;
        self.table().remove(name);
        ProcessProvider::stop_replicas(managed.replicas).await;
        Ok(())
    }

    async fn scale(&self, name: &str, replicas: u64) -> Result<(), ProviderError> {
        let mut functions = self.functions.lock().await;
        let managed = functions
            .get_mut(name)
            .ok_or_else(|| ProviderError::NotFound(name.to_owned()))?;
        let target = replicas as usize;
        let mut surplus = Vec::new();
        while managed.replicas.len() > target {
            surplus.push(managed.replicas.pop().expect("len checked"));
        }
        while managed.replicas.len() < target {
            let handle = self.start_replica(managed, managed.spec.clone());
            managed.replicas.push(handle);
        }
        self.publish(managed);
        drop(functions);
        // Told to stop now (out of rotation at once); their drain goes on
        // without holding up the caller (the autoscaler, a scale request).
        for handle in &surplus {
            handle.stop.fire();
        }
        tokio::spawn(ProcessProvider::stop_replicas(surplus));
        Ok(())
    }

    async fn logs(&self, query: LogQuery) -> Result<BoxStream<'static, LogEntry>, ProviderError> {
        let functions = self.functions.lock().await;
        let managed = functions
            .get(&query.name)
            .ok_or_else(|| ProviderError::NotFound(query.name.clone()))?;
        Ok(managed.logs.read(&query))
    }

    async fn secrets(&self) -> Result<Vec<String>, ProviderError> {
        let entries = match std::fs::read_dir(&self.secrets_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ProviderError::Engine(format!("cannot list secrets: {e}"))),
        };
        Ok(entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect())
    }

    async fn create_secret(&self, name: &str, value: Vec<u8>) -> Result<(), ProviderError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        validate_secret_name(name)?;
        let failed =
            |e: std::io::Error| ProviderError::Engine(format!("cannot store secret {name:?}: {e}"));
        std::fs::create_dir_all(&self.secrets_dir).map_err(failed)?;
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.secrets_dir.join(name))
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(ProviderError::SecretExists(name.to_owned()));
            }
            Err(e) => return Err(failed(e)),
        };
        file.write_all(&value).map_err(failed)
    }

    async fn remove_secret(&self, name: &str) -> Result<(), ProviderError> {
        validate_secret_name(name)?;
        let users: Vec<String> = self
            .functions
            .lock()
            .await
            .values()
            .filter(|m| m.spec.deployment.secrets.iter().any(|s| s == name))
            .map(|m| m.spec.function.clone())
            .collect();
        if !users.is_empty() {
            return Err(ProviderError::InUse(format!(
                "secret {name} is in use by function(s) {}",
                users.join(", ")
            )));
        }
        match std::fs::remove_file(self.secrets_dir.join(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ProviderError::SecretNotFound(name.to_owned()))
            }
            Err(e) => Err(ProviderError::Engine(format!(
                "cannot remove secret {name:?}: {e}"
            ))),
        }
    }

    async fn shutdown(&self) {
        let all: Vec<ReplicaHandle> = self
            .functions
            .lock()
            .await
            .values_mut()
            .flat_map(|m| std::mem::take(&mut m.replicas))
            .collect();
        ProcessProvider::stop_replicas(all).await;
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_without_a_command_are_refused() {
        let err = validate(&Deployment {
            service: "x".into(),
            image: "faas/x".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("no fprocess"), "{err}");
    }
}
