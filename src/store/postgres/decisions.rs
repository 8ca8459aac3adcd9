//! [`Decisions`] on PostgreSQL: the `operations` table — the same statements as SQLite's
//! `decisions.rs`, in PostgreSQL's dialect.
//!
//! Owns every statement on `operations` and the mapping of its rows; touches no other table.
//!
//! **Invariants** enforced here, in the SQL, exactly as on SQLite: `(account, uid)` is the
//! primary key and every write is an `ON CONFLICT (account, uid)` upsert; [`upsert`] never takes a
//! booked row's decision or entry away; only [`Decisions::reopen_for_rebook`] does, and only while
//! the row names no entry or one the caller found cancelled. (Tested on both backends in
//! `store/conformance.rs`.)

use std::collections::HashMap;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;
use sqlx::postgres::{PgArguments, PgRow};

use super::{PgLedger, ms};
use crate::domain::DecisionKind;
use crate::store::decisions::StoredRow;
use crate::store::{
    Decisions, HistoryRow, LedgerRow, OrderView, Record, StoreError, ViewQuery,
    holding_decisions_sql,
};
use sqlx::FromRow;

/// The columns [`row_to_ledger`] reads (the amount as its exact text).
const COLUMNS: &str = "account, uid, reference, sales_order, status_code::bigint AS status_code, amount::text AS amount, currency, decision, reason, erp_entry, guard_value, first_seen_ms, last_seen_ms, times_seen";

impl PgLedger {
    /// One transaction of `recs`, in their order: each one's history entry, then its row.
    async fn record_sorted(&self, recs: &[&Record]) -> Result<(), StoreError> {
        // sqlx's transaction: a PostgreSQL server never rolls back on its own behind the
        // client's back the way SQLite does on a full disk (an error leaves the transaction
        // aborted until ROLLBACK, which sqlx sends), so SQLite's `WriteTx` is not needed.
        let mut tx = self.pool.begin().await?;
        for rec in recs {
            // The history first: it compares with its own last entry, not with the row.
            super::history::append(&mut tx, rec).await?;
            upsert(rec).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// PostgreSQL rolled the transaction back for another's sake: `deadlock_detected` (40P01) or
/// `serialization_failure` (40001).
fn is_conflict(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40P01" || c == "40001")
}

#[async_trait]
impl Decisions for PgLedger {
    async fn rows(
        &self,
        account: &str,
        uids: &[String],
    ) -> Result<HashMap<String, LedgerRow>, StoreError> {
        let mut out = HashMap::new();
        if uids.is_empty() {
            return Ok(out);
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM operations WHERE account = $1 AND uid = ANY($2)"
        )))
        .bind(account)
        .bind(uids)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            let row = row_to_ledger(r)?;
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
        // Rows locked in one order by every transaction (several instances record the same
        // operations: a poll's batch, another's "claim lapsed" errors), so that two of them
        // never wait for each other's rows; a stable sort keeps one operation's records in
        // the order given. A deadlock or serialization failure all the same (another writer's
        // own statements) is tried again: the transaction was rolled back whole.
        let mut sorted: Vec<&Record> = recs.iter().collect();
        sorted.sort_by(|a, b| (&a.account, &a.uid).cmp(&(&b.account, &b.uid)));
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.record_sorted(&sorted).await {
                Err(StoreError::Query(e)) if attempt < 4 && is_conflict(&e) => {
                    tracing::warn!(attempt, error = %e, "ledger write conflicted with another writer; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn reopen_for_rebook(
        &self,
        rec: &Record,
        guard_value: Option<&str>,
        cancelled: &[String],
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO operations (account, uid, reference, sales_order, status_code, amount, currency, \
                                     decision, reason, op_created_ms, first_seen_ms, last_seen_ms, guard_value) \
             VALUES ($1, $2, $3, $4, $5, $6::numeric, $7, $8, $9, $10, $11, $11, $12) \
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
                OR operations.erp_entry = ANY($13)",
        )
        .bind(&rec.account)
        .bind(&rec.uid)
        .bind(&rec.reference)
        .bind(&rec.sales_order)
        .bind(rec.status_code.map(i32::from))
        .bind(rec.amount.map(|a| a.to_string()))
        .bind(&rec.currency)
        .bind(rec.decision.as_str())
        .bind(&rec.reason)
        .bind(rec.op_created.map(ms))
        .bind(ms(rec.seen_at))
        .bind(guard_value)
        .bind(cancelled)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn history(&self, account: &str, uid: &str) -> Result<Vec<HistoryRow>, StoreError> {
        super::history::read(self, account, uid).await
    }

    async fn op_and_order(
        &self,
        account: &str,
        uid: &str,
        created: Timestamp,
        sales_order: Option<&str>,
        booked_since: Timestamp,
    ) -> Result<OrderView, StoreError> {
        // One statement, one round trip: the operation's row (which = 0), one booked row of the
        // order (which = 1) and the oldest earlier unresolved row of the order (which = 2).
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
            let which: i32 = r.try_get("which")?;
            view.add(which.into(), StoredRow::from_row(r)?)?;
        }
        Ok(view)
    }

    async fn views(
        &self,
        account: &str,
        queries: &[ViewQuery],
    ) -> Result<Vec<OrderView>, StoreError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let asked: Vec<serde_json::Value> = queries
            .iter()
            .map(|q| {
                serde_json::json!({
                    "u": q.uid,
                    "o": q.sales_order,
                    "c": ms(q.created),
                    "b": ms(q.booked_since),
                })
            })
            .collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(views_sql()))
            .bind(account)
            .bind(serde_json::Value::Array(asked).to_string())
            .fetch_all(&self.pool)
            .await?;
        OrderView::spread(
            queries.len(),
            rows.iter().map(|r| {
                let which: i32 = r.try_get("which")?;
                Ok((r.try_get("k")?, which.into(), StoredRow::from_row(r)?))
            }),
        )
    }

    async fn unresolved_in_orders(
        &self,
        account: &str,
        orders: &[String],
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        // NULLS FIRST: SQLite's order (an operation without a creation time sorts first there).
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT uid, sales_order FROM operations \
             WHERE account = $1 AND sales_order = ANY($2) AND decision IN ({holding}) \
             ORDER BY op_created_ms NULLS FIRST, uid LIMIT $3",
            holding = holding_decisions_sql(),
        )))
        .bind(account)
        .bind(orders)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("uid")?, r.try_get("sales_order")?)))
            .collect()
    }

    async fn counts(&self, account: &str) -> Result<HashMap<DecisionKind, i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT decision, COUNT(*) FROM operations WHERE account = $1 GROUP BY decision",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        let mut out = HashMap::new();
        for r in rows {
            let d: String = r.try_get(0)?;
            let n: i64 = r.try_get(1)?;
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
        // The backoff of SQLite's statement: 1 min doubled per earlier sighting, at most a day.
        let rows = sqlx::query(
            "SELECT uid FROM operations \
             WHERE account = $1 AND decision IN ('order_missing', 'order_not_payable', 'waiting', 'error') \
               AND last_seen_ms + LEAST(60000 * (1::bigint << LEAST(times_seen - 1, 11)::int), 86400000) <= $2 \
             ORDER BY last_seen_ms LIMIT $3",
        )
        .bind(account)
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(StoreError::from))
            .collect()
    }
}

