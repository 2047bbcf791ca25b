//! Balancing: a call goes to the ready replica with the fewest calls in
//! flight, ties broken round robin. Replicas that are shutting down
//! (draining) are used only when no ready one is left: they still serve
//! during their drain delay, which keeps a rolling update of a
//! single-replica function from refusing calls. With none at all, a call
//! waits for one to appear (`replica_wait`, or `scale_from_zero_wait`
//! while the function starts from zero).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::cold::Waiting;
use super::{Function, ReplicaGuard, ReplicaState};

impl Function {
    /// The replica for the next call, counted as in flight: the ready one
    /// with the fewest calls, else a draining one, never one in `exclude`.
    pub fn pick(&self, exclude: &[SocketAddr]) -> Option<ReplicaGuard> {
        let replicas = self.replicas();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for state in [ReplicaState::Ready, ReplicaState::Draining] {
            let n = replicas.len();
            let best = (0..n)
                .map(|i| &replicas[(start + i) % n])
                .filter(|r| r.state == state && !exclude.contains(&r.addr))
                .min_by_key(|r| r.inflight());
            if let Some(best) = best {
                best.inflight.fetch_add(1, Ordering::Relaxed);
                return Some(ReplicaGuard(best.clone()));
            }
        }
        None
    }

    /// Like [`pick`](Self::pick), waiting for a replica to appear (one
    /// starting, a rolling update between tasks): up to `wait`, or up to
    /// `cold_wait` while the function starts from zero. A waiting call
    /// asks the autoscaler for a replica. `Err` says how long it waited
    /// and whether the wait was a cold start's.
    pub async fn pick_or_wait(
        &self,
        exclude: &[SocketAddr],
        wait: Duration,
        cold_wait: Duration,
    ) -> Result<ReplicaGuard, Waited> {
        if let Some(guard) = self.pick(exclude) {
            return Ok(guard);
        }
        let started = tokio::time::Instant::now();
        let _waiting = Waiting::new(self);
        let mut was_cold = false;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Register before looking, so a change in between is not missed.
            changed.as_mut().enable();
            if let Some(guard) = self.pick(exclude) {
                return Ok(guard);
            }
            was_cold |= self.is_cold();
            let limit = if was_cold { cold_wait.max(wait) } else { wait };
            if tokio::time::timeout_at(started + limit, changed)
                .await
                .is_err()
            {
                return Err(Waited {
                    cold: was_cold,
                    waited: limit,
                });
            }
        }
    }
}

/// Why [`Function::pick_or_wait`] gave up.
#[derive(Debug, Clone, Copy)]
pub struct Waited {
    /// The function was starting from zero.
    pub cold: bool,
    pub waited: Duration,
}
