//! The reconciliation pipeline: operations in, decisions and payment entries out.
//!
//! Every trigger (manual `sync --since`, scheduled poll, webhook) ends here, so there is exactly one
//! place where booking happens. For each batch of operations (a page of 50, or one operation for a
//! webhook) the [`Engine`]:
//!
//! 1. reads the ledger rows of the batch (one query) — operations we already booked need no ERP call;
//! 2. for the paid, not yet booked ones, asks the ERP in three batched calls: entries already
//!    carrying these ids as `reference_no`, the named sales orders, and which of those orders already
//!    have a submitted entry;
//! 3. groups the operations by order and decides each group oldest first, in its own task; different
//!    orders run in parallel, at most `max_in_flight` ERP writes at once;
//! 4. within a group, under a process-wide per-order lock, re-reads the ledger (another trigger may
//!    have just booked this order), calls the pure [`decide`], creates the entry, records the row.
//!
//! A create whose answer never came (timeout, dropped connection, 502/504) is not sent again: the
//! entry is looked up by `reference_no` first (ERPNext commits the entry even when the answer is lost).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{Instrument, info, warn};

use crate::claims::{ClaimTiming, Claims, holder_name, order_key};
use crate::config::AccountSettings;
use crate::domain::{
    AccountPolicy, Decision, DecisionInput, DecisionKind, EarlierPayment, ExistingEntry, Operation,
    PaymentEntry, PaymentStatus, SalesOrder, decide,
};
use crate::erp::{Erp, ErpError};
use crate::source::slices::SliceWalker;
use crate::source::{Fetched, PaymentSource, SourceError, Window};
use crate::store::{Ledger, Record, StoreError};
mod rebook;
pub use rebook::{Rebook, RebookError, RebookPlan, next_guard_value};

use crate::summary::{BookedLine, Summary, UnresolvedLine};

/// Observes each decision as it is made (the CLI's progress bar).
pub type Observer = Arc<dyn Fn(&Outcome) + Send + Sync>;

/// How a run behaves.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Decide and report, but create nothing and record nothing.
    pub dry_run: bool,
    /// Keep every booked entry in the summary (for display).
    pub collect_booked: bool,
    pub observer: Option<Observer>,
    /// A deliberate re-booking (`paysync rebook`): this operation is booked although the ledger
    /// remembers it as booked (every entry of it was cancelled in ERPNext), with this guard value.
    pub rebook: Option<rebook::Rebook>,
}

/// The decision made for one operation.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub account: String,
    pub uid: String,
    pub reference: String,
    pub order: Option<String>,
    pub kind: DecisionKind,
    pub reason: String,
    pub entry_name: Option<String>,
    pub planned: Option<PaymentEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("account {account}: {source}")]
    Source {
        account: String,
        #[source]
        source: SourceError,
    },
    #[error("account {account}: {source}")]
    Erp {
        account: String,
        #[source]
        source: ErpError,
    },
    #[error("account {account}: {source}")]
    Store {
        account: String,
        #[source]
        source: StoreError,
    },
}

/// One account as the pipeline sees it: its settings and its payment source.
pub struct AccountCtx {
    pub settings: AccountSettings,
    pub source: Arc<dyn PaymentSource>,
}

/// A keyed async mutex: one booking at a time per ERP order in this process, whatever account.
#[derive(Default)]
struct OrderLocks {
    map: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl OrderLocks {
    fn get(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.map.lock().expect("order lock map poisoned");
        if let Some(l) = map.get(key).and_then(Weak::upgrade) {
            return l;
        }
        if map.len() > 4096 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let l = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key.to_string(), Arc::downgrade(&l));
        l
    }
}

/// The booking engine. Cheap to share (`Arc`); one per process.
pub struct Engine {
    erp: Arc<dyn Erp>,
    ledger: Arc<dyn Ledger>,
    tz: TimeZone,
    writes: Arc<Semaphore>,
    order_locks: OrderLocks,
    paid_to: Mutex<HashMap<(String, String), String>>,
    receivable: Mutex<HashMap<(String, String), String>>,
    group_slots: Arc<Semaphore>,
    today: Option<Date>,
    retry: crate::retry::RetryPolicy,
    /// This process's cross-process order claims.
    claims: Claims,
    /// Creates whose outcome was unknown (answer lost, not found by `reference_no` yet), by
    /// (account, operation id): not sent again by this process for `commit_horizon` (the server
    /// may still be committing them), whatever trigger brings the operation back.
    unknown_outcomes: Mutex<HashMap<(String, String), tokio::time::Instant>>,
    /// See `ErpSettings::commit_horizon`.
    commit_horizon: std::time::Duration,
    /// Operations whose last failure was passing (a create refused past the retry budget or
    /// whose answer was lost, an ERP lookup that failed), and when: worth one more try at the end
    /// of a run.
    settleable: Mutex<HashMap<(String, String), tokio::time::Instant>>,
}

/// Unresolved payments of a batch's orders re-examined with it, at most (see `pull_in`).
const PULL_IN_LIMIT: i64 = 200;

/// Order groups queued or running at once (see `process_batch`).
const GROUP_SLOTS: usize = 512;

impl Engine {
    pub fn new(
        erp: Arc<dyn Erp>,
        ledger: Arc<dyn Ledger>,
        tz: TimeZone,
        max_in_flight: usize,
    ) -> Engine {
        Engine {
            erp,
            tz,
            writes: Arc::new(Semaphore::new(max_in_flight.max(1))),
            order_locks: OrderLocks::default(),
            paid_to: Mutex::new(HashMap::new()),
            receivable: Mutex::new(HashMap::new()),
            group_slots: Arc::new(Semaphore::new(GROUP_SLOTS)),
            today: None,
            retry: crate::retry::RetryPolicy::default(),
            claims: Claims::new(ledger.clone(), holder_name(), ClaimTiming::default()),
            ledger,
            unknown_outcomes: Mutex::new(HashMap::new()),
            commit_horizon: std::time::Duration::from_secs(120),
            settleable: Mutex::new(HashMap::new()),
        }
    }

    /// How hard to retry a create that failed before committing.
    pub fn with_retry(mut self, retry: crate::retry::RetryPolicy) -> Engine {
        self.retry = retry;
        self
    }

    /// How long ERPNext may still commit a create whose answer was lost.
    pub fn with_commit_horizon(mut self, horizon: std::time::Duration) -> Engine {
        self.commit_horizon = horizon;
        self.with_claim_timing(ClaimTiming {
            commit_horizon: horizon,
            ..ClaimTiming::default()
        })
    }

    /// How claims live and are waited for (tests shorten them).
    pub fn with_claim_timing(mut self, timing: ClaimTiming) -> Engine {
        let holder = self.claims.holder().to_string();
        self.claims = Claims::new(self.ledger.clone(), holder, timing);
        self
    }

    /// Remember that `uid`'s failure was passing (see `settle`).
    fn mark_settleable(&self, account: &str, uid: &str) {
        // Marks older than an hour are of runs long finished (a daemon's webhooks): forget them.
        const KEEP: std::time::Duration = std::time::Duration::from_secs(3600);
        let mut marks = self.settleable.lock().expect("poisoned");
        if marks.len() > 1024 {
            marks.retain(|_, at| at.elapsed() < KEEP);
        }
        marks.insert(
            (account.to_string(), uid.to_string()),
            tokio::time::Instant::now(),
        );
    }

