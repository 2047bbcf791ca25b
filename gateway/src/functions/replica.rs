//! A function's replicas: what a provider reports, and what calls hold
//! (each counted in flight against its replica until done).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether a replica takes new calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    Ready,
    /// Shutting down but still serving: a last resort.
    Draining,
}

/// One replica as a provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// Stable across refreshes (a task id, a process id), so the in-flight
    /// count survives a refresh.
    pub id: String,
    pub addr: SocketAddr,
    pub state: ReplicaState,
}

pub struct Replica {
    pub id: String,
    pub addr: SocketAddr,
    /// `addr` as a URI authority, built once.
    pub authority: http::uri::Authority,
    pub state: ReplicaState,
    pub(super) inflight: AtomicUsize,
}

impl Replica {
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }
}

/// Counts a call against its replica until dropped.
pub struct ReplicaGuard(pub(super) Arc<Replica>);

impl ReplicaGuard {
    pub fn replica(&self) -> &Arc<Replica> {
        &self.0
    }
}

impl Drop for ReplicaGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}
