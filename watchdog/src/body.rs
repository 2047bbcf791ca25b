//! The request body, with the body limit and the read timeout enforced
//! while it is read.

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Why reading the request body failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds max_body_bytes ({limit} bytes)")]
    TooLarge { limit: u64 },
    #[error("request body stalled for longer than read_timeout ({}s)", .0.as_secs_f64())]
    TimedOut(Duration),
    #[error("reading the request body failed: {0}")]
    Read(#[from] hyper::Error),
}

/// The incoming body with `max_body_bytes` and `read_timeout` applied: a
/// body over the limit, or one that stalls between chunks for longer than
/// the timeout, ends in an error instead of a hang.
pub struct RequestBody {
    inner: Incoming,
    limit: u64,
    received: u64,
    idle_timeout: Duration,
    /// Created on the first stall only; small bodies never need a timer.
    idle: Option<Pin<Box<Sleep>>>,
    /// Whether the timer is running: it measures one continuous stall of
    /// the client, never the time our consumer spent elsewhere.
    stalled: bool,
}

impl RequestBody {
    /// `limit` 0 means unlimited.
    pub fn new(inner: Incoming, limit: u64, idle_timeout: Duration) -> RequestBody {
        RequestBody {
            inner,
            limit,
            received: 0,
            idle_timeout,
            idle: None,
            stalled: false,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.limit > 0 && this.received > this.limit {
                        return Poll::Ready(Some(Err(BodyError::TooLarge { limit: this.limit })));
                    }
                }
                this.stalled = false;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Read(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let timeout = this.idle_timeout;
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if !this.stalled {
                    idle.as_mut().reset(Instant::now() + timeout);
                    this.stalled = true;
                }
                ready!(idle.as_mut().poll(cx));
                Poll::Ready(Some(Err(BodyError::TimedOut(timeout))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Finds a [`BodyError`] anywhere in an error's source chain (the HTTP
/// client wraps the body's error when forwarding fails because of it).
pub fn find_body_error<'a>(mut err: &'a (dyn StdError + 'static)) -> Option<&'a BodyError> {
    loop {
        if let Some(found) = err.downcast_ref::<BodyError>() {
            return Some(found);
        }
        err = err.source()?;
    }
}
