//! The end of a run: one more try for what it left unresolved although it may resolve now —
//! payments that wait for an earlier one, and failures that were passing (a create refused past
//! the retry budget, a lookup that failed, a create whose answer was lost: for those the run first
//! waits until the commit horizon has passed since they were sent, so a create that was never
//! committed is looked up once more and then sent again, one that was is found). Each retried
//! operation's first decision is replaced by its new one in the summary.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tracing::info;

use super::Engine;
use super::listing::Batcher;
use super::run::{Item, RunCtx, RunState};
use super::write::elapsed;
use crate::domain::DecisionKind;
use crate::summary::{Summary, UnresolvedLine};

/// Operations whose last failure was passing, by (account, operation id), and when: worth one
/// more try at the end of a run.
#[derive(Default)]
pub(super) struct Settleable {
    pub(super) marks: Mutex<HashMap<(String, String), Timestamp>>,
}

impl Engine {
    /// Remember that `uid`'s failure was passing (see the module's comment).
    pub(super) fn mark_settleable(&self, account: &str, uid: &str) {
        // Marks older than an hour are of runs long finished (a daemon's webhooks): forget them.
        const KEEP: Duration = Duration::from_secs(3600);
        let now = self.clock.now();
        let mut marks = self.settleable.marks.lock().expect("poisoned");
        if marks.len() > 1024 {
            marks.retain(|_, at| elapsed(now, *at) < KEEP);
        }
        marks.insert((account.to_string(), uid.to_string()), now);
    }

    /// Try once more what the run left unresolved and may resolve now. A dry run has nothing to
    /// settle: it created nothing.
    pub(super) async fn settle(
        self: &Arc<Self>,
        ctx: &Arc<RunCtx>,
        state: RunState,
        summary: &mut Summary,
    ) {
        if ctx.live.is_none() || summary.unresolved.is_empty() {
            return;
        }
        let retry = self.worth_retrying(ctx, summary);
        if retry.is_empty() {
            return;
        }
        let acc = &ctx.acc;
        let wait = self.horizon_left(ctx, &retry);
        if !wait.is_zero() {
            info!(account = %acc.name, wait_s = wait.as_secs_f64(), "waiting for ERPNext to settle creates whose answer was lost (erp.commit_horizon), then trying the run's unresolved payments once more");
            tokio::time::sleep(wait).await;
        }
        info!(account = %acc.name, operations = retry.len(), "trying the run's unresolved payments once more");
        summary.forget(&retry);
        // Fresh chains (the first pass's groups are done); the run's ids stay "seen", so nothing
        // decided in it is pulled in again.
        let mut pass = RunState {
            seen: state.seen,
            ..self.run_state()
        };
        let mut batcher = Batcher::default();
        let mut fresh = HashSet::new();
        let items: Vec<Item> = retry
            .into_iter()
            .map(|u| Item::Op(ctx.examine(u.op)))
            .collect();
        let mut batches = batcher.push(items, &mut fresh);
        batches.extend(batcher.finish());
        for batch in batches {
            let s = self.process_batch(ctx, &mut pass, batch, None).await;
            summary.merge(s);
        }
        pass.drain(summary).await;
    }

    /// The run's unresolved operations worth one more try: those waiting, and those marked.
    fn worth_retrying(&self, ctx: &RunCtx, summary: &Summary) -> Vec<UnresolvedLine> {
        let mut marks = self.settleable.marks.lock().expect("poisoned");
        summary
            .unresolved
            .iter()
            .filter(|u| {
                let key = (ctx.acc.name.clone(), u.uid.clone());
                marks.remove(&key).is_some() || u.kind == DecisionKind::Waiting
            })
            .cloned()
            .collect()
    }

    /// How long until the last of these operations' lost creates is past the commit horizon.
    fn horizon_left(&self, ctx: &RunCtx, retry: &[UnresolvedLine]) -> Duration {
        let now = self.clock.now();
        let horizon = self.quarantine.horizon;
        retry
            .iter()
            .filter_map(|u| {
                self.quarantine
                    .since(&(ctx.acc.name.clone(), u.uid.clone()), now)
            })
            .map(|since| horizon.saturating_sub(since))
            .max()
            .unwrap_or_default()
    }
}
