//! [`Leases`] on PostgreSQL: the `claims` table of cross-process claims (SQLite's statements,
//! this dialect). Touches no other table, nor decides when a claim may be taken over
//! (`crate::claims` does).
//!
//! **Invariants** enforced here, each in one statement: a claim is taken only when free, expired,
//! or already the holder's (the upsert's `WHERE`), and renewed or released only by its holder.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;

use super::{PgLedger, from_ms, ms};
use crate::store::{Leases, StoreError};

#[async_trait]
impl Leases for PgLedger {
    async fn try_claim_many(
        &self,
        account: &str,
        keys: &[String],
        holder: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<HashMap<String, Option<Timestamp>>, StoreError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        // SET expressions read the row as it was: `prev_expires_ms` keeps the previous holder's
        // expiry when the claim changes hands. DISTINCT: PostgreSQL refuses an upsert that would
        // touch one row twice (SQLite takes a repeated key as re-entrant).
        let rows = sqlx::query(
            "INSERT INTO claims (account, key, holder, expires_ms, prev_expires_ms) \
             SELECT DISTINCT $1, k, $3, $4::bigint, NULL::bigint FROM unnest($2::text[]) AS k \
             ON CONFLICT (account, key) DO UPDATE SET \
                prev_expires_ms = CASE WHEN claims.holder = excluded.holder THEN NULL ELSE claims.expires_ms END, \
                holder = excluded.holder, expires_ms = excluded.expires_ms \
             WHERE claims.holder = excluded.holder OR claims.expires_ms < $5 \
             RETURNING key, prev_expires_ms",
        )
        .bind(account)
        .bind(keys)
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
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "UPDATE claims SET expires_ms = $4 \
             WHERE account = $1 AND holder = $3 AND key = ANY($2) \
             RETURNING key",
        )
        .bind(account)
        .bind(keys)
        .bind(holder)
        .bind(ms(now) + ttl.as_millis() as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(StoreError::from))
            .collect()
    }

    async fn release_claims(
        &self,
        account: &str,
        keys: &[String],
        holder: &str,
    ) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        sqlx::query("DELETE FROM claims WHERE account = $1 AND holder = $3 AND key = ANY($2)")
            .bind(account)
            .bind(keys)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn claim_holder(&self, account: &str, key: &str) -> Result<Option<String>, StoreError> {
        let v: Option<String> =
            sqlx::query_scalar("SELECT holder FROM claims WHERE account = $1 AND key = $2")
                .bind(account)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(v)
    }
}
