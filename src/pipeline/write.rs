//! The write protocol: one entry created, at most once.
//!
//! The rule for writes: a create is sent again only when it certainly did not commit (connection
//! refused, 429, Frappe's own 500, 503), within the retry budget; a deadlock's victim (a 500
//! `QueryDeadlockError`, possible when creates go out in several naming series) is looked up by
//! `reference_no` first. When the answer was lost
//! (timeout, broken connection, 502/504) the entry is looked up by `reference_no` first; if it is
//! not found, it is *not* sent again before `erp.commit_horizon` (the server may still be
//! committing it: [`Quarantine`]), whatever trigger brings the operation back. With the
//! server-side duplicate guard the ERP refuses a second entry itself, so an unknown outcome is
//! simply sent again; the guard's refusal means another entry holds the operation.
//!
//! This is also where a dry run differs from a real run: it gets the planned entry back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use tracing::warn;

use super::Engine;
use super::gate::Gate;
use super::limit::Load;
use super::outcome::Verdict;
use super::run::RunCtx;
use crate::domain::{DecisionKind, ExistingEntry, Operation, PaymentEntry};
use crate::erp::ErpError;

/// An entry the rules asked for: `kind` is `booked_initial` or `booked_additional`.
pub(super) struct Booking {
    kind: DecisionKind,
    entry: PaymentEntry,
}

impl Booking {
    pub fn new(kind: DecisionKind, entry: PaymentEntry) -> Booking {
        Booking { kind, entry }
    }
}

/// Creates whose outcome was unknown (answer lost, not found by `reference_no` yet), by
/// (account, operation id), with when they were sent: not sent again by this process for the
/// commit horizon, whatever trigger brings the operation back.
pub(super) struct Quarantine {
    sent: Mutex<HashMap<(String, String), Timestamp>>,
    /// See `ErpSettings::commit_horizon`.
    pub horizon: Duration,
}

impl Quarantine {
    pub fn new(horizon: Duration) -> Quarantine {
        Quarantine {
            sent: Mutex::new(HashMap::new()),
            horizon,
        }
    }

    /// How long ago the operation's create with an unknown outcome was sent, if it was.
    pub fn since(&self, key: &(String, String), now: Timestamp) -> Option<Duration> {
        let sent = self.sent.lock().expect("poisoned");
        sent.get(key).map(|at| elapsed(now, *at))
    }

    pub(super) fn insert(&self, key: (String, String), now: Timestamp) {
        let mut sent = self.sent.lock().expect("poisoned");
        sent.retain(|_, at| elapsed(now, *at) < self.horizon);
        sent.insert(key, now);
    }
}

/// Time from `at` to `now` (zero if the clock went back).
pub(super) fn elapsed(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(at)).unwrap_or(Duration::ZERO)
}

/// One create in progress.
struct Create<'a> {
    ctx: &'a RunCtx,
    gate: &'a Gate,
    op: &'a Operation,
    entry: &'a PaymentEntry,
    kind: DecisionKind,
    /// The server-side duplicate guard is installed.
    guarded: bool,
}

impl Engine {
    /// Carry out a booking: in a real run create the entry; in a dry run, return it as planned.
    /// An additional payment's `paid_from` is left out: ERPNext fills in the customer's
    /// receivable account itself (`set_missing_values` → `get_party_account`, recording 03d), the
    /// one a lookup would have given, without a round trip per customer.
    pub(super) async fn write(
        &self,
        ctx: &RunCtx,
        gate: &Gate,
        op: &Operation,
        booking: Booking,
    ) -> Verdict {
        let Booking { kind, entry } = booking;
        if ctx.live.is_none() {
            return Verdict {
                kind,
                reason: "dry run: not created".into(),
                entry_name: None,
                planned: Some(entry),
            };
        }
        let guarded = self.erp.guard_installed().await.unwrap_or(false);
        let c = Create {
            ctx,
            gate,
            op,
            entry: &entry,
            kind,
            guarded,
        };
        let v = self.create(&c).await;
        Verdict {
            planned: Some(entry),
            ..v
        }
    }

