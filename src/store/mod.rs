//! The ledger: paysync's own record of every operation it examined and what it decided.
//!
//! One trait ([`Ledger`]), one module per backend (`sqlite.rs`; PostgreSQL comes later). Queries are
//! built at run time (no compile-time macros), so a fresh clone builds without a database.
//!
//! **Invariant:** a row is unique on `(account, uid)` and a booked decision is never overwritten
//! by a later one, so nothing is booked twice even if the ERP lookup were missed. The one
//! exception is a deliberate re-booking ([`Ledger::reopen_for_rebook`]) after the entry it names
//! was cancelled in ERPNext.

pub mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use rust_decimal::Decimal;

use crate::domain::{DecisionKind, EarlierPayment};

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
    /// The duplicate guard's value a re-booking uses (`<id>#2`, ...); `None`: the operation id.
    pub guard_value: Option<String>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub times_seen: i64,
}

#[async_trait]
pub trait Ledger: Send + Sync {
    /// Rows for these operation ids of an account (ids never seen are absent).
    async fn rows(
        &self,
        account: &str,
        uids: &[String],
    ) -> Result<HashMap<String, LedgerRow>, StoreError>;
    /// The entry we booked as the initial payment of an order, if any.
    async fn booked_for_order(
        &self,
        account: &str,
        sales_order: &str,
    ) -> Result<Option<String>, StoreError>;
    /// Insert or update the row of `(account, uid)`. A booked row keeps its decision and entry.
    async fn record(&self, rec: &Record) -> Result<(), StoreError>;
    /// The one way a booked row stops being booked: `paysync rebook`, after every ERPNext entry of
    /// the operation was cancelled. Writes `rec` (an unresolved decision, so later payments of the
    /// order wait and the retry loop finishes an interrupted re-booking) over whatever the row
    /// held, forgets its entry, and remembers the guard value the new entry must carry — only if
    /// the row names no entry or one of `cancelled`. `false`: it names another entry (booked
    /// meanwhile), and is left alone.
    async fn reopen_for_rebook(
        &self,
        rec: &Record,
        guard_value: Option<&str>,
        cancelled: &[String],
    ) -> Result<bool, StoreError>;
    /// [`Ledger::record`] for many rows in one transaction (one commit).
    async fn record_many(&self, recs: &[Record]) -> Result<(), StoreError>;
    /// In one query, what must be re-read under the order's lock before booking `uid` (created at
    /// `created`): its row; an entry of `sales_order` booked at or after `booked_since` (by any
    /// account: what the ERP could not have said when it was read then); and the oldest
    /// operation of the order (any account) created before it whose decision holds later
    /// payments back.
    async fn op_and_order(
        &self,
        account: &str,
        uid: &str,
        created: Timestamp,
        sales_order: Option<&str>,
        booked_since: Timestamp,
    ) -> Result<OrderView, StoreError>;
    /// Operations of these orders whose decision holds later payments back (`error`, `waiting`,
    /// `order_missing`, `order_not_payable`), oldest first: `(uid, sales_order)`. A trigger that
    /// touches an order re-examines them with it, so the order's payments resolve in order.
    async fn unresolved_in_orders(
        &self,
        account: &str,
        orders: &[String],
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError>;
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
    /// Operations worth re-examining although Mobbex may never report them as updated again:
    /// `order_missing`, `order_not_payable`, `waiting`, `error`, not seen since `now` minus a backoff that
    /// grows with how often they were seen (1 min, 2, 4, ... up to a day). Oldest first.
    async fn retryable(
        &self,
        account: &str,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<String>, StoreError>;

    // ---- the daemon's state -------------------------------------------------------------

    /// The instant up to which the account's polling has examined updated operations.
    async fn watermark(&self, account: &str) -> Result<Option<Timestamp>, StoreError>;
    /// Move the watermark (never backwards).
    async fn set_watermark(&self, account: &str, at: Timestamp) -> Result<(), StoreError>;
    async fn record_poll(&self, poll: &PollRecord) -> Result<(), StoreError>;
    /// The latest polls of an account, newest first.
    async fn polls(&self, account: &str, limit: i64) -> Result<Vec<PollRecord>, StoreError>;
    /// The latest successful poll of an account.
    async fn last_good_poll(&self, account: &str) -> Result<Option<PollRecord>, StoreError>;

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
    /// The earliest `run_after` among pending triggers (for the worker's sleep).
    async fn inbox_next_due(&self) -> Result<Option<Timestamp>, StoreError>;

    /// Try to take the cross-process claim on `(account, key)` for `ttl`. Re-entrant for the
    /// same holder. `None` while another live holder has it; `Some(Some(t))` when it was taken
    /// over from another holder whose claim ran until `t`; `Some(None)` otherwise.
    async fn try_claim(
        &self,
        account: &str,
        key: &str,
        holder: &str,
        now: Timestamp,
        ttl: std::time::Duration,
    ) -> Result<Option<Option<Timestamp>>, StoreError>;
    /// Extend `holder`'s claims among `keys` to `now + ttl`; returns the keys it still holds.
    async fn renew_claims(
        &self,
        account: &str,
        keys: &[String],
        holder: &str,
        now: Timestamp,
        ttl: std::time::Duration,
    ) -> Result<Vec<String>, StoreError>;
    async fn release_claim(&self, account: &str, key: &str, holder: &str)
    -> Result<(), StoreError>;
    /// [`Ledger::try_claim`] for many keys in one statement; returns the keys taken, each with
    /// the previous holder's expiry when it was taken over.
    async fn try_claim_many(
        &self,
        account: &str,
        keys: &[String],
        holder: &str,
        now: Timestamp,
        ttl: std::time::Duration,
    ) -> Result<HashMap<String, Option<Timestamp>>, StoreError>;
    async fn release_claims(
        &self,
        account: &str,
        keys: &[String],
        holder: &str,
    ) -> Result<(), StoreError>;
    /// Who holds the claim on `(account, key)`, if anyone.
    async fn claim_holder(&self, account: &str, key: &str) -> Result<Option<String>, StoreError>;
    /// Take over a claim from `dead_holder` (a process known to be gone). True if taken.
    async fn steal_claim(
        &self,
        account: &str,
        key: &str,
        dead_holder: &str,
        holder: &str,
        now: Timestamp,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError>;
}

/// See [`Ledger::op_and_order`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderView {
    pub row: Option<LedgerRow>,
    /// The entry of some operation of the order that we booked.
    pub booked_entry: Option<String>,
    /// The oldest earlier operation of the order that is still unresolved.
    pub earlier_unresolved: Option<EarlierPayment>,
}

/// The decisions that hold later payments of the same order back, as an SQL list.
pub(crate) fn holding_decisions_sql() -> &'static str {
    static LIST: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        DecisionKind::ALL
            .into_iter()
            .filter(|k| k.holds_back_later_payments())
            .map(|k| format!("'{}'", k.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    });
    &LIST
}

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

/// Open the ledger named by `url` (`sqlite://FILE`, created if missing, readable by its owner
/// only) and apply migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Ledger>, StoreError> {
    check_url(url).map_err(|message| StoreError::Open {
        url: redact_url(url),
        message,
    })?;
    Ok(Arc::new(sqlite::SqliteLedger::open(url).await?))
}

