//! Which refunds of a booked operation to reverse in the ERP: a function of data, no I/O.
//!
//! A reversal is a "Pay" entry to the customer from the account's `paid_to`, for the refunded
//! amount, unallocated (recording 27: allocated to the Sales Order it would *raise* the order's
//! `advance_paid`), with `reference_no` `<uid>:refund:<key>` so that it is found again and
//! never created twice. Only what paysync itself booked is reversed (an entry someone typed by
//! hand is theirs to reverse), never more in all than was booked, and a refund whose amount the
//! gateway does not state is left to a person with a warning naming the entry.

use jiff::civil::Date;
use rust_decimal::Decimal;

use super::{Operation, Refund};

/// The reversal entry paysync asks the ERP to create: "Pay" to the customer, submitted,
/// unallocated, from the bank/cash account the payment was booked to; the customer's side is
/// its receivable account (ERPNext fills it in, recording 27p).
#[derive(Debug, Clone, PartialEq)]
pub struct ReversalEntry {
    pub company: String,
    /// The customer the reversed entry credited.
    pub party: String,
    pub amount: Decimal,
    pub mode_of_payment: String,
    /// The account the refund leaves from: the one the payment was booked to (`paid_to`).
    pub paid_from: String,
    /// `<uid>:refund:<key>`; also the duplicate guard's value where it is installed.
    pub reference_no: String,
    pub posting_date: Date,
}

/// What paysync booked of an operation: its entry and the amount booked.
#[derive(Debug, Clone, PartialEq)]
pub struct BookedByUs<'a> {
    pub entry: &'a str,
    pub amount: Decimal,
}

/// A reversal already made (as the ledger or the ERP knows it).
#[derive(Debug, Clone, PartialEq)]
pub struct Reversed<'a> {
    pub key: &'a str,
    pub amount: Decimal,
}

/// One reversal to create.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedReversal {
    /// The refund's key in the operation.
    pub key: String,
    pub amount: Decimal,
    /// `<uid>:refund:<key>`.
    pub reference_no: String,
}

/// The reversals to create now, and why others are not (one line each, for a warning).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReversalPlan {
    pub create: Vec<PlannedReversal>,
    pub warnings: Vec<String>,
}

/// The `reference_no` of the reversal of refund `key` of `uid`.
pub fn reversal_reference(uid: &str, key: &str) -> String {
    format!("{uid}:refund:{key}")
}

/// The reversals of `op` to create, given what paysync booked of it (`None`: it did not book
/// it, so nothing is reversed) and the reversals made already.
pub fn plan_reversals(
    op: &Operation,
    booked: Option<&BookedByUs<'_>>,
    done: &[Reversed<'_>],
) -> ReversalPlan {
    let mut plan = ReversalPlan::default();
    let Some(booked) = booked else {
        return plan;
    };
    let mut reversed: Decimal = done.iter().map(|r| r.amount).sum();
    for Refund { key, amount } in &op.refunds {
        if done.iter().any(|r| r.key == key) {
            continue;
        }
        let Some(amount) = *amount else {
            plan.warnings.push(format!(
                "{} was partly refunded by an amount the gateway does not state: Payment Entry {} is not reversed — reverse the refunded part by hand",
                op.uid, booked.entry
            ));
            continue;
        };
        if amount <= Decimal::ZERO {
            continue;
        }
        if reversed + amount > booked.amount {
            plan.warnings.push(format!(
                "{}: refund {key} of {amount} would reverse {} in all of the {} booked by Payment Entry {}: not reversed — check the refunds by hand",
                op.uid,
                reversed + amount,
                booked.amount,
                booked.entry
            ));
            continue;
        }
        reversed += amount;
        plan.create.push(PlannedReversal {
            key: key.clone(),
            amount,
            reference_no: reversal_reference(&op.uid, key),
        });
    }
    plan
}

#[cfg(test)]
mod tests;
