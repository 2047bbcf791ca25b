//! Request bodies the gateway holds in memory itself: async and bulk
//! calls, Alexa candidates, `/system/*` requests. (Calls routed by path or
//! header stream through and are never buffered.) Each is bounded three
//! ways before it is held: by its own size limit (413, at once when the
//! declared length says so), by `body_timeout` for the whole body (408:
//! a client trickling bytes cannot hold memory for long), and, all of them
//! together, by `max_buffered` bytes (503 with `Retry-After`, never an
//! abort): a flood of large bodies is refused, not buffered.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http::header::{HeaderValue, RETRY_AFTER};
use http_body::Body;
use http_body_util::BodyExt;
use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::reply::text;

/// The memory every buffered body draws from.
pub struct Budget {
    bytes: Arc<Semaphore>,
    total: u64,
    /// `gateway_buffered_bytes`.
    gauge: IntGauge,
}

impl Budget {
    pub fn new(total: u64, gauge: IntGauge) -> Budget {
        let total = total.min(Semaphore::MAX_PERMITS as u64);
        Budget {
            bytes: Arc::new(Semaphore::new(total as usize)),
            total,
            gauge,
        }
    }

    /// Bytes buffered now.
    pub fn in_use(&self) -> u64 {
        self.total - self.bytes.available_permits() as u64
    }
}

/// A body held in memory, its bytes counted against the [`Budget`] until
/// it is dropped.
pub struct Buffered {
    pub bytes: Bytes,
    _held: Held,
}

/// Bytes taken from the budget, given back (and uncounted) when dropped.
struct Held {
    permit: Option<OwnedSemaphorePermit>,
    gauge: IntGauge,
}

impl Held {
    fn add(&mut self, permit: OwnedSemaphorePermit) {
        self.gauge.add(permit.num_permits() as i64);
        match self.permit.as_mut() {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
    }
}

impl std::ops::Deref for Buffered {
    type Target = Bytes;

    fn deref(&self) -> &Bytes {
        &self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(permit) = &self.permit {
            self.gauge.sub(permit.num_permits() as i64);
        }
    }
}

/// What a body must stay within.
pub struct Limits<'a> {
    /// Largest body, in bytes.
    pub max: u64,
    /// The flag that sets `max`, named in the 413.
    pub flag: &'static str,
    pub timeout: Duration,
    pub budget: &'a Budget,
}

/// Reads `body` whole, within `limits`; the error is the answer to give.
pub async fn read<B>(body: B, limits: Limits<'_>) -> Result<Buffered, axum::response::Response>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let Limits {
        max,
        flag,
        timeout,
        budget,
    } = limits;
    // A body that could never fit the shared budget is too large, not
    // "try again later".
    let (max, flag) = if budget.total < max {
        (budget.total, "max_buffered")
    } else {
        (max, flag)
    };
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format_args!("request body is larger than {flag} ({max} bytes)"),
        )
    };
    if body.size_hint().lower() > max {
        return Err(too_large());
    }
    let mut body = body;
    let mut kept = BytesMut::new();
    let mut held = Held {
        permit: None,
        gauge: budget.gauge.clone(),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(text(
                    StatusCode::REQUEST_TIMEOUT,
                    format_args!(
                        "the request body did not arrive within body_timeout ({timeout:?}); {} bytes came",
                        kept.len()
                    ),
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(text(
                    StatusCode::BAD_REQUEST,
                    format_args!("cannot read the request body: {e}"),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if (kept.len() + data.len()) as u64 > max {
            return Err(too_large());
        }
        let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
        match budget.bytes.clone().try_acquire_many_owned(n) {
            Ok(permit) => held.add(permit),
            Err(_) => {
                let mut answer = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format_args!(
                        "the gateway is already buffering max_buffered ({} bytes) of request bodies: try again shortly",
                        budget.total
                    ),
                );
                answer
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                return Err(answer);
            }
        }
        kept.extend_from_slice(&data);
    }
    Ok(Buffered {
        bytes: kept.freeze(),
        _held: held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn limits(budget: &Budget, max: u64) -> Limits<'_> {
        Limits {
            max,
            flag: "max_test_body",
            timeout: Duration::from_secs(5),
            budget,
        }
    }

    #[tokio::test]
    async fn bodies_within_their_limit_are_kept_and_counted_until_dropped() {
        let budget = Budget::new(100, IntGauge::new("g", "g").unwrap());
        let got = read(Full::new(Bytes::from_static(b"hello")), limits(&budget, 10))
            .await
            .unwrap();
        assert_eq!(&got.bytes[..], b"hello");
        assert_eq!(budget.in_use(), 5);
        assert_eq!(budget.gauge.get(), 5);
        drop(got);
        assert_eq!(budget.in_use(), 0);
        assert_eq!(budget.gauge.get(), 0);
    }

    #[tokio::test]
    async fn too_large_names_the_flag() {
        let budget = Budget::new(100, IntGauge::new("g", "g").unwrap());
        let Err(answer) = read(
            Full::new(Bytes::from_static(b"0123456789ab")),
            limits(&budget, 10),
        )
        .await
        else {
            panic!("accepted")
        };
        assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_body_larger_than_the_whole_budget_is_413_naming_it() {
        let budget = Budget::new(8, IntGauge::new("g", "g").unwrap());
        let Err(answer) = read(
            Full::new(Bytes::from_static(b"0123456789")),
            limits(&budget, 100),
        )
        .await
        else {
            panic!("accepted")
        };
        assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let text = answer.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&text).contains("max_buffered"));
    }

    #[tokio::test]
    async fn the_shared_budget_refuses_with_503_and_is_given_back() {
        let budget = Budget::new(8, IntGauge::new("g", "g").unwrap());
        let first = read(
            Full::new(Bytes::from_static(b"123456")),
            limits(&budget, 10),
        )
        .await
        .unwrap();
        let Err(answer) = read(Full::new(Bytes::from_static(b"abc")), limits(&budget, 10)).await
        else {
            panic!("over the budget")
        };
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(answer.headers().contains_key(RETRY_AFTER));
        drop(first);
        assert!(
            read(Full::new(Bytes::from_static(b"abc")), limits(&budget, 10))
                .await
                .is_ok()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_times_out() {
        let budget = Budget::new(100, IntGauge::new("g", "g").unwrap());
        let chunks = futures_util::stream::unfold(0u32, |i| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((
                Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(b"x"))),
                i + 1,
            ))
        });
        let Err(answer) = read(StreamBody::new(Box::pin(chunks)), limits(&budget, 1000)).await
        else {
            panic!("never ends")
        };
        assert_eq!(answer.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(budget.in_use(), 0);
    }
}
