//! The write protocol, one ERP answer at a time: what is sent again (and after how long), what is
//! looked up instead, what is quarantined, what the duplicate guard's refusal becomes. Entirely in
//! memory (the write step touches no ledger), on tokio's paused time: the backoffs, `Retry-After`,
//! the 3 s of lookups and the commit horizon pass in no real time.

use std::time::Duration;

use tokio::time::Instant;

use crate::domain::{DecisionKind as K, Operation};
use crate::erp::ErpError;
use crate::pipeline::RunOptions;
use crate::pipeline::fakes::{Answer, Harness, entry_for, op, paid};
use crate::pipeline::outcome::Verdict;
use crate::pipeline::write::Booking;

const A: &str = "SAL-ORD-2026-00001";

fn p1() -> Operation {
    op("p1", A, paid(), "100", 10)
}

/// Send `op`'s initial entry through the write step of a real run, as a group would.
async fn write(h: &Harness, op: &Operation) -> Verdict {
    write_as(h, op, K::BookedInitial, &RunOptions::default()).await
}

async fn write_as(h: &Harness, op: &Operation, kind: K, opts: &RunOptions) -> Verdict {
    let ctx = h.ctx(opts).await;
    let gate = h.engine.enter_gate(Some(A), 0).await;
    let booking = Booking::new(kind, entry_for(op, A));
    h.engine.write(&ctx, &gate, op, booking).await
}

fn timeout() -> ErpError {
    ErpError::Timeout("operation timed out".into())
}

fn rejected(message: &str, about_order: bool) -> ErpError {
    ErpError::Rejected {
        status: 417,
        exc_type: "ValidationError".into(),
        message: message.into(),
        about_order,
    }
}

fn settleable(h: &Harness, uid: &str) -> bool {
    let marks = h.engine.settleable.marks.lock().unwrap();
    marks.contains_key(&("main".to_string(), uid.to_string()))
}

#[tokio::test]
async fn a_dry_run_gets_the_planned_entry_back_and_sends_nothing() {
    let h = Harness::paused(|e| e).await;
    let opts = RunOptions {
        dry_run: true,
        ..Default::default()
    };
    let v = write_as(&h, &p1(), K::BookedAdditional, &opts).await;
    assert_eq!(v.kind, K::BookedAdditional);
    assert_eq!(v.reason, "dry run: not created");
    assert_eq!(v.entry_name, None);
    let planned = v.planned.expect("the planned entry");
    assert_eq!(planned.paid_from, None, "nothing read for a plan");
    assert!(h.erp.created_uids().is_empty());
}

#[tokio::test]
async fn an_additional_payment_leaves_paid_from_to_erpnext() {
    let h = Harness::paused(|e| e).await;
    let v = write_as(&h, &p1(), K::BookedAdditional, &RunOptions::default()).await;
    assert_eq!(v.kind, K::BookedAdditional);
    let sent = h.erp.with(|e| e.creates[0].paid_from.clone());
    assert_eq!(
        sent, None,
        "ERPNext fills in the customer's receivable account"
    );
}

/// Refused before anything was committed (connection refused, 429, Frappe's own 500): sent
/// again after the backoff, or `Retry-After` when longer.
#[tokio::test]
async fn a_create_refused_before_committing_is_sent_again() {
    let h = Harness::paused(|e| e).await;
    h.erp
        .answer("p1", Answer::Fail(ErpError::Connect("refused".into())));
    let retry_after = Some(Duration::from_secs(5));
    h.erp
        .answer("p1", Answer::Fail(ErpError::RateLimited { retry_after }));
    let frappe_500 = ErpError::Server {
        status: 500,
        exc_type: Some("OperationalError".into()),
        message: "Deadlock found".into(),
    };
    h.erp.answer("p1", Answer::Fail(frappe_500));

    let started = Instant::now();
    let v = write(&h, &p1()).await;
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "Retry-After honoured"
    );
    assert_eq!(v.kind, K::BookedInitial, "{}", v.reason);
    assert_eq!(v.reason, "created on attempt 4");
    assert_eq!(v.entry_name.as_deref(), Some("ACC-PAY-2026-00001"));
    assert_eq!(h.erp.created_uids().len(), 4);
    assert_eq!(h.erp.entry_count(), 1);
}

