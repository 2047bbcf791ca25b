//! The Swarm provider: functions are Docker Swarm services. The only module
//! that talks to Docker (through bollard).
//!
//! A service is a function when it carries the `faas.function` label
//! (OpenFaaS's `com.openfaas.function` too) or is attached to the functions
//! network, so the seed's plain `docker service create --network functions
//! --name catservice …` just works. The gateway's own service never is.
//!
//! Discovery keeps the [`Table`] current: a full resync (services, tasks,
//! and the functions network's endpoints) runs at start, every
//! `resync_interval`, and shortly after any service, container or network
//! event that can change the view on the Docker event stream (reconnected
//! when it drops), then a few times more ([`FOLLOW_UPS`]): Swarm has no task
//! events, and a task's new state reaches the manager a moment after the
//! container event that caused it. Health-check execs (several events a
//! second) are filtered out. Calls never wait on Docker.
//!
//! Replica addresses come from the functions network's verbose inspect
//! (task name → endpoint IP): bollard's task model omits the tasks' network
//! attachments. A task is a ready replica when it runs and is meant to (a
//! task with a health check only reaches `running` once healthy); one that
//! runs but is meant to stop is draining.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{Service, Task, TaskState};
use bollard::query_parameters::{
    EventsOptionsBuilder, InspectNetworkOptionsBuilder, ListTasksOptionsBuilder,
    UpdateServiceOptionsBuilder,
};
use faas_common::api::{Deployment, FunctionStatus};
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::{Provider, ProviderError};
use crate::config::Config;
use crate::functions::{Discovered, ReplicaInfo, ReplicaState, Table};

const NAME: &str = "swarm";
/// The watchdog's port inside every function container.
const DEFAULT_PORT: u16 = 8080;
/// Docker API calls give up after this long.
const API_TIMEOUT_SECS: u64 = 10;
/// Events arriving within this window cause one resync.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Resyncs again this long after an event-driven one: the task state a
/// container event implies (running once healthy, failed once dead) is
/// recorded by the Swarm manager asynchronously.
const FOLLOW_UPS: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
];
/// The events that can change which functions exist or where their ready
/// replicas are. Health-check execs (`exec_create`, `exec_start`,
/// `exec_die`, several a second) are not among them.
const EVENTS: [&str; 13] = [
    "create",
    "update",
    "remove",
    "start",
    "health_status",
    "kill",
    "stop",
    "die",
    "oom",
    "destroy",
    "connect",
    "disconnect",
    "pause",
];
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// One discovered function, with what `list` reports.
#[derive(Debug, Clone)]
struct Known {
    service_id: String,
    service_name: String,
    status: FunctionStatus,
    discovered: Discovered,
}

pub struct SwarmProvider {
    /// As connected; `negotiated` replaces it once the engine's API version is known.
    raw: Docker,
    negotiated: OnceLock<Docker>,
    network: String,
    resync_interval: Duration,
    table: OnceLock<Arc<Table>>,
    known: Mutex<BTreeMap<String, Known>>,
    /// Our own service, never a function.
    own_service: OnceLock<Option<String>>,
    resync_now: Notify,
}

impl SwarmProvider {
    /// Connects lazily: nothing is sent until the first call.
    pub fn connect(config: &Config) -> Result<SwarmProvider, ProviderError> {
        let version = bollard::API_DEFAULT_VERSION;
        let docker = match config.docker_host.as_deref() {
            Some(host) if host.starts_with("tcp://") || host.starts_with("http://") => {
                Docker::connect_with_http(host, API_TIMEOUT_SECS, version)
            }
            Some(host) => Docker::connect_with_socket(host, API_TIMEOUT_SECS, version),
            None => Docker::connect_with_socket("/var/run/docker.sock", API_TIMEOUT_SECS, version),
        }
        .map_err(|e| ProviderError::Unavailable(format!("cannot connect to Docker: {e}")))?;
        Ok(SwarmProvider {
            raw: docker,
            negotiated: OnceLock::new(),
            network: config.functions_network.clone(),
            resync_interval: config.resync_interval,
            table: OnceLock::new(),
            known: Mutex::new(BTreeMap::new()),
            own_service: OnceLock::new(),
            resync_now: Notify::new(),
        })
    }

