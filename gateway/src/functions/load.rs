//! A function's load, measured by the forwarder and read by the
//! autoscaler each tick: calls in flight integrated over time, and calls
//! started.

use std::sync::Mutex;
use std::time::Instant;

/// A function's load as the autoscaler reads it: calls in flight, their
/// time-weighted sum since the last reading, and calls started.
pub struct Load {
    inner: Mutex<LoadInner>,
}

struct LoadInner {
    inflight: u64,
    /// In-flight calls × seconds since `read_at`.
    area: f64,
    changed_at: Instant,
    read_at: Instant,
    started: u64,
}

/// One reading of a [`Load`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadReading {
    /// Average calls in flight since the last reading.
    pub concurrency: f64,
    /// Calls started per second since the last reading.
    pub rate: f64,
    /// Calls in flight now.
    pub inflight: u64,
}

impl Load {
    pub(super) fn new() -> Load {
        let now = Instant::now();
        Load {
            inner: Mutex::new(LoadInner {
                inflight: 0,
                area: 0.0,
                changed_at: now,
                read_at: now,
                started: 0,
            }),
        }
    }

    fn step(&self, now: Instant, change: impl FnOnce(&mut LoadInner)) {
        let mut load = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let dt = now.saturating_duration_since(load.changed_at).as_secs_f64();
        load.area += load.inflight as f64 * dt;
        load.changed_at = now;
        change(&mut load);
    }

    /// A call started.
    pub fn begin(&self, now: Instant) {
        self.step(now, |l| {
            l.inflight += 1;
            l.started += 1;
        });
    }

    /// A call ended (its response body is done).
    pub fn end(&self, now: Instant) {
        self.step(now, |l| l.inflight = l.inflight.saturating_sub(1));
    }

    /// The load since the last reading, and starts a new period.
    pub fn read(&self, now: Instant) -> LoadReading {
        let mut reading = LoadReading::default();
        self.step(now, |l| {
            let period = now.saturating_duration_since(l.read_at).as_secs_f64();
            if period > 0.0 {
                reading.concurrency = l.area / period;
                reading.rate = l.started as f64 / period;
            }
            reading.inflight = l.inflight;
            l.area = 0.0;
            l.started = 0;
            l.read_at = now;
        });
        reading
    }
}
