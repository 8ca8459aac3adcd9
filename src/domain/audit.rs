//! The month-end audit's verdicts: does the gateway agree with the books? A function of data, no
//! I/O (`crate::audit` reads the source, ERPNext and the ledger, then asks [`audit`]).
//!
//! One finding per operation of the period and one per ERPNext entry of the period that is no
//! operation of the account: `ok`, `missing`, `duplicate`, `amount_mismatch`, `party_mismatch`,
//! `cancelled_in_erp`, `not_reversed`, `unknown_entry`, `pending_in_source`. An operation's
//! entries are the live "Receive" entries whose `reference_no` is its id (wherever they were
//! posted); its reversals the live "Pay" entries `<id>:refund:<key>`.

use std::collections::{HashMap, HashSet};
use std::fmt;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use rust_decimal::Decimal;

use super::rules::booked_paid_amount;
use super::{FeePolicy, Operation, PaymentStatus};

/// A Payment Entry as the audit reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub name: String,
    /// 0 draft, 1 submitted, 2 cancelled.
    pub docstatus: i32,
    /// `Receive` or `Pay`.
    pub payment_type: String,
    pub party: String,
    pub paid_amount: Decimal,
    pub reference_no: Option<String>,
    pub posting_date: Date,
    /// Posted in the period with the account's mode of payment (else read by `reference_no`).
    pub in_period: bool,
}

/// A verdict of the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuditVerdict {
    Ok,
    Missing,
    Duplicate,
    AmountMismatch,
    PartyMismatch,
    CancelledInErp,
    NotReversed,
    UnknownEntry,
    PendingInSource,
}

impl AuditVerdict {
    pub const ALL: [AuditVerdict; 9] = [
        AuditVerdict::Ok,
        AuditVerdict::Missing,
        AuditVerdict::Duplicate,
        AuditVerdict::AmountMismatch,
        AuditVerdict::PartyMismatch,
        AuditVerdict::CancelledInErp,
        AuditVerdict::NotReversed,
        AuditVerdict::UnknownEntry,
        AuditVerdict::PendingInSource,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditVerdict::Ok => "ok",
            AuditVerdict::Missing => "missing",
            AuditVerdict::Duplicate => "duplicate",
            AuditVerdict::AmountMismatch => "amount_mismatch",
            AuditVerdict::PartyMismatch => "party_mismatch",
            AuditVerdict::CancelledInErp => "cancelled_in_erp",
            AuditVerdict::NotReversed => "not_reversed",
            AuditVerdict::UnknownEntry => "unknown_entry",
            AuditVerdict::PendingInSource => "pending_in_source",
        }
    }

    /// Needs no one's attention.
    pub fn is_clean(self) -> bool {
        matches!(self, AuditVerdict::Ok | AuditVerdict::PendingInSource)
    }
}

impl fmt::Display for AuditVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub verdict: AuditVerdict,
    pub operation: Option<String>,
    /// The entry (or entries, comma-separated) the finding is about.
    pub entry: Option<String>,
    pub source_amount: Option<Decimal>,
    pub erp_amount: Option<Decimal>,
    /// The operation's creation day (in the account's zone), or the entry's posting date.
    pub day: Date,
    pub detail: String,
}

/// What the audit compares.
pub struct AuditInput<'a> {
    /// The operations created in the period.
    pub ops: &'a [Operation],
    /// Every operation id of the account the source listed (the period and the margin before
    /// it): an entry of the period naming one of them is not unknown.
    pub known_uids: &'a HashSet<String>,
    /// The customer of each operation's Sales Order, where it was found.
    pub customer_of: &'a HashMap<String, String>,
    /// The entries the ledger says paysync booked, by operation id.
    pub booked_by_us: &'a HashMap<String, String>,
    /// The entries read from ERPNext (of the period, and by the operations' ids).
    pub entries: &'a [AuditEntry],
    pub fees: Option<&'a FeePolicy>,
    pub include_test: bool,
    pub tz: &'a TimeZone,
}

/// The findings, operations first (in the order given), then the unknown entries by name.
pub fn audit(input: &AuditInput<'_>) -> Vec<Finding> {
    let mut by_ref: HashMap<&str, Vec<&AuditEntry>> = HashMap::new();
    for e in input.entries {
        if let Some(r) = e.reference_no.as_deref() {
            by_ref.entry(r).or_default().push(e);
        }
    }
    let mut out = Vec::new();
    for op in input.ops {
        if op.is_child || (op.is_test && !input.include_test) {
            continue;
        }
        out.push(audit_one(input, op, &by_ref));
    }
    let mut unknown: Vec<&AuditEntry> = input
        .entries
        .iter()
        .filter(|e| e.in_period && e.docstatus == 1)
        .filter(|e| !names_an_operation(e.reference_no.as_deref(), input.known_uids))
        .collect();
    unknown.sort_by(|a, b| a.name.cmp(&b.name));
    unknown.dedup_by(|a, b| a.name == b.name);
    for e in unknown {
        out.push(Finding {
            verdict: AuditVerdict::UnknownEntry,
            operation: None,
            entry: Some(e.name.clone()),
            source_amount: None,
            erp_amount: Some(e.paid_amount),
            day: e.posting_date,
            detail: match e.reference_no.as_deref() {
                Some(r) => format!(
                    "{} {} {} with reference_no {r:?}, which is no operation of the account",
                    e.payment_type, e.party, e.paid_amount
                ),
                None => format!(
                    "{} {} {} without a reference_no",
                    e.payment_type, e.party, e.paid_amount
                ),
            },
        });
    }
    out
}

