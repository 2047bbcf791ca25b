//! The stop signal (after mini-redis's `Shutdown`): one [`Trigger`] held by
//! whoever decides to stop, a [`Shutdown`] handed to every loop that must
//! notice. A dropped trigger counts as a stop, so no loop outlives the
//! thing that owns it.

use tokio::sync::watch;

/// A new trigger and the first listener to it.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger { tx }, Shutdown { rx })
}

/// Sends the stop, once, to every [`Shutdown`] made from it.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

impl Trigger {
    /// Tells every listener to stop; later calls change nothing.
    pub fn fire(&self) {
        self.tx.send_replace(true);
    }

    /// Another listener, for a loop started later.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }
}

/// Listens for the stop. Clone it for each task that must stop with it.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// Whether the stop has been sent (or the trigger dropped).
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Resolves once the stop is sent or the trigger dropped; at once if
    /// that happened already. Cancel-safe: use it in `select!`.
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::time::Duration;

    #[tokio::test]
    async fn every_listener_sees_the_stop_even_one_made_after_it() {
        let (trigger, mut first) = channel();
        let mut second = first.clone();
        assert!(!first.is_shutdown());
        let waiting = tokio::spawn(async move { second.wait().await });
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting task saw the stop")
            .unwrap();
        first.wait().await;
        assert!(first.is_shutdown());
        let mut late = trigger.subscribe();
        assert!(late.is_shutdown());
        late.wait().await;
    }

    #[tokio::test]
    async fn a_dropped_trigger_is_a_stop() {
        let (trigger, mut listener) = channel();
        drop(trigger);
        assert!(listener.is_shutdown());
        tokio::time::timeout(Duration::from_secs(5), listener.wait())
            .await
            .expect("wait returns when the trigger is gone");
    }

    #[tokio::test]
    async fn without_a_stop_wait_stays_pending() {
        let (_trigger, mut listener) = channel();
        let mut wait = std::pin::pin!(listener.wait());
        let polled =
            std::future::poll_fn(|cx| std::task::Poll::Ready(wait.as_mut().poll(cx))).await;
        assert!(polled.is_pending(), "no stop was sent");
    }
}
