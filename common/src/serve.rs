//! The accept loop both programs run: HTTP/1.1 with keep-alive,
//! TCP_NODELAY, a header read timeout, an optional write timeout, at most
//! `max_connections` open at once (more wait in the kernel's backlog until
//! one closes), and a graceful stop that lets in-flight requests finish.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::shutdown::Shutdown;
use crate::write_timeout::WriteTimeout;

/// How long to wait after a failed accept (out of descriptors, usually)
/// instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a request's headers.
    pub header_read: Duration,
    /// How long a write may stay blocked on a client that does not read.
    pub write: Option<Duration>,
    /// Connections open at once; `None`: as many as the kernel gives.
    pub max_connections: Option<usize>,
}

/// Accepts connections until `shutdown`, serving each with the service
/// `make(peer)` returns; then waits for every open connection to finish
/// its in-flight request.
pub async fn serve<M, S, B>(listener: TcpListener, limits: Limits, make: M, mut shutdown: Shutdown)
where
    M: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let slots = limits.max_connections.map(|n| Arc::new(Semaphore::new(n)));
    let mut full = false;
    loop {
        let slot = match &slots {
            None => None,
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    full = false;
                    Some(slot)
                }
                Err(_) => {
                    if !full {
                        tracing::warn!(
                            max_connections = limits.max_connections,
                            "connection limit reached: new connections wait until one closes"
                        );
                        full = true;
                    }
                    tokio::select! {
                        slot = slots.clone().acquire_owned() => Some(slot.expect("the semaphore is never closed")),
                        () = shutdown.wait() => break,
                    }
                }
            },
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let io = TokioIo::new(WriteTimeout::new(stream, limits.write));
                let connection = graceful.watch(http.serve_connection(io, make(peer)));
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = shutdown.wait() => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}
