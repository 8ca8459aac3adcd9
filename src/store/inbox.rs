//! The inbox: webhook triggers, stored durably by the HTTP handler and worked off by the inbox
//! worker (`daemon/inbox.rs`), which re-reads each operation from the source.
//!
//! Owns the [`Inbox`] trait and [`InboxItem`]. It must not know any SQL dialect (each backend's
//! `inbox.rs` holds its statements) nor touch operation rows, polls or claims: a trigger is only a
//! request to look at an operation, never a decision.
//!
//! **Invariants** every backend enforces: at most one pending-or-running trigger per
//! `(account, uid)` (a duplicate collapses into it); a claim hands a trigger to one worker only
//! until its lease runs out.

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
    /// Claim up to `limit` due triggers (pending and due, or running with an expired lease).
    async fn inbox_claim(
        &self,
        now: Timestamp,
        lease: std::time::Duration,
        limit: i64,
    ) -> Result<Vec<InboxItem>, StoreError>;
    /// The trigger was worked off (its decision made and recorded).
    async fn inbox_done(&self, id: i64, now: Timestamp) -> Result<(), StoreError>;
    /// Put a failed trigger back, due again at `run_after`.
    async fn inbox_retry(
        &self,
        id: i64,
        run_after: Timestamp,
        error: &str,
    ) -> Result<(), StoreError>;
    /// Give up on a trigger after too many attempts (polling still covers its operation).
    async fn inbox_dead(&self, id: i64, error: &str) -> Result<(), StoreError>;
    /// Put triggers left `running` (by a process that stopped) back to pending; returns how many.
    async fn inbox_requeue_running(&self) -> Result<u64, StoreError>;
    /// Pending or running triggers, per account.
    async fn inbox_depth(&self) -> Result<HashMap<String, i64>, StoreError>;
    /// When the next trigger falls due: the earliest `run_after` of a pending one or lease end of
    /// a running one (for the worker's sleep).
    async fn inbox_next_due(&self) -> Result<Option<Timestamp>, StoreError>;
}
