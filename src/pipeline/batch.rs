//! One batch of a run (up to 100 operations, or a webhook's one): what the ledger already knows is
//! decided at once; what the ERP must be asked about is asked in batched calls; the bookable rest
//! is grouped by order, one task per order, each chained after the same order's previous task in
//! this run so an order's payments are decided in order across batches.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tracing::{Instrument, warn};

use super::Engine;
use super::facts::{Facts, Prefetched};
use super::gate::BatchClaims;
use super::group::OrderGroup;
use super::outcome::{Verdict, announce, finish_unrecorded};
use super::rebook;
use super::reverse::Reversible;
use super::run::{Examined, Item, OrderProgress, RunCtx, RunState};
use crate::domain::{Decision, DecisionInput, DecisionKind, PaymentStatus, decide};
use crate::erp::ErpError;
use crate::store::{LedgerRow, Record};
use crate::summary::Summary;

/// Order groups queued or running at once: a huge window does not pile up tasks while the ERP
/// works through its writes.
pub(super) const GROUP_SLOTS: usize = 512;

impl Engine {
    /// Decide one batch. Operations that cannot be booked are decided here; bookable ones are
    /// handed to per-order tasks pushed onto `state.tasks`.
    pub(super) async fn process_batch(
        self: &Arc<Self>,
        ctx: &Arc<RunCtx>,
        state: &mut RunState,
        items: Vec<Item>,
        prefetched: Option<Prefetched>,
    ) -> Summary {
        let mut summary = Summary::default();
        let mut ops = self.admit(ctx, items, &mut summary).await;
        if ops.is_empty() {
            return summary;
        }
        let pulled = self.pull_in(ctx, &ops, &mut state.seen).await;
        ops.extend(pulled);
        let candidates = self.decide_known(ctx, ops, &mut summary).await;
        if candidates.is_empty() {
            return summary;
        }
        match self.batch_facts(ctx, &candidates, prefetched).await {
            Ok((facts, read_at)) => {
                let groups = group_by_order(candidates, &facts, read_at, state.chains_id);
                self.spawn_groups(ctx, state, groups).await;
            }
            Err(e) => self.fail_lookups(ctx, &candidates, e, &mut summary).await,
        }
        summary
    }

    /// The batch's operations, each once (a listing that shifts while it is read can repeat
    /// one); unreadable documents are decided here.
    async fn admit(&self, ctx: &RunCtx, items: Vec<Item>, summary: &mut Summary) -> Vec<Examined> {
        let mut ops = Vec::with_capacity(items.len());
        let mut seen = HashSet::new();
        for item in items {
            match item {
                Item::Op(e) => {
                    if seen.insert(e.op.uid.clone()) {
                        ops.push(e);
                    }
                }
                Item::Bad { uid, reason } => {
                    self.finish_malformed(ctx, uid, &reason, summary).await;
                }
            }
        }
        ops
    }

    /// Decide what the ledger and the operations themselves settle (booked already, not paid,
    /// a child, a test); returns the rest, which the ERP must be asked about. Decisions that book
    /// nothing are written in one transaction per batch.
    async fn decide_known(
        &self,
        ctx: &RunCtx,
        ops: Vec<Examined>,
        summary: &mut Summary,
    ) -> Vec<Examined> {
        let uids: Vec<String> = ops.iter().map(|e| e.op.uid.clone()).collect();
        let rows = match self.ledger.rows(&ctx.acc.name, &uids).await {
            Ok(r) => r,
            Err(e) => {
                let reason = format!("ledger unavailable: {e}");
                for e in &ops {
                    finish_unrecorded(ctx, e, &reason, summary);
                }
                return Vec::new();
            }
        };
        let mut candidates = Vec::new();
        let mut deferred: Vec<Record> = Vec::new();
        let mut reversible = Vec::new();
        for e in ops {
            let loaded = booked_entry(ctx, rows.get(&e.op.uid))
                .or_else(|| self.unrecorded.entry(&ctx.acc.name, &e.op.uid));
            let op = &e.op;
            let needs_erp = !op.is_child
                && (!op.is_test || ctx.policy.include_test)
                && op.status == PaymentStatus::Paid
                && loaded.is_none();
            if needs_erp {
                candidates.push(e);
                continue;
            }
            let entry = rows
                .get(&op.uid)
                .and_then(|r| r.erp_entry.clone())
                .or_else(|| self.unrecorded.entry(&ctx.acc.name, &op.uid));
            let v = self
                .decide_without_erp(ctx, &e, loaded.as_deref())
                .with_entry(entry);
            let row = rows.get(&op.uid);
            if Reversible::wanted(ctx, &e, row) {
                let row = row.expect("checked").clone();
                reversible.push(Reversible { e, verdict: v, row });
                continue;
            }
            if ctx.records() {
                deferred.push(self.record_of(ctx, &e, &v));
            }
            announce(ctx, &e, v, summary);
        }
        if let Some(live) = &ctx.live
            && let Err(e) = live.ledger.record_many(&deferred).await
        {
            warn!(account = %ctx.acc.name, rows = deferred.len(), error = %e, "ledger write failed");
        }
        self.reverse_refunds(ctx, reversible, summary).await;
        candidates
    }

