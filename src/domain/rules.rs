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
}

/// Everything [`decide`] needs to know about one operation. The caller gathers it (batched
/// lookups in the ERP and the ledger) and must hold the order's lock while deciding and booking.
#[derive(Debug, Clone)]
pub struct DecisionInput<'a> {
    pub op: &'a Operation,
    pub policy: &'a AccountPolicy,
    /// The order name taken from the reference; `None` when the reference does not match
    /// the account's `order_pattern`.
    pub order_name: Option<&'a str>,
    /// The order as the ERP has it, `None` if it does not exist (yet).
    pub order: Option<&'a SalesOrder>,
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
    /// `paid_from` is left `None`; the caller fills in the customer's receivable account.
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

fn skip(kind: DecisionKind, reason: impl Into<String>) -> Decision {
    Decision::Skip(Skip {
        kind,
        reason: reason.into(),
    })
}

/// ERPNext stores amounts with 2 decimals in the ledger; more than that would be booked unrounded
/// in one field and rounded in another (recording 24c), so such totals are refused, not rounded.
const MAX_SCALE: u32 = 2;

/// Decide what to do with one operation. Pure: same input, same answer.
pub fn decide(input: &DecisionInput<'_>) -> Decision {
    let op = input.op;

    if op.is_child {
        return skip(
            DecisionKind::IgnoredChild,
            "child operation: its parent is booked at its total",
        );
    }
    if op.is_test && !input.policy.include_test {
        return skip(
            DecisionKind::IgnoredTest,
            "test-mode operation (include_test = false)",
        );
    }

    let status = &op.source_status;
    match op.status {
        PaymentStatus::Paid => {}
        PaymentStatus::Rejected => {
            return skip(DecisionKind::Rejected, format!("status {status}"));
        }
        PaymentStatus::Refunded => {
            let reason = match input.already_loaded {
                Some(entry) => format!(
                    "status {status} after it was booked as {entry}: reverse that entry by hand"
                ),
                None => format!("status {status}"),
            };
            return skip(DecisionKind::Refunded, reason);
        }
        PaymentStatus::Pending => {
            return skip(DecisionKind::Pending, format!("status {status}"));
        }
    }

    if let Some(entry) = input.already_loaded {
        return skip(
            DecisionKind::AlreadyLoaded,
            format!("Payment Entry {entry} already has reference_no {}", op.uid),
        );
    }

    if op.total <= Decimal::ZERO {
        return skip(
            DecisionKind::Error,
            format!("total {} is not a positive amount", op.total),
        );
    }
    if op.total.normalize().scale() > MAX_SCALE {
        return skip(
            DecisionKind::Error,
            format!(
                "total {} has more than {MAX_SCALE} decimal places",
                op.total
            ),
        );
    }

    let Some(order_name) = input.order_name else {
        return skip(
            DecisionKind::OrderMissing,
            format!(
                "reference {:?} does not name a sales order (order_pattern)",
                op.reference
            ),
        );
    };
    let Some(order) = input.order else {
        return skip(
            DecisionKind::OrderMissing,
            format!("Sales Order {order_name} not found in the ERP"),
        );
    };

    match order.docstatus {
        0 => {
            return skip(
                DecisionKind::OrderNotPayable,
                format!("Sales Order {order_name} must be submitted (it is a draft)"),
            );
        }
        2 => {
            return skip(
                DecisionKind::OrderNotPayable,
                format!("Sales Order {order_name} is cancelled"),
            );
        }
        _ => {}
    }
    if order.status == "Closed" || order.status == "Cancelled" {
        return skip(
            DecisionKind::OrderNotPayable,
            format!("Sales Order {order_name} is {}", order.status),
        );
    }
    if order.company != input.policy.company {
        return skip(
            DecisionKind::OrderNotPayable,
            format!(
                "Sales Order {order_name} belongs to company {:?}, not {:?}",
                order.company, input.policy.company
            ),
        );
    }
    if !order.currency.eq_ignore_ascii_case(&op.currency) {
        return skip(
            DecisionKind::CurrencyMismatch,
            format!(
                "operation in {} but Sales Order {order_name} in {}",
                op.currency, order.currency
            ),
        );
    }

    // Everything says "book", but the order's payments are booked oldest first: while an earlier
    // paid payment is unresolved, this one would take its place as the order's initial payment.
    if let Some(earlier) = input.earlier_unresolved {
        return skip(
            DecisionKind::Waiting,
            format!(
                "earlier payment {} of Sales Order {order_name} is unresolved ({}); booked after it",
                earlier.uid, earlier.decision
            ),
        );
    }

    let mut entry = PaymentEntry {
        company: input.policy.company.clone(),
        party: order.customer.clone(),
        paid_amount: op.total,
        received_amount: op.total,
        mode_of_payment: input.policy.mode_of_payment.clone(),
        paid_to: input.policy.paid_to.clone(),
        paid_from: None,
        reference_no: op.uid.clone(),
        reference_date: input.today,
        posting_date: input.today,
        allocation: None,
        guard_value: None,
    };

    if input.order_has_entry {
        return Decision::BookAdditional(entry);
    }

    // Initial payment. ERPNext refuses allocations to an order that is fully invoiced or has
    // nothing outstanding ("has already been fully paid"), and drops zero rows anyway: then the
    // money is still received and is booked unallocated on the customer's account.
    //
    // ERPNext compares the allocation with the order's outstanding *exactly* — `flt(allocated) >
    // flt(outstanding)`, no precision (payment_entry.py, `validate_allocated_amount_with_latest_data`;
    // the outstanding is `(rounded_total or grand_total) - advance_paid` from the database, which keeps
    // more decimals than the currency) — while the amount it stores is rounded to the currency's 2.
    // So the allocation is the outstanding rounded *down* to 2 decimals at most: an outstanding of
    // 999.995 takes 999.99 (1000.00 would be refused for ever), one of 0.005 takes nothing.
    // An order is "to be billed" only while `abs(100 - per_billed) > 0.01` (get_orders_to_be_billed).
    let allocatable = order
        .outstanding()
        .round_dp_with_strategy(MAX_SCALE, RoundingStrategy::ToZero);
    let billed_tolerance = Decimal::new(1, 2);
    if Decimal::ONE_HUNDRED - order.per_billed > billed_tolerance && allocatable > Decimal::ZERO {
        entry.allocation = Some(Allocation {
            sales_order: order_name.to_string(),
            allocated_amount: op.total.min(allocatable),
        });
    }
    Decision::BookInitial(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn op(status: PaymentStatus, total: &str) -> Operation {
        Operation {
            uid: "op-1".into(),
            reference: "SAL-ORD-2026-00001".into(),
            source_status: format!("{status:?}"),
            status,
            total: d(total),
            currency: "ARS".into(),
            created: "2026-10-01T12:00:00Z".parse().unwrap(),
            updated: None,
            is_child: false,
            is_test: false,
        }
    }

    fn order() -> SalesOrder {
        SalesOrder {
            name: "SAL-ORD-2026-00001".into(),
            customer: "Cliente Demo".into(),
            company: "Mi Empresa SA".into(),
            currency: "ARS".into(),
            docstatus: 1,
            status: "To Deliver and Bill".into(),
            grand_total: d("1000"),
            rounded_total: d("1000"),
            advance_paid: d("0"),
            per_billed: d("0"),
        }
    }

    fn policy() -> AccountPolicy {
        AccountPolicy {
            company: "Mi Empresa SA".into(),
            mode_of_payment: "Mobbex".into(),
            paid_to: "Mobbex - MESA".into(),
            include_test: false,
        }
    }

    struct Case {
        op: Operation,
        order: Option<SalesOrder>,
        order_name: Option<&'static str>,
        has_entry: bool,
        loaded: Option<&'static str>,
        earlier: Option<EarlierPayment>,
        policy: AccountPolicy,
    }

    impl Case {
        fn new(op: Operation) -> Case {
            Case {
                op,
                order: Some(order()),
                order_name: Some("SAL-ORD-2026-00001"),
                has_entry: false,
                loaded: None,
                earlier: None,
                policy: policy(),
            }
        }
        fn decide(&self) -> Decision {
            decide(&DecisionInput {
                op: &self.op,
                policy: &self.policy,
                order_name: self.order_name,
                order: self.order.as_ref(),
                order_has_entry: self.has_entry,
                already_loaded: self.loaded,
                earlier_unresolved: self.earlier.as_ref(),
                today: jiff::civil::date(2026, 11, 22),
            })
        }
    }

    fn kind_of(c: &Case) -> DecisionKind {
        c.decide().kind()
    }

    #[test]
    fn paid_first_payment_is_initial_allocated_to_the_order() {
        let c = Case::new(op(PaymentStatus::Paid, "600.00"));
        let Decision::BookInitial(e) = c.decide() else {
            panic!("{:?}", c.decide())
        };
        assert_eq!(e.party, "Cliente Demo");
        assert_eq!(e.company, "Mi Empresa SA");
        assert_eq!(e.paid_amount, d("600"));
        assert_eq!(e.received_amount, d("600"));
        assert_eq!(e.reference_no, "op-1");
        assert_eq!(e.paid_to, "Mobbex - MESA");
        assert_eq!(e.mode_of_payment, "Mobbex");
        assert_eq!(e.reference_date, jiff::civil::date(2026, 11, 22));
        assert_eq!(e.posting_date, jiff::civil::date(2026, 11, 22));
        let a = e.allocation.unwrap();
        assert_eq!(a.sales_order, "SAL-ORD-2026-00001");
        assert_eq!(a.allocated_amount, d("600"));
    }

    #[test]
    fn a_paid_operation_books() {
        assert_eq!(
            kind_of(&Case::new(op(PaymentStatus::Paid, "1"))),
            DecisionKind::BookedInitial
        );
    }

    #[test]
    fn allocation_is_capped_at_the_outstanding_amount() {
        let mut c = Case::new(op(PaymentStatus::Paid, "1500.50"));
        c.order.as_mut().unwrap().advance_paid = d("300");
        let Decision::BookInitial(e) = c.decide() else {
            panic!()
        };
        assert_eq!(e.paid_amount, d("1500.50"));
        assert_eq!(e.allocation.unwrap().allocated_amount, d("700"));
    }

    #[test]
    fn outstanding_uses_grand_total_when_rounded_total_is_zero() {
        let mut c = Case::new(op(PaymentStatus::Paid, "0.30"));
        let o = c.order.as_mut().unwrap();
        o.grand_total = d("0.30");
        o.rounded_total = d("0");
        let Decision::BookInitial(e) = c.decide() else {
            panic!()
        };
        assert_eq!(e.allocation.unwrap().allocated_amount, d("0.30"));
    }

    #[test]
    fn outstanding_uses_rounded_total_when_set() {
        let mut c = Case::new(op(PaymentStatus::Paid, "2871.74"));
        let o = c.order.as_mut().unwrap();
        o.grand_total = d("2871.74");
        o.rounded_total = d("2872");
        assert_eq!(o.outstanding(), d("2872"));
        let Decision::BookInitial(e) = c.decide() else {
            panic!()
        };
        assert_eq!(e.allocation.unwrap().allocated_amount, d("2871.74"));
    }

    /// An outstanding with more decimals than the currency (advance_paid 0.005, grand_total
    /// 1000.005): the allocation never exceeds it once rounded, or ERPNext refuses it for ever.
    #[test]
    fn an_outstanding_with_three_decimals_is_allocated_rounded_down() {
        for (grand_total, advance_paid, total, expected) in [
            ("1000", "0.005", "1000", Some("999.99")),
            ("1000.005", "0", "1000.01", Some("1000")),
            ("1000.005", "0", "500", Some("500")),
            ("1000", "999.995", "10", None),
            ("1000", "999.999", "10", None),
        ] {
            let mut c = Case::new(op(PaymentStatus::Paid, total));
            let o = c.order.as_mut().unwrap();
            o.grand_total = d(grand_total);
            o.rounded_total = d("0");
            o.advance_paid = d(advance_paid);
            let Decision::BookInitial(e) = c.decide() else {
                panic!("{grand_total} {advance_paid}")
            };
            let allocated = e.allocation.map(|a| a.allocated_amount);
            assert_eq!(allocated, expected.map(d), "{grand_total} - {advance_paid}");
            if let Some(a) = allocated {
                assert!(a <= d(grand_total) - d(advance_paid));
                assert_eq!(a, a.round_dp(2));
            }
        }
    }

    /// ERPNext lists an order as to be billed only while `abs(100 - per_billed) > 0.01`.
    #[test]
    fn an_order_billed_within_a_hundredth_of_a_percent_is_not_allocated() {
        for (per_billed, allocated) in [("99.995", false), ("99.99", false), ("99.98", true)] {
            let mut c = Case::new(op(PaymentStatus::Paid, "10"));
            c.order.as_mut().unwrap().per_billed = d(per_billed);
            let Decision::BookInitial(e) = c.decide() else {
                panic!()
            };
            assert_eq!(e.allocation.is_some(), allocated, "per_billed {per_billed}");
        }
    }

    #[test]
    fn nothing_outstanding_books_unallocated() {
        let mut c = Case::new(op(PaymentStatus::Paid, "10"));
        c.order.as_mut().unwrap().per_billed = d("100");
        let Decision::BookInitial(e) = c.decide() else {
            panic!()
        };
        assert!(e.allocation.is_none());
    }

    #[test]
    fn order_with_an_entry_gets_an_additional_unallocated_payment() {
        let mut c = Case::new(op(PaymentStatus::Paid, "250.25"));
        c.has_entry = true;
        let Decision::BookAdditional(e) = c.decide() else {
            panic!()
        };
        assert!(e.allocation.is_none());
        assert_eq!(e.paid_from, None, "filled in by the caller");
        assert_eq!(e.party, "Cliente Demo");
        assert_eq!(e.paid_amount, d("250.25"));
    }

    #[test]
    fn rejected_pending_refunded_are_not_booked() {
        for (status, kind) in [
            (PaymentStatus::Rejected, DecisionKind::Rejected),
            (PaymentStatus::Pending, DecisionKind::Pending),
            (PaymentStatus::Refunded, DecisionKind::Refunded),
        ] {
            let decided = Case::new(op(status, "1")).decide();
            let Decision::Skip(s) = decided else {
                panic!("{status:?}")
            };
            assert_eq!(s.kind, kind);
            assert!(
                s.reason.contains(&format!("{status:?}")),
                "names the source's status: {}",
                s.reason
            );
        }
    }

    #[test]
    fn refund_after_booking_names_the_entry() {
        let mut c = Case::new(op(PaymentStatus::Refunded, "1"));
        c.loaded = Some("ACC-PAY-2026-00007");
        let Decision::Skip(s) = c.decide() else {
            panic!()
        };
        assert_eq!(s.kind, DecisionKind::Refunded);
        assert!(s.reason.contains("ACC-PAY-2026-00007"), "{}", s.reason);
    }

    #[test]
    fn already_loaded_is_skipped() {
        let mut c = Case::new(op(PaymentStatus::Paid, "1"));
        c.loaded = Some("ACC-PAY-2026-00001");
        assert_eq!(kind_of(&c), DecisionKind::AlreadyLoaded);
    }

    #[test]
    fn missing_or_unmatched_order() {
        let mut c = Case::new(op(PaymentStatus::Paid, "1"));
        c.order = None;
        assert_eq!(kind_of(&c), DecisionKind::OrderMissing);
        let mut c = Case::new(op(PaymentStatus::Paid, "1"));
        c.order_name = None;
        c.order = None;
        assert_eq!(kind_of(&c), DecisionKind::OrderMissing);
    }

    #[test]
    fn orders_that_cannot_take_payments() {
        let cases: [fn(&mut SalesOrder); 5] = [
            |o| o.docstatus = 0,
            |o| o.docstatus = 2,
            |o| o.status = "Closed".into(),
            |o| o.status = "Cancelled".into(),
            |o| o.company = "Otra SA".into(),
        ];
        for f in cases {
            let mut c = Case::new(op(PaymentStatus::Paid, "1"));
            f(c.order.as_mut().unwrap());
            assert_eq!(kind_of(&c), DecisionKind::OrderNotPayable);
        }
    }

    #[test]
    fn api_created_order_showing_draft_status_but_submitted_is_payable() {
        let mut c = Case::new(op(PaymentStatus::Paid, "1"));
        c.order.as_mut().unwrap().status = "Draft".into();
        assert_eq!(kind_of(&c), DecisionKind::BookedInitial);
    }

    #[test]
    fn currency_mismatch() {
        let mut c = Case::new(op(PaymentStatus::Paid, "1"));
        c.order.as_mut().unwrap().currency = "USD".into();
        assert_eq!(kind_of(&c), DecisionKind::CurrencyMismatch);
    }

    #[test]
    fn children_and_test_operations_are_ignored() {
        let mut o = op(PaymentStatus::Paid, "1");
        o.is_child = true;
        assert_eq!(kind_of(&Case::new(o)), DecisionKind::IgnoredChild);

        let mut o = op(PaymentStatus::Paid, "1");
        o.is_test = true;
        o.currency = "TEST".into();
        assert_eq!(kind_of(&Case::new(o.clone())), DecisionKind::IgnoredTest);
        // With include_test the order's currency still has to match.
        let mut c = Case::new(o);
        c.policy.include_test = true;
        assert_eq!(kind_of(&c), DecisionKind::CurrencyMismatch);
    }

    #[test]
    fn bad_totals_are_errors_not_bookings() {
        for t in ["0", "-5", "1.234"] {
            assert_eq!(
                kind_of(&Case::new(op(PaymentStatus::Paid, t))),
                DecisionKind::Error,
                "{t}"
            );
        }
        // Trailing zeros are not extra precision.
        assert_eq!(
            kind_of(&Case::new(op(PaymentStatus::Paid, "1.2000"))),
            DecisionKind::BookedInitial
        );
    }

    #[test]
    fn big_totals_stay_exact() {
        let mut c = Case::new(op(PaymentStatus::Paid, "1000000000.01"));
        let o = c.order.as_mut().unwrap();
        o.grand_total = d("2000000000.00");
        o.rounded_total = d("0");
        let Decision::BookInitial(e) = c.decide() else {
            panic!()
        };
        assert_eq!(e.paid_amount.to_string(), "1000000000.01");
    }

    #[test]
    fn a_payment_behind_an_unresolved_earlier_one_waits() {
        for (has_entry, earlier) in [
            (false, DecisionKind::Error),
            (false, DecisionKind::Waiting),
            (true, DecisionKind::OrderMissing),
            (false, DecisionKind::OrderNotPayable),
        ] {
            let mut c = Case::new(op(PaymentStatus::Paid, "100"));
            c.has_entry = has_entry;
            c.earlier = Some(EarlierPayment {
                uid: "op-0".into(),
                decision: earlier,
            });
            let Decision::Skip(s) = c.decide() else {
                panic!("{earlier}: {:?}", c.decide())
            };
            assert_eq!(s.kind, DecisionKind::Waiting);
            assert!(s.reason.contains("op-0"), "{}", s.reason);
            assert!(s.reason.contains(earlier.as_str()), "{}", s.reason);
        }
    }

    #[test]
    fn waiting_never_hides_a_skip_of_the_payment_itself() {
        let earlier = EarlierPayment {
            uid: "op-0".into(),
            decision: DecisionKind::Error,
        };
        // Not paid, already loaded, order missing or closed, bad total: those decisions win.
        let mut cases = vec![
            (
                Case::new(op(PaymentStatus::Rejected, "1")),
                DecisionKind::Rejected,
            ),
            (
                Case::new(op(PaymentStatus::Pending, "1")),
                DecisionKind::Pending,
            ),
            (
                Case::new(op(PaymentStatus::Refunded, "1")),
                DecisionKind::Refunded,
            ),
            (Case::new(op(PaymentStatus::Paid, "0")), DecisionKind::Error),
        ];
        let mut loaded = Case::new(op(PaymentStatus::Paid, "1"));
        loaded.loaded = Some("ACC-PAY-1");
        cases.push((loaded, DecisionKind::AlreadyLoaded));
        let mut missing = Case::new(op(PaymentStatus::Paid, "1"));
        missing.order = None;
        cases.push((missing, DecisionKind::OrderMissing));
        let mut closed = Case::new(op(PaymentStatus::Paid, "1"));
        closed.order.as_mut().unwrap().status = "Closed".into();
        cases.push((closed, DecisionKind::OrderNotPayable));
        for (mut c, want) in cases {
            c.earlier = Some(earlier.clone());
            assert_eq!(kind_of(&c), want);
        }
    }

    #[test]
    fn what_holds_later_payments_back() {
        use DecisionKind as K;
        let holds: Vec<K> = K::ALL
            .into_iter()
            .filter(|k| k.holds_back_later_payments())
            .collect();
        assert_eq!(
            holds,
            [K::OrderMissing, K::OrderNotPayable, K::Waiting, K::Error]
        );
        for k in holds {
            assert!(!k.is_final(), "{k} is re-examined");
        }
    }

    #[test]
    fn decision_names_round_trip() {
        for k in DecisionKind::ALL {
            assert_eq!(DecisionKind::parse(k.as_str()), Some(k));
        }
    }
}
