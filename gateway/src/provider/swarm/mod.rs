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
//!
//! Management (`/system/…`): deployments become services ([`spec`]), logs
//! come from the service log stream ([`logs`]), secrets are Swarm secrets
//! ([`secrets`]). Nothing is ever pulled: a deployment's image must exist
//! on this engine, no registry credentials are sent, and the image
//! reference stays as given (at API 1.30 and later Docker resolves no
//! digest when a service is created or updated; only the `docker` CLI
//! does). Docker's refusals reach the caller in Docker's words.

mod build;
mod logs;
mod secrets;
mod spec;
mod starting;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{Service, ServiceSpec, Task, TaskSpec, TaskState};
use bollard::query_parameters::{
    EventsOptionsBuilder, InspectNetworkOptionsBuilder, ListSecretsOptionsBuilder,
    ListServicesOptionsBuilder, ListTasksOptionsBuilder, UpdateServiceOptionsBuilder,
};
use faas_common::api::{Deployment, FunctionStatus, LogEntry};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::Notify;

use self::spec::Plan;
use super::{
    DEPLOYED_BY_GATEWAY, DEPLOYED_BY_LABEL, LogQuery, Provider, ProviderError, validate_secret_name,
};
use crate::build::{BuildError, BuildJob, BuildLog, Built};
use crate::config::Config;
use crate::functions::{Discovered, ReplicaInfo, ReplicaState, Table};
use faas_common::message::{error_chain, one_line};

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
/// Tries at a service update Swarm refuses as based on a stale version.
const UPDATE_ATTEMPTS: usize = 5;

/// One discovered function, with what `list` reports.
#[derive(Debug, Clone)]
struct Known {
    service_id: String,
    service_name: String,
    /// Deployed by the gateway (labelled `faas.deployed-by=gateway`): the
    /// only services the API updates or removes.
    ours: bool,
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
    /// The functions network's id and name, as the last resync found them.
    network_ids: Mutex<Vec<String>>,
    /// Our own service, never a function.
    own_service: OnceLock<Option<String>>,
    /// The `faas.deployed-by` value of the services we deploy ([`Self::owner`]).
    owner: OnceLock<String>,
    resync_now: Notify,
    /// Starting tasks the gateway probes itself ([`starting`]).
    starting: starting::Starting,
    /// Ourselves, for the probes' tasks.
    me: OnceLock<Weak<SwarmProvider>>,
    /// Contested names as last reported, so each is logged once.
    conflicts: Mutex<BTreeMap<String, String>>,
    /// The static watchdog put into images built from source (`--fwatchdog`;
    /// else beside the gateway, else on PATH).
    fwatchdog: Option<std::path::PathBuf>,
    /// Where built images are pushed (`--registry`), if anywhere.
    registry: Option<String>,
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
            network_ids: Mutex::new(Vec::new()),
            own_service: OnceLock::new(),
            owner: OnceLock::new(),
            resync_now: Notify::new(),
            starting: starting::Starting::new(),
            me: OnceLock::new(),
            conflicts: Mutex::new(BTreeMap::new()),
            fwatchdog: config.fwatchdog.clone(),
            registry: config.registry.clone(),
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

    /// Our own service's id and name, when the gateway runs as a Swarm
    /// task: the container's hostname is its id.
    async fn find_own_service(&self) -> Option<(String, String)> {
        let hostname = std::fs::read_to_string("/etc/hostname").ok()?;
        let container = self
            .docker()
            .inspect_container(hostname.trim(), None)
            .await
            .ok()?;
        let labels = container.config.and_then(|c| c.labels)?;
        Some((
            labels.get("com.docker.swarm.service.id")?.clone(),
            labels.get("com.docker.swarm.service.name")?.clone(),
        ))
    }

