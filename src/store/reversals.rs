//! Reversals: the "Pay" entries paysync made for refunds of operations it had booked, one row
//! per refund (`reverse_refunds`, `pipeline/reverse.rs`).
//!
//! Owns the [`Reversals`] trait only; each backend's `reversals.rs` holds its statements. A row
//! is unique on `(account, uid, refund_key)` and never changes once written: recording one
//! twice (a run that found the entry a crashed run had created) keeps the first.

use std::collections::HashMap;
use std::str::FromStr;

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

/// A reversal's stored columns, as both backends store them.
#[derive(sqlx::FromRow)]
pub(crate) struct StoredReversalRow {
    uid: String,
    refund_key: String,
    amount: String,
    erp_entry: String,
    created_ms: i64,
}

impl StoredReversalRow {
    /// Group rows of `account` by operation.
    pub(crate) fn by_operation(
        account: &str,
        rows: Vec<StoredReversalRow>,
    ) -> Result<HashMap<String, Vec<StoredReversal>>, StoreError> {
        let mut out: HashMap<String, Vec<StoredReversal>> = HashMap::new();
        for r in rows {
            let rev = StoredReversal {
                account: account.to_string(),
                amount: Decimal::from_str(&r.amount)
                    .map_err(|_| StoreError::Corrupt(format!("reversal amount {:?}", r.amount)))?,
                created: super::from_ms(r.created_ms)?,
                uid: r.uid,
                refund_key: r.refund_key,
                erp_entry: r.erp_entry,
            };
            out.entry(rev.uid.clone()).or_default().push(rev);
        }
        Ok(out)
    }
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
