//! The engines that run functions. Routing, forwarding and metrics never
//! know which one is in use: they read the [`Table`] a provider keeps
//! current, and manage functions through the [`Provider`] trait (like
//! OpenFaaS's faas-provider).
//!
//! - [`swarm`]: Docker Swarm services, through the Docker API (bollard).
//!   The only module that talks to Docker.
//! - [`process`]: local `fwatchdog` child processes on loopback ports, for
//!   trying faas without Docker and for fast tests.

pub mod process;
pub mod swarm;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use faas_common::api::{Deployment, FunctionStatus, LogEntry};
use futures_util::stream::BoxStream;

use crate::build::{BuildError, BuildJob, BuildLog, Built};
use crate::functions::Table;

/// What a provider failed at, mapped to one HTTP status by the API layer.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("function {0:?} not found")]
    NotFound(String),
    #[error("function {0:?} already exists")]
    Conflict(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("secret {0:?} already exists")]
    SecretExists(String),
    /// The thing cannot go while something uses it (a secret a function mounts).
    #[error("{0}")]
    InUse(String),
    #[error("{0}")]
    Invalid(String),
    /// The engine cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// The engine refused or failed, in its own words.
    #[error("{0}")]
    Engine(String),
    #[error("{0} is not supported by the {1} provider")]
    Unsupported(&'static str, &'static str),
    /// A service the gateway did not deploy: it may be called and scaled,
    /// not changed or removed through the API.
    #[error(
        "function {0:?} is the service {1:?}, which this gateway did not deploy: it can be called and scaled, but only its owner can update or remove it (docker service update/rm; to hand it over: docker service update --label-add faas.deployed-by={2} {1})"
    )]
    NotOurs(String, String, String),
}

impl ProviderError {
    /// The status that fits: the caller's mistake is 4xx, the engine's 5xx.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            ProviderError::NotFound(_) | ProviderError::SecretNotFound(_) => StatusCode::NOT_FOUND,
            ProviderError::Conflict(_)
            | ProviderError::SecretExists(_)
            | ProviderError::InUse(_) => StatusCode::CONFLICT,
            ProviderError::Invalid(_) => StatusCode::BAD_REQUEST,
            ProviderError::NotOurs(..) => StatusCode::FORBIDDEN,
            ProviderError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProviderError::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProviderError::Unsupported(..) => StatusCode::NOT_IMPLEMENTED,
        }
    }
}

/// The label the gateway puts on every service it deploys, valued with
/// its own service's name (`gateway` outside Swarm); only those can be
/// updated or removed through the API.
pub const DEPLOYED_BY_LABEL: &str = "faas.deployed-by";
pub const DEPLOYED_BY_GATEWAY: &str = "gateway";

/// The first reserved label among `labels`, if any (see
/// [`faas_common::api::is_reserved_label`]).
pub fn reserved_label<'a>(labels: impl IntoIterator<Item = &'a String>) -> Option<&'a String> {
    labels
        .into_iter()
        .find(|key| faas_common::api::is_reserved_label(key))
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// `swarm` or `process`.
    fn name(&self) -> &'static str;

    /// How functions' `limits` are enforced, in one line (`/system/info`).
    fn limits(&self) -> String;

    /// Starts discovery: from now on `table` follows the engine's functions
    /// and their ready replicas. Returns once the first view is loaded.
    async fn start(self: Arc<Self>, table: Arc<Table>) -> Result<(), ProviderError>;

    /// Whether the engine answers.
    async fn health(&self) -> Result<(), ProviderError>;

    async fn list(&self) -> Result<Vec<FunctionStatus>, ProviderError>;

    async fn deploy(&self, deployment: Deployment) -> Result<(), ProviderError>;

    async fn update(&self, deployment: Deployment) -> Result<(), ProviderError>;

    async fn remove(&self, name: &str) -> Result<(), ProviderError>;

    async fn scale(&self, name: &str, replicas: u64) -> Result<(), ProviderError>;

    /// Builds a function from source, writing its output to `log`; returns
    /// what to deploy (an image tag, which the process provider maps to
    /// its build folder).
    async fn build(&self, job: &BuildJob, log: &BuildLog) -> Result<Built, BuildError>;

    /// A function's log lines, oldest first: the last `tail` lines (all
    /// the engine keeps when `None`) written at or after `since`, then, when
    /// `follow`, new lines as they are written until the stream is dropped.
    /// `NotFound` for an unknown function.
    async fn logs(&self, query: LogQuery) -> Result<BoxStream<'static, LogEntry>, ProviderError>;

    /// The names of the secrets functions can use.
    async fn secrets(&self) -> Result<Vec<String>, ProviderError>;

    /// Creates a secret (`Conflict` when the name exists).
    async fn create_secret(&self, name: &str, value: Vec<u8>) -> Result<(), ProviderError>;

    /// Removes a secret (`NotFound` when unknown; the engine's refusal when
    /// a function still uses it).
    async fn remove_secret(&self, name: &str) -> Result<(), ProviderError>;

    /// Stops whatever the provider runs itself (the process provider's
    /// children); Swarm services outlive the gateway.
    async fn shutdown(&self);
}

/// What `GET /system/logs` asks for.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub name: String,
    pub tail: Option<usize>,
    pub since: Option<SystemTime>,
    pub follow: bool,
}

/// Secret names: like Docker's (letters, digits, `-`, `_`, `.`; 1–64
/// characters, starting and ending with a letter or digit).
pub fn validate_secret_name(name: &str) -> Result<(), ProviderError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ProviderError::Invalid(format!(
            "invalid secret name {name:?}: use 1-64 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )))
    }
}

/// Replicas to start with: the `faas.scale.min` label (or OpenFaaS's
/// `com.openfaas.scale.min`), default 1.
pub fn min_replicas(
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<u64, ProviderError> {
    for key in ["faas.scale.min", "com.openfaas.scale.min"] {
        if let Some(v) = labels.get(key) {
            return v.trim().parse::<u64>().map_err(|_| {
                ProviderError::Invalid(format!("label {key}={v:?} is not a whole number"))
            });
        }
    }
    Ok(1)
}
