//! Polls: how far each account's polling has examined (its watermark) and the history of polls
//! (for `paysync status` and `/healthz`).
//!
//! Owns the [`Polls`] trait and [`PollRecord`]. It must not know any SQL dialect (each backend's
//! `polls.rs` holds its statements) nor touch operation rows, the inbox or claims.
//!
//! **Invariant** (enforced by every backend's `set_watermark`): a watermark never moves backwards.
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

#[async_trait]
pub trait Polls: Send + Sync {
    /// The instant up to which the account's polling has examined updated operations.
    async fn watermark(&self, account: &str) -> Result<Option<Timestamp>, StoreError>;
    /// Move the watermark (never backwards).
    async fn set_watermark(&self, account: &str, at: Timestamp) -> Result<(), StoreError>;
    /// Append a poll to the account's history (bounded: the oldest go).
    async fn record_poll(&self, poll: &PollRecord) -> Result<(), StoreError>;
    /// The latest polls of an account, newest first.
    async fn polls(&self, account: &str, limit: i64) -> Result<Vec<PollRecord>, StoreError>;
    /// The latest successful poll of an account.
    async fn last_good_poll(&self, account: &str) -> Result<Option<PollRecord>, StoreError>;
}