    /// What this gateway writes in `faas.deployed-by`: its service's name
    /// (`faas_gateway`) when it runs as one, so two stacks sharing the
    /// functions network do not change each other's functions; else
    /// `gateway`.
    fn owner(&self) -> &str {
        self.owner.get().map_or(DEPLOYED_BY_GATEWAY, String::as_str)
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
        let endpoints = endpoints_of(network.services.unwrap_or_default());
        let own = self.own_service.get().cloned().flatten();
        let services = services
            .into_iter()
            .filter(|s| s.id.is_some() && s.id != own);
        let (functions, conflicts) = choose_functions(services, &network_ids, self.owner());
        self.report_conflicts(&conflicts);

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
        let mut starting = HashSet::new();
        for (name, service) in functions {
            let conflict = conflicts.get(&name).cloned();
            let entry = self.view_of(&name, service, &tasks, &endpoints, conflict, &mut starting);
            known.insert(name, entry);
        }
        self.starting.retain(&starting);
        self.table()
            .replace_all(known.values().map(|k| k.discovered.clone()).collect());
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) = known;
        *self.network_ids.lock().unwrap_or_else(|e| e.into_inner()) = network_ids;
        Ok(())
    }

    /// One function's entry in the view: its replicas (tasks with an
    /// address on the functions network, or probed ready while starting;
    /// still-starting ones get a probe), status and ownership. `starting`
    /// collects the tasks still starting.
    fn view_of(
        &self,
        name: &str,
        service: Service,
        tasks: &[Task],
        endpoints: &HashMap<String, IpAddr>,
        conflict: Option<String>,
        starting: &mut HashSet<String>,
    ) -> Known {
        let service_id = service.id.clone().unwrap_or_default();
        let service_name = service
            .spec
            .as_ref()
            .and_then(|s| s.name.clone())
            .unwrap_or_default();
        let port = port_of(&service);
        let mut replicas = Vec::new();
        for task in tasks
            .iter()
            .filter(|t| t.service_id.as_deref() == Some(service_id.as_str()))
        {
            if let Some(replica) = replica_of(task, &service_name, endpoints, port) {
                replicas.push(replica);
            } else if let Some(id) = task.id.as_deref()
                && task.desired_state == Some(TaskState::RUNNING)
                && let Some(addr) = self.starting.ready(id)
            {
                // Probed while starting, running now, but not yet in
                // the network's records: still ready.
                starting.insert(id.to_owned());
                replicas.push(ReplicaInfo {
                    id: id.to_owned(),
                    addr,
                    state: ReplicaState::Ready,
                });
            } else if let Some((id, container)) = starting_task(task) {
                starting.insert(id.to_owned());
                match self.starting.ready(id) {
                    Some(addr) => replicas.push(ReplicaInfo {
                        id: id.to_owned(),
                        addr,
                        state: ReplicaState::Ready,
                    }),
                    None => self.probe_starting(id, container, port),
                }
            }
        }
        let current = current_ready_tasks(&service, tasks, &replicas);
        let mut status = status_of(name, &service, current);
        // Older tasks still routed to while an update rolls out.
        let ready = replicas
            .iter()
            .filter(|r| r.state == ReplicaState::Ready)
            .count() as u64;
        status.stale_replicas = ready.saturating_sub(current);
        status.conflict = conflict;
        let ours = labels_of(&service)
            .get(DEPLOYED_BY_LABEL)
            .map(String::as_str)
            == Some(self.owner());
        // Only replicated services have a count to scale.
        let replicated = service
            .spec
            .as_ref()
            .and_then(|s| s.mode.as_ref())
            .is_none_or(|m| m.replicated.is_some());
        Known {
            discovered: Discovered {
                name: name.to_owned(),
                replicas,
                labels: labels_of(&service),
                desired: replicated.then_some(status.replicas),
                problem: None,
            },
            status,
            service_id,
            service_name,
            ours,
        }
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

    /// Logs contested names when they appear, change or go away.
    fn report_conflicts(&self, now: &BTreeMap<String, String>) {
        let mut last = self.conflicts.lock().unwrap_or_else(|e| e.into_inner());
        for (name, text) in now {
            if last.get(name) != Some(text) {
                tracing::warn!(function = %name, "{text}");
            }
        }
        for name in last.keys().filter(|n| !now.contains_key(*n)) {
            tracing::info!(function = %name, "only one service claims this function name now");
        }
        *last = now.clone();
    }

    fn service_of(&self, name: &str) -> Result<String, ProviderError> {
        self.known_service(name).map(|(id, _)| id)
    }

    /// A known function's service id, if the gateway deployed it; else
    /// `NotOurs`, naming the service.
    fn our_service(&self, name: &str) -> Result<String, ProviderError> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        match known.get(name) {
            None => Err(ProviderError::NotFound(name.to_owned())),
            Some(k) if !k.ours => Err(ProviderError::NotOurs(
                name.to_owned(),
                k.service_name.clone(),
                self.owner().to_owned(),
            )),
            Some(k) => Ok(k.service_id.clone()),
        }
    }

    /// A known function's service id and service name.
    fn known_service(&self, name: &str) -> Result<(String, String), ProviderError> {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|k| (k.service_id.clone(), k.service_name.clone()))
            .ok_or_else(|| ProviderError::NotFound(name.to_owned()))
    }

    /// After a change of ours: resyncs at once, so the caller's next
    /// request sees it, then lets discovery follow Swarm as it converges.
    async fn changed(&self) {
        if let Err(e) = self.resync().await {
            tracing::warn!(error = %e, "swarm resync after a change failed");
        }
        self.resync_now.notify_one();
    }

    /// Whether a function or any service already goes by `name`.
    async fn taken(&self, name: &str) -> Result<bool, ProviderError> {
        if self.known_service(name).is_ok() {
            return Ok(true);
        }
        // By list, not inspect: inspect also matches id prefixes.
        let mut filters = HashMap::new();
        filters.insert("name", vec![name]);
        let services = self
            .docker()
            .list_services(Some(
                ListServicesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(engine)?;
        Ok(services
            .iter()
            .any(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name)))
    }

    /// Fails unless `image` exists on this engine: nothing can be pulled.
    async fn check_image(&self, image: &str) -> Result<(), ProviderError> {
        match self.docker().inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(ProviderError::Invalid(format!(
                "image {image:?} does not exist on this Docker engine; build it first (nothing can be pulled here)"
            ))),
            Err(e) => Err(engine(e)),
        }
    }

    /// The named secrets' ids; `Invalid` naming one that does not exist.
    async fn secret_ids(
        &self,
        names: &BTreeSet<&str>,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        let mut ids = BTreeMap::new();
        if names.is_empty() {
            return Ok(ids);
        }
        let found = self.find_secrets(names.iter().copied().collect()).await?;
        for (name, id) in found {
            if names.contains(name.as_str()) {
                ids.insert(name, id);
            }
        }
        match names.iter().find(|n| !ids.contains_key(**n)) {
            Some(missing) => Err(ProviderError::Invalid(format!(
                "secret {missing:?} does not exist; create it first (faas secret create)"
            ))),
            None => Ok(ids),
        }
    }

    /// The secrets the API created (labelled `faas.secret=true`) as
    /// (name, id): all of them or those whose names start with one of
    /// `prefixes` (Docker's `name` filter matches prefixes). No other
    /// secret is ever listed, mounted or removed through the API.
    async fn find_secrets(
        &self,
        prefixes: Vec<&str>,
    ) -> Result<Vec<(String, String)>, ProviderError> {
        let mut filters = HashMap::new();
        filters.insert("label", vec![secrets::SECRET_FILTER]);
        if !prefixes.is_empty() {
            filters.insert("name", prefixes);
        }
        let options = ListSecretsOptionsBuilder::default()
            .filters(&filters)
            .build();
        let secrets = self
            .docker()
            .list_secrets(Some(options))
            .await
            .map_err(engine)?;
        Ok(secrets
            .into_iter()
            .filter_map(|s| {
                let spec = s.spec?;
                // Checked here too, not only by Docker's filter.
                let ours = spec
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(secrets::SECRET_LABEL))
                    .is_some_and(|v| v == "true");
                ours.then_some((spec.name?, s.id?))
            })
            .collect())
    }

    /// Changes a service's spec with `change` and submits it, reading the
    /// spec again and retrying while Swarm refuses the update as based on
    /// a stale version.
    async fn modify_service(
        &self,
        name: &str,
        service: &str,
        change: impl Fn(&mut ServiceSpec),
    ) -> Result<(), ProviderError> {
        for attempt in 1..=UPDATE_ATTEMPTS {
            let current = self
                .docker()
                .inspect_service(service, None)
                .await
                .map_err(about(name))?;
            let version = current.version.and_then(|v| v.index).unwrap_or(0);
            let mut spec = current.spec.unwrap_or_default();
            change(&mut spec);
            let options = UpdateServiceOptionsBuilder::default()
                .version(i32::try_from(version).unwrap_or(i32::MAX))
                .build();
            match self
                .docker()
                .update_service(service, spec, options, None)
                .await
            {
                Ok(answer) => {
                    for warning in answer.warnings.into_iter().flatten() {
                        tracing::debug!(function = %name, %warning, "Docker's warning on a service update");
                    }
                    return Ok(());
                }
                Err(DockerError::DockerResponseServerError { message, .. })
                    if message.contains("out of sequence") && attempt < UPDATE_ATTEMPTS =>
                {
                    tracing::debug!(function = %name, "service update out of sequence; retrying");
                }
                Err(e) => return Err(about(name)(e)),
            }
        }
        Err(ProviderError::Engine(format!(
            "could not update {name:?}: the service kept changing under us"
        )))
    }
}

