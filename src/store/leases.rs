//! Leases: the ledger's cross-process claims — a row per `(account, key)` naming its holder, with
//! an expiry — so that processes sharing a ledger take turns on an order.
//!
//! Owns the [`Leases`] trait only: the rules that make a claim trustworthy (one heartbeat per
//! process, the re-check before each create, waiting out a previous holder's writes) are
//! `crate::claims`'s. It must not know any SQL dialect (each backend's `leases.rs` holds its
//! statements) nor touch operation rows, polls or the inbox.
//!
//! **Invariants** every backend enforces, each in one statement: a claim has one holder, and only
//! that holder renews or releases it; another takes it only once it expired
//! ([`Leases::try_claim_many`], which then returns the previous holder's expiry: its creates may
//! still commit after it). No process liveness is read: a holder that died, hangs or was cut off
//! loses its claims by not renewing them, whichever host it ran on.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use super::StoreError;

#[async_trait]
pub trait Leases: Send + Sync {
    /// Try to take the cross-process claim on `(account, key)` for `ttl`. Re-entrant for the
    /// same holder. `None` while another live holder has it; `Some(Some(t))` when it was taken
    /// over from another holder whose claim ran until `t`; `Some(None)` otherwise.
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
    /// [`Leases::try_claim`] for many keys in one statement; returns the keys taken, each with
    /// the previous holder's expiry when it was taken over.
    async fn try_claim_many(
        &self,
        account: &str,
        keys: &[String],
        holder: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<HashMap<String, Option<Timestamp>>, StoreError>;
    /// Extend `holder`'s claims among `keys` to `now + ttl`; returns the keys it still holds.
    async fn renew_claims(
        &self,
        account: &str,
        keys: &[String],
        holder: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Vec<String>, StoreError>;
    /// Drop `holder`'s claims among `keys` (others' are left alone).
    async fn release_claims(
        &self,
        account: &str,
        keys: &[String],
        holder: &str,
    ) -> Result<(), StoreError>;
    /// Who holds the claim on `(account, key)`, if anyone.
    async fn claim_holder(&self, account: &str, key: &str) -> Result<Option<String>, StoreError>;
}
