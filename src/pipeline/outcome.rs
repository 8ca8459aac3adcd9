//! One decision made known: written to the ledger (in a real run), logged (one `decision` line),
//! reported to the observer (the CLI's progress bar), counted in the summary and the metrics.
//! An [`Outcome`] is built here and nowhere else.

use tracing::{info, warn};

use super::run::{Examined, RunCtx};
use super::{Engine, Outcome};
use crate::domain::{DecisionKind, Operation, PaymentEntry};
use crate::store::{Record, StoreError};
use crate::summary::{BookedLine, Summary};

/// What was decided for one operation, before it is made known.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Verdict {
    pub kind: DecisionKind,
    pub reason: String,
    pub entry_name: Option<String>,
    /// The entry the rules asked for (created, or planned in a dry run).
    pub planned: Option<PaymentEntry>,
}

impl Verdict {
    pub fn of(kind: DecisionKind, reason: impl Into<String>) -> Verdict {
        Verdict {
            kind,
            reason: reason.into(),
            entry_name: None,
            planned: None,
        }
    }

    pub fn error(reason: impl Into<String>) -> Verdict {
        Verdict::of(DecisionKind::Error, reason)
    }

    pub fn with_entry(mut self, entry_name: Option<String>) -> Verdict {
        self.entry_name = entry_name;
        self
    }
}

impl Outcome {
    fn of(account: &str, e: &Examined, v: &Verdict) -> Outcome {
        Outcome {
            account: account.to_string(),
            uid: e.op.uid.clone(),
            reference: e.op.reference.clone(),
            order: e.order.clone(),
            kind: v.kind,
            reason: v.reason.clone(),
            entry_name: v.entry_name.clone(),
            planned: v.planned.clone(),
        }
    }
}

/// Bookings this process made that the ledger could not record (a failed write, a deadlock it
/// lost), by (account, operation id), with their entry. While the ledger is silent about them,
/// another run of this process holding the order's lock after the failure would decide on that
/// silence and on ERP facts read before the create committed — and book the payment again. So
/// every decision first asks here; the entry is forgotten once a record of it lands.
#[derive(Clone, Default)]
pub(super) struct Unrecorded(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(String, String), String>>>,
);

impl Unrecorded {
    /// Remember the booked ones among `recs`, which the ledger refused.
    pub fn note(&self, recs: &[Record]) {
        let mut map = self.0.lock().expect("poisoned");
        for r in recs.iter().filter(|r| r.decision.is_booked()) {
            if let Some(entry) = &r.erp_entry {
                map.insert((r.account.clone(), r.uid.clone()), entry.clone());
            }
        }
    }

    /// `recs` are in the ledger now: those naming an entry end the ledger's silence (an error
    /// recorded meanwhile does not).
    pub fn landed(&self, recs: &[Record]) {
        let mut map = self.0.lock().expect("poisoned");
        if map.is_empty() {
            return;
        }
        for r in recs.iter().filter(|r| {
            r.erp_entry.is_some()
                && (r.decision.is_booked() || r.decision == DecisionKind::AlreadyLoaded)
        }) {
            map.remove(&(r.account.clone(), r.uid.clone()));
        }
    }

    /// The entry this process booked for the operation that the ledger does not know of.
    pub fn entry(&self, account: &str, uid: &str) -> Option<String> {
        let map = self.0.lock().expect("poisoned");
        if map.is_empty() {
            return None;
        }
        map.get(&(account.to_string(), uid.to_string())).cloned()
    }
}

impl Engine {
    /// Record and make known one decision; false when the ledger could not record it.
    pub(super) async fn finish(
        &self,
        ctx: &RunCtx,
        e: &Examined,
        v: Verdict,
        summary: &mut Summary,
    ) -> bool {
        let mut unrecorded = None;
        if let Some(live) = &ctx.live {
            let rec = self.record_of(ctx, e, &v);
            match live.ledger.record(&rec).await {
                Ok(()) => self.unrecorded.landed(std::slice::from_ref(&rec)),
                Err(err) => {
                    warn!(account = %ctx.acc.name, uid = %e.op.uid, error = %err, decision = %v.kind, "ledger write failed");
                    self.unrecorded.note(std::slice::from_ref(&rec));
                    unrecorded = Some(unrecorded_line(&rec, &err));
                }
            }
        }
        announce(ctx, e, v, summary);
        // Not a clean run: a trigger is tried again, `sync` exits non-zero. The next examination
        // finds a booked entry by its reference_no (never books it twice) and records it then.
        let recorded = unrecorded.is_none();
        if let Some(failure) = unrecorded {
            summary.failures.push(failure);
        }
        recorded
    }

