//! The faas gateway: finds functions through a provider (Docker Swarm or
//! local processes), routes calls to them by path, `X-Function` header or
//! Alexa intent, balances across replicas, and exposes Prometheus metrics.
//!
//! `main.rs` only parses the configuration and calls [`run`].

pub mod app;
pub mod auth;
pub mod body;
pub mod build;
pub mod coap;
pub mod config;
pub mod forward;
pub mod functions;
pub mod grpc;
pub mod invoke;
pub mod metrics;
pub mod provider;
pub mod queue;
pub mod reply;
pub mod routes;
pub mod routing;
pub mod scaling;
pub mod server;
pub mod state_dir;
pub mod system;
pub mod tinyfaas;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::Config;

use crate::app::AppState;
use crate::forward::Forwarder;
use crate::functions::Table;
use crate::metrics::Metrics;
use crate::provider::{Provider, ProviderError};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the {0} provider could not start: {1}")]
    Provider(&'static str, ProviderError),
    #[error("basic auth: {0}")]
    Auth(String),
    #[error("state directory: {0}")]
    StateDir(String),
    #[error("{0}")]
    Queue(#[from] queue::store::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot listen on {what} {addr} ({flag}): {error}")]
    Listen {
        what: &'static str,
        addr: std::net::SocketAddr,
        flag: &'static str,
        error: std::io::Error,
    },
}

/// Says who may use the API, once, at start: loudly when nobody needs
/// credentials, with the login line when the gateway made them itself.
fn announce_auth(config: &Config, source: Option<&auth::Source>, local: std::net::SocketAddr) {
    let host = if local.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], local.port()))
    } else {
        local
    };
    let scope = if config.auth_invoke {
        "/system/*, /async-function/*, /bulk-function/* and function calls"
    } else {
        "/system/*"
    };
    match source {
        None => tracing::warn!(
            "--auth none: {scope} is OPEN to anyone who can reach {local}: they can deploy functions and run any command as this user"
        ),
        Some(auth::Source::Generated { dir, password }) => {
            let file = dir.join(auth::PASSWORD_FILE);
            tracing::warn!(
                user = auth::DEFAULT_USER,
                password = %password,
                file = %file.display(),
                "generated credentials for {scope} (shown only this once; kept in the file, mode 0600)"
            );
            tracing::info!(
                "log in with: faas login --gateway http://{host} --username {} --password-stdin < {}",
                auth::DEFAULT_USER,
                file.display()
            );
        }
        Some(auth::Source::StateDir(dir)) => tracing::info!(
            "basic auth required on {scope}; log in with: faas login --gateway http://{host} --username {} --password-stdin < {}",
            auth::DEFAULT_USER,
            dir.join(auth::PASSWORD_FILE).display()
        ),
        Some(auth::Source::SecretFiles(dir)) => tracing::info!(
            dir = %dir.display(),
            "basic auth required on {scope} (credentials from the secret files)"
        ),
        Some(auth::Source::Environment) => tracing::info!(
            "basic auth required on {scope} (credentials from basic_auth_user and basic_auth_password)"
        ),
    }
}

/// A TCP listener on `port` (set by `flag`), unless it is off.
async fn listen_tcp(
    config: &Config,
    port: Option<u16>,
    flag: &'static str,
) -> Result<Option<TcpListener>, RunError> {
    let Some(port) = port else {
        return Ok(None);
    };
    let addr = std::net::SocketAddr::new(config.bind_address, port);
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|error| RunError::Listen {
            what: "tcp",
            addr,
            flag,
            error,
        })
}

