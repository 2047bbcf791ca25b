//! The gateway's view of the functions and their replicas: which functions
//! exist and where their ready replicas listen. Providers keep it current
//! (discovery); requests only read it, so no call ever waits on Docker.
//!
//! Here the table and each function's discovered state; beside it
//! [`replica`] (replicas and the in-flight guard), [`balance`] (which
//! replica takes a call, and waiting for one), [`load`] (what the
//! autoscaler reads) and [`cold`] (the cold-start handshake).

pub mod balance;
pub mod cold;
pub mod load;
pub mod replica;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::Notify;

use crate::metrics::{FunctionMetrics, Metrics};
pub use load::{Load, LoadReading};
pub use replica::{Replica, ReplicaGuard, ReplicaInfo, ReplicaState};

/// One function as a provider reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    pub name: String,
    pub replicas: Vec<ReplicaInfo>,
    pub labels: BTreeMap<String, String>,
    /// The replicas the engine has been asked for (`None`: not known).
    pub desired: Option<u64>,
    /// Why no replica can start (a program that does not exist): calls
    /// are refused with it rather than left waiting.
    pub problem: Option<String>,
}

pub struct Function {
    pub name: String,
    replicas: RwLock<Arc<[Arc<Replica>]>>,
    labels: RwLock<BTreeMap<String, String>>,
    /// See [`Discovered::problem`].
    problem: RwLock<Option<String>>,
    /// Woken whenever the replica set changes.
    changed: Notify,
    next: AtomicUsize,
    pub metrics: FunctionMetrics,
    pub load: Load,
    /// The replicas the engine was last asked for.
    desired: AtomicU64,
    /// At zero (asked for none) and no replica ready since: calls wait
    /// for a cold start rather than the usual `replica_wait`.
    cold: AtomicBool,
    /// Calls waiting for a replica to appear.
    waiting: AtomicUsize,
    /// When the autoscaler last started it from zero, until a replica is
    /// ready (for the cold-start histogram).
    woken_at: Mutex<Option<Instant>>,
    /// Something wants a replica while it is cold: the autoscaler has been
    /// told (once) and not looked yet.
    wake_requested: AtomicBool,
    /// Since when something has wanted a replica while it is cold.
    wanted_since: Mutex<Option<Instant>>,
    /// The autoscaler's wake-up call, shared by every function.
    wake: Arc<Notify>,
}

impl Function {
    fn new(name: &str, metrics: &Metrics, wake: Arc<Notify>) -> Function {
        Function {
            name: name.to_owned(),
            replicas: RwLock::new(Arc::from(Vec::new())),
            labels: RwLock::new(BTreeMap::new()),
            problem: RwLock::new(None),
            changed: Notify::new(),
            next: AtomicUsize::new(0),
            metrics: metrics.function(name),
            load: Load::new(),
            desired: AtomicU64::new(u64::MAX),
            cold: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            woken_at: Mutex::new(None),
            wake_requested: AtomicBool::new(false),
            wanted_since: Mutex::new(None),
            wake,
        }
    }

    /// The replicas the engine was last asked for (`None` before a
    /// provider said).
    pub fn desired(&self) -> Option<u64> {
        let d = self.desired.load(Ordering::Relaxed);
        (d != u64::MAX).then_some(d)
    }