    /// The rules' word on an operation that needs no ERP facts.
    fn decide_without_erp(&self, ctx: &RunCtx, e: &Examined, loaded: Option<&str>) -> Verdict {
        let decision = decide(&DecisionInput {
            op: &e.op,
            policy: &ctx.policy,
            order_name: e.order.as_deref(),
            order: None,
            order_ambiguous: None,
            order_has_entry: false,
            already_loaded: loaded,
            earlier_unresolved: None,
            today: self.today(),
        });
        match decision {
            Decision::Skip(s) => Verdict::of(s.kind, s.reason),
            // Unreachable: a bookable operation is always a candidate. Be safe anyway.
            other => Verdict::error(format!("internal: unexpected {:?}", other.kind())),
        }
    }

    /// The ERP could not be asked: every candidate is an `error`, tried again at the run's end.
    async fn fail_lookups(
        &self,
        ctx: &RunCtx,
        candidates: &[Examined],
        e: ErpError,
        summary: &mut Summary,
    ) {
        let reason = format!("could not check the ERP: {e}");
        for e in candidates {
            self.mark_settleable(&ctx.acc.name, &e.op.uid);
            self.finish(ctx, e, Verdict::error(&reason), summary).await;
        }
    }

    /// Claim the batch's orders (one statement), then start one task per order group, each after
    /// the order's previous group of this run.
    async fn spawn_groups(
        self: &Arc<Self>,
        ctx: &Arc<RunCtx>,
        state: &mut RunState,
        mut groups: Vec<OrderGroup>,
    ) {
        let batch = self.claim_batch(ctx, &mut groups).await;
        if batch.is_some() {
            self.read_claimed(ctx, &mut groups).await;
        }
        for group in groups {
            let previous = group.order.as_ref().and_then(|o| state.chains.remove(o));
            let (done, done_rx) = oneshot::channel();
            if let Some(o) = &group.order {
                state.chains.insert(o.clone(), done_rx);
            }
            let slot = self
                .group_slots
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore never closed");
            let task = GroupTask {
                batch: group.pre_claimed.and(batch.clone()),
                group,
                previous,
                done,
                slot,
            };
            let (engine, ctx) = (self.clone(), ctx.clone());
            state
                .tasks
                .spawn(async move { engine.run_group(&ctx, task).await }.in_current_span());
        }
    }

    async fn run_group(&self, ctx: &RunCtx, task: GroupTask) -> Summary {
        // Wait for the previous group of this order; it tells whether the order has an entry now
        // and which payment is unresolved (needed in a dry run, where the ledger records nothing).
        let inherited = match task.previous {
            Some(prev) => prev.await.unwrap_or_default(),
            None => OrderProgress::default(),
        };
        let (mut summary, progress) = self
            .book_group(ctx, task.group, inherited, task.batch.as_ref())
            .await;
        let _ = task.done.send(progress);
        if let Some(batch) = task.batch {
            summary.failures.extend(batch.group_done().await);
        }
        drop(task.slot);
        summary
    }
}

/// One order group's task and what it hands on.
struct GroupTask {
    group: OrderGroup,
    /// The order's previous group in this run.
    previous: Option<oneshot::Receiver<OrderProgress>>,
    done: oneshot::Sender<OrderProgress>,
    /// The batch's claims, when this group's order is among them.
    batch: Option<Arc<BatchClaims>>,
    slot: OwnedSemaphorePermit,
}

/// The candidates by order, each group oldest first.
fn group_by_order(
    candidates: Vec<Examined>,
    facts: &Facts,
    read_at: jiff::Timestamp,
    chains_id: u64,
) -> Vec<OrderGroup> {
    let mut by_order: HashMap<Option<String>, Vec<Examined>> = HashMap::new();
    for e in candidates {
        by_order.entry(e.order.clone()).or_default().push(e);
    }
    by_order
        .into_iter()
        .map(|(order, mut ops)| {
            ops.sort_by(|a, b| {
                (a.op.created.cmp(&b.op.created)).then_with(|| a.op.uid.cmp(&b.op.uid))
            });
            let facts = facts.for_group(order.as_deref(), &ops, read_at);
            OrderGroup {
                order,
                ops,
                facts,
                pre_claimed: None,
                pre_read: None,
                chains_id,
            }
        })
        .collect()
}

/// The entry the ledger says the operation is booked as (a re-booking's operation is not: the
/// ledger remembers an entry that was cancelled).
fn booked_entry(ctx: &RunCtx, row: Option<&LedgerRow>) -> Option<String> {
    row.filter(|r| !rebook::forgets(&ctx.opts, r))
        .and_then(|r| {
            (r.decision.is_booked() || r.decision == DecisionKind::AlreadyLoaded).then(|| {
                r.erp_entry
                    .clone()
                    .unwrap_or_else(|| "(recorded in the ledger)".into())
            })
        })
}