/// Past the retry budget: an `error`, tried once more at the run's end.
#[tokio::test]
async fn a_create_refused_past_the_retry_budget_gives_up_for_now() {
    let h = Harness::paused(|e| e).await;
    for _ in 0..20 {
        let unavailable = ErpError::Server {
            status: 503,
            exc_type: None,
            message: "Service Unavailable".into(),
        };
        h.erp.answer("p1", Answer::Fail(unavailable));
    }
    let v = write(&h, &p1()).await;
    assert_eq!(v.kind, K::Error);
    assert!(v.reason.contains("gave up after"), "{}", v.reason);
    let sent = h.erp.created_uids().len();
    assert!((2..20).contains(&sent), "{sent} creates");
    assert!(settleable(&h, "p1"));
}

/// The answer was lost but the entry committed: found by `reference_no`, never sent twice.
#[tokio::test]
async fn a_lost_answer_is_looked_up_and_the_committed_entry_found() {
    let h = Harness::paused(|e| e).await;
    let proxy_502 = ErpError::Server {
        status: 502,
        exc_type: None,
        message: "Bad Gateway".into(),
    };
    h.erp.answer("p1", Answer::CommitThenFail(proxy_502));
    let v = write(&h, &p1()).await;
    assert_eq!(v.kind, K::BookedInitial);
    assert_eq!(v.reason, "created (answer lost; found by reference_no)");
    assert_eq!(v.entry_name.as_deref(), Some("ACC-PAY-2026-00001"));
    assert_eq!(h.erp.created_uids(), ["p1"]);
}

/// The answer was lost and the entry is not there (yet): not sent again by any trigger until the
/// commit horizon has passed, then sent.
#[tokio::test]
async fn a_lost_answer_not_found_is_quarantined_until_the_commit_horizon() {
    let horizon = Duration::from_secs(60);
    let h = Harness::paused(|e| e.with_commit_horizon(horizon)).await;
    h.erp.answer("p1", Answer::Fail(timeout()));
    let started = Instant::now();
    let v = write(&h, &p1()).await;
    assert_eq!(v.kind, K::Error);
    assert!(
        v.reason.contains("not found by reference_no"),
        "{}",
        v.reason
    );
    assert_eq!(h.erp.with(|e| e.lookups), 3, "3 looks");
    assert!(started.elapsed() >= Duration::from_secs(3), "over 3 s");
    assert!(settleable(&h, "p1"));

    let v = write(&h, &p1()).await;
    assert_eq!(v.kind, K::Error);
    assert!(
        v.reason.contains("may still be committing it"),
        "{}",
        v.reason
    );
    assert_eq!(h.erp.created_uids().len(), 1, "not sent again");

    tokio::time::sleep(horizon).await;
    let v = write(&h, &p1()).await;
    assert_eq!(v.kind, K::BookedInitial, "{}", v.reason);
    assert_eq!(h.erp.created_uids().len(), 2);
}

#[tokio::test]
async fn a_lost_answer_whose_lookup_fails_is_an_error() {
    let h = Harness::paused(|e| e).await;
    h.erp.answer("p1", Answer::Fail(timeout()));
    h.erp.with(|e| {
        let refused = ErpError::Connect("refused".into());
        e.lookup_errors.push_back(refused)
    });
    let v = write(&h, &p1()).await;
    assert_eq!(v.kind, K::Error);
    assert!(
        v.reason.contains("the lookup by reference_no failed too"),
        "{}",
        v.reason
    );
    assert_eq!(h.erp.created_uids().len(), 1);
}

/// With the duplicate guard an unknown outcome is simply sent again: the ERP's refusal of the
/// second entry names the first, which the operation is recorded as.
#[tokio::test]
async fn with_the_guard_a_lost_answer_is_sent_again_and_the_guard_names_the_entry() {
    let h = Harness::paused(|e| e).await;
    h.erp.with(|e| e.guard = true);
    h.erp.answer("p1", Answer::CommitThenFail(timeout()));
    let v = write(&h, &p1()).await;
    assert_eq!(v.kind, K::AlreadyLoaded, "{}", v.reason);
    assert!(v.reason.contains("duplicate guard"), "{}", v.reason);
    assert_eq!(v.entry_name.as_deref(), Some("ACC-PAY-2026-00001"));
    assert_eq!(h.erp.created_uids().len(), 2);
    assert_eq!(h.erp.entry_count(), 1);
}

