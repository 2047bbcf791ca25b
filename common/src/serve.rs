//! The accept loop both programs run: HTTP/1.1 with keep-alive,
//! TCP_NODELAY, a header read timeout, an optional write timeout, at most
//! `max_connections` open at once (more wait in the kernel's backlog until
//! one closes), and a graceful stop that lets in-flight requests finish.
//!
//! With `threads` above one, connections are served on that many threads
//! of their own, each a single-threaded Tokio runtime, like nginx's
//! workers: the accepting task hands each new connection to the thread
//! with the fewest open ones, and everything that connection's requests
//! do (parsing, the handler, the upstream client's pooled connections)
//! then happens on that one thread. No request is passed between threads,
//! so none wakes a sleeping thread: on a small machine that hand-off costs
//! more than the proxying itself.

use std::cell::Cell;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::shutdown::Shutdown;
use crate::write_timeout::WriteTimeout;

/// How long to wait after a failed accept (out of descriptors, usually)
/// instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Per-connection limits, and the threads that serve.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a request's headers.
    pub header_read: Duration,
    /// How long a write may stay blocked on a client that does not read.
    pub write: Option<Duration>,
    /// Connections open at once; `None`: as many as the kernel gives.
    pub max_connections: Option<usize>,
    /// Threads serving connections: 0 or 1 serve them on the caller's
    /// runtime; more start that many single-threaded runtimes.
    pub threads: usize,
}

thread_local! {
    static SERVING_THREAD: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Which of the serving threads `serve` starts (`threads` above one) the
/// current thread is, counting from 0; `None` on any other thread. Work
/// that must outlive a connection, or belongs to the program rather than
/// to one request, should be sent to the program's own runtime from a
/// serving thread; a client should keep a pool per serving thread, so a
/// pooled connection is driven by the thread that uses it.
pub fn thread_index() -> Option<usize> {
    SERVING_THREAD.with(Cell::get)
}

/// Pools per thread for a client used from `threads` serving threads and
/// from anywhere else: `make()` called once for each, and
/// [`PerThread::get`] picking the current thread's.
#[derive(Debug, Clone)]
pub struct PerThread<T> {
    /// `[0]`: not a serving thread; `[i + 1]`: serving thread `i`.
    items: Arc<[T]>,
}

impl<T> PerThread<T> {
    pub fn new(threads: usize, make: impl FnMut() -> T) -> PerThread<T> {
        PerThread {
            items: std::iter::repeat_with(make)
                .take(threads.max(1) + 1)
                .collect(),
        }
    }

    pub fn get(&self) -> &T {
        let slot = thread_index().map_or(0, |i| i % (self.items.len() - 1) + 1);
        &self.items[slot]
    }
}

/// The default for `threads`: one per CPU this process may use (cgroup
/// quotas included).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
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
    let http = builder(limits);
    let slots = limits.max_connections.map(|n| Arc::new(Semaphore::new(n)));
    let mut workers = match Workers::start(limits) {
        Ok(workers) => workers,
        Err(e) => {
            tracing::warn!(error = %e, threads = limits.threads, "cannot start the serving threads; serving on one");
            None
        }
    };
    let graceful = GracefulShutdown::new();
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
                let service = make(peer);
                match &mut workers {
                    Some(workers) => workers.hand(stream, peer, service, slot),
                    None => {
                        let io = TokioIo::new(WriteTimeout::new(stream, limits.write));
                        let connection = graceful.watch(http.serve_connection(io, service));
                        tokio::spawn(async move {
                            let _slot = slot;
                            if let Err(e) = connection.await {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                        });
                    }
                }
            }
            () = shutdown.wait() => break,
        }
    }
    drop(listener);
    match workers {
        Some(workers) => workers.stop().await,
        None => graceful.shutdown().await,
    }
}

fn builder(limits: Limits) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true);
    http
}

/// A connection for a serving thread: its socket (still unregistered), its
/// service, and its slot under `max_connections`.
struct Handed<S> {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    service: S,
    slot: Option<OwnedSemaphorePermit>,
}

/// One serving thread, as the accepting task sees it.
struct Worker<S> {
    queue: mpsc::UnboundedSender<Handed<S>>,
    open: Arc<AtomicUsize>,
    done: tokio::sync::oneshot::Receiver<()>,
}

struct Workers<S> {
    workers: Vec<Worker<S>>,
}

