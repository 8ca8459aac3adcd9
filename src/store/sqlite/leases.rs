//! [`Leases`] on SQLite: the `claims` table of cross-process claims.
//!
//! Owns every statement on `claims`. Must not touch the other tables (`operations`, `watermarks`,
//! `polls`, `inbox`), nor decide when a claim may be taken over (`crate::claims` does). Each
//! method first checks the file's identity (`self.same_file()`).
//!
//! **Invariants** enforced here, each in one statement: a claim is taken only when free, expired,
//! or already the holder's (the upsert's `WHERE`), and renewed or released only by its holder.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;

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
        .bind(json_array(keys))
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
        .bind(json_array(keys))
        .bind(holder)
        .bind(ms(now) + ttl.as_millis() as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
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
