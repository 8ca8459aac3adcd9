//! Counting what a run did, for the closing summary line, the CLI table and the exit code.

use std::collections::BTreeMap;
use std::fmt;

use crate::domain::{DecisionKind, Operation, PaymentEntry};

/// One booked (or, in a dry run, planned) entry, for display.
#[derive(Debug, Clone)]
pub struct BookedLine {
    pub uid: String,
    pub kind: DecisionKind,
    /// `None` in a dry run.
    pub entry_name: Option<String>,
    pub entry: PaymentEntry,
}

/// An operation a run left unresolved (`error` or `waiting`), with why: the closing summary lists
/// them so the operator knows what the next run will pick up.
#[derive(Debug, Clone, PartialEq)]
pub struct UnresolvedLine {
    pub uid: String,
    pub kind: DecisionKind,
    pub reason: String,
    /// The operation as it was decided (lets the run try it once more at its end).
    pub op: Operation,
}

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub examined: u64,
    pub by_kind: BTreeMap<DecisionKind, u64>,
    /// Failures that are not about one operation (a listing that could not be read).
    pub failures: Vec<String>,
    pub booked: Vec<BookedLine>,
    /// Every operation decided `error` or `waiting`, in decision order.
    pub unresolved: Vec<UnresolvedLine>,
}

impl Summary {
    pub fn count(&mut self, kind: DecisionKind) {
        self.examined += 1;
        *self.by_kind.entry(kind).or_default() += 1;
    }

    /// Count one operation's decision; an unresolved one is kept with its reason.
    pub fn count_decision(&mut self, op: &Operation, kind: DecisionKind, reason: &str) {
        self.count(kind);
        if kind.is_unresolved() {
            self.unresolved.push(UnresolvedLine {
                uid: op.uid.clone(),
                kind,
                reason: reason.to_string(),
                op: op.clone(),
            });
        }
    }

    /// Forget the decisions of these operations (they are about to be decided again).
    pub fn forget(&mut self, lines: &[UnresolvedLine]) {
        for line in lines {
            self.examined = self.examined.saturating_sub(1);
            if let Some(n) = self.by_kind.get_mut(&line.kind) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.by_kind.remove(&line.kind);
                }
            }
        }
        let uids: std::collections::HashSet<&str> = lines.iter().map(|l| l.uid.as_str()).collect();
        self.unresolved.retain(|u| !uids.contains(u.uid.as_str()));
    }

    pub fn get(&self, kind: DecisionKind) -> u64 {
        self.by_kind.get(&kind).copied().unwrap_or(0)
    }

    pub fn merge(&mut self, other: Summary) {
        self.examined += other.examined;
        for (k, v) in other.by_kind {
            *self.by_kind.entry(k).or_default() += v;
        }
        self.failures.extend(other.failures);
        self.booked.extend(other.booked);
        self.unresolved.extend(other.unresolved);
    }

    /// Operations that ended in `error`, plus run-level failures.
    pub fn errors(&self) -> u64 {
        self.get(DecisionKind::Error) + self.failures.len() as u64
    }

    /// What a later run still has to do: errors, payments waiting for an earlier one, and
    /// run-level failures. A run is clean (exit 0, trigger done) only when this is zero.
    pub fn unresolved(&self) -> u64 {
        self.errors() + self.get(DecisionKind::Waiting)
    }

    /// Skips that are neither of the named summary columns.
    pub fn other_skips(&self) -> u64 {
        [
            DecisionKind::OrderNotPayable,
            DecisionKind::CurrencyMismatch,
            DecisionKind::IgnoredChild,
            DecisionKind::IgnoredTest,
        ]
        .iter()
        .map(|k| self.get(*k))
        .sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "examined={} booked_initial={} booked_additional={} already_loaded={} rejected={} pending={} refunded={} order_missing={} other_skips={} waiting={} errors={}",
            self.examined,
            self.get(DecisionKind::BookedInitial),
            self.get(DecisionKind::BookedAdditional),
            self.get(DecisionKind::AlreadyLoaded),
            self.get(DecisionKind::Rejected),
            self.get(DecisionKind::Pending),
            self.get(DecisionKind::Refunded),
            self.get(DecisionKind::OrderMissing),
            self.other_skips(),
            self.get(DecisionKind::Waiting),
            self.errors(),
        )
    }
}
