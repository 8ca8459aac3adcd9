//! The inbox worker: turns queued triggers into decisions.
//!
//! For each due trigger it re-reads the operation from the payment source by id — the webhook body
//! is never trusted for status, amount or reference — and hands it to the same [`Engine`] path polls
//! use. A trigger is marked done only after its decision was made and recorded; failures are retried
//! with growing delays ([`TRIGGER_RETRIES`]: 2 s, 4 s, ... up to 10 min, ±20%) and given up after
//! `MAX_ATTEMPTS` (polling still covers the operation). Every retry and every give-up is one log
//! line.
//!
//! A ledger that fails (a full disk, a file gone) is waited out, never spun on: claiming pauses
//! with a growing delay (`LedgerBackoff` over [`LEDGER_PAUSES`], one warning per pause), and a
//! trigger's outcome that cannot be written is written again the same way — so once the storage
//! recovers every trigger goes on by itself, without waiting out its lease or a restart.
//!
//! Several instances may share the inbox (one PostgreSQL ledger): each claims triggers under a
//! lease of `[daemon] lease` in its own name, renews the leases of those in work, and settles a
//! trigger (done, retry, give up) only while that claim is still the current one; a trigger whose
//! holder died, hangs or was cut off is taken over once its lease lapses.
//!
//! Schedules are `retry::Backoff` constants; "now" (claims, due times, latency) is the daemon's
//! `Clock` (`ctx.clock`); pauses are slept on tokio's timer. This module must not book (the
//! engine does) nor read the webhook body (the HTTP handler stored only the trigger).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::DaemonCtx;
use crate::config::OrderSource;
use crate::pipeline::{AccountCtx, RunOptions};
use crate::retry::{Backoff, Jitter};
use crate::source::{Fetched, SourceError};
use crate::store::{InboxItem, StoreError};

/// Triggers worked on at once.
const BATCH: i64 = 16;
pub const MAX_ATTEMPTS: i64 = 10;
/// Longest sleep when nothing is due (new webhooks wake the worker at once).
const IDLE: Duration = Duration::from_secs(1);

