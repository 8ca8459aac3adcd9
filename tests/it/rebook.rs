//! `paysync rebook`: a payment whose every entry was cancelled in ERPNext is booked again only when
//! a person asks, exactly once, by the usual rules, with a new value in ERPNext's duplicate guard
//! (a cancelled entry keeps its value for ever). Driven through the real binary.

use jiff::civil::date;
use paysync::domain::DecisionKind;
use paysync_sim::{CreateFault, ErrorBody, SimPaymentEntry};
use rust_decimal::Decimal;

use crate::helpers::{TestEnv, order, paid_op, paysync_cmd};

const SO: &str = "SAL-ORD-2026-00001";

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

/// Every entry (cancelled ones too) whose reference_no is `uid`.
fn all_entries_of(env: &TestEnv, uid: &str) -> Vec<SimPaymentEntry> {
    env.sim
        .payment_entries()
        .into_iter()
        .filter(|e| e.reference_no.as_deref() == Some(uid))
        .collect()
}

fn live_entries_of(env: &TestEnv, uid: &str) -> Vec<SimPaymentEntry> {
    all_entries_of(env, uid)
        .into_iter()
        .filter(|e| e.docstatus < 2)
        .collect()
}

fn stdout(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn ledger_row(env: &TestEnv, uid: &str) -> paysync::store::LedgerRow {
    let ledger = paysync::store::open(&env.settings().store.url)
        .await
        .unwrap();
    ledger
        .rows("main", &[uid.to_string()])
        .await
        .unwrap()
        .remove(uid)
        .expect("a ledger row")
}

/// An order of 1000 with one paid payment p1 of 400, booked and then cancelled in ERPNext.
async fn booked_then_cancelled(guard: bool) -> (TestEnv, SimPaymentEntry) {
    let env = TestEnv::start().await;
    if guard {
        assert_eq!(paysync_cmd(&env, &["erp-setup"]).status.code(), Some(0));
    }
    env.sim.add_customer("Cliente Demo");
    env.sim.add_sales_order(order(SO, "Cliente Demo", "1000"));
    env.sim
        .add_operation(paid_op("p1", SO, 400, at("2026-10-05T15:00:00Z")));
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    let first = live_entries_of(&env, "p1").remove(0);
    env.sim.cancel_payment_entry(&first.name);
    (env, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_payment_is_booked_again_only_when_asked() {
    a_cancelled_payment_is_booked_again_only_when_asked_case(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_payment_is_booked_again_only_when_asked_with_the_guard() {
    a_cancelled_payment_is_booked_again_only_when_asked_case(true).await;
}

async fn a_cancelled_payment_is_booked_again_only_when_asked_case(guard: bool) {
    let (env, first) = booked_then_cancelled(guard).await;
    // On its own paysync leaves a cancelled entry cancelled.
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::AlreadyLoaded), 1, "{s}");
    assert!(live_entries_of(&env, "p1").is_empty());

    let out = paysync_cmd(&env, &["rebook", "p1"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&first.name),
        "names the cancelled entry: {text}"
    );
    let live = live_entries_of(&env, "p1");
    assert_eq!(live.len(), 1, "{live:?}");
    let second = &live[0];
    assert_eq!(second.docstatus, 1);
    // No submitted entry references the order any more: it is the order's initial payment.
    assert_eq!(second.references.len(), 1, "{second:?}");
    assert_eq!(second.references[0].reference_name, SO);
    assert_eq!(second.references[0].allocated_amount, Decimal::from(400));
    assert_eq!(
        env.sim.sales_order(SO).unwrap().advance_paid,
        Decimal::from(400)
    );
    let expected_guard = if guard { Some("p1#2") } else { None };
    assert_eq!(second.paysync_operation.as_deref(), expected_guard);
    assert!(text.contains(&second.name), "{text}");
    let row = ledger_row(&env, "p1").await;
    assert_eq!(row.decision, DecisionKind::BookedInitial);
    assert_eq!(row.erp_entry.as_deref(), Some(second.name.as_str()));

    // Asked again while the new entry stands: refused, nothing created.
    let again = paysync_cmd(&env, &["rebook", "p1"]);
    let text = stdout(&again);
    assert_eq!(again.status.code(), Some(1), "{text}");
    assert!(
        text.contains("still booked") && text.contains(&second.name),
        "{text}"
    );
    // A normal run sees it booked.
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::AlreadyLoaded), 1, "{s}");
    assert_eq!(all_entries_of(&env, "p1").len(), 2);

    // Cancelled once more and re-booked: the next guard value.
    env.sim.cancel_payment_entry(&second.name);
    let third = paysync_cmd(&env, &["rebook", "p1"]);
    assert_eq!(third.status.code(), Some(0), "{}", stdout(&third));
    let live = live_entries_of(&env, "p1");
    assert_eq!(live.len(), 1);
    let expected_guard = if guard { Some("p1#3") } else { None };
    assert_eq!(live[0].paysync_operation.as_deref(), expected_guard);
    assert_eq!(all_entries_of(&env, "p1").len(), 3);
}

/// Initial or additional is what ERPNext says now: when another payment became the order's
/// initial one after the cancellation, the re-booked payment is additional (unallocated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebooking_is_additional_when_another_entry_now_references_the_order() {
    let (env, _first) = booked_then_cancelled(true).await;
    env.sim
        .add_operation(paid_op("p2", SO, 300, at("2026-10-06T15:00:00Z")));
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(
        s.get(DecisionKind::BookedInitial),
        1,
        "p2 is initial now: {s}"
    );
    let out = paysync_cmd(&env, &["rebook", "p1"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("booked_additional"), "{text}");
    let p1 = live_entries_of(&env, "p1");
    assert_eq!(p1.len(), 1);
    assert!(p1[0].references.is_empty(), "unallocated: {:?}", p1[0]);
    assert_eq!(p1[0].party, "Cliente Demo");
    assert_eq!(p1[0].unallocated_amount, Decimal::from(400));
    let p2 = live_entries_of(&env, "p2");
    assert_eq!(p2[0].references[0].allocated_amount, Decimal::from(300));
}

/// A dry run says what it would create and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_rebooking_creates_and_records_nothing() {
    let (env, first) = booked_then_cancelled(true).await;
    let out = paysync_cmd(&env, &["rebook", "p1", "--dry-run"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("would create") && text.contains("p1#2"),
        "{text}"
    );
    assert!(text.contains(r#""reference_no":"p1""#), "the body: {text}");
    assert!(live_entries_of(&env, "p1").is_empty());
    let row = ledger_row(&env, "p1").await;
    assert_eq!(row.decision, DecisionKind::BookedInitial);
    assert_eq!(row.erp_entry.as_deref(), Some(first.name.as_str()));
    assert_eq!(row.guard_value, None);
}

/// Refusals say why and touch nothing: an operation that is not paid, one that does not exist,
/// one whose entry was never cancelled, an account that is not configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebooking_is_refused_unless_the_payment_is_paid_and_every_entry_cancelled() {
    let env = TestEnv::start().await;
    env.sim.add_customer("Cliente Demo");
    env.sim.add_sales_order(order(SO, "Cliente Demo", "1000"));
    let mut refunded = paid_op("r1", SO, 400, at("2026-10-05T15:00:00Z"));
    refunded.status = 602;
    env.sim.add_operation(refunded);
    env.sim
        .add_operation(paid_op("p1", SO, 400, at("2026-10-06T15:00:00Z")));
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    let before = env.sim.payment_entries().len();

    let out = paysync_cmd(&env, &["rebook", "r1"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("not paid") && text.contains("602"), "{text}");

    let out = paysync_cmd(&env, &["rebook", "p1"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("still booked") && text.contains("submitted"),
        "{text}"
    );

    let out = paysync_cmd(&env, &["rebook", "nope"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("nope"), "{text}");

    let out = paysync_cmd(&env, &["rebook", "p1", "--account", "other"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));

    assert_eq!(env.sim.payment_entries().len(), before, "nothing created");
    assert_eq!(
        ledger_row(&env, "p1").await.decision,
        DecisionKind::BookedInitial
    );
}

/// A re-booking interrupted before its entry is created (ERPNext down) stays requested in the
/// ledger; the next ordinary run finishes it, with the same guard value, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rebooking_is_finished_by_the_next_run() {
    let (env, _first) = booked_then_cancelled(true).await;
    env.sim.fail_creates(
        "p1",
        vec![
            CreateFault::ServerError {
                status: 503,
                body: ErrorBody::Html,
            };
            40
        ],
    );
    let out = paysync_cmd(&env, &["rebook", "p1"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("not re-booked") && text.contains("503"),
        "{text}"
    );
    assert!(live_entries_of(&env, "p1").is_empty());
    let row = ledger_row(&env, "p1").await;
    assert_eq!(row.decision, DecisionKind::Error, "{row:?}");
    assert_eq!(row.guard_value.as_deref(), Some("p1#2"));

    env.sim.clear_create_faults("p1");
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    let live = live_entries_of(&env, "p1");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].paysync_operation.as_deref(), Some("p1#2"));
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::AlreadyLoaded), 1, "{s}");
    assert_eq!(live_entries_of(&env, "p1").len(), 1);
}

/// Two people (or a person and a script) re-book the same payment at once, against a slow ERPNext:
/// one entry, whatever the timing — the order's claim serialises them, and with the guard ERPNext
/// itself refuses the second entry carrying the same new value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rebookings_at_once_create_one_entry() {
    two_rebookings_at_once_create_one_entry_case(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rebookings_at_once_create_one_entry_with_the_guard() {
    two_rebookings_at_once_create_one_entry_case(true).await;
}

async fn two_rebookings_at_once_create_one_entry_case(guard: bool) {
    let (env, _first) = booked_then_cancelled(guard).await;
    env.sim.set_faults(paysync_sim::Faults {
        erp_write_latency: std::time::Duration::from_millis(1500),
        ..Default::default()
    });
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_paysync"))
            .arg("--config")
            .arg(&env.config_path)
            .args(["rebook", "p1"])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let live = live_entries_of(&env, "p1");
    assert_eq!(
        live.len(),
        1,
        "one entry: {live:?}\n{}\n{}",
        stdout(&a),
        stdout(&b)
    );
    // One of them booked it; the other saw it booked (before or after its own check).
    let booked = [&a, &b]
        .iter()
        .filter(|o| stdout(o).contains("re-booked p1 as"))
        .count();
    assert_eq!(booked, 1, "{}\n{}", stdout(&a), stdout(&b));
    let other = [&a, &b]
        .into_iter()
        .find(|o| !stdout(o).contains("re-booked p1 as"))
        .unwrap();
    let text = stdout(other);
    assert!(
        text.contains(&live[0].name)
            && (text.contains("meanwhile") || text.contains("still booked")),
        "the other names the entry: {text}"
    );
    let row = ledger_row(&env, "p1").await;
    assert_eq!(row.erp_entry.as_deref(), Some(live[0].name.as_str()));
    assert!(row.decision.is_booked(), "{row:?}");
}
