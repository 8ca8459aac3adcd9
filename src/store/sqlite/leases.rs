//! [`Leases`] on SQLite: the `claims` table of cross-process claims.
//!
//! Owns every statement on `claims`. Must not touch the other tables (`operations`, `watermarks`,
//! `polls`, `inbox`), nor decide when a claim may be taken over (`crate::claims` does). Each
//! method first checks the file's identity (`self.same_file()`).
//!
//! **Invariants** enforced here, each in one statement: a claim is taken only when free, expired,
//! or already the holder's (the upsert's `WHERE`), and renewed or released only by its holder.
//! What a take or a renewal got is read back in the same transaction, as one row.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;

use super::write_tx::WriteTx;
use super::{SqliteLedger, from_ms, json_array, ms};
use crate::store::{Leases, StoreError};

#[async_trait]
impl Leases for SqliteLedger {
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
        let keys = json_array(keys);
        let mut tx = WriteTx::begin(&self.pool).await?;
        let work = claim_then_read(tx.conn(), account, &keys, holder, now, ttl).await;
        let taken = tx.finish(work).await?;
        taken
            .into_iter()
            .map(|(key, prev)| Ok((key, prev.map(from_ms).transpose()?)))
            .collect()
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
        let keys = json_array(keys);
        let mut tx = WriteTx::begin(&self.pool).await?;
        let work = renew_then_read(tx.conn(), account, &keys, holder, now, ttl).await;
        tx.finish(work).await
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
        .bind(json_array(keys))
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
}

/// Take the claims on `keys` (a JSON array) that are free, expired or already `holder`'s, in one
/// statement; then, in the same transaction, read which are now `holder`'s and the previous
/// holder's expiry of each, as one row.
///
/// One row, not the upsert's `RETURNING`: sqlx's worker hands a statement's rows over one at a
/// time, and a runtime waiting for them is woken for each — two thread switches a row, the
/// largest source of a `sync`'s context switches (a batch claims up to 500 orders).
async fn claim_then_read(
    conn: &mut sqlx::SqliteConnection,
    account: &str,
    keys: &str,
    holder: &str,
    now: Timestamp,
    ttl: Duration,
) -> Result<Vec<(String, Option<i64>)>, StoreError> {
    // SET expressions read the row as it was: `prev_expires_ms` keeps the previous holder's
    // expiry when the claim changes hands (the successor waits out its writes).
    sqlx::query(
        "INSERT INTO claims (account, key, holder, expires_ms, prev_expires_ms) \
         SELECT $1, value, $3, $4, NULL FROM json_each($2) WHERE true \
         ON CONFLICT (account, key) DO UPDATE SET \
            prev_expires_ms = CASE WHEN claims.holder = excluded.holder THEN NULL ELSE claims.expires_ms END, \
            holder = excluded.holder, expires_ms = excluded.expires_ms \
         WHERE claims.holder = excluded.holder OR claims.expires_ms < $5",
    )
    .bind(account)
    .bind(keys)
    .bind(holder)
    .bind(ms(now) + ttl.as_millis() as i64)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    // Every key of the list the statement did not take is held by another: the keys now
    // `holder`'s are exactly the ones it took or renewed.
    held_as_one_row(
        conn,
        "json_array(key, prev_expires_ms)",
        account,
        keys,
        holder,
    )
    .await
}

/// Extend `holder`'s claims on `keys` (a JSON array), then read which it still holds, as one
/// row (see [`claim_then_read`] for why not `RETURNING`).
async fn renew_then_read(
    conn: &mut sqlx::SqliteConnection,
    account: &str,
    keys: &str,
    holder: &str,
    now: Timestamp,
    ttl: Duration,
) -> Result<Vec<String>, StoreError> {
    sqlx::query(
        "UPDATE claims SET expires_ms = $4 \
         WHERE account = $1 AND holder = $3 AND key IN (SELECT value FROM json_each($2))",
    )
    .bind(account)
    .bind(keys)
    .bind(holder)
    .bind(ms(now) + ttl.as_millis() as i64)
    .execute(&mut *conn)
    .await?;
    held_as_one_row(conn, "key", account, keys, holder).await
}

/// `holder`'s claims among `keys` (a JSON array), each as `item` (an SQL expression over the
/// claim's columns), in one row: a JSON array read into `T`.
async fn held_as_one_row<T: serde::de::DeserializeOwned>(
    conn: &mut sqlx::SqliteConnection,
    item: &'static str,
    account: &str,
    keys: &str,
    holder: &str,
) -> Result<T, StoreError> {
    let sql = format!(
        "SELECT json_group_array({item}) FROM claims \
         WHERE account = $1 AND holder = $3 AND key IN (SELECT value FROM json_each($2))"
    );
    let held: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(account)
        .bind(keys)
        .bind(holder)
        .fetch_one(&mut *conn)
        .await?;
    serde_json::from_str(&held)
        .map_err(|e| StoreError::Corrupt(format!("claims held, as JSON: {e}")))
}
