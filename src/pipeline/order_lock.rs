//! The in-process lock of each ERP order (one booking at a time per order in this process,
//! whatever account), and the log that lets a batch know whether its read of the ledger is still
//! good when one of its groups finally holds the lock.
//!
//! Each lock keeps how many times it was let go and by which chains the last few times (a run's
//! order chains, `RunState::chains_id`: in one run each order's groups form one chain, each
//! group after the previous). A batch takes a [`LockSnapshot`] of each claimed order *before* it
//! reads the ledger; its group, once it holds the lock, asks [`OrderGuard::only_chains_since`]:
//! were all the releases since by its own chains? Those were the order's earlier groups in this
//! run, and what they decided reaches the group as `OrderProgress`, so their rows, written after
//! the read, tell it nothing new. A release by anything else — a webhook's run, a poll's, a
//! re-booking, the run's own settling pass (chains of its own) — or more releases than the log
//! keeps, and the ledger must be read again under the lock.
//!
//! A lock can also be *parked* with a [`Parker`] (a batch whose rows wait for its end keeps its
//! orders locked, `gate.rs`). A group of another run that wants it asks the parker to let go
//! (write its rows and drop its locks) before waiting, and a lock a group of another run already
//! waits for is not parked at all: without this, two batches each parking an order the other's
//! group waits for never end. A later group of the same run's chain just waits for the batch's
//! end: within a run a group only ever waits for an earlier batch, which cannot close a circle.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use tokio::sync::OwnedMutexGuard;

/// Releases remembered per order: more since a snapshot and the snapshot cannot vouch.
const REMEMBERED: usize = 8;

/// A keyed async mutex with a release log per key.
#[derive(Default)]
pub(super) struct OrderLocks {
    map: Mutex<HashMap<String, Weak<Slot>>>,
}

/// What holds parked locks and lets go of them on demand.
#[async_trait]
pub(super) trait Parker: Send + Sync {
    /// Drop every lock parked here (after whatever must precede that).
    async fn let_go(&self);
}

struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    log: Mutex<ReleaseLog>,
}

#[derive(Default)]
struct ReleaseLog {
    releases: u64,
    /// The chains that let go last, oldest first (at most [`REMEMBERED`]).
    recent: VecDeque<u64>,
    /// The chains of the tasks waiting for the lock now.
    waiters: Vec<u64>,
    /// Who holds the lock parked (with its chains), if anyone.
    parked: Option<(u64, Weak<dyn Parker>)>,
}

/// One waiter counted while it waits (also when its future is dropped).
struct Waiter<'a> {
    slot: &'a Slot,
    chains: u64,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut log = self.slot.log.lock().expect("poisoned");
        if let Some(i) = log.waiters.iter().position(|c| *c == self.chains) {
            log.waiters.swap_remove(i);
        }
    }
}

impl OrderLocks {
    fn slot(&self, key: &str) -> Arc<Slot> {
        let mut map = self.map.lock().expect("order lock map poisoned");
        if let Some(s) = map.get(key).and_then(Weak::upgrade) {
            return s;
        }
        if map.len() > 4096 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let s = Arc::new(Slot {
            lock: Arc::new(tokio::sync::Mutex::new(())),
            log: Mutex::default(),
        });
        map.insert(key.to_string(), Arc::downgrade(&s));
        s
    }

    /// Wait for the order's lock and hold it for the chains `chains`; a lock parked by other
    /// chains is asked for first.
    pub async fn lock(&self, key: &str, chains: u64) -> OrderGuard {
        let slot = self.slot(key);
        let parker = {
            let mut log = slot.log.lock().expect("poisoned");
            log.waiters.push(chains);
            (log.parked.as_ref())
                .filter(|(by, _)| *by != chains)
                .and_then(|(_, p)| p.upgrade())
        };
        let waiter = Waiter {
            slot: &slot,
            chains,
        };
        if let Some(p) = parker {
            p.let_go().await;
        }
        let guard = slot.lock.clone().lock_owned().await;
        drop(waiter);
        OrderGuard {
            slot,
            chains,
            _guard: guard,
        }
    }

    /// The order's release count now (take it before reading the ledger).
    pub fn snapshot(&self, key: &str) -> LockSnapshot {
        let slot = self.slot(key);
        let releases = slot.log.lock().expect("poisoned").releases;
        LockSnapshot { slot, releases }
    }
}

/// An order's release count as a batch found it before reading the ledger. Holding the slot
/// keeps its log alive until the group compares.
pub(super) struct LockSnapshot {
    slot: Arc<Slot>,
    releases: u64,
}

/// An order's lock, held by a group of some chains; letting it go is logged (before the lock is free: whoever
/// takes it next sees the release).
pub(super) struct OrderGuard {
    slot: Arc<Slot>,
    chains: u64,
    _guard: OwnedMutexGuard<()>,
}

impl OrderGuard {
    /// Every release of this order's lock since `snap` was by this guard's chains.
    pub fn only_chains_since(&self, snap: &LockSnapshot) -> bool {
        if !Arc::ptr_eq(&self.slot, &snap.slot) {
            return false;
        }
        let log = self.slot.log.lock().expect("poisoned");
        let Some(since) = log.releases.checked_sub(snap.releases) else {
            return false;
        };
        let since = usize::try_from(since).unwrap_or(usize::MAX);
        since <= log.recent.len()
            && log
                .recent
                .iter()
                .rev()
                .take(since)
                .all(|c| *c == self.chains)
    }
}

