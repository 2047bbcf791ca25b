//! Async calls: the durable queue ([`store`]), the dispatcher that runs
//! queued calls through the same forwarder as synchronous ones, and the
//! HTTP routes ([`api`]).
//!
//! A call's path: `api` stores it (durably) and answers 202; the
//! dispatcher takes it when it is due and its function has room
//! (`faas.async.concurrency`), marks it running (durably), forwards it, and
//! records the outcome: succeeded (2xx), failed (another answer), or, on
//! 429/502/503/504 and connection errors, back to the queue with
//! exponential backoff and jitter until `faas.async.max-retries` is spent
//! (then dead). A callback, when asked for, is delivered after the final
//! state is recorded, retried the same way, and its outcome recorded too.

pub mod api;
pub mod callback;
pub mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use faas_common::api::{CallFigures, CallbackRecord, Execution, ExecutionStatus};
use faas_common::shutdown::Shutdown;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
use crate::forward::{CallBody, Forwarder};
use crate::functions::{Function, Table};
use crate::metrics::Metrics;
use store::{Outcome, Output, Store, StoredRequest};

/// Labels (ours, then OpenFaaS's spelling) that tune a function's async calls.
const CONCURRENCY_LABELS: [&str; 2] = ["faas.async.concurrency", "com.openfaas.async.concurrency"];
const RETRIES_LABELS: [&str; 2] = ["faas.async.max-retries", "com.openfaas.async.max-retries"];
/// Which answers are retried (comma-separated codes); default 429,502,503,504.
const RETRY_CODES_LABEL: &str = "faas.async.retry-codes";
const DEFAULT_RETRY_CODES: [u16; 4] = [429, 502, 503, 504];
/// How often the retention purge runs (at most).
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// The dispatcher looks again at least this often (a function that gets a
/// replica back, a label that changes).
const IDLE_TICK: Duration = Duration::from_secs(1);

/// The async side of the gateway.
pub struct AsyncQueue {
    pub store: Store,
    wake: Notify,
    /// Calls running now, per function.
    running: Mutex<HashMap<String, usize>>,
    /// Callbacks being delivered (the drain waits for them too).
    delivering: AtomicUsize,
    /// Where callbacks may go (`--callback-allow`).
    pub callbacks: callback::Policy,
    /// Resolves through the policy: only allowed addresses are connected to.
    callback_client: Client<HttpConnector<callback::Resolver>, Full<Bytes>>,
    /// Callback requests in flight at once (`callback_concurrency`); a
    /// delivery holds a slot per attempt, not while it waits to retry.
    callback_slots: Arc<Semaphore>,
}

/// One callback in flight, counted while it lives.
struct Delivering(Arc<AsyncQueue>);

impl Drop for Delivering {
    fn drop(&mut self) {
        self.0.delivering.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncQueue {
    pub fn new(store: Store, callbacks: callback::Policy, concurrency: usize) -> AsyncQueue {
        let connector =
            HttpConnector::new_with_resolver(callback::Resolver::new(callbacks.clone()));
        AsyncQueue {
            store,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            delivering: AtomicUsize::new(0),
            callbacks,
            callback_client: Client::builder(TokioExecutor::new()).build(connector),
            callback_slots: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// New work has arrived.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    fn delivering(self: &Arc<Self>) -> Delivering {
        self.delivering.fetch_add(1, Ordering::SeqCst);
        Delivering(self.clone())
    }

    /// Calls running and callbacks being delivered.
    fn in_flight(&self) -> usize {
        let running: usize = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum();
        running + self.delivering.load(Ordering::SeqCst)
    }

    /// The calls waiting per function (the autoscaler reads it).
    pub fn depth(&self) -> HashMap<String, u64> {
        self.store.depth()
    }
}

/// What the dispatcher's settings are, from the configuration.
#[derive(Debug, Clone)]
struct Settings {
    concurrency: usize,
    max_retries: u32,
    retry_base: Duration,
    retry_max: Duration,
    max_output: u64,
    retention: Duration,
    cold_wait: Duration,
    callback_timeout: Duration,
}

/// Runs queued calls: takes what it uses, not the whole gateway.
pub struct Dispatcher {
    queue: Arc<AsyncQueue>,
    table: Arc<Table>,
    forwarder: Forwarder,
    metrics: Arc<Metrics>,
    settings: Settings,
}

impl Dispatcher {
    pub fn new(
        config: &Config,
        queue: Arc<AsyncQueue>,
        table: Arc<Table>,
        forwarder: Forwarder,
        metrics: Arc<Metrics>,
    ) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            queue,
            table,
            forwarder,
            metrics,
            settings: Settings {
                concurrency: config.async_concurrency,
                max_retries: config.async_max_retries,
                retry_base: config.async_retry_base,
                retry_max: config.async_retry_max,
                max_output: config.async_max_output,
                retention: config.async_retention,
                cold_wait: config.scale_from_zero_wait,
                callback_timeout: config.callback_timeout,
            },
        })
    }

