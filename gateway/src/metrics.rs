//! Prometheus metrics at `GET /metrics`, with OpenFaaS's names:
//! `gateway_function_invocation_total{function_name,code}`,
//! `gateway_functions_seconds{function_name,code}` (histogram),
//! `gateway_function_invocation_started{function_name}` and
//! `gateway_service_count{function_name}` (ready replicas), plus our
//! `gateway_function_invocation_inflight{function_name}`, the async
//! queue's figures and the autoscaler's (`gateway_replicas_desired`,
//! `gateway_scaling_events_total`, `gateway_cold_start_seconds`).
//!
//! Each function's handles are resolved once, when the function is first
//! seen; per status code they are cached on first use. Recording a call
//! takes no lock on the common codes.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use http::StatusCode;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

const CODES: [u16; 12] = [200, 201, 202, 204, 400, 404, 413, 429, 500, 502, 503, 504];

pub struct Metrics {
    registry: Registry,
    invocations: IntCounterVec,
    seconds: HistogramVec,
    started: IntCounterVec,
    service_count: IntGaugeVec,
    inflight: IntGaugeVec,
    queue_depth: IntGaugeVec,
    async_finished: IntCounterVec,
    async_retries: IntCounterVec,
    enqueue_seconds: Histogram,
    desired: IntGaugeVec,
    scaling_events: IntCounterVec,
    cold_start: HistogramVec,
    /// Bytes of request bodies buffered now (async, bulk, Alexa, API).
    pub buffered_bytes: IntGauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let invocations = IntCounterVec::new(
            Opts::new(
                "gateway_function_invocation_total",
                "Function calls completed, by function and status code.",
            ),
            &["function_name", "code"],
        )
        .expect("valid metric");
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "gateway_functions_seconds",
                "Time from a call's arrival to its response headers, by function and status code.",
            ),
            &["function_name", "code"],
        )
        .expect("valid metric");
        let started = IntCounterVec::new(
            Opts::new(
                "gateway_function_invocation_started",
                "Function calls started, by function.",
            ),
            &["function_name"],
        )
        .expect("valid metric");
        let service_count = IntGaugeVec::new(
            Opts::new("gateway_service_count", "Ready replicas, by function."),
            &["function_name"],
        )
        .expect("valid metric");
        let inflight = IntGaugeVec::new(
            Opts::new(
                "gateway_function_invocation_inflight",
                "Calls in flight through the gateway, by function.",
            ),
            &["function_name"],
        )
        .expect("valid metric");
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "gateway_async_queue_depth",
                "Async calls waiting in the queue (due or retrying), by function.",
            ),
            &["function_name"],
        )
        .expect("valid metric");
        let async_finished = IntCounterVec::new(
            Opts::new(
                "gateway_async_executions_total",
                "Async calls that reached a final state, by function and status (succeeded, failed, dead).",
            ),
            &["function_name", "status"],
        )
        .expect("valid metric");
        let async_retries = IntCounterVec::new(
            Opts::new(
                "gateway_async_retries_total",
                "Async call attempts scheduled again after a busy or unreachable function, by function.",
            ),
            &["function_name"],
        )
        .expect("valid metric");
        let enqueue_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_async_enqueue_seconds",
                "Time from an async request's arrival to its durable 202.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
        )
        .expect("valid metric");
        let desired = IntGaugeVec::new(
            Opts::new(
                "gateway_replicas_desired",
                "Replicas the engine has been asked for, by function (gateway_service_count: ready ones).",
            ),
            &["function_name"],
        )
        .expect("valid metric");
        let scaling_events = IntCounterVec::new(
            Opts::new(
                "gateway_scaling_events_total",
                "Replica count changes made by the autoscaler, by function and direction (up, down).",
            ),
            &["function_name", "direction"],
        )
        .expect("valid metric");
        let cold_start = HistogramVec::new(
            HistogramOpts::new(
                "gateway_cold_start_seconds",
                "Time from a scale-up from zero to the function's first ready replica.",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
            ]),
            &["function_name"],
        )
        .expect("valid metric");
        let buffered_bytes = IntGauge::new(
            "gateway_buffered_bytes",
            "Bytes of request bodies the gateway holds in memory now (at most max_buffered).",
        )
        .expect("valid metric");
        for metric in [
            Box::new(buffered_bytes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(desired.clone()),
            Box::new(scaling_events.clone()),
            Box::new(cold_start.clone()),
            Box::new(queue_depth.clone()),
            Box::new(async_finished.clone()),
            Box::new(async_retries.clone()),
            Box::new(enqueue_seconds.clone()),
            Box::new(invocations.clone()),
            Box::new(seconds.clone()),
            Box::new(started.clone()),
            Box::new(service_count.clone()),
            Box::new(inflight.clone()),
        ] {
            registry.register(metric).expect("unique metric");
        }
        Metrics {
            registry,
            invocations,
            seconds,
            started,
            service_count,
            inflight,
            queue_depth,
            async_finished,
            async_retries,
            enqueue_seconds,
            desired,
            scaling_events,
            cold_start,
            buffered_bytes,
        }
    }

    /// The queue's depth per function (functions no longer queued go to 0).
    pub fn set_queue_depth(&self, depth: &std::collections::HashMap<String, u64>) {
        for (function, n) in depth {
            self.queue_depth
                .with_label_values(&[function.as_str()])
                .set(*n as i64);
        }
    }

    pub fn async_finished(&self, function: &str, status: faas_common::api::ExecutionStatus) {
        self.async_finished
            .with_label_values(&[function, status.as_str()])
            .inc();
    }

    pub fn async_retry(&self, function: &str) {
        self.async_retries.with_label_values(&[function]).inc();
    }

    pub fn async_enqueued(&self, elapsed: Duration) {
        self.enqueue_seconds.observe(elapsed.as_secs_f64());
    }

    /// The handles of one function.
    pub fn function(&self, name: &str) -> FunctionMetrics {
        FunctionMetrics {
            name: name.to_owned(),
            invocations: self.invocations.clone(),
            seconds: self.seconds.clone(),
            service_count_vec: self.service_count.clone(),
            started: self.started.with_label_values(&[name]),
            inflight: self.inflight.with_label_values(&[name]),
            service_count: self.service_count.with_label_values(&[name]),
            desired_vec: self.desired.clone(),
            desired: self.desired.with_label_values(&[name]),
            scaled_up: self.scaling_events.with_label_values(&[name, "up"]),
            scaled_down: self.scaling_events.with_label_values(&[name, "down"]),
            cold_start: self.cold_start.with_label_values(&[name]),
            common: Default::default(),
            other: Mutex::new(HashMap::new()),
        }
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8192);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

