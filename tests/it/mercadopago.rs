//! Mercado Pago and MercadoLibre payments through the same engine as Mobbex: the sample's oracle
//! run on the Mercado Pago side, polls, orders found by the MercadoLibre order id, faults.
//! OAuth rotation: `mercadopago/oauth.rs`; webhooks and notifications: `mercadopago/hooks.rs`.

mod hooks;
mod oauth;

use std::collections::HashMap;

use jiff::civil::{Date, date};
use jiff::{SignedDuration, Timestamp};
use paysync::app::{App, created_window};
use paysync::domain::DecisionKind;
use paysync::pipeline::RunOptions;
use paysync::source::{Window, WindowField};
use paysync::summary::Summary;
use paysync_sim::fixtures::{MP_MODE_OF_PAYMENT, MP_PAID_TO};
use paysync_sim::sample::{MpExpected, SampleSpec, load_mercadopago, populate};
use paysync_sim::{Faults, SimMpPayment, SimOptions, Simulator};
use rust_decimal::Decimal;

use crate::helpers::{TODAY, TestEnv, expected_kind, order};

/// The Mercado Pago account of a [`TestEnv::start_mercadopago`] environment.
pub(crate) const MP: usize = 1;

pub(crate) fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub(crate) fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// `paysync sync --since --until` on the Mercado Pago account.
pub(crate) async fn sync_mp(app: &App, since: Date, until: Date) -> Summary {
    let window = created_window(&app.settings.daemon.timezone, since, until);
    run_window(app, window).await
}

pub(crate) async fn run_window(app: &App, window: Window) -> Summary {
    let opts = RunOptions {
        collect_booked: true,
        ..RunOptions::default()
    };
    match app
        .engine
        .sync_window(&app.accounts[MP], window, &opts)
        .await
    {
        Ok(s) => s,
        Err((s, e)) => panic!("sync failed: {e} (after {s})"),
    }
}

/// A sample month on the Mercado Pago side (the Mobbex sample's operations as payments, with
/// the same expected outcomes).
fn sample(sim: &Simulator, operations: usize, seed: u64) -> Vec<MpExpected> {
    let spec = SampleSpec {
        operations,
        start: ts("2026-10-01T12:00:00Z"),
        span: SignedDuration::from_hours(24 * 28),
        company: "Mi Empresa SA".into(),
        seed,
        ..SampleSpec::default()
    };
    let expected = populate(sim, &spec);
    load_mercadopago(sim, &expected, 90_000_000_001)
}