    /// Takes due calls while their functions have room, until `stop`; then
    /// waits up to `drain` for running calls and callbacks (those still
    /// running stay `running` in the store and run again at the next
    /// start; callbacks still pending are delivered then).
    pub async fn run(self: Arc<Self>, mut stop: Shutdown, drain: Duration) {
        let dispatcher = self;
        let queue = dispatcher.queue.clone();
        let unsent = queue.store.take_unsent_callbacks();
        if !unsent.is_empty() {
            tracing::warn!(
                callbacks = unsent.len(),
                "callbacks were pending when the gateway stopped: delivering them"
            );
        }
        // One at a time as slots free up, not all at once.
        tokio::spawn({
            let dispatcher = dispatcher.clone();
            let mut stop = stop.clone();
            async move {
                for execution in unsent {
                    let Some(callback) = execution.callback.clone() else {
                        continue;
                    };
                    let slot = tokio::select! {
                        slot = dispatcher.queue.callback_slots.clone().acquire_owned() => slot.expect("never closed"),
                        () = stop.wait() => break,
                    };
                    let delivering = dispatcher.queue.delivering();
                    let dispatcher = dispatcher.clone();
                    tokio::spawn(async move {
                        let _delivering = delivering;
                        deliver_callback(&dispatcher, &execution, callback, Some(slot)).await;
                    });
                }
            }
        });
        let mut next_purge = Instant::now();
        loop {
            if stop.is_shutdown() {
                break;
            }
            let (taken, next_due) = {
                let mut running = queue.running.lock().unwrap_or_else(|e| e.into_inner());
                queue.store.take_due(SystemTime::now(), |function| {
                    // A function at zero: its calls wait here (not in a
                    // retry loop) while the autoscaler starts it, for as
                    // long as a sync call would wait; then they run, and
                    // the retry rules apply.
                    if let Some(f) = dispatcher.table.get(function)
                        && f.starting_from_zero(dispatcher.settings.cold_wait)
                    {
                        f.want_replica();
                        return false;
                    }
                    let limit = concurrency(&dispatcher, function);
                    let now = running.entry(function.to_owned()).or_default();
                    if *now < limit {
                        *now += 1;
                        true
                    } else {
                        false
                    }
                })
            };
            for (id, function) in taken {
                tokio::spawn(run(dispatcher.clone(), id, function));
            }
            dispatcher.metrics.set_queue_depth(&queue.store.depth());
            if Instant::now() >= next_purge {
                next_purge = Instant::now() + PURGE_EVERY.min(dispatcher.settings.retention / 10);
                let before = SystemTime::now() - dispatcher.settings.retention;
                match queue.store.purge(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        records = n,
                        "purged finished async calls past their retention"
                    ),
                    Err(e) => tracing::error!(error = %e, "cannot purge old async calls"),
                }
            }
            let sleep = next_due
                .and_then(|due| due.duration_since(SystemTime::now()).ok())
                .unwrap_or(IDLE_TICK)
                .min(IDLE_TICK)
                .min(next_purge.saturating_duration_since(Instant::now()));
            tokio::select! {
                () = queue.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                () = stop.wait() => {}
            }
        }
        let deadline = Instant::now() + drain;
        while queue.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = queue.in_flight();
        if left > 0 {
            tracing::warn!(
                calls = left,
                "async calls or callbacks still in flight at shutdown: they run again at the next start"
            );
        }
        queue.store.close();
    }
}