    /// Send the create until it is created, refused, or its outcome is unknown.
    async fn create(&self, c: &Create<'_>) -> Verdict {
        if !c.guarded
            && let Some(v) = self.quarantined(c)
        {
            return v;
        }
        // The retry budget bounds the time spent *waiting between retries*, not the time queued
        // for a write slot behind other creates (a busy ERPNext would otherwise spend it).
        let mut waited = Duration::ZERO;
        // An earlier attempt's outcome was unknown (sent again because the guard is installed):
        // a refusal now may be ERPNext validating against our own committed entry.
        let mut maybe_committed = false;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let err = match self.send(c).await {
                Ok(name) => {
                    let note = if attempt > 1 {
                        format!("created on attempt {attempt}")
                    } else {
                        String::new()
                    };
                    return Verdict::of(c.kind, note).with_entry(Some(name));
                }
                Err(Sent::Lapsed(key)) => {
                    return Verdict::error(format!(
                        "{key}: the claim lapsed and another paysync process took it before the create; nothing created; re-examined later"
                    ));
                }
                Err(Sent::Failed(e)) => e,
            };
            if let ErpError::Duplicate(message) = &err {
                return self.already_held(c, message).await;
            }
            // A deadlock's victim was rolled back; when the other side was a second process
            // booking this very operation (recording U3e) its entry may be there by now.
            if err.is_deadlock()
                && let Ok(Some(name)) = self.look_up(c.op).await
            {
                let reason = format!(
                    "this create was a deadlock's victim and rolled back ({err}); Payment Entry {name} already holds the operation"
                );
                return Verdict::of(DecisionKind::AlreadyLoaded, reason).with_entry(Some(name));
            }
            maybe_committed |= err.outcome_unknown() && c.guarded;
            if maybe_committed
                && matches!(err, ErpError::Rejected { .. })
                && let Some(name) = self.look_up(c.op).await.ok().flatten()
            {
                let reason = format!(
                    "created (answer lost; the resend was refused: {err}; found by reference_no)"
                );
                return Verdict::of(c.kind, reason).with_entry(Some(name));
            }
            if err.outcome_unknown() && !c.guarded {
                return self.lost_answer(c, err).await;
            }
            if !err.is_transient() {
                return refused(err);
            }
            let Some(delay) = self.retry_delay(&err, attempt, waited) else {
                warn!(account = %c.ctx.acc.name, uid = %c.op.uid, error = %err, attempt, "create gave up for now");
                self.mark_settleable(&c.ctx.acc.name, &c.op.uid);
                let reason = format!("{err} (gave up after {attempt} attempts; re-examined later)");
                return Verdict::error(reason);
            };
            metrics::counter!(crate::metrics::RETRIES, "api" => self.erp.api_name()).increment(1);
            warn!(account = %c.ctx.acc.name, uid = %c.op.uid, error = %err, attempt, retry_in_ms = delay.as_millis() as u64, "create failed before committing; retrying");
            waited += delay;
            tokio::time::sleep(delay).await;
        }
    }

    /// A create of this operation sent earlier got no answer and the ERP may still be committing
    /// it: not sent again before the horizon.
    fn quarantined(&self, c: &Create<'_>) -> Option<Verdict> {
        let key = (c.ctx.acc.name.clone(), c.op.uid.clone());
        let horizon = self.quarantine.horizon;
        let since = self
            .quarantine
            .since(&key, self.clock.now())
            .filter(|since| *since < horizon)?;
        self.mark_settleable(&c.ctx.acc.name, &c.op.uid);
        Some(Verdict::error(format!(
            "a create sent {}s ago got no answer and ERPNext may still be committing it (erp.commit_horizon = {}s); not sent again before; re-examined later",
            since.as_secs(),
            horizon.as_secs()
        )))
    }

    /// One request, in a write slot (at most `max_in_flight` at once, held only during the
    /// request) and in the least busy of the account's naming series, while the order's claim
    /// is still this process's.
    async fn send(&self, c: &Create<'_>) -> Result<String, Sent> {
        let slot = self.writes.acquire().await;
        if let Some(key) = c.gate.lapsed().await {
            warn!(account = %c.ctx.acc.name, uid = %c.op.uid, key, "the order's claim lapsed and another process took it; nothing created");
            return Err(Sent::Lapsed(key.to_string()));
        }
        let series = self.series.take(&c.ctx.acc.naming_series);
        let in_series;
        let entry = match &series {
            None => c.entry,
            Some(s) => {
                in_series = PaymentEntry {
                    naming_series: Some(s.name().to_string()),
                    ..c.entry.clone()
                };
                &in_series
            }
        };
        let result = self.erp.create_entry(entry).await;
        slot.done(match &result {
            Ok(_) => Load::Answered,
            Err(e) => load_of(e),
        });
        match result {
            Ok(created) => Ok(created.name),
            Err(e) => Err(Sent::Failed(e)),
        }
    }

    /// The wait before the next attempt of a create refused before committing, if the retry
    /// policy allows one more (`Retry-After` honoured, never shorter than the backoff).
    fn retry_delay(&self, err: &ErpError, attempt: u32, waited: Duration) -> Option<Duration> {
        let backoff = self.retry.delay(attempt);
        let delay = if err.is_deadlock() {
            // Not the server's load: two series' transactions crossed, and the server rolled
            // this one back at once. Sent again after a short random pause (in the least busy
            // series then), not after the API backoff, which cost a quarter second or more per
            // victim on the real server with two series (BENCHMARKS.md).
            DEADLOCK_PAUSE.mul_f64(0.5 + fastrand::f64())
        } else {
            err.retry_after().unwrap_or(backoff).max(backoff)
        };
        let allowed =
            (attempt as usize) <= self.retry.max_times && waited + delay <= self.retry.max_total;
        allowed.then_some(delay)
    }

    /// No answer to a create: look the entry up by `reference_no` (3 looks over 3 s). Not found:
    /// quarantined until the commit horizon, then the next run's batched lookup decides.
    async fn lost_answer(&self, c: &Create<'_>, err: ErpError) -> Verdict {
        let (acc, op) = (&c.ctx.acc, c.op);
        warn!(account = %acc.name, uid = %op.uid, error = %err, "no answer to a create; looking the entry up by reference_no");
        let key = (acc.name.clone(), op.uid.clone());
        self.quarantine.insert(key, self.clock.now());
        self.mark_settleable(&acc.name, &op.uid);
        for wait_ms in [0u64, 1000, 2000] {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            match self.look_up(op).await {
                Ok(Some(name)) => {
                    let reason = "created (answer lost; found by reference_no)";
                    return Verdict::of(c.kind, reason).with_entry(Some(name));
                }
                Ok(None) => {}
                Err(e2) => {
                    return Verdict::error(format!(
                        "{err}; the lookup by reference_no failed too: {e2}; re-examined later"
                    ));
                }
            }
        }
        Verdict::error(format!(
            "{err}; not found by reference_no, so not sent again until erp.commit_horizon ({}s) has passed; re-examined then",
            self.quarantine.horizon.as_secs()
        ))
    }

    /// The entry carrying the operation's id as `reference_no`, if any.
    async fn look_up(&self, op: &Operation) -> Result<Option<String>, ErpError> {
        let found = self
            .erp
            .entries_by_reference(std::slice::from_ref(&op.uid))
            .await?;
        Ok(found
            .get(&op.uid)
            .map(|ExistingEntry { name, .. }| name.clone()))
    }

    /// The guard refused the create: another entry already holds the operation. Find it (whatever
    /// its docstatus) and record the operation as already loaded — never booked twice, never an
    /// error. A cancelled holder means the payment was booked and cancelled in ERPNext: it is not
    /// booked again on our own.
    async fn already_held(&self, c: &Create<'_>, message: &str) -> Verdict {
        let (acc, op) = (&c.ctx.acc, c.op);
        match self.erp.entry_by_guard(c.entry.guard_key()).await {
            // No entry name: a cancelled entry references nothing any more.
            Ok(Some(holder)) if holder.docstatus == 2 => Verdict::of(
                DecisionKind::AlreadyLoaded,
                format!(
                    "Payment Entry {} holds this operation and was cancelled in ERPNext; not booked again (`paysync rebook {}` books it again deliberately)",
                    holder.name, op.uid
                ),
            ),
            Ok(Some(holder)) => Verdict::of(
                DecisionKind::AlreadyLoaded,
                format!(
                    "ERPNext refused a second entry (duplicate guard): Payment Entry {} already holds this operation",
                    holder.name
                ),
            )
            .with_entry(Some(holder.name)),
            Ok(None) => {
                self.mark_settleable(&acc.name, &op.uid);
                Verdict::error(format!(
                    "ERPNext's duplicate guard refused the entry ({message}) but no entry holds the operation yet; re-examined later"
                ))
            }
            Err(e) => {
                self.mark_settleable(&acc.name, &op.uid);
                Verdict::error(format!(
                    "ERPNext's duplicate guard refused the entry; looking up the holder failed: {e}; re-examined later"
                ))
            }
        }
    }
}

/// Why one request created nothing.
enum Sent {
    /// The order's claim (this key) lapsed before it was sent.
    Lapsed(String),
    Failed(ErpError),
}

/// The mean pause before a deadlock's victim is sent again (jittered ±50 %).
const DEADLOCK_PAUSE: Duration = Duration::from_millis(20);

/// What a failed create says about the server's load, for an adaptive write limit.
fn load_of(err: &ErpError) -> Load {
    match err {
        // A deadlock between two series is contention the series spread accepts, not load.
        _ if err.is_deadlock() => Load::Neutral,
        ErpError::RateLimited { .. } | ErpError::Timeout(_) | ErpError::Server { .. } => {
            Load::Overloaded
        }
        ErpError::Rejected { .. } | ErpError::Duplicate(_) => Load::Answered,
        _ => Load::Neutral,
    }
}

/// A refusal the same request would get again. When the ERP says it is about the order, the
/// operation is `order_not_payable` (the order may change; re-examined later).
fn refused(err: ErpError) -> Verdict {
    let kind = match &err {
        ErpError::Rejected {
            about_order: true, ..
        } => DecisionKind::OrderNotPayable,
        _ => DecisionKind::Error,
    };
    Verdict::of(kind, err.refusal_reason())
}
