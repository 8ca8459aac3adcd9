//! Counting what a run did, for the closing summary line, the closing table and the exit code.
//!
//! Owns: [`Summary`] (what the pipeline counts while it decides) and how it is shown — the one-line
//! form (`Display`, in logs and poll records) and the closing table of `paysync sync` and
//! `paysync demo` ([`SummaryTable`]). Both commands print the table from here, so neither imports
//! the other. Must not decide, book or read anything: it only counts and formats.

use std::collections::BTreeMap;
use std::fmt;

use jiff::civil::Date;

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

/// The closing table of a run over the days `since ..= until`: one row per column of the summary,
/// run-level failures, then the first unresolved operations with why (the log has every one).
pub struct SummaryTable<'a> {
    pub summary: &'a Summary,
    pub since: Date,
    pub until: Date,
    pub dry_run: bool,
}

/// Unresolved operations named in the table; the rest are counted.
const UNRESOLVED_SHOWN: usize = 20;

impl fmt::Display for SummaryTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, dry_run) = (self.summary, self.dry_run);
        let title = if dry_run {
            "Summary (dry run)"
        } else {
            "Summary"
        };
        writeln!(
            f,
            "{title}: operations created {} .. {}",
            self.since, self.until
        )?;
        let rows = [
            ("examined", s.examined),
            (
                if dry_run {
                    "would book initial"
                } else {
                    "booked initial"
                },
                s.get(DecisionKind::BookedInitial),
            ),
            (
                if dry_run {
                    "would book additional"
                } else {
                    "booked additional"
                },
                s.get(DecisionKind::BookedAdditional),
            ),
            ("already loaded", s.get(DecisionKind::AlreadyLoaded)),
            ("rejected", s.get(DecisionKind::Rejected)),
            ("pending", s.get(DecisionKind::Pending)),
            ("refunded", s.get(DecisionKind::Refunded)),
            ("order missing", s.get(DecisionKind::OrderMissing)),
            ("other skips", s.other_skips()),
            ("waiting", s.get(DecisionKind::Waiting)),
            ("errors", s.errors()),
        ];
        for (label, n) in rows {
            writeln!(f, "  {label:<22} {n:>8}")?;
        }
        for failure in &s.failures {
            writeln!(f, "  failure: {failure}")?;
        }
        // What the next run will pick up, and why.
        if !s.unresolved.is_empty() {
            writeln!(f, "Unresolved (run again to finish them):")?;
            for u in s.unresolved.iter().take(UNRESOLVED_SHOWN) {
                writeln!(f, "  {} {}: {}", u.uid, u.kind, u.reason)?;
            }
            if s.unresolved.len() > UNRESOLVED_SHOWN {
                writeln!(
                    f,
                    "  ... and {} more (journal: decision=error / decision=waiting)",
                    s.unresolved.len() - UNRESOLVED_SHOWN
                )?;
            }
        }
        Ok(())
    }
}

/// Print the closing table to stdout.
pub fn print_summary(s: &Summary, since: Date, until: Date, dry_run: bool) {
    print!(
        "{}",
        SummaryTable {
            summary: s,
            since,
            until,
            dry_run,
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(uid: &str) -> Operation {
        Operation {
            uid: uid.into(),
            reference: "SAL-ORD-1".into(),
            status: crate::domain::PaymentStatus::Paid,
            source_status: "200".into(),
            total: rust_decimal::Decimal::ONE_HUNDRED,
            currency: "ARS".into(),
            created: "2026-10-05T15:00:00Z".parse().unwrap(),
            updated: None,
            is_child: false,
            is_test: false,
            marketplace_order: None,
            refunds: Vec::new(),
            fees: Vec::new(),
        }
    }

    /// The dry run's wording, a run-level failure, and past 20 unresolved operations a count of
    /// the rest (the table as `sync` printed it before it moved here).
    #[test]
    fn the_closing_table_names_the_first_twenty_unresolved() {
        let mut s = Summary::default();
        s.count(DecisionKind::BookedInitial);
        s.count(DecisionKind::IgnoredTest);
        for i in 0..22 {
            s.count_decision(&op(&format!("u{i:02}")), DecisionKind::Error, "HTTP 503");
        }
        s.failures.push("listing failed: timed out".into());
        let table = SummaryTable {
            summary: &s,
            since: jiff::civil::date(2026, 10, 1),
            until: jiff::civil::date(2026, 10, 31),
            dry_run: true,
        }
        .to_string();
        let mut want = String::from(
            "Summary (dry run): operations created 2026-10-01 .. 2026-10-31
  examined                     24
  would book initial            1
  would book additional         0
  already loaded                0
  rejected                      0
  pending                       0
  refunded                      0
  order missing                 0
  other skips                   1
  waiting                       0
  errors                       23
  failure: listing failed: timed out
Unresolved (run again to finish them):
",
        );
        for i in 0..20 {
            want.push_str(&format!("  u{i:02} error: HTTP 503\n"));
        }
        want.push_str("  ... and 2 more (journal: decision=error / decision=waiting)\n");
        assert_eq!(table, want);
    }
}