    /// The ledger row for one decision.
    pub(super) fn record_of(&self, ctx: &RunCtx, e: &Examined, v: &Verdict) -> Record {
        let op = &e.op;
        Record {
            account: ctx.acc.name.clone(),
            uid: op.uid.clone(),
            reference: op.reference.clone(),
            sales_order: e.order.clone(),
            status_code: op.status_code(),
            amount: Some(op.total),
            currency: Some(op.currency.clone()),
            decision: v.kind,
            reason: v.reason.clone(),
            erp_entry: v.entry_name.clone(),
            op_created: Some(op.created),
            seen_at: self.clock.now(),
            trigger: ctx.opts.trigger,
        }
    }

    /// A document the source could not read: an `error` (recorded when it has an id, so it is
    /// examined again), never a reason to stop the others.
    pub(super) async fn finish_malformed(
        &self,
        ctx: &RunCtx,
        uid: Option<String>,
        reason: &str,
        summary: &mut Summary,
    ) {
        let out = Outcome {
            account: ctx.acc.name.clone(),
            uid: uid.clone().unwrap_or_else(|| "(no id)".into()),
            reference: String::new(),
            order: None,
            kind: DecisionKind::Error,
            reason: format!("malformed operation: {reason}"),
            entry_name: None,
            planned: None,
        };
        if let (Some(uid), Some(live)) = (uid, &ctx.live) {
            let rec = Record {
                account: ctx.acc.name.clone(),
                uid,
                reference: String::new(),
                sales_order: None,
                status_code: None,
                amount: None,
                currency: None,
                decision: DecisionKind::Error,
                reason: out.reason.clone(),
                erp_entry: None,
                op_created: None,
                seen_at: self.clock.now(),
                trigger: ctx.opts.trigger,
            };
            if let Err(e) = live.ledger.record(&rec).await {
                warn!(account = %ctx.acc.name, uid = %rec.uid, error = %e, "ledger write failed");
            }
        }
        report(ctx, &out);
        summary.count(DecisionKind::Error);
    }
}

/// The summary's line for a decision the ledger could not take (a failed run: examined again).
pub(super) fn unrecorded_line(rec: &Record, err: &StoreError) -> String {
    format!(
        "{}: decided {}{} but the ledger could not record it ({err}); examined again by the next run",
        rec.uid,
        rec.decision,
        rec.erp_entry
            .as_deref()
            .map(|n| format!(" (Payment Entry {n})"))
            .unwrap_or_default(),
    )
}

/// An `error` the ledger could not take (it is unavailable): logged, reported and counted, not
/// written, not in the metrics.
pub(super) fn finish_unrecorded(ctx: &RunCtx, e: &Examined, reason: &str, summary: &mut Summary) {
    let out = Outcome::of(&ctx.acc.name, e, &Verdict::error(reason));
    log_decision(&out, &e.op);
    report(ctx, &out);
    summary.count_decision(&e.op, DecisionKind::Error, reason);
}

/// Log, report and count one decision (recording is the caller's business).
pub(super) fn announce(ctx: &RunCtx, e: &Examined, v: Verdict, summary: &mut Summary) {
    let out = Outcome::of(&ctx.acc.name, e, &v);
    log_decision(&out, &e.op);
    report(ctx, &out);
    summary.count_decision(&e.op, v.kind, &v.reason);
    if ctx.records() {
        metrics::counter!(crate::metrics::DECISIONS, "account" => ctx.acc.name.clone(), "kind" => v.kind.as_str())
            .increment(1);
    }
    if ctx.opts.collect_booked
        && v.kind.is_booked()
        && let Some(entry) = v.planned
    {
        summary.booked.push(BookedLine {
            uid: e.op.uid.clone(),
            kind: v.kind,
            entry_name: v.entry_name,
            entry,
        });
    }
}

fn report(ctx: &RunCtx, out: &Outcome) {
    if let Some(obs) = &ctx.opts.observer {
        obs(out);
    }
}

/// One log line per decision: everything an operator needs to know what happened and why.
fn log_decision(out: &Outcome, op: &Operation) {
    let order = out.order.as_deref().unwrap_or("-");
    let entry = out.entry_name.as_deref().unwrap_or("-");
    match out.kind {
        DecisionKind::Error => warn!(
            account = %out.account, uid = %out.uid, reference = %out.reference, order,
            amount = %op.total, currency = %op.currency, status = %op.source_status,
            decision = %out.kind, reason = %out.reason, entry, "decision"
        ),
        DecisionKind::Refunded if out.reason.contains("booked") => warn!(
            account = %out.account, uid = %out.uid, reference = %out.reference, order,
            amount = %op.total, currency = %op.currency, status = %op.source_status,
            decision = %out.kind, reason = %out.reason, entry, "decision"
        ),
        _ => info!(
            account = %out.account, uid = %out.uid, reference = %out.reference, order,
            amount = %op.total, currency = %op.currency, status = %op.source_status,
            decision = %out.kind, reason = %out.reason, entry, "decision"
        ),
    }
}
