//! The classification tables (RELIABILITY.md, "How answers are classified") over the wire: every
//! row, with every body shape, answered once by the simulator in place of the real answer; the
//! client must retry exactly the transient ones and give up at once on the others.

use jiff::civil::date;
use paysync::app::{App, created_window};
use paysync_sim::{ErrorBody, NextAnswer, SimApi};

use crate::helpers::{TODAY, TestEnv, order, paid_op};

const LISTING: &str = "GET /p/entity/operations";

fn one_paid_operation(env: &TestEnv) {
    env.sim.add_customer("Cliente Demo");
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00001", "Cliente Demo", "1000"));
    env.sim.add_operation(paid_op(
        "op-1",
        "SAL-ORD-2026-00001",
        100,
        "2026-10-05T15:00:00Z".parse().unwrap(),
    ));
}

/// A sync of October with a fresh process (no cached ERP answers). `Err` carries the message.
async fn sync(env: &TestEnv) -> Result<paysync::summary::Summary, String> {
    let app = App::build(env.settings()).await.unwrap().with_today(TODAY);
    let window = created_window(
        &app.settings.daemon.timezone,
        date(2026, 10, 1),
        date(2026, 10, 31),
    );
    app.engine
        .sync_window(&app.accounts[0], window, &Default::default())
        .await
        .map_err(|(_, e)| e.to_string())
}

fn requests(env: &TestEnv, endpoint: &str) -> u64 {
    env.sim
        .stats()
        .by_endpoint
        .get(endpoint)
        .copied()
        .unwrap_or(0)
}

