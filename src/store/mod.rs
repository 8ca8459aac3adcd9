//! The ledger: paysync's own record of every operation it examined and what it decided, plus the
//! daemon's state.
//!
//! One small trait per concern, each in its own module with its types:
//!
//! - [`Decisions`] (`decisions.rs`): one row per examined operation, and what the pipeline asks of
//!   them before booking.
//! - [`Polls`] (`polls.rs`): per-account watermarks and the poll history.
//! - [`Inbox`] (`inbox.rs`): the webhook triggers queue.
//! - [`Leases`] (`leases.rs`): cross-process claims on orders (their rules: `crate::claims`).
//! - [`Tokens`] (`tokens.rs`): the OAuth refresh token of each account that rotates one.
//! - [`Liveness`] (here): `ping`, for `/healthz` and the watchdog.
//!
//! [`Ledger`] is all of them at once, what the wiring hands around (`Arc<dyn Ledger>`); code that
//! needs one concern may take just that trait. One module per backend (`sqlite.rs` with
//! `sqlite/<concern>.rs`, `postgres.rs` with `postgres/<concern>.rs`), which alone knows its SQL
//! dialect; both keep the same semantics (`conformance.rs` runs one set of tests on each). Queries are
//! built at run time (no compile-time macros), so a fresh clone builds without a database.
//!
//! **Invariant:** a row is unique on `(account, uid)` and a booked decision is never overwritten
//! by a later one, so nothing is booked twice even if the ERP lookup were missed. The one
//! exception is a deliberate re-booking ([`Decisions::reopen_for_rebook`]) after the entry it names
//! was cancelled in ERPNext. (Enforced in each backend's `decisions.rs`.)

pub mod decisions;
pub mod inbox;
pub mod leases;
pub mod polls;
pub mod postgres;
pub mod reversals;
pub mod sqlite;
pub mod tokens;

#[cfg(test)]
mod conformance;

use std::sync::Arc;

use async_trait::async_trait;

pub(crate) use decisions::holding_decisions_sql;
pub use decisions::{Decisions, HistoryRow, LedgerRow, OrderView, Record, RunTrigger, ViewQuery};
pub use inbox::{Inbox, InboxItem, TriggerRow};
pub use leases::Leases;
pub use polls::{PollLease, PollRecord, Polls, set_watermark_once};
pub use reversals::{Reversals, StoredReversal};
pub use tokens::{StoredToken, Tokens};

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
    #[error(
        "ledger {path} does not exist (check [store] url; `paysync sync` or `paysync run` creates it)"
    )]
    Missing { path: String },
    #[error(
        "ledger {path} was deleted or replaced while paysync had it open ({what}); nothing is booked until the file is back or paysync is restarted"
    )]
    Replaced { path: String, what: String },
    #[error("ledger did not answer within {}s", .0.as_secs())]
    Unanswered(std::time::Duration),
}

/// `ledger_call`, or [`StoreError::Unanswered`] once `limit` has passed. For callers that must
/// answer someone in time whatever the database does (a partitioned PostgreSQL leaves a query
/// hanging until TCP gives up, many minutes later): the daemon's HTTP answers.
pub async fn within<T>(
    limit: std::time::Duration,
    ledger_call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, ledger_call)
        .await
        .unwrap_or(Err(StoreError::Unanswered(limit)))
}

/// Whether the ledger answers at all.
#[async_trait]
pub trait Liveness: Send + Sync {
    /// Cheap liveness check (for a file-backed ledger: also that the file is still the one opened).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// The whole ledger: every concern of one backend. Implemented for any type that implements them
/// all; nothing implements it by hand.
pub trait Ledger:
    Decisions + Polls + Inbox + Leases + Tokens + Reversals + Liveness + Send + Sync
{
}

impl<T: Decisions + Polls + Inbox + Leases + Tokens + Reversals + Liveness + Send + Sync> Ledger
    for T
{
}

/// Open the ledger named by `url` and apply migrations: `sqlite://FILE` (created if missing,
/// readable by its owner only) or `postgres://USER@HOST/DATABASE` (the database must exist; its
/// tables are created).
pub async fn open(url: &str) -> Result<Arc<dyn Ledger>, StoreError> {
    checked(url)?;
    if postgres::is_postgres_url(url) {
        return Ok(Arc::new(postgres::PgLedger::open(url).await?));
    }
    Ok(Arc::new(sqlite::SqliteLedger::open(url).await?))
}

/// Open an existing ledger (and apply migrations); never creates one: [`StoreError::Missing`]
/// when the file, or the database or its tables, are not there. For commands that only look
/// (`paysync status`).
pub async fn open_existing(url: &str) -> Result<Arc<dyn Ledger>, StoreError> {
    checked(url)?;
    if postgres::is_postgres_url(url) {
        return Ok(Arc::new(postgres::PgLedger::open_existing(url).await?));
    }
    Ok(Arc::new(sqlite::SqliteLedger::open_existing(url).await?))
}

fn checked(url: &str) -> Result<(), StoreError> {
    check_url(url).map_err(|message| StoreError::Open {
        url: redact_url(url),
        message,
    })
}

/// Whether `url` names a ledger paysync can use, before anything is opened: the backend's own
/// checks ([`sqlite::check_url`], [`postgres::check_url`]).
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("sqlite:") {
        return sqlite::check_url(url);
    }
    if postgres::is_postgres_url(url) {
        return postgres::check_url(url);
    }
    Err(EXPECTED.into())
}

/// What a ledger URL looks like, for messages.
const EXPECTED: &str = "expected sqlite://FILE or postgres://USER@HOST[:PORT]/DATABASE";

/// A database URL without its credentials, for messages (the one helper: [`crate::redact::url`]).
pub fn redact_url(url: &str) -> String {
    crate::redact::url(url)
}

/// A time as every backend stores it: epoch milliseconds UTC.
pub(crate) fn ms(t: jiff::Timestamp) -> i64 {
    t.as_millisecond()
}

/// A stored time back; a value out of range is a corrupt ledger.
pub(crate) fn from_ms(v: i64) -> Result<jiff::Timestamp, StoreError> {
    jiff::Timestamp::from_millisecond(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}
