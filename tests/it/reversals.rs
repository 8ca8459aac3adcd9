//! Refunds of booked payments reversed (`reverse_refunds = true`): one submitted "Pay" entry per
//! refund, to the same customer from the same `paid_to`, unallocated, `reference_no`
//! `<id>:refund:<n>` — exactly once across runs, after a crash between the create and the
//! ledger's record, and never for what paysync did not book; off, only the warning. Against the
//! simulator (recordings 27: Pay entries as a real ERPNext 15 takes them).

use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use paysync::domain::DecisionKind;
use paysync_sim::{SimMpPayment, SimOptions, SimPaymentEntry};
use rust_decimal::Decimal;

use crate::daemon::{live_op, seed_order};
use crate::helpers::{TestEnv, order};
use crate::mercadopago::sync_mp;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn today() -> jiff::civil::Date {
    jiff::Zoned::now().date()
}

/// The "Pay" entries in the simulator, by reference_no.
fn pays(env: &TestEnv) -> Vec<SimPaymentEntry> {
    env.sim
        .payment_entries()
        .into_iter()
        .filter(|e| e.payment_type == "Pay")
        .collect()
}

/// An entry typed by hand in ERPNext (or left by a crashed run): its name.
fn by_hand(env: &TestEnv, reference_no: &str, payment_type: &str, amount: Decimal) -> String {
    crate::helpers::entry_by_hand(env, reference_no, payment_type, "Cliente Demo", amount)
}

