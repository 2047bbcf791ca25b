//! The autoscaling policy: how many replicas one function should have, as a
//! pure function of the load the gateway measured, the function's settings
//! and a clock passed in (so tests run it on a simulated clock).
//!
//! Every tick the control loop hands over the tick's average in-flight
//! calls (time-weighted) and request rate. The tick's *recommendation* is
//! `ceil(load / target)`. Then:
//!
//! - **Up, in a panic**: when the recommendation is at least
//!   [`PANIC_THRESHOLD`] times the current replicas, the function scales to
//!   it at once (demand far above capacity).
//! - **Up, otherwise**: to the smallest recommendation of the last
//!   `up_window` (a few seconds), so demand must last before replicas start.
//! - **Down**: to the largest recommendation of the last `window`
//!   (default 60 s). A scale-down therefore only happens when every tick of
//!   a whole window needed no more than the new count, and the next
//!   scale-up needs demand above that count again: load that comes and goes
//!   within a window holds its peak instead of flapping.
//! - **Zero** (opt-in): after `zero_after` with no call in flight, none
//!   started and none queued. A long call keeps its function alive; a
//!   function never called idles out too. A function at zero stays there
//!   until a call or a queued async call wants it.
//!
//! A count the policy did not choose (a manual scale, an alert, a deploy)
//! restarts the history from that count: the autoscaler continues from it,
//! within min and max, after a full window.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

/// A recommendation this many times the current replicas is a panic.
pub const PANIC_THRESHOLD: f64 = 2.0;

/// Labels, ours then OpenFaaS's spelling.
pub const MIN_LABELS: [&str; 2] = ["faas.scale.min", "com.openfaas.scale.min"];
pub const MAX_LABELS: [&str; 2] = ["faas.scale.max", "com.openfaas.scale.max"];
pub const TARGET_LABELS: [&str; 2] = ["faas.scale.target", "com.openfaas.scale.target"];
pub const TYPE_LABELS: [&str; 2] = ["faas.scale.type", "com.openfaas.scale.type"];
pub const ZERO_LABELS: [&str; 2] = ["faas.scale.zero", "com.openfaas.scale.zero"];
pub const ZERO_AFTER_LABELS: [&str; 2] =
    ["faas.scale.zero-after", "com.openfaas.scale.zero-duration"];
pub const WINDOW_LABELS: [&str; 1] = ["faas.scale.window"];
pub const FACTOR_LABELS: [&str; 2] = ["faas.scale.factor", "com.openfaas.scale.factor"];

pub const DEFAULT_MIN: u64 = 1;
pub const DEFAULT_MAX: u64 = 20;
pub const DEFAULT_TARGET: f64 = 10.0;
pub const DEFAULT_ZERO_AFTER: Duration = Duration::from_secs(300);
/// AlertManager scaling: a firing alert adds this percentage of max.
pub const DEFAULT_FACTOR: u64 = 20;

/// What load is measured against `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Calls in flight per replica (sync and async).
    Capacity,
    /// Calls started per second per replica.
    Rps,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Capacity => "capacity",
            Metric::Rps => "rps",
        }
    }
}

/// One function's scaling settings, from its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub min: u64,
    pub max: u64,
    pub target: f64,
    pub metric: Metric,
    pub zero: bool,
    pub zero_after: Duration,
    /// The scale-down (stable) window.
    pub window: Duration,
    /// How long demand must last for a scale-up that is not a panic.
    pub up_window: Duration,
    /// AlertManager step, percent of max.
    pub factor: u64,
}

/// The gateway-wide defaults the labels override, and the bound on max.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub window: Duration,
    pub up_window: Duration,
    pub zero_after: Duration,
    /// The most replicas anything may ask for (`max_replicas`).
    pub max_replicas: u64,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            window: Duration::from_secs(60),
            up_window: Duration::from_secs(3),
            zero_after: DEFAULT_ZERO_AFTER,
            max_replicas: 100,
        }
    }
}

