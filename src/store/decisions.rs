//! Decisions: the ledger's one row per examined operation, and the questions the pipeline asks of
//! those rows (booked already? an earlier payment of the order unresolved? what to retry?).
//!
//! Owns the [`Decisions`] trait and its types ([`Record`], [`LedgerRow`], [`OrderView`]). It must
//! not know any SQL dialect (each backend's `decisions.rs` holds its statements) nor touch polls,
//! the inbox or claims.
//!
//! **Invariants** every backend enforces in its own statements (the SQLite ones are tested in
//! `sqlite/decisions/tests.rs`): a row is unique on `(account, uid)`; a booked row never loses its
//! decision or its entry name through [`Decisions::record`] / [`Decisions::record_many`] — the one
//! way it stops being booked is [`Decisions::reopen_for_rebook`], and only while the entry it
//! names was cancelled.

use std::collections::HashMap;
use std::str::FromStr;

use async_trait::async_trait;
use jiff::Timestamp;
use rust_decimal::Decimal;

use super::StoreError;
use crate::domain::{DecisionKind, EarlierPayment};

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
    /// What made the run that decided it (kept in the decision history).
    pub trigger: RunTrigger,
}

/// What started the run that made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunTrigger {
    /// `paysync sync` (or the demo).
    #[default]
    Sync,
    /// The daemon's scheduled poll.
    Poll,
    /// A webhook or notification, through the daemon's inbox.
    Webhook,
    /// `paysync rebook`.
    Rebook,
}

impl RunTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Sync => "sync",
            RunTrigger::Poll => "poll",
            RunTrigger::Webhook => "webhook",
            RunTrigger::Rebook => "rebook",
        }
    }

    pub fn parse(s: &str) -> Option<RunTrigger> {
        [
            RunTrigger::Sync,
            RunTrigger::Poll,
            RunTrigger::Webhook,
            RunTrigger::Rebook,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// One decision of an operation's history, as [`Decisions::history`] gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// When it was first decided.
    pub decided_at: Timestamp,
    pub trigger: RunTrigger,
    pub decision: DecisionKind,
    pub reason: String,
    pub erp_entry: Option<String>,
    pub sales_order: Option<String>,
    pub amount: Option<Decimal>,
    /// How many times in a row it was decided (by the same trigger), the last at `last_at`.
    pub repeats: u32,
    pub last_at: Timestamp,
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

/// One question of [`Decisions::views`]: [`Decisions::op_and_order`]'s arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewQuery {
    pub uid: String,
    pub created: Timestamp,
    pub sales_order: Option<String>,
    pub booked_since: Timestamp,
}

/// See [`Decisions::op_and_order`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderView {
    pub row: Option<LedgerRow>,
    /// The entry of some operation of the order that we booked.
    pub booked_entry: Option<String>,
    /// The oldest earlier operation of the order that is still unresolved.
    pub earlier_unresolved: Option<EarlierPayment>,
}

impl OrderView {
    /// Spread the rows of a backend's `views` statement — each tagged with its question's index
    /// `k` and its part `which` (see [`OrderView::add`]) — over one view per question.
    pub(crate) fn spread(
        questions: usize,
        rows: impl IntoIterator<Item = Result<(i64, i64, StoredRow), StoreError>>,
    ) -> Result<Vec<OrderView>, StoreError> {
        let mut views = vec![OrderView::default(); questions];
        for row in rows {
            let (k, which, stored) = row?;
            let view = usize::try_from(k)
                .ok()
                .and_then(|k| views.get_mut(k))
                .ok_or_else(|| StoreError::Corrupt(format!("views: no question {k}")))?;
            view.add(which, stored)?;
        }
        Ok(views)
    }

    /// Add one row of a backend's `op_and_order` statement, tagged by the part it came from
    /// (`which`): 0 the operation's own row, 1 a booked row of the order, 2 the oldest earlier
    /// unresolved row of the order.
    pub(crate) fn add(&mut self, which: i64, stored: StoredRow) -> Result<(), StoreError> {
        match which {
            0 => self.row = Some(stored.into_row()?),
            1 => self.booked_entry = Some(stored.erp_entry.unwrap_or_default()),
            _ => {
                let row = stored.into_row()?;
                self.earlier_unresolved = Some(EarlierPayment {
                    uid: row.uid,
                    decision: row.decision,
                });
            }
        }
        Ok(())
    }
}

/// A ledger row as every backend stores it — decision as text, the amount as its exact decimal
/// text, times as epoch milliseconds — read by name from any backend's row (`sqlx::FromRow`) or
/// from a JSON object of the same names (a statement that hands many rows over as one), then
/// checked into a [`LedgerRow`] in one place.
#[derive(sqlx::FromRow, serde::Deserialize)]
pub(crate) struct StoredRow {
    account: String,
    uid: String,
    reference: String,
    sales_order: Option<String>,
    status_code: Option<i64>,
    amount: Option<String>,
    currency: Option<String>,
    decision: String,
    reason: String,
    erp_entry: Option<String>,
    guard_value: Option<String>,
    first_seen_ms: i64,
    last_seen_ms: i64,
    times_seen: i64,
}

