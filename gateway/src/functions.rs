//! The gateway's view of the functions and their replicas: which functions
//! exist and where their ready replicas listen. Providers keep it current
//! (discovery); requests only read it, so no call ever waits on Docker.
//!
//! Balancing lives here too: a call goes to the ready replica with the
//! fewest calls in flight, ties broken round robin. Replicas that are
//! shutting down (draining) are used only when no ready one is left: they
//! still serve during their drain delay, which keeps a rolling update of a
//! single-replica function from refusing calls.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::metrics::{FunctionMetrics, Metrics};

/// Whether a replica takes new calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    Ready,
    /// Shutting down but still serving: a last resort.
    Draining,
}

/// One replica as a provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// Stable across refreshes (a task id, a process id), so the in-flight
    /// count survives a refresh.
    pub id: String,
    pub addr: SocketAddr,
    pub state: ReplicaState,
}

/// One function as a provider reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    pub name: String,
    pub replicas: Vec<ReplicaInfo>,
    pub labels: BTreeMap<String, String>,
}

pub struct Replica {
    pub id: String,
    pub addr: SocketAddr,
    /// `addr` as a URI authority, built once.
    pub authority: http::uri::Authority,
    pub state: ReplicaState,
    inflight: AtomicUsize,
}

impl Replica {
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }
}

/// Counts a call against its replica until dropped.
pub struct ReplicaGuard(Arc<Replica>);

impl ReplicaGuard {
    pub fn replica(&self) -> &Arc<Replica> {
        &self.0
    }
}

impl Drop for ReplicaGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Function {
    pub name: String,
    replicas: RwLock<Arc<[Arc<Replica>]>>,
    labels: RwLock<BTreeMap<String, String>>,
    /// Woken whenever the replica set changes.
    changed: Notify,
    next: AtomicUsize,
    pub metrics: FunctionMetrics,
}

impl Function {
    fn new(name: &str, metrics: &Metrics) -> Function {
        Function {
            name: name.to_owned(),
            replicas: RwLock::new(Arc::from(Vec::new())),
            labels: RwLock::new(BTreeMap::new()),
            changed: Notify::new(),
            next: AtomicUsize::new(0),
            metrics: metrics.function(name),
        }
    }