async fn booked_mobbex(reverse: bool) -> TestEnv {
    let extra = if reverse {
        "reverse_refunds = true"
    } else {
        ""
    };
    let env = TestEnv::start_with(SimOptions::default(), extra).await;
    seed_order(&env, "SAL-ORD-2026-00001");
    env.sim.add_operation(live_op(
        "op-1",
        "SAL-ORD-2026-00001",
        200,
        300,
        SignedDuration::from_mins(10),
    ));
    env.sim.add_operation(live_op(
        "op-2",
        "SAL-ORD-2026-00001",
        200,
        200,
        SignedDuration::from_mins(5),
    ));
    let s = env.sync(today(), today(), false).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    assert_eq!(s.get(DecisionKind::BookedAdditional), 1, "{s}");
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mobbex_refund_of_an_initial_payment_is_reversed_once() {
    let env = booked_mobbex(true).await;
    let before: Vec<SimPaymentEntry> = env.sim.payment_entries();
    let order_before = env.sim.sales_order("SAL-ORD-2026-00001").unwrap();
    assert!(env.sim.set_mobbex_status("op-1", 602, Timestamp::now()));
    let s = env.sync(today(), today(), false).await;
    assert_eq!(s.errors(), 0, "{s}");
    let pay = pays(&env);
    assert_eq!(pay.len(), 1, "{pay:?}");
    let p = &pay[0];
    assert_eq!(p.docstatus, 1, "submitted");
    assert_eq!(p.reference_no.as_deref(), Some("op-1:refund:1"));
    assert_eq!(p.party_type, "Customer");
    assert_eq!(p.party, "Cliente Demo", "the booked entry's customer");
    assert_eq!(p.paid_amount, d("300"));
    assert_eq!(p.received_amount, d("300"));
    assert_eq!(p.mode_of_payment.as_deref(), Some("Mobbex"));
    let initial = before
        .iter()
        .find(|e| e.reference_no.as_deref() == Some("op-1"))
        .unwrap();
    assert_eq!(
        p.paid_from, initial.paid_to,
        "from the account it was booked to"
    );
    assert_eq!(p.paid_to, initial.paid_from, "to the customer's receivable");
    assert!(p.references.is_empty(), "unallocated: {:?}", p.references);
    // Nothing else changed: the other payment's entry, the order's allocation.
    let after = env.sim.payment_entries();
    for e in &before {
        assert!(after.contains(e), "{} changed", e.name);
    }
    let order_after = env.sim.sales_order("SAL-ORD-2026-00001").unwrap();
    assert_eq!(order_after.advance_paid, order_before.advance_paid);
    let app = env.app().await;
    let row = &app.ledger.rows("main", &["op-1".into()]).await.unwrap()["op-1"];
    assert!(row.reason.contains(&p.name), "{}", row.reason);

    // Again, and again by a second refund status: nothing more.
    for status in [602, 601] {
        env.sim.set_mobbex_status("op-1", status, Timestamp::now());
        let s = env.sync(today(), today(), false).await;
        assert_eq!(s.errors(), 0, "{s}");
        assert_eq!(pays(&env).len(), 1, "never twice");
    }

    // `explain` names the reversal.
    let out = crate::helpers::paysync_cmd(&env, &["explain", "op-1", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reversals = v["reversals"].as_array().unwrap();
    assert_eq!(reversals.len(), 1, "{v}");
    assert_eq!(reversals[0]["erp_entry"], p.name.as_str());
    assert_eq!(reversals[0]["reference_no"], "op-1:refund:1");
    assert_eq!(reversals[0]["amount"], "300");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default_a_refund_only_warns_and_a_partial_mobbex_refund_is_never_guessed() {
    let env = booked_mobbex(false).await;
    env.sim.set_mobbex_status("op-1", 601, Timestamp::now());
    env.sync(today(), today(), false).await;
    assert!(pays(&env).is_empty(), "off: no reversal");
    let app = env.app().await;
    let row = &app.ledger.rows("main", &["op-1".into()]).await.unwrap()["op-1"];
    assert!(
        row.reason.contains("reverse that entry by hand"),
        "{}",
        row.reason
    );

    let env = booked_mobbex(true).await;
    env.sim.set_mobbex_status("op-2", 605, Timestamp::now());
    env.sync(today(), today(), false).await;
    assert!(pays(&env).is_empty(), "an unstated amount is not guessed");
    let app = env.app().await;
    let row = &app.ledger.rows("main", &["op-2".into()]).await.unwrap()["op-2"];
    let entry = row.erp_entry.clone().unwrap();
    assert!(
        row.reason.contains("does not state") && row.reason.contains(&entry),
        "the warning names the entry: {}",
        row.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_paysync_did_not_book_is_never_reversed() {
    let env = TestEnv::start_with(SimOptions::default(), "reverse_refunds = true").await;
    seed_order(&env, "SAL-ORD-2026-00001");
    env.sim.add_operation(live_op(
        "op-h",
        "SAL-ORD-2026-00001",
        200,
        300,
        SignedDuration::from_mins(10),
    ));
    // Typed by hand before paysync ran: found, recorded as already loaded.
    by_hand(&env, "op-h", "Receive", d("300"));
    let s = env.sync(today(), today(), false).await;
    assert_eq!(s.get(DecisionKind::AlreadyLoaded), 1, "{s}");
    env.sim.set_mobbex_status("op-h", 601, Timestamp::now());
    env.sync(today(), today(), false).await;
    assert!(
        pays(&env).is_empty(),
        "someone else's entry is theirs to reverse"
    );
}

/// A run that created the reversal and crashed before the ledger recorded it: the next run
/// finds the entry by its reference_no and records it; nothing is created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_between_create_and_record_the_reversal_is_found_not_made_again() {
    let env = booked_mobbex(true).await;
    env.sim.set_mobbex_status("op-1", 601, Timestamp::now());
    // What the crashed run left: the Pay entry in ERPNext, nothing in the ledger.
    let app = env.app().await;
    let booked = app.ledger.rows("main", &["op-1".into()]).await.unwrap()["op-1"].clone();
    let left = by_hand(&env, "op-1:refund:1", "Pay", d("300"));
    let s = env.sync(today(), today(), false).await;
    assert_eq!(s.errors(), 0, "{s}");
    let pay = pays(&env);
    assert_eq!(pay.len(), 1, "{pay:?}");
    let rev = app
        .ledger
        .reversals_of("main", &["op-1".into()])
        .await
        .unwrap();
    assert_eq!(rev["op-1"][0].erp_entry, left, "recorded as the one found");
    assert!(booked.erp_entry.is_some());
}

/// Mercado Pago partial refunds: each refund reversed by its own entry, for its amount, once,
/// while the payment stays approved; the full refund that follows reverses only what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mercado_pago_partial_refunds_are_reversed_each_once() {
    let env =
        TestEnv::start_mercadopago(SimOptions::default(), false, "reverse_refunds = true", None)
            .await;
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00001", "Cliente ML", "1000"));
    let mut p = SimMpPayment::approved(
        7001,
        d("1000"),
        Timestamp::now() - SignedDuration::from_mins(5),
    );
    p.external_reference = Some("SAL-ORD-2026-00001".into());
    env.sim.add_mp_payment(p);
    let app = env.app().await;
    let s = sync_mp(&app, today(), today()).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");

    let first = env
        .sim
        .refund_mp_payment(7001, Some(d("100.10")), Timestamp::now())
        .unwrap();
    let s = sync_mp(&app, today(), today()).await;
    assert_eq!(s.errors(), 0, "{s}");
    let pay = pays(&env);
    assert_eq!(pay.len(), 1, "{pay:?}");
    assert_eq!(pay[0].paid_amount, d("100.10"));
    assert_eq!(
        pay[0].reference_no.as_deref(),
        Some(format!("7001:refund:{}", first.id).as_str())
    );
    assert_eq!(pay[0].party, "Cliente ML");

    sync_mp(&app, today(), today()).await;
    assert_eq!(pays(&env).len(), 1, "repeated: nothing new");

    env.sim
        .refund_mp_payment(7001, None, Timestamp::now())
        .unwrap();
    let s = sync_mp(&app, today(), today()).await;
    assert_eq!(s.errors(), 0, "{s}");
    let mut amounts: Vec<Decimal> = pays(&env).iter().map(|e| e.paid_amount).collect();
    amounts.sort();
    assert_eq!(amounts, vec![d("100.10"), d("899.90")], "the rest, once");
    let total: Decimal = amounts.iter().sum();
    assert_eq!(total, d("1000"), "never more than was booked");
}
