//! The ledger on PostgreSQL, end to end: the real `paysync` binary syncs a sample month from the
//! simulator with `[store] url = "postgres://..."` and books exactly what it books on SQLite;
//! a rerun books nothing. Skipped (with a message) unless `PAYSYNC_TEST_POSTGRES_URL` names a
//! server to create a scratch database on.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use paysync::domain::DecisionKind;
use paysync::store::postgres::scratch::ScratchDb;
use paysync_sim::SimOptions;
use paysync_sim::sample::{SampleSpec, populate};

use crate::helpers::{TestEnv, assert_books_exactly, expected_kind, paysync_cmd};

fn today_in_buenos_aires() -> jiff::civil::Date {
    Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("America/Argentina/Buenos_Aires").unwrap())
        .date()
}

/// A sample of the last days (the binary syncs up to its own today).
fn spec(start: Timestamp) -> SampleSpec {
    SampleSpec {
        operations: 150,
        start,
        span: SignedDuration::from_hours(24 * 5),
        company: "Mi Empresa SA".into(),
        seed: 21,
        ..SampleSpec::default()
    }
}

/// Sync the sample with the binary; the ledger's decision counts and the entries created.
async fn sync_sample(env: &TestEnv, start: Timestamp) -> HashMap<DecisionKind, i64> {
    let expected = populate(&env.sim, &spec(start));
    let before = env.sim.entry_names();
    let today = today_in_buenos_aires();
    let since = (today - jiff::Span::new().days(7)).to_string();
    let out = paysync_cmd(env, &["sync", "--since", &since]);
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_books_exactly(&env.sim, &expected, &before, today);
    // Every operation's decision is the oracle's, read back through the ledger.
    let ledger = paysync::store::open(&env.settings().store.url)
        .await
        .unwrap();
    let uids: Vec<String> = expected.iter().map(|e| e.uid.clone()).collect();
    let rows = ledger.rows("main", &uids).await.unwrap();
    for e in &expected {
        assert_eq!(
            rows[&e.uid].decision,
            expected_kind(&e.outcome),
            "{}",
            e.uid
        );
    }
    ledger.counts("main").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_books_the_same_on_postgres_as_on_sqlite_and_a_rerun_books_nothing() {
    let Some(db) = ScratchDb::create("sync_books_the_same_on_postgres_as_on_sqlite").await else {
        return;
    };
    let start = Timestamp::now() - SignedDuration::from_hours(24 * 6);
    let on_sqlite = TestEnv::start_with(SimOptions::default(), "").await;
    let on_postgres = TestEnv::start_on(SimOptions::default(), "", Some(&db.url)).await;
    let sqlite_counts = sync_sample(&on_sqlite, start).await;
    let pg_counts = sync_sample(&on_postgres, start).await;
    assert!(
        pg_counts
            .get(&DecisionKind::BookedInitial)
            .copied()
            .unwrap_or(0)
            > 10,
        "{pg_counts:?}"
    );
    assert_eq!(pg_counts, sqlite_counts);

    // A rerun: nothing new in ERPNext, the ledger's decisions unchanged.
    let entries = on_postgres.sim.payment_entries().len();
    let today = today_in_buenos_aires();
    let since = (today - jiff::Span::new().days(7)).to_string();
    let out = paysync_cmd(&on_postgres, &["sync", "--since", &since]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(on_postgres.sim.payment_entries().len(), entries);
    let ledger = paysync::store::open(&on_postgres.settings().store.url)
        .await
        .unwrap();
    assert_eq!(ledger.counts("main").await.unwrap(), pg_counts);
    // `status` reads the existing ledger (open_existing) without creating anything.
    let out = paysync_cmd(&on_postgres, &["status"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
