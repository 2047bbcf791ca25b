//! `AppState`: what every route handler shares, built once by `run`.
//! Background loops get only the parts they use, as arguments.

use std::sync::Arc;

use crate::auth::Credentials;
use crate::body;
use crate::config::Config;
use crate::forward::Forwarder;
use crate::functions::Table;
use crate::metrics::Metrics;
use crate::provider::Provider;
use crate::queue::AsyncQueue;
use crate::scaling::Autoscaler;

/// What every handler shares, built once.
pub struct AppState {
    pub config: Config,
    pub table: Arc<Table>,
    pub metrics: Arc<Metrics>,
    pub provider: Arc<dyn Provider>,
    pub forwarder: Forwarder,
    /// Basic auth for `/system/*` (and calls, with `auth_invoke`); `None`: open.
    pub credentials: Option<Arc<Credentials>>,
    pub queue: Arc<AsyncQueue>,
    pub scaler: Arc<Autoscaler>,
    /// The memory all buffered request bodies share (`max_buffered`).
    pub buffered: body::Budget,
    /// The builds under way (`POST /system/builds`).
    pub builds: crate::build::Builds,
    /// The other protocols' ports, once bound (tinyFaaS's upload answers
    /// with them).
    pub ports: std::sync::OnceLock<Ports>,
}

/// The ports the other protocols listen on (`None`: off).
#[derive(Debug, Clone, Default)]
pub struct Ports {
    pub coap: Option<u16>,
    pub grpc: Option<u16>,
    pub tinyfaas: Option<u16>,
}

impl AppState {
    /// The limits for a body buffered under `max` (set by `flag`).
    pub fn body_limits(&self, max: u64, flag: &'static str) -> body::Limits<'_> {
        body::Limits {
            max,
            flag,
            timeout: self.config.body_timeout,
            budget: &self.buffered,
        }
    }
}