    fn table(&self) -> &Arc<Table> {
        self.table
            .get()
            .expect("the provider is started before use")
    }

    fn docker(&self) -> &Docker {
        self.negotiated.get().unwrap_or(&self.raw)
    }

    /// Our own service id, when the gateway runs as a Swarm task: the
    /// container's hostname is its id.
    async fn find_own_service(&self) -> Option<String> {
        let hostname = std::fs::read_to_string("/etc/hostname").ok()?;
        let container = self
            .docker()
            .inspect_container(hostname.trim(), None)
            .await
            .ok()?;
        container
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get("com.docker.swarm.service.id").cloned())
    }

    /// Reads services, tasks and endpoints, and replaces the table's view.
    async fn resync(&self) -> Result<(), ProviderError> {
        let services = self.docker().list_services(None).await.map_err(engine)?;
        let network = self
            .docker()
            .inspect_network(&self.network, Some(InspectNetworkOptionsBuilder::default().verbose(true).build()))
            .await
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => ProviderError::Unavailable(format!(
                    "the functions network {:?} does not exist (create it: docker network create --driver overlay --attachable {})",
                    self.network, self.network
                )),
                other => engine(other),
            })?;
        let network_ids: Vec<String> = [network.id.clone(), network.name.clone()]
            .into_iter()
            .flatten()
            .collect();
        // Task name (service.slot.taskid) → endpoint IP on the functions network.
        let mut endpoints: HashMap<String, IpAddr> = HashMap::new();
        for info in network.services.unwrap_or_default().into_values() {
            for task in info
                .get("Tasks")
                .and_then(|t| t.as_array())
                .into_iter()
                .flatten()
            {
                let name = task.get("Name").and_then(|n| n.as_str());
                let ip = task
                    .get("EndpointIP")
                    .and_then(|ip| ip.as_str())
                    .and_then(|ip| ip.split('/').next())
                    .and_then(|ip| ip.parse::<IpAddr>().ok());
                if let (Some(name), Some(ip)) = (name, ip) {
                    endpoints.insert(name.to_owned(), ip);
                }
            }
        }
        let own = self.own_service.get().cloned().flatten();
        let functions: Vec<(String, Service)> = services
            .into_iter()
            .filter(|s| s.id.is_some() && s.id != own)
            .filter_map(|s| function_name(&s, &network_ids).map(|name| (name, s)))
            .collect();

        let mut filters = HashMap::new();
        filters.insert("desired-state", vec!["running", "shutdown"]);
        let tasks = self
            .docker()
            .list_tasks(Some(
                ListTasksOptionsBuilder::default().filters(&filters).build(),
            ))
            .await
            .map_err(engine)?;

        let mut known: BTreeMap<String, Known> = BTreeMap::new();
        for (name, service) in functions {
            let service_id = service.id.clone().unwrap_or_default();
            let service_name = service
                .spec
                .as_ref()
                .and_then(|s| s.name.clone())
                .unwrap_or_default();
            let port = port_of(&service);
            let replicas: Vec<ReplicaInfo> = tasks
                .iter()
                .filter(|t| t.service_id.as_deref() == Some(service_id.as_str()))
                .filter_map(|t| replica_of(t, &service_name, &endpoints, port))
                .collect();
            let entry = Known {
                status: status_of(&name, &service, &replicas),
                discovered: Discovered {
                    name: name.clone(),
                    replicas,
                    labels: labels_of(&service),
                },
                service_id,
                service_name,
            };
            // Two services claiming one name: the one literally named so wins
            // (the seed's `docker service create --name catservice` over a
            // stack's faas_catservice).
            match known.get(&name) {
                Some(existing) if existing.service_name == name => {
                    tracing::warn!(function = %name, ignored = %entry.service_name, "two services claim this function name");
                }
                _ => {
                    known.insert(name, entry);
                }
            }
        }
        self.table()
            .replace_all(known.values().map(|k| k.discovered.clone()).collect());
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) = known;
        Ok(())
    }

    /// Resyncs on every tick, every event (and [`FOLLOW_UPS`] after it),
    /// and every explicit request.
    async fn discover_forever(self: Arc<Self>) {
        let events = tokio::spawn(self.clone().watch_events());
        let mut tick = tokio::time::interval(self.resync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When the pending follow-up resyncs are due, earliest first.
        let mut follow_ups: Vec<tokio::time::Instant> = Vec::new();
        loop {
            let next_follow_up = follow_ups.first().copied();
            tokio::select! {
                _ = tick.tick() => {}
                () = self.resync_now.notified() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    let now = tokio::time::Instant::now();
                    follow_ups = FOLLOW_UPS.iter().map(|d| now + *d).collect();
                }
                () = async {
                    match next_follow_up {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    follow_ups.remove(0);
                }
            }
            if let Err(e) = self.resync().await {
                tracing::warn!(error = %e, "swarm resync failed; keeping the last view");
            }
            if events.is_finished() {
                break;
            }
        }
    }

    /// Follows Docker's event stream, asking for a resync on each relevant
    /// event; reconnects (with backoff) when the stream ends.
    async fn watch_events(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut filters = HashMap::new();
            filters.insert("type", Vec::from(["service", "container", "network"]));
            filters.insert("event", Vec::from(EVENTS));
            let mut stream = self.docker().events(Some(
                EventsOptionsBuilder::default().filters(&filters).build(),
            ));
            let mut received = false;
            while let Some(event) = stream.next().await {
                match event {
                    Ok(_) => {
                        received = true;
                        self.resync_now.notify_one();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Docker event stream failed; reconnecting");
                        break;
                    }
                }
            }
            if received {
                backoff = Duration::from_millis(200);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            self.resync_now.notify_one();
        }
    }

    fn service_of(&self, name: &str) -> Result<String, ProviderError> {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|k| k.service_id.clone())
            .ok_or_else(|| ProviderError::NotFound(name.to_owned()))
    }
}

