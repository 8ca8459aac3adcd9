//! One run (a window, or a webhook's operations): what every step of it needs to know, in one
//! place instead of long parameter lists.
//!
//! [`RunCtx`] is shared by the run's order tasks (`Arc`); [`RunState`] is what the run's driver
//! carries from batch to batch (the order chains, the tasks, the ids seen). An operation enters a
//! run once, as an [`Examined`]: its order is resolved from its reference there, and only there.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::{AccountCtx, Engine, RunOptions};
use crate::claims::Claims;
use crate::config::AccountSettings;
use crate::domain::{AccountPolicy, DecisionKind, EarlierPayment, Operation, PaymentStatus};
use crate::source::{Fetched, PaymentSource};
use crate::store::Ledger;
use crate::summary::Summary;

/// What a run may change outside itself: the ledger's rows, the order claims, the ERP's entries
/// (and the decision metrics). A real run gets it; a dry run does not, so it can record nothing,
/// claim nothing and create nothing — [`Engine::live`] is the one place `dry_run` is read.
pub(super) struct Live {
    pub ledger: Arc<dyn Ledger>,
    pub claims: Arc<Claims>,
}

impl Engine {
    /// What `opts` lets a run change (see [`Live`]).
    pub(super) fn live(&self, opts: &RunOptions) -> Option<Live> {
        (!opts.dry_run).then(|| Live {
            ledger: self.ledger.clone(),
            claims: self.claims.clone(),
        })
    }
}

/// Everything a run's steps share.
pub(super) struct RunCtx {
    pub acc: AccountSettings,
    pub source: Arc<dyn PaymentSource>,
    pub policy: AccountPolicy,
    pub opts: RunOptions,
    /// `None` in a dry run.
    pub live: Option<Live>,
}

impl RunCtx {
    pub fn new(
        engine: &Engine,
        account: &AccountCtx,
        policy: AccountPolicy,
        opts: &RunOptions,
    ) -> RunCtx {
        RunCtx {
            acc: account.settings.clone(),
            source: account.source.clone(),
            policy,
            live: engine.live(opts),
            opts: opts.clone(),
        }
    }

    /// The run records its decisions (a dry run does not).
    pub fn records(&self) -> bool {
        self.live.is_some()
    }

    /// An operation entering the run: its order key resolved from it, once.
    pub fn examine(&self, op: Operation) -> Examined {
        Examined {
            order: self.acc.order_key(&op).map(str::to_string),
            op,
        }
    }

    pub fn item(&self, fetched: Fetched) -> Item {
        match fetched {
            Fetched::Op(op) => Item::Op(self.examine(op)),
            Fetched::Bad { uid, reason } => Item::Bad { uid, reason },
        }
    }
}

/// An operation of the run with the order its reference names (`None`: the reference does not
/// match the account's `order_pattern`).
#[derive(Debug, Clone)]
pub(super) struct Examined {
    pub op: Operation,
    pub order: Option<String>,
}

/// One listed item of a run.
// Nearly every item is an operation: boxing them to shrink the rare `Bad` would cost an
// allocation per operation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(super) enum Item {
    Op(Examined),
    /// A document the source could not read (see [`Fetched::Bad`]).
    Bad {
        uid: Option<String>,
        reason: String,
    },
}

/// What one run carries from batch to batch.
#[derive(Default)]
pub(super) struct RunState {
    /// These chains' id among the engine's (`Engine::run_state`; the order locks log which
    /// chains let go, see `order_lock.rs`). 0 only in tests that build a state by hand.
    pub chains_id: u64,
    /// Each order's latest group: the next group of the order waits for it.
    pub chains: HashMap<String, oneshot::Receiver<OrderProgress>>,
    pub tasks: JoinSet<Summary>,
    /// Every operation id this run has listed or pulled in: decided once per run.
    pub seen: HashSet<String>,
}

impl Engine {
    /// A new run's state, with chains of its own.
    pub(super) fn run_state(&self) -> RunState {
        RunState {
            chains_id: (self.chains_ids).fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            ..RunState::default()
        }
    }
}

impl RunState {
    /// Wait for every order task and add up what they decided.
    pub async fn drain(&mut self, summary: &mut Summary) {
        while let Some(done) = self.tasks.join_next().await {
            summary.merge(done.unwrap_or_else(panicked));
        }
    }

    /// Add up the tasks already finished (so the set does not grow with the window).
    pub fn reap(&mut self, summary: &mut Summary) {
        while let Some(done) = self.tasks.try_join_next() {
            summary.merge(done.unwrap_or_else(panicked));
        }
    }
}

fn panicked(e: tokio::task::JoinError) -> Summary {
    let mut s = Summary::default();
    s.failures.push(format!("a booking task failed: {e}"));
    s
}

/// Where an order stands after a group of its payments, handed to the order's next group.
#[derive(Debug, Clone, Default)]
pub(super) struct OrderProgress {
    /// The order has an entry (booked now or before, or planned in a dry run).
    pub has_entry: bool,
    /// The oldest paid payment of the order this run left unresolved.
    pub blocker: Option<EarlierPayment>,
    /// Operations this run resolved without recording it (a dry run): the ledger's word that
    /// they are unresolved is stale.
    pub resolved_unrecorded: HashSet<String>,
}

impl OrderProgress {
    /// Take note of a decision of one of the order's payments; `recorded`: the ledger has it.
    pub fn note(&mut self, op: &Operation, kind: DecisionKind, recorded: bool) {
        if op.status != PaymentStatus::Paid {
            return;
        }
        if kind.holds_back_later_payments() {
            self.blocker.get_or_insert_with(|| EarlierPayment {
                uid: op.uid.clone(),
                decision: kind,
            });
        } else if !recorded {
            self.resolved_unrecorded.insert(op.uid.clone());
        }
    }

    /// The earlier payment that holds `uid`'s decision back: one this run left unresolved, else
    /// the ledger's (unless this run resolved it without recording).
    pub fn earlier(&self, from_ledger: Option<EarlierPayment>) -> Option<EarlierPayment> {
        self.blocker
            .clone()
            .or_else(|| from_ledger.filter(|e| !self.resolved_unrecorded.contains(&e.uid)))
    }
}
