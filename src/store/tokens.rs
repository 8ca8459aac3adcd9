//! Tokens: the OAuth refresh token of each account that has one, kept in the ledger because
//! MercadoLibre and Mercado Pago refresh tokens are single-use — every refresh returns a new one
//! and kills the old, so a new token that is not stored durably *before* its access token is used
//! locks the account out for good (the seller must authorize the application again).
//!
//! Owns the [`Tokens`] trait only: when to refresh, and one refresh at a time across processes (a
//! claim on [`super::Leases`]), are `source::mercadopago::rotation`'s. Each backend's
//! `tokens.rs` holds its statements; it must not touch other tables.
//!
//! **Invariants** every backend enforces, each in one statement: a stored token only ever moves
//! forward — [`Tokens::replace_refresh_token`] writes only over the version it was read at, so of
//! two processes that refreshed from one token (which the server lets only one of succeed) no
//! stale write can overwrite a newer token. The token is a secret: it is never logged, and no
//! error of this module shows it.

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::SecretString;

use super::StoreError;

/// The account's current refresh token as the ledger has it.
#[derive(Debug, Clone)]
pub struct StoredToken {
    pub refresh_token: SecretString,
    /// Raised by one at every replacement (1 for the first stored token).
    pub version: i64,
    /// A fingerprint of the `refresh_token` in `sync.toml` this token descends from: when the
    /// configured one changes (the seller authorized again and the operator wrote the new token),
    /// the configured one wins over the stored chain.
    pub seed: String,
    pub updated: Timestamp,
}

#[async_trait]
pub trait Tokens: Send + Sync {
    /// The stored refresh token of `account`, if any.
    async fn refresh_token(&self, account: &str) -> Result<Option<StoredToken>, StoreError>;

    /// Store `token` for `account`, durably (committed when this returns `Ok(true)`), only if
    /// the stored version is still `expected` (`None`: nothing stored yet). `Ok(false)`: another
    /// process replaced it first; nothing written.
    async fn replace_refresh_token(
        &self,
        account: &str,
        expected: Option<i64>,
        token: &SecretString,
        seed: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
}
