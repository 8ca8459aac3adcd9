//! Exactly once under faults, crashes and changing data: the final ERPNext state must equal the
//! oracle's, with no duplicate and no loss.

use std::time::Duration;

use jiff::civil::date;
use jiff::{SignedDuration, Timestamp};
use paysync_sim::sample::{Expected, ExpectedOutcome, SampleSpec, populate, to_book};
use paysync_sim::{Faults, SimOptions};

use crate::helpers::{TestEnv, assert_books_exactly, assert_exactly_expected, sync_with};

fn spec(operations: usize, seed: u64) -> SampleSpec {
    SampleSpec {
        operations,
        start: "2026-10-01T12:00:00Z".parse().unwrap(),
        span: SignedDuration::from_hours(24 * 28),
        company: "Mi Empresa SA".into(),
        seed,
        ..SampleSpec::default()
    }
}

/// Sync, then rerun until a run ends without errors (operations left retryable by a fault are
/// booked by a later run). Returns the number of runs.
async fn sync_until_clean(env: &TestEnv, max_runs: usize) -> usize {
    let app = env.app().await;
    for run in 1..=max_runs {
        let window = paysync::app::created_window(
            &app.settings.daemon.timezone,
            date(2026, 10, 1),
            date(2026, 10, 31),
        );
        match app
            .engine
            .sync_window(&app.accounts[0], window, &Default::default())
            .await
        {
            Ok(s) if s.unresolved() == 0 => return run,
            _ => {}
        }
    }
    panic!("still errors after {max_runs} runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erpnext_500_429_timeouts_and_lost_answers_end_exactly_once() {
    let opts = SimOptions {
        faults: Faults {
            erp_500_rate: 0.05,
            erp_429_rate: 0.05,
            erp_retry_after_secs: 1,
            erp_lost_response_rate: 0.10,
            erp_timeout_rate: 0.01,
            erp_hang: Duration::from_secs(6), // the test client gives up after 5 s
            erp_write_latency: Duration::from_millis(2),
            ..Default::default()
        },
        seed: 11,
        ..Default::default()
    };
    let env = TestEnv::start_with(opts, "").await;
    let expected = populate(&env.sim, &spec(1500, 3));
    let before = env.sim.entry_names();
    let runs = sync_until_clean(&env, 6).await;
    assert_exactly_expected(&env.sim, &expected, &before);
    let stats = env.sim.stats();
    let booked = to_book(&expected);
    assert!(
        stats.erp_writes > booked,
        "faults were really injected: {stats:?}"
    );
    eprintln!(
        "runs {runs}; writes attempted {} for {booked} entries",
        stats.erp_writes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobbex_5xx_429_and_slow_pages_end_exactly_once() {
    let opts = SimOptions {
        faults: Faults {
            mobbex_5xx_rate: 0.2,
            mobbex_429_rate: 0.1,
            mobbex_latency: Duration::from_millis(20),
            ..Default::default()
        },
        seed: 5,
        ..Default::default()
    };
    let env = TestEnv::start_with(opts, "").await;
    let expected = populate(&env.sim, &spec(300, 9));
    let before = env.sim.entry_names();
    sync_until_clean(&env, 4).await;
    assert_exactly_expected(&env.sim, &expected, &before);
    let by = env.sim.stats().by_endpoint;
    assert!(
        by["GET /p/entity/operations"] > env.sim.stats().mobbex_list_calls,
        "retried pages"
    );
}

/// Operations added and updated between two page reads: the listing shifts, nothing is lost or
/// booked twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_changes_while_it_is_read_loses_nothing() {
    let env = TestEnv::start().await;
    let mut expected = populate(&env.sim, &spec(600, 21));
    let before = env.sim.entry_names();
    // Orders with a booked initial payment get one more paid payment at every page read, created
    // inside the window (so the listing shifts under the reader); existing operations get touched.
    let orders: Vec<(String, String)> = expected
        .iter()
        .filter_map(|e| match &e.outcome {
            ExpectedOutcome::BookedInitial { order, party, .. } => {
                Some((order.clone(), party.clone()))
            }
            _ => None,
        })
        .take(40)
        .collect();
    let existing = env.sim.operations();
    let added = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let orders = orders.clone();
        let added = added.clone();
        env.sim.set_list_hook(Some(std::sync::Arc::new(move |call| {
            let i = call as usize;
            if i > orders.len() {
                return Vec::new();
            }
            let (order, _) = &orders[i - 1];
            let created: Timestamp = "2026-10-29T12:00:00Z".parse::<Timestamp>().unwrap()
                + SignedDuration::from_secs(i as i64);
            let new_op = paysync_sim::SimOperation {
                uid: format!("late-{i:03}"),
                reference: order.clone(),
                status: 200,
                total: rust_decimal::Decimal::from(10),
                currency: "ARS".into(),
                created,
                updated: created,
                description: "Pago tardío".into(),
                payer_name: "x".into(),
                parent_uid: None,
                operation_type: "payment.v2".into(),
                entity_charges: Vec::new(),
            };
            added.lock().unwrap().push(new_op.uid.clone());
            let mut touched = existing[i % existing.len()].clone();
            touched.updated = Timestamp::now();
            vec![new_op, touched]
        })));
    }
    let app = env.app().await;
    let s = sync_with(&app, date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.errors(), 0, "{s}");
    env.sim.set_list_hook(None);
    // A rerun (as the next poll would) picks up whatever was added behind the reader.
    sync_with(&app, date(2026, 10, 1), date(2026, 10, 31), false).await;
    for uid in added.lock().unwrap().iter() {
        let order = env
            .sim
            .operations()
            .into_iter()
            .find(|o| &o.uid == uid)
            .unwrap()
            .reference;
        let party = orders.iter().find(|(o, _)| *o == order).unwrap().1.clone();
        expected.push(paysync_sim::sample::Expected {
            uid: uid.clone(),
            outcome: ExpectedOutcome::BookedAdditional { order, party },
        });
    }
    assert!(
        added.lock().unwrap().len() >= 10,
        "the listing really changed"
    );
    assert_exactly_expected(&env.sim, &expected, &before);
}

/// `kill -9` of a large sync, several times; after the last run every paid operation is booked
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_sync_several_times_books_exactly_once() {
    let opts = SimOptions {
        faults: Faults {
            erp_write_latency: Duration::from_millis(8),
            ..Default::default()
        },
        ..Default::default()
    };
    let env = TestEnv::start_with(opts, "").await;
    let expected = populate(&env.sim, &spec(2000, 77));
    let before = env.sim.entry_names();
    let cfg = env.config_path.to_str().unwrap().to_string();
    let spawn = || {
        october_sync(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut writes = env.sim.subscribe_writes();
    let mut kills = 0;
    for threshold in [100u64, 350, 600, 850] {
        let mut child = spawn();
        // Kill as soon as the ERP has committed `threshold` entries in all.
        let reached = tokio::time::timeout(
            Duration::from_secs(60),
            writes.wait_for(|n| *n >= threshold),
        )
        .await;
        assert!(
            reached.is_ok(),
            "the sync stalled before {threshold} entries"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    let last = tokio::task::spawn_blocking(move || october_sync(&cfg).output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        last.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    assert_eq!(kills, 4);
    assert_exactly_expected(&env.sim, &expected, &before);
}

/// Faults a real pair of servers produce, on ≈10 % of every kind of call: Mobbex 5xx of every body
/// shape, 429 with and without Retry-After, dropped connections; ERPNext 5xx before the commit,
/// 502/504 after it, dropped connections, 429s. On top, the first payment of every order with
/// several payments fails its first create (refused past the budget, a gateway error before the
/// commit, an answer lost after it, a commit that lands after the client stopped looking).
fn hostile_faults() -> Faults {
    Faults {
        mobbex_5xx_any_rate: 0.06,
        mobbex_429_rate: 0.03,
        mobbex_429_no_retry_after_rate: 0.5,
        mobbex_drop_connection_rate: 0.02,
        erp_5xx_rate: 0.04,
        erp_429_rate: 0.04,
        erp_retry_after_secs: 1,
        erp_429_no_retry_after_rate: 0.5,
        erp_lost_after_commit_rate: 0.03,
        erp_drop_connection_rate: 0.01,
        erp_write_latency: Duration::from_millis(2),
        ..Default::default()
    }
}

/// The first payment's create of every order that has later payments fails once, in turn in
/// each of the ways a create can fail. Returns how many were set up.
fn fail_first_payments(sim: &paysync_sim::Simulator, expected: &[Expected]) -> usize {
    use paysync_sim::{CreateFault, ErrorBody};
    let with_later: std::collections::HashSet<&str> = expected
        .iter()
        .filter_map(|e| match &e.outcome {
            ExpectedOutcome::BookedAdditional { order, .. } => Some(order.as_str()),
            _ => None,
        })
        .collect();
    let mut n = 0;
    for e in expected {
        let ExpectedOutcome::BookedInitial { order, .. } = &e.outcome else {
            continue;
        };
        if !with_later.contains(order.as_str()) {
            continue;
        }
        let faults = match n % 4 {
            // More 429s than one pass can wait through (at most 6 attempts in a 10 s budget).
            0 => (0..8)
                .map(|_| CreateFault::TooManyRequests {
                    retry_after: Some(1),
                })
                .collect(),
            1 => vec![CreateFault::ServerError {
                status: 502,
                body: ErrorBody::Html,
            }],
            2 => vec![CreateFault::LostAfterCommit {
                status: 504,
                body: ErrorBody::Empty,
            }],
            _ => vec![CreateFault::CommitLater {
                after: Duration::from_millis(2500),
            }],
        };
        sim.fail_creates(&e.uid, faults);
        n += 1;
    }
    n
}

/// The real binary's `paysync sync` over October, with this config, logging warnings.
fn october_sync(cfg: &str) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_paysync"));
    c.args([
        "--config",
        cfg,
        "sync",
        "--since",
        "2026-10-01",
        "--until",
        "2026-10-31",
    ])
    .env("RUST_LOG", "warn");
    c
}

/// `paysync sync` (the real binary) until it exits 0; returns the runs it took.
async fn binary_sync_until_clean(env: &TestEnv, max_runs: usize) -> Result<usize, String> {
    let cfg = env.config_path.to_str().unwrap().to_string();
    let mut last = String::new();
    for run in 1..=max_runs {
        let cfg = cfg.clone();
        let out = tokio::task::spawn_blocking(move || {
            october_sync(&cfg)
                // The production default is 60 s; 10 s keeps a page from failing the window
                // after a streak of faults (at 2 s, 4 faults in a row on one of 31 pages did).
                .env("PAYSYNC__DAEMON__RETRY_BUDGET", "10s")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        match out.status.code() {
            Some(0) => return Ok(run),
            Some(1) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
                last = format!(
                    "{}\nstderr (last lines, newest first):\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    tail.join("\n")
                );
            }
            other => {
                return Err(format!(
                    "exit {other:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    Err(format!("still unresolved after {max_runs} runs:\n{last}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_sustained_faults_every_allocation_is_right_within_three_runs() {
    let seeds = [101u64, 202, 303, 404, 505];
    let runs = futures::future::join_all(seeds.map(|seed| async move {
        let opts = SimOptions {
            faults: hostile_faults(),
            seed,
            ..Default::default()
        };
        let env = TestEnv::start_with(opts, "").await;
        let expected = populate(&env.sim, &spec(400, seed));
        let before = env.sim.entry_names();
        let targeted = fail_first_payments(&env.sim, &expected);
        assert!(
            targeted >= 20,
            "seed {seed}: only {targeted} orders with several payments"
        );
        let runs = binary_sync_until_clean(&env, 3)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let today = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::get("America/Argentina/Buenos_Aires").unwrap())
            .date();
        assert_books_exactly(&env.sim, &expected, &before, today);
        let stats = env.sim.stats();
        let random: u64 = stats
            .faults_injected
            .iter()
            .filter(|(k, _)| !k.starts_with("targeted"))
            .map(|(_, n)| n)
            .sum();
        eprintln!(
            "seed {seed}: {} requests, {random} random faults ({:.1} %)",
            stats.total_requests,
            100.0 * random as f64 / stats.total_requests.max(1) as f64
        );
        (seed, runs, targeted, stats.faults_injected)
    }))
    .await;
    let mut kinds = std::collections::BTreeSet::new();
    for (seed, runs, targeted, injected) in &runs {
        eprintln!(
            "seed {seed}: {runs} run(s); {targeted} first payments failed on purpose; faults {injected:?}"
        );
        kinds.extend(injected.keys().cloned());
    }
    // Every kind of fault really happened somewhere.
    for needle in [
        "mobbex 5",
        "mobbex 429",
        "erp 5",
        "erp 429",
        "after commit",
        "drop",
    ] {
        assert!(
            kinds.iter().any(|k| k.contains(needle)),
            "no {needle:?} fault was injected: {kinds:?}"
        );
    }
}

/// `retry_budget` bounds the waits between retries of a create, not the time it queued for a
/// write slot behind other creates (a slow ERPNext and `max_in_flight = 1` would spend it all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_is_not_spent_queueing_for_a_write_slot() {
    use paysync_sim::CreateFault;
    let opts = SimOptions {
        faults: Faults {
            erp_write_latency: Duration::from_millis(250),
            ..Default::default()
        },
        ..Default::default()
    };
    let env = TestEnv::start_with(opts, "").await;
    env.sim.add_customer("Cliente Demo");
    for i in 0..8 {
        let name = format!("SAL-ORD-2026-{:05}", i + 1);
        env.sim
            .add_sales_order(crate::helpers::order(&name, "Cliente Demo", "1000"));
        let t: Timestamp = "2026-10-05T15:00:00Z".parse().unwrap();
        env.sim.add_operation(crate::helpers::paid_op(
            &format!("op-{i}"),
            &name,
            100,
            t + SignedDuration::from_secs(i),
        ));
    }
    // Every create is refused 4 times (Retry-After 1 s): three attempts fit in a 2 s budget, so
    // each is booked by its run's end-of-run pass — unless queueing behind the others (8 creates,
    // one at a time, 250 ms each) spent the budget.
    for i in 0..8 {
        env.sim.fail_creates(
            &format!("op-{i}"),
            (0..4)
                .map(|_| CreateFault::TooManyRequests {
                    retry_after: Some(1),
                })
                .collect(),
        );
    }
    let mut settings = env.settings();
    settings.erp.max_in_flight = paysync::config::InFlight::Fixed(1);
    let app = paysync::app::App::build(settings)
        .await
        .unwrap()
        .with_today(crate::helpers::TODAY);
    let s = sync_with(&app, date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.unresolved(), 0, "{s}");
    assert_eq!(env.sim.stats().erp_writes, 40, "5 attempts each");
    assert_eq!(env.sim.payment_entries().len(), 8);
}
