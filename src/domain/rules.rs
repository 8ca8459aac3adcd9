//! The booking rules as one pure function: [`decide`].
//!
//! Given an operation and everything already known about it (its sales order, whether that order
//! already has an entry, whether the operation is already loaded), say what to do: book an initial
//! payment, book an additional payment, or skip with a reason. Translated from
//! `shared/spec/rules.md`; every branch has a unit test below. No I/O happens here, so the rules can
//! be tested case by case and reused by every trigger (manual sync, poll, webhook).

use std::fmt;

use jiff::civil::Date;
use rust_decimal::{Decimal, RoundingStrategy};

use super::{Allocation, Operation, PaymentEntry, PaymentStatus, SalesOrder};

mod fees;

pub use fees::FeePolicy;

/// The outcome recorded for every examined operation (ledger column `decision`, log field
/// `decision`). The string forms are a public contract: they appear in logs, the ledger and README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecisionKind {
    BookedInitial,
    BookedAdditional,
    AlreadyLoaded,
    Rejected,
    Pending,
    Refunded,
    OrderMissing,
    OrderNotPayable,
    CurrencyMismatch,
    IgnoredChild,
    IgnoredTest,
    /// Bookable, but an earlier paid payment of the same order is still unresolved: booking this
    /// one first would make it the order's "initial" payment. Re-examined when the earlier resolves.
    Waiting,
    Error,
}

impl DecisionKind {
    pub const ALL: [DecisionKind; 13] = [
        DecisionKind::BookedInitial,
        DecisionKind::BookedAdditional,
        DecisionKind::AlreadyLoaded,
        DecisionKind::Rejected,
        DecisionKind::Pending,
        DecisionKind::Refunded,
        DecisionKind::OrderMissing,
        DecisionKind::OrderNotPayable,
        DecisionKind::CurrencyMismatch,
        DecisionKind::IgnoredChild,
        DecisionKind::IgnoredTest,
        DecisionKind::Waiting,
        DecisionKind::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::BookedInitial => "booked_initial",
            DecisionKind::BookedAdditional => "booked_additional",
            DecisionKind::AlreadyLoaded => "already_loaded",
            DecisionKind::Rejected => "rejected",
            DecisionKind::Pending => "pending",
            DecisionKind::Refunded => "refunded",
            DecisionKind::OrderMissing => "order_missing",
            DecisionKind::OrderNotPayable => "order_not_payable",
            DecisionKind::CurrencyMismatch => "currency_mismatch",
            DecisionKind::IgnoredChild => "ignored_child",
            DecisionKind::IgnoredTest => "ignored_test",
            DecisionKind::Waiting => "waiting",
            DecisionKind::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<DecisionKind> {
        DecisionKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Booked decisions are final: the ledger never overwrites them with a later skip.
    pub fn is_booked(self) -> bool {
        matches!(
            self,
            DecisionKind::BookedInitial | DecisionKind::BookedAdditional
        )
    }

    /// Decisions that will never change by themselves, so the operation need not be re-examined.
    /// Everything else (pending, order missing, errors...) is looked at again on later runs.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DecisionKind::BookedInitial
                | DecisionKind::BookedAdditional
                | DecisionKind::AlreadyLoaded
                | DecisionKind::IgnoredChild
        )
    }

    /// For a *paid* operation: decisions that leave it unresolved, so that a later payment of the
    /// same order must not be booked before it (rules.md: an order's payments are decided oldest
    /// first). A paid payment whose order is missing or not payable yet may still become the
    /// order's initial payment; one that failed or waits certainly may. Currency mismatches are
    /// final for the payment (its currency never changes) and do not hold later payments back.
    pub fn holds_back_later_payments(self) -> bool {
        matches!(
            self,
            DecisionKind::Error
                | DecisionKind::Waiting
                | DecisionKind::OrderMissing
                | DecisionKind::OrderNotPayable
        )
    }

    /// Decisions that mean "not done yet, run again" for a run's exit code and summary.
    pub fn is_unresolved(self) -> bool {
        matches!(self, DecisionKind::Error | DecisionKind::Waiting)
    }
}

impl fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an account's configuration contributes to a decision.
#[derive(Debug, Clone)]
pub struct AccountPolicy {
    pub company: String,
    pub mode_of_payment: String,
    /// The bank/cash account money goes to (configured, or the mode of payment's default account).
    pub paid_to: String,
    pub include_test: bool,
    /// Refunds of booked payments are reversed by paysync (`reverse_refunds`), not by hand.
    pub reverse_refunds: bool,
    /// The Sales Order field the operation's order key is looked up in (`name`, `po_no`, ...).
    pub order_field: String,
    /// Where the gateway's fees are deducted (`fees_account`); `None`: the gross amount is
    /// booked and the operation's fees are ignored.
    pub fees: Option<FeePolicy>,
}

