//! Oldest first per order, whatever fails (invariant 3): within a batch, across batches of a run
//! (the order chain), and across runs (the ledger, the pull-in).

use crate::domain::DecisionKind as K;
use crate::erp::ErpError;
use crate::pipeline::RunOptions;
use crate::pipeline::fakes::{Answer, Harness, op, paid};
use crate::pipeline::run::RunState;
use crate::source::Fetched;
use crate::summary::Summary;

const A: &str = "SAL-ORD-2026-00001";
const B: &str = "SAL-ORD-2026-00002";

/// A refusal that is not about the order: `error`, unresolved, holds later payments back.
fn refused() -> ErpError {
    ErpError::Rejected {
        status: 417,
        exc_type: "ValidationError".into(),
        message: "Mode of Payment is mandatory".into(),
        about_order: false,
    }
}

fn line<'a>(s: &'a Summary, uid: &str) -> &'a crate::summary::UnresolvedLine {
    s.unresolved
        .iter()
        .find(|u| u.uid == uid)
        .unwrap_or_else(|| panic!("{uid} is not unresolved: {s}"))
}

/// Listed newest first (and mixed with another order), an order's payments are still booked
/// oldest first: the oldest is the initial payment, allocated to the order.
#[tokio::test]
async fn an_orders_payments_are_booked_oldest_first_whatever_order_they_come_in() {
    let h = Harness::new().await;
    h.erp.add_order(A, "1000");
    h.erp.add_order(B, "1000");
    let s = h
        .run(vec![
            op("p3", A, paid(), "100", 30),
            op("q1", B, paid(), "100", 5),
            op("p1", A, paid(), "100", 10),
            op("p2", A, paid(), "100", 20),
        ])
        .await;
    assert_eq!(s.get(K::BookedInitial), 2, "{s}");
    assert_eq!(s.get(K::BookedAdditional), 2, "{s}");
    let of_a: Vec<String> = (h.erp.created_uids().into_iter())
        .filter(|u| u.starts_with('p'))
        .collect();
    assert_eq!(of_a, ["p1", "p2", "p3"]);
    assert_eq!(h.row("p1").await.decision, K::BookedInitial);
    assert_eq!(h.row("p3").await.decision, K::BookedAdditional);
    let allocated = |uid: &str| {
        h.erp.with(|e| {
            let c = e.creates.iter().find(|c| c.reference_no == uid).unwrap();
            c.allocation.as_ref().map(|a| a.sales_order.clone())
        })
    };
    assert_eq!(allocated("p1").as_deref(), Some(A));
    assert_eq!(
        allocated("p2"),
        None,
        "an additional payment is unallocated"
    );
}

/// A payment in a later batch of the run waits while an earlier payment of its order is
/// unresolved; another order's payment in the same batch is not held back.
#[tokio::test]
async fn a_later_batch_waits_behind_an_earlier_failure_of_the_same_order_only() {
    let h = Harness::new().await;
    h.erp.add_order(A, "1000");
    h.erp.add_order(B, "1000");
    h.erp.answer("p1", Answer::Fail(refused()));
    let ctx = h.ctx(&RunOptions::default()).await;
    let mut state = RunState::default();
    let first = vec![ctx.item(Fetched::Op(op("p1", A, paid(), "100", 10)))];
    let mut s = h.engine.process_batch(&ctx, &mut state, first, None).await;
    let second = vec![
        ctx.item(Fetched::Op(op("p2", A, paid(), "100", 20))),
        ctx.item(Fetched::Op(op("q1", B, paid(), "100", 30))),
    ];
    s.merge(h.engine.process_batch(&ctx, &mut state, second, None).await);
    state.drain(&mut s).await;

    assert_eq!(line(&s, "p1").kind, K::Error, "{s}");
    let waiting = line(&s, "p2");
    assert_eq!(waiting.kind, K::Waiting, "{s}");
    assert!(
        waiting.reason.contains("earlier payment p1"),
        "{}",
        waiting.reason
    );
    assert_eq!(h.row("q1").await.decision, K::BookedInitial);
    assert_eq!(
        h.erp.created_uids().iter().filter(|u| *u == "p2").count(),
        0
    );
}

/// In a dry run the ledger records nothing, so only the order chain tells the next batch's group
/// that the order now has a (planned) entry: the later payment is planned as additional.
#[tokio::test]
async fn in_a_dry_run_the_order_chain_hands_the_planned_initial_payment_to_the_next_batch() {
    let h = Harness::new().await;
    h.erp.add_order(A, "1000");
    let opts = RunOptions {
        dry_run: true,
        collect_booked: true,
        ..Default::default()
    };
    let ctx = h.ctx(&opts).await;
    let mut state = RunState::default();
    let first = vec![ctx.item(Fetched::Op(op("p1", A, paid(), "100", 10)))];
    let mut s = h.engine.process_batch(&ctx, &mut state, first, None).await;
    let second = vec![ctx.item(Fetched::Op(op("p2", A, paid(), "100", 20)))];
    s.merge(h.engine.process_batch(&ctx, &mut state, second, None).await);
    state.drain(&mut s).await;

    let planned: Vec<(String, K)> = s.booked.iter().map(|b| (b.uid.clone(), b.kind)).collect();
    assert_eq!(
        planned,
        [
            ("p1".into(), K::BookedInitial),
            ("p2".into(), K::BookedAdditional)
        ]
    );
    assert!(h.erp.created_uids().is_empty(), "a dry run creates nothing");
    let rows = h.ledger.rows("main", &["p1".into(), "p2".into()]).await;
    assert!(rows.unwrap().is_empty(), "a dry run records nothing");
}

/// A trigger for a later payment first retries the order's earlier payment that an earlier run
/// left unresolved (re-read from the source): the earlier one becomes the initial payment.
#[tokio::test]
async fn an_earlier_failure_is_pulled_in_and_booked_before_the_later_payment() {
    let h = Harness::new().await;
    h.erp.add_order(A, "1000");
    let p1 = op("p1", A, paid(), "100", 10);
    h.source.add(p1.clone());
    h.erp.answer("p1", Answer::Fail(refused()));
    let s = h.run(vec![p1]).await;
    assert_eq!(s.get(K::Error), 1, "{s}");

    let s = h.run(vec![op("p2", A, paid(), "100", 20)]).await;
    assert_eq!(s.get(K::BookedInitial), 1, "{s}");
    assert_eq!(s.get(K::BookedAdditional), 1, "{s}");
    assert_eq!(h.row("p1").await.decision, K::BookedInitial);
    assert_eq!(h.row("p2").await.decision, K::BookedAdditional);
    assert_eq!(h.erp.created_uids(), ["p1", "p1", "p2"]);
}

/// The ledger holds later payments back across runs even when the earlier payment cannot be
/// re-read now.
#[tokio::test]
async fn a_later_payment_waits_for_an_earlier_one_the_ledger_knows_unresolved() {
    let h = Harness::new().await;
    h.erp.add_order(A, "1000");
    h.erp.answer("p1", Answer::Fail(refused()));
    let s = h.run(vec![op("p1", A, paid(), "100", 10)]).await;
    assert_eq!(s.get(K::Error), 1, "{s}");

    // The source no longer answers for p1: it is not pulled in, and p2 still waits for it.
    let s = h.run(vec![op("p2", A, paid(), "100", 20)]).await;
    assert_eq!(line(&s, "p2").kind, K::Waiting, "{s}");
    assert_eq!(h.row("p2").await.decision, K::Waiting);
    assert_eq!(h.erp.created_uids(), ["p1"]);
}
