//! [`Polls`] on SQLite: the `watermarks`, `poll_leases` and `polls` tables.
//!
//! Owns every statement on those two tables and the mapping of a poll row. Must not touch the
//! other tables (`operations`, `inbox`, `claims`). Each method first checks the file's identity
//! (`self.same_file()`).
//!
//! **Invariants** enforced here, in the SQL: a watermark never moves backwards (`MAX` in the
//! upsert), and moves only under the current poll lease (checked in the same statement).

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;

use super::{SqliteLedger, from_ms, ms};
use crate::store::{PollLease, PollRecord, Polls, StoreError};

#[async_trait]
impl Polls for SqliteLedger {
    async fn watermark(&self, account: &str) -> Result<Option<Timestamp>, StoreError> {
        self.same_file()?;
        let row = sqlx::query("SELECT watermark_ms FROM watermarks WHERE account = $1")
            .bind(account)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| from_ms(r.get(0))).transpose()
    }

    async fn set_watermark(&self, lease: &PollLease, at: Timestamp) -> Result<bool, StoreError> {
        self.same_file()?;
        // One statement under SQLite's write lock: the lease row cannot change between the check
        // and the write.
        let r = sqlx::query(
            "INSERT INTO watermarks (account, watermark_ms, updated_ms) SELECT $1, $2, $3 \
             WHERE EXISTS (SELECT 1 FROM poll_leases WHERE account = $1 AND holder = $4 AND token = $5) \
             ON CONFLICT (account) DO UPDATE SET \
               watermark_ms = MAX(watermarks.watermark_ms, excluded.watermark_ms), \
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
        self.same_file()?;
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
        self.same_file()?;
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
        self.same_file()?;
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
        self.same_file()?;
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
        self.same_file()?;
        let rows = sqlx::query(
            "SELECT account, started_ms, finished_ms, window_from_ms, window_to_ms, ok, summary, error \
             FROM polls WHERE account = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(account)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_poll).collect()
    }

    async fn last_good_poll(&self, account: &str) -> Result<Option<PollRecord>, StoreError> {
        self.same_file()?;
        let row = sqlx::query(
            "SELECT account, started_ms, finished_ms, window_from_ms, window_to_ms, ok, summary, error \
             FROM polls WHERE account = $1 AND ok = 1 ORDER BY id DESC LIMIT 1",
        )
        .bind(account)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_to_poll).transpose()
    }
}

fn row_to_poll(r: &sqlx::sqlite::SqliteRow) -> Result<PollRecord, StoreError> {
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
