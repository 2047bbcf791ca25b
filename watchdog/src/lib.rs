//! fwatchdog: the process inside every function container. It answers HTTP
//! on `port`, runs the function's `fprocess` for each request (`fork`,
//! `stream`) or proxies to it (`http`), and reports health and metrics.
//!
//! `cli.rs` only reads the configuration and calls [`run`].

pub mod body;
pub mod cgi;
pub mod cli;
pub mod config;
pub mod exec;
pub mod fork;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod process;
pub mod proxy;
pub mod response;
pub mod server;
pub mod state;
pub mod stream;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;

use faas_common::serve::{Limits, serve};
use faas_common::shutdown;
use hyper::service::service_fn;
use tokio::net::TcpListener;

pub use config::{Config, ConfigError, Mode};

use crate::health::Health;
use crate::state::State;

/// Serves `listener` (and `metrics` when given) until `shutdown` resolves,
/// then drains: health turns 503 and the lock file is removed at once, new
/// requests are still accepted for `healthcheck_interval` so load balancers
/// can notice, then the listener closes, in-flight requests finish, and
/// the `http`-mode upstream is stopped.
pub async fn run(
    listener: TcpListener,
    metrics: Option<TcpListener>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let http_mode = config.mode == Mode::Http;
    let health = Arc::new(Health::new(&config, !http_mode));
    health.create_lock()?;
    let upstream = http_mode.then(|| upstream::Client::new(&config));
    let state = Arc::new(State::new(config.clone(), health.clone(), upstream));
    let limits = Limits {
        header_read: config.read_timeout,
        write: Some(config.write_timeout),
        max_connections: None,
        threads: config.serve_threads,
    };

    tracing::info!(
        addr = %listener.local_addr()?,
        metrics_addr = %metrics.as_ref().map(|m| m.local_addr()).transpose()?.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        mode = config.mode.as_str(),
        serve_threads = config.serve_threads,
        fprocess = %config.fprocess.join(" "),
        memory_limit = %crate::limits::memory_limit()
            .map(|(bytes, kind)| format!("{bytes} bytes ({})", kind.as_str()))
            .unwrap_or_else(|| "none".into()),
        "listening"
    );

    let (stop_serving, serving) = shutdown::channel();
    let (stop_upstream, upstream_stop) = shutdown::channel();
    let (stop_metrics, metrics_stop) = shutdown::channel();

    let supervisor = http_mode.then(|| {
        tokio::spawn(proxy::supervise(
            config.clone(),
            state.reaper,
            health.clone(),
            upstream_stop,
        ))
    });
    let main = {
        let state = state.clone();
        let make = move |_peer| {
            let state = state.clone();
            service_fn(move |request| server::handle(state.clone(), request))
        };
        tokio::spawn(serve(listener, limits, make, serving))
    };
    let metrics = metrics.map(|listener| {
        let state = state.clone();
        let make = move |_peer| {
            let state = state.clone();
            service_fn(move |request| server::metrics(state.clone(), request))
        };
        // Scrapes are few: served on the main runtime.
        let limits = Limits {
            threads: 1,
            ..limits
        };
        tokio::spawn(serve(listener, limits, make, metrics_stop))
    });

    shutdown.await;
    tracing::info!(
        drain_after = ?config.healthcheck_interval,
        "shutdown requested: reporting unhealthy, still serving until the drain starts"
    );
    health.start_draining();
    tokio::time::sleep(config.healthcheck_interval).await;
    tracing::info!("no longer accepting connections; finishing in-flight requests");
    stop_serving.fire();
    let _ = main.await;
    stop_upstream.fire();
    if let Some(supervisor) = supervisor {
        let _ = supervisor.await;
    }
    stop_metrics.fire();
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    tracing::info!("drained; exiting");
    Ok(())
}
