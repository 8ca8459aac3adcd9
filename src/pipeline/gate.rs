//! The per-order gate: one booking at a time per ERP order (invariant 2 of ARCHITECTURE.md).
//!
//! In this process a keyed async mutex; across processes sharing the ledger the order's claim
//! (`crate::claims`): usually taken for the whole batch in one statement, otherwise taken by the
//! group, waiting for another live holder. A claim taken over from another holder (its lease
//! lapsed: the holder died, paused or was cut off) may still have creates in flight: the group waits them out before it
//! books. Order of taking: the batch's claims, then the order lock, then the group's own claim;
//! a write slot is taken only around each create (`write`).
//!
//! A dry run takes the lock but no claim: it creates nothing.
//!
//! A batch's records of its groups wait for its release (`BatchClaims::defer`): the last group writes
//! them in one statement, then lets go of the claims — one commit per batch instead of one per
//! entry (each commit rewrote ~7 WAL pages). Safe because the claims are still held until the
//! records are written (another process re-reads the ledger under the claim), and each order
//! whose record waits keeps its in-process lock until then (another trigger of this process
//! re-reads the ledger under the lock). A crash before the write loses only ledger rows: the
//! next run finds the entries by `reference_no`, and the claims' rows, never released, make the
//! successor wait out the commit horizon first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tracing::warn;

use super::Engine;
use super::group::OrderGroup;
use super::order_lock::{LockSnapshot, OrderGuard, Parker};
use super::outcome::unrecorded_line;
use super::run::RunCtx;
use crate::claims::{Claims, Holding, order_key};
use crate::erp::Erp;
use crate::store::{Ledger, Record};

/// The claims a batch took in one statement, released in one statement by its last group,
/// after the records its groups left with it.
pub(super) struct BatchClaims {
    claims: Arc<Claims>,
    ledger: Arc<dyn Ledger>,
    keys: Vec<String>,
    remaining: AtomicUsize,
    waiting: Mutex<Waiting>,
    /// Held while waiting records are written: the claims are released only after every write
    /// that started (another group's wanting a parked lock starts one, see `order_lock.rs`).
    writing: tokio::sync::Mutex<()>,
    /// The records the ledger could not take, one line each, for the summary.
    failures: Mutex<Vec<String>>,
    /// Where bookings the ledger refused are remembered for this process's other runs.
    unrecorded: super::outcome::Unrecorded,
}

/// What the batch's groups left to be written with the release.
#[derive(Default)]
struct Waiting {
    records: Vec<Record>,
    /// The in-process locks of the orders whose records are among them, parked here.
    locks: Vec<OrderGuard>,
}

impl BatchClaims {
    /// Write `rec` with the batch's release (see the module's comment).
    pub fn defer(&self, rec: Record) {
        self.waiting.lock().expect("poisoned").records.push(rec);
    }

    /// Write the records waiting so far, then drop the locks parked with them. False when the
    /// ledger refused them.
    async fn write_waiting(&self) -> bool {
        let _writing = self.writing.lock().await;
        let Waiting { records, locks } =
            std::mem::take(&mut *self.waiting.lock().expect("poisoned"));
        if !records.is_empty() {
            match self.ledger.record_many(&records).await {
                Ok(()) => self.unrecorded.landed(&records),
                Err(err) => {
                    warn!(rows = records.len(), error = %err, "ledger write failed");
                    // Before the locks go: whoever takes one next must not trust the ledger.
                    self.unrecorded.note(&records);
                    let mut failures = self.failures.lock().expect("poisoned");
                    failures.extend(records.iter().map(|r| unrecorded_line(r, &err)));
                    drop(failures);
                    drop(locks);
                    return false;
                }
            }
        }
        drop(locks);
        true
    }

