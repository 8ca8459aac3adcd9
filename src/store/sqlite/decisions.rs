//! [`Decisions`] on SQLite: the `operations` table — its upsert, the booking check, re-bookings,
//! and the reads of `status`, `demo` and the retry loop.
//!
//! Owns every statement on `operations` and the mapping of its rows. Must not touch the other
//! tables (`polls`, `watermarks`, `inbox`, `claims`: their concerns' modules). Like every method of
//! the SQLite ledger, each one first checks the file's identity (`self.same_file()`), and a
//! statement group that must commit together goes through [`WriteTx`].
//!
//! **Invariants** enforced here, in the SQL: `(account, uid)` is the table's primary key, and every
//! write is an `ON CONFLICT (account, uid)` upsert; [`upsert`] never takes a booked row's decision
//! or entry away (tested in `decisions/tests.rs`); only [`Decisions::reopen_for_rebook`] does, and
//! only while the row names no entry or one the caller found cancelled.

use std::collections::HashMap;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;

use super::write_tx::WriteTx;
use super::{SqliteLedger, json_array, ms};
use crate::domain::DecisionKind;
use crate::store::decisions::StoredRow;
use crate::store::{
    Decisions, HistoryRow, LedgerRow, OrderView, Record, StoreError, ViewQuery,
    holding_decisions_sql,
};
use sqlx::FromRow;

/// The columns [`row_to_ledger`] reads.
const COLUMNS: &str = "account, uid, reference, sales_order, status_code, amount, currency, decision, reason, erp_entry, guard_value, first_seen_ms, last_seen_ms, times_seen";

#[async_trait]
impl Decisions for SqliteLedger {
    async fn rows(
        &self,
        account: &str,
        uids: &[String],
    ) -> Result<HashMap<String, LedgerRow>, StoreError> {
        self.same_file()?;
        let mut out = HashMap::new();
        if uids.is_empty() {
            return Ok(out);
        }
        // One statement for the whole batch: the ids travel as one JSON array parameter, and
        // the rows come back as one JSON array in one row — sqlx's worker hands rows over one
        // at a time, and a runtime waiting for them is woken for each (two thread switches a
        // row; a rerun or a poll over decided operations reads a row for every one of them).
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let sql = SQL.get_or_init(|| {
            let fields: Vec<String> = COLUMNS.split(", ").map(|c| format!("'{c}', {c}")).collect();
            format!(
                "SELECT json_group_array(json_object({})) FROM operations \
                 WHERE account = $1 AND uid IN (SELECT value FROM json_each($2))",
                fields.join(", ")
            )
        });
        let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(account)
            .bind(json_array(uids))
            .fetch_one(&self.pool)
            .await?;
        let rows: Vec<StoredRow> = serde_json::from_str(&rows)
            .map_err(|e| StoreError::Corrupt(format!("ledger rows as JSON: {e}")))?;
        for r in rows {
            let row = r.into_row()?;
            out.insert(row.uid.clone(), row);
        }
        Ok(out)
    }

    async fn record(&self, rec: &Record) -> Result<(), StoreError> {
        self.record_many(std::slice::from_ref(rec)).await
    }

    async fn record_many(&self, recs: &[Record]) -> Result<(), StoreError> {
        if recs.is_empty() {
            return Ok(());
        }
        self.same_file()?;
        // In one transaction: all rows or none, and abandoned (its future dropped) it is
        // rolled back, never left to land later (see `write_tx.rs`).
        let mut tx = WriteTx::begin(&self.pool).await?;
        let mut work = Ok(());
        // The history first: it compares with its own last entries, not with the rows.
        for query in super::history::appends(recs)
            .into_iter()
            .chain(upsert_all(recs))
        {
            if let Err(e) = query.execute(tx.conn()).await {
                work = Err(e.into());
                break;
            }
        }
        tx.finish(work).await
    }