/// The function name a service goes by, if it is a function.
fn function_name(service: &Service, network_ids: &[String]) -> Option<String> {
    let spec = service.spec.as_ref()?;
    let service_name = spec.name.clone()?;
    let labels = spec.labels.clone().unwrap_or_default();
    if labels.get("faas.role").map(String::as_str) == Some("gateway") {
        return None;
    }
    let labelled = ["faas.function", "com.openfaas.function"]
        .iter()
        .find_map(|k| labels.get(*k).cloned());
    let attached = spec
        .task_template
        .as_ref()
        .and_then(|t| t.networks.clone())
        .into_iter()
        .chain(spec.networks.clone())
        .flatten()
        .any(|n| n.target.is_some_and(|t| network_ids.contains(&t)));
    if labelled.is_none() && !attached {
        return None;
    }
    // A label naming the function wins; `true` (or empty) only marks it.
    if let Some(name) = labelled.filter(|v| !matches!(v.as_str(), "" | "true" | "1"))
        && faas_common::is_valid_function_name(&name)
    {
        return Some(name);
    }
    // A stack's services are named `<stack>_<name>`.
    if let Some(namespace) = labels.get("com.docker.stack.namespace")
        && let Some(short) = service_name.strip_prefix(&format!("{namespace}_"))
    {
        return Some(short.to_owned());
    }
    Some(service_name)
}

/// The watchdog's port: the `faas.port` label, else 8080.
fn port_of(service: &Service) -> u16 {
    labels_of(service)
        .get("faas.port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(DEFAULT_PORT)
}

fn labels_of(service: &Service) -> BTreeMap<String, String> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn replica_of(
    task: &Task,
    service_name: &str,
    endpoints: &HashMap<String, IpAddr>,
    port: u16,
) -> Option<ReplicaInfo> {
    let id = task.id.clone()?;
    let running = task.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING);
    if !running {
        return None;
    }
    let state = match task.desired_state {
        Some(TaskState::RUNNING) => ReplicaState::Ready,
        _ => ReplicaState::Draining,
    };
    let task_name = format!("{service_name}.{}.{id}", task.slot.unwrap_or(0));
    let ip = endpoints.get(&task_name).or_else(|| {
        endpoints
            .iter()
            .find(|(name, _)| name.ends_with(&id))
            .map(|(_, ip)| ip)
    })?;
    Some(ReplicaInfo {
        id,
        addr: SocketAddr::new(*ip, port),
        state,
    })
}