/// How strongly a service claims a function name, when several do: the
/// gateway's own deployment first, then a service on the functions
/// network (one elsewhere cannot even be reached), then the one literally
/// named so (the seed's `docker service create --name catservice` over a
/// stack's `faas_catservice`), then by service name. Deterministic, so
/// every resync and every gateway picks the same.
struct Claim {
    ours: bool,
    attached: bool,
    literal: bool,
    service_name: String,
}

/// Task name (`service.slot.taskid`) → its address on the functions
/// network, from the network's verbose inspection.
fn endpoints_of(services: HashMap<String, serde_json::Value>) -> HashMap<String, IpAddr> {
    let mut endpoints = HashMap::new();
    for info in services.into_values() {
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
    endpoints
}

/// The services that are functions, one per name: where several claim a
/// name, the strongest [`Claim`] wins and the others are told in the
/// name's conflict text.
fn choose_functions(
    services: impl Iterator<Item = Service>,
    network_ids: &[String],
    owner: &str,
) -> (Vec<(String, Service)>, BTreeMap<String, String>) {
    let mut claims: BTreeMap<String, Vec<Service>> = BTreeMap::new();
    for service in services {
        if let Some(name) = function_name(&service, network_ids) {
            claims.entry(name).or_default().push(service);
        }
    }
    let mut conflicts = BTreeMap::new();
    let functions = claims
        .into_iter()
        .map(|(name, mut claimants)| {
            claimants.sort_by_cached_key(|s| Claim::of(&name, s, network_ids, owner).rank());
            let winner = claimants.remove(0);
            if !claimants.is_empty() {
                conflicts.insert(
                    name.clone(),
                    conflict_text(&name, &winner, &claimants, network_ids, owner),
                );
            }
            (name, winner)
        })
        .collect();
    (functions, conflicts)
}

impl Claim {
    fn of(name: &str, service: &Service, network_ids: &[String], owner: &str) -> Claim {
        let labels = labels_of(service);
        let service_name = service
            .spec
            .as_ref()
            .and_then(|s| s.name.clone())
            .unwrap_or_default();
        Claim {
            ours: labels.get(DEPLOYED_BY_LABEL).map(String::as_str) == Some(owner),
            attached: attached(service, network_ids),
            literal: service_name == name,
            service_name,
        }
    }

    fn rank(self) -> (bool, bool, bool, String) {
        (!self.ours, !self.attached, !self.literal, self.service_name)
    }

    fn why(&self) -> &'static str {
        match (self.ours, self.attached, self.literal) {
            (true, _, _) => "deployed by the gateway",
            (false, true, true) => "on the functions network, named exactly so",
            (false, true, false) => "on the functions network",
            (false, false, true) => "named exactly so",
            (false, false, false) => "first by service name",
        }
    }
}

