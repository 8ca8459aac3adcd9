//! The decision history in PostgreSQL: appended in the transaction that records the decisions,
//! read by `paysync explain`. Owns the `decision_history` statements only (see migration 0004).

use super::PgLedger;
use crate::store::decisions::{HISTORY_OF, StoredHistory, history_row};
use crate::store::{HistoryRow, Record, StoreError, ms};

/// Append `rec` to its operation's history; a decision that repeats the last entry (same
/// trigger, decision, reason and entry) counts on it instead.
pub(super) async fn append(conn: &mut sqlx::PgConnection, rec: &Record) -> Result<(), StoreError> {
    // One statement: the CTE's count and the insert see the same snapshot.
    sqlx::query(
        "WITH last AS ( \
             SELECT id FROM decision_history \
             WHERE id = (SELECT MAX(id) FROM decision_history WHERE account = $1 AND uid = $2) \
               AND run_trigger = $4 AND decision = $5 AND reason = $6 \
               AND erp_entry IS NOT DISTINCT FROM $7), \
         counted AS ( \
             UPDATE decision_history SET repeats = repeats + 1, last_ms = $3 \
             WHERE id IN (SELECT id FROM last) RETURNING id) \
         INSERT INTO decision_history (account, uid, decided_ms, run_trigger, decision, reason, \
             erp_entry, sales_order, amount, last_ms) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $3 WHERE NOT EXISTS (SELECT 1 FROM last)",
    )
    .bind(&rec.account)
    .bind(&rec.uid)
    .bind(ms(rec.seen_at))
    .bind(rec.trigger.as_str())
    .bind(rec.decision.as_str())
    .bind(&rec.reason)
    .bind(&rec.erp_entry)
    .bind(&rec.sales_order)
    .bind(rec.amount.map(|a| a.to_string()))
    .execute(conn)
    .await?;
    Ok(())
}

/// Every history entry of `(account, uid)`, oldest first.
pub(super) async fn read(
    ledger: &PgLedger,
    account: &str,
    uid: &str,
) -> Result<Vec<HistoryRow>, StoreError> {
    let rows: Vec<StoredHistory> = sqlx::query_as(HISTORY_OF)
        .bind(account)
        .bind(uid)
        .fetch_all(&ledger.pool)
        .await?;
    rows.into_iter().map(history_row).collect()
}
