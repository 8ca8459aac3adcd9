//! Reversing refunds of booked payments (`reverse_refunds = true`): for each refund of an
//! operation paysync booked that has no reversal yet, one submitted "Pay" entry to the same
//! customer from the same `paid_to` account (`domain::reversal` decides which; this module does
//! the I/O).
//!
//! Exactly once, across crashes and processes: each reversal is made under a claim of its own
//! (`reversal:<reference_no>`, waited out like an order's after a takeover), and before creating
//! it the ERP is asked for an entry with its `reference_no` — a run that crashed between the
//! create and the ledger's record left one, which is then recorded, not created again. An
//! answer lost to a timeout quarantines the reversal until the commit horizon, as a booking's.
//! The reversal carries no Sales Order reference, so the order's allocation (and any other
//! payment's) is untouched.

use tracing::warn;

use super::Engine;
use super::outcome::{Verdict, announce};
use super::run::{Examined, RunCtx};
use crate::domain::reversal::{
    BookedByUs, PlannedReversal, ReversalEntry, Reversed, plan_reversals,
};
use crate::store::{LedgerRow, StoredReversal};
use crate::summary::Summary;

/// An operation whose refunds may need reversing: its decision so far and its ledger row.
pub(super) struct Reversible {
    pub e: Examined,
    pub verdict: Verdict,
    pub row: LedgerRow,
}

impl Reversible {
    /// A booking by paysync itself (never an entry found already loaded) with refunds stated.
    pub fn wanted(ctx: &RunCtx, e: &Examined, row: Option<&LedgerRow>) -> bool {
        ctx.policy.reverse_refunds
            && !e.op.refunds.is_empty()
            && row.is_some_and(|r| r.decision.is_booked() && r.erp_entry.is_some())
    }
}

/// Why a reversal is not (known to be) made.
enum NotReversed {
    /// It is made, but the ledger could not record it.
    Unrecorded(String),
    Failed(String),
}

impl NotReversed {
    fn into_reason(self) -> String {
        match self {
            NotReversed::Unrecorded(r) | NotReversed::Failed(r) => r,
        }
    }
}

impl Engine {
    /// Reverse what is due of each operation, then record and announce its decision with what
    /// was reversed (or why not) added to its reason.
    pub(super) async fn reverse_refunds(
        &self,
        ctx: &RunCtx,
        items: Vec<Reversible>,
        summary: &mut Summary,
    ) {
        if items.is_empty() {
            return;
        }
        let uids: Vec<String> = items.iter().map(|r| r.e.op.uid.clone()).collect();
        let done = match self.ledger.reversals_of(&ctx.acc.name, &uids).await {
            Ok(d) => d,
            Err(e) => {
                for r in items {
                    let v = Verdict::error(format!(
                        "refunded after it was booked; its reversals could not be read from the ledger ({e}); re-examined later"
                    ));
                    self.finish(ctx, &r.e, v, summary).await;
                }
                return;
            }
        };
        for Reversible { e, verdict, row } in items {
            let stored = done.get(&e.op.uid).map(Vec::as_slice).unwrap_or(&[]);
            let reversed: Vec<Reversed<'_>> = stored
                .iter()
                .map(|r| Reversed {
                    key: &r.refund_key,
                    amount: r.amount,
                })
                .collect();
            let entry = row.erp_entry.clone().unwrap_or_default();
            let booked = BookedByUs {
                entry: &entry,
                amount: row.amount.unwrap_or(e.op.total),
            };
            let plan = plan_reversals(&e.op, Some(&booked), &reversed);
            let mut notes: Vec<String> = stored
                .iter()
                .map(|r| {
                    format!(
                        "refund {} of {} reversed by Payment Entry {}",
                        r.refund_key, r.amount, r.erp_entry
                    )
                })
                .collect();
            for w in &plan.warnings {
                warn!(account = %ctx.acc.name, uid = %e.op.uid, "{w}");
                notes.push(w.clone());
            }
            let mut failed = None;
            for p in &plan.create {
                match self.reverse_one(ctx, &e, &entry, p).await {
                    Ok(name) => notes.push(format!(
                        "refund {} of {} reversed by Payment Entry {name}",
                        p.key, p.amount
                    )),
                    Err(why) => {
                        self.mark_settleable(&ctx.acc.name, &e.op.uid);
                        failed = Some(format!(
                            "refund {} of {} not reversed yet: {why}",
                            p.key, p.amount
                        ));
                        break;
                    }
                }
            }
            let v = match failed {
                Some(why) => Verdict::error(format!("{}; {why}", verdict.reason)),
                None if notes.is_empty() => verdict,
                None => Verdict {
                    reason: format!("{}; {}", verdict.reason, notes.join("; ")),
                    ..verdict
                },
            };
            if ctx.records() {
                self.finish(ctx, &e, v, summary).await;
            } else {
                announce(ctx, &e, v, summary);
            }
        }
    }