/// `reference` is an operation's id, or the reference of one of its reversals.
fn names_an_operation(reference: Option<&str>, known: &HashSet<String>) -> bool {
    let Some(r) = reference else {
        return false;
    };
    let uid = r.split_once(":refund:").map_or(r, |(uid, _)| uid);
    known.contains(uid)
}

fn audit_one(
    input: &AuditInput<'_>,
    op: &Operation,
    by_ref: &HashMap<&str, Vec<&AuditEntry>>,
) -> Finding {
    let day = op.created.to_zoned(input.tz.clone()).date();
    let finding = |verdict, entry: Option<String>, erp: Option<Decimal>, detail: String| Finding {
        verdict,
        operation: Some(op.uid.clone()),
        entry,
        source_amount: Some(op.total),
        erp_amount: erp,
        day,
        detail,
    };
    let all: &[&AuditEntry] = by_ref.get(op.uid.as_str()).map_or(&[], Vec::as_slice);
    let receipts: Vec<&&AuditEntry> = all.iter().filter(|e| e.payment_type == "Receive").collect();
    let live: Vec<&&AuditEntry> = receipts
        .iter()
        .copied()
        .filter(|e| e.docstatus == 1)
        .collect();
    let names = |es: &[&&AuditEntry]| {
        let v: Vec<&str> = es.iter().map(|e| e.name.as_str()).collect();
        v.join(", ")
    };
    match op.status {
        PaymentStatus::Pending => {
            return finding(
                AuditVerdict::PendingInSource,
                (!live.is_empty()).then(|| names(&live)),
                live.first().map(|e| e.paid_amount),
                format!("status {} in the source", op.source_status),
            );
        }
        PaymentStatus::Rejected if live.is_empty() => {
            return finding(AuditVerdict::Ok, None, None, "rejected, not booked".into());
        }
        _ => {}
    }
    if live.len() > 1 {
        let total: Decimal = live.iter().map(|e| e.paid_amount).sum();
        return finding(
            AuditVerdict::Duplicate,
            Some(names(&live)),
            Some(total),
            format!("{} live entries carry this operation", live.len()),
        );
    }
    let Some(entry) = live.first() else {
        if op.status == PaymentStatus::Refunded {
            return finding(
                AuditVerdict::Ok,
                None,
                None,
                "refunded, never booked".into(),
            );
        }
        let ours = input.booked_by_us.get(&op.uid);
        let cancelled = receipts
            .iter()
            .find(|e| e.docstatus == 2 && ours.is_some_and(|o| *o == e.name));
        return match cancelled {
            Some(c) => finding(
                AuditVerdict::CancelledInErp,
                Some(c.name.clone()),
                Some(c.paid_amount),
                "paysync booked it; the entry was cancelled in ERPNext".into(),
            ),
            None => finding(
                AuditVerdict::Missing,
                None,
                None,
                format!("status {}, no live entry", op.source_status),
            ),
        };
    };
    if op.status == PaymentStatus::Rejected {
        return finding(
            AuditVerdict::AmountMismatch,
            Some(entry.name.clone()),
            Some(entry.paid_amount),
            format!("status {} (rejected) but booked", op.source_status),
        );
    }
    if let Some(customer) = input.customer_of.get(&op.uid)
        && *customer != entry.party
    {
        return finding(
            AuditVerdict::PartyMismatch,
            Some(entry.name.clone()),
            Some(entry.paid_amount),
            format!(
                "entry's party {} is not the order's customer {customer}",
                entry.party
            ),
        );
    }
    let expected = booked_paid_amount(op, input.fees).unwrap_or(op.total);
    if entry.paid_amount != expected {
        return finding(
            AuditVerdict::AmountMismatch,
            Some(entry.name.clone()),
            Some(entry.paid_amount),
            format!(
                "entry pays {}, the source says {expected}",
                entry.paid_amount
            ),
        );
    }
    // Booked and right: is every refund reversed?
    let refunded: Decimal = op.refunds.iter().filter_map(|r| r.amount).sum();
    let refunded = if op.status == PaymentStatus::Refunded && refunded.is_zero() {
        op.total
    } else {
        refunded
    };
    let mut detail = String::new();
    if refunded > Decimal::ZERO {
        let prefix = format!("{}:refund:", op.uid);
        let reversals: Vec<&AuditEntry> = input
            .entries
            .iter()
            .filter(|e| e.docstatus == 1 && e.payment_type == "Pay")
            .filter(|e| {
                e.reference_no
                    .as_deref()
                    .is_some_and(|r| r.starts_with(&prefix))
            })
            .collect();
        let reversed: Decimal = reversals.iter().map(|e| e.paid_amount).sum();
        let names: Vec<&str> = reversals.iter().map(|e| e.name.as_str()).collect();
        detail = format!("{refunded} refunded, reversed by {}", names.join(", "));
        if reversed < refunded {
            return finding(
                AuditVerdict::NotReversed,
                Some(entry.name.clone()),
                Some(entry.paid_amount),
                format!("{refunded} refunded in the source, {reversed} reversed in ERPNext"),
            );
        }
    }
    finding(
        AuditVerdict::Ok,
        Some(entry.name.clone()),
        Some(entry.paid_amount),
        detail,
    )
}

#[cfg(test)]
mod tests;
