//! ERPs: where payment entries go. One trait, one module per ERP (today: ERPNext).
//!
//! Every read is batched (a list of names or ids per call) so that examining a page of 50
//! operations costs a handful of calls, not 50. Writes create one submitted entry each.

pub mod erpnext;
pub mod frappe_error;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::audit::AuditEntry;
use crate::domain::reversal::ReversalEntry;
use crate::domain::{ExistingEntry, OperationEntry, PaymentEntry, SalesOrder};

/// The entries an audit reads: every Payment Entry of `company` with `mode_of_payment` posted
/// from `from` to `to` (any state), and every one whose `reference_no` is in `references`
/// (the period's operations and their reversals), wherever posted.
pub struct AuditQuery<'a> {
    pub company: &'a str,
    pub mode_of_payment: &'a str,
    pub from: jiff::civil::Date,
    pub to: jiff::civil::Date,
    pub references: &'a [String],
}

#[derive(Debug, thiserror::Error)]
pub enum ErpError {
    /// The request never reached the server (refused, DNS, TLS): safe to send again.
    #[error("ERPNext: cannot connect: {0}")]
    Connect(String),
    /// The connection broke after the request was sent: a write's outcome is unknown.
    #[error("ERPNext: the connection broke: {0}")]
    Transport(String),
    /// The request may have reached the server; a write's outcome is unknown. Look the entry up
    /// by `reference_no` before trying again (never re-POST blindly).
    #[error("ERPNext: no answer in time: {0}")]
    Timeout(String),
    #[error("ERPNext refused the credentials (HTTP {status}): {message}")]
    Unauthorized { status: u16, message: String },
    #[error("ERPNext: rate limited (HTTP 429){}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    /// A business rejection (HTTP 417 validation, 404, 409, 403): retrying the same request gives
    /// the same answer. The message is ERPNext's own, decoded.
    #[error("ERPNext rejected it (HTTP {status} {exc_type}): {message}")]
    Rejected {
        status: u16,
        exc_type: String,
        message: String,
        /// The refusal is about the sales order the entry pays (its state, its outstanding
        /// amount, its row in the entry's references), not about the entry as such: the order
        /// may change, so a refused create is `order_not_payable` and re-examined later. Set by
        /// the adapter, which knows how its ERP words such refusals.
        about_order: bool,
    },
    #[error("ERPNext server error (HTTP {status}{}): {message}", exc_type.as_deref().map(|t| format!(" {t}")).unwrap_or_default())]
    Server {
        status: u16,
        exc_type: Option<String>,
        message: String,
    },
    #[error("ERPNext: malformed answer: {0}")]
    Malformed(String),
    /// The server-side guard refused the entry: another entry already holds this operation
    /// (HTTP 417 `UniqueValidationError` on the `paysync_operation` key, recording U2b).
    #[error("ERPNext refused a second entry for this operation (the duplicate guard): {0}")]
    Duplicate(String),
}

/// The one table of ERPNext answers (RELIABILITY.md, "ERPNext answers"): what happened decides,
/// the body only gives the message.
///
/// | answer | error | read retried | create |
/// |---|---|---|---|
/// | refused, DNS, TLS | `Connect` | yes | re-sent: it never arrived |
/// | timeout, connection broken mid-answer | `Timeout` / `Transport` | yes | **unknown**: looked up by `reference_no`, never re-sent blindly |
/// | 429, with or without `Retry-After` | `RateLimited` | yes, after `Retry-After` | re-sent after `Retry-After` |
/// | any 5xx with a Frappe exception body (`exc_type`) | `Server` | yes | re-sent: Frappe rolls a request back when it raises |
/// | 503, 408 | `Server` | yes | re-sent: the request was not taken |
/// | 502, 504, and every other 5xx without a Frappe body (HTML, text, empty: a proxy) | `Server` | yes | **unknown** (a proxy may have given up on a request ERPNext still commits) |
/// | 401 | `Unauthorized` | no | no |
/// | other 4xx (417 validation, 404, 403, 409) | `Rejected` | no | no: the message becomes the reason |
impl ErpError {
    /// Worth retrying soon: network trouble, 429, 408 and every 5xx whatever its body. 4xx
    /// business rejections are not.
    pub fn is_transient(&self) -> bool {
        match self {
            ErpError::Connect(_)
            | ErpError::Transport(_)
            | ErpError::Timeout(_)
            | ErpError::RateLimited { .. } => true,
            ErpError::Server { status, .. } => matches!(status, 500..=599 | 408),
            _ => false,
        }
    }

