//! Polls: how far each account's polling has examined (its watermark) and the history of polls
//! (for `paysync status` and `/healthz`).
//!
//! Owns the [`Polls`] trait and [`PollRecord`]. It must not know any SQL dialect (each backend's
//! `polls.rs` holds its statements) nor touch operation rows, the inbox or claims.
//!
//! **Invariants** (enforced by every backend, each in one statement):
//! - a watermark never moves backwards;
//! - **one poller per account**: a scheduled poll runs under a [`PollLease`] with an expiry, taken
//!   only when free or expired; every take hands out a new fencing token (one more than the last);
//! - **fenced**: the watermark moves only for the current lease's holder *and* token, so a holder
//!   whose lease lapsed and was taken over (paused, cut off) cannot move it, even if it wakes up
//!   and finishes its poll later.
//!
//! That it moves only after a whole window was listed and decided is the daemon's rule
//! (`daemon::poll_account`), not the store's.

use async_trait::async_trait;
use jiff::Timestamp;

use super::StoreError;

/// One poll of one account.
#[derive(Debug, Clone, PartialEq)]
pub struct PollRecord {
    pub account: String,
    pub started: Timestamp,
    pub finished: Timestamp,
    pub window_from: Timestamp,
    pub window_to: Timestamp,
    pub ok: bool,
    pub summary: String,
    pub error: Option<String>,
}

/// The right to poll one account now, until it expires unless renewed. `token` fences the
/// watermark: a later take of the same account, by anyone, gets a greater one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollLease {
    pub account: String,
    pub holder: String,
    pub token: i64,
}

#[async_trait]
pub trait Polls: Send + Sync {
    /// The instant up to which the account's polling has examined updated operations.
    async fn watermark(&self, account: &str) -> Result<Option<Timestamp>, StoreError>;
    /// Move the watermark of `lease`'s account to `at` (never backwards), only if `lease` is still
    /// the current one (its holder and token). False: the lease was taken over; nothing moved.
    async fn set_watermark(&self, lease: &PollLease, at: Timestamp) -> Result<bool, StoreError>;
    /// Take the account's poll lease for `ttl` if nobody holds it or its holder's lapsed.
    /// `None` while another holder's lease runs.
    async fn take_poll_lease(
        &self,
        account: &str,
        holder: &str,
        now: Timestamp,
        ttl: std::time::Duration,
    ) -> Result<Option<PollLease>, StoreError>;
    /// Extend `lease` to `now + ttl`. False when it was taken over meanwhile.
    async fn renew_poll_lease(
        &self,
        lease: &PollLease,
        now: Timestamp,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError>;
    /// Let go of `lease` (the next take needs no wait); a lease taken over is left alone.
    async fn release_poll_lease(&self, lease: &PollLease) -> Result<(), StoreError>;
    /// Append a poll to the account's history (bounded: the oldest go).
    async fn record_poll(&self, poll: &PollRecord) -> Result<(), StoreError>;
    /// The latest polls of an account, newest first.
    async fn polls(&self, account: &str, limit: i64) -> Result<Vec<PollRecord>, StoreError>;
    /// The latest successful poll of an account.
    async fn last_good_poll(&self, account: &str) -> Result<Option<PollRecord>, StoreError>;
}

/// Move `account`'s watermark to `at` outside a poll, under a poll lease of its own (taken and
/// released here): for tests and tools that set up a ledger. False while an instance polls it.
pub async fn set_watermark_once(
    polls: &dyn Polls,
    account: &str,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let holder = format!("set-watermark:{:x}", fastrand::u64(..));
    let Some(lease) = polls
        .take_poll_lease(
            account,
            &holder,
            Timestamp::now(),
            std::time::Duration::from_secs(60),
        )
        .await?
    else {
        return Ok(false);
    };
    let moved = polls.set_watermark(&lease, at).await?;
    polls.release_poll_lease(&lease).await?;
    Ok(moved)
}