    /// Fix "today" (tests and the demo use it to get stable dates).
    pub fn with_today(mut self, today: Date) -> Engine {
        self.today = Some(today);
        self
    }

    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    fn today(&self) -> Date {
        self.today
            .unwrap_or_else(|| Timestamp::now().to_zoned(self.tz.clone()).date())
    }

    /// The account's bank account for `paid_to`: configured, else the mode of payment's default.
    async fn policy(&self, acc: &AccountSettings) -> Result<AccountPolicy, ErpError> {
        let paid_to = match &acc.paid_to {
            Some(p) => p.clone(),
            None => {
                let key = (acc.mode_of_payment.clone(), acc.company.clone());
                let cached = self.paid_to.lock().expect("poisoned").get(&key).cloned();
                match cached {
                    Some(p) => p,
                    None => {
                        let p = self
                            .erp
                            .mode_of_payment_account(&acc.mode_of_payment, &acc.company)
                            .await?;
                        self.paid_to
                            .lock()
                            .expect("poisoned")
                            .insert(key, p.clone());
                        p
                    }
                }
            }
        };
        Ok(AccountPolicy {
            company: acc.company.clone(),
            mode_of_payment: acc.mode_of_payment.clone(),
            paid_to,
            include_test: acc.include_test,
        })
    }

    async fn receivable_account(&self, customer: &str, company: &str) -> Result<String, ErpError> {
        let key = (customer.to_string(), company.to_string());
        if let Some(a) = self.receivable.lock().expect("poisoned").get(&key) {
            return Ok(a.clone());
        }
        let a = self.erp.receivable_account(customer, company).await?;
        self.receivable
            .lock()
            .expect("poisoned")
            .insert(key, a.clone());
        Ok(a)
    }