fn label_number(dispatcher: &Dispatcher, function: &str, keys: [&str; 2]) -> Option<u64> {
    let labels = dispatcher.table.get(function)?.labels();
    keys.iter()
        .find_map(|k| labels.get(*k))
        .and_then(|v| v.trim().parse().ok())
}

fn concurrency(dispatcher: &Dispatcher, function: &str) -> usize {
    label_number(dispatcher, function, CONCURRENCY_LABELS)
        .map_or(dispatcher.settings.concurrency, |n| n as usize)
        .max(1)
}

fn max_retries(dispatcher: &Dispatcher, function: &str) -> u32 {
    label_number(dispatcher, function, RETRIES_LABELS)
        .map_or(dispatcher.settings.max_retries, |n| n.min(1000) as u32)
}

/// The wait before retry `attempt` (1-based): base × 2^(attempt-1), capped,
/// with "equal jitter" (half fixed, half random) so a burst of failures
/// does not come back all at once.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1).min(30))
                .unwrap_or(u32::MAX),
        )
        .min(max);
    let half = exp / 2;
    let jitter = fastrand_f64();
    half + half.mul_f64(jitter)
}

fn fastrand_f64() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

/// The codes a function's calls are retried on: its
/// `faas.async.retry-codes` label (e.g. `500,503`), else 429, 502, 503, 504.
fn retry_codes(dispatcher: &Dispatcher, function: &str) -> Vec<u16> {
    dispatcher
        .table
        .get(function)
        .and_then(|f| f.labels().get(RETRY_CODES_LABEL).cloned())
        .map(|v| {
            v.split(',')
                .filter_map(|c| c.trim().parse::<u16>().ok())
                .collect::<Vec<_>>()
        })
        .filter(|codes| !codes.is_empty())
        .unwrap_or_else(|| DEFAULT_RETRY_CODES.to_vec())
}

/// Whether an answer (or its absence: a connection error) is worth
/// another attempt.
fn retryable(status: Option<StatusCode>, codes: &[u16]) -> bool {
    match status {
        None => true,
        Some(s) => codes.contains(&s.as_u16()),
    }
}

/// Runs one taken call: start, forward, record, call back.
async fn run(dispatcher: Arc<Dispatcher>, id: String, function: String) {
    let queue = dispatcher.queue.clone();
    let finished = attempt(&dispatcher, &id, &function).await;
    // Counted before the call leaves `running`: the drain sees no gap.
    let callback = finished.and_then(|execution| {
        let callback = execution.callback.clone()?;
        Some((queue.delivering(), execution, callback))
    });
    {
        let mut running = queue.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = running.get_mut(&function) {
            *n = n.saturating_sub(1);
        }
    }
    queue.notify();
    if let Some((_delivering, execution, callback)) = callback {
        deliver_callback(&dispatcher, &execution, callback, None).await;
    }
}

/// What becomes of a call after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Back to the queue, after a backoff.
    Retry,
    /// Succeeded, failed (an answer not worth retrying) or dead (retries
    /// spent on answers that were).
    Final(ExecutionStatus),
}

/// The verdict on an attempt that got `status` (`None`: no answer at all),
/// given which answers are retried and whether retries are left.
fn classify(status: Option<StatusCode>, retry_codes: &[u16], retries_left: bool) -> Verdict {
    match status {
        Some(s) if s.is_success() => Verdict::Final(ExecutionStatus::Succeeded),
        _ if retryable(status, retry_codes) && retries_left => Verdict::Retry,
        _ if retryable(status, retry_codes) => Verdict::Final(ExecutionStatus::Dead),
        _ => Verdict::Final(ExecutionStatus::Failed),
    }
}

