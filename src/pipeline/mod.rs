//! The booking engine: operations in, decisions and payment entries out.
//!
//! Every trigger (manual `sync --since`, scheduled poll, webhook) ends here, so there is exactly one
//! place where booking happens. A run (`run`: its account, policy, options, order chains) goes
//! through these parts, each with one job:
//!
//! - `listing`: a window read in day slices, cut into batches ordered by (order, creation time);
//! - `batch`: one batch — the ledger's rows (operations already booked need no ERP call), the
//!   non-bookable ones decided at once, the rest grouped by order, one task per order;
//! - `pull_in`: the batch's orders' payments that earlier runs left unresolved, decided with it;
//! - `facts`: what the ERP says, asked in batched calls (and read ahead for a webhook);
//! - `gate`: one booking at a time per order (in-process lock, cross-process claim, takeover);
//! - `group`: an order's payments decided oldest first with the pure [`decide`];
//! - `write`: the write protocol (retry, lost answers looked up, never re-posted blindly);
//! - `outcome`: one decision recorded, logged, reported and counted;
//! - `settle`: the end of a run, one more try for what may resolve now;
//! - `rebook`: `paysync rebook`.
//!
//! [`decide`]: crate::domain::decide

mod batch;
mod facts;
mod gate;
mod group;
mod limit;
mod listing;
mod order_lock;
mod outcome;
mod pull_in;
mod rebook;
mod reverse;
mod run;
mod series;
mod settle;
mod write;

#[cfg(test)]
mod fakes;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use tokio::sync::Semaphore;

use crate::claims::{ClaimTiming, Claims, holder_name};
use crate::clock::{Clock, SystemClock};
use crate::config::AccountSettings;
use crate::domain::{DecisionKind, PaymentEntry};
use crate::erp::{Erp, ErpError};
use crate::retry::RetryPolicy;
use crate::source::{Fetched, PaymentSource, SourceError, Window};
use crate::store::{Ledger, StoreError};
use crate::summary::Summary;

pub use facts::Prefetched;
pub use listing::list_window;
pub use rebook::{Rebook, RebookError, RebookPlan, next_guard_value};

use run::RunCtx;

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
    /// What started the run (kept with each decision in the ledger's history).
    pub trigger: crate::store::RunTrigger,
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