    /// Examine every operation of `window`, page by page, booking what the rules say.
    ///
    /// Returns `Err` only when the window could not be listed completely (the caller must not
    /// treat the window as done); what was examined before the failure is in the error's summary.
    pub async fn sync_window(
        self: &Arc<Self>,
        account: &AccountCtx,
        window: Window,
        opts: &RunOptions,
    ) -> Result<Summary, (Summary, SyncError)> {
        let name = account.settings.name.clone();
        let policy = match self.policy(&account.settings).await {
            Ok(p) => Arc::new(p),
            Err(e) => {
                return Err((
                    Summary::default(),
                    SyncError::Erp {
                        account: name,
                        source: e,
                    },
                ));
            }
        };

        // The window is read in slices (a day, longer over empty stretches: `source::slices`),
        // oldest first. Each slice is read completely (all its pages) before it is decided, so an
        // order's payments inside a slice are decided oldest first whatever order the listing
        // uses; slices are decided in time order, so the same holds across slices. The next slice
        // is fetched while this one is being booked.
        let (tx, mut rx) = mpsc::channel::<Result<Vec<Fetched>, SourceError>>(1);
        let source = account.source.clone();
        let fetcher = tokio::spawn(
            async move {
                let mut walker = SliceWalker::new(window);
                while let Some(slice) = walker.next_slice() {
                    let result = match fetch_all(source.as_ref(), &slice, walker.page_limit()).await
                    {
                        Ok(Some((items, pages))) => {
                            walker.observe(items.len(), pages);
                            Ok(items)
                        }
                        Ok(None) => {
                            walker.too_big(&slice);
                            continue;
                        }
                        Err(e) => Err(e),
                    };
                    let failed = result.is_err();
                    if tx.send(result).await.is_err() || failed {
                        return;
                    }
                }
            }
            .in_current_span(),
        );

        let mut summary = Summary::default();
        let mut run = RunState::default();
        let mut failure = None;
        let mut batcher = Batcher::new(&account.settings);
        while let Some(slice) = rx.recv().await {
            match slice {
                Ok(items) => {
                    for batch in batcher.push(items, &mut run.seen) {
                        let s = self
                            .process_batch(account, &policy, batch, opts, &mut run, None)
                            .await;
                        summary.merge(s);
                        // Reap finished groups so the set does not grow with the window.
                        while let Some(done) = run.tasks.try_join_next() {
                            summary.merge(done.unwrap_or_else(panicked));
                        }
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(rx);
        let _ = fetcher.await;
        // The remainder is decided even when a later slice failed: its operations were read.
        if let Some(batch) = batcher.finish() {
            let s = self
                .process_batch(account, &policy, batch, opts, &mut run, None)
                .await;
            summary.merge(s);
        }
        while let Some(done) = run.tasks.join_next().await {
            summary.merge(done.unwrap_or_else(panicked));
        }
        self.settle(account, &policy, opts, run, &mut summary).await;
        match failure {
            None => Ok(summary),
            Some(e) => {
                summary.failures.push(e.to_string());
                Err((
                    summary,
                    SyncError::Source {
                        account: name,
                        source: e,
                    },
                ))
            }
        }
    }

    /// The end of a run: one more try for what it left unresolved although it may resolve now —
    /// payments that wait for an earlier one, and failures that were passing (a create refused
    /// past the retry budget, a lookup that failed, a create whose answer was lost: for those the
    /// run first waits until `commit_horizon` has passed since they were sent, so a create that was
    /// never committed is looked up once more and then sent again, one that was is found). Each
    /// retried operation's first decision is replaced by its new one in the summary.
    async fn settle(
        self: &Arc<Self>,
        account: &AccountCtx,
        policy: &Arc<AccountPolicy>,
        opts: &RunOptions,
        run: RunState,
        summary: &mut Summary,
    ) {
        let acc = &account.settings;
        if opts.dry_run || summary.unresolved.is_empty() {
            return;
        }
        let retry: Vec<UnresolvedLine> = {
            let mut settleable = self.settleable.lock().expect("poisoned");
            summary
                .unresolved
                .iter()
                .filter(|u| {
                    let key = (acc.name.clone(), u.uid.clone());
                    settleable.remove(&key).is_some() || u.kind == DecisionKind::Waiting
                })
                .cloned()
                .collect()
        };
        if retry.is_empty() {
            return;
        }
        let wait = {
            let unknown = self.unknown_outcomes.lock().expect("poisoned");
            retry
                .iter()
                .filter_map(|u| unknown.get(&(acc.name.clone(), u.uid.clone())))
                .map(|at| self.commit_horizon.saturating_sub(at.elapsed()))
                .max()
                .unwrap_or_default()
        };
        if !wait.is_zero() {
            info!(account = %acc.name, wait_s = wait.as_secs_f64(), "waiting for ERPNext to settle creates whose answer was lost (erp.commit_horizon), then trying the run's unresolved payments once more");
            tokio::time::sleep(wait).await;
        }
        info!(account = %acc.name, operations = retry.len(), "trying the run's unresolved payments once more");
        summary.forget(&retry);
        // Fresh chains (the first pass's groups are done); the run's ids stay "seen", so nothing
        // decided in it is pulled in again.
        let mut pass = RunState {
            seen: run.seen,
            ..RunState::default()
        };
        let mut batcher = Batcher::new(acc);
        let mut fresh = HashSet::new();
        let items: Vec<Fetched> = retry.into_iter().map(|u| Fetched::Op(u.op)).collect();
        let mut batches = batcher.push(items, &mut fresh);
        batches.extend(batcher.finish());
        for batch in batches {
            let s = self
                .process_batch(account, policy, batch, opts, &mut pass, None)
                .await;
            summary.merge(s);
        }
        while let Some(done) = pass.tasks.join_next().await {
            summary.merge(done.unwrap_or_else(panicked));
        }
    }

    /// Examine a given set of operations (a webhook's, re-read from the source) to completion.
    pub async fn process_operations(
        self: &Arc<Self>,
        account: &AccountCtx,
        items: Vec<Fetched>,
        opts: &RunOptions,
    ) -> Result<Summary, SyncError> {
        self.process_operations_with(account, items, opts, None)
            .await
    }

    /// The named orders (none asked, no call).
    async fn orders_of(&self, names: &[String]) -> Result<HashMap<String, SalesOrder>, ErpError> {
        if names.is_empty() {
            return Ok(HashMap::new());
        }
        self.erp.sales_orders(names).await
    }

    /// Entries carrying these operation ids (none asked, no call).
    async fn entries_of(
        &self,
        uids: &[String],
    ) -> Result<HashMap<String, ExistingEntry>, ErpError> {
        if uids.is_empty() {
            return Ok(HashMap::new());
        }
        self.erp.entries_by_reference(uids).await
    }

    /// Of these orders, those with a submitted entry (none asked, no call).
    async fn orders_with_entries_of(&self, names: &[String]) -> Result<HashSet<String>, ErpError> {
        if names.is_empty() {
            return Ok(HashSet::new());
        }
        self.erp.orders_with_entries(names).await
    }

    /// All three lookups at once: one round trip of latency.
    async fn all_facts(&self, uids: &[String], names: &[String]) -> Result<Facts, ErpError> {
        tokio::try_join!(
            self.entries_of(uids),
            self.orders_of(names),
            self.orders_with_entries_of(names)
        )
    }

    /// The ERP facts about one operation, read *while* the operation itself is being re-read from
    /// the source (a webhook's `reference` is used only as a guess of the order; the guess is used
    /// only if the source confirms it). Saves one ERP round trip on the webhook path.
    pub async fn prefetch(&self, uid: &str, order_guess: Option<&str>) -> Prefetched {
        let uids = [uid.to_string()];
        let names: Vec<String> = order_guess.map(|o| vec![o.to_string()]).unwrap_or_default();
        let read_at = Timestamp::now();
        let facts = self.all_facts(&uids, &names).await.ok();
        Prefetched {
            uid: uid.to_string(),
            order: order_guess.map(str::to_string),
            facts,
            read_at,
        }
    }

    /// [`Engine::process_operations`] with facts read ahead by [`Engine::prefetch`].
    pub async fn process_operations_with(
        self: &Arc<Self>,
        account: &AccountCtx,
        items: Vec<Fetched>,
        opts: &RunOptions,
        prefetched: Option<Prefetched>,
    ) -> Result<Summary, SyncError> {
        let policy =
            Arc::new(
                self.policy(&account.settings)
                    .await
                    .map_err(|e| SyncError::Erp {
                        account: account.settings.name.clone(),
                        source: e,
                    })?,
            );
        let mut run = RunState::default();
        for item in &items {
            if let Fetched::Op(op) = item {
                run.seen.insert(op.uid.clone());
            }
        }
        let mut summary = self
            .process_batch(account, &policy, items, opts, &mut run, prefetched)
            .await;
        while let Some(done) = run.tasks.join_next().await {
            summary.merge(done.unwrap_or_else(panicked));
        }
        Ok(summary)
    }

    /// Decide one batch. Operations that cannot be booked are decided here; bookable ones are
    /// handed to per-order tasks pushed onto `run.tasks` (chained after earlier tasks of the same
    /// order through `run.chains`, so an order's payments are decided in order across batches).
    async fn process_batch(
        self: &Arc<Self>,
        account: &AccountCtx,
        policy: &Arc<AccountPolicy>,
        items: Vec<Fetched>,
        opts: &RunOptions,
        run: &mut RunState,
        prefetched: Option<Prefetched>,
    ) -> Summary {
        let acc = &account.settings;
        let slots = self.group_slots.clone();
        let mut summary = Summary::default();
        let mut ops: Vec<Operation> = Vec::with_capacity(items.len());
        let mut seen = HashSet::new();
        for item in items {
            match item {
                Fetched::Op(op) => {
                    // A listing that shifts while it is read can repeat an operation.
                    if seen.insert(op.uid.clone()) {
                        ops.push(op);
                    }
                }
                Fetched::Bad { uid, reason } => {
                    let out = Outcome {
                        account: acc.name.clone(),
                        uid: uid.clone().unwrap_or_else(|| "(no id)".into()),
                        reference: String::new(),
                        order: None,
                        kind: DecisionKind::Error,
                        reason: format!("malformed operation: {reason}"),
                        entry_name: None,
                        planned: None,
                    };
                    if let Some(uid) = uid
                        && !opts.dry_run
                    {
                        let rec = Record {
                            account: acc.name.clone(),
                            uid,
                            reference: String::new(),
                            sales_order: None,
                            status_code: None,
                            amount: None,
                            currency: None,
                            decision: DecisionKind::Error,
                            reason: out.reason.clone(),
                            erp_entry: None,
                            op_created: None,
                            seen_at: Timestamp::now(),
                        };
                        if let Err(e) = self.ledger.record(&rec).await {
                            warn!(account = %acc.name, uid = %rec.uid, error = %e, "ledger write failed");
                        }
                    }
                    report(&out, opts);
                    summary.count(DecisionKind::Error);
                }
            }
        }
        if ops.is_empty() {
            return summary;
        }

        // Payments of these orders that earlier runs left unresolved are re-examined with them, in
        // creation order: a later payment never overtakes an earlier one, and one that waited for
        // an earlier payment is booked as soon as that one resolves.
        let pulled = self.pull_in(account, policy, &ops, run).await;
        ops.extend(pulled);

        let uids: Vec<String> = ops.iter().map(|o| o.uid.clone()).collect();
        let ledger_rows = match self.ledger.rows(&acc.name, &uids).await {
            Ok(r) => r,
            Err(e) => {
                let reason = format!("ledger unavailable: {e}");
                for op in &ops {
                    self.finish_without_record(
                        acc,
                        op,
                        None,
                        DecisionKind::Error,
                        &reason,
                        opts,
                        &mut summary,
                    );
                }
                return summary;
            }
        };

        // Split: operations the ERP must be asked about, and the rest (decided now).
        // (A re-booking's operation is not: the ledger remembers an entry that was cancelled.)
        let booked_entry = |uid: &str| -> Option<String> {
            ledger_rows
                .get(uid)
                .filter(|r| !rebook::forgets(opts, r))
                .and_then(|r| {
                    (r.decision.is_booked() || r.decision == DecisionKind::AlreadyLoaded).then(
                        || {
                            r.erp_entry
                                .clone()
                                .unwrap_or_else(|| "(recorded in the ledger)".into())
                        },
                    )
                })
        };
        let mut candidates: Vec<Operation> = Vec::new();
        let mut deferred: Vec<Record> = Vec::new();
        for op in ops {
            let needs_erp = !op.is_child
                && (!op.is_test || policy.include_test)
                && op.status == PaymentStatus::Paid
                && booked_entry(&op.uid).is_none();
            if needs_erp {
                candidates.push(op);
                continue;
            }
            let order_name = acc.order_name(&op.reference).map(str::to_string);
            let loaded = booked_entry(&op.uid);
            let decision = decide(&DecisionInput {
                op: &op,
                policy,
                order_name: order_name.as_deref(),
                order: None,
                order_has_entry: false,
                already_loaded: loaded.as_deref(),
                earlier_unresolved: None,
                today: self.today(),
            });
            let (kind, reason) = match &decision {
                Decision::Skip(s) => (s.kind, s.reason.clone()),
                // Unreachable: a bookable operation is always a candidate. Be safe anyway.
                other => (
                    DecisionKind::Error,
                    format!("internal: unexpected {:?}", other.kind()),
                ),
            };
            let entry = ledger_rows.get(&op.uid).and_then(|r| r.erp_entry.clone());
            if !opts.dry_run {
                deferred.push(make_record(
                    acc,
                    &op,
                    order_name.clone(),
                    kind,
                    &reason,
                    entry.clone(),
                ));
            }
            announce(
                acc,
                &op,
                order_name,
                kind,
                &reason,
                entry,
                None,
                opts,
                &mut summary,
            );
        }
        // Decisions that book nothing are written in one transaction per batch.
        if let Err(e) = self.ledger.record_many(&deferred).await {
            warn!(account = %acc.name, rows = deferred.len(), error = %e, "ledger write failed");
        }
        if candidates.is_empty() {
            return summary;
        }

        // Batched ERP reads for the candidates.
        let cand_uids: Vec<String> = candidates.iter().map(|o| o.uid.clone()).collect();
        let mut order_names: Vec<String> = candidates
            .iter()
            .filter_map(|o| acc.order_name(&o.reference).map(str::to_string))
            .collect();
        order_names.sort();
        order_names.dedup();
        // A single operation (a webhook) asks all three at once: one round trip of latency. A
        // batch first reads the orders, then asks about entries only for the operations that could
        // still be booked: re-examining operations whose order is missing costs one call, not three.
        // When the ERP was asked: only what the ledger booked since can add to its answers.
        let mut facts_read_at = Timestamp::now();
        let reuse = prefetched.and_then(|p| {
            let only = (candidates.len() == 1).then(|| &candidates[0])?;
            let same = p.uid == only.uid && p.order.as_deref() == acc.order_name(&only.reference);
            if same {
                facts_read_at = p.read_at;
                p.facts
            } else {
                None
            }
        });
        let lookups = async {
            if let Some(facts) = reuse {
                return Ok(facts);
            }
            if candidates.len() == 1 {
                return self.all_facts(&cand_uids, &order_names).await;
            }
            let orders = self.orders_of(&order_names).await?;
            let today = self.today();
            let mut uids = Vec::new();
            let mut names = Vec::new();
            for op in &candidates {
                let name = acc.order_name(&op.reference);
                let order = name.and_then(|n| orders.get(n));
                let bookable = matches!(
                    decide(&DecisionInput {
                        op,
                        policy,
                        order_name: name,
                        order,
                        order_has_entry: false,
                        already_loaded: None,
                        earlier_unresolved: None,
                        today,
                    }),
                    Decision::BookInitial(_) | Decision::BookAdditional(_)
                );
                if bookable {
                    uids.push(op.uid.clone());
                    if let Some(n) = name {
                        names.push(n.to_string());
                    }
                }
            }
            names.sort();
            names.dedup();
            let (existing, with_entries) =
                tokio::try_join!(self.entries_of(&uids), self.orders_with_entries_of(&names))?;
            Ok((existing, orders, with_entries))
        };
        let (existing, orders, with_entries) = match lookups.await {
            Ok(x) => x,
            Err(e) => {
                let reason = format!("could not check the ERP: {e}");
                for op in &candidates {
                    self.mark_settleable(&acc.name, &op.uid);
                    let order = acc.order_name(&op.reference).map(str::to_string);
                    self.finish(
                        acc,
                        op,
                        order,
                        DecisionKind::Error,
                        &reason,
                        None,
                        None,
                        opts,
                        &mut summary,
                    )
                    .await;
                }
                return summary;
            }
        };

        // Group by order, oldest first within each group.
        let mut groups: HashMap<Option<String>, Vec<Operation>> = HashMap::new();
        for op in candidates {
            let order = acc.order_name(&op.reference).map(str::to_string);
            groups.entry(order).or_default().push(op);
        }
        // Claim every order of the batch in one statement (cross-process safety); orders another
        // live process holds fall back to a per-group claim that waits.
        let keys: Vec<String> = groups.keys().flatten().map(|o| order_key(o)).collect();
        let claimed: HashSet<String> = if opts.dry_run || keys.is_empty() {
            HashSet::new()
        } else {
            match self.claims.take_many(&keys).await {
                Ok(c) => c,
                Err(e) => {
                    warn!(account = %acc.name, error = %e, "batch claim failed; claiming per order");
                    HashSet::new()
                }
            }
        };
        let batch_claims = Arc::new(BatchClaims {
            keys: claimed.iter().cloned().collect(),
            remaining: std::sync::atomic::AtomicUsize::new(
                groups
                    .keys()
                    .flatten()
                    .filter(|o| claimed.contains(&order_key(o)))
                    .count(),
            ),
        });
        for (order, mut group) in groups {
            group.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.uid.cmp(&b.uid)));
            let pre_claimed = order
                .as_ref()
                .is_some_and(|o| claimed.contains(&order_key(o)));

            let facts = GroupFacts {
                order: order.as_ref().and_then(|o| orders.get(o).cloned()),
                order_has_entry: order.as_ref().is_some_and(|o| with_entries.contains(o)),
                existing: group
                    .iter()
                    .filter_map(|op| existing.get(&op.uid).map(|e| (op.uid.clone(), e.clone())))
                    .collect(),
                read_at: facts_read_at,
            };
            let previous = order.as_ref().and_then(|o| run.chains.remove(o));
            let (done_tx, done_rx) = oneshot::channel();
            if let Some(o) = &order {
                run.chains.insert(o.clone(), done_rx);
            }
            // Backpressure: at most GROUP_SLOTS order groups queued or running, so a huge window
            // does not pile up tasks while the ERP works through its writes.
            let slot = slots
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore never closed");
            let engine = self.clone();
            let batch_claims = batch_claims.clone();
            let acc = acc.clone();
            let policy = policy.clone();
            let opts = opts.clone();
            run.tasks.spawn(
                async move {
                    // Wait for the previous group of this order; it tells whether the order has an
                    // entry now and which payment is unresolved (needed in a dry run, where the
                    // ledger records nothing).
                    let inherited = match previous {
                        Some(prev) => prev.await.unwrap_or_default(),
                        None => OrderProgress::default(),
                    };
                    let (s, progress) = engine
                        .book_group(
                            &acc,
                            &policy,
                            order,
                            group,
                            facts,
                            inherited,
                            pre_claimed,
                            &opts,
                        )
                        .await;
                    let _ = done_tx.send(progress);
                    if pre_claimed
                        && batch_claims
                            .remaining
                            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
                            == 1
                    {
                        engine.claims.release(&batch_claims.keys).await;
                    }
                    drop(slot);
                    s
                }
                .in_current_span(),
            );
        }
        summary
    }

    /// Decide and book one order's operations, one after another, under the order's lock.
    ///
    /// Oldest first, whatever fails: once a paid payment of the order is left unresolved (an
    /// error, an unknown create outcome, a claim another process holds, a missing order), every
    /// later payment of the order is `waiting` until it resolves — here, from the previous group of
    /// the order in this run (`inherited`), or from the ledger (earlier runs, other processes).
    #[allow(clippy::too_many_arguments)]
    async fn book_group(
        &self,
        acc: &AccountSettings,
        policy: &AccountPolicy,
        order: Option<String>,
        group: Vec<Operation>,
        facts: GroupFacts,
        inherited: OrderProgress,
        pre_claimed: bool,
        opts: &RunOptions,
    ) -> (Summary, OrderProgress) {
        let mut summary = Summary::default();
        let mut progress = inherited;
        progress.has_entry |= facts.order_has_entry;
        let lock = order.as_ref().map(|o| self.order_locks.get(o));
        let _guard = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        // Across processes sharing the ledger (the daemon and a manual sync), the order's claim:
        // usually taken for the whole batch already; otherwise wait for it here.
        let claim_key = order.as_ref().map(|o| order_key(o));
        if let Some(key) = &claim_key
            && !opts.dry_run
            && !pre_claimed
            && let Err(reason) = self.claims.take(key).await
        {
            let mut out = (summary, progress);
            self.fail_group(acc, order.as_deref(), &group, &reason, opts, &mut out)
                .await;
            return out;
        }
        // Taken over from another holder (expired, or a process that is gone): its creates may
        // still commit. Wait them out, then ask the ERP again (the batch's facts predate them).
        let mut facts = facts;
        if let Some(key) = &claim_key
            && !opts.dry_run
            && let Some(wait) = self.claims.takeover_wait(key)
            && !self.erp.guard_installed().await.unwrap_or(false)
        {
            warn!(account = %acc.name, order = order.as_deref().unwrap_or("-"), wait_s = wait.as_secs_f64(), "order taken over from another holder: waiting out its in-flight creates before booking");
            tokio::time::sleep(wait).await;
            if let Err(e) = self
                .refresh_facts(order.as_deref(), &group, &mut facts)
                .await
            {
                let reason = format!("could not check the ERP after a takeover: {e}");
                for op in &group {
                    self.mark_settleable(&acc.name, &op.uid);
                }
                let mut out = (summary, progress);
                self.fail_group(acc, order.as_deref(), &group, &reason, opts, &mut out)
                    .await;
                if !pre_claimed {
                    self.claims.release(std::slice::from_ref(key)).await;
                }
                return out;
            }
            progress.has_entry |= facts.order_has_entry;
        }
        let group_len = group.len();
        for (idx, op) in group.into_iter().enumerate() {
            // Another trigger may have booked this operation or this order since the batch was
            // read, or left an earlier payment of the order unresolved.
            let fresh = self
                .ledger
                .op_and_order(
                    &acc.name,
                    &op.uid,
                    op.created,
                    order.as_deref(),
                    facts.read_at,
                )
                .await;
            let view = match fresh {
                Ok(x) => x,
                Err(e) => {
                    let reason = format!("ledger unavailable: {e}");
                    self.finish_without_record(
                        acc,
                        &op,
                        order.clone(),
                        DecisionKind::Error,
                        &reason,
                        opts,
                        &mut summary,
                    );
                    progress.note(&op, DecisionKind::Error, opts.dry_run);
                    continue;
                }
            };
            progress.has_entry |= view.booked_entry.is_some();
            let row = view.row;
            let earlier = progress.blocker.clone().or_else(|| {
                view.earlier_unresolved
                    .filter(|e| !progress.resolved_in_dry_run.contains(&e.uid))
            });
            let rebooking = opts.rebook.as_ref().filter(|r| r.uid == op.uid);
            // The guard value the entry will carry: a re-booking's own, else the operation id.
            let guard_value = match rebooking {
                Some(r) => r.guard_value.clone(),
                None => row.as_ref().and_then(|r| r.guard_value.clone()),
            };
            let loaded_in_ledger = row
                .as_ref()
                .filter(|r| !rebook::forgets(opts, r))
                .filter(|r| r.decision.is_booked() || r.decision == DecisionKind::AlreadyLoaded)
                .map(|r| r.erp_entry.clone().unwrap_or_default());
            let loaded_in_erp = facts.existing.get(&op.uid).map(|e| {
                if e.docstatus == 0 {
                    format!("{} (a draft: submit it in ERPNext)", e.name)
                } else {
                    e.name.clone()
                }
            });
            let loaded = loaded_in_ledger.or(loaded_in_erp);
            let decision = decide(&DecisionInput {
                op: &op,
                policy,
                order_name: order.as_deref(),
                order: facts.order.as_ref(),
                order_has_entry: progress.has_entry,
                already_loaded: loaded.as_deref(),
                earlier_unresolved: earlier.as_ref(),
                today: self.today(),
            })
            .with_guard_value(guard_value);
            let planned_kind = decision.kind();
            let (kind, reason, name, planned) = match decision {
                Decision::Skip(s) => {
                    let entry = match s.kind {
                        DecisionKind::AlreadyLoaded => facts
                            .existing
                            .get(&op.uid)
                            .map(|e| e.name.clone())
                            .or_else(|| row.as_ref().and_then(|r| r.erp_entry.clone())),
                        _ => None,
                    };
                    (s.kind, s.reason, entry, None)
                }
                Decision::BookInitial(entry) | Decision::BookAdditional(entry) if opts.dry_run => (
                    planned_kind,
                    "dry run: not created".into(),
                    None,
                    Some(entry),
                ),
                Decision::BookInitial(entry) => {
                    let (kind, reason, name) = self
                        .create(
                            acc,
                            &op,
                            entry.clone(),
                            DecisionKind::BookedInitial,
                            claim_key.as_deref(),
                        )
                        .await;
                    (kind, reason, name, Some(entry))
                }
                Decision::BookAdditional(mut entry) => {
                    match self.receivable_account(&entry.party, &entry.company).await {
                        Ok(a) => {
                            entry.paid_from = Some(a);
                            let (kind, reason, name) = self
                                .create(
                                    acc,
                                    &op,
                                    entry.clone(),
                                    DecisionKind::BookedAdditional,
                                    claim_key.as_deref(),
                                )
                                .await;
                            (kind, reason, name, Some(entry))
                        }
                        Err(e) => {
                            self.mark_settleable(&acc.name, &op.uid);
                            (
                                DecisionKind::Error,
                                format!("could not read the customer's receivable account: {e}"),
                                None,
                                None,
                            )
                        }
                    }
                }
            };
            // A dry run "books" what it would create, so later payments see the order paid.
            if kind.is_booked() || (opts.dry_run && planned_kind.is_booked()) {
                progress.has_entry = true;
            }
            // Already in ERPNext although the batch's lookups did not say the order has an entry
            // (committed since: an answer lost, another process, the guard's refusal): ask ERPNext
            // again whether an entry references the order now, before a later payment decides.
            // (Only when it matters: the create itself found it, or a later payment of the order
            // follows in this group — one extra call, not one per already-loaded operation.)
            if kind == DecisionKind::AlreadyLoaded
                && !progress.has_entry
                && (planned_kind.is_booked() || idx + 1 < group_len)
                && let Some(o) = order.as_deref()
            {
                match self.orders_with_entries_of(&[o.to_string()]).await {
                    Ok(with) => progress.has_entry = with.contains(o),
                    Err(e) => {
                        warn!(account = %acc.name, uid = %op.uid, error = %e, "could not re-check the order's entries; its later payments wait");
                        progress.blocker.get_or_insert_with(|| EarlierPayment {
                            uid: op.uid.clone(),
                            decision: DecisionKind::Error,
                        });
                    }
                }
            }
            self.finish(
                acc,
                &op,
                order.clone(),
                kind,
                &reason,
                name,
                planned,
                opts,
                &mut summary,
            )
            .await;
            progress.note(&op, kind, opts.dry_run);
        }
        // A claim this group took itself is released here; the batch's claims are released together
        // when the batch's last group ends (see `process_batch`).
        if let Some(key) = &claim_key
            && !opts.dry_run
            && !pre_claimed
        {
            self.claims.release(std::slice::from_ref(key)).await;
        }
        (summary, progress)
    }

    /// Re-read from the source the unresolved payments of the batch's orders that this run has not
    /// listed (an earlier payment that failed in another run or trigger, a later one that waits for
    /// it), so they are decided with the batch, in creation order. Best effort: one that cannot be
    /// re-read now keeps its ledger row, and the ledger check in `book_group` still holds later
    /// payments back.
    async fn pull_in(
        &self,
        account: &AccountCtx,
        policy: &AccountPolicy,
        ops: &[Operation],
        run: &mut RunState,
    ) -> Vec<Operation> {
        let acc = &account.settings;
        let mut orders: Vec<String> = ops
            .iter()
            .filter(|o| !o.is_child && (!o.is_test || policy.include_test))
            .filter_map(|o| acc.order_name(&o.reference).map(str::to_string))
            .collect();
        orders.sort();
        orders.dedup();
        if orders.is_empty() {
            return Vec::new();
        }
        let uids: Vec<String> = match self
            .ledger
            .unresolved_in_orders(&acc.name, &orders, PULL_IN_LIMIT)
            .await
        {
            Ok(rows) => rows
                .into_iter()
                .map(|(uid, _)| uid)
                .filter(|uid| !run.seen.contains(uid))
                .collect(),
            Err(e) => {
                warn!(account = %acc.name, error = %e, "could not read the orders' unresolved payments");
                return Vec::new();
            }
        };
        if uids.is_empty() {
            return Vec::new();
        }
        let source = account.source.clone();
        let fetched: Vec<_> = futures::stream::iter(uids)
            .map(|uid| {
                let source = source.clone();
                async move { (source.get_operation(&uid).await, uid) }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut out = Vec::new();
        for (result, uid) in fetched {
            match result {
                // Decided with this batch, so never again in this run (a later slice may list it).
                Ok(op) if run.seen.insert(op.uid.clone()) => {
                    info!(account = %acc.name, uid = %op.uid, reference = %op.reference, "re-examining an unresolved payment of the order with this batch");
                    out.push(op);
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(account = %acc.name, uid = %uid, error = %e, "could not re-read an unresolved payment of the order; later payments keep waiting for it");
                }
            }
        }
        out
    }

    /// Record every operation of a group as `error` with `reason` (nothing was booked).
    async fn fail_group(
        &self,
        acc: &AccountSettings,
        order: Option<&str>,
        group: &[Operation],
        reason: &str,
        opts: &RunOptions,
        out: &mut (Summary, OrderProgress),
    ) {
        for op in group {
            self.finish(
                acc,
                op,
                order.map(str::to_string),
                DecisionKind::Error,
                reason,
                None,
                None,
                opts,
                &mut out.0,
            )
            .await;
            out.1.note(op, DecisionKind::Error, opts.dry_run);
        }
    }

    /// Ask the ERP again about one order group (after waiting out a previous holder's creates).
    async fn refresh_facts(
        &self,
        order: Option<&str>,
        group: &[Operation],
        facts: &mut GroupFacts,
    ) -> Result<(), ErpError> {
        let uids: Vec<String> = group.iter().map(|o| o.uid.clone()).collect();
        let names: Vec<String> = order.map(|o| vec![o.to_string()]).unwrap_or_default();
        let read_at = Timestamp::now();
        let (existing, with_entries) =
            tokio::try_join!(self.entries_of(&uids), self.orders_with_entries_of(&names))?;
        facts.existing = existing;
        facts.order_has_entry = order.is_some_and(|o| with_entries.contains(o));
        facts.read_at = read_at;
        Ok(())
    }

    /// Create one entry. Returns the decision to record, its reason and the entry name.
    ///
    /// The rule for writes: a create is sent again only when it certainly did not commit
    /// (connection refused, 429, 500, 503). When the answer was lost (timeout, broken connection,
    /// 502/504) the entry is looked up by `reference_no` first; if it is not found, it is *not*
    /// sent again in this run (the server may still be committing it): the operation is recorded
    /// as `error` and the next run's batched lookup decides.
    async fn create(
        &self,
        acc: &AccountSettings,
        op: &Operation,
        entry: PaymentEntry,
        kind: DecisionKind,
        claim_key: Option<&str>,
    ) -> (DecisionKind, String, Option<String>) {
        let key = (acc.name.clone(), op.uid.clone());
        // With the server-side guard the ERP refuses a second entry itself: a create whose
        // outcome is unknown can simply be sent again (it ends in 200, or in the guard's 417).
        let guarded = self.erp.guard_installed().await.unwrap_or(false);
        let since_unknown = self
            .unknown_outcomes
            .lock()
            .expect("poisoned")
            .get(&key)
            .map(|at| at.elapsed());
        if !guarded
            && let Some(elapsed) = since_unknown
            && elapsed < self.commit_horizon
        {
            self.mark_settleable(&acc.name, &op.uid);
            return (
                DecisionKind::Error,
                format!(
                    "a create sent {}s ago got no answer and ERPNext may still be committing it (erp.commit_horizon = {}s); not sent again before; re-examined later",
                    elapsed.as_secs(),
                    self.commit_horizon.as_secs()
                ),
                None,
            );
        }
        // The retry budget bounds the time spent *waiting between retries*, not the time queued
        // for a write slot behind other creates (a busy ERPNext would otherwise spend it).
        let mut waited = std::time::Duration::ZERO;
        // An earlier attempt's outcome was unknown (sent again because the guard is installed):
        // a refusal now may be ERPNext validating against our own committed entry.
        let mut maybe_committed = false;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            // At most max_in_flight writes at once; the slot is held only during the request.
            let permit = self.writes.acquire().await.expect("semaphore never closed");
            // The wait for a write slot can be long: the order must still be ours right now.
            if let Some(key) = claim_key
                && !self.claims.still_held(key).await
            {
                warn!(account = %acc.name, uid = %op.uid, key, "the order's claim lapsed and another process took it; nothing created");
                return (
                    DecisionKind::Error,
                    format!(
                        "{key}: the claim lapsed and another paysync process took it before the create; nothing created; re-examined later"
                    ),
                    None,
                );
            }
            let result = self.erp.create_entry(&entry).await;
            drop(permit);
            let err = match result {
                Ok(created) => {
                    let note = if attempt > 1 {
                        format!("created on attempt {attempt}")
                    } else {
                        String::new()
                    };
                    return (kind, note, Some(created.name));
                }
                Err(e) => e,
            };
            if let ErpError::Duplicate(message) = &err {
                return self.already_held(acc, op, entry.guard_key(), message).await;
            }
            if err.outcome_unknown() && guarded {
                maybe_committed = true;
            }
            if let ErpError::Rejected { .. } = &err
                && maybe_committed
                && let Ok(found) = self
                    .erp
                    .entries_by_reference(std::slice::from_ref(&op.uid))
                    .await
                && let Some(ExistingEntry { name, .. }) = found.get(&op.uid)
            {
                return (
                    kind,
                    format!(
                        "created (answer lost; the resend was refused: {err}; found by reference_no)"
                    ),
                    Some(name.clone()),
                );
            }
            if err.outcome_unknown() && !guarded {
                warn!(account = %acc.name, uid = %op.uid, error = %err, "no answer to a create; looking the entry up by reference_no");
                {
                    let mut unknown = self.unknown_outcomes.lock().expect("poisoned");
                    let horizon = self.commit_horizon;
                    unknown.retain(|_, at| at.elapsed() < horizon);
                    unknown.insert(key.clone(), tokio::time::Instant::now());
                }
                self.mark_settleable(&acc.name, &op.uid);
                for wait_ms in [0u64, 1000, 2000] {
                    tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
                    match self
                        .erp
                        .entries_by_reference(std::slice::from_ref(&op.uid))
                        .await
                    {
                        Ok(found) => {
                            if let Some(ExistingEntry { name, .. }) = found.get(&op.uid) {
                                return (
                                    kind,
                                    "created (answer lost; found by reference_no)".into(),
                                    Some(name.clone()),
                                );
                            }
                        }
                        Err(e2) => {
                            return (
                                DecisionKind::Error,
                                format!(
                                    "{err}; the lookup by reference_no failed too: {e2}; re-examined later"
                                ),
                                None,
                            );
                        }
                    }
                }
                return (
                    DecisionKind::Error,
                    format!(
                        "{err}; not found by reference_no, so not sent again until erp.commit_horizon ({}s) has passed; re-examined then",
                        self.commit_horizon.as_secs()
                    ),
                    None,
                );
            }
            if err.is_transient() {
                let delay = err
                    .retry_after()
                    .unwrap_or_else(|| self.retry.delay(attempt))
                    .max(self.retry.delay(attempt));
                if (attempt as usize) <= self.retry.max_times
                    && waited + delay <= self.retry.max_total
                {
                    metrics::counter!(crate::metrics::RETRIES, "api" => "erpnext").increment(1);
                    warn!(account = %acc.name, uid = %op.uid, error = %err, attempt, retry_in_ms = delay.as_millis() as u64, "create failed before committing; retrying");
                    waited += delay;
                    tokio::time::sleep(delay).await;
                    continue;
                }
                warn!(account = %acc.name, uid = %op.uid, error = %err, attempt, "create gave up for now");
                self.mark_settleable(&acc.name, &op.uid);
                return (
                    DecisionKind::Error,
                    format!("{err} (gave up after {attempt} attempts; re-examined later)"),
                    None,
                );
            }
            return match err {
                ErpError::Rejected {
                    status,
                    exc_type,
                    message,
                } => {
                    // A business rejection: the same body gets the same answer. When it is about
                    // the order, record it as such (the order may change; re-examined later).
                    let about_order = message.contains("Sales Order") || message.contains("Row #");
                    let kind = if about_order {
                        DecisionKind::OrderNotPayable
                    } else {
                        DecisionKind::Error
                    };
                    (
                        kind,
                        format!("ERPNext {status} {exc_type}: {message}"),
                        None,
                    )
                }
                e => (DecisionKind::Error, e.to_string(), None),
            };
        }
    }

    /// The guard refused the create: another entry already holds the operation. Find it (whatever
    /// its docstatus) and record the operation as already loaded — never booked twice, never an
    /// error. A cancelled holder means the payment was booked and cancelled in ERPNext: it is not
    /// booked again on our own.
    async fn already_held(
        &self,
        acc: &AccountSettings,
        op: &Operation,
        guard_key: &str,
        message: &str,
    ) -> (DecisionKind, String, Option<String>) {
        match self.erp.entry_by_guard(guard_key).await {
            // No entry name: a cancelled entry references nothing any more.
            Ok(Some(holder)) if holder.docstatus == 2 => (
                DecisionKind::AlreadyLoaded,
                format!(
                    "Payment Entry {} holds this operation and was cancelled in ERPNext; not booked again (`paysync rebook {}` books it again deliberately)",
                    holder.name, op.uid
                ),
                None,
            ),
            Ok(Some(holder)) => (
                DecisionKind::AlreadyLoaded,
                format!(
                    "ERPNext refused a second entry (duplicate guard): Payment Entry {} already holds this operation",
                    holder.name
                ),
                Some(holder.name),
            ),
            Ok(None) => {
                self.mark_settleable(&acc.name, &op.uid);
                (
                    DecisionKind::Error,
                    format!(
                        "ERPNext's duplicate guard refused the entry ({message}) but no entry holds the operation yet; re-examined later"
                    ),
                    None,
                )
            }
            Err(e) => {
                self.mark_settleable(&acc.name, &op.uid);
                (
                    DecisionKind::Error,
                    format!(
                        "ERPNext's duplicate guard refused the entry; looking up the holder failed: {e}; re-examined later"
                    ),
                    None,
                )
            }
        }
    }

    /// Record and log one decision, and count it.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        acc: &AccountSettings,
        op: &Operation,
        order: Option<String>,
        kind: DecisionKind,
        reason: &str,
        entry_name: Option<String>,
        planned: Option<PaymentEntry>,
        opts: &RunOptions,
        summary: &mut Summary,
    ) {
        if !opts.dry_run {
            let rec = make_record(acc, op, order.clone(), kind, reason, entry_name.clone());
            if let Err(e) = self.ledger.record(&rec).await {
                // The ERP lookup by reference_no on the next run covers a booked entry whose row
                // could not be written.
                warn!(account = %acc.name, uid = %op.uid, error = %e, decision = %kind, "ledger write failed");
            }
        }
        announce(
            acc, op, order, kind, reason, entry_name, planned, opts, summary,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_without_record(
        &self,
        acc: &AccountSettings,
        op: &Operation,
        order: Option<String>,
        kind: DecisionKind,
        reason: &str,
        opts: &RunOptions,
        summary: &mut Summary,
    ) {
        let out = Outcome {
            account: acc.name.clone(),
            uid: op.uid.clone(),
            reference: op.reference.clone(),
            order,
            kind,
            reason: reason.to_string(),
            entry_name: None,
            planned: None,
        };
        log_decision(&out, op);
        report(&out, opts);
        summary.count_decision(op, kind, reason);
    }
}

/// Operations per batch of ERP lookups: two Mobbex pages; 100 ids keep a lookup URL near 4 KB.
const BATCH: usize = 100;

/// Read every page of one slice. A source that ignores `page` would loop forever: a page that
/// repeats the previous page's first operation stops the listing with an error.
///
/// Returns the slice's items and the number of pages read; `None` when it needs more than
/// `page_limit` pages (then it is read again in smaller slices).
async fn fetch_all(
    source: &dyn PaymentSource,
    window: &Window,
    page_limit: Option<u32>,
) -> Result<Option<(Vec<Fetched>, u32)>, SourceError> {
    let mut items = Vec::new();
    let mut previous_first: Option<String> = None;
    for page in 0u32.. {
        let p = source.list_page(window, page).await?;
        let first = p.items.iter().find_map(|i| match i {
            Fetched::Op(o) => Some(o.uid.clone()),
            Fetched::Bad { uid, .. } => uid.clone(),
        });
        if first.is_some() && first == previous_first {
            return Err(SourceError::Malformed {
                api: "Mobbex",
                message: format!(
                    "page {page} repeats page {}: paging is not honoured",
                    page - 1
                ),
            });
        }
        previous_first = first;
        let last = p.is_last;
        items.extend(p.items);
        if last {
            return Ok(Some((items, page + 1)));
        }
        if page_limit.is_some_and(|limit| page + 1 >= limit) {
            return Ok(None);
        }
    }
    unreachable!("the page counter ran out")
}

/// Cuts the listing into lookup batches of [`BATCH`] operations, ordered by (order, creation
/// time) so each order's payments are decided oldest first (an order straddling two batches is
/// chained). A slice's remainder waits for the next slice, so sparse days still make full batches;
/// the remainder is older than anything a later slice brings, so the order is kept.
/// Duplicates (a listing that shifted while it was read) are dropped.
struct Batcher<'a> {
    acc: &'a AccountSettings,
    pending: Vec<(String, Timestamp, Fetched)>,
}

impl<'a> Batcher<'a> {
    fn new(acc: &'a AccountSettings) -> Self {
        Batcher {
            acc,
            pending: Vec::new(),
        }
    }

    /// Add a slice; returns the full batches now ready. `seen` holds the run's operation ids:
    /// one listed again, or already pulled in by an earlier batch, is dropped.
    fn push(&mut self, items: Vec<Fetched>, seen: &mut HashSet<String>) -> Vec<Vec<Fetched>> {
        for item in items {
            match &item {
                Fetched::Op(op) => {
                    if !seen.insert(op.uid.clone()) {
                        continue;
                    }
                    let order = self.acc.order_name(&op.reference).unwrap_or("").to_string();
                    self.pending.push((order, op.created, item));
                }
                Fetched::Bad { .. } => self.pending.push((String::new(), Timestamp::MIN, item)),
            }
        }
        self.pending
            .sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let full = self.pending.len() / BATCH * BATCH;
        let rest = self.pending.split_off(full);
        let ready = std::mem::replace(&mut self.pending, rest);
        let mut batches = Vec::new();
        let mut it = ready.into_iter().map(|(_, _, f)| f).peekable();
        while it.peek().is_some() {
            batches.push(it.by_ref().take(BATCH).collect());
        }
        batches
    }

    /// The last, partial batch.
    fn finish(&mut self) -> Option<Vec<Fetched>> {
        if self.pending.is_empty() {
            return None;
        }
        self.pending
            .sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        Some(
            std::mem::take(&mut self.pending)
                .into_iter()
                .map(|(_, _, f)| f)
                .collect(),
        )
    }
}

/// The ledger row for one decision.
fn make_record(
    acc: &AccountSettings,
    op: &Operation,
    order: Option<String>,
    kind: DecisionKind,
    reason: &str,
    entry_name: Option<String>,
) -> Record {
    Record {
        account: acc.name.clone(),
        uid: op.uid.clone(),
        reference: op.reference.clone(),
        sales_order: order,
        status_code: op.status_code(),
        amount: Some(op.total),
        currency: Some(op.currency.clone()),
        decision: kind,
        reason: reason.to_string(),
        erp_entry: entry_name,
        op_created: Some(op.created),
        seen_at: Timestamp::now(),
    }
}

/// Log, report and count one decision (recording is the caller's business).
#[allow(clippy::too_many_arguments)]
fn announce(
    acc: &AccountSettings,
    op: &Operation,
    order: Option<String>,
    kind: DecisionKind,
    reason: &str,
    entry_name: Option<String>,
    planned: Option<PaymentEntry>,
    opts: &RunOptions,
    summary: &mut Summary,
) {
    let out = Outcome {
        account: acc.name.clone(),
        uid: op.uid.clone(),
        reference: op.reference.clone(),
        order,
        kind,
        reason: reason.to_string(),
        entry_name: entry_name.clone(),
        planned: planned.clone(),
    };
    log_decision(&out, op);
    report(&out, opts);
    summary.count_decision(op, kind, reason);
    if !opts.dry_run {
        metrics::counter!(crate::metrics::DECISIONS, "account" => acc.name.clone(), "kind" => kind.as_str())
            .increment(1);
    }
    if opts.collect_booked
        && kind.is_booked()
        && let Some(entry) = planned
    {
        summary.booked.push(BookedLine {
            uid: op.uid.clone(),
            kind,
            entry_name,
            entry,
        });
    }
}

/// What the ERP says about a batch: entries by operation id, orders by name, orders with entries.
type Facts = (
    HashMap<String, ExistingEntry>,
    HashMap<String, SalesOrder>,
    HashSet<String>,
);

/// ERP facts read ahead for one operation (see [`Engine::prefetch`]).
pub struct Prefetched {
    uid: String,
    order: Option<String>,
    facts: Option<Facts>,
    read_at: Timestamp,
}

/// What one run (a window, or a webhook's operations) carries from batch to batch.
#[derive(Default)]
struct RunState {
    /// Each order's latest group: the next group of the order waits for it.
    chains: HashMap<String, oneshot::Receiver<OrderProgress>>,
    tasks: JoinSet<Summary>,
    /// Every operation id this run has listed or pulled in: decided once per run.
    seen: HashSet<String>,
}

/// Where an order stands after a group of its payments, handed to the order's next group.
#[derive(Debug, Clone, Default)]
struct OrderProgress {
    /// The order has an entry (booked now or before, or planned in a dry run).
    has_entry: bool,
    /// The oldest paid payment of the order this run left unresolved.
    blocker: Option<EarlierPayment>,
    /// Operations a dry run would have resolved although the ledger (not written) says otherwise.
    resolved_in_dry_run: HashSet<String>,
}

impl OrderProgress {
    /// Take note of a decision of one of the order's payments.
    fn note(&mut self, op: &Operation, kind: DecisionKind, dry_run: bool) {
        if op.status != PaymentStatus::Paid {
            return;
        }
        if kind.holds_back_later_payments() {
            self.blocker.get_or_insert_with(|| EarlierPayment {
                uid: op.uid.clone(),
                decision: kind,
            });
        } else if dry_run {
            self.resolved_in_dry_run.insert(op.uid.clone());
        }
    }
}

/// The claims a batch took in one statement, released in one statement by its last group.
struct BatchClaims {
    keys: Vec<String>,
    remaining: std::sync::atomic::AtomicUsize,
}

/// What the ERP said about one order group, read in the batch lookups.
struct GroupFacts {
    order: Option<SalesOrder>,
    /// A *submitted* entry references the order now (ERPNext's word: a cancelled one does not).
    order_has_entry: bool,
    existing: HashMap<String, ExistingEntry>,
    /// When these facts were asked for.
    read_at: Timestamp,
}

fn report(out: &Outcome, opts: &RunOptions) {
    if let Some(obs) = &opts.observer {
        obs(out);
    }
}

/// One log line per decision: everything an operator needs to know what happened and why.
fn log_decision(out: &Outcome, op: &Operation) {
    let order = out.order.as_deref().unwrap_or("-");
    let entry = out.entry_name.as_deref().unwrap_or("-");
    match out.kind {
        DecisionKind::Error => warn!(
            account = %out.account, uid = %out.uid, reference = %out.reference, order,
            amount = %op.total, currency = %op.currency, status = %op.source_status,
            decision = %out.kind, reason = %out.reason, entry, "decision"
        ),
        DecisionKind::Refunded if out.reason.contains("booked") => warn!(
            account = %out.account, uid = %out.uid, reference = %out.reference, order,
            amount = %op.total, currency = %op.currency, status = %op.source_status,
            decision = %out.kind, reason = %out.reason, entry, "decision"
        ),
        _ => info!(
            account = %out.account, uid = %out.uid, reference = %out.reference, order,
            amount = %op.total, currency = %op.currency, status = %op.source_status,
            decision = %out.kind, reason = %out.reason, entry, "decision"
        ),
    }
}

fn panicked(e: tokio::task::JoinError) -> Summary {
    let mut s = Summary::default();
    s.failures.push(format!("a booking task failed: {e}"));
    s
}
