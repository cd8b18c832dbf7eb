//! A node-wide bound on the memory held by writes in flight.
//!
//! Every protocol parses a request into memory before it can be stored, and storing waits for
//! the WAL's fsync. When clients send faster than the disk syncs, requests pile up between
//! the two; without a bound, memory grows until the process is killed. A [`WriteBudget`] is a
//! pool of bytes: a write takes its estimated size out of the pool before it holds the
//! memory and gives it back when it is done. A write that does not fit waits, which is the
//! backpressure: TCP connections stop reading (the kernel's window then stops the client)
//! and HTTP requests wait or are answered 503 with `Retry-After`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits count KiB, so that a budget of many GiB fits tokio's `u32` permit counts.
const UNIT: usize = 1024;

/// A pool of bytes shared by all writes of a node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WriteBudget {
    permits: Arc<Semaphore>,
    units: u32,
}

/// Bytes taken from a [`WriteBudget`]; returned when dropped.
#[derive(Debug)]
pub struct BudgetPermit {
    _permit: OwnedSemaphorePermit,
}

/// The budget stayed exhausted for the whole wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("write budget exhausted for {0:?}")]
pub struct BudgetBusy(pub Duration);

impl WriteBudget {
    /// A pool of `bytes` (at least one KiB).
    pub fn new(bytes: usize) -> Self {
        let units = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize) as u32);
        WriteBudget {
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// The size of the pool in bytes.
    pub fn capacity_bytes(&self) -> usize {
        self.units as usize * UNIT
    }

    /// Bytes not taken at the moment.
    pub fn available_bytes(&self) -> usize {
        self.permits.available_permits() * UNIT
    }

    /// Takes `bytes`, waiting as long as it takes. A request larger than the whole pool takes
    /// the whole pool, so that it runs alone rather than never.
    pub async fn acquire(&self, bytes: usize) -> BudgetPermit {
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(self.units_for(bytes))
            .await
            // The semaphore is never closed.
            .unwrap_or_else(|_| unreachable!("write budget semaphore closed"));
        BudgetPermit { _permit: permit }
    }

    /// Like [`acquire`](Self::acquire), but gives up after `wait`.
    pub async fn acquire_within(
        &self,
        bytes: usize,
        wait: Duration,
    ) -> Result<BudgetPermit, BudgetBusy> {
        tokio::time::timeout(wait, self.acquire(bytes))
            .await
            .map_err(|_| BudgetBusy(wait))
    }

    fn units_for(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_until_bytes_are_returned() {
        let b = WriteBudget::new(10 * UNIT);
        let first = b.acquire(8 * UNIT).await;
        assert_eq!(b.available_bytes(), 2 * UNIT);
        assert_eq!(
            b.acquire_within(4 * UNIT, Duration::from_millis(20))
                .await
                .unwrap_err(),
            BudgetBusy(Duration::from_millis(20))
        );
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.acquire(4 * UNIT).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(first);
        let _second = waiter.await.unwrap();
        assert_eq!(b.available_bytes(), 6 * UNIT);
    }

    #[tokio::test]
    async fn oversized_requests_take_the_whole_pool_instead_of_waiting_forever() {
        let b = WriteBudget::new(4 * UNIT);
        let p = b
            .acquire_within(1 << 30, Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(b.available_bytes(), 0);
        drop(p);
        assert_eq!(b.available_bytes(), b.capacity_bytes());
        // Zero bytes still count as one unit, so a flood of empty writes is bounded too.
        let _z = b.acquire(0).await;
        assert_eq!(b.available_bytes(), 3 * UNIT);
    }
}
