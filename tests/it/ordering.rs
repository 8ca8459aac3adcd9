//! Oldest first, whatever fails: an order's first paid payment stays its initial one when its
//! create fails (refused past the retry budget, or an answer lost and not found yet), across runs,
//! triggers and processes; the later payments wait and are booked after it.

use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::date;
use paysync::domain::DecisionKind;
use paysync_sim::{CreateFault, SimOperation, SimPaymentEntry};
use rust_decimal::Decimal;

use crate::helpers::{TestEnv, order, paid_op, sync_with};

const SO: &str = "SAL-ORD-2026-00001";

fn op(uid: &str, total: i64, created: &str) -> SimOperation {
    paid_op(uid, SO, total, created.parse().unwrap())
}

/// One order of 1000 with three paid payments on three days (400, 300, 300).
fn three_payments(env: &TestEnv) {
    env.sim.add_customer("Cliente Demo");
    env.sim.add_sales_order(order(SO, "Cliente Demo", "1000"));
    env.sim.add_operation(op("p1", 400, "2026-10-05T15:00:00Z"));
    env.sim.add_operation(op("p2", 300, "2026-10-06T15:00:00Z"));
    env.sim.add_operation(op("p3", 300, "2026-10-07T15:00:00Z"));
}

fn entry(env: &TestEnv, uid: &str) -> SimPaymentEntry {
    let found: Vec<_> = env
        .sim
        .payment_entries()
        .into_iter()
        .filter(|e| e.reference_no.as_deref() == Some(uid))
        .collect();
    assert_eq!(found.len(), 1, "{uid}: {found:?}");
    found.into_iter().next().unwrap()
}

/// p1 is the initial payment (allocated 400 to the order), p2 and p3 additional.
fn assert_first_is_initial(env: &TestEnv) {
    let p1 = entry(env, "p1");
    assert_eq!(p1.references.len(), 1, "p1 is initial: {p1:?}");
    assert_eq!(p1.references[0].reference_name, SO);
    assert_eq!(p1.references[0].allocated_amount, Decimal::from(400));
    for uid in ["p2", "p3"] {
        let e = entry(env, uid);
        assert!(e.references.is_empty(), "{uid} is additional: {e:?}");
        assert_eq!(e.paid_from, "Deudores - MESA");
    }
    assert_eq!(env.sim.payment_entries().len(), 3);
    assert_eq!(
        env.sim.sales_order(SO).unwrap().advance_paid,
        Decimal::from(400)
    );
}

