//! [`Polls`] on PostgreSQL: the `watermarks` and `polls` tables (SQLite's statements, this
//! dialect). Touches no other table.
//!
//! **Invariant** enforced here, in the SQL: a watermark never moves backwards (`GREATEST`).

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgLedger, from_ms, ms};
use crate::store::{PollRecord, Polls, StoreError};

const COLUMNS: &str =
    "account, started_ms, finished_ms, window_from_ms, window_to_ms, ok, summary, error";

#[async_trait]
impl Polls for PgLedger {
    async fn watermark(&self, account: &str) -> Result<Option<Timestamp>, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT watermark_ms FROM watermarks WHERE account = $1")
                .bind(account)
                .fetch_optional(&self.pool)
                .await?;
        v.map(from_ms).transpose()
    }

    async fn set_watermark(&self, account: &str, at: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO watermarks (account, watermark_ms, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (account) DO UPDATE SET \
               watermark_ms = GREATEST(watermarks.watermark_ms, excluded.watermark_ms), \
               updated_ms = excluded.updated_ms",
        )
        .bind(account)
        .bind(ms(at))
        .bind(ms(Timestamp::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn record_poll(&self, p: &PollRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO polls (account, started_ms, finished_ms, window_from_ms, window_to_ms, ok, summary, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&p.account)
        .bind(ms(p.started))
        .bind(ms(p.finished))
        .bind(ms(p.window_from))
        .bind(ms(p.window_to))
        .bind(p.ok)
        .bind(&p.summary)
        .bind(&p.error)
        .execute(&self.pool)
        .await?;
        // Keep the history bounded (the latest 1000 polls of the account).
        sqlx::query(
            "DELETE FROM polls WHERE account = $1 AND id <= (SELECT MAX(id) FROM polls WHERE account = $1) - 1000",
        )
        .bind(&p.account)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn polls(&self, account: &str, limit: i64) -> Result<Vec<PollRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM polls WHERE account = $1 ORDER BY id DESC LIMIT $2"
        )))
        .bind(account)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_poll).collect()
    }

    async fn last_good_poll(&self, account: &str) -> Result<Option<PollRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM polls WHERE account = $1 AND ok ORDER BY id DESC LIMIT 1"
        )))
        .bind(account)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_to_poll).transpose()
    }
}

fn row_to_poll(r: &PgRow) -> Result<PollRecord, StoreError> {
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