    /// Create (or find, after a crash) the reversal `p` of `e`, whose booking is `booked_entry`;
    /// its name. A dry run creates nothing and names none.
    async fn reverse_one(
        &self,
        ctx: &RunCtx,
        e: &Examined,
        booked_entry: &str,
        p: &PlannedReversal,
    ) -> Result<String, String> {
        let Some(live) = &ctx.live else {
            return Ok("(dry run: would be created)".into());
        };
        let key = format!("reversal:{}", p.reference_no);
        live.claims.take(&key).await?;
        let result = self.reverse_claimed(ctx, e, booked_entry, p, &key).await;
        match &result {
            // A reversal made that the ledger could not record: the claim lapses instead of
            // being let go, so whoever takes it next waits out the horizon and asks the ERP.
            Err(NotReversed::Unrecorded(_)) => live.claims.abandon(std::slice::from_ref(&key)),
            _ => live.claims.release(std::slice::from_ref(&key)).await,
        }
        result.map_err(NotReversed::into_reason)
    }

    async fn reverse_claimed(
        &self,
        ctx: &RunCtx,
        e: &Examined,
        booked_entry: &str,
        p: &PlannedReversal,
        key: &str,
    ) -> Result<String, NotReversed> {
        use NotReversed::Failed;
        let live = ctx.live.as_ref().expect("checked by the caller");
        if let Some(wait) = live.claims.takeover_wait(key) {
            // Another process held this reversal and stopped answering: its create may still
            // commit.
            tokio::time::sleep(wait).await;
        }
        let quarantine_key = (ctx.acc.name.clone(), p.reference_no.clone());
        if let Some(since) = self.quarantine.since(&quarantine_key, self.clock.now())
            && since < self.quarantine.horizon
        {
            return Err(Failed(format!(
                "a reversal sent {}s ago got no answer and ERPNext may still be committing it; not sent again before erp.commit_horizon",
                since.as_secs()
            )));
        }
        let found = self
            .erp
            .entries_by_reference(std::slice::from_ref(&p.reference_no))
            .await
            .map_err(|e| Failed(format!("could not ask ERPNext for it first: {e}")))?;
        if let Some(existing) = found.get(&p.reference_no) {
            self.record_reversal(ctx, e, p, &existing.name).await?;
            return Ok(existing.name.clone());
        }
        let entries = self
            .erp
            .entries_of_operation(&e.op.uid)
            .await
            .map_err(|e| Failed(format!("could not read the booked entry: {e}")))?;
        let Some(booked) = entries.iter().find(|x| x.name == booked_entry) else {
            return Err(Failed(format!(
                "the booked Payment Entry {booked_entry} is not in ERPNext any more"
            )));
        };
        if booked.docstatus == 2 {
            return Err(Failed(format!(
                "the booked Payment Entry {booked_entry} was cancelled in ERPNext: there is nothing to reverse (decide by hand)"
            )));
        }
        let party = booked
            .party
            .clone()
            .ok_or_else(|| Failed(format!("ERPNext did not say whom {booked_entry} credited")))?;
        let entry = ReversalEntry {
            company: ctx.policy.company.clone(),
            party,
            amount: p.amount,
            mode_of_payment: ctx.policy.mode_of_payment.clone(),
            paid_from: ctx.policy.paid_to.clone(),
            reference_no: p.reference_no.clone(),
            posting_date: self.today(),
        };
        match self.erp.create_reversal(&entry).await {
            Ok(created) => {
                self.record_reversal(ctx, e, p, &created.name).await?;
                Ok(created.name)
            }
            Err(err) if err.outcome_unknown() => {
                self.quarantine.insert(quarantine_key, self.clock.now());
                Err(Failed(format!(
                    "no answer to the reversal ({err}); looked up again once erp.commit_horizon has passed"
                )))
            }
            Err(crate::erp::ErpError::Duplicate(_)) => {
                // The guard refused a second one: another process made it.
                let found = self
                    .erp
                    .entries_by_reference(std::slice::from_ref(&p.reference_no))
                    .await
                    .map_err(|e| Failed(format!("refused as a duplicate, then not found: {e}")))?;
                let name = found
                    .get(&p.reference_no)
                    .map(|x| x.name.clone())
                    .ok_or_else(|| Failed("refused as a duplicate, then not found".into()))?;
                self.record_reversal(ctx, e, p, &name).await?;
                Ok(name)
            }
            Err(err) => Err(Failed(err.to_string())),
        }
    }

    async fn record_reversal(
        &self,
        ctx: &RunCtx,
        e: &Examined,
        p: &PlannedReversal,
        name: &str,
    ) -> Result<(), NotReversed> {
        let rec = StoredReversal {
            account: ctx.acc.name.clone(),
            uid: e.op.uid.clone(),
            refund_key: p.key.clone(),
            amount: p.amount,
            erp_entry: name.to_string(),
            created: self.clock.now(),
        };
        self.ledger.record_reversal(&rec).await.map_err(|err| {
            NotReversed::Unrecorded(format!("Payment Entry {name} reverses it but the ledger could not record that ({err}); found again by its reference_no next time"))
        })
    }
}
