//! Autoscaling, built into the gateway: a control loop that reads each
//! function's live load (calls in flight, sync and async, and the request
//! rate, measured by the forwarder), asks the [`policy`] how many replicas
//! that needs, and tells the provider. It also wakes functions at zero the
//! moment a call (or a queued async call) wants one, and takes OpenFaaS's
//! AlertManager webhook ([`alert`]).
//!
//! The loop runs every `scale_tick` (1 s) and whenever a cold function is
//! wanted ([`Table::wanted`]). Only the loop decides, and a function whose
//! scale call is still running is not decided again until it returns:
//! fifty calls arriving at a function at zero cause one scale-up. Every
//! scale of a function — the loop's, a manual one, an alert's — goes
//! through that function's own lock, and a decision the loop took before a
//! manual scale is dropped rather than applied over it.

pub mod alert;
pub mod policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use faas_common::api::{ScalingDecision, ScalingStatus};
use faas_common::shutdown::Shutdown;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::functions::{Function, Table};
use crate::provider::{Provider, ProviderError};
use crate::queue::AsyncQueue;
use policy::{Decision, Defaults, Policy, Sample, Settings};

/// How long a count the loop asked for may take to show in the provider's
/// view (a Swarm resync that started before the change can still show the
/// old count meanwhile).
const PENDING_FOR: Duration = Duration::from_secs(10);
/// After a failed scale, the function is left alone this long.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// At shutdown, scale calls still running get this long to finish.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(15);

pub struct Autoscaler {
    provider: Arc<dyn Provider>,
    table: Arc<Table>,
    /// Read for the calls queued per function.
    queue: Arc<AsyncQueue>,
    /// Scale with load; when off, functions are still woken from zero.
    enabled: bool,
    tick: Duration,
    defaults: Defaults,
    epoch: Instant,
    functions: Mutex<HashMap<String, Entry>>,
    /// One lock per function: its scale calls, whoever makes them, in turn.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The loop's scale calls in flight (awaited at shutdown).
    calls: Mutex<JoinSet<()>>,
}

/// What the loop keeps per function.
struct Entry {
    /// The deployment it belongs to (a function removed and deployed again
    /// under the same name starts afresh).
    created: Option<String>,
    policy: Policy,
    problem: Option<String>,
    /// A count asked of the provider that its view may not show yet.
    pending: Option<Pending>,
    /// A scale call of the loop still running.
    busy: bool,
    /// Counts scales from outside the loop: a decision taken before one is
    /// stale.
    generation: u64,
    /// After a failure, no decision before this.
    retry_after: Option<Instant>,
    current: Option<String>,
    last_change: Option<ScalingDecision>,
}

/// What one pass saw of a function.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The provider's count.
    engine: u64,
    /// Its async calls waiting in the queue.
    queued: u64,
    /// A full tick (load measured), not only a wake-up.
    full: bool,
    now: Instant,
    /// `now` on the policy's clock.
    clock: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    asked: u64,
    /// The provider's count when we asked.
    before: u64,
    at: Instant,
}

impl Entry {
    fn new(clock: Duration, created: Option<String>) -> Entry {
        Entry {
            created,
            policy: Policy::new(clock),
            problem: None,
            pending: None,
            busy: false,
            generation: 0,
            retry_after: None,
            current: None,
            last_change: None,
        }
    }

    /// The count to decide from: ours while the provider's view still shows
    /// the count from before we asked, or already ours (for a while);
    /// anything else the provider shows is believed (a scale by someone
    /// else meanwhile).
    fn current(&mut self, engine: u64, now: Instant) -> u64 {
        match self.pending {
            Some(p)
                if (engine == p.before || engine == p.asked)
                    && now.duration_since(p.at) < PENDING_FOR =>
            {
                p.asked
            }
            _ => {
                self.pending = None;
                engine
            }
        }
    }
}