/// The longest scale-down window: the policy keeps a sample per tick of it.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// A scaling label with a value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError(pub String);

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Settings {
    /// The settings a function's labels ask for; a label that cannot be
    /// used is an error naming it (deployments are refused with it).
    pub fn from_labels(
        labels: &BTreeMap<String, String>,
        defaults: Defaults,
    ) -> Result<Settings, LabelError> {
        let (settings, mut problems) = Settings::parse(labels, defaults);
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems.swap_remove(0))
        }
    }

    /// Like [`from_labels`](Self::from_labels) for a function that runs
    /// already (a service created outside the API): an unusable label
    /// falls back to its default (max to `max_replicas`), the first problem
    /// is returned to be shown.
    pub fn lenient(
        labels: &BTreeMap<String, String>,
        defaults: Defaults,
    ) -> (Settings, Option<LabelError>) {
        let (settings, mut problems) = Settings::parse(labels, defaults);
        let first = (!problems.is_empty()).then(|| problems.swap_remove(0));
        (settings, first)
    }

    /// Each label on its own: its value, or its default and a problem.
    fn parse(labels: &BTreeMap<String, String>, defaults: Defaults) -> (Settings, Vec<LabelError>) {
        let mut read = LabelReader {
            labels,
            problems: Vec::new(),
        };
        let min = read.whole(&MIN_LABELS, DEFAULT_MIN);
        let default_max = DEFAULT_MAX.min(defaults.max_replicas).max(1);
        let max = read.whole(&MAX_LABELS, default_max);
        let factor = read.whole(&FACTOR_LABELS, DEFAULT_FACTOR);
        let second = Duration::from_secs(1);
        let zero_after = read.duration(
            &ZERO_AFTER_LABELS,
            defaults.zero_after,
            (second, Duration::from_secs(1_000_000_000)),
        );
        let window = read.duration(&WINDOW_LABELS, defaults.window, (second, MAX_WINDOW));
        let max = if max == 0 {
            read.problem(format!(
                "label {}=0: a function needs at least 1 replica at most",
                MAX_LABELS[0]
            ));
            default_max
        } else if max > defaults.max_replicas {
            read.problem(format!(
                "label {}={max} is above max_replicas ({})",
                MAX_LABELS[0], defaults.max_replicas
            ));
            defaults.max_replicas.max(1)
        } else {
            max
        };
        let min = if min > max {
            read.problem(format!("scale min {min} is above scale max {max}"));
            max
        } else {
            min
        };
        let target = read.positive(&TARGET_LABELS, DEFAULT_TARGET);
        let metric = read.metric();
        let zero = read.boolean(&ZERO_LABELS, false);
        let factor = if factor > 100 {
            read.problem(format!(
                "label {}={factor}: a percentage from 0 to 100",
                FACTOR_LABELS[0]
            ));
            DEFAULT_FACTOR
        } else {
            factor
        };
        let settings = Settings {
            min,
            max,
            target,
            metric,
            zero,
            zero_after,
            window,
            up_window: defaults.up_window.min(window),
            factor,
        };
        (settings, read.problems)
    }
}

/// Reads scaling labels one at a time: a value that cannot be used is
/// noted as a problem naming its label, and its default is used.
struct LabelReader<'a> {
    labels: &'a BTreeMap<String, String>,
    problems: Vec<LabelError>,
}

