//! The process provider: every replica of a function is a local `fwatchdog`
//! child listening on a loopback port. It needs no Docker, so a newcomer can
//! try faas with `cargo run`, and most gateway tests run fast against it.
//!
//! Each replica has a supervisor task: it picks a free port, starts the
//! watchdog (in the function's handler folder, with the function's
//! environment), publishes the replica once `/_/health` answers 200, and
//! restarts it with backoff if it dies. Children get SIGTERM when the
//! gateway stops, and the kernel sends it too if the gateway dies first.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use faas_common::api::{Deployment, FunctionStatus, LogEntry};
use faas_common::shutdown::{self, Shutdown, Trigger};
use faas_common::stack::Stack;
use futures_util::stream::{self, BoxStream, StreamExt};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::{LogQuery, Provider, ProviderError, min_replicas, validate_secret_name};
use crate::functions::{Discovered, ReplicaInfo, ReplicaState, Table};

const NAME: &str = "process";
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const STABLE_AFTER: Duration = Duration::from_secs(30);
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// How long a stopped replica may take to drain before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long `start` waits for the stack's functions to become ready.
const START_WAIT: Duration = Duration::from_secs(15);

/// How to start a watchdog.
#[derive(Debug, Clone)]
pub enum Launcher {
    /// An `fwatchdog` binary.
    Binary(PathBuf),
    /// This executable, which runs the watchdog when its first argument is
    /// `fwatchdog` (for `cargo run -p gateway`, where no `fwatchdog` is built).
    Embedded(PathBuf),
}

impl Launcher {
    /// `fwatchdog` beside this executable, else on PATH, else this
    /// executable itself.
    pub fn find() -> Launcher {
        let exe = std::env::current_exe().ok();
        if let Some(beside) = exe
            .as_ref()
            .and_then(|e| e.parent())
            .map(|d| d.join("fwatchdog"))
            && beside.is_file()
        {
            return Launcher::Binary(beside);
        }
        if let Some(on_path) = find_on_path("fwatchdog") {
            return Launcher::Binary(on_path);
        }
        Launcher::Embedded(exe.unwrap_or_else(|| PathBuf::from("gateway")))
    }

    fn command(&self) -> tokio::process::Command {
        match self {
            Launcher::Binary(path) => tokio::process::Command::new(path),
            Launcher::Embedded(exe) => {
                let mut cmd = tokio::process::Command::new(exe);
                cmd.arg("fwatchdog");
                cmd
            }
        }
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A function's recent output lines (its watchdogs' stdout and stderr),
/// for `/system/logs`: the last `capacity` kept, new ones broadcast to
/// followers.
struct LogBook {
    function: String,
    capacity: usize,
    lines: Mutex<VecDeque<(SystemTime, LogEntry)>>,
    new: broadcast::Sender<LogEntry>,
}

impl LogBook {
    fn new(function: &str, capacity: usize) -> LogBook {
        LogBook {
            function: function.to_owned(),
            capacity,
            lines: Mutex::new(VecDeque::new()),
            new: broadcast::channel(256).0,
        }
    }

    fn write(&self, instance: &str, text: String) {
        let now = SystemTime::now();
        let entry = LogEntry {
            name: self.function.clone(),
            namespace: String::new(),
            instance: instance.to_owned(),
            timestamp: humantime::format_rfc3339_nanos(now).to_string(),
            text,
        };
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if self.capacity == 0 {
            lines.clear();
        } else {
            while lines.len() >= self.capacity {
                lines.pop_front();
            }
            lines.push_back((now, entry.clone()));
        }
        // Sent under the lock: a new follower sees each line exactly once.
        let _ = self.new.send(entry);
    }

    /// The kept lines the query asks for, then (when following) new ones.
    fn read(&self, query: &LogQuery) -> BoxStream<'static, LogEntry> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let matching: Vec<LogEntry> = lines
            .iter()
            .filter(|(at, _)| query.since.is_none_or(|since| *at >= since))
            .map(|(_, e)| e.clone())
            .collect();
        let skip = query
            .tail
            .map_or(0, |tail| matching.len().saturating_sub(tail));
        let history = stream::iter(matching.into_iter().skip(skip));
        if !query.follow {
            return history.boxed();
        }
        let receiver = self.new.subscribe();
        drop(lines);
        let live = stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(entry) => return Some((entry, receiver)),
                    // A slow follower misses lines rather than stalling the function.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        history.chain(live).boxed()
    }
}

