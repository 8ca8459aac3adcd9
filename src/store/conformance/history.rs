//! The decision history on every backend (run by `on_every_backend!` in `conformance.rs`):
//! appended with each record, one batch's as its records one by one, a repeat counted on the
//! last entry instead of added.

use std::sync::Arc;

use super::{at, rec};
use crate::domain::DecisionKind as K;
use crate::store::{Ledger, RunTrigger};

pub(super) async fn the_history_keeps_every_decision_and_counts_repeats(l: Arc<dyn Ledger>) {
    let mut r = rec("h1", K::Error, None);
    r.reason = "ERPNext 503".into();
    r.seen_at = at(100);
    l.record(&r).await.unwrap();
    // The same failure on the next poll: counted, not added.
    r.trigger = RunTrigger::Poll;
    r.seen_at = at(200);
    l.record(&r).await.unwrap();
    r.seen_at = at(300);
    l.record(&r).await.unwrap();
    // Another reason: a new entry.
    r.reason = "ERPNext 502".into();
    r.seen_at = at(400);
    l.record(&r).await.unwrap();
    // Booked by a webhook, then seen again by polls (the row keeps `booked_initial`; the
    // history keeps what each run decided).
    let mut b = rec("h1", K::BookedInitial, Some("ACC-PAY-2026-00001"));
    b.trigger = RunTrigger::Webhook;
    b.seen_at = at(500);
    // In a batch with another operation's decision.
    let mut other = rec("h2", K::OrderMissing, None);
    other.seen_at = at(500);
    l.record_many(&[other.clone(), b.clone()]).await.unwrap();
    let mut again = rec("h1", K::AlreadyLoaded, Some("ACC-PAY-2026-00001"));
    again.trigger = RunTrigger::Poll;
    for s in [600, 700] {
        again.seen_at = at(s);
        l.record_many(std::slice::from_ref(&again)).await.unwrap();
    }

    let h = l.history("main", "h1").await.unwrap();
    let seen: Vec<_> = h
        .iter()
        .map(|e| {
            (
                e.trigger,
                e.decision,
                e.reason.as_str(),
                e.repeats,
                e.decided_at.as_second(),
                e.last_at.as_second(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (RunTrigger::Sync, K::Error, "ERPNext 503", 1, 100, 100),
            (RunTrigger::Poll, K::Error, "ERPNext 503", 2, 200, 300),
            (RunTrigger::Poll, K::Error, "ERPNext 502", 1, 400, 400),
            (RunTrigger::Webhook, K::BookedInitial, "r", 1, 500, 500),
            (RunTrigger::Poll, K::AlreadyLoaded, "r", 2, 600, 700),
        ]
    );
    assert_eq!(h[3].erp_entry.as_deref(), Some("ACC-PAY-2026-00001"));
    assert_eq!(h[3].sales_order.as_deref(), Some("SAL-ORD-2026-00001"));
    assert_eq!(h[3].amount, r.amount, "exact");
    let row = &l.rows("main", &["h1".into()]).await.unwrap()["h1"];
    assert_eq!(
        row.decision,
        K::BookedInitial,
        "the row itself is unchanged"
    );
    let h2 = l.history("main", "h2").await.unwrap();
    assert_eq!(h2.len(), 1);
    assert_eq!(h2[0].decision, K::OrderMissing);
    assert!(l.history("main", "never").await.unwrap().is_empty());
    assert!(
        l.history("other", "h1").await.unwrap().is_empty(),
        "per account"
    );
}