    async fn reopen_for_rebook(
        &self,
        rec: &Record,
        guard_value: Option<&str>,
        cancelled: &[String],
    ) -> Result<bool, StoreError> {
        self.same_file()?;
        let done = sqlx::query(
            "INSERT INTO operations (account, uid, reference, sales_order, status_code, amount, currency, \
                                     decision, reason, op_created_ms, first_seen_ms, last_seen_ms, guard_value) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12) \
             ON CONFLICT (account, uid) DO UPDATE SET \
                reference = excluded.reference, \
                sales_order = COALESCE(excluded.sales_order, operations.sales_order), \
                status_code = excluded.status_code, \
                amount = COALESCE(excluded.amount, operations.amount), \
                currency = COALESCE(excluded.currency, operations.currency), \
                decision = excluded.decision, \
                reason = excluded.reason, \
                erp_entry = NULL, \
                booked_ms = NULL, \
                guard_value = excluded.guard_value, \
                op_created_ms = COALESCE(excluded.op_created_ms, operations.op_created_ms), \
                last_seen_ms = excluded.last_seen_ms, \
                times_seen = operations.times_seen + 1 \
             WHERE operations.erp_entry IS NULL \
                OR operations.erp_entry IN (SELECT value FROM json_each($13))",
        )
        .bind(&rec.account)
        .bind(&rec.uid)
        .bind(&rec.reference)
        .bind(&rec.sales_order)
        .bind(rec.status_code.map(i64::from))
        .bind(rec.amount.map(|a| a.to_string()))
        .bind(&rec.currency)
        .bind(rec.decision.as_str())
        .bind(&rec.reason)
        .bind(rec.op_created.map(ms))
        .bind(ms(rec.seen_at))
        .bind(guard_value)
        .bind(json_array(cancelled))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn history(&self, account: &str, uid: &str) -> Result<Vec<HistoryRow>, StoreError> {
        self.same_file()?;
        super::history::read(&self.pool, account, uid).await
    }

    async fn op_and_order(
        &self,
        account: &str,
        uid: &str,
        created: Timestamp,
        sales_order: Option<&str>,
        booked_since: Timestamp,
    ) -> Result<OrderView, StoreError> {
        self.same_file()?;
        // One statement: the operation's row (which = 0), one booked row of the order (which = 1)
        // and the oldest earlier unresolved row of the order (which = 2); each SQLite round trip
        // costs two thread switches in sqlx.
        let rows = sqlx::query(sqlx::AssertSqlSafe(op_and_order_sql()))
            .bind(account)
            .bind(uid)
            .bind(sales_order)
            .bind(ms(created))
            .bind(ms(booked_since))
            .fetch_all(&self.pool)
            .await?;
        let mut view = OrderView::default();
        for r in &rows {
            let which: i64 = r.try_get("which")?;
            view.add(which, StoredRow::from_row(r)?)?;
        }
        Ok(view)
    }

    async fn views(
        &self,
        account: &str,
        queries: &[ViewQuery],
    ) -> Result<Vec<OrderView>, StoreError> {
        self.same_file()?;
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let asked: Vec<JsonQuery> = queries
            .iter()
            .map(|q| JsonQuery {
                u: &q.uid,
                o: q.sales_order.as_deref(),
                c: ms(q.created),
                b: ms(q.booked_since),
            })
            .collect();
        let json = serde_json::to_string(&asked)
            .map_err(|e| StoreError::Corrupt(format!("ledger questions as JSON: {e}")))?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(views_sql()))
            .bind(account)
            .bind(json)
            .fetch_all(&self.pool)
            .await?;
        OrderView::spread(
            queries.len(),
            rows.iter().map(|r| {
                let tagged = (
                    r.try_get("k")?,
                    r.try_get("which")?,
                    StoredRow::from_row(r)?,
                );
                Ok(tagged)
            }),
        )
    }

    async fn unresolved_in_orders(
        &self,
        account: &str,
        orders: &[String],
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.same_file()?;
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT o.uid, o.sales_order FROM json_each($2) AS j \
             JOIN operations AS o INDEXED BY operations_unresolved_by_order ON o.sales_order = j.value \
             WHERE o.account = $1 AND o.decision IN ({holding}) \
             ORDER BY o.op_created_ms, o.uid LIMIT $3",
            holding = holding_decisions_sql(),
        )))
        .bind(account)
        .bind(json_array(orders))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("uid")?, r.try_get("sales_order")?)))
            .collect()
    }

    async fn counts(&self, account: &str) -> Result<HashMap<DecisionKind, i64>, StoreError> {
        self.same_file()?;
        let rows = sqlx::query(
            "SELECT decision, COUNT(*) FROM operations WHERE account = $1 GROUP BY decision",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        let mut out = HashMap::new();
        for r in rows {
            let d: String = r.get(0);
            let n: i64 = r.get(1);
            let kind = DecisionKind::parse(&d)
                .ok_or_else(|| StoreError::Corrupt(format!("decision {d:?}")))?;
            out.insert(kind, n);
        }
        Ok(out)
    }

    async fn latest(
        &self,
        account: &str,
        decision: DecisionKind,
        limit: i64,
    ) -> Result<Vec<LedgerRow>, StoreError> {
        self.same_file()?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM operations WHERE account = $1 AND decision = $2 \
             ORDER BY last_seen_ms DESC LIMIT $3"
        )))
        .bind(account)
        .bind(decision.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_ledger).collect()
    }

    async fn retryable(
        &self,
        account: &str,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.same_file()?;
        let rows = sqlx::query(
            "SELECT uid FROM operations \
             WHERE account = $1 AND decision IN ('order_missing', 'order_not_payable', 'waiting', 'error') \
               AND last_seen_ms + MIN(60000 * (1 << MIN(times_seen - 1, 11)), 86400000) <= $2 \
             ORDER BY last_seen_ms LIMIT $3",
        )
        .bind(account)
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }
}

