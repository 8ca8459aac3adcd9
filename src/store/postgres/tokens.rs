//! [`Tokens`] on PostgreSQL: the `oauth_tokens` table of rotating OAuth refresh tokens (SQLite's
//! statements, this dialect). Touches no other table, nor decides when a token is refreshed
//! (`source::mercadopago::rotation` does).
//!
//! **Invariants** enforced here, each in one statement: a first token is stored only where none
//! is (`ON CONFLICT DO NOTHING`: a concurrent insert of the same account waits on the primary key,
//! then does nothing), and a replacement lands only over the version it was read at
//! (`WHERE version = $n`: of two concurrent updates from one version, the second waits for the
//! first's row lock, re-checks the row's newest version under READ COMMITTED, and matches
//! nothing). The token is bound as a parameter and never formatted into a message: sqlx's errors
//! do not quote bound values.

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;

use super::{PgLedger, from_ms, ms};
use crate::store::{StoreError, StoredToken, Tokens};

#[async_trait]
impl Tokens for PgLedger {
    async fn refresh_token(&self, account: &str) -> Result<Option<StoredToken>, StoreError> {
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
        // One statement, committed on its own (autocommit) before this returns.
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
                .execute(&self.pool)
                .await?,
                Some(version) => sqlx::query(
                    "UPDATE oauth_tokens SET refresh_token = $2, version = version + 1, seed = $3, \
                     updated_ms = $4 WHERE account = $1 AND version = $5",
                )
                .bind(account)
                .bind(token.expose_secret())
                .bind(seed)
                .bind(ms(now))
                .bind(version)
                .execute(&self.pool)
                .await?,
            };
        Ok(r.rows_affected() == 1)
    }
}
