//! Starting tasks, probed by the gateway itself. Docker runs a container's
//! first health check only one HEALTHCHECK interval after it starts (2 s
//! for our images), and until that check passes a Swarm task stays
//! `starting` and has no address in the network's service records. A cold
//! start would wait that long for nothing: the watchdog is ready within
//! milliseconds.
//!
//! So for each starting task the gateway reads its container's address on
//! the functions network and probes the watchdog's `/_/health` itself —
//! the very check `fwatchdog --healthcheck` makes, answered 200 only once
//! the watchdog is ready — every [`PROBE_EVERY`]. A task that answers is a
//! ready replica from then on; Docker's own check takes over when it runs
//! (the task turns `running`, or is replaced if it fails). Containers on
//! other nodes cannot be inspected through this node's API: their tasks
//! wait for Docker's check, as before.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::SwarmProvider;

const PROBE_EVERY: Duration = Duration::from_millis(50);
/// A watchdog not ready after this long is probed less often.
const SLOW_AFTER: Duration = Duration::from_secs(5);
const PROBE_SLOWLY: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// A task still not answering after this long is left to Docker's check.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

enum Early {
    Probing,
    Ready(SocketAddr),
}

/// The starting tasks being probed, and those that answered.
pub struct Starting {
    tasks: Mutex<HashMap<String, Early>>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Starting {
    pub fn new() -> Starting {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(PROBE_TIMEOUT));
        Starting {
            tasks: Mutex::new(HashMap::new()),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Early>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The address of a starting task whose watchdog has answered.
    pub fn ready(&self, task: &str) -> Option<SocketAddr> {
        match self.lock().get(task) {
            Some(Early::Ready(addr)) => Some(*addr),
            _ => None,
        }
    }

    /// Forgets every task not in `starting` (running now, or gone).
    pub fn retain(&self, starting: &HashSet<String>) {
        self.lock().retain(|task, _| starting.contains(task));
    }

    /// Whether `task` is new here (then the caller starts probing it).
    fn begin(&self, task: &str) -> bool {
        let mut tasks = self.lock();
        if tasks.contains_key(task) {
            return false;
        }
        tasks.insert(task.to_owned(), Early::Probing);
        true
    }

    fn still_probing(&self, task: &str) -> bool {
        matches!(self.lock().get(task), Some(Early::Probing))
    }

    async fn healthy(&self, addr: SocketAddr) -> bool {
        let Ok(uri) = format!("http://{addr}/_/health").parse::<http::Uri>() else {
            return false;
        };
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, self.client.get(uri)).await,
            Ok(Ok(response)) if response.status() == http::StatusCode::OK
        )
    }
}

impl SwarmProvider {
    /// Starts probing a starting task's container, unless already done.
    pub(super) fn probe_starting(&self, task: &str, container: &str, port: u16) {
        if !self.starting.begin(task) {
            return;
        }
        let Some(me) = self.me.get().and_then(Weak::upgrade) else {
            return;
        };
        tokio::spawn(me.probe(task.to_owned(), container.to_owned(), port));
    }

    async fn probe(self: Arc<Self>, task: String, container: String, port: u16) {
        let started = tokio::time::Instant::now();
        let mut addr = None;
        while self.starting.still_probing(&task) && started.elapsed() < GIVE_UP_AFTER {
            if addr.is_none() {
                match self.container_address(&container).await {
                    // Not on this node (or gone): Docker's check decides.
                    Err(()) => return,
                    Ok(ip) => addr = ip.map(|ip| SocketAddr::new(ip, port)),
                }
            }
            if let Some(addr) = addr
                && self.starting.healthy(addr).await
            {
                if self.starting.still_probing(&task) {
                    self.starting
                        .lock()
                        .insert(task.clone(), Early::Ready(addr));
                    tracing::debug!(task = %task, %addr, "starting task answers its health check");
                    self.resync_now.notify_one();
                }
                return;
            }
            // Quick while a fresh watchdog is expected, then gently.
            let pause = if started.elapsed() < SLOW_AFTER {
                PROBE_EVERY
            } else {
                PROBE_SLOWLY
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// A local container's address on the functions network (`None` while
    /// it has none); `Err` when this node's Docker does not know it.
    async fn container_address(&self, container: &str) -> Result<Option<IpAddr>, ()> {
        let inspected = self
            .docker()
            .inspect_container(container, None)
            .await
            .map_err(|_| ())?;
        let ids = self
            .network_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(inspected
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .find(|(name, endpoint)| {
                *name == self.network
                    || endpoint
                        .network_id
                        .as_ref()
                        .is_some_and(|id| ids.contains(id))
            })
            .and_then(|(_, endpoint)| endpoint.ip_address)
            .filter(|ip| !ip.is_empty())
            .and_then(|ip| ip.parse().ok()))
    }
}