    pub fn replicas(&self) -> Arc<[Arc<Replica>]> {
        self.replicas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        self.labels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn ready_count(&self) -> usize {
        self.replicas()
            .iter()
            .filter(|r| r.state == ReplicaState::Ready)
            .count()
    }

    /// The replica for the next call, counted as in flight: the ready one
    /// with the fewest calls, else a draining one, never one in `exclude`.
    pub fn pick(&self, exclude: &[SocketAddr]) -> Option<ReplicaGuard> {
        let replicas = self.replicas();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for state in [ReplicaState::Ready, ReplicaState::Draining] {
            let n = replicas.len();
            let best = (0..n)
                .map(|i| &replicas[(start + i) % n])
                .filter(|r| r.state == state && !exclude.contains(&r.addr))
                .min_by_key(|r| r.inflight());
            if let Some(best) = best {
                best.inflight.fetch_add(1, Ordering::Relaxed);
                return Some(ReplicaGuard(best.clone()));
            }
        }
        None
    }

    /// Like [`pick`](Self::pick), waiting up to `wait` for a replica to
    /// appear (one starting, a rolling update between tasks).
    pub async fn pick_or_wait(
        &self,
        exclude: &[SocketAddr],
        wait: Duration,
    ) -> Option<ReplicaGuard> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Register before looking, so a change in between is not missed.
            changed.as_mut().enable();
            if let Some(guard) = self.pick(exclude) {
                return Some(guard);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    fn set(&self, discovered: Discovered) {
        {
            let mut replicas = self.replicas.write().unwrap_or_else(|e| e.into_inner());
            let old = replicas.clone();
            let fresh: Vec<Arc<Replica>> = discovered
                .replicas
                .into_iter()
                .map(
                    |info| match old.iter().find(|r| r.id == info.id && r.addr == info.addr) {
                        Some(same) if same.state == info.state => same.clone(),
                        Some(same) => Arc::new(Replica {
                            authority: same.authority.clone(),
                            id: info.id,
                            addr: info.addr,
                            state: info.state,
                            inflight: AtomicUsize::new(same.inflight()),
                        }),
                        None => Arc::new(Replica {
                            authority: http::uri::Authority::try_from(info.addr.to_string())
                                .expect("a socket address is a valid authority"),
                            id: info.id,
                            addr: info.addr,
                            state: info.state,
                            inflight: AtomicUsize::new(0),
                        }),
                    },
                )
                .collect();
            *replicas = Arc::from(fresh);
        }
        *self.labels.write().unwrap_or_else(|e| e.into_inner()) = discovered.labels;
        self.metrics.set_replicas(self.ready_count());
        self.changed.notify_waiters();
    }
}

/// All known functions.
pub struct Table {
    functions: RwLock<HashMap<String, Arc<Function>>>,
    metrics: Arc<Metrics>,
}

impl Table {
    pub fn new(metrics: Arc<Metrics>) -> Table {
        Table {
            functions: RwLock::new(HashMap::new()),
            metrics,
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Function>> {
        self.functions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .functions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Adds or refreshes one function.
    pub fn upsert(&self, discovered: Discovered) {
        let function = {
            let mut functions = self.functions.write().unwrap_or_else(|e| e.into_inner());
            functions
                .entry(discovered.name.clone())
                .or_insert_with(|| Arc::new(Function::new(&discovered.name, &self.metrics)))
                .clone()
        };
        function.set(discovered);
    }

    /// Forgets one function: calls to it answer 404 from now on.
    pub fn remove(&self, name: &str) {
        let removed = self
            .functions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(function) = removed {
            function.metrics.forget();
            function.changed.notify_waiters();
        }
    }

    /// Replaces the whole view with a provider's complete snapshot.
    pub fn replace_all(&self, snapshot: Vec<Discovered>) {
        let keep: Vec<String> = snapshot.iter().map(|d| d.name.clone()).collect();
        for discovered in snapshot {
            self.upsert(discovered);
        }
        for name in self.names() {
            if !keep.contains(&name) {
                self.remove(&name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(id: &str, port: u16, state: ReplicaState) -> ReplicaInfo {
        ReplicaInfo {
            id: id.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            state,
        }
    }

    fn table_with(replicas: Vec<ReplicaInfo>) -> (Table, Arc<Function>) {
        let table = Table::new(Arc::new(Metrics::new()));
        table.upsert(Discovered {
            name: "f".into(),
            replicas,
            labels: BTreeMap::new(),
        });
        let f = table.get("f").unwrap();
        (table, f)
    }

    #[test]
    fn picks_the_least_loaded_ready_replica() {
        let (_t, f) = table_with(vec![
            replica("a", 1, ReplicaState::Ready),
            replica("b", 2, ReplicaState::Ready),
        ]);
        let first = f.pick(&[]).unwrap();
        let second = f.pick(&[]).unwrap();
        assert_ne!(first.replica().addr, second.replica().addr);
        drop(first);
        let third = f.pick(&[]).unwrap();
        assert_ne!(third.replica().addr, second.replica().addr);
    }

    #[test]
    fn spreads_sequential_calls_round_robin() {
        let (_t, f) = table_with(vec![
            replica("a", 1, ReplicaState::Ready),
            replica("b", 2, ReplicaState::Ready),
            replica("c", 3, ReplicaState::Ready),
        ]);
        let mut seen = HashMap::new();
        for _ in 0..30 {
            let g = f.pick(&[]).unwrap();
            *seen.entry(g.replica().addr.port()).or_insert(0) += 1;
        }
        assert_eq!(seen.values().copied().collect::<Vec<_>>(), vec![10, 10, 10]);
    }

    #[test]
    fn draining_replicas_are_a_last_resort() {
        let (_t, f) = table_with(vec![
            replica("old", 1, ReplicaState::Draining),
            replica("new", 2, ReplicaState::Ready),
        ]);
        for _ in 0..5 {
            assert_eq!(f.pick(&[]).unwrap().replica().addr.port(), 2);
        }
        let new = SocketAddr::from(([127, 0, 0, 1], 2));
        assert_eq!(f.pick(&[new]).unwrap().replica().addr.port(), 1);
    }

    #[test]
    fn in_flight_counts_survive_a_refresh() {
        let (t, f) = table_with(vec![replica("a", 1, ReplicaState::Ready)]);
        let held = f.pick(&[]).unwrap();
        t.upsert(Discovered {
            name: "f".into(),
            replicas: vec![
                replica("a", 1, ReplicaState::Ready),
                replica("b", 2, ReplicaState::Ready),
            ],
            labels: BTreeMap::new(),
        });
        // "a" still has one call in flight, so the next goes to "b".
        assert_eq!(f.pick(&[]).unwrap().replica().addr.port(), 2);
        drop(held);
    }

    #[tokio::test]
    async fn waiting_callers_get_a_replica_that_appears() {
        let (t, f) = table_with(vec![]);
        let waiter = tokio::spawn({
            let f = f.clone();
            async move {
                f.pick_or_wait(&[], Duration::from_secs(5))
                    .await
                    .map(|g| g.replica().addr.port())
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        t.upsert(Discovered {
            name: "f".into(),
            replicas: vec![replica("a", 7, ReplicaState::Ready)],
            labels: BTreeMap::new(),
        });
        assert_eq!(waiter.await.unwrap(), Some(7));
    }

    #[test]
    fn replace_all_forgets_missing_functions() {
        let (t, _f) = table_with(vec![]);
        t.replace_all(vec![Discovered {
            name: "g".into(),
            ..Default::default()
        }]);
        assert!(t.get("f").is_none());
        assert!(t.get("g").is_some());
    }
}
