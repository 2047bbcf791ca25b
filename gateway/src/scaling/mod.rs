//! Autoscaling, built into the gateway: a control loop that reads each
//! function's live load (calls in flight, sync and async, and the request
//! rate, measured by the forwarder), asks the [`policy`] how many replicas
//! that needs, and tells the provider. It also wakes functions at zero the
//! moment a call (or a queued async call) wants one, and takes OpenFaaS's
//! AlertManager webhook ([`alert`]).
//!
//! The loop runs every `scale_tick` (1 s) and whenever a function wants a
//! replica it does not have ([`Table::wanted`]). Only the loop decides, one
//! function at a time, and a function whose scale call is still running is
//! left alone until it returns: fifty calls arriving at a function at zero
//! cause one scale-up, and two scale calls for one function never race.

pub mod alert;
pub mod policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use faas_common::api::{ScalingDecision, ScalingStatus};
use tokio::sync::watch;

use crate::AppState;
use crate::config::Config;
use crate::functions::{Function, Table};
use policy::{Decision, Defaults, Policy, Sample, Settings};

/// How long a count the autoscaler asked for may take to show in the
/// provider's view before the provider's own count is believed again.
const PENDING_FOR: Duration = Duration::from_secs(10);

pub struct Autoscaler {
    /// Scale with load; when off, functions are still woken from zero.
    enabled: bool,
    tick: Duration,
    defaults: Defaults,
    epoch: Instant,
    functions: Mutex<HashMap<String, Entry>>,
}

/// What the loop keeps per function.
struct Entry {
    policy: Policy,
    settings: Settings,
    problem: Option<String>,
    /// A count asked of the provider that its view may not show yet.
    pending: Option<Pending>,
    /// A scale call still running.
    busy: bool,
    current: Option<String>,
    last_change: Option<ScalingDecision>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    asked: u64,
    /// The provider's count when we asked.
    before: u64,
    at: Instant,
}

impl Entry {
    /// The count to decide from: ours while the provider's view still shows
    /// the count from before we asked (briefly); anything else the
    /// provider shows is believed (a manual scale meanwhile, too).
    fn current(&mut self, engine: u64, now: Instant) -> u64 {
        match self.pending {
            Some(p) if engine == p.before && now.duration_since(p.at) < PENDING_FOR => p.asked,
            _ => {
                self.pending = None;
                engine
            }
        }
    }
}

impl Autoscaler {
    pub fn new(config: &Config) -> Autoscaler {
        Autoscaler {
            enabled: config.autoscale,
            tick: config.scale_tick,
            defaults: Defaults {
                window: config.scale_down_window,
                up_window: config.scale_up_window,
                zero_after: config.scale_zero_after,
            },
            epoch: Instant::now(),
            functions: Mutex::new(HashMap::new()),
        }
    }

    pub fn defaults(&self) -> Defaults {
        self.defaults
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

    /// Runs the loop until `stop`.
    pub async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
        let scaler = state.scaler.clone();
        let mut tick = tokio::time::interval(scaler.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let full = tokio::select! {
                _ = tick.tick() => true,
                () = state.table.wanted() => false,
                _ = stop.changed() => break,
            };
            if *stop.borrow() {
                break;
            }
            scaler.pass(&state, full).await;
        }
    }

    /// One look at every function: a full tick, or (`full` false) only
    /// functions at zero that something wants.
    async fn pass(self: &Arc<Self>, state: &Arc<AppState>, full: bool) {
        let engine: HashMap<String, u64> = match state.provider.list().await {
            Ok(list) => list.into_iter().map(|f| (f.name, f.replicas)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "autoscaler: cannot list functions; skipping a tick");
                return;
            }
        };
        let queued = state.queue.store.depth();
        let now = Instant::now();
        let clock = now.duration_since(self.epoch);
        let mut changes: Vec<(Arc<Function>, Decision)> = Vec::new();
        {
            let mut entries = self.functions.lock().unwrap_or_else(|e| e.into_inner());
            entries.retain(|name, _| engine.contains_key(name));
            for function in state.table.all() {
                // Not scalable (unknown to the provider, a global service).
                let (Some(&engine_count), Some(_)) =
                    (engine.get(&function.name), function.desired())
                else {
                    continue;
                };
                let (settings, problem) = self.settings(&function.labels());
                let entry = entries
                    .entry(function.name.clone())
                    .or_insert_with(|| Entry {
                        policy: Policy::new(clock),
                        settings: settings.clone(),
                        problem: None,
                        pending: None,
                        busy: false,
                        current: None,
                        last_change: None,
                    });
                if problem.is_some() && problem != entry.problem {
                    tracing::warn!(function = %function.name, problem = ?problem, "scaling labels: using the defaults");
                }
                entry.settings = settings;
                entry.problem = problem;
                if entry.busy {
                    continue;
                }
                let current = entry.current(engine_count, now);
                let queued = queued.get(&function.name).copied().unwrap_or(0);
                let waiting = function.waiting() > 0;
                let decision = if full {
                    let load = function.load.read(now);
                    let sample = Sample {
                        concurrency: load.concurrency,
                        rate: load.rate,
                        inflight: load.inflight,
                        queued,
                        waiting,
                    };
                    if self.enabled {
                        entry
                            .policy
                            .decide(clock, &entry.settings, current, &sample)
                    } else if current == 0 && sample.active() {
                        entry.policy.wake(clock, &entry.settings)
                    } else {
                        continue;
                    }
                } else if current == 0 && (waiting || queued > 0) {
                    entry.policy.wake(clock, &entry.settings)
                } else {
                    continue;
                };
                entry.current = Some(decision.reason.clone());
                if decision.desired != current {
                    entry.pending = Some(Pending {
                        asked: decision.desired,
                        before: engine_count,
                        at: now,
                    });
                    entry.busy = true;
                    entry.last_change = Some(ScalingDecision {
                        at: faas_common::time::rfc3339(SystemTime::now()),
                        from: current,
                        to: decision.desired,
                        reason: decision.reason.clone(),
                    });
                    changes.push((function, decision));
                }
            }
        }
        for (function, decision) in changes {
            tracing::info!(
                function = %function.name,
                from = decision.from,
                to = decision.desired,
                reason = %decision.reason,
                "autoscaler"
            );
            function.metrics.scaled(decision.desired > decision.from);
            if decision.from == 0 {
                function.woken(now);
            }
            function.set_desired(decision.desired);
            let scaler = self.clone();
            let state = state.clone();
            tokio::spawn(async move {
                let result = state.provider.scale(&function.name, decision.desired).await;
                let mut entries = scaler.functions.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(entry) = entries.get_mut(&function.name) {
                    entry.busy = false;
                    if let Err(e) = &result {
                        entry.pending = None;
                        entry.current =
                            Some(format!("scaling to {} failed: {e}", decision.desired));
                    }
                }
                if let Err(e) = result {
                    tracing::warn!(function = %function.name, to = decision.desired, error = %e, "autoscaler: scaling failed");
                }
            });
        }
    }

    /// Marks a count set from outside the loop (a manual scale, an alert):
    /// the loop continues from it.
    pub fn note_external(&self, table: &Table, name: &str, count: u64) {
        if let Some(function) = table.get(name) {
            function.set_desired(count);
        }
        let mut entries = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get_mut(name) {
            entry.pending = None;
        }
    }
}