/// One line saying which service serves a contested name and which are
/// ignored.
fn conflict_text(
    name: &str,
    winner: &Service,
    others: &[Service],
    network_ids: &[String],
    owner: &str,
) -> String {
    let chosen = Claim::of(name, winner, network_ids, owner);
    let ignored: Vec<String> = others
        .iter()
        .map(|s| Claim::of(name, s, network_ids, owner).service_name)
        .collect();
    format!(
        "{} services claim the name {name:?}: served by {:?} ({}); ignored: {}",
        others.len() + 1,
        chosen.service_name,
        chosen.why(),
        ignored.join(", ")
    )
}

/// Whether a service is attached to the functions network.
fn attached(service: &Service, network_ids: &[String]) -> bool {
    let Some(spec) = service.spec.as_ref() else {
        return false;
    };
    spec.task_template
        .as_ref()
        .and_then(|t| t.networks.clone())
        .into_iter()
        .chain(spec.networks.clone())
        .flatten()
        .any(|n| n.target.is_some_and(|t| network_ids.contains(&t)))
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
    if labelled.is_none() && !attached(service, network_ids) {
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

/// A task that is starting and meant to run, with its container: its
/// watchdog may be ready before Docker's first health check says so.
fn starting_task(task: &Task) -> Option<(&str, &str)> {
    let status = task.status.as_ref()?;
    if status.state != Some(TaskState::STARTING) || task.desired_state != Some(TaskState::RUNNING) {
        return None;
    }
    let container = status.container_status.as_ref()?.container_id.as_deref()?;
    Some((task.id.as_deref()?, container))
}

/// Running tasks meant to run that were started from the service's current
/// spec. During a rolling update the old tasks still serve (and are still
/// routed to until they drain) but are not what was asked for: counting
/// them would report an update ready before it has rolled out. Only
/// replicas the gateway can route to (`replicas`, ready) count.
fn current_ready_tasks(service: &Service, tasks: &[Task], replicas: &[ReplicaInfo]) -> u64 {
    let template = service.spec.as_ref().and_then(|s| s.task_template.as_ref());
    replicas
        .iter()
        .filter(|r| r.state == ReplicaState::Ready)
        .filter(|r| {
            template.is_none()
                || tasks.iter().any(|t| {
                    t.id.as_deref() == Some(r.id.as_str()) && same_spec(t.spec.as_ref(), template)
                })
        })
        .count() as u64
}

/// Whether a task was made from this task template. Docker fills in a few
/// defaults differently on the two sides (an empty `DNSConfig` on the
/// service, `Runtime` left out of the task), so both are compared with
/// empty values and the runtime dropped.
fn same_spec(task: Option<&TaskSpec>, template: Option<&TaskSpec>) -> bool {
    fn normalized(spec: Option<&TaskSpec>) -> serde_json::Value {
        let mut value = serde_json::to_value(spec).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.remove("Runtime");
        }
        prune(&mut value);
        value
    }
    fn prune(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for v in map.values_mut() {
                    prune(v);
                }
                map.retain(|_, v| !is_empty(v));
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(prune),
            _ => {}
        }
    }
    fn is_empty(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Null => true,
            serde_json::Value::Object(m) => m.is_empty(),
            serde_json::Value::Array(a) => a.is_empty(),
            _ => false,
        }
    }
    normalized(task) == normalized(template)
}