    /// One group of the batch whose order is claimed is done; the last writes the waiting
    /// records, lets go of the orders' locks, then of the claims. The records the ledger could
    /// not take, one line each (they are examined again by the next run).
    pub async fn group_done(&self) -> Vec<String> {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return Vec::new();
        }
        let written = self.write_waiting().await;
        // A record lost now or earlier (`let_go`): the claims lapse instead, so that whoever
        // takes one waits out the horizon and asks the ERP instead of trusting the ledger.
        if written && self.failures.lock().expect("poisoned").is_empty() {
            self.claims.release(&self.keys).await;
        } else {
            self.claims.abandon(&self.keys);
        }
        std::mem::take(&mut *self.failures.lock().expect("poisoned"))
    }
}

#[async_trait::async_trait]
impl Parker for BatchClaims {
    /// Another group wants one of the orders parked here: write what waits and let go now,
    /// without waiting for the batch's other groups (the claims stay until the batch ends).
    async fn let_go(&self) {
        // A failure is kept for `group_done`, which then leaves the claims to lapse.
        let _ = self.write_waiting().await;
    }
}

/// An order's gate, entered: the order is this group's until the gate is left (or dropped).
pub(super) struct Gate {
    /// The order's claim key (`None`: no order).
    key: Option<String>,
    /// The claims the order's claim is held in, and the holding this group claimed it in
    /// (`None`: not claimed, a dry run).
    claims: Option<(Arc<Claims>, Holding)>,
    /// Taken by the group itself (not the batch): released when the group leaves.
    own: bool,
    /// A booking under it could not be recorded: the claim is left to lapse, not released.
    unrecorded: std::sync::atomic::AtomicBool,
    lock: Option<OrderGuard>,
}

impl Engine {
    /// Claim every order of the batch in one statement (cross-process safety) and mark the groups
    /// whose order was claimed; orders another live process holds are claimed per group, waiting.
    pub(super) async fn claim_batch(
        &self,
        ctx: &RunCtx,
        groups: &mut [OrderGroup],
    ) -> Option<Arc<BatchClaims>> {
        let live = ctx.live.as_ref()?;
        let keys: Vec<String> = groups
            .iter()
            .filter_map(|g| g.order.as_deref())
            .map(order_key)
            .collect();
        if keys.is_empty() {
            return None;
        }
        let claimed: HashMap<String, Holding> = match live.claims.take_many(&keys).await {
            Ok(c) => c,
            Err(e) => {
                warn!(account = %ctx.acc.name, error = %e, "batch claim failed; claiming per order");
                return None;
            }
        };
        for g in groups.iter_mut() {
            g.pre_claimed = g
                .order
                .as_deref()
                .and_then(|o| claimed.get(&order_key(o)).copied());
        }
        let remaining = groups.iter().filter(|g| g.pre_claimed.is_some()).count();
        Some(Arc::new(BatchClaims {
            claims: live.claims.clone(),
            ledger: live.ledger.clone(),
            keys: claimed.into_keys().collect(),
            remaining: AtomicUsize::new(remaining),
            waiting: Mutex::default(),
            writing: tokio::sync::Mutex::new(()),
            failures: Mutex::default(),
            unrecorded: self.unrecorded.clone(),
        }))
    }

    /// Enter the gate of `order` (`None`: an operation naming no order has no gate) for a group
    /// of the chains `chains_id` (`RunState::chains_id`): the order's lock. The claim comes next
    /// ([`Gate::claim`]), under the lock.
    pub(super) async fn enter_gate(&self, order: Option<&str>, chains_id: u64) -> Gate {
        let lock = match order {
            Some(o) => Some(self.order_locks.lock(o, chains_id).await),
            None => None,
        };
        Gate {
            key: order.map(order_key),
            claims: None,
            own: false,
            unrecorded: Default::default(),
            lock,
        }
    }
}

impl Gate {
    /// Hold the order's claim too: the batch's (`pre_claimed`, in that holding), else taken
    /// now, waiting for another live holder. `Err`: it could not be had (why, as the
    /// operations' reason). A dry run claims nothing.
    pub async fn claim(
        &mut self,
        ctx: &RunCtx,
        pre_claimed: Option<Holding>,
    ) -> Result<(), String> {
        let (Some(key), Some(live)) = (&self.key, &ctx.live) else {
            return Ok(());
        };
        let holding = match pre_claimed {
            Some(h) => h,
            None => {
                let h = live.claims.take(key).await?;
                self.own = true;
                h
            }
        };
        self.claims = Some((live.claims.clone(), holding));
        Ok(())
    }

