//! Health: the `/tmp/.lock` file, the draining flag, the upstream's
//! readiness, and the `fwatchdog --healthcheck` probe Docker runs.
//!
//! The instance is healthy while the lock file exists (unless
//! `suppress_lock`), it is not draining, and, in `http` mode, the upstream
//! accepts connections. Deleting the lock by hand takes an instance out of
//! rotation, as in OpenFaaS.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::config::Config;

pub struct Health {
    lock_path: PathBuf,
    suppress_lock: bool,
    draining: AtomicBool,
    upstream_ready: AtomicBool,
    /// The `http`-mode runner's pid while it runs (0: none).
    upstream_pid: AtomicI32,
}

/// Why an instance is not healthy, as told to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unhealthy {
    Draining,
    LockMissing,
    UpstreamDown,
}

impl Unhealthy {
    pub fn message(self) -> &'static str {
        match self {
            Unhealthy::Draining => "shutting down",
            Unhealthy::LockMissing => "lock file missing",
            Unhealthy::UpstreamDown => "upstream process is not accepting connections",
        }
    }
}

impl Health {
    /// `upstream_ready` starts false in `http` mode, until the child listens.
    pub fn new(config: &Config, upstream_ready: bool) -> Health {
        Health {
            lock_path: config.lock_path.clone(),
            suppress_lock: config.suppress_lock,
            draining: AtomicBool::new(false),
            upstream_ready: AtomicBool::new(upstream_ready),
            upstream_pid: AtomicI32::new(0),
        }
    }

    pub fn create_lock(&self) -> io::Result<()> {
        if self.suppress_lock {
            return Ok(());
        }
        std::fs::write(&self.lock_path, b"").map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot write the health lock file {}: {e} (mount a writable /tmp, or set suppress_lock=true)",
                    self.lock_path.display()
                ),
            )
        })
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        if !self.suppress_lock {
            let _ = std::fs::remove_file(&self.lock_path);
        }
    }

    pub fn set_upstream_ready(&self, ready: bool) {
        self.upstream_ready.store(ready, Ordering::SeqCst);
    }

    /// Records the running upstream process (`None` once it has exited).
    pub fn set_upstream_pid(&self, pid: Option<i32>) {
        self.upstream_pid.store(pid.unwrap_or(0), Ordering::SeqCst);
    }

    pub fn upstream_pid(&self) -> Option<i32> {
        Some(self.upstream_pid.load(Ordering::SeqCst)).filter(|&pid| pid > 0)
    }

    pub fn upstream_ready(&self) -> bool {
        self.upstream_ready.load(Ordering::SeqCst)
    }

    pub fn check(&self) -> Result<(), Unhealthy> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(Unhealthy::Draining);
        }
        if !self.upstream_ready() {
            return Err(Unhealthy::UpstreamDown);
        }
        if !self.suppress_lock && !self.lock_path.exists() {
            return Err(Unhealthy::LockMissing);
        }
        Ok(())
    }
}

/// `fwatchdog --healthcheck`: asks the watchdog at `target` for `/_/health`.
/// Returns whether it answered 200 within `timeout`.
pub async fn probe(target: std::net::SocketAddr, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(target)
            .await
            .map_err(|e| format!("cannot connect to {target}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let request = http::Request::get("/_/health")
            .header(http::header::HOST, target.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status == http::StatusCode::OK {
            Ok(())
        } else {
            Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body).trim()
            ))
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}