impl Autoscaler {
    pub fn new(
        config: &Config,
        provider: Arc<dyn Provider>,
        table: Arc<Table>,
        queue: Arc<AsyncQueue>,
    ) -> Autoscaler {
        Autoscaler {
            provider,
            table,
            queue,
            enabled: config.autoscale,
            tick: config.scale_tick,
            defaults: Defaults {
                window: config.scale_down_window,
                up_window: config.scale_up_window,
                zero_after: config.scale_zero_after,
                max_replicas: config.max_replicas,
            },
            epoch: Instant::now(),
            functions: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            calls: Mutex::new(JoinSet::new()),
        }
    }

    /// The settings the loop uses for `labels` (and what is wrong with them).
    pub fn settings(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> (Settings, Option<String>) {
        let (settings, problem) = Settings::lenient(labels, self.defaults);
        (settings, problem.map(|p| p.to_string()))
    }

    /// A function's scaling, for `GET /system/function/{name}`.
    pub fn status(&self, function: &Function) -> ScalingStatus {
        let (settings, problem) = self.settings(&function.labels());
        let functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        let entry = functions.get(&function.name);
        ScalingStatus {
            enabled: self.enabled,
            min: settings.min,
            max: settings.max,
            target: settings.target,
            metric: settings.metric.as_str().to_owned(),
            zero: settings.zero,
            zero_after_seconds: settings.zero_after.as_secs_f64(),
            window_seconds: settings.window.as_secs_f64(),
            problem,
            current: entry.and_then(|e| e.current.clone()),
            last_decision: entry.and_then(|e| e.last_change.clone()),
        }
    }

    fn lock_of(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// A scale from outside the loop (`scale-function`, an alert): made in
    /// turn with the loop's own, and continued from by the loop.
    pub async fn scale(&self, name: &str, count: u64) -> Result<(), ProviderError> {
        let lock = self.lock_of(name);
        let _turn = lock.lock().await;
        self.provider.scale(name, count).await?;
        if let Some(function) = self.table.get(name) {
            function.set_desired(count);
        }
        let mut entries = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get_mut(name) {
            entry.pending = None;
            entry.generation += 1;
        }
        Ok(())
    }

    /// Runs the loop until `stop`, then lets scale calls in flight finish.
    pub async fn run(self: Arc<Self>, mut stop: Shutdown) {
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let full = tokio::select! {
                _ = tick.tick() => true,
                () = self.table.wanted() => false,
                () = stop.wait() => break,
            };
            if stop.is_shutdown() {
                break;
            }
            self.pass(full).await;
        }
        let mut calls = std::mem::take(&mut *self.calls.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = tokio::time::timeout(SHUTDOWN_WAIT, async {
            while calls.join_next().await.is_some() {}
        })
        .await;
    }

    /// One look at the functions: a full tick, or (`full` false) only cold
    /// functions something wants.
    async fn pass(self: &Arc<Self>, full: bool) {
        let woken: Vec<Arc<Function>> = self
            .table
            .all()
            .into_iter()
            .filter(|f| f.take_wake_request() || full)
            .collect();
        if woken.is_empty() {
            return;
        }
        let engine: HashMap<String, (u64, Option<String>)> = match self.provider.list().await {
            Ok(list) => list
                .into_iter()
                .map(|f| (f.name, (f.replicas, f.created_at)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "autoscaler: cannot list functions; skipping a tick");
                return;
            }
        };
        let queued = self.queue.depth();
        let now = Instant::now();
        let clock = now.duration_since(self.epoch);
        let mut changes: Vec<(Arc<Function>, Decision, u64)> = Vec::new();
        {
            let mut entries = self.functions.lock().unwrap_or_else(|e| e.into_inner());
            if full {
                entries.retain(|name, _| engine.contains_key(name));
            }
            for function in woken {
                // Not scalable (unknown to the provider, a global service).
                let (Some((engine_count, created)), Some(_)) =
                    (engine.get(&function.name), function.desired())
                else {
                    continue;
                };
                let entry = entries
                    .entry(function.name.clone())
                    .or_insert_with(|| Entry::new(clock, created.clone()));
                if entry.created != *created {
                    *entry = Entry::new(clock, created.clone());
                }
                let queued = queued.get(&function.name).copied().unwrap_or(0);
                let seen = Seen {
                    engine: *engine_count,
                    queued,
                    full,
                    now,
                    clock,
                };
                if let Some(decision) = self.consider(entry, &function, seen) {
                    changes.push((function, decision, entry.generation));
                }
            }
        }
        for (function, decision, generation) in changes {
            let scaler = self.clone();
            if decision.from == 0 {
                function.woken(Some(now));
            }
            self.calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .spawn(async move {
                    scaler.apply(&function, decision, generation).await;
                });
        }
    }

    /// The loop's decision for one function, when it changes the count
    /// (marked pending and busy until applied).
    fn consider(&self, entry: &mut Entry, function: &Function, seen: Seen) -> Option<Decision> {
        let (settings, problem) = self.settings(&function.labels());
        if problem.is_some() && problem != entry.problem {
            tracing::warn!(function = %function.name, problem = ?problem, "scaling labels: using the defaults for what cannot be used");
        }
        entry.problem = problem;
        let load = seen.full.then(|| function.load.read(seen.now));
        if entry.busy || entry.retry_after.is_some_and(|t| seen.now < t) {
            return None;
        }
        let current = entry.current(seen.engine, seen.now);
        let waiting = function.waiting() > 0;
        let decision = match load {
            Some(load) => {
                let sample = Sample {
                    concurrency: load.concurrency,
                    rate: load.rate,
                    inflight: load.inflight,
                    queued: seen.queued,
                    waiting,
                };
                if self.enabled {
                    entry.policy.decide(seen.clock, &settings, current, &sample)
                } else if current == 0 && sample.active() {
                    entry.policy.wake(seen.clock, &settings)
                } else {
                    return None;
                }
            }
            None if current == 0 && (waiting || seen.queued > 0) => {
                entry.policy.wake(seen.clock, &settings)
            }
            None => return None,
        };
        entry.current = Some(decision.reason.to_string());
        if decision.desired == current {
            return None;
        }
        entry.pending = Some(Pending {
            asked: decision.desired,
            before: seen.engine,
            at: seen.now,
        });
        entry.busy = true;
        Some(decision)
    }

    /// Makes one decision of the loop, in turn with other scales of the
    /// function, unless one from outside came first.
    async fn apply(&self, function: &Function, decision: Decision, generation: u64) {
        let name = &function.name;
        let lock = self.lock_of(name);
        let _turn = lock.lock().await;
        let stale = self
            .functions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .is_none_or(|e| e.generation != generation);
        let result = if stale {
            tracing::debug!(function = %name, to = decision.desired, "autoscaler: dropped, scaled meanwhile by someone else");
            None
        } else {
            Some(self.provider.scale(name, decision.desired).await)
        };
        let mut entries = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get_mut(name);
        match (result, entry) {
            (Some(Ok(())), Some(entry)) => {
                entry.busy = false;
                entry.last_change = Some(ScalingDecision {
                    at: faas_common::time::rfc3339(SystemTime::now()),
                    from: decision.from,
                    to: decision.desired,
                    reason: decision.reason.to_string(),
                });
                function.set_desired(decision.desired);
                function.metrics.scaled(decision.desired > decision.from);
                tracing::info!(
                    function = %name,
                    from = decision.from,
                    to = decision.desired,
                    reason = %decision.reason,
                    "autoscaler"
                );
            }
            (Some(Err(e)), entry) => {
                function.woken(None);
                tracing::warn!(function = %name, to = decision.desired, error = %e, "autoscaler: scaling failed; trying again in {RETRY_AFTER:?}");
                if let Some(entry) = entry {
                    entry.busy = false;
                    entry.pending = None;
                    entry.retry_after = Some(Instant::now() + RETRY_AFTER);
                    entry.current = Some(format!("scaling to {} failed: {e}", decision.desired));
                }
            }
            (_, entry) => {
                if decision.from == 0 {
                    function.woken(None);
                }
                if let Some(entry) = entry {
                    entry.busy = false;
                    entry.pending = None;
                }
            }
        }
    }
}