/// What a replica needs to (re)start.
struct Spec {
    function: String,
    deployment: Deployment,
    workdir: PathBuf,
}

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
        let state_dir = state_dir.join(format!("process-{}", std::process::id()));
        Ok(ProcessProvider {
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
        })
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
            table: self.table().clone(),
            probe: self.probe.clone(),
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
            let deployment = Deployment {
                service: name.clone(),
                image: function.image.clone().unwrap_or_default(),
                env_process: function.fprocess.clone(),
                env_vars: function.environment.clone(),
                labels: function.labels.clone(),
                annotations: function.annotations.clone(),
                ..Default::default()
            };
            self.add(deployment, workdir).await?;
        }
        let deadline = Instant::now() + START_WAIT;
        for name in stack.functions.keys() {
            // Every replica asked for (none for a function deployed at zero).
            let all_ready = || {
                self.table()
                    .get(name)
                    .is_some_and(|f| f.ready_count() as u64 >= f.desired().unwrap_or(1))
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
    Ok(())
}

fn publish(
    table: &Table,
    function: &str,
    ready: &Mutex<BTreeMap<String, u16>>,
    labels: &BTreeMap<String, String>,
    desired: u64,
) {
    let replicas = ready
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(id, port)| ReplicaInfo {
            id: id.clone(),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, *port)),
            state: ReplicaState::Ready,
        })
        .collect();
    table.upsert(Discovered {
        name: function.to_owned(),
        replicas,
        labels: labels.clone(),
        desired: Some(desired),
    });
}

/// Everything one replica's supervisor needs.
struct ReplicaCtx {
    id: String,
    spec: Arc<Spec>,
    launcher: Launcher,
    tmpdir: PathBuf,
    secrets_dir: PathBuf,
    logs: Arc<LogBook>,
    log_line_bytes: usize,
    ready: Arc<Mutex<BTreeMap<String, u16>>>,
    desired: Arc<AtomicU64>,
    table: Arc<Table>,
    probe: Client<HttpConnector, Empty<Bytes>>,
}

impl ReplicaCtx {
    fn set_ready(&self, port: Option<u16>) {
        {
            let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
            match port {
                Some(port) => ready.insert(self.id.clone(), port),
                None => ready.remove(&self.id),
            };
        }
        // A removed function must not come back through a late publish.
        if self.table.get(&self.spec.function).is_some() {
            publish(
                &self.table,
                &self.spec.function,
                &self.ready,
                &self.spec.deployment.labels,
                self.desired.load(Ordering::Relaxed),
            );
        }
    }