/// Starts `provider`, serves `listener` until `shutdown` resolves, then
/// lets in-flight calls finish and stops the provider's own processes.
pub async fn run(
    listener: TcpListener,
    config: Config,
    provider: Arc<dyn Provider>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let state_dir = state_dir::of(&config);
    state_dir::prepare(&state_dir).map_err(RunError::StateDir)?;
    let local = listener.local_addr()?;
    let credentials = auth::Credentials::load(&config, &state_dir).map_err(RunError::Auth)?;
    announce_auth(&config, credentials.as_ref().map(|(_, s)| s), local);
    let credentials = credentials.map(|(c, _)| c);
    let queue_path = config
        .queue_path
        .clone()
        .unwrap_or_else(|| state_dir.join(format!("queue-{}.redb", local.port())));
    let store = queue::store::Store::open(&queue_path)?;
    tracing::info!(path = %queue_path.display(), "async queue open");
    let queue = Arc::new(queue::AsyncQueue::new(
        store,
        queue::callback::Policy::new(config.callback_allow.clone()),
        config.callback_concurrency as usize,
    ));
    let metrics = Arc::new(Metrics::new());
    let buffered_gauge = metrics.buffered_bytes.clone();
    let table = Arc::new(Table::new(metrics.clone()));
    provider
        .clone()
        .start(table.clone())
        .await
        .map_err(|e| RunError::Provider(provider.name(), e))?;
    let forwarder = Forwarder::on_threads(
        config.upstream_timeout,
        config.replica_wait,
        config.scale_from_zero_wait,
        config.serve_threads as usize,
    );
    let scaler = Arc::new(scaling::Autoscaler::new(
        &config,
        provider.clone(),
        table.clone(),
        queue.clone(),
    ));
    let dispatcher = queue::Dispatcher::new(
        &config,
        queue.clone(),
        table.clone(),
        forwarder.clone(),
        metrics.clone(),
    );
    let state = Arc::new(AppState {
        forwarder,
        scaler: scaler.clone(),
        config: config.clone(),
        table: table.clone(),
        metrics,
        provider: provider.clone(),
        credentials: credentials.map(Arc::new),
        queue,
        buffered: body::Budget::new(config.max_buffered, buffered_gauge),
        builds: build::Builds::new(config.max_builds, &state_dir),
        ports: std::sync::OnceLock::new(),
    });
    let front = server::Front::new(state);
    let coap = match config.coap_port.0 {
        Some(port) => {
            let addr = std::net::SocketAddr::new(config.bind_address, port);
            let socket =
                tokio::net::UdpSocket::bind(addr)
                    .await
                    .map_err(|error| RunError::Listen {
                        what: "udp",
                        addr,
                        flag: "--coap-port",
                        error,
                    })?;
            Some(coap::Endpoint::new(
                socket,
                front.clone(),
                coap::Limits::of(&config),
            ))
        }
        None => None,
    };
    let grpc = listen_tcp(&config, config.grpc_port.0, "--grpc-port").await?;
    let grpc_addr = match &grpc {
        Some(listener) => listener.local_addr()?.to_string(),
        None => "off".to_owned(),
    };
    let tinyfaas_port = config.tinyfaas_port.0.filter(|_| config.tinyfaas);
    let tinyfaas = listen_tcp(&config, tinyfaas_port, "--tinyfaas-port").await?;
    let port_of = |addr: std::io::Result<std::net::SocketAddr>| addr.ok().map(|a| a.port());
    let _ = front.state.ports.set(app::Ports {
        coap: coap.as_ref().and_then(|e| port_of(e.local_addr())),
        grpc: grpc.as_ref().and_then(|l| port_of(l.local_addr())),
        tinyfaas: tinyfaas.as_ref().and_then(|l| port_of(l.local_addr())),
    });
    let tinyfaas_addr = match &tinyfaas {
        Some(listener) => listener.local_addr()?.to_string(),
        None => "off".to_owned(),
    };
    let coap_addr = match &coap {
        Some(endpoint) => endpoint.local_addr()?.to_string(),
        None => "off".to_owned(),
    };
    tracing::info!(
        addr = %listener.local_addr()?,
        coap = %coap_addr,
        grpc = %grpc_addr,
        tinyfaas = %tinyfaas_addr,
        provider = provider.name(),
        functions = ?table.names(),
        "listening"
    );
    let (stop, stopped) = faas_common::shutdown::channel();
    let coap = coap.map(|endpoint| tokio::spawn(endpoint.serve(stopped.clone())));
    let grpc = grpc.map(|listener| {
        tokio::spawn(grpc::serve(
            listener,
            front.clone(),
            grpc::Limits::of(&config),
            stopped.clone(),
        ))
    });
    let dispatcher = tokio::spawn(dispatcher.run(stopped.clone(), config.upstream_timeout));
    let scaling = tokio::spawn(scaler.run(stopped.clone()));
    let tinyfaas = tinyfaas.map(|listener| {
        tokio::spawn(server::serve(
            listener,
            front.calls_at_root(),
            stopped.clone(),
        ))
    });
    let serving = tokio::spawn(server::serve(listener, front, stopped));
    shutdown.await;
    tracing::info!("shutting down: finishing in-flight calls");
    stop.fire();
    let _ = serving.await;
    if let Some(coap) = coap {
        let _ = coap.await;
    }
    if let Some(grpc) = grpc {
        let _ = grpc.await;
    }
    if let Some(tinyfaas) = tinyfaas {
        let _ = tinyfaas.await;
    }
    let _ = dispatcher.await;
    let _ = scaling.await;
    provider.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
