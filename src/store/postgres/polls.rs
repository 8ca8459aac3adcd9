//! [`Polls`] on PostgreSQL: the `watermarks`, `poll_leases` and `polls` tables (SQLite's
//! statements, this dialect). Touches no other table.
//!
//! **Invariants** enforced here, in the SQL: a watermark never moves backwards (`GREATEST`), and
//! moves only under the current poll lease (`set_watermark` locks the lease row it checks).

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgLedger, from_ms, ms};
use crate::store::{PollLease, PollRecord, Polls, StoreError};

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

    async fn set_watermark(&self, lease: &PollLease, at: Timestamp) -> Result<bool, StoreError> {
        // The lease row is locked (FOR UPDATE) for the statement's transaction: a takeover
        // committed meanwhile is re-read and fails the check (READ COMMITTED re-evaluates a
        // locked row's condition on its newest version), and one that comes later waits for
        // this write to commit, so it is either before (refused) or after (counted) the move.
        let r = sqlx::query(
            "WITH held AS (SELECT 1 FROM poll_leases \
                           WHERE account = $1 AND holder = $4 AND token = $5 FOR UPDATE) \
             INSERT INTO watermarks (account, watermark_ms, updated_ms) SELECT $1, $2, $3 FROM held \
             ON CONFLICT (account) DO UPDATE SET \
               watermark_ms = GREATEST(watermarks.watermark_ms, excluded.watermark_ms), \
               updated_ms = excluded.updated_ms",
        )
        .bind(&lease.account)
        .bind(ms(at))
        .bind(ms(Timestamp::now()))
        .bind(&lease.holder)
        .bind(lease.token)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn take_poll_lease(
        &self,
        account: &str,
        holder: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Option<PollLease>, StoreError> {
        // Taken only when released or lapsed — never re-entrant, not even for the same holder:
        // one poll of an account at a time. Every take raises the token.
        let token: Option<i64> = sqlx::query_scalar(
            "INSERT INTO poll_leases (account, holder, token, expires_ms) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (account) DO UPDATE SET \
               holder = excluded.holder, token = poll_leases.token + 1, expires_ms = excluded.expires_ms \
             WHERE poll_leases.holder IS NULL OR poll_leases.expires_ms < $4 \
             RETURNING token",
        )
        .bind(account)
        .bind(holder)
        .bind(ms(now) + ttl.as_millis() as i64)
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?;
        Ok(token.map(|token| PollLease {
            account: account.to_string(),
            holder: holder.to_string(),
            token,
        }))
    }

    async fn renew_poll_lease(
        &self,
        lease: &PollLease,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE poll_leases SET expires_ms = $4 WHERE account = $1 AND holder = $2 AND token = $3",
        )
        .bind(&lease.account)
        .bind(&lease.holder)
        .bind(lease.token)
        .bind(ms(now) + ttl.as_millis() as i64)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn release_poll_lease(&self, lease: &PollLease) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE poll_leases SET holder = NULL, expires_ms = 0 \
             WHERE account = $1 AND holder = $2 AND token = $3",
        )
        .bind(&lease.account)
        .bind(&lease.holder)
        .bind(lease.token)
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
