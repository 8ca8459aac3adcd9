//! [`Reversals`] in SQLite.

use std::collections::HashMap;

use super::{SqliteLedger, json_array, ms};
use crate::store::reversals::StoredReversalRow;
use crate::store::{Reversals, StoreError, StoredReversal};
use async_trait::async_trait;

#[async_trait]
impl Reversals for SqliteLedger {
    async fn reversals_of(
        &self,
        account: &str,
        uids: &[String],
    ) -> Result<HashMap<String, Vec<StoredReversal>>, StoreError> {
        self.same_file()?;
        let rows: Vec<StoredReversalRow> = sqlx::query_as(
            "SELECT uid, refund_key, amount, erp_entry, created_ms FROM reversals \
             WHERE account = $1 AND uid IN (SELECT value FROM json_each($2)) \
             ORDER BY created_ms, refund_key",
        )
        .bind(account)
        .bind(json_array(uids))
        .fetch_all(&self.pool)
        .await?;
        StoredReversalRow::by_operation(account, rows)
    }

    async fn record_reversal(&self, r: &StoredReversal) -> Result<(), StoreError> {
        self.same_file()?;
        sqlx::query(
            "INSERT INTO reversals (account, uid, refund_key, amount, erp_entry, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account, uid, refund_key) DO NOTHING",
        )
        .bind(&r.account)
        .bind(&r.uid)
        .bind(&r.refund_key)
        .bind(r.amount.to_string())
        .bind(&r.erp_entry)
        .bind(ms(r.created))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
