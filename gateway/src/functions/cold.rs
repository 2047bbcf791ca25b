//! The cold-start handshake: a function scaled to zero is `cold` until a
//! replica is ready again. A call (or a queued async call) that wants it
//! asks the autoscaler once, through the table's shared `Notify`; the
//! autoscaler starts it and marks when (`woken`), and the first ready
//! replica ends the cold start and records how long it took (in
//! `Function::set`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Function;

impl Function {
    /// The autoscaler is starting it from zero at `at` (`None`: that
    /// failed): its first ready replica is a cold start.
    pub fn woken(&self, at: Option<Instant>) {
        *self.woken_at.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// Scaled to zero and not ready since.
    pub fn is_cold(&self) -> bool {
        self.cold.load(Ordering::Relaxed)
    }

    /// Calls waiting for a replica now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// A call or a queued async call wants a replica: when the function is
    /// cold, the autoscaler is asked (once) to look at it now.
    pub fn want_replica(&self) {
        if !self.is_cold() {
            return;
        }
        self.wanted_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Instant::now);
        if !self.wake_requested.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }

    /// Whether a wake was asked for since the autoscaler last looked.
    pub fn take_wake_request(&self) -> bool {
        self.wake_requested.swap(false, Ordering::AcqRel)
    }

    /// Cold, no replica ready, and wanted for less than `limit`: queued
    /// async calls wait for the cold start rather than fail on it.
    pub fn starting_from_zero(&self, limit: Duration) -> bool {
        self.is_cold()
            && self.ready_count() == 0
            && self
                .wanted_since
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none_or(|since| since.elapsed() < limit)
    }
}

/// Counts a call as waiting for a replica, and tells the autoscaler.
pub(super) struct Waiting<'a>(&'a Function);

impl<'a> Waiting<'a> {
    pub(super) fn new(function: &'a Function) -> Waiting<'a> {
        function.waiting.fetch_add(1, Ordering::Relaxed);
        function.want_replica();
        Waiting(function)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}