    /// The engine has been asked for `count` replicas.
    pub fn set_desired(&self, count: u64) {
        self.desired.store(count, Ordering::Relaxed);
        self.metrics.set_desired(count);
        if count == 0 {
            self.cold.store(true, Ordering::Relaxed);
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

    /// Why no replica can start, when the provider knows.
    pub fn problem(&self) -> Option<String> {
        self.problem
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

    fn set(&self, discovered: Discovered) {
        if let Some(desired) = discovered.desired {
            self.set_desired(desired);
        }
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
        *self.problem.write().unwrap_or_else(|e| e.into_inner()) = discovered.problem;
        let ready = self.ready_count();
        if ready > 0 {
            self.cold.store(false, Ordering::Relaxed);
            *self.wanted_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let woken = self
                .woken_at
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(at) = woken {
                self.metrics.cold_started(at.elapsed());
            }
        }
        self.metrics.set_replicas(ready);
        self.changed.notify_waiters();
    }
}

/// All known functions.
pub struct Table {
    functions: RwLock<HashMap<String, Arc<Function>>>,
    metrics: Arc<Metrics>,
    /// Notified when a function wants a replica it does not have.
    wake: Arc<Notify>,
}

impl Table {
    pub fn new(metrics: Arc<Metrics>) -> Table {
        Table {
            functions: RwLock::new(HashMap::new()),
            metrics,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Resolves when some function wants a replica (the autoscaler waits
    /// on it between ticks).
    pub async fn wanted(&self) {
        self.wake.notified().await;
    }

    /// Every function, for the autoscaler's tick.
    pub fn all(&self) -> Vec<Arc<Function>> {
        self.functions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
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
                .or_insert_with(|| {
                    Arc::new(Function::new(
                        &discovered.name,
                        &self.metrics,
                        self.wake.clone(),
                    ))
                })
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
    use std::net::SocketAddr;
    use std::time::Duration;

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
            desired: None,
            problem: None,
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
            desired: None,
            problem: None,
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
                f.pick_or_wait(&[], Duration::from_secs(5), Duration::from_secs(30))
                    .await
                    .ok()
                    .map(|g| g.replica().addr.port())
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        t.upsert(Discovered {
            name: "f".into(),
            replicas: vec![replica("a", 7, ReplicaState::Ready)],
            labels: BTreeMap::new(),
            desired: Some(1),
            problem: None,
        });
        assert_eq!(waiter.await.unwrap(), Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn calls_to_a_function_at_zero_wait_for_a_cold_start_and_ask_for_it() {
        let (t, f) = table_with(vec![]);
        t.upsert(Discovered {
            name: "f".into(),
            desired: Some(0),
            ..Default::default()
        });
        assert!(f.is_cold());
        let asked = tokio::spawn({
            let t = t.wake.clone();
            async move { t.notified().await }
        });
        let waiter = tokio::spawn({
            let f = f.clone();
            async move {
                f.pick_or_wait(&[], Duration::from_secs(5), Duration::from_secs(30))
                    .await
                    .map(|g| g.replica().addr.port())
                    .map_err(|w| (w.cold, w.waited))
            }
        });
        asked.await.unwrap();
        assert_eq!(f.waiting(), 1);
        // Past replica_wait, still waiting: the function starts from zero.
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!waiter.is_finished());
        t.upsert(Discovered {
            name: "f".into(),
            replicas: vec![replica("a", 9, ReplicaState::Ready)],
            desired: Some(1),
            ..Default::default()
        });
        assert_eq!(waiter.await.unwrap(), Ok(9));
        assert!(!f.is_cold());
        assert_eq!(f.waiting(), 0);
        // A function with replicas asked for waits replica_wait only.
        let (_t, g) = table_with(vec![]);
        let err = g
            .pick_or_wait(&[], Duration::from_secs(5), Duration::from_secs(30))
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(!err.cold);
        assert_eq!(err.waited, Duration::from_secs(5));
    }

    #[test]
    fn load_is_averaged_over_time_between_readings() {
        let load = Load::new();
        let t0 = Instant::now();
        load.read(t0);
        let s = Duration::from_secs;
        load.begin(t0);
        load.begin(t0 + s(1));
        load.end(t0 + s(2));
        let r = load.read(t0 + s(4));
        // 1 call for 1 s, 2 for 1 s, 1 for 2 s: 5 call-seconds over 4 s.
        assert!((r.concurrency - 1.25).abs() < 1e-9, "{r:?}");
        assert!((r.rate - 0.5).abs() < 1e-9, "{r:?}");
        assert_eq!(r.inflight, 1);
        // The call still in flight counts fully in the next period.
        let r = load.read(t0 + s(6));
        assert!((r.concurrency - 1.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.rate, 0.0);
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