    /// For a write: the server may have committed it even though we got no answer.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ErpError::Timeout(_) => true,
            // A connection dropped mid-response.
            ErpError::Transport(_) => true,
            // Frappe itself answered with an exception: it raised, and rolled the request back
            // (frappe/app.py `application`: on an exception a POST is rolled back in `finally`);
            // its body says so with an `exc_type`, whatever the status.
            ErpError::Server {
                exc_type: Some(_), ..
            } => false,
            // Not taken: a server or proxy with no capacity, or one that never got the request.
            ErpError::Server {
                status: 503 | 408, ..
            } => false,
            // A gateway that gave up waiting (502, 504, 520-524) or an anonymous 5xx.
            ErpError::Server { .. } => true,
            _ => false,
        }
    }

    /// MariaDB chose this request as a deadlock's victim and rolled it back (HTTP 500
    /// `QueryDeadlockError`, recordings 33a and U3e): two creates in different naming series
    /// inserting `Payment Entry Reference` rows into one index gap. Retried; nothing committed.
    pub fn is_deadlock(&self) -> bool {
        matches!(self, ErpError::Server { exc_type: Some(t), .. } if t == "QueryDeadlockError")
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ErpError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// How a refused write is worded in the ledger's reason: a rejection as the ERP put it
    /// (`ERPNext 417 ValidationError: Row #1: ...`), anything else as it displays.
    pub fn refusal_reason(&self) -> String {
        match self {
            ErpError::Rejected {
                status,
                exc_type,
                message,
                ..
            } => format!("ERPNext {status} {exc_type}: {message}"),
            e => e.to_string(),
        }
    }
}

/// The result of creating an entry.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedEntry {
    pub name: String,
}

/// An ERP that keeps sales orders and takes payment entries.
#[async_trait]
pub trait Erp: Send + Sync {
    /// The ERP's name as metrics label it (`api` = "erpnext").
    fn api_name(&self) -> &'static str;
    /// The sales orders whose `field` (`name`, `po_no`, a custom field) holds one of `keys`, by
    /// key: usually one, several where the ERP let two orders hold one value (ERPNext does for
    /// `po_no` across customers), none (absent) where no order does.
    async fn sales_orders(
        &self,
        field: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Vec<SalesOrder>>, ErpError>;
    /// Of these orders, the ones a *submitted* payment entry already references.
    async fn orders_with_entries(&self, names: &[String]) -> Result<HashSet<String>, ErpError>;
    /// Entries (draft or submitted, not cancelled) whose `reference_no` is one of `refs`.
    async fn entries_by_reference(
        &self,
        refs: &[String],
    ) -> Result<HashMap<String, ExistingEntry>, ErpError>;
    /// The default account of a mode of payment for a company (what the desk form fills into `paid_to`).
    async fn mode_of_payment_account(&self, mode: &str, company: &str) -> Result<String, ErpError>;
    /// Create the entry, submitted.
    async fn create_entry(&self, entry: &PaymentEntry) -> Result<CreatedEntry, ErpError>;
    /// What `paysync audit` compares with the gateway (see [`AuditQuery`]), in batched reads.
    async fn audit_entries(&self, q: &AuditQuery<'_>) -> Result<Vec<AuditEntry>, ErpError>;
    /// Create a refund's reversal ("Pay" to the customer), submitted.
    async fn create_reversal(&self, entry: &ReversalEntry) -> Result<CreatedEntry, ErpError>;
    /// Who we are logged in as (used by `paysync check`).
    async fn whoami(&self) -> Result<String, ErpError>;
    /// The server-side duplicate guard (a unique Custom Field on Payment Entry, installed by
    /// `paysync erp-setup`) is in place: the ERP itself refuses a second entry for an operation.
    async fn guard_installed(&self) -> Result<bool, ErpError> {
        Ok(false)
    }
    /// Install the guard. `Ok(true)`: created now; `Ok(false)`: it was there.
    async fn install_guard(&self) -> Result<bool, ErpError> {
        Err(ErpError::Malformed(
            "this ERP has no server-side duplicate guard".into(),
        ))
    }
    /// The entry holding `guard_value` in the guard, whatever its docstatus.
    async fn entry_by_guard(&self, _guard_value: &str) -> Result<Option<ExistingEntry>, ErpError> {
        Ok(None)
    }
    /// Every entry whose `reference_no` is `reference_no`, cancelled ones included, with its guard
    /// value (what `paysync rebook` checks before booking an operation again).
    async fn entries_of_operation(
        &self,
        reference_no: &str,
    ) -> Result<Vec<OperationEntry>, ErpError>;
}