/// One delivery attempt; the record when it reached a final state.
async fn attempt(dispatcher: &Dispatcher, id: &str, function: &str) -> Option<Execution> {
    let queue = &dispatcher.queue;
    let (execution, request) = match queue.store.start(id).await {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(call_id = %id, error = %e, "cannot start an async call");
            queue.store.restore(id);
            return None;
        }
    };
    let started = Instant::now();
    let Forwarded {
        status,
        output,
        error,
        figures,
    } = match dispatcher.table.get(function) {
        None => Forwarded::failed(format!("function {function:?} not found")),
        Some(target) => forward_stored(dispatcher, &target, &request).await,
    };
    let elapsed = started.elapsed();
    let retries_left = execution.attempts <= max_retries(dispatcher, function);
    let verdict = classify(status, &retry_codes(dispatcher, function), retries_left);
    let status_code = status.map(|s| s.as_u16());
    let outcome = match verdict {
        Verdict::Retry => {
            dispatcher.metrics.async_retry(function);
            let wait = backoff(
                dispatcher.settings.retry_base,
                dispatcher.settings.retry_max,
                execution.attempts,
            );
            tracing::info!(call_id = %id, function, attempt = execution.attempts, ?wait, error = ?error, "async call will be retried");
            Outcome::Retry {
                due: SystemTime::now() + wait,
                status_code,
                error: error.unwrap_or_default(),
            }
        }
        Verdict::Final(status) => Outcome::Finished {
            status,
            status_code,
            duration: elapsed,
            error: (status != ExecutionStatus::Succeeded)
                .then_some(error)
                .flatten(),
            output,
            figures,
        },
    };
    match queue.store.finish(id, outcome).await {
        Ok(record) if record.status.is_final() => {
            dispatcher.metrics.async_finished(function, record.status);
            Some(record)
        }
        Ok(_) => None,
        Err(e) => {
            tracing::error!(call_id = %id, error = %e, "cannot record an async call's outcome");
            queue.store.restore(id);
            None
        }
    }
}

/// What an attempt got back.
struct Forwarded {
    /// The answer's status (`None`: no answer).
    status: Option<StatusCode>,
    /// The output, kept up to `async_max_output`.
    output: Option<Output>,
    /// What went wrong, if anything did.
    error: Option<String>,
    /// What the replica reported about the call.
    figures: Option<CallFigures>,
}

impl Forwarded {
    fn failed(error: String) -> Forwarded {
        Forwarded {
            status: None,
            output: None,
            error: Some(error),
            figures: None,
        }
    }
}

/// Sends a stored call to its function.
async fn forward_stored(
    dispatcher: &Dispatcher,
    target: &Arc<Function>,
    request: &StoredRequest,
) -> Forwarded {
    let mut builder = Request::builder()
        .method(Method::from_bytes(request.method.as_bytes()).unwrap_or(Method::POST))
        .uri(request.path.as_str())
        // A streamed output's resource figures come as trailers.
        .header(http::header::TE, "trailers");
    for (name, value) in &request.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            builder = builder.header(n, v);
        }
    }
    match builder.body(()) {
        Err(e) => Forwarded::failed(format!("the stored request is unusable: {e}")),
        Ok(req) => {
            let (parts, ()) = req.into_parts();
            let peer = SocketAddr::from(([127, 0, 0, 1], 0));
            let response = dispatcher
                .forwarder
                .forward(
                    target,
                    parts,
                    CallBody::Buffered(request.body.clone()),
                    &request.path,
                    peer,
                )
                .await;
            let status = response.status();
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/octet-stream")
                .to_owned();
            let mut figures = CallFigures::from_headers(|name| {
                response.headers().get(name).and_then(|v| v.to_str().ok())
            });
            let (body, truncated, read_error, trailers) =
                read_limited(response.into_body(), dispatcher.settings.max_output).await;
            if let Some(later) = trailers.as_ref().and_then(|t| {
                CallFigures::from_headers(|name| t.get(name).and_then(|v| v.to_str().ok()))
            }) {
                match &mut figures {
                    Some(figures) => figures.merge(later),
                    None => figures = Some(later),
                }
            }
            let error = read_error.or_else(|| {
                (!status.is_success()).then(|| {
                    let text = String::from_utf8_lossy(&body);
                    let line = text.lines().next().unwrap_or("").trim();
                    format!("{status}: {line}")
                })
            });
            Forwarded {
                status: Some(status),
                output: Some(Output {
                    content_type,
                    body,
                    truncated,
                }),
                error,
                figures,
            }
        }
    }
}

