//! `faas experiment run`: the sweeps. For each function, memory setting and
//! CPU setting (applied through `PUT /system/functions`, then waited for
//! until every replica runs with it), each phase (cold: the function is
//! scaled to zero before every call; warm) and each iteration, it makes
//! `warmup` unrecorded calls and then `runs` recorded ones, over `threads`
//! callers (closed loop) or at `rate` calls per second (open loop, each
//! call timed from when it was due, so a slow answer cannot hide the
//! calls queued behind it). Settings the experiment changed are put back
//! at the end, also after Ctrl-C, which stops the calls and keeps what
//! was measured.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use faas_common::api::{CallFigures, Execution, FunctionStatus, ScaleRequest};
use http::Method;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::http::{Exchange, Pool, Target};
use super::record::{Row, ms, write_csv};
use super::spec::{Cpu, Experiment, Memory, Phase};
use super::stats::{Stats, summarize};
use crate::Context;
use crate::client::{Client, Subject};
use crate::error::{Error, Result};
use crate::output;
use crate::wait;

/// How much of an answer's body a row keeps for its error message.
const KEEP_BODY: usize = 4096;
/// How often the runner looks at a function it waits for.
const POLL: Duration = Duration::from_millis(20);
/// The longest gap between two looks at a running async call.
const ASYNC_POLL_MAX: Duration = Duration::from_millis(50);

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The experiment file (YAML, or FaaS Runner's JSON)
    pub file: PathBuf,
    /// The folder for calls.csv, summary.csv and experiment.json [default:
    /// results/<name>-<UTC time>]
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

/// What the run shares with its callers and its progress line.
struct Shared {
    stop: AtomicBool,
    done: AtomicU64,
    failures: AtomicU64,
    /// Recent client times, for the live percentiles.
    recent: Mutex<Vec<f64>>,
}

impl Shared {
    fn record(&self, row: &Row) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if row.failed() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        } else if let Some(client) = row.client_ms {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.len() >= 10_000 {
                recent.drain(..5_000);
            }
            recent.push(client);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// One sweep: a function under one memory and CPU setting.
#[derive(Clone)]
struct Sweep {
    function: String,
    memory: Option<Memory>,
    cpu: Option<Cpu>,
    phase: Phase,
    iteration: u64,
}

/// `experiment.json`: everything needed to read or repeat the run.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    experiment: &'a Experiment,
    file: String,
    gateway: String,
    gateway_info: serde_json::Value,
    /// The functions' settings before the run changed any.
    functions: Vec<FunctionStatus>,
    started_at: String,
    finished_at: String,
    interrupted: bool,
    calls: usize,
    failures: usize,
    tool: Tool,
}

#[derive(Serialize)]
struct Tool {
    name: &'static str,
    version: &'static str,
}

pub fn run(ctx: &Context, args: RunArgs) -> Result<()> {
    let experiment = Experiment::load(&args.file)?;
    if !experiment.ignored.is_empty() {
        eprintln!(
            "faas: not used here (FaaS Runner report settings): {}",
            experiment.ignored.join(", ")
        );
    }
    let client = ctx.client()?;
    let info: serde_json::Value = client.get_json("/system/info", Subject::Gateway)?;
    let originals = experiment
        .functions
        .iter()
        .map(|f| {
            client
                .get_json::<FunctionStatus>(&format!("/system/function/{f}"), Subject::Function(f))
        })
        .collect::<Result<Vec<_>>>()?;
    let out = out_dir(args.out, &experiment)?;
    // One thread: the callers wait on sockets, and an experiment should
    // take as little CPU as it can from the functions it measures.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(format!("cannot start the experiment's runtime: {e}")))?;
    let target = runtime
        .block_on(Target::resolve(client.gateway()))
        .map_err(Error::new)?;
    let pool = Arc::new(Pool::new(target, KEEP_BODY));
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        done: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        recent: Mutex::new(Vec::new()),
    });
    {
        let shared = shared.clone();
        runtime.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nfaas: stopping: the calls in flight finish, the settings are put back, what was measured is kept");
                shared.stop.store(true, Ordering::Relaxed);
            }
        });
    }
    let bar = progress(&experiment, shared.clone());
    let started = SystemTime::now();
    let mut runner = Runner {
        experiment: &experiment,
        client: &client,
        runtime: &runtime,
        pool,
        shared: shared.clone(),
        rows: Vec::new(),
        changed: Vec::new(),
        timeout: ctx.timeout_or(Duration::from_secs(120)),
    };
    let outcome = runner.all(&originals);
    let restored = runner.restore(&originals);
    bar.finish_and_clear();
    let rows = std::mem::take(&mut runner.rows);
    let failures = rows.iter().filter(|r| r.failed()).count();
    write_csv(&out.join("calls.csv"), &rows)?;
    let summary = summarize(&rows);
    write_csv(&out.join("summary.csv"), &summary)?;
    let record = Record {
        experiment: &experiment,
        file: args.file.display().to_string(),
        gateway: client.gateway().to_owned(),
        gateway_info: info,
        functions: originals,
        started_at: faas_common::time::rfc3339(started),
        finished_at: faas_common::time::rfc3339(SystemTime::now()),
        interrupted: shared.stopped(),
        calls: rows.len(),
        failures,
        tool: Tool {
            name: "faas",
            version: env!("CARGO_PKG_VERSION"),
        },
    };
    let json = serde_json::to_vec_pretty(&record)
        .map_err(|e| Error::new(format!("cannot encode experiment.json: {e}")))?;
    std::fs::write(out.join("experiment.json"), json).map_err(|e| {
        Error::new(format!(
            "cannot write {}: {e}",
            out.join("experiment.json").display()
        ))
    })?;
    output::print(&table(&summary))?;
    eprintln!(
        "faas: {} calls ({failures} failed) in {}",
        rows.len(),
        out.display()
    );
    outcome?;
    restored?;
    if shared.stopped() {
        return Err(Error::new(format!(
            "interrupted: the {} calls made are in {}",
            rows.len(),
            out.display()
        )));
    }
    Ok(())
}

