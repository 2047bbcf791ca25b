//! The `fwatchdog` command line: reads the environment, binds the ports and
//! calls [`crate::run`]. `fwatchdog --healthcheck` probes a running instance
//! for Docker's HEALTHCHECK (a scratch image has no shell or curl). Lives in
//! the library so that the gateway can run it too (its process provider
//! falls back to itself when no `fwatchdog` binary is around).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{self, Config};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

const USAGE: &str = "\
fwatchdog: runs a function's process for every HTTP request

Usage:
  fwatchdog                 serve, configured by environment variables
  fwatchdog --healthcheck   exit 0 if the local watchdog is healthy, else 1
  fwatchdog --version

Required: fprocess, the command to run (e.g. fprocess=\"wc -l\").
Modes: mode=fork (default), mode=stream, mode=http (with upstream_url).
Every variable is documented in the README.";

/// Runs `fwatchdog` with `args` (not including the program name).
pub fn main(mut args: impl Iterator<Item = String>) -> ExitCode {
    let arg = args.next();
    match arg.as_deref() {
        None => serve(),
        Some("--healthcheck") => healthcheck(),
        Some("--version" | "-V") => {
            println!("fwatchdog {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("fwatchdog: unknown argument {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the Tokio runtime")
}

fn healthcheck() -> ExitCode {
    let target = match config::healthcheck_target(|k| std::env::var(k).ok()) {
        Ok(target) => target,
        Err(e) => {
            eprintln!("fwatchdog: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the Tokio runtime");
    match rt.block_on(crate::health::probe(target, Duration::from_secs(3))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("fwatchdog: unhealthy: {why}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> ExitCode {
    faas_common::logging::init();

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("fwatchdog: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = runtime();
    let result = rt.block_on(async move {
        // Handlers first: a SIGTERM that arrives during start-up must drain, not kill.
        let term =
            signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        let int =
            signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
        let http = SocketAddr::new(config.bind_address, config.port);
        let metrics = SocketAddr::new(config.bind_address, config.metrics_port);
        let listener = TcpListener::bind(http)
            .await
            .map_err(|e| format!("cannot listen on {http} (port): {e}"))?;
        let metrics_listener = TcpListener::bind(metrics)
            .await
            .map_err(|e| format!("cannot listen on {metrics} (metrics_port): {e}"))?;
        if let Some(path) = &config.port_file {
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            write_port(path, port)
                .map_err(|e| format!("cannot write {} (port_file): {e}", path.display()))?;
        }
        crate::run(
            listener,
            Some(metrics_listener),
            config,
            shutdown_signal(term, int),
        )
        .await
        .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fwatchdog: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
/// Writes the bound port whole (aside, then renamed into place): a reader
/// never sees half a number.
fn write_port(path: &std::path::Path, port: u16) -> std::io::Result<()> {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, port.to_string())?;
    std::fs::rename(&aside, path)
}

async fn shutdown_signal(mut term: Signal, mut int: Signal) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!(
            "second signal: killing every function process and exiting without draining"
        );
        crate::process::Reaper::global().kill_all();
        std::process::exit(130);
    });
}