/// A response body, kept up to `limit` bytes (the rest is read and
/// dropped): the bytes, whether some were dropped, what broke it off, and
/// its trailers.
async fn read_limited(
    mut body: axum::body::Body,
    limit: u64,
) -> (Bytes, bool, Option<String>, Option<http::HeaderMap>) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => {
                    let room = (limit as usize).saturating_sub(kept.len());
                    if data.len() > room {
                        truncated = true;
                    }
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
                Err(frame) => trailers = frame.into_trailers().ok(),
            },
            Err(e) => {
                return (
                    Bytes::from(kept),
                    truncated,
                    Some(format!("the response body broke off: {e}")),
                    trailers,
                );
            }
        }
    }
    (Bytes::from(kept), truncated, None, trailers)
}

/// POSTs the result to the callback URL, retrying like calls, and records
/// how it went. Each attempt takes a callback slot (`slot`, when the
/// caller already holds one, is used for the first).
async fn deliver_callback(
    dispatcher: &Dispatcher,
    execution: &Execution,
    mut callback: CallbackRecord,
    mut slot: Option<OwnedSemaphorePermit>,
) {
    let queue = &dispatcher.queue;
    let max = max_retries(dispatcher, &execution.function) + 1;
    // Checked again at delivery: the record may predate the operator's
    // current policy. Names are checked by their addresses as they connect.
    if let Err(refused) = queue.callbacks.check_url(&callback.url) {
        callback.attempts += 1;
        callback.status = "failed".into();
        callback.error = Some(refused);
        record_callback(dispatcher, execution, callback).await;
        return;
    }
    loop {
        callback.attempts += 1;
        let _slot = match slot.take() {
            Some(held) => held,
            None => queue
                .callback_slots
                .clone()
                .acquire_owned()
                .await
                .expect("never closed"),
        };
        // Read only while holding a slot: deliveries waiting for one hold
        // their record, not the output (up to async_max_output each).
        let output = queue.store.output(&execution.id).ok().flatten();
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(callback.url.as_str())
            .header("x-call-id", execution.id.as_str())
            .header("x-function-name", execution.function.as_str())
            .header(
                "x-function-status",
                execution
                    .status_code
                    .map_or(String::new(), |c| c.to_string()),
            )
            .header(
                "x-duration-seconds",
                format!("{:.6}", execution.duration_seconds.unwrap_or(0.0)),
            )
            .header("x-execution-status", execution.status.as_str());
        if let Some(o) = &output {
            builder = builder.header(CONTENT_TYPE, o.content_type.as_str());
        }
        let body = output.as_ref().map(|o| o.body.clone()).unwrap_or_default();
        let result = match builder.body(Full::new(body)) {
            Err(e) => Err((format!("invalid callback request: {e}"), false)),
            Ok(request) => match tokio::time::timeout(
                dispatcher.settings.callback_timeout,
                queue.callback_client.request(request),
            )
            .await
            {
                Err(_) => Err((
                    format!(
                        "no answer within {:?}",
                        dispatcher.settings.callback_timeout
                    ),
                    true,
                )),
                // Refused by the policy: no retry will change that.
                Ok(Err(e)) => Err((
                    format!(
                        "cannot reach the callback URL: {}",
                        faas_common::message::error_chain(&e)
                    ),
                    !refused(&e),
                )),
                Ok(Ok(response)) => Ok(response.status()),
            },
        };
        let retry = match result {
            Ok(status) => {
                callback.status_code = Some(status.as_u16());
                if status.is_success() {
                    callback.status = "delivered".into();
                    callback.error = None;
                    false
                } else {
                    callback.error = Some(format!("the callback URL answered {status}"));
                    status.as_u16() == 429 || status.is_server_error()
                }
            }
            Err((e, retry)) => {
                callback.error = Some(e);
                retry
            }
        };
        if callback.status == "delivered" || !retry || callback.attempts >= max {
            if callback.status != "delivered" {
                callback.status = "failed".into();
            }
            break;
        }
        drop(_slot);
        tokio::time::sleep(backoff(
            dispatcher.settings.retry_base,
            dispatcher.settings.retry_max,
            callback.attempts,
        ))
        .await;
    }
    record_callback(dispatcher, execution, callback).await;
}