pub async fn run(ctx: Arc<DaemonCtx>, _tracker: TaskTracker) {
    // Up to BATCH triggers in work at once; a new one is claimed as soon as a slot frees, so a
    // trigger never waits for a whole batch to finish.
    let slots = Arc::new(tokio::sync::Semaphore::new(BATCH as usize));
    let mut running = JoinSet::new();
    let in_work = InWork::default();
    let renewal = tokio::spawn(renew_leases(ctx.clone(), in_work.clone()));
    let mut trouble = LedgerBackoff::default();
    loop {
        if ctx.cancel.is_cancelled() {
            break;
        }
        while running.try_join_next().is_some() {}
        let free = slots.available_permits() as i64;
        let items = if free == 0 {
            Vec::new()
        } else {
            match ctx
                .ledger
                .inbox_claim(
                    ctx.engine.holder(),
                    ctx.clock.now(),
                    ctx.settings.daemon.lease,
                    free,
                )
                .await
            {
                Ok(items) => {
                    trouble.recovered("claiming triggers again");
                    items
                }
                Err(e) => {
                    let (pause, log) = trouble.failed();
                    if log {
                        warn!(error = %e, failures = trouble.failures, retry_in_ms = pause.as_millis() as u64, "inbox: cannot claim triggers; pausing");
                    }
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => break,
                        // A webhook was stored: the ledger takes writes again.
                        _ = ctx.inbox_wake.notified() => {}
                        _ = tokio::time::sleep(pause) => {}
                    }
                    continue;
                }
            }
        };
        update_depth_gauge(&ctx).await;
        if items.is_empty() {
            let wait = match ctx.ledger.inbox_next_due().await {
                Ok(Some(due)) => Duration::try_from(due.duration_since(ctx.clock.now()))
                    .unwrap_or(Duration::ZERO)
                    .min(IDLE),
                _ => IDLE,
            };
            tokio::select! {
                _ = ctx.cancel.cancelled() => break,
                _ = ctx.inbox_wake.notified() => {}
                // A slot freed: there may be due work waiting for it.
                Some(_) = running.join_next(), if free == 0 => {}
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        for item in items {
            let permit = slots.clone().acquire_owned().await.expect("never closed");
            let ctx = ctx.clone();
            let in_work = in_work.clone();
            in_work.add(item.id);
            running.spawn(async move {
                let id = item.id;
                handle(&ctx, item).await;
                in_work.remove(id);
                drop(permit);
            });
        }
    }
    // Let triggers in work finish (the daemon bounds this with its shutdown grace).
    while running.join_next().await.is_some() {}
    renewal.abort();
}

/// The triggers this worker is working on, whose leases it renews.
#[derive(Clone, Default)]
struct InWork(Arc<std::sync::Mutex<std::collections::HashSet<i64>>>);

impl InWork {
    fn add(&self, id: i64) {
        self.0.lock().expect("poisoned").insert(id);
    }
    fn remove(&self, id: i64) {
        self.0.lock().expect("poisoned").remove(&id);
    }
    fn ids(&self) -> Vec<i64> {
        self.0.lock().expect("poisoned").iter().copied().collect()
    }
}

/// Every quarter of `[daemon] lease`, extend the leases of the triggers in work: one may take
/// longer than a lease (waiting for an order another instance books, a takeover's wait), and
/// must not be taken over while this instance is alive and connected. One lost meanwhile (this
/// instance was paused or cut off) is finished here anyway — bookings are safe under the order
/// claims — but its outcome is the new holder's to record.
async fn renew_leases(ctx: Arc<DaemonCtx>, in_work: InWork) {
    let lease = ctx.settings.daemon.lease;
    loop {
        tokio::time::sleep(lease / 4).await;
        let ids = in_work.ids();
        if ids.is_empty() {
            continue;
        }
        let renewed = ctx
            .ledger
            .inbox_renew(&ids, ctx.engine.holder(), ctx.clock.now(), lease)
            .await;
        match renewed {
            Ok(held) if held.len() < ids.len() => {
                warn!(
                    lost = ids.len() - held.len(),
                    "webhook triggers in work were taken over by another instance (this one was paused or cut off longer than [daemon] lease)"
                );
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "could not renew webhook trigger leases; retrying"),
        }
    }
}

/// Pauses on a failing ledger: 0.5 s, doubling with each failure in a row, up to 30 s.
const LEDGER_PAUSES: Backoff =
    Backoff::exponential(Duration::from_millis(500), Duration::from_secs(30));

/// Pauses between attempts on a failing ledger ([`LEDGER_PAUSES`]), and at most one warning per
/// pause (a pause cut short by a webhook does not add one).
#[derive(Default)]
struct LedgerBackoff {
    /// Failures in a row.
    failures: u32,
    since: Option<tokio::time::Instant>,
    /// No other warning before this instant.
    quiet_until: Option<tokio::time::Instant>,
}

impl LedgerBackoff {
    /// Count a failure; how long to pause, and whether to log it (the first of each pause).
    fn failed(&mut self) -> (Duration, bool) {
        let now = tokio::time::Instant::now();
        self.failures += 1;
        self.since.get_or_insert(now);
        let pause = LEDGER_PAUSES.delay(self.failures);
        let log = self.quiet_until.is_none_or(|q| now >= q);
        if log {
            self.quiet_until = Some(now + pause);
        }
        (pause, log)
    }

    /// The ledger answered: log the recovery once, and start over.
    fn recovered(&mut self, what: &'static str) {
        if let Some(since) = self.since.take() {
            info!(
                failures = self.failures,
                after_s = since.elapsed().as_secs(),
                "inbox: the ledger answers again; {what}"
            );
        }
        *self = LedgerBackoff::default();
    }
}

/// Write a trigger's outcome, again and again (with [`LedgerBackoff`]) while the ledger fails:
/// left unwritten, the trigger would sit `running` until its lease ends. Gives up only when the
/// daemon stops (the trigger's lease then lapses and it is taken over). False when the outcome
/// was not this worker's to write: the trigger was taken over (its lease lapsed) meanwhile.
async fn write_outcome<F, Fut>(
    ctx: &DaemonCtx,
    item: &InboxItem,
    what: &'static str,
    write: F,
) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<bool, StoreError>>,
{
    let mut trouble = LedgerBackoff::default();
    loop {
        match write().await {
            Ok(ours) => {
                trouble.recovered("a trigger's outcome is written");
                if !ours {
                    warn!(account = %item.account, uid = %item.uid, attempt = item.attempts, "the trigger was taken over by another instance meanwhile; its outcome is that one's to record");
                }
                return ours;
            }
            Err(e) => {
                ctx.progress.send_modify(|p| p.outcome_writes_failed += 1);
                let (pause, log) = trouble.failed();
                if log {
                    warn!(
                        account = %item.account, uid = %item.uid, error = %e,
                        failures = trouble.failures, retry_in_ms = pause.as_millis() as u64, "{what}"
                    );
                }
                tokio::select! {
                    _ = ctx.cancel.cancelled() => {
                        warn!(account = %item.account, uid = %item.uid, "stopping; the trigger is taken over when its lease ends");
                        return false;
                    }
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

async fn update_depth_gauge(ctx: &DaemonCtx) {
    if let Ok(depth) = ctx.ledger.inbox_depth().await {
        for name in ctx.accounts.keys() {
            let n = depth.get(name).copied().unwrap_or(0);
            metrics::gauge!(crate::metrics::INBOX_DEPTH, "account" => name.clone()).set(n as f64);
        }
    }
}

/// A failed trigger's next try: 2 s, 4 s, 8 s, ... capped at 10 minutes, ±20% so that triggers
/// failing together (an API down) do not all come back at once.
pub const TRIGGER_RETRIES: Backoff =
    Backoff::exponential(Duration::from_secs(2), Duration::from_secs(600))
        .with_jitter(Jitter::plus_minus(0.2));

/// The delay before a trigger that failed `attempts` times is tried again ([`TRIGGER_RETRIES`]).
pub fn backoff(attempts: i64) -> Duration {
    TRIGGER_RETRIES.delay(u32::try_from(attempts.max(1)).unwrap_or(u32::MAX))
}

/// The options of a run a trigger makes: its decisions are the webhook's in the history.
fn webhook_run() -> RunOptions {
    RunOptions {
        trigger: crate::store::RunTrigger::Webhook,
        ..RunOptions::default()
    }
}

async fn handle(ctx: &DaemonCtx, item: InboxItem) {
    let Some(acc) = ctx.accounts.get(&item.account) else {
        give_up(ctx, &item, "no such account in the configuration").await;
        return;
    };
    // A trigger naming several operations (a MercadoLibre order): they are read and decided
    // together, as one batch, so the order's oldest payment is its initial one whatever order
    // the notification lists them in.
    if let Some(expanded) = acc.source.expand_trigger(&item.uid).await {
        let outcome = match expanded {
            Ok(uids) => process_together(ctx, acc, &item, &uids).await,
            Err(SourceError::NotFound { .. }) => Err((false, "not found in the source".into())),
            Err(e) => Err((true, e.to_string())),
        };
        settle(ctx, &item, outcome).await;
        return;
    }
    // Read the ERP facts while the operation is re-read from the source (the webhook's
    // reference is only a guess of the order; it is used only if the API confirms it).
    let guess = item
        .hint
        .as_deref()
        .filter(|_| acc.settings.order_source == OrderSource::ExternalReference)
        .and_then(|r| acc.settings.order_name(r))
        .map(str::to_string);
    let (fetched, prefetched) = tokio::join!(
        acc.source.get_operation(&item.uid),
        ctx.engine
            .prefetch(&acc.settings.order_field, &item.uid, guess.as_deref())
    );
    let outcome: Result<(), (bool, String)> = match fetched {
        Ok(op) => {
            match ctx
                .engine
                .process_operations_with(
                    acc,
                    vec![Fetched::Op(op)],
                    &webhook_run(),
                    Some(prefetched),
                )
                .await
            {
                Ok(summary) if summary.unresolved() == 0 => Ok(()),
                Ok(summary) => Err((true, format!("not resolved yet: {summary}"))),
                Err(e) => Err((true, e.to_string())),
            }
        }
        // An id the source does not know: a spoof, or a webhook for another account. Nothing to
        // retry.
        Err(SourceError::NotFound { api, .. }) => {
            Err((false, format!("operation not found in {api}")))
        }
        Err(e) => Err((true, e.to_string())),
    };
    settle(ctx, &item, outcome).await;
}

/// Read each of `uids` and decide them in one batch. A payment the source does not know is a
/// bad item (recorded, the others go on); any other failure to read one tries the whole trigger
/// again later (what was booked is then `already_loaded`).
async fn process_together(
    ctx: &DaemonCtx,
    acc: &AccountCtx,
    item: &InboxItem,
    uids: &[String],
) -> Result<(), (bool, String)> {
    let reads = futures::future::join_all(uids.iter().map(|uid| acc.source.get_operation(uid)));
    let mut fetched = Vec::new();
    for (uid, read) in uids.iter().zip(reads.await) {
        match read {
            Ok(op) => fetched.push(Fetched::Op(op)),
            Err(SourceError::NotFound { api, .. }) => fetched.push(Fetched::Bad {
                uid: Some(uid.clone()),
                reason: format!("named by {} but not found in {api}", item.uid),
            }),
            Err(e) => return Err((true, format!("payment {uid}: {e}"))),
        }
    }
    info!(account = %item.account, uid = %item.uid, payments = uids.len(), "order trigger: its payments read");
    match ctx
        .engine
        .process_operations_with(acc, fetched, &webhook_run(), None)
        .await
    {
        Ok(summary) if summary.unresolved() == 0 => Ok(()),
        Ok(summary) => Err((true, format!("not resolved yet: {summary}"))),
        Err(e) => Err((true, e.to_string())),
    }
}

/// Record a trigger's outcome: done, tried again later, or given up.
async fn settle(ctx: &DaemonCtx, item: &InboxItem, outcome: Result<(), (bool, String)>) {
    match outcome {
        Ok(()) => {
            let now = ctx.clock.now();
            let holder = ctx.engine.holder();
            write_outcome(
                ctx,
                item,
                "inbox: could not mark a trigger done; pausing",
                || ctx.ledger.inbox_done(item, holder, now),
            )
            .await;
            ctx.progress.send_modify(|p| p.triggers_done += 1);
            let latency_ms = (ctx.clock.now() - item.received).get_milliseconds();
            info!(account = %item.account, uid = %item.uid, attempts = item.attempts, latency_ms, "trigger done");
        }
        Err((retry, reason)) if retry && item.attempts < MAX_ATTEMPTS => {
            let delay = backoff(item.attempts);
            let run_after = ctx.clock.now() + SignedDuration::try_from(delay).unwrap_or_default();
            metrics::counter!(crate::metrics::RETRIES, "api" => "inbox").increment(1);
            warn!(
                account = %item.account, uid = %item.uid, attempt = item.attempts,
                retry_in_s = delay.as_secs(), reason = %reason, "trigger failed; will retry"
            );
            write_outcome(
                ctx,
                item,
                "inbox: could not reschedule a trigger; pausing",
                || {
                    ctx.ledger
                        .inbox_retry(item, ctx.engine.holder(), run_after, &reason)
                },
            )
            .await;
            ctx.progress.send_modify(|p| p.triggers_retried += 1);
        }
        Err((_, reason)) => give_up(ctx, item, &reason).await,
    }
}

async fn give_up(ctx: &DaemonCtx, item: &InboxItem, reason: &str) {
    warn!(
        account = %item.account, uid = %item.uid, attempts = item.attempts, reason,
        "trigger given up (polling still covers this operation)"
    );
    write_outcome(
        ctx,
        item,
        "inbox: could not mark a trigger given up; pausing",
        || {
            ctx.ledger
                .inbox_dead(item, ctx.engine.holder(), ctx.clock.now(), reason)
        },
    )
    .await;
    ctx.progress.send_modify(|p| p.triggers_given_up += 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pauses on a failing ledger double from 0.5 s up to 30 s; a failure within a pause (the
    /// worker woken early) is not logged again; a success starts over.
    #[tokio::test(start_paused = true)]
    async fn ledger_pauses_grow_to_a_cap_with_one_warning_per_pause() {
        let mut b = LedgerBackoff::default();
        let mut pauses = Vec::new();
        for _ in 0..9 {
            let (pause, log) = b.failed();
            assert!(log, "a full pause elapsed: warn");
            pauses.push(pause.as_millis());
            tokio::time::sleep(pause).await;
        }
        assert_eq!(
            pauses,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        let (pause, log) = b.failed();
        assert!(log);
        tokio::time::sleep(pause / 2).await;
        assert_eq!(
            b.failed(),
            (Duration::from_secs(30), false),
            "within the pause"
        );
        b.recovered("test");
        assert_eq!(b.failed(), (Duration::from_millis(500), true));
    }

    /// A failed trigger waits 2 s, 4 s, 8 s, ... up to 10 minutes, each ±20% (as it always did).
    #[test]
    fn trigger_retries_double_to_ten_minutes_within_twenty_percent() {
        for (attempts, secs) in [
            (-1, 2.0),
            (0, 2.0),
            (1, 2.0),
            (2, 4.0),
            (3, 8.0),
            (9, 512.0),
            (10, 600.0),
            (40, 600.0),
            (i64::MAX, 600.0),
        ] {
            for _ in 0..50 {
                let d = backoff(attempts).as_secs_f64();
                assert!(
                    (secs * 0.8..=secs * 1.2).contains(&d),
                    "attempt {attempts}: {d} s, expected {secs} s ±20%"
                );
            }
        }
        let spread: std::collections::HashSet<u128> =
            (0..50).map(|_| backoff(3).as_millis()).collect();
        assert!(spread.len() > 10, "jittered: {spread:?}");
    }
}
