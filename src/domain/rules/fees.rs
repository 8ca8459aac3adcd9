//! The gateway's fees as `deductions` rows (issue 14, item 6), when the account sets
//! `fees_account`.
//!
//! Each fee becomes one row, rounded to 2 decimals here: ERPNext would store a third decimal as
//! sent and book it rounded in one GL column and unrounded in another (recording 29l/29m). A set
//! of fees that leaves nothing (or less than nothing) for the bank, or a negative fee, is not
//! something to guess about: the payment is not booked, with the amounts in the reason.

use rust_decimal::{Decimal, RoundingStrategy};

use super::{DecisionKind, MAX_SCALE, Skip, skip};
use crate::domain::{Deduction, Operation};

/// Where an account's fees are booked: the domain's copy of the configuration's
/// `fees_account` / `fees_cost_center` (the domain does not depend on `config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeePolicy {
    /// The expense account of the deductions rows.
    pub account: String,
    /// Mandatory on every row (ERPNext refuses a row without one, 29n).
    pub cost_center: String,
}

/// The deductions rows of `op` under `policy`: none when the account does not book fees or the
/// operation has none. `Err` when the fees cannot be booked as given (a negative fee, or fees
/// that take the whole total): a person has to look, so it is an `error` decision, re-examined
/// on later runs like a bad total.
pub(super) fn deductions(
    op: &Operation,
    policy: Option<&FeePolicy>,
) -> Result<Vec<Deduction>, Skip> {
    let Some(policy) = policy else {
        return Ok(Vec::new());
    };
    if let Some(negative) = op.fees.iter().find(|f| f.amount < Decimal::ZERO) {
        return Err(skip(
            DecisionKind::Error,
            format!(
                "fee {:?} of {} is negative: not deducted, not booked",
                negative.kind, negative.amount
            ),
        ));
    }
    // Several fees of one kind stay apart: each is one charge the gateway reported.
    let rows: Vec<Deduction> = op
        .fees
        .iter()
        .map(|f| Deduction {
            account: policy.account.clone(),
            cost_center: policy.cost_center.clone(),
            amount: f
                .amount
                .round_dp_with_strategy(MAX_SCALE, RoundingStrategy::MidpointAwayFromZero),
            description: f.kind.clone(),
        })
        // A fee of 0 (or one that rounds to 0.00) would be a row deducting nothing.
        .filter(|d| !d.amount.is_zero())
        .collect();
    let sum: Decimal = rows.iter().map(|d| d.amount).sum();
    if sum >= op.total {
        return Err(skip(
            DecisionKind::Error,
            format!(
                "fees {sum} are not less than the total {}: nothing would reach the bank; not booked",
                op.total
            ),
        ));
    }
    Ok(rows)
}
