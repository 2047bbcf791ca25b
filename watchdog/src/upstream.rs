//! The pooled keep-alive client from the watchdog to its `http`-mode
//! runner.

use std::time::Duration;

use faas_common::serve::PerThread;
use http::uri::Authority;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::RequestBody;
use crate::config::Config;

/// Idle pooled connections are dropped before common servers' own
/// keep-alive timeouts (Node's is 5 s), so a call never lands on a
/// connection the upstream is closing.
const POOL_IDLE: Duration = Duration::from_secs(4);

type Pooled = hyper_util::client::legacy::Client<HttpConnector, RequestBody>;

/// The pooled client to the upstream: a pool per serving thread, so each
/// kept-alive connection to the upstream is driven by the thread whose
/// requests use it.
pub struct Client {
    pools: PerThread<Pooled>,
    pub authority: Authority,
}

impl Client {
    pub fn new(config: &Config) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.exec_timeout.unwrap_or(Duration::from_secs(10))));
        let pools = PerThread::new(config.serve_threads, || {
            hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(POOL_IDLE)
                .build(connector.clone())
        });
        Client {
            pools,
            authority: config
                .upstream_url
                .authority()
                .cloned()
                .expect("validated at start-up"),
        }
    }
}

impl Client {
    /// The current thread's pool.
    pub fn pool(&self) -> &Pooled {
        self.pools.get()
    }
}