/// The booking engine. Cheap to share (`Arc`); one per process.
pub struct Engine {
    erp: Arc<dyn Erp>,
    ledger: Arc<dyn Ledger>,
    /// Where every "now" of the engine comes from (entries' dates, ledger times, the horizons).
    clock: Arc<dyn Clock>,
    tz: TimeZone,
    today: Option<Date>,
    /// At most `max_in_flight` creates at once, fixed or adaptive (see `limit`).
    writes: limit::WriteLimit,
    /// The naming series creates are in flight in (see `series`).
    series: series::SeriesSpread,
    /// Order groups queued or running at once (see `batch`).
    group_slots: Arc<Semaphore>,
    order_locks: order_lock::OrderLocks,
    /// The last `RunState::chains_id` given.
    chains_ids: std::sync::atomic::AtomicU64,
    erp_cache: facts::ErpCache,
    retry: RetryPolicy,
    /// This process's cross-process order claims.
    claims: Arc<Claims>,
    /// Creates whose outcome is unknown: not sent again before `erp.commit_horizon`.
    quarantine: write::Quarantine,
    /// Passing failures worth one more try at the end of a run.
    settleable: settle::Settleable,
    /// Bookings of this process the ledger could not record (`outcome::Unrecorded`).
    unrecorded: outcome::Unrecorded,
}

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
            clock: Arc::new(SystemClock),
            today: None,
            writes: limit::WriteLimit::new(crate::config::InFlight::Fixed(max_in_flight)),
            series: series::SeriesSpread::default(),
            group_slots: Arc::new(Semaphore::new(batch::GROUP_SLOTS)),
            order_locks: order_lock::OrderLocks::default(),
            chains_ids: std::sync::atomic::AtomicU64::new(0),
            erp_cache: facts::ErpCache::default(),
            retry: RetryPolicy::default(),
            claims: Arc::new(Claims::new(
                ledger.clone(),
                holder_name(),
                ClaimTiming::default(),
            )),
            ledger,
            quarantine: write::Quarantine::new(std::time::Duration::from_secs(120)),
            settleable: settle::Settleable::default(),
            unrecorded: outcome::Unrecorded::default(),
        }
    }

    /// How many creates at once: `[erp] max_in_flight`, a number or "auto" (replaces the fixed
    /// number given to [`Engine::new`]).
    pub fn with_write_limit(mut self, in_flight: crate::config::InFlight) -> Engine {
        self.writes = limit::WriteLimit::new(in_flight);
        self
    }

    /// How hard to retry a create that failed before committing.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Engine {
        self.retry = retry;
        self
    }

    /// How long ERPNext may still commit a create whose answer was lost.
    pub fn with_commit_horizon(mut self, horizon: std::time::Duration) -> Engine {
        self.quarantine = write::Quarantine::new(horizon);
        let timing = self.claims.timing();
        self.with_claim_timing(ClaimTiming {
            commit_horizon: horizon,
            ..timing
        })
    }

    /// How long this process's order claims last unrenewed (`[daemon] lease`).
    pub fn with_lease(self, ttl: std::time::Duration) -> Engine {
        let timing = self.claims.timing();
        self.with_claim_timing(ClaimTiming { ttl, ..timing })
    }

    /// This process's name in every lease it takes (order claims, polls, inbox triggers).
    pub fn holder(&self) -> &str {
        self.claims.holder()
    }

    /// A clean stop: let go of the order claims this process holds.
    pub async fn release_claims(&self) {
        self.claims.release_all().await;
    }

    /// How claims live and are waited for (tests shorten them).
    pub fn with_claim_timing(mut self, timing: ClaimTiming) -> Engine {
        let holder = self.claims.holder().to_string();
        self.claims = Arc::new(
            Claims::new(self.ledger.clone(), holder, timing).with_clock(self.clock.clone()),
        );
        self
    }

    /// Fix "today" (tests and the demo use it to get stable dates).
    pub fn with_today(mut self, today: Date) -> Engine {
        self.today = Some(today);
        self
    }

    /// The fixed "today", if one was set.
    pub fn fixed_today(&self) -> Option<Date> {
        self.today
    }

    /// Read time from `clock` (the system clock by default; tests use one on tokio's time).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Engine {
        self.clock = clock;
        // The claims read the same clock.
        let timing = self.claims.timing();
        self.with_claim_timing(timing)
    }

    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    fn today(&self) -> Date {
        self.today
            .unwrap_or_else(|| self.clock.now().to_zoned(self.tz.clone()).date())
    }

    /// Examine every operation of `window`, slice by slice, booking what the rules say.
    ///
    /// Returns `Err` only when the window could not be listed completely (the caller must not
    /// treat the window as done); what was examined before the failure is in the error's summary.
    pub async fn sync_window(
        self: &Arc<Self>,
        account: &AccountCtx,
        window: Window,
        opts: &RunOptions,
    ) -> Result<Summary, (Summary, SyncError)> {
        let ctx = self
            .start_run(account, opts)
            .await
            .map_err(|e| (Summary::default(), e))?;
        let (mut summary, state, failure) = self.decide_window(&ctx, window).await;
        self.settle(&ctx, state, &mut summary).await;
        match failure {
            None => Ok(summary),
            Some(e) => {
                summary.failures.push(e.to_string());
                let account = ctx.acc.name.clone();
                Err((summary, SyncError::Source { account, source: e }))
            }
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

    /// [`Engine::process_operations`] with facts read ahead by [`Engine::prefetch`].
    pub async fn process_operations_with(
        self: &Arc<Self>,
        account: &AccountCtx,
        items: Vec<Fetched>,
        opts: &RunOptions,
        prefetched: Option<Prefetched>,
    ) -> Result<Summary, SyncError> {
        let ctx = self.start_run(account, opts).await?;
        let mut state = self.run_state();
        let items: Vec<_> = items.into_iter().map(|f| ctx.item(f)).collect();
        for item in &items {
            if let run::Item::Op(e) = item {
                state.seen.insert(e.op.uid.clone());
            }
        }
        let mut summary = self
            .process_batch(&ctx, &mut state, items, prefetched)
            .await;
        state.drain(&mut summary).await;
        Ok(summary)
    }

    /// The per-run context: the account's policy (its bank account read from the ERP once).
    async fn start_run(
        &self,
        account: &AccountCtx,
        opts: &RunOptions,
    ) -> Result<Arc<RunCtx>, SyncError> {
        let policy = self
            .policy(&account.settings)
            .await
            .map_err(|e| SyncError::Erp {
                account: account.settings.name.clone(),
                source: e,
            })?;
        Ok(Arc::new(RunCtx::new(self, account, policy, opts)))
    }
}
