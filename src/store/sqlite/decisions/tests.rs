//! The SQLite ledger's decisions: the upsert's rules, the booking check's plan, re-bookings.

use super::*;

fn rec(uid: &str, decision: DecisionKind, entry: Option<&str>) -> Record {
    Record {
        account: "main".into(),
        uid: uid.into(),
        reference: "SAL-ORD-2026-00001".into(),
        sales_order: Some("SAL-ORD-2026-00001".into()),
        status_code: Some(200),
        amount: Some(Decimal::from_str("2871.74").unwrap()),
        currency: Some("ARS".into()),
        decision,
        reason: "r".into(),
        erp_entry: entry.map(String::from),
        op_created: None,
        seen_at: Timestamp::now(),
    }
}

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

#[tokio::test]
async fn booked_rows_are_never_downgraded() {
    let (_d, l) = ledger().await;
    l.record(&rec("u1", DecisionKind::BookedInitial, Some("ACC-PAY-1")))
        .await
        .unwrap();
    l.record(&rec("u1", DecisionKind::Error, None))
        .await
        .unwrap();
    l.record(&rec("u1", DecisionKind::AlreadyLoaded, Some("ACC-PAY-9")))
        .await
        .unwrap();
    let rows = l.rows("main", &["u1".into(), "nope".into()]).await.unwrap();
    let r = &rows["u1"];
    assert_eq!(r.decision, DecisionKind::BookedInitial);
    assert_eq!(r.erp_entry.as_deref(), Some("ACC-PAY-1"));
    assert_eq!(r.times_seen, 3);
    assert_eq!(r.amount.unwrap().to_string(), "2871.74");
    assert_eq!(rows.len(), 1);
    // The booking check still sees it as the order's booking.
    let view = l
        .op_and_order(
            "main",
            "u2",
            Timestamp::now(),
            Some("SAL-ORD-2026-00001"),
            Timestamp::UNIX_EPOCH,
        )
        .await
        .unwrap();
    assert_eq!(view.booked_entry.as_deref(), Some("ACC-PAY-1"));
}

#[tokio::test]
async fn skips_are_updated_and_counted() {
    let (_d, l) = ledger().await;
    l.record(&rec("u1", DecisionKind::OrderMissing, None))
        .await
        .unwrap();
    l.record(&rec("u2", DecisionKind::Pending, None))
        .await
        .unwrap();
    l.record(&rec("u1", DecisionKind::BookedInitial, Some("E1")))
        .await
        .unwrap();
    let c = l.counts("main").await.unwrap();
    assert_eq!(c.get(&DecisionKind::BookedInitial), Some(&1));
    assert_eq!(c.get(&DecisionKind::Pending), Some(&1));
    assert_eq!(c.get(&DecisionKind::OrderMissing), None);
    assert!(l.counts("other").await.unwrap().is_empty());
}

/// Only a re-booking turns a booked row back into an unresolved one, and it forgets the
/// cancelled entry; the booking that follows is recorded as usual and keeps the guard value.
#[tokio::test]
async fn a_rebooking_reopens_a_booked_row_and_keeps_its_guard_value() {
    let (_d, l) = ledger().await;
    l.record(&rec("u1", DecisionKind::BookedInitial, Some("ACC-PAY-1")))
        .await
        .unwrap();
    let mut reopened = rec("u1", DecisionKind::Error, None);
    reopened.op_created = Some(Timestamp::from_second(1_000).unwrap());
    // Not while the row names an entry that was not cancelled (booked meanwhile).
    assert!(
        !l.reopen_for_rebook(&reopened, Some("u1#2"), &["ACC-PAY-0".into()])
            .await
            .unwrap()
    );
    assert_eq!(
        l.rows("main", &["u1".into()]).await.unwrap()["u1"].decision,
        DecisionKind::BookedInitial
    );
    assert!(
        l.reopen_for_rebook(&reopened, Some("u1#2"), &["ACC-PAY-1".into()])
            .await
            .unwrap()
    );
    let r = &l.rows("main", &["u1".into()]).await.unwrap()["u1"];
    assert_eq!(r.decision, DecisionKind::Error);
    assert_eq!(r.erp_entry, None);
    assert_eq!(r.guard_value.as_deref(), Some("u1#2"));
    // Unresolved now: a later payment of the order waits for it.
    let view = l
        .op_and_order(
            "main",
            "u9",
            Timestamp::now(),
            Some("SAL-ORD-2026-00001"),
            Timestamp::now(),
        )
        .await
        .unwrap();
    assert_eq!(
        view.earlier_unresolved.map(|e| e.uid).as_deref(),
        Some("u1")
    );
    l.record(&rec(
        "u1",
        DecisionKind::BookedAdditional,
        Some("ACC-PAY-2"),
    ))
    .await
    .unwrap();
    let r = &l.rows("main", &["u1".into()]).await.unwrap()["u1"];
    assert_eq!(r.decision, DecisionKind::BookedAdditional);
    assert_eq!(r.erp_entry.as_deref(), Some("ACC-PAY-2"));
    assert_eq!(r.guard_value.as_deref(), Some("u1#2"));
    // A row never seen is created by a re-booking.
    assert!(
        l.reopen_for_rebook(&rec("u2", DecisionKind::Error, None), None, &[])
            .await
            .unwrap()
    );
    let rows = l.rows("main", &["u2".into()]).await.unwrap();
    assert_eq!(rows["u2"].decision, DecisionKind::Error);
    assert_eq!(rows["u2"].guard_value, None);
}