/// Everything [`decide`] needs to know about one operation. The caller gathers it (batched
/// lookups in the ERP and the ledger) and must hold the order's lock while deciding and booking.
#[derive(Debug, Clone)]
pub struct DecisionInput<'a> {
    pub op: &'a Operation,
    pub policy: &'a AccountPolicy,
    /// The order key taken from the operation (`order_source`, `order_pattern`): the value of
    /// the account's `order_field` (the order's name by default); `None` when the operation
    /// names no order.
    pub order_name: Option<&'a str>,
    /// The order as the ERP has it, `None` if it does not exist (yet).
    pub order: Option<&'a SalesOrder>,
    /// More than one live Sales Order holds the key in `order_field` (ERPNext allows one
    /// `po_no` for several customers: recording 30e): their names. Nothing is booked.
    pub order_ambiguous: Option<&'a [String]>,
    /// A submitted entry already references the order (in the ERP, or booked by us).
    pub order_has_entry: bool,
    /// The name of an entry already carrying this operation id (ERP, docstatus 0/1, or ledger).
    pub already_loaded: Option<&'a str>,
    /// An earlier (by creation time) paid payment of the same order that is still unresolved
    /// (see [`DecisionKind::holds_back_later_payments`]): what it is, for the reason text.
    pub earlier_unresolved: Option<&'a EarlierPayment>,
    /// "Today" in the configured time zone: posting and reference date.
    pub today: Date,
}

/// An earlier payment of the same order that holds a later one back.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlierPayment {
    pub uid: String,
    pub decision: DecisionKind,
}

/// Why nothing is booked.
#[derive(Debug, Clone, PartialEq)]
pub struct Skip {
    pub kind: DecisionKind,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// First payment of the order: allocated to it.
    BookInitial(PaymentEntry),
    /// The order already has a payment: unallocated, on the customer's account.
    /// `paid_from` is left `None`: ERPNext fills in the customer's receivable account.
    BookAdditional(PaymentEntry),
    Skip(Skip),
}

impl Decision {
    pub fn kind(&self) -> DecisionKind {
        match self {
            Decision::BookInitial(_) => DecisionKind::BookedInitial,
            Decision::BookAdditional(_) => DecisionKind::BookedAdditional,
            Decision::Skip(s) => s.kind,
        }
    }

    /// The entry to create carries this duplicate-guard value (a re-booking's `<id>#n`).
    pub fn with_guard_value(self, guard_value: Option<String>) -> Decision {
        match self {
            Decision::BookInitial(e) => Decision::BookInitial(PaymentEntry { guard_value, ..e }),
            Decision::BookAdditional(e) => {
                Decision::BookAdditional(PaymentEntry { guard_value, ..e })
            }
            skip => skip,
        }
    }
}

fn skip(kind: DecisionKind, reason: impl Into<String>) -> Skip {
    Skip {
        kind,
        reason: reason.into(),
    }
}

/// ERPNext stores amounts with 2 decimals in the ledger; more than that would be booked unrounded
/// in one field and rounded in another (recording 24c), so such totals are refused, not rounded.
const MAX_SCALE: u32 = 2;

/// Decide what to do with one operation. Pure: same input, same answer.
///
/// The checks run in a fixed order and the first one that fails decides; each step below is one
/// group of checks, in that order.
pub fn decide(input: &DecisionInput<'_>) -> Decision {
    match check_and_book(input) {
        Ok(decision) => decision,
        Err(skipped) => Decision::Skip(skipped),
    }
}

/// The checks in order (`?` stops at the first skip), then the booking.
fn check_and_book(input: &DecisionInput<'_>) -> Result<Decision, Skip> {
    skip_by_kind(input)?;
    skip_by_status(input)?;
    skip_already_loaded(input)?;
    skip_by_amount(input.op)?;
    let deductions = fees::deductions(input.op, input.policy.fees.as_ref())?;
    let order = check_order(input)?;
    wait_for_earlier_payment(input, &order.name)?;
    Ok(book(input, order, deductions))
}

/// Child operations (booked through their parent) and test-mode ones unless included.
fn skip_by_kind(input: &DecisionInput<'_>) -> Result<(), Skip> {
    let op = input.op;
    if op.is_child {
        return Err(skip(
            DecisionKind::IgnoredChild,
            "child operation: its parent is booked at its total",
        ));
    }
    if op.is_test && !input.policy.include_test {
        return Err(skip(
            DecisionKind::IgnoredTest,
            "test-mode operation (include_test = false)",
        ));
    }
    Ok(())
}

