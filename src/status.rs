//! `paysync status`: what the ledger says about each account, as one typed report.
//!
//! Owns: [`StatusReport`] — read once from the ledger ([`StatusReport::read`]), then shown either
//! as text (`Display`) or as JSON (`Serialize`), so the two forms cannot drift apart. Must not
//! write to the ledger, open it (the caller opens it without creating it) or reach an API.
//! (Not to be confused with `domain::status`, Mobbex's status codes.)
//!
//! The JSON's keys are the fields' names in declaration order, which is alphabetical: that is the
//! order `paysync status --json` has always printed, and scripts may diff it.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Serialize, Serializer};

use crate::domain::DecisionKind;
use crate::store::{Ledger, LedgerRow, PollRecord, StoreError};

/// Latest rows listed per unresolved decision (`error`, `waiting`).
const LATEST: i64 = 10;

/// Every configured account, in the configuration's order.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub accounts: Vec<AccountStatus>,
}

/// One account. Field order = JSON key order (alphabetical, see the module comment).
#[derive(Debug, Clone, Serialize)]
pub struct AccountStatus {
    pub account: String,
    /// Ledger rows per decision, every decision listed (0 when none), by name.
    pub decisions: BTreeMap<&'static str, i64>,
    /// Triggers waiting in the inbox.
    pub inbox_depth: i64,
    pub last_poll: Option<PollStatus>,
    /// When the latest successful poll finished.
    pub last_successful_poll: Option<LocalTime>,
    pub latest_errors: Vec<RowStatus>,
    pub latest_waiting: Vec<RowStatus>,
    /// `None`: never polled.
    pub watermark: Option<LocalTime>,
}

/// The latest poll of an account.
#[derive(Debug, Clone, Serialize)]
pub struct PollStatus {
    pub error: Option<String>,
    pub finished: LocalTime,
    pub ok: bool,
    pub summary: String,
    /// `[from, to]`.
    pub window: [LocalTime; 2],
}

/// One ledger row among the latest of its decision.
#[derive(Debug, Clone, Serialize)]
pub struct RowStatus {
    pub last_seen: LocalTime,
    pub order: Option<String>,
    pub reason: String,
    pub reference: String,
    pub uid: String,
}

/// An instant shown in the configured time zone, `2026-10-06 10:00:00 -03`, in text and JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalTime(pub jiff::Zoned);

impl LocalTime {
    pub fn new(at: Timestamp, tz: &TimeZone) -> LocalTime {
        LocalTime(at.to_zoned(tz.clone()))
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.strftime("%Y-%m-%d %H:%M:%S %Z"))
    }
}

impl Serialize for LocalTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl StatusReport {
    /// Read the report of `accounts` from the ledger. An unreadable inbox depth reads as 0; any
    /// other failure fails the whole report (nothing half-read is shown).
    pub async fn read(
        ledger: &dyn Ledger,
        accounts: &[&str],
        tz: &TimeZone,
    ) -> Result<StatusReport, StoreError> {
        let depth = ledger.inbox_depth().await.unwrap_or_default();
        let local = |t: Timestamp| LocalTime::new(t, tz);
        let row = |r: &LedgerRow| RowStatus {
            last_seen: local(r.last_seen),
            order: r.sales_order.clone(),
            reason: r.reason.clone(),
            reference: r.reference.clone(),
            uid: r.uid.clone(),
        };
        let poll = |p: &PollRecord| PollStatus {
            error: p.error.clone(),
            finished: local(p.finished),
            ok: p.ok,
            summary: p.summary.clone(),
            window: [local(p.window_from), local(p.window_to)],
        };
        let mut out = Vec::with_capacity(accounts.len());
        for &name in accounts {
            let watermark = ledger.watermark(name).await?;
            let last = ledger.polls(name, 1).await?.into_iter().next();
            let last_ok = ledger.last_good_poll(name).await?;
            let counts = ledger.counts(name).await?;
            let errors = ledger.latest(name, DecisionKind::Error, LATEST).await?;
            let waiting = ledger.latest(name, DecisionKind::Waiting, LATEST).await?;
            out.push(AccountStatus {
                account: name.to_string(),
                decisions: DecisionKind::ALL
                    .iter()
                    .map(|k| (k.as_str(), counts.get(k).copied().unwrap_or(0)))
                    .collect(),
                inbox_depth: depth.get(name).copied().unwrap_or(0),
                last_poll: last.as_ref().map(poll),
                last_successful_poll: last_ok.map(|p| local(p.finished)),
                latest_errors: errors.iter().map(row).collect(),
                latest_waiting: waiting.iter().map(row).collect(),
                watermark: watermark.map(local),
            });
        }
        Ok(StatusReport { accounts: out })
    }

    /// The `--json` form (pretty-printed, no trailing newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a status report is always valid JSON")
    }
}

/// The text form: per account, watermark, last poll, inbox depth, the decisions that occurred,
/// then the latest errors and waiting payments.
impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for a in &self.accounts {
            writeln!(f, "account {}", a.account)?;
            match &a.watermark {
                Some(w) => writeln!(f, "  watermark             {w}")?,
                None => writeln!(f, "  watermark             (never polled)")?,
            }
            match &a.last_poll {
                Some(p) => writeln!(
                    f,
                    "  last poll             {} {} ({})",
                    p.finished,
                    if p.ok { "ok" } else { "FAILED" },
                    p.error.as_deref().unwrap_or(&p.summary)
                )?,
                None => writeln!(f, "  last poll             (none)")?,
            }
            writeln!(f, "  inbox depth           {}", a.inbox_depth)?;
            writeln!(f, "  decisions")?;
            // The count is not padded: the text has always been printed so (a JSON value's
            // `Display` ignores the width), and it stays byte for byte as it was.
            for (k, n) in a.decisions.iter().filter(|(_, n)| **n > 0) {
                writeln!(f, "    {k:<20} {n}")?;
            }
            for (rows, title) in [
                (&a.latest_errors, "latest errors"),
                (
                    &a.latest_waiting,
                    "waiting for an earlier payment of their order",
                ),
            ] {
                if !rows.is_empty() {
                    writeln!(f, "  {title}")?;
                    for r in rows {
                        writeln!(f, "    {} {} {}", r.last_seen, r.uid, r.reason)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
