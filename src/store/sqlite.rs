//! The SQLite ledger: one file, WAL mode, created on first use.
//!
//! WAL lets `paysync sync` and the daemon share the file (readers never block the writer);
//! `busy_timeout` makes a second writer wait instead of failing. Amounts are stored as canonical
//! decimal text because sqlx's decimal support does not cover SQLite.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use rust_decimal::Decimal;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{Ledger, LedgerRow, Record, StoreError};
use crate::domain::DecisionKind;

#[derive(Clone)]
pub struct SqliteLedger {
    pool: SqlitePool,
}

impl SqliteLedger {
    pub async fn open(url: &str) -> Result<SqliteLedger, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open {
                url: url.to_string(),
                message: e.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(SqliteLedger { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

const COLUMNS: &str = "account, uid, reference, sales_order, status_code, amount, currency, decision, reason, erp_entry, first_seen_ms, last_seen_ms, times_seen";

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn from_ms(v: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn row_to_ledger(r: &sqlx::sqlite::SqliteRow) -> Result<LedgerRow, StoreError> {
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
            .map(|a| Decimal::from_str(&a).map_err(|e| StoreError::Corrupt(format!("amount {a}: {e}"))))
            .transpose()?,
        currency: r.try_get("currency")?,
        decision: DecisionKind::parse(&decision)
            .ok_or_else(|| StoreError::Corrupt(format!("decision {decision:?}")))?,
        reason: r.try_get("reason")?,
        erp_entry: r.try_get("erp_entry")?,
        first_seen: from_ms(r.try_get("first_seen_ms")?)?,
        last_seen: from_ms(r.try_get("last_seen_ms")?)?,
        times_seen: r.try_get("times_seen")?,
    })
}

#[async_trait]
impl Ledger for SqliteLedger {
    async fn rows(
        &self,
        account: &str,
        uids: &[String],
    ) -> Result<HashMap<String, LedgerRow>, StoreError> {
        let mut out = HashMap::new();
        if uids.is_empty() {
            return Ok(out);
        }
        // One statement for the whole batch: the ids travel as one JSON array parameter.
        let ids = serde_json::to_string(uids).expect("strings serialize");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM operations WHERE account = $1 AND uid IN (SELECT value FROM json_each($2))"
        )))
        .bind(account)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            let row = row_to_ledger(r)?;
            out.insert(row.uid.clone(), row);
        }
        Ok(out)
    }

    async fn booked_for_order(
        &self,
        account: &str,
        sales_order: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT erp_entry FROM operations WHERE account = $1 AND sales_order = $2 \
             AND decision IN ('booked_initial', 'booked_additional') ORDER BY first_seen_ms LIMIT 1",
        )
        .bind(account)
        .bind(sales_order)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.get::<Option<String>, _>(0).unwrap_or_default()))
    }

    async fn record(&self, rec: &Record) -> Result<(), StoreError> {
        // A booked row keeps its decision, reason and entry: a later "already_loaded" (or a
        // refund, which only adds a warning to the reason) must not make it look unbooked.
        sqlx::query(
            "INSERT INTO operations (account, uid, reference, sales_order, status_code, amount, currency, \
                                     decision, reason, erp_entry, op_created_ms, first_seen_ms, last_seen_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) \
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
        .execute(&self.pool)
        .await?;
        Ok(())
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

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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

    #[tokio::test]
    async fn booked_rows_are_never_downgraded() {
        let (_d, l) = ledger().await;
        l.record(&rec("u1", DecisionKind::BookedInitial, Some("ACC-PAY-1")))
            .await
            .unwrap();
        l.record(&rec("u1", DecisionKind::Error, None)).await.unwrap();
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
        assert_eq!(
            l.booked_for_order("main", "SAL-ORD-2026-00001").await.unwrap(),
            Some("ACC-PAY-1".into())
        );
    }

    #[tokio::test]
    async fn skips_are_updated_and_counted() {
        let (_d, l) = ledger().await;
        l.record(&rec("u1", DecisionKind::OrderMissing, None)).await.unwrap();
        l.record(&rec("u2", DecisionKind::Pending, None)).await.unwrap();
        l.record(&rec("u1", DecisionKind::BookedInitial, Some("E1"))).await.unwrap();
        let c = l.counts("main").await.unwrap();
        assert_eq!(c.get(&DecisionKind::BookedInitial), Some(&1));
        assert_eq!(c.get(&DecisionKind::Pending), Some(&1));
        assert_eq!(c.get(&DecisionKind::OrderMissing), None);
        assert!(l.counts("other").await.unwrap().is_empty());
    }
}
