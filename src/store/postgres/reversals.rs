//! [`Reversals`] in PostgreSQL.

use std::collections::HashMap;
use std::str::FromStr;

use async_trait::async_trait;
use rust_decimal::Decimal;
use sqlx::Row;

use super::{PgLedger, from_ms, ms};
use crate::store::{Reversals, StoreError, StoredReversal};

#[async_trait]
impl Reversals for PgLedger {
    async fn reversals_of(
        &self,
        account: &str,
        uids: &[String],
    ) -> Result<HashMap<String, Vec<StoredReversal>>, StoreError> {
        let rows = sqlx::query(
            "SELECT uid, refund_key, amount, erp_entry, created_ms FROM reversals \
             WHERE account = $1 AND uid = ANY($2) ORDER BY created_ms, refund_key",
        )
        .bind(account)
        .bind(uids)
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<String, Vec<StoredReversal>> = HashMap::new();
        for r in &rows {
            let amount: String = r.try_get("amount")?;
            let rev = StoredReversal {
                account: account.to_string(),
                uid: r.try_get("uid")?,
                refund_key: r.try_get("refund_key")?,
                amount: Decimal::from_str(&amount)
                    .map_err(|_| StoreError::Corrupt(format!("reversal amount {amount:?}")))?,
                erp_entry: r.try_get("erp_entry")?,
                created: from_ms(r.try_get("created_ms")?)?,
            };
            out.entry(rev.uid.clone()).or_default().push(rev);
        }
        Ok(out)
    }

    async fn record_reversal(&self, r: &StoredReversal) -> Result<(), StoreError> {
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