/// `available`: see [`current_ready_tasks`].
fn status_of(name: &str, service: &Service, available: u64) -> FunctionStatus {
    let spec = service.spec.clone().unwrap_or_default();
    let task = spec.task_template.unwrap_or_default();
    let container = task.container_spec.unwrap_or_default();
    let mut env_vars: BTreeMap<String, String> = container
        .env
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let env_process = env_vars.remove("fprocess");
    let (labels, annotations) = spec::split_annotations(labels_of(service));
    let (limits, requests) = spec::resources_back(task.resources.as_ref());
    FunctionStatus {
        name: name.to_owned(),
        namespace: faas_common::api::NAMESPACE.to_owned(),
        image: container
            .image
            .unwrap_or_default()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_owned(),
        env_process,
        env_vars,
        labels,
        annotations,
        constraints: task
            .placement
            .and_then(|p| p.constraints)
            .unwrap_or_default(),
        secrets: container
            .secrets
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| s.secret_name)
            .collect(),
        limits,
        requests,
        read_only_root_filesystem: container.read_only.unwrap_or(false),
        replicas: spec
            .mode
            .and_then(|m| m.replicated)
            .and_then(|r| r.replicas)
            .unwrap_or(0)
            .max(0) as u64,
        available_replicas: available,
        stale_replicas: 0,
        invocation_count: 0,
        created_at: service.created_at.as_ref().map(|t| t.to_string()),
        scaling: None,
        conflict: None,
        problem: None,
    }
}

/// Docker's error as ours. Refusals keep Docker's words, as one line:
/// 400 (and 404, without a subject to name) is the caller's mistake, 503
/// a Docker that cannot manage a swarm now. Connection trouble is
/// `Unavailable`.
fn engine(e: DockerError) -> ProviderError {
    match e {
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => {
            let message = docker_message(status_code, &message);
            match status_code {
                400 | 404 => ProviderError::Invalid(message),
                503 => ProviderError::Unavailable(message),
                _ => ProviderError::Engine(message),
            }
        }
        DockerError::RequestTimeoutError => {
            ProviderError::Unavailable(format!("Docker did not answer within {API_TIMEOUT_SECS}s"))
        }
        DockerError::HyperResponseError { .. }
        | DockerError::HyperLegacyError { .. }
        | DockerError::IOError { .. }
        | DockerError::SocketNotFoundError(_) => {
            ProviderError::Unavailable(format!("Docker is unreachable: {}", error_chain(&e)))
        }
        other => ProviderError::Engine(error_chain(&other)),
    }
}

/// Like [`engine`], for a call about one function: Docker's 404 is
/// `NotFound` and its 409 `Conflict`, naming it.
fn about(function: &str) -> impl Fn(DockerError) -> ProviderError + '_ {
    move |e| match e {
        DockerError::DockerResponseServerError {
            status_code: 404, ..
        } => ProviderError::NotFound(function.to_owned()),
        DockerError::DockerResponseServerError {
            status_code: 409, ..
        } => ProviderError::Conflict(function.to_owned()),
        other => engine(other),
    }
}

/// Like [`engine`], for a call about one secret: Docker's 404 is
/// `SecretNotFound`, its 409 `SecretExists`, and its 400 on removal
/// (`secret 'x' is in use by the following service: y`) `InUse`.
fn about_secret(secret: &str) -> impl Fn(DockerError) -> ProviderError + '_ {
    move |e| match e {
        DockerError::DockerResponseServerError {
            status_code: 404, ..
        } => ProviderError::SecretNotFound(secret.to_owned()),
        DockerError::DockerResponseServerError {
            status_code: 409, ..
        } => ProviderError::SecretExists(secret.to_owned()),
        DockerError::DockerResponseServerError {
            status_code: 400,
            message,
        } if message.contains("in use") => ProviderError::InUse(docker_message(400, &message)),
        other => engine(other),
    }
}

/// Docker's message without the swarm's gRPC wrapping (`rpc error: code =
/// InvalidArgument desc = …`), on one line.
fn docker_message(status: u16, message: &str) -> String {
    let message = message.trim();
    let message = message
        .strip_prefix("rpc error: code = ")
        .and_then(|rest| rest.split_once(" desc = "))
        .map_or(message, |(_, desc)| desc);
    let message = one_line(message);
    if message.is_empty() {
        format!("Docker answered {status} without a message")
    } else {
        message
    }
}

