//! [`Tokens`] on SQLite: the `oauth_tokens` table of rotating OAuth refresh tokens.
//!
//! Owns every statement on `oauth_tokens` and the mapping of its row. Must not touch the other
//! tables (`operations`, `watermarks`, `polls`, `inbox`, `claims`, `poll_leases`), nor decide when
//! a token is refreshed (`source::mercadopago::rotation` does). Each method first checks the
//! file's identity (`self.same_file()`).
//!
//! **Invariants** enforced here, each in one statement (so under SQLite's write lock, with no
//! read-then-write gap): a first token is stored only where none is (`ON CONFLICT DO NOTHING`),
//! and a replacement lands only over the version it was read at (`WHERE version = $n`), raising
//! it by one. The token is bound as a parameter and never formatted into a message: sqlx's errors
//! do not quote bound values.

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;

use super::{SqliteLedger, from_ms, ms};
use crate::store::{StoreError, StoredToken, Tokens};

#[async_trait]
impl Tokens for SqliteLedger {
    async fn refresh_token(&self, account: &str) -> Result<Option<StoredToken>, StoreError> {
        self.same_file()?;
        let row = sqlx::query(
            "SELECT refresh_token, version, seed, updated_ms FROM oauth_tokens WHERE account = $1",
        )
        .bind(account)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredToken {
                refresh_token: SecretString::from(r.try_get::<String, _>(0)?),
                version: r.try_get(1)?,
                seed: r.try_get(2)?,
                updated: from_ms(r.try_get(3)?)?,
            })
        })
        .transpose()
    }

    async fn replace_refresh_token(
        &self,
        account: &str,
        expected: Option<i64>,
        token: &SecretString,
        seed: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.same_file()?;
        // One statement, committed on its own (autocommit) before this returns — and synced:
        // the ledger runs WAL with `synchronous = NORMAL`, whose commits survive a crash of
        // paysync but not of the machine until a checkpoint. A lost refresh token locks the
        // account out, so this connection syncs its commit (`FULL`) and goes back to NORMAL.
        let mut conn = self.pool.acquire().await?;
        sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await?;
        let r =
            match expected {
                None => sqlx::query(
                    "INSERT INTO oauth_tokens (account, refresh_token, version, seed, updated_ms) \
                     VALUES ($1, $2, 1, $3, $4) ON CONFLICT (account) DO NOTHING",
                )
                .bind(account)
                .bind(token.expose_secret())
                .bind(seed)
                .bind(ms(now))
                .execute(&mut *conn)
                .await,
                Some(version) => sqlx::query(
                    "UPDATE oauth_tokens SET refresh_token = $2, version = version + 1, seed = $3, \
                     updated_ms = $4 WHERE account = $1 AND version = $5",
                )
                .bind(account)
                .bind(token.expose_secret())
                .bind(seed)
                .bind(ms(now))
                .bind(version)
                .execute(&mut *conn)
                .await,
            };
        let reset = sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await;
        let r = r?;
        if reset.is_err() {
            // A connection left at FULL is only slower; drop it rather than keep it so.
            conn.detach();
        }
        Ok(r.rows_affected() == 1)
    }
}