fn refused(times: usize) -> Vec<CreateFault> {
    (0..times)
        .map(|_| CreateFault::TooManyRequests {
            retry_after: Some(1),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_payment_refused_past_the_retry_budget_holds_the_later_ones_back() {
    let env = TestEnv::start().await;
    three_payments(&env);
    // More 429s than one run can wait through: its retry budget (2 s, Retry-After 1 s: three
    // attempts) twice, once in the run and once more at its end.
    env.sim.fail_creates("p1", refused(6));
    let app = env.app().await;
    let first = sync_with(&app, date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(first.get(DecisionKind::Error), 1, "{first}");
    assert_eq!(first.get(DecisionKind::Waiting), 2, "{first}");
    assert_eq!(first.unresolved(), 3);
    assert!(
        env.sim.payment_entries().is_empty(),
        "nothing booked before p1: {:?}",
        env.sim.payment_entries()
    );
    let waiting: Vec<_> = first
        .unresolved
        .iter()
        .filter(|u| u.kind == DecisionKind::Waiting)
        .collect();
    assert!(
        waiting.iter().all(|u| u.reason.contains("p1")),
        "the reason names the earlier payment: {waiting:?}"
    );
    let rows = app
        .engine
        .ledger()
        .rows("main", &["p2".into(), "p3".into()])
        .await
        .unwrap();
    assert_eq!(rows["p2"].decision, DecisionKind::Waiting);

    // A restart (a new process on the same ledger), then the next run: all three, in order.
    drop(app);
    let second = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(second.unresolved(), 0, "{second}");
    assert_first_is_initial(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_only_lists_the_later_payments_books_the_earlier_one_first() {
    let env = TestEnv::start().await;
    three_payments(&env);
    env.sim.fail_creates("p1", refused(6));
    let first = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(first.get(DecisionKind::Waiting), 2, "{first}");
    // A window that starts after p1 was created: p1 is re-read from Mobbex and decided first.
    let second = env.sync(date(2026, 10, 6), date(2026, 10, 31), false).await;
    assert_eq!(second.unresolved(), 0, "{second}");
    assert_eq!(second.get(DecisionKind::BookedInitial), 1, "{second}");
    assert_eq!(second.get(DecisionKind::BookedAdditional), 2, "{second}");
    assert_first_is_initial(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_lost_and_not_found_yet_holds_the_later_payments_back() {
    let env = TestEnv::start().await;
    three_payments(&env);
    // ERPNext answers 504 at once and commits p1 3.5 s later, after the client stopped looking
    // (3 looks over 3 s) but before erp.commit_horizon (4 s in the tests) has passed.
    env.sim.fail_creates(
        "p1",
        vec![CreateFault::CommitLater {
            after: Duration::from_millis(3500),
        }],
    );
    let app = env.app().await;
    let run = sync_with(&app, date(2026, 10, 1), date(2026, 10, 31), false).await;
    // In the run p1 was `error` and p2, p3 `waiting`; at its end, once the horizon had passed, p1
    // was found by reference_no (never sent again) and the others booked after it.
    assert_eq!(run.unresolved(), 0, "{run}");
    assert_eq!(run.get(DecisionKind::AlreadyLoaded), 1, "{run}");
    assert_eq!(run.get(DecisionKind::BookedAdditional), 2, "{run}");
    assert_eq!(run.examined, 3, "each operation counted once: {run}");
    assert_eq!(env.sim.stats().erp_writes, 3, "p1 was posted once");
    assert_first_is_initial(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_error_before_the_commit_is_sent_again_only_after_the_commit_horizon() {
    use paysync_sim::ErrorBody;
    let env = TestEnv::start().await;
    three_payments(&env);
    // A proxy's 502 page: the create never reached ERPNext, but paysync cannot know that.
    env.sim.fail_creates(
        "p1",
        vec![CreateFault::ServerError {
            status: 502,
            body: ErrorBody::Html,
        }],
    );
    let started = std::time::Instant::now();
    let run = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(run.unresolved(), 0, "{run}");
    assert_eq!(run.get(DecisionKind::BookedInitial), 1, "{run}");
    assert_eq!(run.get(DecisionKind::BookedAdditional), 2, "{run}");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "p1 was sent again only once erp.commit_horizon had passed"
    );
    assert_eq!(env.sim.stats().erp_writes, 4, "p1 twice, p2 and p3 once");
    assert_first_is_initial(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_the_same_order_of_payments() {
    let env = TestEnv::start().await;
    three_payments(&env);
    env.sim.fail_creates("p1", refused(6));
    let app = env.app().await;
    // A failed real run leaves p1 `error` and p2, p3 `waiting` in the ledger; a dry run (which
    // records nothing) must still plan p1 initial and the others additional.
    sync_with(&app, date(2026, 10, 1), date(2026, 10, 31), false).await;
    let dry = sync_with(&app, date(2026, 10, 1), date(2026, 10, 31), true).await;
    assert_eq!(dry.get(DecisionKind::BookedInitial), 1, "{dry}");
    assert_eq!(dry.get(DecisionKind::BookedAdditional), 2, "{dry}");
    let initial: Vec<_> = dry
        .booked
        .iter()
        .filter(|b| b.kind == DecisionKind::BookedInitial)
        .map(|b| b.uid.as_str())
        .collect();
    assert_eq!(initial, ["p1"]);
    assert!(env.sim.payment_entries().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_rejected_and_refunded_earlier_attempts_never_hold_a_payment_back() {
    let env = TestEnv::start().await;
    env.sim.add_customer("Cliente Demo");
    env.sim.add_sales_order(order(SO, "Cliente Demo", "1000"));
    for (uid, status, created) in [
        ("a-pending", 2, "2026-10-02T15:00:00Z"),
        ("a-rejected", 410, "2026-10-03T15:00:00Z"),
        ("a-refunded", 602, "2026-10-04T15:00:00Z"),
    ] {
        let mut o = op(uid, 100, created);
        o.status = status;
        env.sim.add_operation(o);
    }
    env.sim
        .add_operation(op("paid", 500, "2026-10-05T15:00:00Z"));
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::Waiting), 0, "{s}");
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    let e = entry(&env, "paid");
    assert_eq!(e.references[0].allocated_amount, Decimal::from(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_for_the_second_payment_while_the_first_fails_in_the_inbox() {
    use crate::daemon::{Daemon, NEVER, TOKEN, hook};
    let env = TestEnv::start().await;
    env.sim.add_customer("Cliente Demo");
    env.sim.add_sales_order(order(SO, "Cliente Demo", "1000"));
    let now = Timestamp::now();
    let mut p1 = op("p1", 400, "2026-10-05T15:00:00Z");
    p1.created = now - jiff::SignedDuration::from_mins(10);
    let mut p2 = op("p2", 300, "2026-10-05T15:00:00Z");
    p2.created = now - jiff::SignedDuration::from_mins(5);
    env.sim.add_operation(p1);
    env.sim.add_operation(p2);
    // p1's create is refused until the test lets it through.
    env.sim.fail_creates("p1", refused(10_000));
    let d = Daemon::start(&env, NEVER).await;
    assert_eq!(
        d.webhook("main", Some(TOKEN), hook("p1", "200", 400.0))
            .await
            .status()
            .as_u16(),
        200
    );
    d.wait_for("p1's trigger to fail once", |p| p.triggers_retried >= 1)
        .await;
    assert_eq!(
        d.webhook("main", Some(TOKEN), hook("p2", "200", 300.0))
            .await
            .status()
            .as_u16(),
        200
    );
    // p2's trigger re-tries p1 first (refused again): p2 waits, nothing is booked.
    d.wait_for("p2's trigger to fail once", |p| p.triggers_retried >= 2)
        .await;
    let rows = d
        .ctx
        .ledger
        .rows("main", &["p1".into(), "p2".into()])
        .await
        .unwrap();
    assert_eq!(rows["p1"].decision, DecisionKind::Error, "{:?}", rows["p1"]);
    assert_eq!(
        rows["p2"].decision,
        DecisionKind::Waiting,
        "{:?}",
        rows["p2"]
    );
    assert!(env.sim.payment_entries().is_empty());
    // One more failed attempt, so that every trigger attempt from now on starts with both p1 and
    // p2 recorded as unresolved (an attempt that started before p2 was recorded could not know).
    d.wait_for("a third failed attempt", |p| p.triggers_retried >= 3)
        .await;
    // ERPNext recovers: the next trigger to run (p1's retry or p2's) books p1 as the initial
    // payment and p2 right after it, in the same go — the order's unresolved payments come along.
    env.sim.clear_create_faults("p1");
    let progress = d.wait_for("a trigger done", |p| p.triggers_done >= 1).await;
    let rows = d
        .ctx
        .ledger
        .rows("main", &["p1".into(), "p2".into()])
        .await
        .unwrap();
    assert_eq!(
        env.sim.payment_entries().len(),
        2,
        "both booked by the first trigger that got through: {progress:?} {rows:#?}"
    );
    d.wait_for("both triggers done", |p| p.triggers_done >= 2)
        .await;
    d.stop().await;
    let e1 = entry(&env, "p1");
    assert_eq!(e1.references.len(), 1, "{e1:?}");
    assert_eq!(e1.references[0].allocated_amount, Decimal::from(400));
    let e2 = entry(&env, "p2");
    assert!(e2.references.is_empty(), "{e2:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_sync_while_the_daemon_retries_the_first_payment_keeps_the_order() {
    use crate::daemon::{Daemon, NEVER, TOKEN, hook};
    let env = TestEnv::start().await;
    three_payments(&env);
    env.sim.fail_creates("p1", refused(10_000));
    let d = Daemon::start(&env, NEVER).await;
    d.webhook("main", Some(TOKEN), hook("p1", "200", 400.0))
        .await;
    d.wait_for("p1's trigger to fail once", |p| p.triggers_retried >= 1)
        .await;
    // A manual sync (another engine on the same ledger) over the days of p2 and p3 only: it
    // re-tries p1 first, which is still refused, so p2 and p3 wait.
    let s = env.sync(date(2026, 10, 6), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::Waiting), 2, "{s}");
    assert!(env.sim.payment_entries().is_empty());
    // ERPNext recovers; whoever gets there first, the order's payments are booked in order.
    env.sim.clear_create_faults("p1");
    let s = env.sync(date(2026, 10, 6), date(2026, 10, 31), false).await;
    assert_eq!(s.unresolved(), 0, "{s}");
    d.wait_for("p1's trigger done", |p| p.triggers_done >= 1)
        .await;
    d.stop().await;
    assert_first_is_initial(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_1_and_names_what_waits_and_why() {
    let env = TestEnv::start().await;
    three_payments(&env);
    env.sim.fail_creates("p1", refused(6));
    let cfg = env.config_path.to_str().unwrap().to_string();
    let run = |args: &'static [&'static str]| {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_paysync"))
                .arg("--config")
                .arg(&cfg)
                .args(args)
                .env("RUST_LOG", "error")
                .output()
                .unwrap()
        })
    };
    let out = run(&["sync", "--since", "2026-10-01", "--until", "2026-10-31"])
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("Unresolved (run again to finish them):"),
        "{stdout}"
    );
    for uid in ["p2", "p3"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!("{uid} waiting: earlier payment p1"))),
            "{uid} named with its reason: {stdout}"
        );
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with("p1 error:")),
        "{stdout}"
    );
    let status = run(&["status"]).await.unwrap();
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        text.contains("waiting for an earlier payment of their order"),
        "{text}"
    );
    // The next run finishes the order, in order, and exits 0.
    let out = run(&["sync", "--since", "2026-10-01", "--until", "2026-10-31"])
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Unresolved"));
    let today = Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("America/Argentina/Buenos_Aires").unwrap())
        .date();
    assert_first_is_initial(&env);
    assert_eq!(entry(&env, "p1").posting_date, today);
}