impl<'a> LabelReader<'a> {
    /// The first of `keys` (ours, then OpenFaaS's spelling) that is set.
    fn get(&self, keys: &[&'static str]) -> Option<(&'static str, &'a str)> {
        keys.iter()
            .find_map(|k| self.labels.get(*k).map(|v| (*k, v.trim())))
    }

    fn problem(&mut self, message: String) {
        self.problems.push(LabelError(message));
    }

    fn whole(&mut self, keys: &[&'static str], default: u64) -> u64 {
        let Some((key, v)) = self.get(keys) else {
            return default;
        };
        v.parse::<u64>().unwrap_or_else(|_| {
            self.problem(format!("label {key}={v:?} is not a whole number"));
            default
        })
    }

    /// A duration within `(least, most)`.
    fn duration(
        &mut self,
        keys: &[&'static str],
        default: Duration,
        (least, most): (Duration, Duration),
    ) -> Duration {
        let Some((key, v)) = self.get(keys) else {
            return default;
        };
        match faas_common::parse::parse_duration(v) {
            Ok(d) if d >= least && d <= most => d,
            Ok(_) => {
                self.problem(format!(
                    "label {key}={v:?}: from {}s to {}s",
                    least.as_secs_f64(),
                    most.as_secs()
                ));
                default
            }
            Err(hint) => {
                self.problem(format!("label {key}={v:?}: {hint}"));
                default
            }
        }
    }

    fn positive(&mut self, keys: &[&'static str], default: f64) -> f64 {
        let Some((key, v)) = self.get(keys) else {
            return default;
        };
        match v.parse::<f64>() {
            Ok(t) if t.is_finite() && t > 0.0 => t,
            _ => {
                self.problem(format!("label {key}={v:?} is not a positive number"));
                default
            }
        }
    }

    fn boolean(&mut self, keys: &[&'static str], default: bool) -> bool {
        let Some((key, v)) = self.get(keys) else {
            return default;
        };
        faas_common::parse::parse_bool(v).unwrap_or_else(|hint| {
            self.problem(format!("label {key}={v:?}: {hint}"));
            default
        })
    }

    fn metric(&mut self) -> Metric {
        match self.get(&TYPE_LABELS) {
            None => Metric::Capacity,
            Some((_, v)) if v.eq_ignore_ascii_case("capacity") => Metric::Capacity,
            Some((_, v)) if v.eq_ignore_ascii_case("rps") => Metric::Rps,
            // OpenFaaS's other types (cpu) are not ours to refuse: such a
            // function scales on capacity.
            Some((key, _)) if key != TYPE_LABELS[0] => Metric::Capacity,
            Some((key, v)) => {
                self.problem(format!(
                    "label {key}={v:?}: use capacity (in-flight calls per replica) or rps (calls per second per replica)"
                ));
                Metric::Capacity
            }
        }
    }
}

/// What the gateway measured of one function over one tick.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Average calls in flight over the tick (time-weighted).
    pub concurrency: f64,
    /// Calls started per second over the tick.
    pub rate: f64,
    /// Calls in flight at the end of the tick.
    pub inflight: u64,
    /// Async calls waiting in the queue.
    pub queued: u64,
    /// A call is waiting for a replica to appear.
    pub waiting: bool,
}

impl Sample {
    /// Whether anything wants the function now.
    pub fn active(&self) -> bool {
        self.concurrency > 0.0
            || self.rate > 0.0
            || self.inflight > 0
            || self.queued > 0
            || self.waiting
    }
}

/// One tick's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub from: u64,
    pub desired: u64,
    pub reason: Reason,
}

/// The load a decision was taken on, in the metric's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    pub value: f64,
    pub metric: Metric,
}

impl Figure {
    fn unit(self) -> &'static str {
        match self.metric {
            Metric::Capacity => "in flight",
            Metric::Rps => "calls/s",
        }
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} {}", self.value, self.unit())
    }
}

/// Why the policy chose a count (shown as text in the function's status
/// and the log).
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// At zero with a call waiting (the load, when a tick measured it).
    Waking(Option<Figure>),
    /// At zero and nothing wants it.
    AtZero,
    /// Idle past `zero_after`.
    Idle {
        idle: Duration,
        zero_after: Duration,
    },
    /// Far above what the replicas can take: up at once.
    Panic {
        load: Figure,
        factor: f64,
        current: u64,
        target: f64,
    },
    /// Above capacity for a whole up window.
    Sustained {
        load: Figure,
        current: u64,
        target: f64,
        up_window: Duration,
    },
    /// Fewer replicas were enough for a whole window.
    Enough {
        to: u64,
        peak: u64,
        target: f64,
        unit: &'static str,
        window: Duration,
    },
    BelowMin(u64),
    /// A count above max (set by hand) is kept for a window, then cut.
    AboveMax(u64),
    Steady(Figure),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Waking(None) => write!(f, "a call is waiting: starting from zero"),
            Reason::Waking(Some(load)) => {
                write!(f, "a call is waiting: starting from zero ({load})")
            }
            Reason::AtZero => write!(f, "at zero until a call comes"),
            Reason::Idle { idle, zero_after } => write!(
                f,
                "idle for {}s (zero-after {}s): scaled to zero",
                idle.as_secs(),
                zero_after.as_secs()
            ),
            Reason::Panic {
                load,
                factor,
                current,
                target,
            } => write!(
                f,
                "panic: {load}, {factor}x the capacity of {current} at {target} {} per replica",
                load.unit()
            ),
            Reason::Sustained {
                load,
                current,
                target,
                up_window,
            } => write!(
                f,
                "{load}: above {current} replicas at {target} {} each for {}s",
                load.unit(),
                up_window.as_secs_f64()
            ),
            Reason::Enough {
                to,
                peak,
                target,
                unit,
                window,
            } => write!(
                f,
                "{to} replicas were enough for the last {}s (peak {peak} at {target} {unit} each)",
                window.as_secs()
            ),
            Reason::BelowMin(floor) => write!(f, "below the minimum of {floor}"),
            Reason::AboveMax(max) => write!(f, "above the maximum of {max}"),
            Reason::Steady(load) => write!(f, "{load}: steady"),
        }
    }
}

