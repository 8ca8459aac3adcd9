//! The SQLite ledger's decisions: the booking check's plan. (The upsert's rules and re-bookings
//! are tested on every backend in `store/conformance.rs`.)

use super::*;

async fn ledger() -> (tempfile::TempDir, SqliteLedger) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("l.db").display());
    let l = SqliteLedger::open(&url).await.unwrap();
    (dir, l)
}

/// The lines of `query`'s `EXPLAIN QUERY PLAN`.
async fn plan_of(
    l: &SqliteLedger,
    query: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
) -> Vec<String> {
    (query.fetch_all(l.pool()).await.unwrap().iter())
        .map(|r| r.get::<String, _>("detail"))
        .collect()
}

/// The statement run before every booking must search indexes, never scan the table (a
/// partial index is used only when the query repeats its WHERE terms exactly: a reordered
/// `decision IN (...)` list once made every booking scan the whole ledger).
#[tokio::test]
async fn the_booking_check_uses_indexes_only() {
    let (_d, l) = ledger().await;
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "EXPLAIN QUERY PLAN {}",
        op_and_order_sql()
    )))
    .bind("main")
    .bind("u")
    .bind("SAL-ORD-1")
    .bind(1i64)
    .bind(2i64);
    let plan = plan_of(&l, query).await;
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

/// The batch's re-read searches the same indexes, for every question.
#[tokio::test]
async fn the_batched_booking_check_uses_indexes_only() {
    let (_d, l) = ledger().await;
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "EXPLAIN QUERY PLAN {}",
        views_sql()
    )))
    .bind("main")
    .bind(r#"[{"u":"u","o":"SAL-ORD-1","c":1,"b":2}]"#);
    let plan = plan_of(&l, query).await;
    let scans: Vec<&String> = plan
        .iter()
        .filter(|d| d.starts_with("SCAN operations") || d.starts_with("SCAN o "))
        .collect();
    assert!(scans.is_empty(), "{plan:#?}");
    // The questions drive: each finds its row by the key, never the account's rows each
    // question (the planner's own choice once looped over the whole account).
    assert!(
        plan.iter()
            .any(|d| d.starts_with("SEARCH o USING INDEX") && d.contains("uid=?")),
        "{plan:#?}"
    );
    assert!(
        !plan.iter().any(|d| d.ends_with("(account=?)")),
        "{plan:#?}"
    );
    for index in [
        "operations_unresolved_by_order",
        "operations_booked_by_order_any_account",
    ] {
        assert!(plan.iter().any(|d| d.contains(index)), "{index}: {plan:#?}");
    }
}