fn row_to_ledger(r: &PgRow) -> Result<LedgerRow, StoreError> {
    StoredRow::from_row(r)?.into_row()
}

/// [`Decisions::op_and_order`]'s statement: SQLite's three parts, each a parenthesised query
/// (PostgreSQL's way of giving a part of a UNION its own ORDER BY and LIMIT).
fn op_and_order_sql() -> String {
    format!(
        "(SELECT {COLUMNS}, 0 AS which FROM operations WHERE account = $1 AND uid = $2) \
         UNION ALL \
         (SELECT {COLUMNS}, 1 AS which FROM operations \
          WHERE sales_order = $3 AND booked_ms >= $5 \
            AND decision IN ('booked_initial', 'booked_additional') LIMIT 1) \
         UNION ALL \
         (SELECT {COLUMNS}, 2 AS which FROM operations \
          WHERE sales_order = $3 AND NOT (account = $1 AND uid = $2) \
            AND decision IN ({holding}) \
            AND (op_created_ms < $4 OR (op_created_ms = $4 AND uid < $2)) \
          ORDER BY op_created_ms, uid LIMIT 1)",
        holding = holding_decisions_sql()
    )
}

/// [`Decisions::views`]'s statement: [`op_and_order_sql`]'s three parts, each a `LATERAL`
/// query per question of the JSON array `$2` (`k` its index from 0).
fn views_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "WITH q AS (SELECT (t.n - 1)::bigint AS k, t.v ->> 'u' AS u, t.v ->> 'o' AS so, \
                        (t.v ->> 'c')::bigint AS c, (t.v ->> 'b')::bigint AS b \
                        FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS t(v, n)) \
             SELECT q.k, 0 AS which, x.* FROM q CROSS JOIN LATERAL \
               (SELECT {COLUMNS} FROM operations WHERE account = $1 AND uid = q.u) AS x \
             UNION ALL \
             SELECT q.k, 1 AS which, x.* FROM q CROSS JOIN LATERAL \
               (SELECT {COLUMNS} FROM operations \
                WHERE sales_order = q.so AND booked_ms >= q.b \
                  AND decision IN ('booked_initial', 'booked_additional') LIMIT 1) AS x \
             UNION ALL \
             SELECT q.k, 2 AS which, x.* FROM q CROSS JOIN LATERAL \
               (SELECT {COLUMNS} FROM operations \
                WHERE sales_order = q.so AND NOT (account = $1 AND uid = q.u) \
                  AND decision IN ({holding}) \
                  AND (op_created_ms < q.c OR (op_created_ms = q.c AND uid < q.u)) \
                ORDER BY op_created_ms, uid LIMIT 1) AS x",
            holding = holding_decisions_sql()
        )
    })
}

/// The upsert of one ledger row. A booked row keeps its decision, reason and entry: a later
/// "already_loaded" (or a refund, which only replaces the reason with a warning) must not make it
/// look unbooked. SQLite's statement, with the amount cast to NUMERIC.
fn upsert(rec: &Record) -> sqlx::query::Query<'_, sqlx::Postgres, PgArguments> {
    sqlx::query(
        "INSERT INTO operations (account, uid, reference, sales_order, status_code, amount, currency, \
                                 decision, reason, erp_entry, op_created_ms, first_seen_ms, last_seen_ms, booked_ms) \
         VALUES ($1, $2, $3, $4, $5, $6::numeric, $7, $8, $9, $10, $11, $12, $12, \
                 CASE WHEN $8 IN ('booked_initial', 'booked_additional') THEN $12 END) \
         ON CONFLICT (account, uid) DO UPDATE SET \
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
            times_seen = operations.times_seen + 1",
    )
    .bind(&rec.account)
    .bind(&rec.uid)
    .bind(&rec.reference)
    .bind(&rec.sales_order)
    .bind(rec.status_code.map(i32::from))
    .bind(rec.amount.map(|a| a.to_string()))
    .bind(&rec.currency)
    .bind(rec.decision.as_str())
    .bind(&rec.reason)
    .bind(&rec.erp_entry)
    .bind(rec.op_created.map(ms))
    .bind(ms(rec.seen_at))
}