fn row_to_ledger(r: &sqlx::sqlite::SqliteRow) -> Result<LedgerRow, StoreError> {
    StoredRow::from_row(r)?.into_row()
}

/// [`Decisions::op_and_order`]'s statement. Each part must use an index (a test checks the plan):
/// it runs before every booking.
fn op_and_order_sql() -> String {
    format!(
        "SELECT * FROM (SELECT {COLUMNS}, 0 AS which FROM operations WHERE account = $1 AND uid = $2) \
             UNION ALL \
             SELECT * FROM (SELECT {COLUMNS}, 1 AS which FROM operations \
                            WHERE sales_order = $3 AND booked_ms >= $5 \
                              AND decision IN ('booked_initial', 'booked_additional') LIMIT 1) \
             UNION ALL \
             SELECT * FROM (SELECT {COLUMNS}, 2 AS which FROM operations \
                            WHERE sales_order = $3 AND NOT (account = $1 AND uid = $2) \
                              AND decision IN ({holding}) \
                              AND (op_created_ms < $4 OR (op_created_ms = $4 AND uid < $2)) \
                            ORDER BY op_created_ms, uid LIMIT 1)",
        holding = holding_decisions_sql()
    )
}

/// [`Decisions::views`]'s statement: [`op_and_order_sql`]'s three parts for every question of the
/// JSON array `$2` (`k` its index), each part found as in the one-question statement (by the
/// same index terms) and joined back by rowid. `CROSS JOIN`: SQLite's way of keeping the
/// questions the outer loop (left to itself it looped over the account's rows and scanned the
/// questions for each).
fn views_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let cols: Vec<String> = COLUMNS.split(", ").map(|c| format!("o.{c}")).collect();
        let cols = cols.join(", ");
        format!(
            "WITH q AS (SELECT key AS k, value ->> 'u' AS u, value ->> 'o' AS so, \
                        value ->> 'c' AS c, value ->> 'b' AS b FROM jsonb_each($2)) \
             SELECT q.k AS k, 0 AS which, {cols} FROM q \
               CROSS JOIN operations AS o ON o.account = $1 AND o.uid = q.u \
             UNION ALL \
             SELECT q.k AS k, 1 AS which, {cols} FROM q \
               CROSS JOIN operations AS o ON o.rowid = ( \
                 SELECT rowid FROM operations \
                 WHERE sales_order = q.so AND booked_ms >= q.b \
                   AND decision IN ('booked_initial', 'booked_additional') LIMIT 1) \
             UNION ALL \
             SELECT q.k AS k, 2 AS which, {cols} FROM q \
               CROSS JOIN operations AS o ON o.rowid = ( \
                 SELECT rowid FROM operations \
                 WHERE sales_order = q.so AND NOT (account = $1 AND uid = q.u) \
                   AND decision IN ({holding}) \
                   AND (op_created_ms < q.c OR (op_created_ms = q.c AND uid < q.u)) \
                 ORDER BY op_created_ms, uid LIMIT 1)",
            holding = holding_decisions_sql()
        )
    })
}

/// One question of [`views_sql`]'s JSON array.
#[derive(serde::Serialize)]
struct JsonQuery<'a> {
    u: &'a str,
    o: Option<&'a str>,
    c: i64,
    b: i64,
}

/// What an upsert does to a row already there. A booked row keeps its decision, reason and
/// entry: a later "already_loaded" (or a refund, which only replaces the reason with a warning)
/// must not make it look unbooked.
const ON_CONFLICT: &str = "ON CONFLICT (account, uid) DO UPDATE SET \
    reference = excluded.reference, \
    sales_order = COALESCE(excluded.sales_order, operations.sales_order), \
    status_code = excluded.status_code, \
    amount = COALESCE(excluded.amount, operations.amount), \
    currency = COALESCE(excluded.currency, operations.currency), \
    decision = CASE WHEN operations.decision IN ('booked_initial', 'booked_additional') \
                    THEN operations.decision ELSE excluded.decision END, \
    reason = CASE WHEN operations.decision NOT IN ('booked_initial', 'booked_additional') \
                    THEN excluded.reason \
                  WHEN excluded.decision = 'refunded' THEN excluded.reason \
                  ELSE operations.reason END, \
    erp_entry = COALESCE(operations.erp_entry, excluded.erp_entry), \
    op_created_ms = COALESCE(excluded.op_created_ms, operations.op_created_ms), \
    booked_ms = CASE WHEN operations.decision IN ('booked_initial', 'booked_additional') \
                     THEN operations.booked_ms ELSE excluded.booked_ms END, \
    last_seen_ms = excluded.last_seen_ms, \
    times_seen = operations.times_seen + 1";

