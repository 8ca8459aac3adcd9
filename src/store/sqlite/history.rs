//! The decision history in SQLite: appended in the transaction that records the decisions, read
//! by `paysync explain`. Owns the `decision_history` statements only (see migration 0008).

use crate::store::decisions::{HISTORY_OF, StoredHistory, history_row};
use crate::store::{HistoryRow, Record, StoreError, ms};

/// Rows per statement: a batch of records goes in statements of this many (the last one padded
/// with unbound rows, skipped), so that one statement text is prepared once per connection.
const ROWS: usize = 128;
/// Parameters of one row.
const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// The statements appending `recs` to the history, in their order: a decision that repeats the
/// operation's last entry (same trigger, decision, reason and entry) counts on it instead. Run
/// before the records' upserts, in their transaction.
pub(super) fn appends(
    recs: &[Record],
) -> Vec<sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>> {
    static SQL: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
    let [count, insert] = SQL.get_or_init(|| {
        let values = vec![ROW; ROWS].join(", ");
        let same_as_last = "h.id = (SELECT MAX(id) FROM decision_history \
                                WHERE account = v.column1 AND uid = v.column2) \
             AND h.run_trigger = v.column4 AND h.decision = v.column5 \
             AND h.reason = v.column6 AND h.erp_entry IS v.column7";
        // Rows of one statement do not see each other: an operation twice in one batch gets
        // both (a batch never decides one operation twice, see `pipeline/batch.rs`).
        [
            format!(
                "UPDATE decision_history AS h SET repeats = h.repeats + 1, last_ms = v.column3 \
                 FROM (VALUES {values}) AS v WHERE v.column1 IS NOT NULL AND {same_as_last}"
            ),
            format!(
                "INSERT INTO decision_history (account, uid, decided_ms, run_trigger, decision, \
                     reason, erp_entry, sales_order, amount, last_ms) \
                 SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, \
                     v.column7, v.column8, v.column9, v.column3 FROM (VALUES {values}) AS v \
                 WHERE v.column1 IS NOT NULL \
                   AND NOT EXISTS (SELECT 1 FROM decision_history h WHERE {same_as_last})"
            ),
        ]
    });
    let mut out = Vec::new();
    for chunk in recs.chunks(ROWS) {
        for sql in [count, insert] {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for rec in chunk {
                q = q
                    .bind(&rec.account)
                    .bind(&rec.uid)
                    .bind(ms(rec.seen_at))
                    .bind(rec.trigger.as_str())
                    .bind(rec.decision.as_str())
                    .bind(&rec.reason)
                    .bind(&rec.erp_entry)
                    .bind(&rec.sales_order)
                    .bind(rec.amount.map(|a| a.to_string()));
            }
            out.push(q);
        }
    }
    out
}

/// Every history entry of `(account, uid)`, oldest first.
pub(super) async fn read(
    pool: &sqlx::SqlitePool,
    account: &str,
    uid: &str,
) -> Result<Vec<HistoryRow>, StoreError> {
    let rows: Vec<StoredHistory> = sqlx::query_as(HISTORY_OF)
        .bind(account)
        .bind(uid)
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(history_row).collect()
}