/// ERPNext holds, for every booked payment, exactly one submitted Mercado Pago entry for its
/// amount, and none for the others; nothing else new since `before`.
pub(crate) fn assert_mp_books_exactly(sim: &Simulator, expected: &[MpExpected], before: &[String]) {
    let amounts: HashMap<String, Decimal> = sim
        .mp_payments()
        .into_iter()
        .map(|p| (p.id.to_string(), p.transaction_amount))
        .collect();
    let mut by_ref: HashMap<String, Vec<paysync_sim::SimPaymentEntry>> = HashMap::new();
    for e in sim.payment_entries() {
        if !before.contains(&e.name) {
            by_ref
                .entry(e.reference_no.clone().unwrap_or_default())
                .or_default()
                .push(e);
        }
    }
    let mut booked = 0;
    for exp in expected {
        let id = exp.id.to_string();
        let entries = by_ref.get(&id).map(Vec::as_slice).unwrap_or_default();
        if !exp.outcome.is_booked() {
            assert!(
                entries.is_empty(),
                "{id} ({:?}) must not be booked",
                exp.outcome
            );
            continue;
        }
        booked += 1;
        let [e] = entries else {
            panic!("{id} must be booked exactly once: {entries:?}")
        };
        assert_eq!(e.docstatus, 1);
        assert_eq!(e.mode_of_payment.as_deref(), Some(MP_MODE_OF_PAYMENT));
        assert_eq!(e.paid_to, MP_PAID_TO);
        assert_eq!(e.paid_amount, amounts[&id], "{id}");
        let allocated = e.references.first().map(|r| r.allocated_amount);
        match &exp.outcome {
            paysync_sim::sample::ExpectedOutcome::BookedInitial {
                allocated: a,
                order,
                ..
            } => {
                assert_eq!(
                    allocated,
                    Some(*a).filter(|a| !a.is_zero()),
                    "{id} allocated"
                );
                if let Some(r) = e.references.first() {
                    assert_eq!(&r.reference_name, order);
                }
            }
            _ => assert_eq!(
                allocated, None,
                "{id}: an additional payment is unallocated"
            ),
        }
    }
    let new: usize = by_ref.values().map(Vec::len).sum();
    assert_eq!(new, booked, "entries beyond the expected ones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_mercadopago_payments_books_exactly_what_the_oracle_says() {
    let env = TestEnv::start_mercadopago(SimOptions::default(), false, "", None).await;
    let expected = sample(&env.sim, 200, 11);
    assert!(expected.len() > 150, "{}", expected.len());
    let before = env.sim.entry_names();
    let app = env.app().await;
    let summary = sync_mp(&app, date(2026, 10, 1), date(2026, 10, 31)).await;
    assert_eq!(summary.errors(), 0, "{summary}");

    let ids: Vec<String> = expected.iter().map(|e| e.id.to_string()).collect();
    let rows = app.ledger.rows("mp", &ids).await.unwrap();
    for e in &expected {
        let row = &rows[&e.id.to_string()];
        assert_eq!(
            row.decision,
            expected_kind(&e.outcome),
            "{}: {}",
            e.id,
            row.reason
        );
    }
    for k in [
        DecisionKind::BookedInitial,
        DecisionKind::BookedAdditional,
        DecisionKind::Rejected,
        DecisionKind::Pending,
        DecisionKind::Refunded,
        DecisionKind::OrderMissing,
        DecisionKind::AlreadyLoaded,
    ] {
        assert!(summary.get(k) > 0, "the sample lacks {k}: {summary}");
    }
    assert_mp_books_exactly(&env.sim, &expected, &before);

    // Once more: nothing new.
    let again = sync_mp(&app, date(2026, 10, 1), date(2026, 10, 31)).await;
    assert_eq!(
        again.get(DecisionKind::BookedInitial) + again.get(DecisionKind::BookedAdditional),
        0,
        "{again}"
    );
    assert_mp_books_exactly(&env.sim, &expected, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_rate_limits_and_server_errors_it_still_books_exactly_once() {
    let env = TestEnv::start_mercadopago(SimOptions::default(), false, "", None).await;
    let expected = sample(&env.sim, 120, 5);
    let before = env.sim.entry_names();
    env.sim.set_faults(Faults {
        mp_429_rate: 0.2,
        mp_429_no_retry_after_rate: 0.5,
        mp_5xx_rate: 0.15,
        mp_drop_connection_rate: 0.05,
        ..Faults::default()
    });
    let app = env.app().await;
    // Unlucky pages fail the run; a later run goes on (as the daemon's next poll would).
    for _ in 0..10 {
        let window = created_window(
            &app.settings.daemon.timezone,
            date(2026, 10, 1),
            date(2026, 10, 31),
        );
        let opts = RunOptions::default();
        if app
            .engine
            .sync_window(&app.accounts[MP], window, &opts)
            .await
            .is_ok()
        {
            break;
        }
    }
    env.sim.set_faults(Faults::default());
    let summary = sync_mp(&app, date(2026, 10, 1), date(2026, 10, 31)).await;
    assert_eq!(summary.errors(), 0, "{summary}");
    let stats = env.sim.stats();
    assert!(
        stats
            .faults_injected
            .keys()
            .any(|k| k.starts_with("mp 429")),
        "{:?}",
        stats.faults_injected
    );
    assert_mp_books_exactly(&env.sim, &expected, &before);
}

#[tokio::test]
async fn a_poll_books_a_payment_approved_days_after_it_was_created() {
    let env = TestEnv::start_mercadopago(SimOptions::default(), false, "", None).await;
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00001", "Cliente Uno", "1500"));
    let created = ts("2026-11-02T15:00:00Z");
    let mut p = SimMpPayment::approved(70001, d("1500"), created);
    p.external_reference = Some("SAL-ORD-2026-00001".into());
    p.status = "pending".into();
    p.status_detail = "pending_waiting_transfer".into();
    p.approved = None;
    env.sim.add_mp_payment(p);
    let app = env.app().await;
    let first = sync_mp(&app, date(2026, 11, 1), date(2026, 11, 5)).await;
    assert_eq!(first.get(DecisionKind::Pending), 1, "{first}");

    // Paid on the 20th: a poll of what was updated since then books it; a sync of its
    // creation days would too, but the poll is what catches it in the daemon.
    let paid_at = ts("2026-11-20T10:00:00Z");
    env.sim.update_mp_payment(70001, |p| {
        p.status = "approved".into();
        p.status_detail = "accredited".into();
        p.approved = Some(paid_at);
        p.updated = paid_at;
    });
    let poll = Window {
        field: WindowField::Updated,
        from: ts("2026-11-19T00:00:00Z"),
        to: ts("2026-11-21T00:00:00Z"),
    };
    let s = run_window(&app, poll).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    let e = env.sim.payment_entries();
    let e = e
        .iter()
        .find(|e| e.reference_no.as_deref() == Some("70001"))
        .unwrap();
    assert_eq!(e.references[0].reference_name, "SAL-ORD-2026-00001");
    assert_eq!(e.posting_date, TODAY);
}

/// An order found by its MercadoLibre order id in a custom field: its first payment allocated
/// to it, the second unallocated on the customer's account, whatever order they are listed in.
#[tokio::test]
async fn payments_find_their_order_by_the_mercadolibre_order_id_in_a_field() {
    let env = TestEnv::start_mercadopago(
        SimOptions::default(),
        false,
        "order_source = \"order_id\"\norder_field = \"custom_ml_order\"",
        None,
    )
    .await;
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00042", "Cliente ML", "3000"));
    env.sim
        .set_sales_order_field("SAL-ORD-2026-00042", "custom_ml_order", "2000000123");
    let mk = |id: u64, amount: &str, created: &str| {
        let mut p = SimMpPayment::approved(id, d(amount), ts(created));
        p.ml_order_id = Some(2_000_000_123);
        p.external_reference = None;
        p
    };
    // The later payment has the smaller id (listed first by id): created order decides.
    env.sim
        .add_mp_payment(mk(80002, "1000", "2026-11-03T10:00:00Z"));
    env.sim
        .add_mp_payment(mk(80001, "2000", "2026-11-03T09:00:00Z"));
    // Another ML order nobody holds.
    let mut stray = mk(80003, "10", "2026-11-03T11:00:00Z");
    stray.ml_order_id = Some(2_000_000_999);
    env.sim.add_mp_payment(stray);
    let app = env.app().await;
    let s = sync_mp(&app, date(2026, 11, 1), date(2026, 11, 5)).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    assert_eq!(s.get(DecisionKind::BookedAdditional), 1, "{s}");
    assert_eq!(s.get(DecisionKind::OrderMissing), 1, "{s}");
    let entries = env.sim.payment_entries();
    let by = |r: &str| {
        entries
            .iter()
            .find(|e| e.reference_no.as_deref() == Some(r))
            .unwrap()
    };
    assert_eq!(
        by("80001").references[0].reference_name,
        "SAL-ORD-2026-00042"
    );
    assert_eq!(by("80001").references[0].allocated_amount, d("2000"));
    assert_eq!(by("80001").party, "Cliente ML");
    assert!(by("80002").references.is_empty());
    assert_eq!(by("80002").party, "Cliente ML");
    let rows = app.ledger.rows("mp", &["80003".to_string()]).await.unwrap();
    assert!(
        rows["80003"]
            .reason
            .contains("no Sales Order with custom_ml_order \"2000000999\""),
        "{}",
        rows["80003"].reason
    );
}

/// `po_no` held by two customers' orders (ERPNext allows it, recording 30e): nothing is booked
/// and the reason names both; held by an amendment and its cancelled original: the amendment.
#[tokio::test]
async fn a_po_no_two_live_orders_hold_books_nothing_and_an_amendment_wins() {
    let env = TestEnv::start_mercadopago(
        SimOptions::default(),
        false,
        "order_field = \"po_no\"",
        None,
    )
    .await;
    for (name, customer) in [
        ("SAL-ORD-2026-00010", "Cliente A"),
        ("SAL-ORD-2026-00011", "Cliente B"),
    ] {
        env.sim.add_sales_order(order(name, customer, "100"));
        env.sim.set_sales_order_field(name, "po_no", "WEB-7");
    }
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00020", "Cliente C", "100"));
    env.sim
        .set_sales_order_field("SAL-ORD-2026-00020", "po_no", "WEB-8");
    env.sim.cancel_sales_order("SAL-ORD-2026-00020");
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00020-1", "Cliente C", "100"));
    env.sim
        .set_sales_order_field("SAL-ORD-2026-00020-1", "po_no", "web-8");
    for (id, reference) in [(81001, "WEB-7"), (81002, "WEB-8")] {
        let mut p = SimMpPayment::approved(id, d("100"), ts("2026-11-03T10:00:00Z"));
        p.external_reference = Some(reference.into());
        env.sim.add_mp_payment(p);
    }
    let app = env.app().await;
    let s = sync_mp(&app, date(2026, 11, 1), date(2026, 11, 5)).await;
    assert_eq!(s.get(DecisionKind::OrderNotPayable), 1, "{s}");
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    let rows = app.ledger.rows("mp", &["81001".to_string()]).await.unwrap();
    let reason = &rows["81001"].reason;
    assert!(
        reason.contains(
            "2 Sales Orders hold po_no \"WEB-7\" (SAL-ORD-2026-00010, SAL-ORD-2026-00011)"
        ),
        "{reason}"
    );
    let entries = env.sim.payment_entries();
    let e = entries
        .iter()
        .find(|e| e.reference_no.as_deref() == Some("81002"))
        .unwrap();
    assert_eq!(
        e.references[0].reference_name, "SAL-ORD-2026-00020-1",
        "case and the amendment"
    );
}

/// A search that refuses to page past 500 rows (lower than the 10,000 paysync assumes, which is
/// not documented): a day of 700 payments is read again in shorter slices, every payment once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_ceiling_lower_than_assumed_splits_the_day() {
    let opts = SimOptions {
        mp_max_rows: 500,
        ..SimOptions::default()
    };
    let env = TestEnv::start_mercadopago(opts, false, "", None).await;
    let start = ts("2026-11-03T03:00:00Z");
    for i in 0..700u64 {
        let created = start + SignedDuration::from_secs(i as i64 * 90);
        let mut p = SimMpPayment::approved(60_000 + i, d("10"), created);
        p.external_reference = Some(format!("NOPE-{i}"));
        env.sim.add_mp_payment(p);
    }
    let app = env.app().await;
    let s = sync_mp(&app, date(2026, 11, 3), date(2026, 11, 3)).await;
    assert_eq!(s.get(DecisionKind::OrderMissing), 700, "{s}");
    assert_eq!(s.errors(), 0, "{s}");
    assert!(
        env.sim
            .stats()
            .by_endpoint
            .get("GET /v1/payments/search")
            .copied()
            .unwrap_or(0)
            > 14,
        "read in more than one slice: {:?}",
        env.sim.stats().by_endpoint
    );
}

/// With `fees_account`, a MercadoLibre sale is booked at what reached the seller: the listed fee
/// and the charges `fee_details` does not list (shipping) are deductions, the customer credited
/// the gross; the simulated ERPNext takes both entries with a zero difference.
#[tokio::test]
async fn fees_are_deducted_so_the_bank_gets_what_arrived() {
    let env = TestEnv::start_mercadopago(
        SimOptions::default(),
        false,
        "fees_account = \"Comisiones - MESA\"\nfees_cost_center = \"Main - MESA\"",
        None,
    )
    .await;
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00050", "Cliente Fees", "260.20"));
    let mk = |id: u64, amount: &str, fee: &str, shipping: &str, minute: i64| {
        let mut p = SimMpPayment::approved(
            id,
            d(amount),
            ts("2026-11-03T10:00:00Z") + SignedDuration::from_mins(minute),
        );
        p.external_reference = Some("SAL-ORD-2026-00050".into());
        p.fees = vec![paysync_sim::SimMpFee {
            kind: "mercadopago_fee".into(),
            amount: d(fee),
            payer: "collector".into(),
        }];
        p.unlisted_charges = d(shipping);
        p
    };
    env.sim
        .add_mp_payment(mk(82001, "260.20", "44.23", "23.45", 0));
    env.sim.add_mp_payment(mk(82002, "100", "4.99", "0", 5));
    let app = env.app().await;
    let s = sync_mp(&app, date(2026, 11, 1), date(2026, 11, 5)).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    assert_eq!(s.get(DecisionKind::BookedAdditional), 1, "{s}");
    let entries = env.sim.payment_entries();
    let by = |r: &str| {
        entries
            .iter()
            .find(|e| e.reference_no.as_deref() == Some(r))
            .unwrap()
    };
    let first = by("82001");
    assert_eq!(
        first.paid_amount,
        d("192.52"),
        "the net that reached the seller"
    );
    assert_eq!(
        first.references[0].allocated_amount,
        d("260.20"),
        "the order paid in full"
    );
    let rows: Vec<(Option<String>, Decimal)> = first
        .deductions
        .iter()
        .map(|r| (r.description.clone(), r.amount))
        .collect();
    assert_eq!(
        rows.iter().map(|r| r.1).sum::<Decimal>(),
        d("67.68"),
        "{rows:?}"
    );
    assert_eq!(first.deductions.len(), 2, "{rows:?}");
    assert!(
        first
            .deductions
            .iter()
            .all(|r| r.account == "Comisiones - MESA" && r.cost_center == "Main - MESA")
    );
    assert_eq!(first.unallocated_amount, Decimal::ZERO);
    let second = by("82002");
    assert_eq!(second.paid_amount, d("95.01"));
    assert!(second.references.is_empty());
    assert_eq!(
        second.unallocated_amount,
        d("100"),
        "the customer credited the gross"
    );
    assert_eq!(
        env.sim
            .sales_order("SAL-ORD-2026-00050")
            .unwrap()
            .advance_paid,
        d("260.20")
    );
}