/// The results folder: made, and empty (an earlier run's files are not
/// mixed with this one's).
fn out_dir(out: Option<PathBuf>, experiment: &Experiment) -> Result<PathBuf> {
    let out = out.unwrap_or_else(|| {
        let stamp = faas_common::time::rfc3339(SystemTime::now())
            .replace([':', '-'], "")
            .replace('.', "");
        Path::new("results").join(format!("{}-{stamp}", experiment.name))
    });
    std::fs::create_dir_all(&out)
        .map_err(|e| Error::new(format!("cannot create {}: {e}", out.display())))?;
    let taken = ["calls.csv", "summary.csv", "experiment.json"]
        .iter()
        .any(|f| out.join(f).exists());
    if taken {
        return Err(Error::new(format!(
            "{} holds an earlier run's results; give another --out",
            out.display()
        )));
    }
    Ok(out)
}

fn progress(experiment: &Experiment, shared: Arc<Shared>) -> ProgressBar {
    let sweeps = experiment.functions.len() as u64
        * experiment.memory_settings.len().max(1) as u64
        * experiment.cpu_settings.len().max(1) as u64
        * experiment.mode.phases().len() as u64;
    let total = sweeps * experiment.iterations * experiment.runs;
    let bar = ProgressBar::with_draw_target(
        Some(total),
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} calls {msg} [{elapsed_precise}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let ticking = bar.clone();
    std::thread::spawn(move || {
        while !ticking.is_finished() {
            let done = shared.done.load(Ordering::Relaxed);
            let failures = shared.failures.load(Ordering::Relaxed);
            let recent = shared
                .recent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let live = Stats::of(&recent)
                .map(|s| {
                    let mut sorted = recent;
                    sorted.sort_by(f64::total_cmp);
                    format!(
                        "p50 {:.2} ms, p95 {:.2} ms",
                        s.median,
                        super::stats::percentile(&sorted, 0.95)
                    )
                })
                .unwrap_or_default();
            ticking.set_position(done);
            ticking.set_message(format!("{failures} failed {live}"));
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    bar
}

struct Runner<'a> {
    experiment: &'a Experiment,
    client: &'a Client,
    runtime: &'a tokio::runtime::Runtime,
    pool: Arc<Pool>,
    shared: Arc<Shared>,
    rows: Vec<Row>,
    /// Functions whose settings or replicas this run changed.
    changed: Vec<String>,
    /// How long a function may take to become ready.
    timeout: Duration,
}

impl Runner<'_> {
    fn all(&mut self, originals: &[FunctionStatus]) -> Result<()> {
        let e = self.experiment;
        let memories: Vec<Option<Memory>> = if e.memory_settings.is_empty() {
            vec![None]
        } else {
            e.memory_settings.iter().cloned().map(Some).collect()
        };
        let cpus: Vec<Option<Cpu>> = if e.cpu_settings.is_empty() {
            vec![None]
        } else {
            e.cpu_settings.iter().cloned().map(Some).collect()
        };
        for original in originals {
            for memory in &memories {
                for cpu in &cpus {
                    if self.shared.stopped() {
                        return Ok(());
                    }
                    if memory.is_some() || cpu.is_some() {
                        self.apply(original, memory.as_ref(), cpu.as_ref())?;
                    }
                    for &phase in e.mode.phases() {
                        for iteration in 1..=e.iterations {
                            if self.shared.stopped() {
                                return Ok(());
                            }
                            if iteration > 1 && !e.sleep_time.is_zero() {
                                std::thread::sleep(e.sleep_time);
                            }
                            let sweep = Sweep {
                                function: original.name.clone(),
                                memory: memory.clone(),
                                cpu: cpu.clone(),
                                phase,
                                iteration,
                            };
                            let rows = self.iteration(&sweep)?;
                            if iteration > e.warmup_buffer {
                                self.rows.extend(rows);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// One iteration of a sweep: its warm-up calls, then its recorded ones.
    fn iteration(&mut self, sweep: &Sweep) -> Result<Vec<Row>> {
        let e = self.experiment;
        let order = payload_order(e, sweep.iteration);
        match sweep.phase {
            Phase::Cold => {
                let mut rows = Vec::new();
                let prepared = Arc::new(Prepared::new(e, sweep, self.pool.prefix()));
                for (seq, &payload_id) in order.iter().enumerate() {
                    if self.shared.stopped() {
                        break;
                    }
                    self.scale_to_zero(&sweep.function)?;
                    let call = Call::new(&prepared, payload_id, 0, seq as u64 + 1);
                    let row =
                        self.runtime
                            .block_on(call.make(&self.pool, Instant::now(), self.client));
                    self.shared.record(&row);
                    rows.push(row);
                }
                Ok(rows)
            }
            Phase::Warm => {
                if e.warmup > 0 {
                    let warmup: Vec<usize> = (0..e.warmup as usize)
                        .map(|i| order[i % order.len()])
                        .collect();
                    let silent = Arc::new(Shared {
                        stop: AtomicBool::new(false),
                        done: AtomicU64::new(0),
                        failures: AtomicU64::new(0),
                        recent: Mutex::new(Vec::new()),
                    });
                    self.runtime.block_on(closed_loop(
                        e,
                        sweep,
                        warmup,
                        self.pool.clone(),
                        silent,
                        self.client,
                    ));
                }
                Ok(match e.rate {
                    Some(rate) => self.runtime.block_on(open_loop(
                        e,
                        sweep,
                        order,
                        rate,
                        self.pool.clone(),
                        self.shared.clone(),
                    )),
                    None => self.runtime.block_on(closed_loop(
                        e,
                        sweep,
                        order,
                        self.pool.clone(),
                        self.shared.clone(),
                        self.client,
                    )),
                })
            }
        }
    }

    /// Gives `original` the sweep's limits and waits until every replica
    /// runs with them.
    fn apply(
        &mut self,
        original: &FunctionStatus,
        memory: Option<&Memory>,
        cpu: Option<&Cpu>,
    ) -> Result<()> {
        let name = &original.name;
        let current: FunctionStatus = self
            .client
            .get_json(&format!("/system/function/{name}"), Subject::Function(name))?;
        let mut deployment = current.deployment();
        let mut limits = deployment.limits.unwrap_or_default();
        if let Some(m) = memory {
            limits.memory = Some(m.label.clone());
        }
        if let Some(c) = cpu {
            limits.cpu = Some(c.label.clone());
        }
        deployment.limits = Some(limits);
        if !self.changed.contains(name) {
            self.changed.push(name.clone());
        }
        self.client.send_json(
            Method::PUT,
            "/system/functions",
            &deployment,
            Subject::Function(name),
        )?;
        self.until_ready(name, current.replicas)
    }

    fn until_ready(&self, name: &str, replicas: u64) -> Result<()> {
        let target = if replicas == 0 {
            wait::Target::Exactly(0)
        } else {
            wait::Target::AllCurrent
        };
        wait::until_ready(self.client, &[(name.to_owned(), target)], self.timeout)
    }

    /// Scales `name` to zero and waits until no replica is left, so the
    /// next call starts one.
    fn scale_to_zero(&mut self, name: &str) -> Result<()> {
        if !self.changed.iter().any(|n| n == name) {
            self.changed.push(name.to_owned());
        }
        scale(self.client, name, 0)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let status: FunctionStatus = self
                .client
                .get_json(&format!("/system/function/{name}"), Subject::Function(name))?;
            if status.available_replicas == 0 && status.stale_replicas == 0 {
                return Ok(());
            }
            if Instant::now() > deadline || self.shared.stopped() {
                return Err(Error::new(format!(
                    "{name:?} still has {} replica(s) {}s after being scaled to zero",
                    status.available_replicas,
                    self.timeout.as_secs()
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Puts back what the run changed: each function's deployment as it
    /// was, and its replicas.
    fn restore(&self, originals: &[FunctionStatus]) -> Result<()> {
        let mut problems = Vec::new();
        for original in originals.iter().filter(|o| self.changed.contains(&o.name)) {
            let name = &original.name;
            let result = self
                .client
                .send_json(
                    Method::PUT,
                    "/system/functions",
                    &original.deployment(),
                    Subject::Function(name),
                )
                .and_then(|_| scale(self.client, name, original.replicas))
                .and_then(|()| self.until_ready(name, original.replicas));
            if let Err(e) = result {
                problems.push(format!("{name}: {e}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::new(format!(
                "cannot put every function back as it was: {}",
                problems.join("; ")
            )))
        }
    }
}

fn scale(client: &Client, name: &str, replicas: u64) -> Result<()> {
    client
        .send_json(
            Method::POST,
            &format!("/system/scale-function/{name}"),
            &ScaleRequest {
                service_name: name.to_owned(),
                replicas,
            },
            Subject::Function(name),
        )
        .map(|_| ())
}

/// The payload of each run: spread over the runs in turn, shuffled when
/// asked (the same way for the same seed and iteration).
fn payload_order(e: &Experiment, iteration: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..e.runs as usize).map(|i| i % e.payloads.len()).collect();
    if e.shuffle_payloads {
        fastrand::Rng::with_seed(e.random_seed.wrapping_add(iteration)).shuffle(&mut order);
    }
    order
}

/// `runs` calls over `threads` callers, each taking the next run when done.
async fn closed_loop(
    e: &Experiment,
    sweep: &Sweep,
    order: Vec<usize>,
    pool: Arc<Pool>,
    shared: Arc<Shared>,
    client: &Client,
) -> Vec<Row> {
    let order = Arc::new(order);
    let next = Arc::new(AtomicU64::new(0));
    let auth = client.authorization().cloned();
    let prepared = Arc::new(Prepared::new(e, sweep, pool.prefix()));
    let mut callers = tokio::task::JoinSet::new();
    for thread in 1..=e.threads.min(order.len() as u64) {
        let (order, next, pool, shared, auth, prepared) = (
            order.clone(),
            next.clone(),
            pool.clone(),
            shared.clone(),
            auth.clone(),
            prepared.clone(),
        );
        callers.spawn(async move {
            let mut rows = Vec::new();
            let mut seq = 0;
            loop {
                let run = next.fetch_add(1, Ordering::Relaxed) as usize;
                if run >= order.len() || shared.stopped() {
                    break;
                }
                seq += 1;
                let call = Call::new(&prepared, order[run], thread, seq);
                let row = call.make_with(&pool, Instant::now(), auth.as_ref()).await;
                shared.record(&row);
                rows.push(row);
            }
            rows
        });
    }
    let mut rows = Vec::new();
    while let Some(done) = callers.join_next().await {
        rows.extend(done.unwrap_or_default());
    }
    rows.sort_by_key(|r| r.start_unix_ns);
    rows
}

/// `runs` calls at `rate` per second, each timed from when it was due;
/// at most `threads` in flight (a call due while that many are out waits,
/// and its wait counts in its time).
async fn open_loop(
    e: &Experiment,
    sweep: &Sweep,
    order: Vec<usize>,
    rate: f64,
    pool: Arc<Pool>,
    shared: Arc<Shared>,
) -> Vec<Row> {
    let slots = Arc::new(tokio::sync::Semaphore::new(e.threads as usize));
    let prepared = Arc::new(Prepared::new(e, sweep, pool.prefix()));
    let first = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for (i, &payload_id) in order.iter().enumerate() {
        let due = first + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        if shared.stopped() {
            break;
        }
        let (pool, shared, slots) = (pool.clone(), shared.clone(), slots.clone());
        let call = Call::new(&prepared, payload_id, 0, i as u64 + 1);
        calls.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let row = call.make_with(&pool, due, None).await;
            shared.record(&row);
            row
        });
    }
    let mut rows = Vec::new();
    while let Some(done) = calls.join_next().await {
        if let Ok(row) = done {
            rows.push(row);
        }
    }
    rows.sort_by_key(|r| r.seq);
    rows
}

/// What every call of a sweep shares, made once: the request's parts per
/// payload, the row's fixed columns, the premises to check.
struct Prepared {
    base: Row,
    method: Method,
    uri: http::Uri,
    /// Per payload: its headers and body.
    requests: Vec<(HeaderMap, Bytes)>,
    is_async: bool,
    timeout: Duration,
    memory_bytes: Option<u64>,
    memory_label: String,
    cold: bool,
}

impl Prepared {
    fn new(e: &Experiment, sweep: &Sweep, prefix: &str) -> Prepared {
        let route = if e.is_async {
            "async-function"
        } else {
            "function"
        };
        let memory_label = sweep
            .memory
            .as_ref()
            .map(|m| m.label.clone())
            .unwrap_or_default();
        let requests = e
            .payloads
            .iter()
            .map(|payload| {
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(payload.content_type),
                );
                for (name, value) in &e.headers {
                    if let (Ok(n), Ok(v)) = (
                        HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_str(value),
                    ) {
                        headers.insert(n, v);
                    }
                }
                (headers, Bytes::from(payload.body.clone()))
            })
            .collect();
        Prepared {
            base: Row {
                experiment: e.name.clone(),
                iteration: sweep.iteration,
                function: sweep.function.clone(),
                memory: memory_label.clone(),
                cpu: sweep
                    .cpu
                    .as_ref()
                    .map(|c| c.label.clone())
                    .unwrap_or_default(),
                ..Default::default()
            },
            method: if e.is_async {
                Method::POST
            } else {
                Method::from_bytes(e.method.as_bytes()).unwrap_or(Method::POST)
            },
            // Checked when the file was read: a path of name characters.
            uri: format!("{prefix}/{route}/{}{}", sweep.function, e.path)
                .parse()
                .unwrap_or_else(|_| http::Uri::from_static("/")),
            requests,
            is_async: e.is_async,
            timeout: e.timeout,
            memory_bytes: sweep.memory.as_ref().map(|m| m.bytes),
            memory_label,
            cold: sweep.phase == Phase::Cold,
        }
    }
}

/// One call to make, and the row it becomes.
struct Call {
    row: Row,
    prepared: Arc<Prepared>,
    payload_id: usize,
    /// `X-Memory-Limit-Bytes` of the replica that answered.
    row_limit: Option<u64>,
}

impl Call {
    fn new(prepared: &Arc<Prepared>, payload_id: usize, thread: u64, seq: u64) -> Call {
        let mut row = prepared.base.clone();
        row.payload_id = payload_id;
        row.thread = thread;
        row.seq = seq;
        row.bytes_in = prepared.requests[payload_id].1.len() as u64;
        Call {
            row,
            prepared: prepared.clone(),
            payload_id,
            row_limit: None,
        }
    }

    async fn make(self, pool: &Pool, started: Instant, client: &Client) -> Row {
        self.make_with(pool, started, client.authorization()).await
    }

    /// Makes the call (`started`: when it counts from) and fills its row.
    async fn make_with(mut self, pool: &Pool, started: Instant, auth: Option<&HeaderValue>) -> Row {
        self.row.start_unix_ns = unix_ns(started);
        let p = self.prepared.clone();
        let (headers, body) = &p.requests[self.payload_id];
        let exchange = pool
            .send(
                started,
                &p.method,
                &p.uri,
                headers.clone(),
                body.clone(),
                p.timeout,
            )
            .await;
        self.row.connect_ms = ms(Some(exchange.connect.map_or(0.0, |d| d.as_secs_f64())));
        if p.is_async {
            self.finish_async(pool, started, exchange, auth).await;
        } else {
            self.finish_sync(exchange);
        }
        self.check_premises();
        self.row
    }

    fn finish_sync(&mut self, exchange: Exchange) {
        let row = &mut self.row;
        row.client_ms = ms(Some(exchange.elapsed.as_secs_f64()));
        row.status = exchange.status;
        row.bytes_out = exchange.bytes_out;
        row.gateway_ms = ms(header_seconds(
            &exchange.headers,
            "x-gateway-duration-seconds",
        ));
        let mut figures = figures_of(&exchange.headers).unwrap_or_default();
        if let Some(later) = exchange.trailers.as_ref().and_then(figures_of) {
            figures.merge(later);
        }
        self.fill(&figures);
        self.row.error = match exchange.error {
            Some(e) => e,
            None if !(200..300).contains(&exchange.status) => {
                first_line(exchange.status, &exchange.body)
            }
            None => String::new(),
        };
    }

    /// An async call: its 202, then its record, looked at until it is
    /// final (ever less often, up to every 50 ms); then its output's size.
    async fn finish_async(
        &mut self,
        pool: &Pool,
        started: Instant,
        accepted: Exchange,
        auth: Option<&HeaderValue>,
    ) {
        if accepted.error.is_some() || accepted.status != 202 {
            self.row.client_ms = ms(Some(accepted.elapsed.as_secs_f64()));
            self.row.status = accepted.status;
            self.row.error = accepted
                .error
                .unwrap_or_else(|| first_line(accepted.status, &accepted.body));
            return;
        }
        let Some(id) = accepted
            .headers
            .get("x-call-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        else {
            self.row.error = "the gateway accepted the call without an X-Call-Id".into();
            return;
        };
        let mut headers = HeaderMap::new();
        if let Some(auth) = auth {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        let deadline = started + self.prepared.timeout;
        let mut gap = Duration::from_millis(1);
        let record = loop {
            let look = pool
                .send(
                    Instant::now(),
                    &Method::GET,
                    &pool.uri(&format!("/system/executions/{id}")),
                    headers.clone(),
                    Bytes::new(),
                    self.prepared.timeout,
                )
                .await;
            let execution = match (look.status, look.error) {
                (_, Some(e)) => Err(e),
                (200, None) => serde_json::from_slice::<Execution>(&look.body)
                    .map_err(|e| format!("unreadable execution record: {e}")),
                (status, None) => Err(first_line(status, &look.body)),
            };
            match execution {
                Err(e) => {
                    self.row.client_ms = ms(Some(started.elapsed().as_secs_f64()));
                    self.row.error = format!("cannot follow async call {id}: {e}");
                    return;
                }
                Ok(record) if record.status.is_final() => break record,
                Ok(_) if Instant::now() + gap > deadline => {
                    self.row.client_ms = ms(Some(started.elapsed().as_secs_f64()));
                    self.row.error = format!(
                        "async call {id} did not finish within the timeout ({}s)",
                        self.prepared.timeout.as_secs_f64()
                    );
                    return;
                }
                Ok(_) => {
                    tokio::time::sleep(gap).await;
                    gap = (gap * 2).min(ASYNC_POLL_MAX);
                }
            }
        };
        self.row.client_ms = ms(Some(started.elapsed().as_secs_f64()));
        self.row.status = record.status_code.unwrap_or(0);
        self.row.gateway_ms = ms(record.duration_seconds);
        self.fill(&record.figures.clone().unwrap_or_default());
        self.row.error = record.error.clone().unwrap_or_default();
        let output = pool
            .send(
                Instant::now(),
                &Method::GET,
                &pool.uri(&format!("/system/executions/{id}/output")),
                headers.clone(),
                Bytes::new(),
                self.prepared.timeout,
            )
            .await;
        if output.status == 200 {
            self.row.bytes_out = output.bytes_out;
        }
    }

    fn fill(&mut self, figures: &CallFigures) {
        let row = &mut self.row;
        row.function_ms = ms(figures.function_seconds);
        row.cpu_user_ms = ms(figures.cpu_user_seconds);
        row.cpu_kernel_ms = ms(figures.cpu_system_seconds);
        row.max_rss_bytes = figures.max_rss_bytes;
        row.cold_start = figures.cold_start;
        row.served_by = figures.served_by.clone().unwrap_or_default();
        self.row_limit = figures.memory_limit_bytes;
    }

    /// What the experiment promised about the call, checked against what
    /// the replica reported: the memory limit it ran under, and that a
    /// cold call was a cold start.
    fn check_premises(&mut self) {
        if !self.row.error.is_empty() || !(200..300).contains(&self.row.status) {
            return;
        }
        if let Some(wanted) = self.prepared.memory_bytes
            && self.row_limit != Some(wanted)
        {
            self.row.error = match self.row_limit {
                Some(had) => format!(
                    "replica {} ran with a memory limit of {had} bytes, not the setting's {} ({wanted} bytes)",
                    self.row.served_by, self.prepared.memory_label
                ),
                None => format!(
                    "replica {} ran with no memory limit, not the setting's {}",
                    self.row.served_by, self.prepared.memory_label
                ),
            };
        } else if self.prepared.cold && !self.row.cold_start {
            self.row.error = "not a cold start: a replica was already running when the call arrived (does the autoscaler keep one?)".into();
        }
    }
}

fn figures_of(headers: &HeaderMap) -> Option<CallFigures> {
    CallFigures::from_headers(|name| headers.get(name).and_then(|v| v.to_str().ok()))
}

fn header_seconds(headers: &HeaderMap, name: &str) -> Option<f64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// `503: no ready replica…`: the status and the answer's first line.
fn first_line(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let line: String = line.chars().take(300).collect();
    if status == 0 {
        line
    } else {
        format!("{status}: {line}")
    }
}

/// `at` (a monotonic instant) as Unix time in nanoseconds.
fn unix_ns(at: Instant) -> u64 {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let now = Instant::now();
    let unix = if at <= now {
        now_unix.saturating_sub(now - at)
    } else {
        now_unix + (at - now)
    };
    unix.as_nanos() as u64
}

/// The summary as a table for the terminal.
fn table(summary: &[super::stats::Summary]) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    let rows: Vec<Vec<String>> = summary
        .iter()
        .map(|s| {
            s.group_cells()
                .into_iter()
                .chain([
                    f(s.client_mean_ms),
                    f(s.client_median_ms),
                    f(s.client_p95_ms),
                    f(s.function_mean_ms),
                    f(s.cpu_user_mean_ms),
                ])
                .collect()
        })
        .collect();
    output::table(
        &[
            "FUNCTION",
            "MEMORY",
            "CPU",
            "PAYLOAD",
            "START",
            "N",
            "FAILED",
            "MEAN MS",
            "P50 MS",
            "P95 MS",
            "FUNCTION MS",
            "CPU USER MS",
        ],
        &rows,
    )
}
