//! The memory of large answers, bounded twice: each answer that can hold thousands of rows
//! (`/api/packets`, `POST /api/packets/observations`) is built within a byte budget (past it,
//! rows stop and the answer says so), and all such answers being built or sent at once share
//! a total. An answer reserves a whole budget before it reads anything, keeps what its body
//! ended up weighing, and gives that back only when the last copy of the body is freed (the
//! bytes own the reservation: [`Reservation::into_bytes`]), so a client that reads slowly
//! keeps its share, not everybody's. When the total is spent, a request waits a bounded time
//! and is then answered 503 with `Retry-After`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Reservations are counted in units of this many bytes.
const UNIT: usize = 64 * 1024;

/// The shared total and each answer's budget.
pub struct LargeAnswers {
    units: Arc<Semaphore>,
    total_units: usize,
    per_answer: usize,
    wait: Duration,
    refused: AtomicU64,
}

impl LargeAnswers {
    /// `per_answer` bytes for one answer, `total` for all of them at once (at least one
    /// answer's worth), waiting at most `wait` for room.
    pub fn new(per_answer: usize, total: usize, wait: Duration) -> LargeAnswers {
        let per_answer = per_answer.max(UNIT);
        let total_units = total.max(per_answer).div_ceil(UNIT);
        LargeAnswers {
            units: Arc::new(Semaphore::new(total_units)),
            total_units,
            per_answer,
            wait,
            refused: AtomicU64::new(0),
        }
    }

    /// One answer's budget, bytes.
    pub fn per_answer(&self) -> usize {
        self.per_answer
    }

    /// Bytes reserved by answers being built or sent now.
    pub fn held(&self) -> usize {
        self.total_units
            .saturating_sub(self.units.available_permits())
            .saturating_mul(UNIT)
    }

    /// Requests answered 503 because the total stayed spent for the whole wait.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Reserves one answer's budget, waiting at most the bound; 503 `Busy` when it stayed
    /// spent.
    pub async fn reserve(&self) -> Result<Reservation, ApiError> {
        let want = u32::try_from(self.per_answer.div_ceil(UNIT)).unwrap_or(u32::MAX);
        match tokio::time::timeout(self.wait, self.units.clone().acquire_many_owned(want)).await {
            Ok(Ok(permit)) => Ok(Reservation {
                permit,
                bytes: self.per_answer,
            }),
            Ok(Err(_)) => Err(ApiError::Unavailable("shutting down".into())),
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(ApiError::Busy(
                    "too many large answers in progress; retry in a moment".into(),
                ))
            }
        }
    }
}

/// One answer's share of [`LargeAnswers`].
pub struct Reservation {
    permit: OwnedSemaphorePermit,
    bytes: usize,
}

impl Reservation {
    /// How many bytes the answer may hold.
    pub fn limit(&self) -> usize {
        self.bytes
    }

    /// The finished body, owning what it weighs of the reservation (the rest is given back
    /// now); the share is released when the last copy of the bytes is dropped, once it has
    /// been sent or the client went away.
    pub fn into_bytes(mut self, mut body: Vec<u8>) -> Bytes {
        body.shrink_to_fit();
        let keep = body.len().div_ceil(UNIT).max(1);
        if let Some(rest) = self.permit.num_permits().checked_sub(keep)
            && rest > 0
        {
            drop(self.permit.split(rest));
        }
        Bytes::from_owner(Owned {
            body,
            _permit: self.permit,
        })
    }
}

struct Owned {
    body: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The share lives as long as the bytes (and their clones), not the handler: with the
    /// total spent by bodies not yet sent, the next answer is refused, and freeing the bytes
    /// makes room again.
    #[tokio::test]
    async fn a_body_holds_its_share_until_its_last_copy_is_freed() {
        let large = LargeAnswers::new(4 * UNIT, 8 * UNIT, Duration::from_millis(20));
        let a = large.reserve().await.unwrap();
        assert_eq!(large.held(), 4 * UNIT);
        let b = large.reserve().await.unwrap();
        // Both budgets reserved: nobody else may start.
        assert!(matches!(large.reserve().await, Err(ApiError::Busy(_))));
        assert_eq!(large.refused(), 1);
        // A built body keeps what it weighs (3 units), the rest is given back at once.
        let body = a.into_bytes(vec![b'x'; 3 * UNIT - 10]);
        let copy = body.clone();
        assert_eq!(large.held(), 7 * UNIT);
        assert!(matches!(large.reserve().await, Err(ApiError::Busy(_))));
        drop(b);
        drop(body);
        // A copy still in flight (single-flight followers, hyper's write queue) keeps it.
        assert_eq!(large.held(), 3 * UNIT);
        drop(copy);
        assert_eq!(large.held(), 0);
        let c = large.reserve().await.unwrap();
        assert_eq!(c.limit(), 4 * UNIT);
    }
}