/// One function's scaling memory.
#[derive(Debug, Clone)]
pub struct Policy {
    /// (when, recommendation), oldest first, covering the longest window.
    history: VecDeque<(Duration, u64)>,
    /// When the function last had a call in flight, started or queued.
    last_active: Duration,
    /// The count the policy last chose or saw: anything else is external.
    expected: Option<u64>,
    /// An external count and when it was seen: a floor for one window.
    held: Option<(Duration, u64)>,
    /// When observation began: a scale-up needs `up_window` of samples.
    since: Duration,
}

impl Policy {
    /// A function first seen at `now` (its idle time counts from here).
    pub fn new(now: Duration) -> Policy {
        Policy {
            history: VecDeque::new(),
            last_active: now,
            expected: None,
            held: None,
            since: now,
        }
    }

    /// How long the function has been idle at `now`.
    pub fn idle(&self, now: Duration) -> Duration {
        now.saturating_sub(self.last_active)
    }

    /// The replicas `settings` want at `now` for `sample`, given `current`
    /// (the count the engine has been told).
    pub fn decide(
        &mut self,
        now: Duration,
        settings: &Settings,
        current: u64,
        sample: &Sample,
    ) -> Decision {
        if sample.active() {
            self.last_active = now;
        }
        if self.expected != Some(current) {
            // Set from outside (or first seen): continue from it.
            self.held = Some((now, current));
        }
        let load = match settings.metric {
            Metric::Capacity => sample.concurrency.max(0.0),
            Metric::Rps => sample.rate.max(0.0),
        };
        let recommended = ((load / settings.target) - 1e-9).ceil().max(0.0) as u64;
        let recommended = recommended.min(settings.max);
        self.history.push_back((now, recommended));
        let keep = settings.window.max(settings.up_window);
        while self
            .history
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > keep)
        {
            self.history.pop_front();
        }

        let figure = Figure {
            value: load,
            metric: settings.metric,
        };
        let (desired, reason) = if current == 0 {
            if sample.active() {
                let to = recommended.max(settings.min).clamp(1, settings.max);
                (to, Reason::Waking(Some(figure)))
            } else {
                (0, Reason::AtZero)
            }
        } else if settings.zero && !sample.active() && self.idle(now) >= settings.zero_after {
            let idle = self.idle(now);
            (
                0,
                Reason::Idle {
                    idle,
                    zero_after: settings.zero_after,
                },
            )
        } else {
            self.running(now, settings, current, recommended, figure)
        };
        let out = Decision {
            from: current,
            desired,
            reason,
        };
        self.expected = Some(out.desired);
        out
    }

    /// The count for a function with replicas: up at once in a panic, up
    /// after a whole up window of demand, down only after a whole window
    /// of less, and always within min and max.
    fn running(
        &self,
        now: Duration,
        settings: &Settings,
        current: u64,
        recommended: u64,
        load: Figure,
    ) -> (u64, Reason) {
        let floor = settings.min.max(1);
        let target = settings.target;
        let panic = recommended as f64 >= PANIC_THRESHOLD * current as f64;
        let sustained = self.sustained(now, settings, recommended);
        let peak = self.peak(now, settings, recommended);
        if panic && recommended > current {
            let factor = (recommended as f64 / current as f64).floor();
            let reason = Reason::Panic {
                load,
                factor,
                current,
                target,
            };
            (recommended.clamp(floor, settings.max), reason)
        } else if sustained > current {
            let reason = Reason::Sustained {
                load,
                current,
                target,
                up_window: settings.up_window,
            };
            (sustained.clamp(floor, settings.max), reason)
        } else if peak.max(floor) < current {
            let to = peak.clamp(floor, settings.max.max(floor));
            let reason = Reason::Enough {
                to,
                peak,
                target,
                unit: load.unit(),
                window: settings.window,
            };
            (to, reason)
        } else if current < floor {
            (floor, Reason::BelowMin(floor))
        } else if current > settings.max {
            (current, Reason::AboveMax(settings.max))
        } else {
            (current, Reason::Steady(load))
        }
    }

    /// The least any sample of the last up window asked for (each sample
    /// covers the tick before it: demand has lasted the up window when the
    /// samples of a whole window all ask for more); 0 before a whole
    /// window has been seen.
    fn sustained(&self, now: Duration, settings: &Settings, recommended: u64) -> u64 {
        if now.saturating_sub(self.since) < settings.up_window {
            return 0;
        }
        self.history
            .iter()
            .filter(|(at, _)| now.saturating_sub(*at) < settings.up_window)
            .map(|(_, r)| *r)
            .min()
            .unwrap_or(recommended)
    }

    /// The most any sample of the last window asked for, or the count set
    /// from outside within it.
    fn peak(&self, now: Duration, settings: &Settings, recommended: u64) -> u64 {
        let within = |at: Duration| now.saturating_sub(at) < settings.window;
        let held = self
            .held
            .filter(|(at, _)| within(*at))
            .map_or(0, |(_, n)| n);
        self.history
            .iter()
            .filter(|(at, _)| within(*at))
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(recommended)
            .max(held)
    }

    /// A call wants the function while it is at zero, between ticks: the
    /// same decision a tick would take, at once.
    pub fn wake(&mut self, now: Duration, settings: &Settings) -> Decision {
        self.last_active = now;
        let desired = settings.min.clamp(1, settings.max);
        self.expected = Some(desired);
        Decision {
            from: 0,
            desired,
            reason: Reason::Waking(None),
        }
    }
}

