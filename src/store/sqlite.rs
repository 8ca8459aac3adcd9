//! The SQLite ledger: one file, WAL mode, created on first use (mode 0600, see `file.rs`).
//!
//! WAL lets `paysync sync` and the daemon share the file (readers never block the writer);
//! `busy_timeout` makes a second writer wait instead of failing. Amounts are stored as canonical
//! decimal text because sqlx's decimal support does not cover SQLite.
//!
//! Storage trouble: every method first checks that the path still names the file opened
//! (`file.rs`: a deleted or replaced ledger fails closed), and write transactions go through
//! `write_tx.rs`, which never pools a connection with a transaction open (a full disk once left
//! sqlx's transaction depth stuck, and every later claim failed).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{InboxItem, Ledger, LedgerRow, OrderView, PollRecord, Record, StoreError};
use crate::domain::DecisionKind;
use crate::domain::EarlierPayment;

mod file;
mod sql;
mod write_tx;

use file::LedgerFile;
use sql::{COLUMNS, from_ms, ms, op_and_order_sql, row_to_ledger, row_to_poll, upsert};
use write_tx::WriteTx;

#[derive(Clone)]
pub struct SqliteLedger {
    pool: SqlitePool,
    /// The file opened (`None` in memory): checked before every use, see `file.rs`.
    file: Option<Arc<LedgerFile>>,
}

impl SqliteLedger {
    /// Open the ledger, creating it (mode 0600) if missing.
    pub async fn open(url: &str) -> Result<SqliteLedger, StoreError> {
        Self::open_with(url, true).await
    }

    /// Open an existing ledger; [`StoreError::Missing`] if there is none.
    pub async fn open_existing(url: &str) -> Result<SqliteLedger, StoreError> {
        Self::open_with(url, false).await
    }

