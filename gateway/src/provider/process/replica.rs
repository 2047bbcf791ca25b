//! One replica's supervisor: start its watchdog (port 0, the port it got
//! read back from `port_file`), wait until `/_/health` answers, publish
//! it, restart it with backoff when it dies, and stop it (SIGTERM, then
//! SIGKILL after a grace).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use faas_common::api::Deployment;
use faas_common::shutdown::Shutdown;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::BufReader;

use super::launcher::{Launcher, missing_program, resolve_fprocess};
use super::limits::{Confinement, Limits, Placement};
use super::logbook::{LogBook, next_line};
use crate::functions::{Discovered, ReplicaInfo, ReplicaState, Table};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const STABLE_AFTER: Duration = Duration::from_secs(30);
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(20);
/// How often a function whose program is missing looks for it again.
const PROGRAM_RECHECK: Duration = Duration::from_secs(2);
/// How long a stopped replica may take to drain before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What a replica needs to (re)start.
pub(super) struct Spec {
    pub(super) function: String,
    pub(super) deployment: Deployment,
    pub(super) workdir: PathBuf,
}

pub(super) fn publish(
    table: &Table,
    function: &str,
    ready: &Mutex<BTreeMap<String, u16>>,
    labels: &BTreeMap<String, String>,
    desired: u64,
    problem: &Mutex<Option<String>>,
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
        problem: problem.lock().unwrap_or_else(|e| e.into_inner()).clone(),
    });
}

/// Everything one replica's supervisor needs.
pub(super) struct ReplicaCtx {
    pub(super) id: String,
    pub(super) spec: Arc<Spec>,
    pub(super) launcher: Launcher,
    pub(super) tmpdir: PathBuf,
    pub(super) secrets_dir: PathBuf,
    pub(super) logs: Arc<LogBook>,
    pub(super) log_line_bytes: usize,
    pub(super) ready: Arc<Mutex<BTreeMap<String, u16>>>,
    pub(super) desired: Arc<AtomicU64>,
    /// Why the function cannot start (shared by its replicas).
    pub(super) problem: Arc<Mutex<Option<String>>>,
    pub(super) table: Arc<Table>,
    pub(super) probe: Client<HttpConnector, Empty<Bytes>>,
    pub(super) confinement: Arc<Confinement>,
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
                &self.problem,
            );
        }
    }

    /// Records why the function cannot start (`None`: it can), saying so
    /// once per change, not once per replica or per try.
    fn set_problem(&self, problem: Option<String>) {
        {
            let mut current = self.problem.lock().unwrap_or_else(|e| e.into_inner());
            if *current == problem {
                return;
            }
            match &problem {
                Some(why) => {
                    tracing::error!(function = %self.spec.function, folder = %self.spec.workdir.display(), "cannot start: {why}; its calls are refused until it can")
                }
                None => {
                    tracing::info!(function = %self.spec.function, "its program is there now: starting")
                }
            }
            *current = problem;
        }
        self.set_ready(None);
    }

    pub(super) async fn supervise(self, mut stop: Shutdown) {
        let mut backoff = FIRST_BACKOFF;
        let _ = std::fs::create_dir_all(&self.tmpdir);
        // The running watchdog's cgroups, removed once its processes are gone.
        let mut placed: Option<Placement> = None;
        loop {
            if stop.is_shutdown() {
                break;
            }
            // A program that is not there is reported, not retried in a
            // loop of failing starts; it is looked for again shortly.
            let fprocess = self.spec.deployment.env_process.as_deref().unwrap_or("");
            if let Some(missing) = missing_program(fprocess, &self.spec.workdir) {
                self.set_problem(Some(missing));
                tokio::select! {
                    () = tokio::time::sleep(PROGRAM_RECHECK) => continue,
                    () = stop.wait() => break,
                }
            }
            self.set_problem(None);
            let started = Instant::now();
            match self.spawn() {
                Err(e) => {
                    tracing::error!(function = %self.spec.function, replica = %self.id, error = %e, "cannot start the watchdog")
                }
                Ok((mut child, placement)) => {
                    placed = Some(placement);
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
            if let Some(placement) = placed.take() {
                placement.release().await;
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
        if let Some(placement) = placed.take() {
            placement.release().await;
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

    fn spawn(&self) -> std::io::Result<(tokio::process::Child, Placement)> {
        let _ = std::fs::remove_file(self.port_file());
        let d = &self.spec.deployment;
        let limits = Limits::parse(d.limits.as_ref())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let placement = self.confinement.place(&self.id, limits)?;
        let before_exec = placement.before_exec();
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
        // X-Served-By tells the replicas apart: they share the machine's name.
        cmd.env("HOSTNAME", &self.id);
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
        // SAFETY: prctl, write and setrlimit are async-signal-safe; the
        // child arms its parent-death signal and takes its limits.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                before_exec.apply()
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
        Ok((child, placement))
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

/// SIGTERM, then SIGKILL if the watchdog has not drained within the grace.
pub(super) async fn terminate(child: &mut tokio::process::Child) {
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

/// A free port for an `http`-mode runner, below the kernel's ephemeral
/// range when there is room: the ports the kernel hands to `bind(0)` (every
/// watchdog's own listeners, outgoing connections) then cannot take it
/// between this check and the runner's own bind, which would leave the
/// watchdog probing someone else's listener.
fn free_port() -> std::io::Result<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
    let low = range
        .as_deref()
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(32768);
    // Between 10000 (or 2048) and the range's start, when that leaves room.
    let floor = if low > 12000 { 10000 } else { 2048 };
    if low > floor + 1000 {
        for _ in 0..100 {
            let spread = u128::from(low - floor);
            let port = floor + (uuid::Uuid::new_v4().as_u128() % spread) as u16;
            if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_ports_stay_out_of_the_range_bind_zero_draws_from() {
        let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        for _ in 0..20 {
            let port = free_port().unwrap();
            if low > 12000 {
                assert!((10000..low).contains(&port), "{port} vs {low}");
            }
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("free");
        }
    }
}