/// Every answer that must be retried: 5xx of every body shape, 408, 429 with and without
/// `Retry-After`, a connection dropped mid-answer.
fn transient_answers() -> Vec<NextAnswer> {
    let mut all = Vec::new();
    for status in [500, 502, 503, 504, 520, 408] {
        for body in ErrorBody::ALL {
            all.push(NextAnswer::Status(status, body));
        }
    }
    all.push(NextAnswer::TooManyRequests(Some(1)));
    all.push(NextAnswer::TooManyRequests(None));
    all.push(NextAnswer::Drop);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transient_mobbex_answer_is_retried_whatever_its_body() {
    let env = TestEnv::start().await;
    one_paid_operation(&env);
    // A clean sync reads one page per day of October.
    let before = requests(&env, LISTING);
    sync(&env).await.unwrap();
    let pages = requests(&env, LISTING) - before;
    for answer in transient_answers() {
        env.sim.fail_next(SimApi::Mobbex, vec![answer]);
        let before = requests(&env, LISTING);
        let s = sync(&env)
            .await
            .unwrap_or_else(|e| panic!("{answer:?} must be retried: {e}"));
        assert_eq!(s.unresolved(), 0, "{answer:?}: {s}");
        assert_eq!(
            requests(&env, LISTING) - before,
            pages + 1,
            "{answer:?}: one page failed once and was retried"
        );
    }
    assert_eq!(env.sim.payment_entries().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_and_credential_answers_from_mobbex_are_not_retried() {
    let env = TestEnv::start().await;
    one_paid_operation(&env);
    for (status, want) in [
        (400, "Mobbex:"),
        (401, "credentials refused"),
        (403, "credentials refused"),
        (404, "HTTP 404"),
        (422, "Mobbex:"),
    ] {
        for body in ErrorBody::ALL {
            env.sim
                .fail_next(SimApi::Mobbex, vec![NextAnswer::Status(status, body)]);
            let before = requests(&env, LISTING);
            let e = sync(&env).await.expect_err("the window fails");
            assert!(e.contains(want), "{status} {body:?}: {e}");
            assert_eq!(
                requests(&env, LISTING) - before,
                1,
                "{status} {body:?}: not retried"
            );
        }
    }
    assert!(env.sim.payment_entries().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transient_erpnext_answer_to_a_read_is_retried_whatever_its_body() {
    let env = TestEnv::start().await;
    one_paid_operation(&env);
    for answer in transient_answers() {
        // The first ERPNext read of a fresh process: the mode of payment's account.
        env.sim.fail_next(SimApi::Erpnext, vec![answer]);
        let before = env.sim.stats().erp_reads;
        let s = sync(&env)
            .await
            .unwrap_or_else(|e| panic!("{answer:?} must be retried: {e}"));
        assert_eq!(s.unresolved(), 0, "{answer:?}: {s}");
        assert!(
            env.sim.stats().erp_reads > before,
            "{answer:?}: the read was retried and answered"
        );
    }
    assert_eq!(env.sim.payment_entries().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_answers_from_erpnext_to_a_read_are_not_retried() {
    let env = TestEnv::start().await;
    one_paid_operation(&env);
    for status in [400, 403, 404, 409, 417] {
        for body in ErrorBody::ALL {
            env.sim
                .fail_next(SimApi::Erpnext, vec![NextAnswer::Status(status, body)]);
            let total_before = env.sim.stats().total_requests;
            let e = sync(&env).await.expect_err("the run cannot start");
            assert!(
                e.contains(&format!("HTTP {status}")),
                "{status} {body:?}: {e}"
            );
            // One ERPNext request (refused, not retried) and no Mobbex listing.
            assert_eq!(
                env.sim.stats().total_requests - total_before,
                1,
                "{status} {body:?}: not retried"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_whose_reread_gets_a_json_500_is_retried_not_given_up() {
    use crate::daemon::{Daemon, NEVER, TOKEN, hook};
    let env = TestEnv::start().await;
    one_paid_operation(&env);
    env.sim.fail_next(
        SimApi::Mobbex,
        vec![NextAnswer::Status(500, ErrorBody::Json)],
    );
    let d = Daemon::start(&env, NEVER).await;
    let r = d
        .webhook("main", Some(TOKEN), hook("op-1", "200", 100.0))
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let p = d
        .wait_for("the trigger to be done", |p| p.triggers_done >= 1)
        .await;
    assert_eq!(p.triggers_given_up, 0);
    d.stop().await;
    assert_eq!(env.sim.payment_entries().len(), 1);
    assert_eq!(env.sim.stats().faults_injected["next mobbex 500 json"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_to_a_create_is_handled_by_its_row() {
    use paysync_sim::CreateFault as F;
    use std::time::{Duration, Instant};
    // (the create's first answer, sent again at once?, posts in all)
    let mut rows: Vec<(F, bool, u64)> = Vec::new();
    for body in ErrorBody::ALL {
        // Frappe's own exception body: it raised and rolled back, whatever the status.
        let frappe = body == ErrorBody::Json;
        for status in [500, 502, 504, 520] {
            rows.push((F::ServerError { status, body }, frappe, 2));
        }
        rows.push((F::ServerError { status: 503, body }, true, 2));
    }
    rows.push((
        F::TooManyRequests {
            retry_after: Some(1),
        },
        true,
        2,
    ));
    rows.push((F::TooManyRequests { retry_after: None }, true, 2));
    for body in [ErrorBody::Html, ErrorBody::PlainText, ErrorBody::Empty] {
        // Committed, then a proxy's error: found by reference_no, never posted again.
        rows.push((F::LostAfterCommit { status: 502, body }, true, 1));
        rows.push((F::LostAfterCommit { status: 504, body }, true, 1));
    }
    let results =
        futures::future::join_all(rows.into_iter().map(|(fault, at_once, posts)| async move {
            let env = TestEnv::start().await;
            one_paid_operation(&env);
            env.sim.fail_creates("op-1", vec![fault.clone()]);
            let started = Instant::now();
            let s = sync(&env).await.unwrap();
            let took = started.elapsed();
            let entries = env.sim.payment_entries().len();
            // Decided once (in the run's main pass), or twice (again at its end, after the horizon).
            let ledger = paysync::store::open(&env.settings().store.url)
                .await
                .unwrap();
            let rows = ledger.rows("main", &["op-1".into()]).await.unwrap();
            let row = Row {
                unresolved: s.unresolved(),
                entries,
                writes: env.sim.stats().erp_writes,
                took,
                seen: rows["op-1"].times_seen,
            };
            (fault, at_once, posts, row)
        }))
        .await;
    for (fault, at_once, posts, row) in results {
        assert_eq!(
            (row.unresolved, row.entries),
            (0, 1),
            "{fault:?}: booked once"
        );
        assert_eq!(row.writes, posts, "{fault:?}: posts");
        if at_once {
            assert_eq!(
                row.seen, 1,
                "{fault:?}: sent again at once, in the main pass"
            );
        } else {
            // Unknown outcomes are sent again only once erp.commit_horizon (4 s here) has passed.
            assert_eq!(row.seen, 2, "{fault:?}: decided again at the run's end");
            assert!(
                row.took >= Duration::from_secs(4),
                "{fault:?}: after the horizon ({:?})",
                row.took
            );
        }
    }
}

/// What one row's run did.
struct Row {
    unresolved: u64,
    entries: usize,
    writes: u64,
    took: std::time::Duration,
    seen: i64,
}
