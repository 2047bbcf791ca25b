//! What every request shares: the configuration, the reaper, health,
//! metrics, the `http`-mode client, and the count of requests in flight
//! that `max_inflight` admits against.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::HeaderValue;

use crate::config::Config;
use crate::health::Health;
use crate::limits::ProcFiles;
use crate::metrics::Metrics;
use crate::process::Reaper;
use crate::upstream;

/// Everything a request handler shares.
pub struct State {
    pub config: Config,
    pub reaper: &'static Reaper,
    pub health: Arc<Health>,
    pub metrics: Metrics,
    pub upstream: Option<upstream::Client>,
    pub hostname: HeaderValue,
    /// `X-Memory-Limit-Bytes`: the limit this instance runs under, if any.
    pub memory_limit: Option<HeaderValue>,
    /// `http` mode: the runner has answered with its own per-call figures,
    /// so the watchdog no longer samples `/proc` around calls.
    pub upstream_reports_figures: AtomicBool,
    /// `http` mode: the runner's `/proc` files, kept open while it runs.
    upstream_proc: Mutex<Option<Arc<ProcFiles>>>,
    cold: AtomicBool,
    inflight: AtomicUsize,
}

impl State {
    pub fn new(config: Config, health: Arc<Health>, upstream: Option<upstream::Client>) -> State {
        // `HOSTNAME` when set: the process provider's replicas share the
        // machine's name, so it names each by its id.
        let served_by = config.hostname.clone().unwrap_or_else(hostname);
        State {
            reaper: Reaper::start(config.reaper),
            config,
            health,
            metrics: Metrics::new(),
            upstream,
            hostname: HeaderValue::from_str(&served_by)
                .unwrap_or(HeaderValue::from_static("unknown")),
            memory_limit: crate::limits::memory_limit().map(|(bytes, _)| HeaderValue::from(bytes)),
            upstream_reports_figures: AtomicBool::new(false),
            upstream_proc: Mutex::new(None),
            cold: AtomicBool::new(true),
            inflight: AtomicUsize::new(0),
        }
    }

    /// The `http`-mode runner's `/proc` files, opened once per runner
    /// process (again after a restart); `None` while none runs.
    pub fn upstream_proc_files(&self) -> Option<Arc<ProcFiles>> {
        let pid = self.health.upstream_pid()?;
        let mut kept = self.upstream_proc.lock().unwrap_or_else(|e| e.into_inner());
        match kept.as_ref() {
            Some(files) if files.pid() == pid => Some(files.clone()),
            _ => {
                *kept = ProcFiles::open(pid).map(Arc::new);
                kept.clone()
            }
        }
    }

    /// Drops the kept files when they no longer read (the runner ended,
    /// even if a new one got the same pid).
    pub fn forget_proc_files(&self) {
        *self.upstream_proc.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// True for the first request this instance serves, false after.
    pub fn take_cold(&self) -> bool {
        self.cold.swap(false, Ordering::Relaxed)
    }

    /// Whether `max_inflight` requests are running now.
    pub fn at_capacity(&self) -> bool {
        let max = self.config.max_inflight;
        max > 0 && self.inflight.load(Ordering::SeqCst) >= max
    }
}

/// Counts a request as in flight from admission until its response body is
/// done. Acquired only under `max_inflight`.
pub struct InflightGuard {
    state: Arc<State>,
}

impl InflightGuard {
    /// Admits a request, or `None` when `max_inflight` are running.
    pub fn acquire(state: &Arc<State>) -> Option<InflightGuard> {
        let max = state.config.max_inflight;
        let before = state.inflight.fetch_add(1, Ordering::SeqCst);
        if max > 0 && before >= max {
            state.inflight.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        state.metrics.in_flight.inc();
        Some(InflightGuard {
            state: state.clone(),
        })
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.state.inflight.fetch_sub(1, Ordering::SeqCst);
        self.state.metrics.in_flight.dec();
    }
}

/// The machine's name.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
