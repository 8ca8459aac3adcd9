//! The SQLite ledger's decisions: the booking check's plan. (The upsert's rules and re-bookings
//! are tested on every backend in `store/conformance.rs`.)

use super::*;

async fn ledger() -> (tempfile::TempDir, SqliteLedger) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("l.db").display());
    let l = SqliteLedger::open(&url).await.unwrap();
    (dir, l)
}

/// The statement run before every booking must search indexes, never scan the table (a
/// partial index is used only when the query repeats its WHERE terms exactly: a reordered
/// `decision IN (...)` list once made every booking scan the whole ledger).
#[tokio::test]
async fn the_booking_check_uses_indexes_only() {
    let (_d, l) = ledger().await;
    let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "EXPLAIN QUERY PLAN {}",
        op_and_order_sql()
    )))
    .bind("main")
    .bind("u")
    .bind("SAL-ORD-1")
    .bind(1i64)
    .bind(2i64)
    .fetch_all(l.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("detail"))
    .collect();
    let scans: Vec<&String> = plan
        .iter()
        .filter(|d| d.starts_with("SCAN operations"))
        .collect();
    assert!(scans.is_empty(), "{plan:#?}");
    assert!(
        plan.iter()
            .any(|d| d.contains("operations_unresolved_by_order")),
        "{plan:#?}"
    );
}