impl<S, B> Workers<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    /// `None` when connections are served on the caller's runtime.
    fn start(limits: Limits) -> std::io::Result<Option<Workers<S>>> {
        if limits.threads <= 1 {
            return Ok(None);
        }
        let mut workers = Vec::with_capacity(limits.threads);
        for i in 0..limits.threads {
            let (queue, handed) = mpsc::unbounded_channel();
            let (finished, done) = tokio::sync::oneshot::channel();
            let open = Arc::new(AtomicUsize::new(0));
            let counted = open.clone();
            // The runtime is made on its own thread: one dropped here, in
            // an async context, would panic.
            let (started, ready) = std::sync::mpsc::sync_channel(1);
            std::thread::Builder::new()
                .name(format!("serve-{i}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = started.send(Err(e));
                            return;
                        }
                    };
                    let _ = started.send(Ok(()));
                    SERVING_THREAD.with(|s| s.set(Some(i)));
                    runtime.block_on(serve_handed(handed, counted, limits));
                    // Tasks the connections left behind end with the runtime.
                    drop(runtime);
                    let _ = finished.send(());
                })?;
            ready.recv().map_err(|_| {
                std::io::Error::other("a serving thread ended before its runtime started")
            })??;
            workers.push(Worker { queue, open, done });
        }
        Ok(Some(Workers { workers }))
    }

    /// To the thread with the fewest open connections.
    fn hand(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        service: S,
        slot: Option<OwnedSemaphorePermit>,
    ) {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot hand a connection to a serving thread");
                return;
            }
        };
        let mut handed = Handed {
            stream,
            peer,
            service,
            slot,
        };
        // A thread that has stopped (it cannot, short of a panic in the
        // runtime) gives the connection back and leaves the list.
        while let Some((at, worker)) = self
            .workers
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| w.open.load(Ordering::Relaxed))
        {
            worker.open.fetch_add(1, Ordering::Relaxed);
            match worker.queue.send(handed) {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => {
                    tracing::error!(
                        "a serving thread has stopped; its connections go to the others"
                    );
                    handed = back;
                    self.workers.remove(at);
                }
            }
        }
        tracing::error!(%peer, "no serving thread is left: connection dropped");
    }

    /// Tells every thread to finish its connections, and waits until they have.
    async fn stop(self) {
        let mut done = Vec::with_capacity(self.workers.len());
        for worker in self.workers {
            drop(worker.queue);
            done.push(worker.done);
        }
        for finished in done {
            let _ = finished.await;
        }
    }
}

/// A serving thread: serves what it is handed until the accepting task
/// stops, then lets its connections finish their in-flight requests.
async fn serve_handed<S, B>(
    mut handed: mpsc::UnboundedReceiver<Handed<S>>,
    open: Arc<AtomicUsize>,
    limits: Limits,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let http = builder(limits);
    let graceful = GracefulShutdown::new();
    while let Some(Handed {
        stream,
        peer,
        service,
        slot,
    }) = handed.recv().await
    {
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                open.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(%peer, error = %e, "cannot serve a connection on this thread");
                continue;
            }
        };
        let io = TokioIo::new(WriteTimeout::new(stream, limits.write));
        let connection = graceful.watch(http.serve_connection(io, service));
        let open = open.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One request on an open connection; the answer's body.
    async fn get(conn: &mut TcpStream, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "the connection closed: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("a content-length");
                if body.len() >= length {
                    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                    return body[..length].to_owned();
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_spread_over_the_threads_and_a_stop_lets_calls_finish() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            header_read: Duration::from_secs(5),
            write: None,
            max_connections: Some(8),
            threads: 2,
        };
        let slow_started = Arc::new(tokio::sync::Notify::new());
        let started = slow_started.clone();
        let make = move |_peer| {
            let started = started.clone();
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let started = started.clone();
                async move {
                    if request.uri().path() == "/slow" {
                        started.notify_one();
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    let thread = thread_index().map_or("none".to_owned(), |i| i.to_string());
                    Ok::<_, std::convert::Infallible>(Response::new(thread))
                }
            })
        };
        let (stop, stopped) = crate::shutdown::channel();
        let serving = tokio::spawn(serve(listener, limits, make, stopped));

        // The second connection goes to the thread without one; each keeps
        // its thread for every request it carries.
        let mut a = TcpStream::connect(addr).await.unwrap();
        let first = get(&mut a, "/").await;
        let mut b = TcpStream::connect(addr).await.unwrap();
        let second = get(&mut b, "/").await;
        let mut threads = [first.clone(), second.clone()];
        threads.sort();
        assert_eq!(threads, ["0", "1"]);
        assert_eq!(get(&mut a, "/").await, first);
        assert_eq!(get(&mut b, "/").await, second);

        // A stop while a call runs: the call is answered, then serve returns.
        let slow = tokio::spawn(async move { get(&mut a, "/slow").await });
        slow_started.notified().await;
        stop.fire();
        assert_eq!(slow.await.unwrap(), first);
        tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("serve returns once its connections are done")
            .unwrap();
    }

    #[test]
    fn per_thread_items_are_one_per_serving_thread_plus_one() {
        let mut made = 0;
        let items = PerThread::new(2, || {
            made += 1;
            made
        });
        assert_eq!(made, 3);
        // Not a serving thread: the first.
        assert_eq!(*items.get(), 1);
        let on = |i| {
            let items = items.clone();
            std::thread::spawn(move || {
                SERVING_THREAD.with(|s| s.set(Some(i)));
                *items.get()
            })
            .join()
            .unwrap()
        };
        assert_eq!((on(0), on(1), on(2)), (2, 3, 2));
    }
}
