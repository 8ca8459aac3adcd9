//! One order's payments, decided and booked one after another, oldest first, inside the order's
//! gate.
//!
//! Oldest first, whatever fails: once a paid payment of the order is left unresolved (an error, an
//! unknown create outcome, a claim another process holds, a missing order), every later payment of
//! the order is `waiting` until it resolves — known from the previous group of the order in this
//! run ([`OrderProgress`]), or from the ledger (earlier runs, other processes), which is re-read
//! after the order is claimed and locked (another trigger may have just booked this operation or
//! this order): once for the whole batch when nothing else can have touched the order since
//! ([`Engine::read_claimed`]), else under the gate before each booking.

use std::sync::Arc;

use tracing::warn;

use super::Engine;
use super::facts::GroupFacts;
use super::gate::{BatchClaims, Gate};
use super::order_lock::LockSnapshot;
use super::outcome::{Verdict, announce, finish_unrecorded};
use super::rebook;
use super::run::{Examined, OrderProgress, RunCtx};
use super::write::Booking;
use crate::domain::{Decision, DecisionInput, DecisionKind, EarlierPayment, decide};
use crate::store::{LedgerRow, OrderView, ViewQuery};
use crate::summary::Summary;

/// The bookable operations of one order (or of no order) in a batch, oldest first.
pub(super) struct OrderGroup {
    pub order: Option<String>,
    pub ops: Vec<Examined>,
    pub facts: GroupFacts,
    /// The batch claimed the order already, in this holding.
    pub pre_claimed: Option<crate::claims::Holding>,
    /// The ledger's views of `ops`, read by the batch once it held the claims
    /// ([`Engine::read_claimed`]); `None`: each is read under the gate.
    pub pre_read: Option<PreRead>,
    /// The run's chains this group is one link of (`RunState::chains_id`).
    pub chains_id: u64,
}

/// The ledger's view of each operation of a group, read in one statement for the whole batch
/// after its claims were taken, and the order's lock as it was just before.
pub(super) struct PreRead {
    lock: LockSnapshot,
    views: Vec<OrderView>,
}

/// One operation of a group, as handed to [`Engine::book_one`].
struct One<'a> {
    e: &'a Examined,
    /// Its view from the batch's read, still valid (else it is read under the gate).
    pre_read: Option<OrderView>,
    /// Later payments of the order follow in this group.
    more_follow: bool,
}

/// What a group has decided so far.
struct GroupRun<'b> {
    summary: Summary,
    progress: OrderProgress,
    /// The batch whose claims the group's order is held in: the group's records are written
    /// with the batch's release (see `gate.rs`).
    batch: Option<&'b Arc<BatchClaims>>,
    /// Some record of the group waits in `batch`.
    deferred: bool,
}