impl StoredRow {
    pub(crate) fn into_row(self) -> Result<LedgerRow, StoreError> {
        let amount = self
            .amount
            .map(|a| {
                Decimal::from_str(&a).map_err(|e| StoreError::Corrupt(format!("amount {a}: {e}")))
            })
            .transpose()?;
        let decision = DecisionKind::parse(&self.decision)
            .ok_or_else(|| StoreError::Corrupt(format!("decision {:?}", self.decision)))?;
        Ok(LedgerRow {
            account: self.account,
            uid: self.uid,
            reference: self.reference,
            sales_order: self.sales_order,
            status_code: self.status_code.map(|c| c as u16),
            amount,
            currency: self.currency,
            decision,
            reason: self.reason,
            erp_entry: self.erp_entry,
            guard_value: self.guard_value,
            first_seen: super::from_ms(self.first_seen_ms)?,
            last_seen: super::from_ms(self.last_seen_ms)?,
            times_seen: self.times_seen,
        })
    }
}

#[async_trait]
pub trait Decisions: Send + Sync {
    /// Rows for these operation ids of an account (ids never seen are absent).
    async fn rows(
        &self,
        account: &str,
        uids: &[String],
    ) -> Result<HashMap<String, LedgerRow>, StoreError>;
    /// Insert or update the row of `(account, uid)`. A booked row keeps its decision and entry.
    /// In the same transaction the decision is appended to the operation's history, unless the
    /// history's last entry already says the same (decision, reason and entry).
    async fn record(&self, rec: &Record) -> Result<(), StoreError>;
    /// [`Decisions::record`] for many rows in one transaction (one commit).
    async fn record_many(&self, recs: &[Record]) -> Result<(), StoreError>;
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
    /// Every decision recorded for the operation, oldest first (see [`Decisions::record`]: a
    /// decision that repeats the previous one of its history is not added again).
    async fn history(&self, account: &str, uid: &str) -> Result<Vec<HistoryRow>, StoreError>;
    /// [`Decisions::op_and_order`] for many operations of `account` at once: `views[i]` answers
    /// `queries[i]`. A backend that can answers them all in one statement (a batch re-reads its
    /// claimed orders once, not once per booking); this default asks one by one.
    async fn views(
        &self,
        account: &str,
        queries: &[ViewQuery],
    ) -> Result<Vec<OrderView>, StoreError> {
        let mut views = Vec::with_capacity(queries.len());
        for q in queries {
            let view = self
                .op_and_order(
                    account,
                    &q.uid,
                    q.created,
                    q.sales_order.as_deref(),
                    q.booked_since,
                )
                .await?;
            views.push(view);
        }
        Ok(views)
    }
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
    /// Operations worth re-examining although Mobbex may never report them as updated again:
    /// `order_missing`, `order_not_payable`, `waiting`, `error`, not seen since `now` minus a backoff that
    /// grows with how often they were seen (1 min, 2, 4, ... up to a day). Oldest first.
    async fn retryable(
        &self,
        account: &str,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<String>, StoreError>;
}

/// The decisions that hold later payments of the same order back, as an SQL list of string
/// literals (plain SQL, the same in every dialect). Partial indexes repeat this list: a query
/// uses one only when its list is written in exactly the same order.
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

/// The history of one operation, oldest first: `$1` the account, `$2` the operation id. Both
/// backends store the same columns and read them with this.
pub(crate) const HISTORY_OF: &str = "SELECT decided_ms, run_trigger, decision, reason, erp_entry, \
     sales_order, amount, repeats, last_ms FROM decision_history \
     WHERE account = $1 AND uid = $2 ORDER BY id";

/// A history row's stored columns (both backends store the same text).
#[derive(sqlx::FromRow)]
pub(crate) struct StoredHistory {
    pub decided_ms: i64,
    #[sqlx(rename = "run_trigger")]
    pub trigger: String,
    pub decision: String,
    pub reason: String,
    pub erp_entry: Option<String>,
    pub sales_order: Option<String>,
    pub amount: Option<String>,
    pub repeats: i64,
    pub last_ms: i64,
}

/// A history row from its stored columns.
pub(crate) fn history_row(s: StoredHistory) -> Result<HistoryRow, StoreError> {
    let corrupt =
        |what: &str, v: &str| StoreError::Corrupt(format!("decision history {what}: {v:?}"));
    Ok(HistoryRow {
        decided_at: super::from_ms(s.decided_ms)?,
        trigger: RunTrigger::parse(&s.trigger).ok_or_else(|| corrupt("trigger", &s.trigger))?,
        decision: DecisionKind::parse(&s.decision)
            .ok_or_else(|| corrupt("decision", &s.decision))?,
        reason: s.reason,
        erp_entry: s.erp_entry,
        sales_order: s.sales_order,
        amount: s
            .amount
            .map(|a| Decimal::from_str(&a).map_err(|_| corrupt("amount", &a)))
            .transpose()?,
        repeats: u32::try_from(s.repeats).unwrap_or(u32::MAX),
        last_at: super::from_ms(s.last_ms)?,
    })
}
