//! `gateway`: parses the configuration, picks the provider, binds the port
//! and calls [`gateway::run`]. `gateway fwatchdog …` runs the embedded
//! watchdog (the process provider's fallback when no `fwatchdog` binary is
//! around); `gateway --healthcheck` probes a running gateway.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use gateway::config::{Config, ProviderKind};
use gateway::provider::Provider;
use gateway::provider::process::{Launcher, ProcessProvider};
use gateway::provider::swarm::SwarmProvider;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "fwatchdog") {
        return watchdog::cli::main(std::env::args().skip(2));
    }
    let mut config = Config::parse();
    faas_common::logging::init();
    raise_open_files(config.max_connections);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the Tokio runtime");
    let result = runtime.block_on(async move {
        if config.healthcheck {
            let host = if config.bind_address.is_unspecified() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                config.bind_address
            };
            return healthcheck(SocketAddr::new(host, config.port)).await;
        }
        let term =
            signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        let int =
            signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
        let state_dir = gateway::state_dir::of(&config);
        gateway::state_dir::prepare(&state_dir).map_err(|e| format!("state directory: {e}"))?;
        config.state_dir = Some(state_dir);
        let provider = choose_provider(&config).await?;
        if config.registry.is_some() && provider.name() != "swarm" {
            tracing::warn!(
                "--registry is for the swarm provider's images: the {} provider ignores it",
                provider.name()
            );
        }
        let addr = SocketAddr::new(config.bind_address, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} (--port): {e}"))?;
        gateway::run(listener, config, provider, shutdown_signal(term, int))
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit on open files to the hard one: each connection
/// may hold a second socket (to a function), so the default 1024 would run
/// out long before `max_connections`.
fn raise_open_files(max_connections: u32) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    let wanted = 2 * u64::from(max_connections) + 256;
    if limit.rlim_cur < wanted {
        tracing::warn!(
            open_files = limit.rlim_cur,
            max_connections,
            "the open-file limit is below 2 x max_connections + 256: connections may fail before max_connections is reached"
        );
    }
}

async fn choose_provider(config: &Config) -> Result<Arc<dyn Provider>, String> {
    let swarm = || SwarmProvider::connect(config).map_err(|e| e.to_string());
    Ok(match config.provider {
        ProviderKind::Swarm => Arc::new(swarm()?),
        ProviderKind::Process => Arc::new(process(config)?),
        ProviderKind::Auto => match swarm() {
            Ok(provider) if provider.health().await.is_ok() => Arc::new(provider),
            _ => {
                tracing::info!("no Docker engine answers: using the process provider");
                Arc::new(process(config)?)
            }
        },
    })
}

fn process(config: &Config) -> Result<ProcessProvider, String> {
    let launcher = match &config.fwatchdog {
        Some(path) => Launcher::Binary(path.clone()),
        None => Launcher::find(),
    };
    let state_dir = gateway::state_dir::of(config);
    ProcessProvider::new(
        launcher,
        config.stack_file.as_deref(),
        (config.log_lines, config.log_line_bytes as usize),
        &state_dir,
    )
    .map_err(|e| e.to_string())
}

async fn healthcheck(target: SocketAddr) -> Result<(), String> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri: http::Uri = format!("http://{target}/healthz")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(3), client.get(uri))
        .await
        .map_err(|_| "no answer within 3s".to_string())?
        .map_err(|e| format!("cannot reach {target}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "unhealthy: {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ))
    }
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
async fn shutdown_signal(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: exiting without draining");
        std::process::exit(130);
    });
}