impl OrderGuard {
    /// Hand the lock to `parker` to hold until it lets go; `Err(self)` when a task of other
    /// chains waits for the lock already (then the caller does what letting go requires, and
    /// drops it).
    pub fn park(self, parker: Weak<dyn Parker>) -> Result<OrderGuard, OrderGuard> {
        let mut log = self.slot.log.lock().expect("poisoned");
        if log.waiters.iter().any(|c| *c != self.chains) {
            drop(log);
            return Err(self);
        }
        log.parked = Some((self.chains, parker));
        drop(log);
        Ok(self)
    }
}

impl Drop for OrderGuard {
    fn drop(&mut self) {
        let mut log = self.slot.log.lock().expect("poisoned");
        log.parked = None;
        log.releases += 1;
        if log.recent.len() == REMEMBERED {
            log.recent.pop_front();
        }
        log.recent.push_back(self.chains);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: u64 = 1;
    const OTHER: u64 = 2;

    #[tokio::test]
    async fn a_snapshot_vouches_only_for_releases_by_the_same_chains() {
        let locks = OrderLocks::default();
        let snap = locks.snapshot("A");
        // Nothing since.
        assert!(locks.lock("A", RUN).await.only_chains_since(&snap));
        // That guard's own release, then another group of the same chains: still good.
        drop(locks.lock("A", RUN).await);
        assert!(locks.lock("A", RUN).await.only_chains_since(&snap));
        // Other chains held it since: not good.
        let snap = locks.snapshot("A");
        drop(locks.lock("A", OTHER).await);
        assert!(!locks.lock("A", RUN).await.only_chains_since(&snap));
        // Held by other chains at the snapshot, let go after it.
        let snap_held = {
            let held = locks.lock("A", OTHER).await;
            let s = locks.snapshot("A");
            drop(held);
            s
        };
        assert!(!locks.lock("A", RUN).await.only_chains_since(&snap_held));
        // Another order's snapshot vouches for nothing here.
        let b = locks.snapshot("B");
        assert!(!locks.lock("A", RUN).await.only_chains_since(&b));
    }

    /// Holds parked guards; letting go drops them and counts.
    #[derive(Default)]
    struct Batch {
        parked: Mutex<Vec<OrderGuard>>,
        let_go: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl Parker for Batch {
        async fn let_go(&self) {
            self.let_go
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.parked.lock().unwrap().clear();
        }
    }

    fn parker(b: &Arc<Batch>) -> Weak<dyn Parker> {
        let b: Arc<dyn Parker> = b.clone();
        Arc::downgrade(&b)
    }

    fn waiting(locks: &OrderLocks) -> usize {
        locks.slot("A").log.lock().unwrap().waiters.len()
    }

    /// A parked lock is let go when another run wants it, and one another run waits for is not
    /// parked; a waiter of the same chains neither asks nor stops the parking.
    #[tokio::test]
    async fn a_parked_lock_is_let_go_for_other_chains_only() {
        let locks = Arc::new(OrderLocks::default());
        let batch = Arc::new(Batch::default());
        let lets_go = || batch.let_go.load(std::sync::atomic::Ordering::SeqCst);
        let parked = locks.lock("A", RUN).await.park(parker(&batch));
        let parked = parked.ok().expect("nobody waits");
        batch.parked.lock().unwrap().push(parked);

        let same = tokio::spawn({
            let l = locks.clone();
            async move { l.lock("A", RUN).await }
        });
        while waiting(&locks) < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            lets_go(),
            0,
            "the same chains' waiter asked the batch to let go"
        );

        let other = tokio::spawn({
            let l = locks.clone();
            async move { l.lock("A", OTHER).await }
        });
        // The batch lets go for `other`; `same` was first in line.
        let got = same.await.unwrap();
        assert_eq!(lets_go(), 1);
        while waiting(&locks) < 1 {
            tokio::task::yield_now().await;
        }
        let refused = got.park(parker(&batch));
        assert!(refused.is_err(), "parked although another run waits");
        drop(refused);

        let got = other.await.unwrap();
        let own = tokio::spawn({
            let l = locks.clone();
            async move { drop(l.lock("A", OTHER).await) }
        });
        while waiting(&locks) < 1 {
            tokio::task::yield_now().await;
        }
        let parked = got.park(parker(&batch));
        assert!(parked.is_ok(), "refused with only its own chains waiting");
        drop(parked);
        own.await.unwrap();
        assert_eq!(waiting(&locks), 0);
    }

    #[tokio::test]
    async fn more_releases_than_the_log_keeps_are_not_vouched_for() {
        let locks = OrderLocks::default();
        let snap = locks.snapshot("A");
        for _ in 0..REMEMBERED {
            drop(locks.lock("A", RUN).await);
        }
        // Each acquisition of the check is itself released: REMEMBERED + 1 by now on the
        // second call.
        let guard = locks.lock("A", RUN).await;
        assert!(
            guard.only_chains_since(&snap),
            "exactly as many as it keeps"
        );
        drop(guard);
        assert!(!locks.lock("A", RUN).await.only_chains_since(&snap));
    }
}