/// Only paid operations are booked; a refund of a booked one names the entry to reverse by hand.
fn skip_by_status(input: &DecisionInput<'_>) -> Result<(), Skip> {
    let status = &input.op.source_status;
    match input.op.status {
        PaymentStatus::Paid => Ok(()),
        PaymentStatus::Rejected => Err(skip(DecisionKind::Rejected, format!("status {status}"))),
        PaymentStatus::Refunded => {
            let reason = match input.already_loaded {
                Some(entry) if input.policy.reverse_refunds => {
                    format!("status {status} after it was booked as {entry}")
                }
                Some(entry) => format!(
                    "status {status} after it was booked as {entry}: reverse that entry by hand"
                ),
                None => format!("status {status}"),
            };
            Err(skip(DecisionKind::Refunded, reason))
        }
        PaymentStatus::Pending => Err(skip(DecisionKind::Pending, format!("status {status}"))),
    }
}

/// An entry already carries this operation id.
fn skip_already_loaded(input: &DecisionInput<'_>) -> Result<(), Skip> {
    match input.already_loaded {
        Some(entry) => Err(skip(
            DecisionKind::AlreadyLoaded,
            format!(
                "Payment Entry {entry} already has reference_no {}",
                input.op.uid
            ),
        )),
        None => Ok(()),
    }
}

/// The total must be positive and have at most [`MAX_SCALE`] decimals.
fn skip_by_amount(op: &Operation) -> Result<(), Skip> {
    if op.total <= Decimal::ZERO {
        return Err(skip(
            DecisionKind::Error,
            format!("total {} is not a positive amount", op.total),
        ));
    }
    if op.total.normalize().scale() > MAX_SCALE {
        return Err(skip(
            DecisionKind::Error,
            format!(
                "total {} has more than {MAX_SCALE} decimal places",
                op.total
            ),
        ));
    }
    Ok(())
}

/// The order must be named, exist (once), be submitted and open, belong to the account's company
/// and be in the operation's currency. Returns the order.
fn check_order<'a>(input: &DecisionInput<'a>) -> Result<&'a SalesOrder, Skip> {
    let op = input.op;
    let field = input.policy.order_field.as_str();
    let Some(key) = input.order_name else {
        return Err(skip(
            DecisionKind::OrderMissing,
            match field {
                "name" => format!(
                    "reference {:?} does not name a sales order (order_pattern)",
                    op.reference
                ),
                _ => format!(
                    "the payment names no order to look up in {field} (order_source, order_pattern; reference {:?})",
                    op.reference
                ),
            },
        ));
    };
    if let Some(names) = input.order_ambiguous {
        return Err(skip(
            DecisionKind::OrderNotPayable,
            format!(
                "{} Sales Orders hold {field} {key:?} ({}): which one this payment pays is not known; leave the value on one order only",
                names.len(),
                names.join(", ")
            ),
        ));
    }
    let Some(order) = input.order else {
        return Err(skip(
            DecisionKind::OrderMissing,
            match field {
                "name" => format!("Sales Order {key} not found in the ERP"),
                _ => format!("no Sales Order with {field} {key:?} in the ERP"),
            },
        ));
    };
    let order_name = order_label(field, key, order);
    let not_payable = |reason: String| Err(skip(DecisionKind::OrderNotPayable, reason));

    match order.docstatus {
        0 => {
            return not_payable(format!(
                "Sales Order {order_name} must be submitted (it is a draft)"
            ));
        }
        2 => return not_payable(format!("Sales Order {order_name} is cancelled")),
        _ => {}
    }
    if order.status == "Closed" || order.status == "Cancelled" {
        return not_payable(format!("Sales Order {order_name} is {}", order.status));
    }
    if order.company != input.policy.company {
        return not_payable(format!(
            "Sales Order {order_name} belongs to company {:?}, not {:?}",
            order.company, input.policy.company
        ));
    }
    if !order.currency.eq_ignore_ascii_case(&op.currency) {
        return Err(skip(
            DecisionKind::CurrencyMismatch,
            format!(
                "operation in {} but Sales Order {order_name} in {}",
                op.currency, order.currency
            ),
        ));
    }
    Ok(order)
}

/// Of the Sales Orders holding one order key, the one a payment pays. Cancelled orders are left
/// out when a live one holds the key too (an amendment keeps its original's `po_no`); when only
/// cancelled ones do, the last by name (the newest amendment) answers, and is refused as
/// cancelled. `Err`: several live orders hold it, their names.
pub fn pick_order(mut holders: Vec<SalesOrder>) -> Result<Option<SalesOrder>, Vec<String>> {
    holders.sort_by(|a, b| a.name.cmp(&b.name));
    let live: Vec<&SalesOrder> = holders.iter().filter(|o| o.docstatus != 2).collect();
    match live.as_slice() {
        [] => Ok(holders.pop()),
        [one] => Ok(Some((*one).clone())),
        several => Err(several.iter().map(|o| o.name.clone()).collect()),
    }
}