    async fn open_with(url: &str, create: bool) -> Result<SqliteLedger, StoreError> {
        let bad = |message: String| StoreError::Open {
            url: super::redact_url(url),
            message,
        };
        let opts = SqliteConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;
        let path = opts.get_filename().to_path_buf();
        let in_memory = path.as_os_str() == ":memory:" || url.contains("mode=memory");
        if !in_memory {
            if create {
                // Before SQLite creates it with the umask's mode (0644 under the usual 022).
                file::create_private(&path)
                    .map_err(|e| bad(format!("cannot create {}: {e}", path.display())))?;
            } else if !path.exists() {
                return Err(StoreError::Missing {
                    path: path.display().to_string(),
                });
            }
        }
        let opts = opts
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            // A local file cannot drop a connection: skip sqlx's ping before every acquire
            // (it is an extra round trip to the connection's worker thread).
            .test_before_acquire(false)
            .connect_with(opts)
            .await
            .map_err(|e| bad(e.to_string()))?;
        // The file SQLite just opened: what the path must keep naming.
        let opened = if in_memory {
            None
        } else {
            let f = LedgerFile::of(&path)
                .map_err(|e| bad(format!("cannot stat {}: {e}", path.display())))?;
            Some(Arc::new(f))
        };
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(SqliteLedger { pool, file: opened })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The path still names the file that was opened (fail closed otherwise).
    fn same_file(&self) -> Result<(), StoreError> {
        match &self.file {
            Some(f) => f.check(),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Ledger for SqliteLedger {
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
        self.same_file()?;
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
        self.same_file()?;
        upsert(rec).execute(&self.pool).await?;
        Ok(())
    }

    async fn reopen_for_rebook(
        &self,
        rec: &Record,
        guard_value: Option<&str>,
        cancelled: &[String],
    ) -> Result<bool, StoreError> {
        self.same_file()?;
        let cancelled = serde_json::to_string(cancelled).expect("strings serialize");
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
        .bind(cancelled)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_many(&self, recs: &[Record]) -> Result<(), StoreError> {
        if recs.is_empty() {
            return Ok(());
        }
        self.same_file()?;
        let mut tx = WriteTx::begin(&self.pool).await?;
        let work = async {
            for rec in recs {
                upsert(rec).execute(tx.conn()).await?;
            }
            Ok(())
        }
        .await;
        tx.finish(work).await
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
            match which {
                0 => view.row = Some(row_to_ledger(r)?),
                1 => {
                    view.booked_entry = Some(
                        r.try_get::<Option<String>, _>("erp_entry")?
                            .unwrap_or_default(),
                    )
                }
                _ => {
                    let row = row_to_ledger(r)?;
                    view.earlier_unresolved = Some(EarlierPayment {
                        uid: row.uid,
                        decision: row.decision,
                    });
                }
            }
        }
        Ok(view)
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
        let names = serde_json::to_string(orders).expect("strings serialize");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT o.uid, o.sales_order FROM json_each($2) AS j \
             JOIN operations AS o INDEXED BY operations_unresolved_by_order ON o.sales_order = j.value \
             WHERE o.account = $1 AND o.decision IN ({holding}) \
             ORDER BY o.op_created_ms, o.uid LIMIT $3",
            holding = super::holding_decisions_sql(),
        )))
        .bind(account)
        .bind(names)
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

    async fn ping(&self) -> Result<(), StoreError> {
        self.same_file()?;
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
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

    async fn inbox_requeue_running(&self) -> Result<u64, StoreError> {
        self.same_file()?;
        let r = sqlx::query(
            "UPDATE inbox SET state = 'pending', lease_until_ms = NULL WHERE state = 'running'",
        )
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn watermark(&self, account: &str) -> Result<Option<Timestamp>, StoreError> {
        self.same_file()?;
        let row = sqlx::query("SELECT watermark_ms FROM watermarks WHERE account = $1")
            .bind(account)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| from_ms(r.get(0))).transpose()
    }

    async fn set_watermark(&self, account: &str, at: Timestamp) -> Result<(), StoreError> {
        self.same_file()?;
        sqlx::query(
            "INSERT INTO watermarks (account, watermark_ms, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (account) DO UPDATE SET \
               watermark_ms = MAX(watermarks.watermark_ms, excluded.watermark_ms), \
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
        // Keep the history bounded.
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
        now: Timestamp,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<InboxItem>, StoreError> {
        // BEGIN IMMEDIATE: take the write lock up front so two processes never claim the same row
        // (a deferred transaction upgrading to a write can fail with SQLITE_BUSY at once).
        self.same_file()?;
        let mut tx = WriteTx::begin(&self.pool).await?;
        let work = sqlx::query(
            "UPDATE inbox SET state = 'running', attempts = attempts + 1, lease_until_ms = $1 \
             WHERE id IN (SELECT id FROM inbox \
                          WHERE (state = 'pending' AND run_after_ms <= $2) \
                             OR (state = 'running' AND lease_until_ms < $2) \
                          ORDER BY id LIMIT $3) \
             RETURNING id, account, uid, received_ms, attempts, hint",
        )
        .bind(ms(now) + lease.as_millis() as i64)
        .bind(ms(now))
        .bind(limit)
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

    async fn inbox_done(&self, id: i64, now: Timestamp) -> Result<(), StoreError> {
        self.same_file()?;
        sqlx::query(
            "UPDATE inbox SET state = 'done', done_ms = $2, lease_until_ms = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn inbox_retry(
        &self,
        id: i64,
        run_after: Timestamp,
        error: &str,
    ) -> Result<(), StoreError> {
        self.same_file()?;
        sqlx::query(
            "UPDATE inbox SET state = 'pending', run_after_ms = $2, last_error = $3, lease_until_ms = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(ms(run_after))
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn inbox_dead(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.same_file()?;
        sqlx::query(
            "UPDATE inbox SET state = 'dead', last_error = $2, lease_until_ms = NULL, done_ms = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(error)
        .bind(ms(Timestamp::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
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

    async fn try_claim(
        &self,
        account: &str,
        key: &str,
        holder: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Option<Option<Timestamp>>, StoreError> {
        let taken = self
            .try_claim_many(account, &[key.to_string()], holder, now, ttl)
            .await?;
        Ok(taken.get(key).copied())
    }

    async fn renew_claims(
        &self,
        account: &str,
        keys: &[String],
        holder: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Vec<String>, StoreError> {
        self.same_file()?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "UPDATE claims SET expires_ms = $4 \
             WHERE account = $1 AND holder = $3 AND key IN (SELECT value FROM json_each($2)) \
             RETURNING key",
        )
        .bind(account)
        .bind(serde_json::to_string(keys).expect("strings"))
        .bind(holder)
        .bind(ms(now) + ttl.as_millis() as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    async fn try_claim_many(
        &self,
        account: &str,
        keys: &[String],
        holder: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<HashMap<String, Option<Timestamp>>, StoreError> {
        self.same_file()?;
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        // SET expressions read the row as it was: `prev_expires_ms` keeps the previous holder's
        // expiry when the claim changes hands (the successor waits out its writes).
        let rows = sqlx::query(
            "INSERT INTO claims (account, key, holder, expires_ms, prev_expires_ms) \
             SELECT $1, value, $3, $4, NULL FROM json_each($2) WHERE true \
             ON CONFLICT (account, key) DO UPDATE SET \
                prev_expires_ms = CASE WHEN claims.holder = excluded.holder THEN NULL ELSE claims.expires_ms END, \
                holder = excluded.holder, expires_ms = excluded.expires_ms \
             WHERE claims.holder = excluded.holder OR claims.expires_ms < $5 \
             RETURNING key, prev_expires_ms",
        )
        .bind(account)
        .bind(serde_json::to_string(keys).expect("strings"))
        .bind(holder)
        .bind(ms(now) + ttl.as_millis() as i64)
        .bind(ms(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let prev: Option<i64> = r.try_get(1)?;
                Ok((r.try_get(0)?, prev.map(from_ms).transpose()?))
            })
            .collect()
    }

    async fn release_claims(
        &self,
        account: &str,
        keys: &[String],
        holder: &str,
    ) -> Result<(), StoreError> {
        self.same_file()?;
        if keys.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "DELETE FROM claims WHERE account = $1 AND holder = $3 AND key IN (SELECT value FROM json_each($2))",
        )
        .bind(account)
        .bind(serde_json::to_string(keys).expect("strings"))
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn claim_holder(&self, account: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.same_file()?;
        let row = sqlx::query("SELECT holder FROM claims WHERE account = $1 AND key = $2")
            .bind(account)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn steal_claim(
        &self,
        account: &str,
        key: &str,
        dead_holder: &str,
        holder: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.same_file()?;
        let r = sqlx::query(
            "UPDATE claims SET holder = $4, expires_ms = $5 WHERE account = $1 AND key = $2 AND holder = $3",
        )
        .bind(account)
        .bind(key)
        .bind(dead_holder)
        .bind(holder)
        .bind(ms(now) + ttl.as_millis() as i64)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn release_claim(
        &self,
        account: &str,
        key: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        self.same_file()?;
        sqlx::query("DELETE FROM claims WHERE account = $1 AND key = $2 AND holder = $3")
            .bind(account)
            .bind(key)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod trouble_tests;

#[cfg(test)]
mod tests;
