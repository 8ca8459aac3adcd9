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
//! orders locked, `gate.rs`): whoever then wants it asks the parker to let go (write its rows and
//! drop its locks) before waiting, and a lock someone already waits for is not parked at all.
//! Without this, two batches each parking an order the other's group waits for never end.

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
    /// Tasks waiting for the lock now.
    waiters: usize,
    /// Who holds the lock parked, if anyone.
    parked: Option<Weak<dyn Parker>>,
}

/// One waiter counted while it waits (also when its future is dropped).
struct Waiter<'a>(&'a Slot);

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.log.lock().expect("poisoned").waiters -= 1;
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

    /// Wait for the order's lock and hold it for the chains `chains`; a parked lock is asked
    /// for first.
    pub async fn lock(&self, key: &str, chains: u64) -> OrderGuard {
        let slot = self.slot(key);
        let parker = {
            let mut log = slot.log.lock().expect("poisoned");
            log.waiters += 1;
            log.parked.as_ref().and_then(Weak::upgrade)
        };
        let waiter = Waiter(&slot);
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
    /// Hand the lock to `parker` to hold until it lets go; `Err(self)` when someone waits for
    /// the lock already (then the caller does what letting go requires, and drops it).
    pub fn park(self, parker: Weak<dyn Parker>) -> Result<OrderGuard, OrderGuard> {
        let mut log = self.slot.log.lock().expect("poisoned");
        if log.waiters > 0 {
            drop(log);
            return Err(self);
        }
        log.parked = Some(parker);
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

    /// A parked lock is let go when someone wants it; one someone waits for is not parked.
    #[tokio::test]
    async fn a_parked_lock_is_let_go_on_demand_and_a_wanted_one_is_not_parked() {
        let locks = Arc::new(OrderLocks::default());
        let batch = Arc::new(Batch::default());
        let parked = locks.lock("A", RUN).await.park(parker(&batch));
        batch
            .parked
            .lock()
            .unwrap()
            .push(parked.ok().expect("nobody waits"));
        // Wanting it asks the batch to let go, then gets it.
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), locks.lock("A", OTHER))
            .await
            .expect("a parked lock is let go");
        assert_eq!(batch.let_go.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Someone waits while it is held: parking refuses.
        let waiting = tokio::spawn({
            let locks = locks.clone();
            async move { drop(locks.lock("A", RUN).await) }
        });
        while locks.slot("A").log.lock().unwrap().waiters == 0 {
            tokio::task::yield_now().await;
        }
        let refused = got.park(parker(&batch));
        assert!(refused.is_err(), "parked although someone waits");
        drop(refused);
        waiting.await.unwrap();
        assert_eq!(locks.slot("A").log.lock().unwrap().waiters, 0);
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
