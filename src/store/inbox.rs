//! The inbox: webhook triggers, stored durably by the HTTP handler and worked off by the inbox
//! worker (`daemon/inbox.rs`), which re-reads each operation from the source.
//!
//! Owns the [`Inbox`] trait and [`InboxItem`]. It must not know any SQL dialect (each backend's
//! `inbox.rs` holds its statements) nor touch operation rows, polls or claims: a trigger is only a
//! request to look at an operation, never a decision.
//!
//! **Invariants** every backend enforces: at most one pending-or-running trigger per
//! `(account, uid)` (a duplicate collapses into it); a claim hands a trigger to one holder (a
//! process) until its lease runs out, then anyone may take it over; only the current claim —
//! its holder and its attempt number, which every claim raises — may renew it or settle it
//! (done, retry, give up): a holder that lost it (paused past its lease, cut off) changes nothing.
//! Nothing is requeued wholesale at a start: another live instance may be working on it.

use std::collections::HashMap;

use async_trait::async_trait;
use jiff::Timestamp;

use super::StoreError;

/// A claimed inbox trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxItem {
    pub id: i64,
    pub account: String,
    pub uid: String,
    pub received: Timestamp,
    pub attempts: i64,
    /// The webhook's reference (untrusted; a hint for reading ahead).
    pub hint: Option<String>,
}

/// A trigger of one operation as the inbox keeps it, whatever became of it (`paysync explain`).
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerRow {
    pub received: Timestamp,
    /// `pending`, `running`, `done`, `dead` (given up) or `ignored`.
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub done: Option<Timestamp>,
}

/// A trigger's stored columns (`Inbox::inbox_of`), as both backends store them.
#[derive(sqlx::FromRow)]
pub(crate) struct StoredTrigger {
    received_ms: i64,
    state: String,
    attempts: i64,
    last_error: Option<String>,
    done_ms: Option<i64>,
}

impl TryFrom<StoredTrigger> for TriggerRow {
    type Error = StoreError;
    fn try_from(t: StoredTrigger) -> Result<TriggerRow, StoreError> {
        Ok(TriggerRow {
            received: super::from_ms(t.received_ms)?,
            state: t.state,
            attempts: t.attempts,
            last_error: t.last_error,
            done: t.done_ms.map(super::from_ms).transpose()?,
        })
    }
}

/// Every trigger of one operation, oldest first: `$1` the account, `$2` the operation id.
pub(crate) const TRIGGERS_OF: &str = "SELECT received_ms, state, attempts, last_error, done_ms \
     FROM inbox WHERE account = $1 AND uid = $2 ORDER BY id";

#[async_trait]
pub trait Inbox: Send + Sync {
    /// Queue a trigger. Returns false when the same trigger is already pending (collapsed).
    async fn inbox_push(
        &self,
        account: &str,
        uid: &str,
        received: Timestamp,
        hint: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Record a trigger that is deliberately ignored (expired checkouts, child ids).
    async fn inbox_ignore(
        &self,
        account: &str,
        uid: &str,
        received: Timestamp,
        reason: &str,
    ) -> Result<(), StoreError>;
    /// Claim up to `limit` due triggers for `holder` until `now + lease`: pending and due, or
    /// running under a lease that expired (taken over).
    async fn inbox_claim(
        &self,
        holder: &str,
        now: Timestamp,
        lease: std::time::Duration,
        limit: i64,
    ) -> Result<Vec<InboxItem>, StoreError>;
    /// Extend `holder`'s leases on the triggers `ids` to `now + lease`; returns those it still holds.
    async fn inbox_renew(
        &self,
        ids: &[i64],
        holder: &str,
        now: Timestamp,
        lease: std::time::Duration,
    ) -> Result<Vec<i64>, StoreError>;
    /// The trigger was worked off (its decision made and recorded). False (nothing changed) when
    /// this claim of it is no longer the current one.
    async fn inbox_done(
        &self,
        item: &InboxItem,
        holder: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Put a failed trigger back, due again at `run_after`; false as for [`Inbox::inbox_done`].
    async fn inbox_retry(
        &self,
        item: &InboxItem,
        holder: &str,
        run_after: Timestamp,
        error: &str,
    ) -> Result<bool, StoreError>;
    /// Give up on a trigger after too many attempts (polling still covers its operation); false
    /// as for [`Inbox::inbox_done`].
    async fn inbox_dead(
        &self,
        item: &InboxItem,
        holder: &str,
        now: Timestamp,
        error: &str,
    ) -> Result<bool, StoreError>;
    /// Put `holder`'s running triggers back to pending, due at once (a clean stop hands its
    /// unfinished work over without making others wait out its leases); returns how many.
    async fn inbox_release(&self, holder: &str) -> Result<u64, StoreError>;
    /// Pending or running triggers, per account.
    async fn inbox_depth(&self) -> Result<HashMap<String, i64>, StoreError>;
    /// When the next trigger falls due: the earliest `run_after` of a pending one or lease end of
    /// a running one (for the worker's sleep).
    async fn inbox_next_due(&self) -> Result<Option<Timestamp>, StoreError>;
    /// Every trigger the inbox kept for `(account, uid)`, oldest first.
    async fn inbox_of(&self, account: &str, uid: &str) -> Result<Vec<TriggerRow>, StoreError>;
}