    /// The ledger as read when `snap` was taken is the ledger now, as far as this group can
    /// tell: every release of the order's lock since was by its own chains (the order's earlier
    /// groups in this run, whose decisions it inherits), and the claim was not taken over from
    /// another holder.
    pub fn unchanged_since(&self, snap: &LockSnapshot) -> bool {
        let Some(guard) = &self.lock else {
            return false;
        };
        let taken_over = match (&self.key, &self.claims) {
            (Some(key), Some((claims, _))) => claims.taken_over(key),
            _ => true,
        };
        guard.only_chains_since(snap) && !taken_over
    }

    /// Right before a create: the key of the order's claim if it lapsed and another process took
    /// it meanwhile, or may have (the wait for a write slot can be long; a process can pause).
    pub async fn lapsed(&self) -> Option<&str> {
        let (Some(key), Some((claims, holding))) = (&self.key, &self.claims) else {
            return None;
        };
        (!claims.still_held(key, *holding).await).then_some(key.as_str())
    }

    /// Taken over from another holder (its lease lapsed): its creates may still commit. Wait
    /// them out; `true` when the claim was taken over at all, or the group's facts (read at
    /// `facts_read_at`) predate a takeover this process made of it since — then they must be
    /// asked for again, whether this group waited or an earlier one did: facts read before the
    /// wait ended (another run's, read ahead of a webhook) may predate those creates, and the
    /// dead holder's records never reached the ledger. With the server-side guard
    /// nothing is waited for or re-read: the ERP refuses a second entry itself.
    pub async fn wait_out_previous_holder(
        &self,
        erp: &dyn Erp,
        account: &str,
        order: &str,
        facts_read_at: jiff::Timestamp,
    ) -> bool {
        let (Some(key), Some((claims, _))) = (&self.key, &self.claims) else {
            return false;
        };
        if !claims.taken_over(key) && !claims.facts_predate_takeover(key, facts_read_at) {
            return false;
        }
        if erp.guard_installed().await.unwrap_or(false) {
            return false;
        }
        if let Some(wait) = claims.takeover_wait(key) {
            warn!(
                account,
                order,
                wait_s = wait.as_secs_f64(),
                "order taken over from another holder: waiting out its in-flight creates before booking"
            );
            tokio::time::sleep(wait).await;
        }
        true
    }

    /// A booking under this gate could not be recorded in the ledger: its claim is left to
    /// lapse when the group leaves (see [`Claims::abandon`]).
    pub fn booking_unrecorded(&self) {
        self.unrecorded.store(true, Ordering::Relaxed);
    }

    /// Let go: the group's own claim is released (the batch's claims go with the batch's last
    /// group), then the lock — unless `keep_lock_in` holds records of this order: then the lock
    /// is parked with them, or, if another group waits for it already, they are written now
    /// and the lock let go.
    pub async fn leave(self, keep_lock_in: Option<&Arc<BatchClaims>>) {
        if let (true, Some(key), Some((claims, _))) = (self.own, &self.key, &self.claims) {
            if self.unrecorded.load(Ordering::Relaxed) {
                claims.abandon(std::slice::from_ref(key));
            } else {
                claims.release(std::slice::from_ref(key)).await;
            }
        }
        let (Some(batch), Some(lock)) = (keep_lock_in, self.lock) else {
            return;
        };
        let parker: Arc<dyn Parker> = batch.clone();
        let wanted = {
            // Parked under the batch's own lock: a `let_go` asked for meanwhile finds it there.
            let mut waiting = batch.waiting.lock().expect("poisoned");
            match lock.park(Arc::downgrade(&parker)) {
                Ok(parked) => {
                    waiting.locks.push(parked);
                    None
                }
                Err(wanted) => Some(wanted),
            }
        };
        if let Some(lock) = wanted {
            let _ = batch.write_waiting().await;
            drop(lock);
        }
    }
}