/// Records how a callback ended.
async fn record_callback(dispatcher: &Dispatcher, execution: &Execution, callback: CallbackRecord) {
    tracing::info!(call_id = %execution.id, url = %callback.url, status = %callback.status, attempts = callback.attempts, error = ?callback.error, "callback");
    if let Err(e) = dispatcher
        .queue
        .store
        .set_callback(&execution.id, callback)
        .await
    {
        tracing::error!(call_id = %execution.id, error = %e, "cannot record a callback's outcome");
    }
}

/// Whether the callback policy refused the address (see [`callback`]).
fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(cause) = source {
        if cause.is::<callback::Refused>() {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for attempt in 1..=10 {
            let full = (base * 2u32.pow(attempt - 1)).min(max);
            let wait = backoff(base, max, attempt);
            assert!(
                wait >= full / 2 && wait <= full,
                "{attempt}: {wait:?} vs {full:?}"
            );
        }
        assert!(backoff(base, max, u32::MAX) <= max);
    }

    #[test]
    fn an_attempt_is_kept_retried_or_given_up_by_its_answer() {
        let codes = DEFAULT_RETRY_CODES;
        let ok = Some(StatusCode::CREATED);
        let busy = Some(StatusCode::SERVICE_UNAVAILABLE);
        let wrong = Some(StatusCode::BAD_REQUEST);
        assert_eq!(
            classify(ok, &codes, false),
            Verdict::Final(ExecutionStatus::Succeeded)
        );
        assert_eq!(classify(busy, &codes, true), Verdict::Retry);
        assert_eq!(classify(None, &codes, true), Verdict::Retry);
        assert_eq!(
            classify(busy, &codes, false),
            Verdict::Final(ExecutionStatus::Dead)
        );
        assert_eq!(
            classify(None, &codes, false),
            Verdict::Final(ExecutionStatus::Dead)
        );
        assert_eq!(
            classify(wrong, &codes, true),
            Verdict::Final(ExecutionStatus::Failed)
        );
        // A function's own retry codes replace the defaults.
        assert_eq!(classify(wrong, &[400], true), Verdict::Retry);
        assert_eq!(
            classify(busy, &[400], true),
            Verdict::Final(ExecutionStatus::Failed)
        );
    }

    #[test]
    fn only_busy_or_unreachable_answers_are_retried() {
        let codes = DEFAULT_RETRY_CODES;
        for code in [429, 502, 503, 504] {
            assert!(retryable(Some(StatusCode::from_u16(code).unwrap()), &codes));
        }
        for code in [200, 400, 404, 413, 500] {
            assert!(!retryable(
                Some(StatusCode::from_u16(code).unwrap()),
                &codes
            ));
        }
        assert!(retryable(None, &codes));
        assert!(retryable(Some(StatusCode::INTERNAL_SERVER_ERROR), &[500]));
    }
}