fn status_of(name: &str, service: &Service, replicas: &[ReplicaInfo]) -> FunctionStatus {
    let spec = service.spec.clone().unwrap_or_default();
    let container = spec
        .task_template
        .and_then(|t| t.container_spec)
        .unwrap_or_default();
    let env_process = container
        .env
        .unwrap_or_default()
        .into_iter()
        .find_map(|e| e.strip_prefix("fprocess=").map(str::to_owned));
    FunctionStatus {
        name: name.to_owned(),
        image: container
            .image
            .unwrap_or_default()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_owned(),
        env_process,
        labels: labels_of(service),
        annotations: BTreeMap::new(),
        replicas: spec
            .mode
            .and_then(|m| m.replicated)
            .and_then(|r| r.replicas)
            .unwrap_or(0)
            .max(0) as u64,
        available_replicas: replicas
            .iter()
            .filter(|r| r.state == ReplicaState::Ready)
            .count() as u64,
        invocation_count: 0,
        created_at: service.created_at.as_ref().map(|t| t.to_string()),
    }
}

fn engine(e: bollard::errors::Error) -> ProviderError {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            ProviderError::Engine(message)
        }
        bollard::errors::Error::HyperResponseError { .. }
        | bollard::errors::Error::IOError { .. }
        | bollard::errors::Error::RequestTimeoutError => {
            ProviderError::Unavailable(format!("Docker is unreachable: {e}"))
        }
        other => ProviderError::Engine(other.to_string()),
    }
}

#[async_trait]
impl Provider for SwarmProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn start(self: Arc<Self>, table: Arc<Table>) -> Result<(), ProviderError> {
        let _ = self.table.set(table);
        // Speak the engine's API version, whatever bollard defaults to.
        let negotiated = self.raw.clone().negotiate_version().await.map_err(engine)?;
        let _ = self.negotiated.set(negotiated);
        let own = self.find_own_service().await;
        tracing::info!(own_service = ?own, network = %self.network, "swarm provider starting");
        let _ = self.own_service.set(own);
        self.resync().await?;
        tokio::spawn(self.clone().discover_forever());
        Ok(())
    }

    async fn health(&self) -> Result<(), ProviderError> {
        match tokio::time::timeout(PING_TIMEOUT, self.docker().ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(engine(e)),
            Err(_) => Err(ProviderError::Unavailable(
                "Docker did not answer a ping within 2s".into(),
            )),
        }
    }

    async fn list(&self) -> Result<Vec<FunctionStatus>, ProviderError> {
        Ok(self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|k| k.status.clone())
            .collect())
    }

    async fn deploy(&self, _deployment: Deployment) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported(
            "deploying through the gateway",
            NAME,
        ))
    }

    async fn update(&self, _deployment: Deployment) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported(
            "updating through the gateway",
            NAME,
        ))
    }

    async fn remove(&self, name: &str) -> Result<(), ProviderError> {
        let service = self.service_of(name)?;
        self.docker()
            .delete_service(&service)
            .await
            .map_err(engine)?;
        self.resync_now.notify_one();
        Ok(())
    }

    async fn scale(&self, name: &str, replicas: u64) -> Result<(), ProviderError> {
        let service = self.service_of(name)?;
        // Swarm refuses an update based on a stale version: read it again and retry.
        for attempt in 0..5 {
            let current = self
                .docker()
                .inspect_service(&service, None)
                .await
                .map_err(engine)?;
            let version = current.version.and_then(|v| v.index).unwrap_or(0);
            let mut spec = current.spec.unwrap_or_default();
            let mode = spec.mode.get_or_insert_with(Default::default);
            mode.replicated
                .get_or_insert_with(Default::default)
                .replicas = Some(replicas as i64);
            let options = UpdateServiceOptionsBuilder::default()
                .version(version as i32)
                .build();
            match self
                .docker()
                .update_service(&service, spec, options, None)
                .await
            {
                Ok(_) => {
                    self.resync_now.notify_one();
                    return Ok(());
                }
                Err(bollard::errors::Error::DockerResponseServerError { message, .. })
                    if message.contains("out of sequence") && attempt < 4 =>
                {
                    tracing::debug!(function = %name, "service update out of sequence; retrying");
                }
                Err(e) => return Err(engine(e)),
            }
        }
        Err(ProviderError::Engine(format!(
            "could not scale {name:?}: the service kept changing under us"
        )))
    }

    async fn shutdown(&self) {}
}