/// How reasons name an order: its name, and the key it was found by when that is another field.
fn order_label(field: &str, key: &str, order: &SalesOrder) -> String {
    match field {
        "name" => order.name.clone(),
        _ => format!("{} ({field} {key})", order.name),
    }
}

/// Everything says "book", but the order's payments are booked oldest first: while an earlier
/// paid payment is unresolved, this one would take its place as the order's initial payment.
fn wait_for_earlier_payment(input: &DecisionInput<'_>, order_name: &str) -> Result<(), Skip> {
    match input.earlier_unresolved {
        Some(earlier) => Err(skip(
            DecisionKind::Waiting,
            format!(
                "earlier payment {} of Sales Order {order_name} is unresolved ({}); booked after it",
                earlier.uid, earlier.decision
            ),
        )),
        None => Ok(()),
    }
}

/// The `paid_amount` paysync books for `op`: the total, or its net of the fees where the
/// account books them; `None` when the fees cannot be booked as given (see `fees.rs`).
pub fn booked_paid_amount(op: &Operation, fees: Option<&FeePolicy>) -> Option<Decimal> {
    let rows = fees::deductions(op, fees).ok()?;
    Some(op.total - rows.iter().map(|d| d.amount).sum::<Decimal>())
}

/// The entry to create: additional (unallocated) when the order already has one, else initial,
/// allocated to the order as far as [`initial_allocation`] allows.
///
/// With `deductions` (the account books the fees), the bank gets the net: `paid_amount` =
/// `received_amount` = total − Σ deductions, the only shape a one-currency ERPNext books as
/// Bank net / Fees / Debtors gross (recording 29f; it overwrites `received_amount` with
/// `paid_amount`, 29b). The allocation stays the gross one, and an additional payment's
/// unallocated amount comes out gross on its own: ERPNext sets `unallocated = paid + Σ deductions
/// − allocated` (= the total) and `difference = allocated + unallocated − received − Σ deductions`
/// (= 0).
fn book(
    input: &DecisionInput<'_>,
    order: &SalesOrder,
    deductions: Vec<super::Deduction>,
) -> Decision {
    let op = input.op;
    let net = op.total - deductions.iter().map(|d| d.amount).sum::<Decimal>();
    let mut entry = PaymentEntry {
        company: input.policy.company.clone(),
        party: order.customer.clone(),
        paid_amount: net,
        received_amount: net,
        mode_of_payment: input.policy.mode_of_payment.clone(),
        paid_to: input.policy.paid_to.clone(),
        paid_from: None,
        reference_no: op.uid.clone(),
        reference_date: input.today,
        posting_date: input.today,
        allocation: None,
        deductions,
        guard_value: None,
        naming_series: None,
    };
    if input.order_has_entry {
        return Decision::BookAdditional(entry);
    }
    entry.allocation = initial_allocation(op, order);
    Decision::BookInitial(entry)
}

/// The allocation of an initial payment to its order, or `None` (booked unallocated).
///
/// ERPNext refuses allocations to an order that is fully invoiced or has nothing outstanding
/// ("has already been fully paid"), and drops zero rows anyway: then the money is still received
/// and is booked unallocated on the customer's account.
///
/// ERPNext compares the allocation with the order's outstanding *exactly* — `flt(allocated) >
/// flt(outstanding)`, no precision (payment_entry.py, `validate_allocated_amount_with_latest_data`;
/// the outstanding is `(rounded_total or grand_total) - advance_paid` from the database, which keeps
/// more decimals than the currency) — while the amount it stores is rounded to the currency's 2.
/// So the allocation is the outstanding rounded *down* to 2 decimals at most: an outstanding of
/// 999.995 takes 999.99 (1000.00 would be refused for ever), one of 0.005 takes nothing.
/// An order is "to be billed" only while `abs(100 - per_billed) > 0.01` (get_orders_to_be_billed).
fn initial_allocation(op: &Operation, order: &SalesOrder) -> Option<Allocation> {
    let allocatable = order
        .outstanding()
        .round_dp_with_strategy(MAX_SCALE, RoundingStrategy::ToZero);
    let billed_tolerance = Decimal::new(1, 2);
    let to_be_billed = Decimal::ONE_HUNDRED - order.per_billed > billed_tolerance;
    (to_be_billed && allocatable > Decimal::ZERO).then(|| Allocation {
        sales_order: order.name.clone(),
        allocated_amount: op.total.min(allocatable),
    })
}

#[cfg(test)]
mod tests;