/// Open an existing ledger (and apply migrations); never creates one: [`StoreError::Missing`]
/// when the file is not there. For commands that only look (`paysync status`).
pub async fn open_existing(url: &str) -> Result<Arc<dyn Ledger>, StoreError> {
    check_url(url).map_err(|message| StoreError::Open {
        url: redact_url(url),
        message,
    })?;
    Ok(Arc::new(sqlite::SqliteLedger::open_existing(url).await?))
}

/// Whether `url` names a ledger that remembers: a SQLite file, opened for writing. The ledger is
/// what keeps a payment from being booked twice, so one that forgets on exit (`:memory:`,
/// `mode=memory`, the `memdb` VFS, an empty path, which SQLite turns into a temporary file) or
/// that cannot be written (`mode=ro`, `immutable`) is refused before anything is booked.
pub fn check_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err("expected sqlite://FILE (the only ledger supported in this version)".into());
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    let forgets =
        "a ledger in memory forgets what was booked when paysync stops; expected sqlite://FILE";
    if path.trim().is_empty() {
        return Err(
            "no file named (SQLite would use a temporary one, deleted on exit); expected sqlite://FILE"
                .into(),
        );
    }
    if path.contains(":memory:") {
        return Err(forgets.into());
    }
    if path.starts_with("file:") {
        return Err("expected a plain file path after sqlite:// (not a SQLite file: URI)".into());
    }
    for (k, v) in url::form_urlencoded::parse(params.as_bytes()) {
        match (&*k, &*v) {
            ("mode", "memory") | ("vfs", "memdb") => return Err(forgets.into()),
            ("mode", "ro") | ("immutable", "1" | "true") => {
                return Err(format!(
                    "`{k}={v}` opens the ledger read-only; paysync records every decision in it"
                ));
            }
            _ => {}
        }
    }
    // What sqlx itself refuses (an unknown parameter), refused here too: at start, with the key.
    <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
        .map_err(|e| format!("not a SQLite URL sqlx can open: {e}"))?;
    Ok(())
}

/// A database URL without its credentials, for messages (the one helper: [`crate::redact::url`]).
pub fn redact_url(url: &str) -> String {
    crate::redact::url(url)
}