#[async_trait]
impl Provider for SwarmProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn limits(&self) -> String {
        "cgroups, by the Docker engine of the node a task runs on".to_owned()
    }

    async fn start(self: Arc<Self>, table: Arc<Table>) -> Result<(), ProviderError> {
        let _ = self.table.set(table);
        let _ = self.me.set(Arc::downgrade(&self));
        // Speak the engine's API version, whatever bollard defaults to.
        let negotiated = self.raw.clone().negotiate_version().await.map_err(engine)?;
        let _ = self.negotiated.set(negotiated);
        let own = self.find_own_service().await;
        if let Some((_, name)) = &own {
            let _ = self.owner.set(name.clone());
        }
        tracing::info!(own_service = ?own, owner = self.owner(), network = %self.network, "swarm provider starting");
        let _ = self.own_service.set(own.map(|(id, _)| id));
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

    async fn deploy(&self, deployment: Deployment) -> Result<(), ProviderError> {
        let plan = Plan::new(deployment)?.owned_by(self.owner());
        let name = plan.name().to_owned();
        if self.taken(&name).await? {
            return Err(ProviderError::Conflict(name));
        }
        self.check_image(plan.image()).await?;
        let secrets = self.secret_ids(&plan.secrets()).await?;
        let spec = plan.service_spec(&self.network, &secrets);
        // No credentials: nothing is pulled, and Docker resolves no digest.
        let created = self
            .docker()
            .create_service(spec, None)
            .await
            .map_err(|e| match e {
                // Created meanwhile by someone else. (A 404 here is about the
                // network or a secret, not the function: `engine` says which.)
                DockerError::DockerResponseServerError {
                    status_code: 409, ..
                } => ProviderError::Conflict(name.clone()),
                other => engine(other),
            })?;
        for warning in created.warnings.into_iter().flatten() {
            tracing::debug!(function = %name, %warning, "Docker's warning on a service create");
        }
        tracing::debug!(function = %name, service = ?created.id, image = %plan.image(), "function deployed");
        self.changed().await;
        Ok(())
    }

    async fn build(&self, job: &BuildJob, log: &BuildLog) -> Result<Built, BuildError> {
        let mut built = build::build(self.docker(), self.fwatchdog.as_deref(), job, log).await?;
        if let Some(registry) = &self.registry {
            built.image = build::push(self.docker(), registry, &built.image, job, log).await?;
        }
        Ok(built)
    }

    async fn update(&self, deployment: Deployment) -> Result<(), ProviderError> {
        let plan = Plan::new(deployment)?.owned_by(self.owner());
        let name = plan.name().to_owned();
        let service = self.our_service(&name)?;
        self.check_image(plan.image()).await?;
        let secrets = self.secret_ids(&plan.secrets()).await?;
        let network_ids = {
            let ids = self.network_ids.lock().unwrap_or_else(|e| e.into_inner());
            std::iter::once(self.network.clone())
                .chain(ids.iter().cloned())
                .collect::<Vec<_>>()
        };
        self.modify_service(&name, &service, |spec| {
            plan.apply(spec, &network_ids, &secrets);
            // Always roll: the tag may name a rebuilt image now (nothing
            // is pinned by digest), which Swarm cannot see as a change.
            let task = spec.task_template.get_or_insert_with(Default::default);
            task.force_update = Some(task.force_update.unwrap_or(0).wrapping_add(1));
        })
        .await?;
        tracing::debug!(function = %name, image = %plan.image(), "function updated");
        self.changed().await;
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), ProviderError> {
        let service = self.our_service(name)?;
        self.docker()
            .delete_service(&service)
            .await
            .map_err(about(name))?;
        tracing::debug!(function = %name, "function removed");
        self.changed().await;
        Ok(())
    }

    async fn scale(&self, name: &str, replicas: u64) -> Result<(), ProviderError> {
        let service = self.service_of(name)?;
        let replicas = i64::try_from(replicas).unwrap_or(i64::MAX);
        self.modify_service(name, &service, |spec| {
            spec.mode
                .get_or_insert_with(Default::default)
                .replicated
                .get_or_insert_with(Default::default)
                .replicas = Some(replicas);
        })
        .await?;
        // Listed at once; the resync that follows confirms it.
        if let Some(known) = self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(name)
        {
            known.status.replicas = replicas.max(0) as u64;
        }
        self.resync_now.notify_one();
        Ok(())
    }

    async fn logs(&self, query: LogQuery) -> Result<BoxStream<'static, LogEntry>, ProviderError> {
        let (service_id, service_name) = self.known_service(&query.name)?;
        let docker = self
            .docker()
            .clone()
            .with_request_modifier(logs::with_details);
        let names = logs::TaskNames::load(docker.clone(), &service_id, &service_name).await;
        Ok(logs::stream(
            &docker,
            &service_id,
            query.name.clone(),
            names,
            &query,
        ))
    }

    async fn secrets(&self) -> Result<Vec<String>, ProviderError> {
        let mut names: Vec<String> = self
            .find_secrets(Vec::new())
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        names.sort();
        Ok(names)
    }

    async fn create_secret(&self, name: &str, value: Vec<u8>) -> Result<(), ProviderError> {
        validate_secret_name(name)?;
        self.docker()
            .create_secret(secrets::secret_spec(name, &value))
            .await
            .map_err(about_secret(name))?;
        tracing::debug!(secret = %name, "secret created");
        Ok(())
    }

    async fn remove_secret(&self, name: &str) -> Result<(), ProviderError> {
        validate_secret_name(name)?;
        let id = self
            .find_secrets(vec![name])
            .await?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id)
            .ok_or_else(|| ProviderError::SecretNotFound(name.to_owned()))?;
        self.docker()
            .delete_secret(&id)
            .await
            .map_err(about_secret(name))?;
        tracing::debug!(secret = %name, "secret removed");
        Ok(())
    }

    async fn shutdown(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status_code: u16, message: &str) -> DockerError {
        DockerError::DockerResponseServerError {
            status_code,
            message: message.to_owned(),
        }
    }

    #[test]
    fn docker_refusals_map_by_status_in_dockers_words() {
        match engine(refusal(
            400,
            "rpc error: code = InvalidArgument desc = name must be valid as a DNS name component",
        )) {
            ProviderError::Invalid(m) => {
                assert_eq!(m, "name must be valid as a DNS name component")
            }
            other => panic!("{other:?}"),
        }
        match engine(refusal(404, "network functions not found")) {
            ProviderError::Invalid(m) => assert_eq!(m, "network functions not found"),
            other => panic!("{other:?}"),
        }
        match engine(refusal(500, "something\nbroke  badly")) {
            ProviderError::Engine(m) => assert_eq!(m, "something broke badly"),
            other => panic!("{other:?}"),
        }
        match engine(refusal(503, "This node is not a swarm manager.")) {
            ProviderError::Unavailable(m) => assert_eq!(m, "This node is not a swarm manager."),
            other => panic!("{other:?}"),
        }
        match engine(refusal(500, "")) {
            ProviderError::Engine(m) => assert_eq!(m, "Docker answered 500 without a message"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            engine(DockerError::RequestTimeoutError),
            ProviderError::Unavailable(_)
        ));
    }

    #[test]
    fn refusals_about_a_function_or_secret_name_it() {
        assert!(matches!(
            about("x")(refusal(404, "service x not found")),
            ProviderError::NotFound(n) if n == "x"
        ));
        assert!(matches!(
            about("x")(refusal(
                409,
                "rpc error: code = AlreadyExists desc = name conflicts with an existing object: service x already exists"
            )),
            ProviderError::Conflict(n) if n == "x"
        ));
        assert!(matches!(
            about_secret("x")(refusal(404, "secret x not found")),
            ProviderError::SecretNotFound(n) if n == "x"
        ));
        assert!(matches!(
            about_secret("x")(refusal(
                409,
                "rpc error: code = AlreadyExists desc = secret x already exists"
            )),
            ProviderError::SecretExists(n) if n == "x"
        ));
        match about_secret("x")(refusal(
            400,
            "rpc error: code = InvalidArgument desc = secret 'x' is in use by the following service: y",
        )) {
            ProviderError::InUse(m) => {
                assert_eq!(m, "secret 'x' is in use by the following service: y")
            }
            other => panic!("{other:?}"),
        }
        match about("x")(refusal(400, "rpc error: code = InvalidArgument desc = bad")) {
            ProviderError::Invalid(m) => assert_eq!(m, "bad"),
            other => panic!("{other:?}"),
        }
    }

    fn service(name: &str, labels: &[(&str, &str)], networks: &[&str]) -> Service {
        Service {
            spec: Some(ServiceSpec {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                task_template: Some(TaskSpec {
                    networks: Some(
                        networks
                            .iter()
                            .map(|n| bollard::models::NetworkAttachmentConfig {
                                target: Some((*n).to_owned()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn winner(name: &str, mut claimants: Vec<Service>, network: &[String]) -> String {
        claimants.sort_by_cached_key(|s| Claim::of(name, s, network, "gateway").rank());
        claimants[0].spec.as_ref().unwrap().name.clone().unwrap()
    }

    #[test]
    fn endpoints_come_from_the_networks_task_records() {
        let services: HashMap<String, serde_json::Value> = serde_json::from_str(
            r#"{
                "faas_echo": {"Tasks": [
                    {"Name": "faas_echo.1.abc", "EndpointIP": "10.0.1.5/24"},
                    {"Name": "faas_echo.2.def", "EndpointIP": "10.0.1.6"},
                    {"Name": "faas_echo.3.ghi", "EndpointIP": "not-an-ip"},
                    {"EndpointIP": "10.0.1.7/24"}
                ]},
                "other": {"VIP": "10.0.1.2"}
            }"#,
        )
        .unwrap();
        let endpoints = endpoints_of(services);
        assert_eq!(endpoints.len(), 2, "{endpoints:?}");
        assert_eq!(endpoints["faas_echo.1.abc"], IpAddr::from([10, 0, 1, 5]));
        assert_eq!(endpoints["faas_echo.2.def"], IpAddr::from([10, 0, 1, 6]));
    }

    #[test]
    fn functions_are_chosen_one_per_name_and_contests_are_told() {
        let net = vec!["fn-net-id".to_owned(), "functions".to_owned()];
        let ours = service(
            "faas_echo",
            &[
                ("com.docker.stack.namespace", "faas"),
                (DEPLOYED_BY_LABEL, "gateway"),
            ],
            &["functions"],
        );
        let stray = service("echo", &[], &["functions"]);
        let lone = service("wordcount", &[], &["fn-net-id"]);
        let elsewhere = service("db", &[], &["backend"]);
        let (functions, conflicts) =
            choose_functions([stray, elsewhere, ours, lone].into_iter(), &net, "gateway");
        let names: Vec<(&str, &str)> = functions
            .iter()
            .map(|(name, s)| {
                (
                    name.as_str(),
                    s.spec.as_ref().unwrap().name.as_deref().unwrap(),
                )
            })
            .collect();
        assert_eq!(names, [("echo", "faas_echo"), ("wordcount", "wordcount")]);
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert!(conflicts["echo"].contains("faas_echo"), "{conflicts:?}");
    }

    #[test]
    fn a_contested_name_goes_to_the_strongest_claim_whatever_the_order() {
        let net = vec!["fn-net-id".to_owned(), "functions".to_owned()];
        // OpenFaaS's own `markdown`, on its network, named exactly so.
        let theirs = service(
            "markdown",
            &[("com.openfaas.function", "markdown")],
            &["func_functions"],
        );
        // This stack's faas_markdown, on the functions network.
        let stack = service(
            "faas_markdown",
            &[
                ("faas.function", "markdown"),
                ("com.docker.stack.namespace", "faas"),
            ],
            &["fn-net-id"],
        );
        let deployed = service(
            "markdown2",
            &[
                ("faas.function", "markdown"),
                ("faas.deployed-by", "gateway"),
            ],
            &["fn-net-id"],
        );
        for order in [
            vec![theirs.clone(), stack.clone()],
            vec![stack.clone(), theirs.clone()],
        ] {
            assert_eq!(function_name(&order[0], &net).as_deref(), Some("markdown"));
            assert_eq!(winner("markdown", order, &net), "faas_markdown");
        }
        assert_eq!(
            winner(
                "markdown",
                vec![theirs.clone(), stack.clone(), deployed.clone()],
                &net
            ),
            "markdown2"
        );
        // Both on the network, neither ours: the seed's literally named one.
        let seed = service("markdown", &[], &["functions"]);
        assert_eq!(
            winner("markdown", vec![stack.clone(), seed.clone()], &net),
            "markdown"
        );
        let text = conflict_text("markdown", &stack, &[theirs], &net, "gateway");
        assert!(
            text.contains("\"faas_markdown\" (on the functions network)")
                && text.contains("ignored: markdown"),
            "{text}"
        );
    }

    #[test]
    fn annotations_round_trip_through_the_status() {
        let deployment = Deployment {
            service: "catservice".into(),
            image: "faas/catservice:latest".into(),
            env_process: Some("cat".into()),
            labels: BTreeMap::from([("team".into(), "blue".into())]),
            annotations: BTreeMap::from([("topic".into(), "demo".into())]),
            ..Default::default()
        };
        let plan = Plan::new(deployment).expect("valid");
        let service = Service {
            spec: Some(plan.service_spec("functions", &BTreeMap::new())),
            ..Default::default()
        };
        let status = status_of("catservice", &service, 0);
        assert_eq!(
            status.annotations,
            BTreeMap::from([("topic".to_owned(), "demo".to_owned())])
        );
        assert_eq!(
            status.labels,
            BTreeMap::from([
                ("faas.deployed-by".to_owned(), "gateway".to_owned()),
                ("faas.function".to_owned(), "catservice".to_owned()),
                ("team".to_owned(), "blue".to_owned()),
            ])
        );
        assert_eq!(status.env_process.as_deref(), Some("cat"));
        assert_eq!(status.image, "faas/catservice:latest");
        assert_eq!(status.replicas, 1);
        assert_eq!(status.available_replicas, 0);
    }

    #[test]
    fn a_deployed_service_is_a_function_by_its_label() {
        let plan = Plan::new(Deployment {
            service: "catservice".into(),
            image: "faas/catservice:latest".into(),
            ..Default::default()
        })
        .expect("valid");
        let service = Service {
            spec: Some(plan.service_spec("functions", &BTreeMap::new())),
            ..Default::default()
        };
        assert_eq!(
            function_name(&service, &["netid".to_owned()]).as_deref(),
            Some("catservice")
        );
    }

    #[test]
    fn tasks_of_the_current_spec_are_told_from_older_ones() {
        // As Docker 20.10 answers: the service's template carries an empty
        // DNSConfig and the runtime, its tasks' copies do not.
        let template: TaskSpec = serde_json::from_value(serde_json::json!({
            "ContainerSpec": {"Image": "faas/env:latest", "Env": ["GREETING=after"], "DNSConfig": {}},
            "ForceUpdate": 2,
            "Runtime": "container"
        }))
        .unwrap();
        let task: TaskSpec = serde_json::from_value(serde_json::json!({
            "ContainerSpec": {"Image": "faas/env:latest", "Env": ["GREETING=after"]},
            "ForceUpdate": 2
        }))
        .unwrap();
        assert!(same_spec(Some(&task), Some(&template)));
        let older: TaskSpec = serde_json::from_value(serde_json::json!({
            "ContainerSpec": {"Image": "faas/env:latest", "Env": ["GREETING=before"]},
            "ForceUpdate": 1
        }))
        .unwrap();
        assert!(!same_spec(Some(&older), Some(&template)));
    }
}