impl Engine {
    /// Read the ledger's views of every operation of the groups whose order the batch claimed, in
    /// one statement, instead of one statement per booking under each gate. Valid for a group
    /// only while nothing it does not know of could have written its order's rows since: other
    /// processes wait for the claim (taken before this read), and the group checks that every
    /// release of the order's lock since the snapshot (taken before this read) was by its own
    /// run's chains — the order's earlier groups, whose decisions it inherits — and that the
    /// claim was not taken over (`order_lock.rs`); otherwise it reads under the gate as before.
    /// The rows a group writes itself wait for the batch's end (`gate.rs`), so its later
    /// payments learn of its earlier ones from `OrderProgress` either way.
    pub(super) async fn read_claimed(&self, ctx: &RunCtx, groups: &mut [OrderGroup]) {
        let mut snapshots = Vec::new();
        let mut queries = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            let Some(order) = g.order.as_deref().filter(|_| g.pre_claimed.is_some()) else {
                continue;
            };
            snapshots.push((i, self.order_locks.snapshot(order)));
            queries.extend(g.ops.iter().map(|e| ViewQuery {
                uid: e.op.uid.clone(),
                created: e.op.created,
                sales_order: e.order.clone(),
                booked_since: g.facts.read_at,
            }));
        }
        if queries.is_empty() {
            return;
        }
        let mut views = match self.ledger.views(&ctx.acc.name, &queries).await {
            Ok(v) => v.into_iter(),
            Err(e) => {
                warn!(account = %ctx.acc.name, error = %e, "batched ledger read failed; reading per booking");
                return;
            }
        };
        for (i, lock) in snapshots {
            let g = &mut groups[i];
            let views = views.by_ref().take(g.ops.len()).collect();
            g.pre_read = Some(PreRead { lock, views });
        }
    }

    /// Decide and book one order's operations, one after another, inside the order's gate;
    /// `batch`: the batch's claims, when the order is held in them.
    pub(super) async fn book_group(
        &self,
        ctx: &RunCtx,
        group: OrderGroup,
        inherited: OrderProgress,
        batch: Option<&Arc<BatchClaims>>,
    ) -> (Summary, OrderProgress) {
        let OrderGroup {
            order,
            ops,
            mut facts,
            pre_claimed,
            pre_read,
            chains_id,
        } = group;
        let mut run = GroupRun {
            summary: Summary::default(),
            progress: inherited,
            batch: batch.filter(|_| pre_claimed.is_some() && ctx.records()),
            deferred: false,
        };
        run.progress.has_entry |= facts.order_has_entry;
        let mut gate = self.enter_gate(order.as_deref(), chains_id).await;
        if let Err(reason) = gate.claim(ctx, pre_claimed).await {
            self.fail_group(ctx, &ops, &reason, &mut run).await;
            return (run.summary, run.progress);
        }
        // The batch's read, if nothing this group does not know of held the order since: after
        // a takeover or another run's group, each operation is read under the gate.
        let mut pre_read = pre_read.filter(|p| gate.unchanged_since(&p.lock));
        if let Some(o) = order.as_deref()
            && gate
                .wait_out_previous_holder(self.erp.as_ref(), &ctx.acc.name, o, facts.read_at)
                .await
        {
            pre_read = None;
            if let Err(e) = self.refresh_facts(&ops, &mut facts).await {
                let reason = format!("could not check the ERP after a takeover: {e}");
                for e in &ops {
                    self.mark_settleable(&ctx.acc.name, &e.op.uid);
                }
                self.fail_group(ctx, &ops, &reason, &mut run).await;
                gate.leave(None).await;
                return (run.summary, run.progress);
            }
            run.progress.has_entry |= facts.order_has_entry;
        }
        let count = ops.len();
        for (idx, e) in ops.iter().enumerate() {
            let more_follow = idx + 1 < count;
            let one = One {
                e,
                pre_read: pre_read.as_mut().map(|p| std::mem::take(&mut p.views[idx])),
                more_follow,
            };
            self.book_one(ctx, &gate, one, &facts, &mut run).await;
        }
        gate.leave(run.batch.filter(|_| run.deferred)).await;
        (run.summary, run.progress)
    }

    /// Decide and book one operation of the group.
    async fn book_one(
        &self,
        ctx: &RunCtx,
        gate: &Gate,
        one: One<'_>,
        facts: &GroupFacts,
        run: &mut GroupRun<'_>,
    ) {
        let One {
            e,
            pre_read,
            more_follow,
        } = one;
        let op = &e.op;
        let fresh = match pre_read {
            Some(view) => Ok(view),
            None => {
                self.ledger
                    .op_and_order(
                        &ctx.acc.name,
                        &op.uid,
                        op.created,
                        e.order.as_deref(),
                        facts.read_at,
                    )
                    .await
            }
        };
        let view = match fresh {
            Ok(view) => view,
            Err(err) => {
                finish_unrecorded(
                    ctx,
                    e,
                    &format!("ledger unavailable: {err}"),
                    &mut run.summary,
                );
                run.progress.note(op, DecisionKind::Error, ctx.records());
                return;
            }
        };
        run.progress.has_entry |= view.booked_entry.is_some();
        // Booked by this process, the ledger's record of it refused: the ledger's silence (and
        // facts read before that create committed) must not book it again.
        if let Some(entry) = self.unrecorded.entry(&ctx.acc.name, &op.uid)
            && !view.row.as_ref().is_some_and(|r| r.decision.is_booked())
        {
            let reason = format!(
                "booked by this process as Payment Entry {entry}, whose ledger record failed; recorded now"
            );
            let v = Verdict::of(DecisionKind::AlreadyLoaded, reason).with_entry(Some(entry));
            run.progress.has_entry = true;
            self.finish_in_group(ctx, gate, e, v, run).await;
            return;
        }
        let row = view.row.clone();
        let decision = self.decide_one(ctx, e, facts, view, &run.progress);
        let planned_kind = decision.kind();
        let v = match decision {
            Decision::Skip(s) => {
                let entry = (s.kind == DecisionKind::AlreadyLoaded)
                    .then(|| known_entry(e, facts, row.as_ref()))
                    .flatten();
                Verdict::of(s.kind, s.reason).with_entry(entry)
            }
            Decision::BookInitial(entry) => {
                let booking = Booking::new(DecisionKind::BookedInitial, entry);
                self.write(ctx, gate, op, booking).await
            }
            Decision::BookAdditional(entry) => {
                let booking = Booking::new(DecisionKind::BookedAdditional, entry);
                self.write(ctx, gate, op, booking).await
            }
        };
        // Booked — or planned in a dry run, whose kind is the booking's — so later payments see
        // the order paid.
        if v.kind.is_booked() {
            run.progress.has_entry = true;
        }
        if v.kind == DecisionKind::AlreadyLoaded
            && !run.progress.has_entry
            && (planned_kind.is_booked() || more_follow)
        {
            self.recheck_order(ctx, e, facts, &mut run.progress).await;
        }
        self.finish_in_group(ctx, gate, e, v, run).await;
    }

    /// Record (with the batch, or now) and announce one decision of the group.
    async fn finish_in_group(
        &self,
        ctx: &RunCtx,
        gate: &Gate,
        e: &Examined,
        v: Verdict,
        run: &mut GroupRun<'_>,
    ) {
        let op = &e.op;
        let kind = v.kind;
        match run.batch {
            Some(batch) => {
                batch.defer(self.record_of(ctx, e, &v));
                run.deferred = true;
                announce(ctx, e, v, &mut run.summary);
                // Not in the ledger yet: its word on this payment is stale until the batch ends.
                run.progress.note(op, kind, false);
            }
            None => {
                if !self.finish(ctx, e, v, &mut run.summary).await && kind.is_booked() {
                    gate.booking_unrecorded();
                }
                run.progress.note(op, kind, ctx.records());
            }
        }
    }

    /// The rules' word on one operation, with everything known right now.
    fn decide_one(
        &self,
        ctx: &RunCtx,
        e: &Examined,
        facts: &GroupFacts,
        view: OrderView,
        progress: &OrderProgress,
    ) -> Decision {
        let op = &e.op;
        let row = view.row;
        let earlier = progress.earlier(view.earlier_unresolved);
        let rebooking = ctx.opts.rebook.as_ref().filter(|r| r.uid == op.uid);
        // The guard value the entry will carry: a re-booking's own, else the operation id.
        let guard_value = match rebooking {
            Some(r) => r.guard_value.clone(),
            None => row.as_ref().and_then(|r| r.guard_value.clone()),
        };
        let loaded_in_ledger = row
            .as_ref()
            .filter(|r| !rebook::forgets(&ctx.opts, r))
            .filter(|r| r.decision.is_booked() || r.decision == DecisionKind::AlreadyLoaded)
            .map(|r| r.erp_entry.clone().unwrap_or_default());
        let loaded_in_erp = facts.existing.get(&op.uid).map(|x| {
            if x.docstatus == 0 {
                format!("{} (a draft: submit it in ERPNext)", x.name)
            } else {
                x.name.clone()
            }
        });
        let loaded = loaded_in_ledger.or(loaded_in_erp);
        decide(&DecisionInput {
            op,
            policy: &ctx.policy,
            order_name: e.order.as_deref(),
            order: facts.order.as_ref(),
            order_ambiguous: facts.ambiguous.as_deref(),
            order_has_entry: progress.has_entry,
            already_loaded: loaded.as_deref(),
            earlier_unresolved: earlier.as_ref(),
            today: self.today(),
        })
        .with_guard_value(guard_value)
    }

    /// Already in the ERP although the batch's lookups did not say the order has an entry
    /// (committed since: an answer lost, another process, the guard's refusal): ask again whether
    /// an entry references the order now, before a later payment decides. (Only when it matters:
    /// the create itself found it, or a later payment of the order follows in this group — one
    /// extra call, not one per already-loaded operation.)
    async fn recheck_order(
        &self,
        ctx: &RunCtx,
        e: &Examined,
        facts: &GroupFacts,
        progress: &mut OrderProgress,
    ) {
        let Some(o) = facts.order.as_ref().map(|o| o.name.as_str()) else {
            return;
        };
        match self.orders_with_entries_of(&[o.to_string()]).await {
            Ok(with) => progress.has_entry = with.contains(o),
            Err(err) => {
                warn!(account = %ctx.acc.name, uid = %e.op.uid, error = %err, "could not re-check the order's entries; its later payments wait");
                progress.blocker.get_or_insert_with(|| EarlierPayment {
                    uid: e.op.uid.clone(),
                    decision: DecisionKind::Error,
                });
            }
        }
    }

    /// Record every operation of a group as `error` with `reason` (nothing was booked).
    async fn fail_group(
        &self,
        ctx: &RunCtx,
        ops: &[Examined],
        reason: &str,
        run: &mut GroupRun<'_>,
    ) {
        for e in ops {
            self.finish(ctx, e, Verdict::error(reason), &mut run.summary)
                .await;
            run.progress.note(&e.op, DecisionKind::Error, ctx.records());
        }
    }
}

/// The entry an already-loaded operation is loaded as: the ERP's, else the ledger's.
fn known_entry(e: &Examined, facts: &GroupFacts, row: Option<&LedgerRow>) -> Option<String> {
    facts
        .existing
        .get(&e.op.uid)
        .map(|x| x.name.clone())
        .or_else(|| row.and_then(|r| r.erp_entry.clone()))
}
