//! SQL text and row mapping of the SQLite ledger (times are epoch ms, amounts decimal text).

use std::str::FromStr;

use jiff::Timestamp;
use rust_decimal::Decimal;
use sqlx::Row;

use crate::domain::DecisionKind;
use crate::store::{LedgerRow, PollRecord, Record, StoreError};

pub(super) const COLUMNS: &str = "account, uid, reference, sales_order, status_code, amount, currency, decision, reason, erp_entry, guard_value, first_seen_ms, last_seen_ms, times_seen";

pub(super) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

pub(super) fn from_ms(v: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn row_to_ledger(r: &sqlx::sqlite::SqliteRow) -> Result<LedgerRow, StoreError> {
    let decision: String = r.try_get("decision")?;
    let amount: Option<String> = r.try_get("amount")?;
    Ok(LedgerRow {
        account: r.try_get("account")?,
        uid: r.try_get("uid")?,
        reference: r.try_get("reference")?,
        sales_order: r.try_get("sales_order")?,
        status_code: r
            .try_get::<Option<i64>, _>("status_code")?
            .map(|c| c as u16),
        amount: amount
            .map(|a| {
                Decimal::from_str(&a).map_err(|e| StoreError::Corrupt(format!("amount {a}: {e}")))
            })
            .transpose()?,
        currency: r.try_get("currency")?,
        decision: DecisionKind::parse(&decision)
            .ok_or_else(|| StoreError::Corrupt(format!("decision {decision:?}")))?,
        reason: r.try_get("reason")?,
        erp_entry: r.try_get("erp_entry")?,
        guard_value: r.try_get("guard_value")?,
        first_seen: from_ms(r.try_get("first_seen_ms")?)?,
        last_seen: from_ms(r.try_get("last_seen_ms")?)?,
        times_seen: r.try_get("times_seen")?,
    })
}

/// [`Ledger::op_and_order`]'s statement. Each part must use an index (a test checks the plan):
/// it runs before every booking.
pub(super) fn op_and_order_sql() -> String {
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
        holding = crate::store::holding_decisions_sql()
    )
}

/// The upsert of one ledger row. A booked row keeps its decision, reason and entry: a later
/// "already_loaded" (or a refund, which only replaces the reason with a warning) must not make it
/// look unbooked.
pub(super) fn upsert(
    rec: &Record,
) -> sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    sqlx::query(
            "INSERT INTO operations (account, uid, reference, sales_order, status_code, amount, currency, \
                                     decision, reason, erp_entry, op_created_ms, first_seen_ms, last_seen_ms, booked_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, \
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
        .bind(rec.status_code.map(i64::from))
        .bind(rec.amount.map(|a| a.to_string()))
        .bind(&rec.currency)
        .bind(rec.decision.as_str())
        .bind(&rec.reason)
        .bind(&rec.erp_entry)
        .bind(rec.op_created.map(ms))
        .bind(ms(rec.seen_at))
}

pub(super) fn row_to_poll(r: &sqlx::sqlite::SqliteRow) -> Result<PollRecord, StoreError> {
    Ok(PollRecord {
        account: r.try_get("account")?,
        started: from_ms(r.try_get("started_ms")?)?,
        finished: from_ms(r.try_get("finished_ms")?)?,
        window_from: from_ms(r.try_get("window_from_ms")?)?,
        window_to: from_ms(r.try_get("window_to_ms")?)?,
        ok: r.try_get("ok")?,
        summary: r.try_get("summary")?,
        error: r.try_get("error")?,
    })
}