const INSERT_COLUMNS: &str = "INSERT INTO operations (account, uid, reference, sales_order, \
    status_code, amount, currency, decision, reason, erp_entry, op_created_ms, first_seen_ms, \
    last_seen_ms, booked_ms)";

/// A ledger row's twelve parameters, in the order of [`INSERT_COLUMNS`] (`first_seen_ms`,
/// `last_seen_ms` and `booked_ms` all come from the twelfth, the time it was seen).
fn bind_record<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    rec: &'q Record,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    q.bind(&rec.account)
        .bind(&rec.uid)
        .bind(&rec.reference)
        .bind(&rec.sales_order)
        .bind(rec.status_code.map(i64::from))
        .bind(rec.amount.map(|a| a.to_string()))
        .bind(&rec.currency)
        .bind(rec.decision.as_str())
        .bind(&rec.reason)
        .bind(&rec.erp_entry)
        .bind(rec.op_created.map(ms))
        .bind(ms(rec.seen_at))
}

/// The row counts [`upsert_all`]'s statements are prepared for: a batch goes in statements of
/// 128 rows, the last one the smallest that holds what is left, its spare rows (fewer than its
/// own) left unbound (SQL NULL, skipped). Five statement texts in all, each prepared once per
/// connection — preparing costs in proportion to the rows of the text (about 20,000
/// instructions a row: a 512-row text took 10 M).
const UPSERT_SIZES: [usize; 5] = [8, 16, 32, 64, 128];

/// The upsert of many rows, one statement per 128: the rows bound parameter by parameter into a
/// `VALUES` list, applied in the order given — as separate statements would be (a row naming an
/// operation an earlier row wrote updates it, see [`ON_CONFLICT`]).
///
/// Bound parameters, not one JSON array: building the array, SQLite's parse of it and the
/// fifteen `->>` per row cost about 50,000 instructions a row, a quarter of a whole `sync`'s
/// instructions on 2,000 operations (callgrind, 2026-12-04). The parameters are anonymous
/// (`?`): sqlx looks each parameter's name up, and SQLite finds a name by walking the
/// statement's list of names, which made binding a statement of numbered ones quadratic. Full
/// statements and one for the rest, not one per size that adds up to the rest: each statement
/// is a round trip to sqlx's worker thread.
fn upsert_all(
    recs: &[Record],
) -> Vec<sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>> {
    static SQL: [std::sync::OnceLock<String>; UPSERT_SIZES.len()] =
        [const { std::sync::OnceLock::new() }; UPSERT_SIZES.len()];
    let largest = UPSERT_SIZES[UPSERT_SIZES.len() - 1];
    recs.chunks(largest)
        .map(|chunk| {
            let at = UPSERT_SIZES
                .iter()
                .position(|&size| size >= chunk.len())
                .expect("a chunk is at most the largest size");
            let sql = SQL[at].get_or_init(|| upsert_rows_sql(UPSERT_SIZES[at]));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for (i, rec) in chunk.iter().enumerate() {
                q = bind_record(q, rec).bind(i as i64);
            }
            // The spare rows stay unbound: NULL in every column (sqlx clears a statement's
            // bindings before binding it again, so nothing of an earlier batch is left there).
            q
        })
        .collect()
}

/// `INSERT ... SELECT ... FROM (VALUES (row 1), ...) ... ON CONFLICT ...` for `rows` rows of
/// thirteen parameters each: [`bind_record`]'s twelve, then the row's index (the order they are
/// applied in). A row whose account is NULL is a spare one and is skipped.
fn upsert_rows_sql(rows: usize) -> String {
    const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let values = vec![ROW; rows].join(", ");
    format!(
        "{INSERT_COLUMNS} SELECT column1, column2, column3, column4, column5, column6, column7, \
            column8, column9, column10, column11, column12, column12, \
            CASE WHEN column8 IN ('booked_initial', 'booked_additional') THEN column12 END \
         FROM (VALUES {values}) WHERE column1 IS NOT NULL ORDER BY column13 {ON_CONFLICT}"
    )
}

#[cfg(test)]
mod tests;
