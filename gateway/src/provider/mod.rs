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

use async_trait::async_trait;
use faas_common::api::{Deployment, FunctionStatus};

use crate::functions::Table;

/// What a provider failed at, mapped to one HTTP status by the API layer.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("function {0:?} not found")]
    NotFound(String),
    #[error("function {0:?} already exists")]
    Conflict(String),
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
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// `swarm` or `process`.
    fn name(&self) -> &'static str;

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

    /// Stops whatever the provider runs itself (the process provider's
    /// children); Swarm services outlive the gateway.
    async fn shutdown(&self);
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