    async fn supervise(self, mut stop: Shutdown) {
        let mut backoff = FIRST_BACKOFF;
        let _ = std::fs::create_dir_all(&self.tmpdir);
        loop {
            if stop.is_shutdown() {
                break;
            }
            let started = Instant::now();
            match self.spawn() {
                Err(e) => {
                    tracing::error!(function = %self.spec.function, replica = %self.id, error = %e, "cannot start the watchdog")
                }
                Ok(mut child) => {
                    // The port the watchdog bound itself (it was given 0):
                    // no other process can have taken it in between.
                    let port = tokio::select! {
                        port = self.bound_port() => port,
                        exit = child.wait() => {
                            tracing::error!(function = %self.spec.function, replica = %self.id, status = ?exit.ok(), "replica exited before listening");
                            None
                        }
                        () = stop.wait() => {
                            terminate(&mut child).await;
                            break;
                        }
                    };
                    let outcome = match port {
                        None => false,
                        Some(port) => tokio::select! {
                            ready = self.wait_healthy(port) => ready,
                            exit = child.wait() => {
                                tracing::error!(function = %self.spec.function, replica = %self.id, status = ?exit.ok(), "replica exited before becoming ready");
                                false
                            }
                            () = stop.wait() => {
                                terminate(&mut child).await;
                                break;
                            }
                        },
                    };
                    let port = port.unwrap_or_default();
                    if outcome {
                        tracing::info!(function = %self.spec.function, replica = %self.id, port, after = ?started.elapsed(), "replica ready");
                        self.set_ready(Some(port));
                        tokio::select! {
                            exit = child.wait() => {
                                self.set_ready(None);
                                tracing::error!(function = %self.spec.function, replica = %self.id, status = ?exit.ok(), "replica exited; restarting");
                            }
                            () = stop.wait() => {
                                // Out of rotation first, then drained.
                                self.set_ready(None);
                                terminate(&mut child).await;
                                break;
                            }
                        }
                    } else {
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                    }
                }
            }
            if started.elapsed() >= STABLE_AFTER {
                backoff = FIRST_BACKOFF;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.wait() => break,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        let _ = std::fs::remove_dir_all(&self.tmpdir);
    }

    /// Where the watchdog writes the port it bound.
    fn port_file(&self) -> PathBuf {
        self.tmpdir.join("port")
    }

    /// The port the watchdog reports once it listens (polled: it appears
    /// within milliseconds of the start).
    async fn bound_port(&self) -> Option<u16> {
        let path = self.port_file();
        loop {
            if let Ok(text) = tokio::fs::read_to_string(&path).await
                && let Ok(port) = text.trim().parse::<u16>()
            {
                return Some(port);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn spawn(&self) -> std::io::Result<tokio::process::Child> {
        let _ = std::fs::remove_file(self.port_file());
        let d = &self.spec.deployment;
        let mut cmd = self.launcher.command();
        cmd.env_clear();
        // Not RUST_LOG: a quiet gateway must not silence what its functions
        // log (their stderr reaches /system/logs as watchdog info lines); a
        // function sets its own level in its environment.
        for var in ["PATH", "HOME"] {
            if let Some(value) = std::env::var_os(var) {
                cmd.env(var, value);
            }
        }
        cmd.env("healthcheck_interval", "0s");
        cmd.envs(&d.env_vars);
        if d.env_vars
            .get("mode")
            .is_some_and(|m| m.eq_ignore_ascii_case("http"))
        {
            // Replicas share the machine: each gets its own upstream port,
            // told to the function as PORT (the sample markdown reads it).
            let upstream = free_port()?;
            cmd.env("upstream_url", format!("http://127.0.0.1:{upstream}"))
                .env("PORT", upstream.to_string());
        }
        if !d.secrets.is_empty() {
            // Only the secrets this function names, in its replica's own folder.
            let own = self.tmpdir.join("secrets");
            std::fs::create_dir_all(&own)?;
            for name in &d.secrets {
                std::fs::copy(self.secrets_dir.join(name), own.join(name))?;
            }
            cmd.env("secret_mount_path", &own);
        }
        cmd.env(
            "fprocess",
            resolve_fprocess(d.env_process.as_deref().unwrap_or(""), &self.spec.workdir),
        )
        .env("port", "0")
        .env("port_file", self.port_file())
        .env("metrics_port", "0")
        .env("bind_address", "127.0.0.1")
        .env("TMPDIR", &self.tmpdir)
        .current_dir(&self.spec.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe; the child only arms its parent-death signal.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let function = self.spec.function.clone();
            let replica = self.id.clone();
            let logs = self.logs.clone();
            let max = self.log_line_bytes;
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                while let Ok(Some(line)) = next_line(&mut reader, max).await {
                    tracing::info!(target: "function", function = %function, replica = %replica, "{line}");
                    if !line.trim().is_empty() {
                        logs.write(&replica, line);
                    }
                }
            });
        }
        Ok(child)
    }

    /// Polls `/_/health` until it answers 200 (never gives up by itself).
    async fn wait_healthy(&self, port: u16) -> bool {
        let uri: http::Uri = format!("http://127.0.0.1:{port}/_/health")
            .parse()
            .expect("a valid URI");
        loop {
            tokio::time::sleep(PROBE_EVERY).await;
            if let Ok(Ok(response)) =
                tokio::time::timeout(Duration::from_secs(1), self.probe.get(uri.clone())).await
                && response.status() == http::StatusCode::OK
            {
                return true;
            }
        }
    }
}

/// The next line of a function's output, at most `max` bytes of it kept
/// (the rest is read and dropped, and the line says how much): a function
/// that writes without newlines cannot grow the gateway's memory.
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<String>> {
    let mut kept = Vec::new();
    let mut dropped = 0usize;
    let mut any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            break;
        }
        any = true;
        let (chunk, end) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        let room = max.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        dropped += chunk.len().saturating_sub(room);
        let consumed = end.unwrap_or(chunk.len());
        reader.consume(consumed);
        if end.is_some() {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if kept.last() == Some(&b'\r') {
        kept.pop();
    }
    let mut line = String::from_utf8_lossy(&kept).into_owned();
    if dropped > 0 {
        line.push_str(&format!(
            " [… {dropped} more bytes dropped: lines are kept up to log_line_bytes, {max}]"
        ));
    }
    Ok(Some(line))
}

/// SIGTERM, then SIGKILL if the watchdog has not drained within the grace.
async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: signalling our own, not yet reaped, child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A bare program name that is neither in the function's folder nor on
/// PATH but sits beside the gateway (`markdown` under `cargo run`) is
/// given by its full path.
fn resolve_fprocess(fprocess: &str, workdir: &Path) -> String {
    let mut words = fprocess.split_whitespace();
    let Some(program) = words.next() else {
        return fprocess.to_owned();
    };
    if program.contains('/') || workdir.join(program).is_file() || find_on_path(program).is_some() {
        return fprocess.to_owned();
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(program)))
        .filter(|p| p.is_file());
    match beside {
        Some(path) => std::iter::once(path.display().to_string())
            .chain(words.map(str::to_owned))
            .collect::<Vec<_>>()
            .join(" "),
        None => fprocess.to_owned(),
    }
}

#[async_trait]
impl Provider for ProcessProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn start(self: Arc<Self>, table: Arc<Table>) -> Result<(), ProviderError> {
        let _ = self.table.set(table);
        std::fs::create_dir_all(&self.state_dir).map_err(|e| {
            ProviderError::Unavailable(format!("cannot create {}: {e}", self.state_dir.display()))
        })?;
        tracing::info!(watchdog = ?self.launcher, "process provider starting");
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
                    image: d.image.clone(),
                    env_process: d.env_process.clone(),
                    labels: d.labels.clone(),
                    annotations: d.annotations.clone(),
                    replicas: m.replicas.len() as u64,
                    available_replicas: m.ready.lock().unwrap_or_else(|e| e.into_inner()).len()
                        as u64,
                    invocation_count: 0,
                    created_at: Some(faas_common::time::rfc3339(m.created_at)),
                    scaling: None,
                    conflict: None,
                }
            })
            .collect())
    }

    async fn deploy(&self, deployment: Deployment) -> Result<(), ProviderError> {
        let workdir = self
            .stack
            .as_ref()
            .map(|(_, dir)| dir.clone())
            .unwrap_or_else(|| PathBuf::from("."));
        self.add(deployment, workdir).await
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
            workdir: managed.spec.workdir.clone(),
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
        drop(functions);
        let deadline = Instant::now() + START_WAIT;
        let all_up = || {
            ready
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .filter(|id| new_ids.contains(id))
                .count()
                == count
        };
        while !all_up() && Instant::now() < deadline {
            tokio::time::sleep(PROBE_EVERY).await;
        }
        if all_up() {
            ProcessProvider::stop_replicas(old).await;
            return Ok(());
        }
        // The new replicas never became ready: the old ones keep serving
        // (unless the function changed meanwhile), the new ones go.
        let mut functions = self.functions.lock().await;
        let failed = match functions.get_mut(&spec.function) {
            Some(managed) if Arc::ptr_eq(&managed.spec, &spec) => {
                managed.spec = old_spec;
                std::mem::replace(&mut managed.replicas, old)
            }
            _ => old,
        };
        drop(functions);
        ProcessProvider::stop_replicas(failed).await;
        Err(ProviderError::Engine(format!(
            "the updated {:?} did not become ready within {START_WAIT:?} (see its logs): the previous version keeps serving",
            spec.function
        )))
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

    #[tokio::test]
    async fn output_lines_are_kept_up_to_their_limit() {
        let text = format!("short\r\n{}\nlast", "x".repeat(100));
        let mut reader = BufReader::with_capacity(7, text.as_bytes());
        assert_eq!(next_line(&mut reader, 10).await.unwrap().unwrap(), "short");
        let long = next_line(&mut reader, 10).await.unwrap().unwrap();
        assert!(
            long.starts_with("xxxxxxxxxx [… 90 more bytes dropped"),
            "{long}"
        );
        assert_eq!(next_line(&mut reader, 10).await.unwrap().unwrap(), "last");
        assert_eq!(next_line(&mut reader, 10).await.unwrap(), None);
    }

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

    #[test]
    fn bare_programs_on_path_are_left_alone() {
        assert_eq!(
            resolve_fprocess("sh handler.sh", Path::new("/")),
            "sh handler.sh"
        );
        assert_eq!(
            resolve_fprocess("./run.sh -x", Path::new("/")),
            "./run.sh -x"
        );
    }
}