/// With the guard, a resend refused by validation (ERPNext checking against the entry the lost
/// attempt committed) is looked up: it is that entry.
#[tokio::test]
async fn with_the_guard_a_refused_resend_after_a_lost_answer_is_looked_up() {
    let h = Harness::paused(|e| e).await;
    h.erp.with(|e| e.guard = true);
    h.erp.answer("p1", Answer::CommitThenFail(timeout()));
    let full = rejected(
        "Sales Order SAL-ORD-2026-00001 has already been fully paid.",
        true,
    );
    h.erp.answer("p1", Answer::Fail(full));
    let v = write(&h, &p1()).await;
    assert_eq!(v.kind, K::BookedInitial, "{}", v.reason);
    assert!(v.reason.contains("the resend was refused"), "{}", v.reason);
    assert_eq!(v.entry_name.as_deref(), Some("ACC-PAY-2026-00001"));
}

/// The guard holds the operation for an entry cancelled in the ERP: already loaded, never
/// booked again on paysync's own (`paysync rebook` does it deliberately).
#[tokio::test]
async fn the_guard_held_by_a_cancelled_entry_is_already_loaded_without_an_entry() {
    let h = Harness::paused(|e| e).await;
    h.erp.with(|e| e.guard = true);
    let name = h.erp.commit(entry_for(&p1(), A));
    h.erp.with(|e| e.entries[0].docstatus = 2);
    let v = write(&h, &p1()).await;
    assert_eq!(v.kind, K::AlreadyLoaded);
    assert!(v.reason.contains(&format!(
        "Payment Entry {name} holds this operation and was cancelled"
    )));
    assert!(v.reason.contains("paysync rebook p1"), "{}", v.reason);
    assert_eq!(v.entry_name, None);
}

/// The guard refused but no entry holds the value (yet): an error, tried again later.
#[tokio::test]
async fn a_guard_refusal_without_a_holder_is_an_error_tried_again() {
    let h = Harness::paused(|e| e).await;
    let duplicate = ErpError::Duplicate("Duplicate entry 'p1'".into());
    h.erp.answer("p1", Answer::Fail(duplicate));
    let v = write(&h, &p1()).await;
    assert_eq!(v.kind, K::Error);
    assert!(
        v.reason.contains("no entry holds the operation yet"),
        "{}",
        v.reason
    );
    assert!(settleable(&h, "p1"));
}

/// A business refusal is not sent again; it is `order_not_payable` when the ERP says it is about
/// the order (the order may change), else an `error`, with the ERP's own words.
#[tokio::test]
async fn a_business_refusal_is_final_for_the_run_and_classified_by_the_adapter() {
    let h = Harness::paused(|e| e).await;
    let over = "Row #1: Allocated Amount cannot be greater than outstanding amount.";
    h.erp.answer("p1", Answer::Fail(rejected(over, true)));
    let v = write(&h, &p1()).await;
    assert_eq!(v.kind, K::OrderNotPayable);
    assert_eq!(v.reason, format!("ERPNext 417 ValidationError: {over}"));

    let p2 = op("p2", A, paid(), "100", 20);
    let other = "Difference Amount must be zero";
    h.erp.answer("p2", Answer::Fail(rejected(other, false)));
    let v = write(&h, &p2).await;
    assert_eq!(v.kind, K::Error);
    assert_eq!(v.reason, format!("ERPNext 417 ValidationError: {other}"));

    let p3 = op("p3", A, paid(), "100", 30);
    let denied = ErpError::Unauthorized {
        status: 401,
        message: "AuthenticationError".into(),
    };
    h.erp.answer("p3", Answer::Fail(denied));
    let v = write(&h, &p3).await;
    assert_eq!(v.kind, K::Error);
    assert!(v.reason.contains("refused the credentials"), "{}", v.reason);
    assert_eq!(h.erp.created_uids(), ["p1", "p2", "p3"], "none sent twice");
}
