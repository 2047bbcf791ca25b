//! Prometheus metrics served on `metrics_port`:
//! `http_requests_total{code,method}`,
//! `http_request_duration_seconds{code,method}` and `http_requests_in_flight`.
//!
//! Label handles for the common (method, code) pairs are resolved once and
//! cached, so recording a request touches no map and allocates nothing.

use std::sync::OnceLock;
use std::time::Duration;

use http::{Method, StatusCode};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

const METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::HEAD,
    Method::OPTIONS,
];
const CODES: [u16; 16] = [
    200, 201, 202, 204, 400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504, 301,
];

type Handles = (IntCounter, Histogram);

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    pub in_flight: IntGauge,
    cache: [[OnceLock<Handles>; CODES.len()]; METHODS.len()],
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "Requests served, by status code and method.",
            ),
            &["code", "method"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from request to response headers, by status code and method.",
            ),
            &["code", "method"],
        )
        .expect("valid metric");
        let in_flight = IntGauge::new("http_requests_in_flight", "Requests being served now.")
            .expect("valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(duration.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(in_flight.clone()))
            .expect("unique metric");
        Metrics {
            registry,
            requests,
            duration,
            in_flight,
            cache: Default::default(),
        }
    }

    pub fn observe(&self, method: &Method, code: StatusCode, elapsed: Duration) {
        let m = METHODS.iter().position(|x| x == method);
        let c = CODES.iter().position(|&x| x == code.as_u16());
        let seconds = elapsed.as_secs_f64();
        if let (Some(m), Some(c)) = (m, c) {
            let (count, hist) = self.cache[m][c].get_or_init(|| self.handles(method, code));
            count.inc();
            hist.observe(seconds);
        } else {
            let (count, hist) = self.handles(method, code);
            count.inc();
            hist.observe(seconds);
        }
    }

    /// The method label: the standard ones by name, anything else `other`,
    /// so a client inventing methods cannot grow the series without bound.
    fn method_label(method: &Method) -> &str {
        if METHODS.contains(method) || *method == Method::CONNECT || *method == Method::TRACE {
            method.as_str()
        } else {
            "other"
        }
    }

    fn handles(&self, method: &Method, code: StatusCode) -> Handles {
        let labels = [code.as_str(), Metrics::method_label(method)];
        (
            self.requests.with_label_values(&labels),
            self.duration.with_label_values(&labels),
        )
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_code_and_method() {
        let m = Metrics::new();
        m.observe(&Method::POST, StatusCode::OK, Duration::from_millis(3));
        m.observe(&Method::POST, StatusCode::OK, Duration::from_millis(3));
        m.observe(
            &Method::from_bytes(b"PURGE").unwrap(),
            StatusCode::IM_A_TEAPOT,
            Duration::ZERO,
        );
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(r#"http_requests_total{code="200",method="POST"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_requests_total{code="418",method="other"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_request_duration_seconds_count{code="200",method="POST"} 2"#)
        );
        assert!(text.contains("http_requests_in_flight 0"));
    }
}