/// AlertManager scaling (OpenFaaS's rule): a firing alert adds
/// `ceil(max × factor / 100)` replicas, up to max; a resolved one brings a
/// function above its minimum back to it (never to zero unless
/// `faas.scale.zero` allows it, never up). `None`: nothing to do, or a
/// factor of 0, which turns alert scaling off.
pub fn alert_replicas(firing: bool, current: u64, settings: &Settings) -> Option<u64> {
    let step = settings.max.saturating_mul(settings.factor).div_ceil(100);
    if step == 0 {
        return None;
    }
    if firing {
        return Some(current.saturating_add(step).min(settings.max));
    }
    let floor = if settings.zero {
        settings.min
    } else {
        settings.min.max(1)
    };
    (current > floor).then_some(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(labels: &[(&str, &str)]) -> Settings {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_labels(&labels, Defaults::default()).expect("valid labels")
    }

    fn load(concurrency: f64) -> Sample {
        Sample {
            concurrency,
            rate: concurrency * 10.0,
            inflight: concurrency.round() as u64,
            ..Default::default()
        }
    }

    /// Drives the policy second by second from `start`, applying each
    /// decision as the engine would; returns the counts after each tick.
    struct Sim {
        policy: Policy,
        settings: Settings,
        now: Duration,
        replicas: u64,
    }

    impl Sim {
        fn new(labels: &[(&str, &str)], replicas: u64) -> Sim {
            Sim {
                policy: Policy::new(Duration::ZERO),
                settings: settings(labels),
                now: Duration::ZERO,
                replicas,
            }
        }

        fn tick(&mut self, sample: Sample) -> Decision {
            self.now += Duration::from_secs(1);
            let d = self
                .policy
                .decide(self.now, &self.settings, self.replicas, &sample);
            self.replicas = d.desired;
            d
        }

        fn run(&mut self, seconds: u64, sample: Sample) -> Vec<u64> {
            (0..seconds)
                .map(|_| {
                    self.tick(sample);
                    self.replicas
                })
                .collect()
        }
    }

    #[test]
    fn labels_have_the_briefs_defaults_and_openfaas_spellings() {
        let s = settings(&[]);
        assert_eq!((s.min, s.max, s.target), (1, 20, 10.0));
        assert_eq!(s.metric, Metric::Capacity);
        assert!(!s.zero);
        assert_eq!(s.zero_after, Duration::from_secs(300));
        assert_eq!(s.window, Duration::from_secs(60));
        let s = settings(&[
            ("com.openfaas.scale.min", "2"),
            ("com.openfaas.scale.max", "5"),
            ("com.openfaas.scale.target", "50"),
            ("com.openfaas.scale.type", "rps"),
            ("com.openfaas.scale.zero", "true"),
            ("com.openfaas.scale.zero-duration", "10m"),
        ]);
        assert_eq!((s.min, s.max, s.target), (2, 5, 50.0));
        assert_eq!(s.metric, Metric::Rps);
        assert!(s.zero);
        assert_eq!(s.zero_after, Duration::from_secs(600));
        // Ours win over OpenFaaS's.
        let s = settings(&[("faas.scale.max", "3"), ("com.openfaas.scale.max", "9")]);
        assert_eq!(s.max, 3);
    }

    #[test]
    fn unusable_labels_are_named() {
        let bad = |k: &str, v: &str| {
            let labels = BTreeMap::from([(k.to_owned(), v.to_owned())]);
            Settings::from_labels(&labels, Defaults::default())
                .unwrap_err()
                .0
        };
        assert!(bad("faas.scale.max", "lots").contains("faas.scale.max"));
        assert!(bad("faas.scale.max", "0").contains("at least 1"));
        assert!(bad("faas.scale.min", "30").contains("above scale max 20"));
        assert!(bad("faas.scale.target", "0").contains("positive"));
        assert!(bad("faas.scale.type", "cpu").contains("capacity"));
        assert!(bad("faas.scale.zero", "maybe").contains("faas.scale.zero"));
        assert!(bad("faas.scale.zero-after", "soon").contains("faas.scale.zero-after"));
        assert!(bad("faas.scale.factor", "150").contains("0 to 100"));
        let labels = BTreeMap::from([("faas.scale.max".to_owned(), "x".to_owned())]);
        let (s, err) = Settings::lenient(&labels, Defaults::default());
        assert_eq!(s.max, DEFAULT_MAX);
        assert!(err.is_some());
    }

    #[test]
    fn a_burst_far_above_capacity_scales_up_at_once() {
        let mut sim = Sim::new(&[("faas.scale.target", "1")], 1);
        let d = sim.tick(load(8.0));
        assert_eq!(d.desired, 8);
        assert_eq!(d.from, 1);
        assert!(matches!(d.reason, Reason::Panic { .. }), "{}", d.reason);
    }

    #[test]
    fn a_gentle_ramp_scales_up_once_demand_lasts_the_up_window() {
        let mut sim = Sim::new(&[("faas.scale.target", "10")], 2);
        // 25 in flight needs 3 replicas: not a panic (3 < 2 × 2).
        assert_eq!(sim.run(2, load(25.0)), vec![2, 2]);
        assert_eq!(sim.run(1, load(25.0)), vec![3]);
        // A ramp climbs step by step, never above what is needed.
        let mut counts = Vec::new();
        for c in [35.0, 45.0, 55.0, 65.0] {
            counts.extend(sim.run(3, load(c)));
        }
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        assert_eq!(*counts.last().unwrap(), 7);
    }

    #[test]
    fn a_one_tick_blip_below_panic_does_not_scale() {
        let mut sim = Sim::new(&[("faas.scale.target", "10")], 2);
        sim.run(5, load(10.0));
        // 30 in flight for one tick: 3 replicas, but not sustained.
        assert_eq!(sim.tick(load(30.0)).desired, 2);
        assert_eq!(sim.run(5, load(10.0)), vec![2; 5]);
    }

    #[test]
    fn load_going_away_scales_down_only_after_the_window() {
        let mut sim = Sim::new(&[("faas.scale.target", "1"), ("faas.scale.max", "5")], 1);
        assert_eq!(sim.run(10, load(5.0)).last(), Some(&5));
        let after = sim.run(70, load(0.0));
        // Held for the 60 s window, then straight back to min.
        assert!(after[..58].iter().all(|&r| r == 5), "{after:?}");
        assert_eq!(after.last(), Some(&1));
        let first_down = after.iter().position(|&r| r < 5).unwrap();
        assert!((58..=61).contains(&first_down), "{first_down}");
    }

    #[test]
    fn flapping_load_holds_its_peak_instead_of_flapping() {
        let mut sim = Sim::new(&[("faas.scale.target", "1")], 1);
        let mut counts = Vec::new();
        // 10 s of 6 in flight, 20 s idle, five times over.
        for _ in 0..5 {
            counts.extend(sim.run(10, load(6.0)));
            counts.extend(sim.run(20, load(0.0)));
        }
        // Up to 6 on the first burst (a panic), then held through every gap.
        assert!(counts.iter().all(|&r| r == 6), "{counts:?}");
    }

    #[test]
    fn min_and_max_bound_every_decision() {
        let mut sim = Sim::new(
            &[
                ("faas.scale.target", "1"),
                ("faas.scale.min", "2"),
                ("faas.scale.max", "4"),
            ],
            2,
        );
        assert_eq!(sim.tick(load(100.0)).desired, 4);
        let after = sim.run(120, load(0.0));
        assert_eq!(after.last(), Some(&2));
        assert!(after.iter().all(|&r| (2..=4).contains(&r)));
        // Below min (a deploy of 1 under min 2) comes up to min.
        let mut sim = Sim::new(&[("faas.scale.min", "2")], 1);
        let d = sim.tick(load(0.0));
        assert_eq!(d.desired, 2);
    }

    #[test]
    fn a_manual_scale_is_continued_from_not_fought() {
        let mut sim = Sim::new(&[("faas.scale.target", "1")], 1);
        sim.run(5, load(0.5));
        // Someone scales to 6: kept while a window passes with less load.
        sim.replicas = 6;
        let after = sim.run(50, load(0.5));
        assert!(after.iter().all(|&r| r == 6), "{after:?}");
        // Load comes: the autoscaler goes on from 6, not from 1.
        assert_eq!(sim.tick(load(14.0)).desired, 14);
        // A manual scale above max stays until its window has passed.
        let mut sim = Sim::new(&[("faas.scale.max", "3")], 1);
        sim.replicas = 8;
        let after = sim.run(70, load(0.0));
        assert!(after[..55].iter().all(|&r| r == 8), "{after:?}");
        assert_eq!(after.last(), Some(&1));
    }

    #[test]
    fn an_idle_function_scales_to_zero_after_zero_after_only_when_asked() {
        let labels = [
            ("faas.scale.zero", "true"),
            ("faas.scale.zero-after", "30s"),
        ];
        let mut sim = Sim::new(&labels, 1);
        // Never called: idles out too, counted from when it was first seen.
        let counts = sim.run(40, Sample::default());
        assert_eq!(counts[28], 1);
        assert_eq!(counts[30], 0);
        let d = sim.tick(Sample::default());
        assert_eq!(d.desired, 0);
        assert_eq!(d.reason, Reason::AtZero, "{}", d.reason);
        // Without the label: never below 1.
        let mut sim = Sim::new(&[("faas.scale.zero-after", "30s")], 1);
        assert!(sim.run(400, Sample::default()).iter().all(|&r| r == 1));
    }

    #[test]
    fn a_long_call_in_flight_blocks_scale_to_zero() {
        let labels = [
            ("faas.scale.zero", "true"),
            ("faas.scale.zero-after", "30s"),
        ];
        let mut sim = Sim::new(&labels, 1);
        // One call running for 100 s: nothing starts, one is in flight.
        let running = Sample {
            concurrency: 1.0,
            inflight: 1,
            ..Default::default()
        };
        assert!(sim.run(100, running).iter().all(|&r| r == 1));
        // It ends: zero-after counts from then.
        let after = sim.run(40, Sample::default());
        assert_eq!(after[28], 1);
        assert_eq!(after.last(), Some(&0));
        // Queued async calls keep it alive as well.
        let mut sim = Sim::new(&labels, 1);
        let queued = Sample {
            queued: 3,
            ..Default::default()
        };
        assert!(sim.run(60, queued).iter().all(|&r| r == 1));
    }

    #[test]
    fn reasons_read_as_the_sentences_the_status_shows() {
        let load = Figure {
            value: 12.04,
            metric: Metric::Capacity,
        };
        let rate = Figure {
            value: 3.0,
            metric: Metric::Rps,
        };
        let cases = [
            (
                Reason::Panic {
                    load,
                    factor: 4.0,
                    current: 1,
                    target: 3.0,
                },
                "panic: 12.0 in flight, 4x the capacity of 1 at 3 in flight per replica",
            ),
            (
                Reason::Sustained {
                    load: rate,
                    current: 2,
                    target: 1.0,
                    up_window: Duration::from_millis(2500),
                },
                "3.0 calls/s: above 2 replicas at 1 calls/s each for 2.5s",
            ),
            (
                Reason::Enough {
                    to: 2,
                    peak: 2,
                    target: 5.0,
                    unit: "in flight",
                    window: Duration::from_secs(300),
                },
                "2 replicas were enough for the last 300s (peak 2 at 5 in flight each)",
            ),
            (
                Reason::Idle {
                    idle: Duration::from_secs(31),
                    zero_after: Duration::from_secs(30),
                },
                "idle for 31s (zero-after 30s): scaled to zero",
            ),
            (
                Reason::Waking(None),
                "a call is waiting: starting from zero",
            ),
            (Reason::AboveMax(4), "above the maximum of 4"),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text);
        }
    }

    #[test]
    fn a_waiting_call_wakes_a_function_at_zero_to_its_minimum() {
        let mut sim = Sim::new(&[("faas.scale.min", "2")], 0);
        assert_eq!(sim.run(10, Sample::default()), vec![0; 10]);
        let d = sim.tick(Sample {
            waiting: true,
            ..Default::default()
        });
        assert_eq!((d.from, d.desired), (0, 2));
        assert!(matches!(d.reason, Reason::Waking(Some(_))), "{}", d.reason);
    }

    #[test]
    fn rps_targets_use_the_request_rate() {
        let mut sim = Sim::new(
            &[("faas.scale.type", "rps"), ("faas.scale.target", "50")],
            1,
        );
        let d = sim.tick(Sample {
            concurrency: 0.2,
            rate: 400.0,
            ..Default::default()
        });
        assert_eq!(d.desired, 8);
    }

    #[test]
    fn alerts_step_by_the_factor_of_max_and_resolve_to_min() {
        let s = settings(&[("faas.scale.max", "20"), ("faas.scale.min", "1")]);
        assert_eq!(alert_replicas(true, 1, &s), Some(5));
        assert_eq!(alert_replicas(true, 18, &s), Some(20));
        assert_eq!(alert_replicas(false, 12, &s), Some(1));
        // Resolved never scales up, nor to zero unless zero is allowed.
        assert_eq!(alert_replicas(false, 0, &s), None);
        assert_eq!(alert_replicas(false, 1, &s), None);
        let min0 = settings(&[("faas.scale.min", "0")]);
        assert_eq!(alert_replicas(false, 3, &min0), Some(1));
        let zero = settings(&[("faas.scale.min", "0"), ("faas.scale.zero", "true")]);
        assert_eq!(alert_replicas(false, 3, &zero), Some(0));
        let off = settings(&[("faas.scale.factor", "0")]);
        assert_eq!(alert_replicas(true, 1, &off), None);
        assert_eq!(alert_replicas(false, 5, &off), None);
        // No overflow at the edges.
        let huge = Settings {
            max: u64::MAX,
            ..settings(&[])
        };
        assert_eq!(alert_replicas(true, u64::MAX - 1, &huge), Some(u64::MAX));
    }

    #[test]
    fn zero_after_never_cuts_a_busy_function() {
        let mut sim = Sim::new(
            &[("faas.scale.zero", "true"), ("faas.scale.zero-after", "1s")],
            1,
        );
        assert!(sim.run(30, load(0.5)).iter().all(|&r| r == 1));
        let labels = BTreeMap::from([("faas.scale.zero-after".to_owned(), "0".to_owned())]);
        assert!(Settings::from_labels(&labels, Defaults::default()).is_err());
    }

    #[test]
    fn max_is_bounded_by_max_replicas_and_bad_labels_fall_back_one_by_one() {
        let defaults = Defaults {
            max_replicas: 50,
            ..Defaults::default()
        };
        let labels = BTreeMap::from([
            ("faas.scale.max".to_owned(), "500".to_owned()),
            ("faas.scale.min".to_owned(), "3".to_owned()),
            ("faas.scale.target".to_owned(), "nope".to_owned()),
        ]);
        let err = Settings::from_labels(&labels, defaults).unwrap_err();
        assert!(err.0.contains("above max_replicas (50)"), "{err}");
        let (s, problem) = Settings::lenient(&labels, defaults);
        assert_eq!((s.min, s.max, s.target), (3, 50, DEFAULT_TARGET));
        assert!(problem.is_some());
        // OpenFaaS's cpu type is tolerated (capacity), ours is not.
        let cpu = BTreeMap::from([("com.openfaas.scale.type".to_owned(), "cpu".to_owned())]);
        assert_eq!(
            Settings::from_labels(&cpu, defaults).unwrap().metric,
            Metric::Capacity
        );
        let window = BTreeMap::from([("faas.scale.window".to_owned(), "2h".to_owned())]);
        assert!(Settings::from_labels(&window, defaults).is_err());
    }
}
