//! [`Inbox`] on SQLite: the `inbox` table of webhook triggers.
//!
//! Owns every statement on `inbox`. Must not touch the other tables (`operations`, `watermarks`,
//! `polls`, `claims`): a trigger is a request to look at an operation, never a decision. Each
//! method first checks the file's identity (`self.same_file()`); the claim, which must read and
//! write in one step, goes through [`WriteTx`].
//!
//! **Invariants** enforced here: one pending-or-running trigger per `(account, uid)` (the partial
//! unique index `inbox_one_pending`, which `inbox_push` conflicts on); a trigger is claimed by one
//! worker at a time (`BEGIN IMMEDIATE` around the claim, and a lease).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;

use super::write_tx::WriteTx;
use super::{SqliteLedger, from_ms, ms};
use crate::store::inbox::{StoredTrigger, TRIGGERS_OF};
use crate::store::{Inbox, InboxItem, StoreError, TriggerRow};

#[async_trait]
impl Inbox for SqliteLedger {
    async fn inbox_push(
        &self,
        account: &str,
        uid: &str,
        received: Timestamp,
        hint: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.same_file()?;
        let r = sqlx::query(
            "INSERT INTO inbox (account, uid, received_ms, run_after_ms, hint) VALUES ($1, $2, $3, $3, $4) \
             ON CONFLICT (account, uid) WHERE state IN ('pending', 'running') DO NOTHING",
        )
        .bind(account)
        .bind(uid)
        .bind(ms(received))
        .bind(hint)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn inbox_ignore(
        &self,
        account: &str,
        uid: &str,
        received: Timestamp,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.same_file()?;
        sqlx::query(
            "INSERT INTO inbox (account, uid, received_ms, run_after_ms, state, last_error, done_ms) \
             VALUES ($1, $2, $3, $3, 'ignored', $4, $3)",
        )
        .bind(account)
        .bind(uid)
        .bind(ms(received))
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn inbox_claim(
        &self,
        holder: &str,
        now: Timestamp,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<InboxItem>, StoreError> {
        // BEGIN IMMEDIATE: take the write lock up front so two processes never claim the same row
        // (a deferred transaction upgrading to a write can fail with SQLITE_BUSY at once).
        self.same_file()?;
        let mut tx = WriteTx::begin(&self.pool).await?;
        let work = sqlx::query(
            "UPDATE inbox SET state = 'running', attempts = attempts + 1, lease_until_ms = $1, holder = $4 \
             WHERE id IN (SELECT id FROM inbox \
                          WHERE (state = 'pending' AND run_after_ms <= $2) \
                             OR (state = 'running' AND lease_until_ms < $2) \
                          ORDER BY id LIMIT $3) \
             RETURNING id, account, uid, received_ms, attempts, hint",
        )
        .bind(ms(now) + lease.as_millis() as i64)
        .bind(ms(now))
        .bind(limit)
        .bind(holder)
        .fetch_all(tx.conn())
        .await
        .map_err(StoreError::from);
        let rows = tx.finish(work).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(InboxItem {
                id: r.try_get("id")?,
                account: r.try_get("account")?,
                uid: r.try_get("uid")?,
                received: from_ms(r.try_get("received_ms")?)?,
                attempts: r.try_get("attempts")?,
                hint: r.try_get("hint")?,
            });
        }
        out.sort_by_key(|i| i.id);
        Ok(out)
    }

    async fn inbox_renew(
        &self,
        ids: &[i64],
        holder: &str,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Vec<i64>, StoreError> {
        self.same_file()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // SQLite has no array parameter: the ids travel as one JSON array.
        let ids = serde_json::to_string(ids).expect("integers serialize");
        let rows = sqlx::query(
            "UPDATE inbox SET lease_until_ms = $3 \
             WHERE id IN (SELECT value FROM json_each($1)) AND state = 'running' AND holder = $2 \
             RETURNING id",
        )
        .bind(ids)
        .bind(holder)
        .bind(ms(now) + lease.as_millis() as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn inbox_done(
        &self,
        item: &InboxItem,
        holder: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.same_file()?;
        let r = sqlx::query(
            "UPDATE inbox SET state = 'done', done_ms = $4, lease_until_ms = NULL \
             WHERE id = $1 AND state = 'running' AND holder = $2 AND attempts = $3",
        )
        .bind(item.id)
        .bind(holder)
        .bind(item.attempts)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn inbox_retry(
        &self,
        item: &InboxItem,
        holder: &str,
        run_after: Timestamp,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.same_file()?;
        let r = sqlx::query(
            "UPDATE inbox SET state = 'pending', run_after_ms = $4, last_error = $5, lease_until_ms = NULL, holder = NULL \
             WHERE id = $1 AND state = 'running' AND holder = $2 AND attempts = $3",
        )
        .bind(item.id)
        .bind(holder)
        .bind(item.attempts)
        .bind(ms(run_after))
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn inbox_dead(
        &self,
        item: &InboxItem,
        holder: &str,
        now: Timestamp,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.same_file()?;
        let r = sqlx::query(
            "UPDATE inbox SET state = 'dead', last_error = $5, lease_until_ms = NULL, done_ms = $4 \
             WHERE id = $1 AND state = 'running' AND holder = $2 AND attempts = $3",
        )
        .bind(item.id)
        .bind(holder)
        .bind(item.attempts)
        .bind(ms(now))
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn inbox_release(&self, holder: &str) -> Result<u64, StoreError> {
        self.same_file()?;
        let r = sqlx::query(
            "UPDATE inbox SET state = 'pending', lease_until_ms = NULL, holder = NULL \
             WHERE state = 'running' AND holder = $1",
        )
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn inbox_depth(&self) -> Result<HashMap<String, i64>, StoreError> {
        self.same_file()?;
        let rows = sqlx::query(
            "SELECT account, COUNT(*) FROM inbox WHERE state IN ('pending', 'running') GROUP BY account",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn inbox_next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.same_file()?;
        let row = sqlx::query(
            "SELECT MIN(CASE WHEN state = 'pending' THEN run_after_ms ELSE lease_until_ms END) \
             FROM inbox WHERE state IN ('pending', 'running')",
        )
        .fetch_one(&self.pool)
        .await?;
        row.get::<Option<i64>, _>(0).map(from_ms).transpose()
    }

    async fn inbox_of(&self, account: &str, uid: &str) -> Result<Vec<TriggerRow>, StoreError> {
        self.same_file()?;
        let rows: Vec<StoredTrigger> = sqlx::query_as(TRIGGERS_OF)
            .bind(account)
            .bind(uid)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(TriggerRow::try_from).collect()
    }
}