type ByCode = (IntCounter, Histogram);

pub struct FunctionMetrics {
    name: String,
    invocations: IntCounterVec,
    seconds: HistogramVec,
    service_count_vec: IntGaugeVec,
    pub started: IntCounter,
    pub inflight: IntGauge,
    service_count: IntGauge,
    desired_vec: IntGaugeVec,
    desired: IntGauge,
    scaled_up: IntCounter,
    scaled_down: IntCounter,
    cold_start: Histogram,
    common: [OnceLock<ByCode>; CODES.len()],
    other: Mutex<HashMap<u16, ByCode>>,
}

impl FunctionMetrics {
    pub fn observe(&self, code: StatusCode, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let record = |(count, hist): &ByCode| {
            count.inc();
            hist.observe(seconds);
        };
        match CODES.iter().position(|&c| c == code.as_u16()) {
            Some(i) => record(self.common[i].get_or_init(|| self.handles(code))),
            None => {
                let mut other = self.other.lock().unwrap_or_else(|e| e.into_inner());
                record(
                    other
                        .entry(code.as_u16())
                        .or_insert_with(|| self.handles(code)),
                );
            }
        }
    }

    fn handles(&self, code: StatusCode) -> ByCode {
        let labels = [self.name.as_str(), code.as_str()];
        (
            self.invocations.with_label_values(&labels),
            self.seconds.with_label_values(&labels),
        )
    }

    pub fn set_replicas(&self, ready: usize) {
        self.service_count.set(ready as i64);
    }

    pub fn set_desired(&self, desired: u64) {
        self.desired.set(desired as i64);
    }

    /// The autoscaler changed the replica count.
    pub fn scaled(&self, up: bool) {
        if up {
            self.scaled_up.inc();
        } else {
            self.scaled_down.inc();
        }
    }

    pub fn cold_started(&self, elapsed: Duration) {
        self.cold_start.observe(elapsed.as_secs_f64());
    }

    /// The function is gone: drop its replica gauges (counters stay, as
    /// Prometheus expects of counters).
    pub fn forget(&self) {
        let _ = self.service_count_vec.remove_label_values(&[&self.name]);
        let _ = self.desired_vec.remove_label_values(&[&self.name]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_function_and_code() {
        let m = Metrics::new();
        let f = m.function("echo");
        f.started.inc();
        f.observe(StatusCode::OK, Duration::from_millis(2));
        f.observe(StatusCode::OK, Duration::from_millis(2));
        f.observe(StatusCode::IM_A_TEAPOT, Duration::ZERO);
        f.set_replicas(3);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(
                r#"gateway_function_invocation_total{code="200",function_name="echo"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"gateway_function_invocation_total{code="418",function_name="echo"} 1"#
            )
        );
        assert!(
            text.contains(r#"gateway_functions_seconds_count{code="200",function_name="echo"} 2"#)
        );
        assert!(text.contains(r#"gateway_function_invocation_started{function_name="echo"} 1"#));
        assert!(text.contains(r#"gateway_service_count{function_name="echo"} 3"#));
        f.forget();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(!text.contains("gateway_service_count{"), "{text}");
    }
}
