//! Writes shaped to a real ERPNext's contention, against a simulator that has it: every create
//! holds its naming series' row lock while it is written (one series = one write at a time),
//! allocated creates of two series may deadlock (HTTP 500 `QueryDeadlockError`, nothing created),
//! gunicorn has two workers. paysync spreads an account's creates over its `naming_series`, sends
//! a deadlock's victim again after looking it up, and with `max_in_flight = "auto"` keeps as many
//! writes in flight as the server takes.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::SignedDuration;
use jiff::civil::date;
use paysync::app::App;
use paysync::config::InFlight;
use paysync_sim::sample::{Expected, SampleSpec, populate, to_book};
use paysync_sim::{Faults, SimOptions};

use crate::helpers::{TODAY, TestEnv, assert_exactly_expected, creates_received, sync_with};

const SERIES: [&str; 3] = [
    "ACC-PAY-MBX-.YYYY.-",
    "ACC-PAY-MBX2-.YYYY.-",
    "ACC-PAY-MBX3-.YYYY.-",
];

/// Paid orders with one to three payments each: the first allocated to its order, the others not.
fn paid_orders(operations: usize, seed: u64) -> SampleSpec {
    SampleSpec {
        operations,
        start: "2026-10-01T12:00:00Z".parse().unwrap(),
        span: SignedDuration::from_hours(24 * 28),
        seed,
        paid_weight: 19,
        max_payments_per_order: 3,
        ..SampleSpec::default()
    }
}

/// Sync October with `app` until a run leaves nothing unresolved (what a fault left retryable
/// is booked by a later run, as the next poll would). Returns the number of runs.
async fn sync_until_clean(app: &App, max_runs: usize) -> usize {
    for run in 1..=max_runs {
        let window = paysync::app::created_window(
            &app.settings.daemon.timezone,
            date(2026, 10, 1),
            date(2026, 10, 31),
        );
        if let Ok(s) = app
            .engine
            .sync_window(&app.accounts[0], window, &Default::default())
            .await
            && s.unresolved() == 0
        {
            return run;
        }
    }
    panic!("still unresolved after {max_runs} runs");
}

/// Entries created since `before`, by `reference_no`.
fn entries_by_reference(env: &TestEnv, before: &[String]) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for e in env.sim.payment_entries() {
        if !before.contains(&e.name) {
            *by.entry(e.reference_no.unwrap_or_default()).or_default() += 1;
        }
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_series_share_the_creates_and_every_deadlock_victim_is_booked_once() {
    let _heavy = crate::helpers::CPU_HEAVY.lock().await;
    let opts = SimOptions {
        faults: Faults {
            erp_series_lock: true,
            erp_write_latency: Duration::from_millis(5),
            erp_allocated_write_latency: Duration::from_millis(9),
            erp_series_deadlock_rate: 0.3,
            ..Default::default()
        },
        seed: 13,
        ..Default::default()
    };
    let list = SERIES.map(|s| format!("{s:?}")).join(", ");
    let env = TestEnv::start_with(opts, &format!("naming_series = [{list}]")).await;
    let expected: Vec<Expected> = populate(&env.sim, &paid_orders(360, 5));
    let before = env.sim.entry_names();
    let app = env.app().await;
    let runs = sync_until_clean(&app, 6).await;

    // Every paid operation booked exactly once, nothing else.
    assert_exactly_expected(&env.sim, &expected, &before);
    let booked = to_book(&expected) as usize;
    let by_reference = entries_by_reference(&env, &before);
    assert_eq!(by_reference.len(), booked);
    assert!(by_reference.values().all(|&n| n == 1), "{by_reference:?}");

    // Spread over all three series, none of them in the default one.
    let mut per_series: BTreeMap<String, usize> = BTreeMap::new();
    for e in env.sim.payment_entries() {
        if !before.contains(&e.name) {
            *per_series.entry(e.naming_series).or_default() += 1;
        }
    }
    assert_eq!(
        per_series.keys().map(String::as_str).collect::<Vec<_>>(),
        SERIES,
        "{per_series:?}"
    );
    for (series, n) in &per_series {
        assert!(
            *n * 6 >= booked,
            "{series} took only {n} of {booked}: {per_series:?}"
        );
    }

    // Deadlocks happened, each victim was sent again and booked once; each series was written
    // one create at a time.
    let stats = env.sim.stats();
    assert!(
        stats.deadlocks.len() >= 5,
        "too few deadlocks to say anything: {:?}",
        stats.deadlocks
    );
    for victim in stats.deadlocks.keys() {
        assert_eq!(by_reference.get(victim), Some(&1), "{victim}");
    }
    let sent_again: u64 = stats.deadlocks.values().sum();
    assert!(
        creates_received(&env.sim) >= booked as u64 + sent_again,
        "every victim was sent again: {stats:?}"
    );
    for s in [
        "ACC-PAY-MBX-2026-",
        "ACC-PAY-MBX2-2026-",
        "ACC-PAY-MBX3-2026-",
    ] {
        assert_eq!(stats.max_series_writes.get(s), Some(&1), "{stats:?}");
    }
    eprintln!(
        "{booked} entries in {runs} runs, {per_series:?}, {sent_again} deadlocks, {} creates sent",
        creates_received(&env.sim)
    );
}

/// Where `paysync_erp_write_limit` stands in the process's metrics.
fn write_limit(rendered: &str) -> Option<f64> {
    rendered.lines().find_map(|l| {
        l.strip_prefix(paysync::metrics::WRITE_LIMIT)?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_limit_settles_low_on_a_server_that_writes_one_at_a_time() {
    let _heavy = crate::helpers::CPU_HEAVY.lock().await;
    let opts = SimOptions {
        faults: Faults {
            erp_workers: 2,
            erp_series_lock: true,
            erp_write_latency: Duration::from_millis(12),
            erp_allocated_write_latency: Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    };
    let env = TestEnv::start_with(opts, "").await;
    let expected = populate(&env.sim, &paid_orders(260, 8));
    let before = env.sim.entry_names();
    // The metric is process-wide: the recorder the daemon installs, read here directly.
    let metrics = paysync::metrics::install();
    let mut settings = env.settings();
    settings.erp.max_in_flight = InFlight::Auto;
    let app = App::build(settings).await.unwrap().with_today(TODAY);
    let s = sync_with(&app, date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.unresolved(), 0, "{s}");
    assert_exactly_expected(&env.sim, &expected, &before);

    let stats = env.sim.stats();
    assert_eq!(stats.max_concurrent_erp_requests, 2, "{stats:?}");
    assert_eq!(stats.max_series_writes.get("ACC-PAY-2026-"), Some(&1));
    // A server that takes one write at a time: one in service and a short queue. (A server that
    // scaled would have let the limit grow by one a round, far past this, over these writes.)
    let limit = write_limit(&metrics.render()).expect("the auto limit is published");
    assert!(
        (1.0..=6.0).contains(&limit),
        "paysync_erp_write_limit {limit} after {} creates",
        stats.erp_writes
    );
    eprintln!(
        "limit {limit} after {} creates, {} entries",
        stats.erp_writes,
        to_book(&expected)
    );
}
