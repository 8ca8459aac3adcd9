//! The ledger: paysync's own record of every operation it examined and what it decided.
//!
//! One trait ([`Ledger`]), one module per backend (`sqlite.rs`; PostgreSQL comes later). Queries are
//! built at run time (no compile-time macros), so a fresh clone builds without a database.
//!
//! **Invariant:** a row is unique on `(account, uid)` and a booked decision is never overwritten
//! by a later one, so nothing is booked twice even if the ERP lookup were missed.

pub mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use rust_decimal::Decimal;

use crate::domain::DecisionKind;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ledger {url}: {message}")]
    Open { url: String, message: String },
    #[error("ledger: {0}")]
    Query(#[from] sqlx::Error),
    #[error("ledger migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("ledger: stored value is invalid: {0}")]
    Corrupt(String),
}

/// What is written for one examined operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub account: String,
    pub uid: String,
    pub reference: String,
    pub sales_order: Option<String>,
    pub status_code: Option<u16>,
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub decision: DecisionKind,
    pub reason: String,
    pub erp_entry: Option<String>,
    pub op_created: Option<Timestamp>,
    pub seen_at: Timestamp,
}

/// A stored row.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    pub account: String,
    pub uid: String,
    pub reference: String,
    pub sales_order: Option<String>,
    pub status_code: Option<u16>,
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub decision: DecisionKind,
    pub reason: String,
    pub erp_entry: Option<String>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub times_seen: i64,
}

#[async_trait]
pub trait Ledger: Send + Sync {
    /// Rows for these operation ids of an account (ids never seen are absent).
    async fn rows(&self, account: &str, uids: &[String])
    -> Result<HashMap<String, LedgerRow>, StoreError>;
    /// The entry we booked as the initial payment of an order, if any.
    async fn booked_for_order(
        &self,
        account: &str,
        sales_order: &str,
    ) -> Result<Option<String>, StoreError>;
    /// Insert or update the row of `(account, uid)`. A booked row keeps its decision and entry.
    async fn record(&self, rec: &Record) -> Result<(), StoreError>;
    /// Number of rows per decision for an account.
    async fn counts(&self, account: &str) -> Result<HashMap<DecisionKind, i64>, StoreError>;
    /// The most recent rows with the given decision.
    async fn latest(
        &self,
        account: &str,
        decision: DecisionKind,
        limit: i64,
    ) -> Result<Vec<LedgerRow>, StoreError>;
    /// Cheap liveness check.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Open the ledger named by `url` (`sqlite://FILE`, created if missing) and apply migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Ledger>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteLedger::open(url).await?))
    } else {
        Err(StoreError::Open {
            url: redact_url(url),
            message: "only sqlite:// ledgers are supported in this version".into(),
        })
    }
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
