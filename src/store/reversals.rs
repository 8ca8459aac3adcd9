//! Reversals: the "Pay" entries paysync made for refunds of operations it had booked, one row
//! per refund (`reverse_refunds`, `pipeline/reverse.rs`).
//!
//! Owns the [`Reversals`] trait only; each backend's `reversals.rs` holds its statements. A row
//! is unique on `(account, uid, refund_key)` and never changes once written: recording one
//! twice (a run that found the entry a crashed run had created) keeps the first.

use std::collections::HashMap;

use async_trait::async_trait;
use jiff::Timestamp;
use rust_decimal::Decimal;

use super::StoreError;

/// One reversal made.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReversal {
    pub account: String,
    pub uid: String,
    pub refund_key: String,
    pub amount: Decimal,
    pub erp_entry: String,
    pub created: Timestamp,
}

#[async_trait]
pub trait Reversals: Send + Sync {
    /// The reversals of these operations of `account`, by operation (absent: none).
    async fn reversals_of(
        &self,
        account: &str,
        uids: &[String],
    ) -> Result<HashMap<String, Vec<StoredReversal>>, StoreError>;
    /// Record a reversal (a second record of the same refund changes nothing).
    async fn record_reversal(&self, r: &StoredReversal) -> Result<(), StoreError>;
}
