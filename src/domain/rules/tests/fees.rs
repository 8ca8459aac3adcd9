//! The fees as deductions, case by case: the entry's amounts are checked against ERPNext's own
//! rule for Receive (recording 29f): `unallocated = max(0, paid + Σded − allocated)` and
//! `difference = allocated + unallocated − received − Σded` must be 0.

use super::*;
use crate::domain::{Deduction, Fee};

fn fee(kind: &str, amount: &str) -> Fee {
    Fee {
        kind: kind.into(),
        amount: d(amount),
    }
}

fn with_fees(total: &str, fees: &[(&str, &str)]) -> Case {
    let mut o = op(PaymentStatus::Paid, total);
    o.fees = fees.iter().map(|(k, a)| fee(k, a)).collect();
    let mut c = Case::new(o);
    c.policy.fees = Some(FeePolicy {
        account: "Comisiones - MESA".into(),
        cost_center: "Main - MESA".into(),
    });
    c
}

fn entry(c: &Case) -> PaymentEntry {
    match c.decide() {
        Decision::BookInitial(e) | Decision::BookAdditional(e) => e,
        other => panic!("not booked: {other:?}"),
    }
}

/// ERPNext's unallocated and difference amounts for `e` (one currency, 2-decimal rounding).
fn erpnext_amounts(e: &PaymentEntry) -> (Decimal, Decimal) {
    let ded: Decimal = e.deductions.iter().map(|d| d.amount).sum();
    let allocated = e
        .allocation
        .as_ref()
        .map(|a| a.allocated_amount)
        .unwrap_or_default();
    let unallocated = (e.paid_amount + ded - allocated).max(Decimal::ZERO);
    let difference = (allocated + unallocated - e.received_amount - ded).round_dp(2);
    (unallocated, difference)
}

fn amounts(e: &PaymentEntry) -> Vec<(Decimal, &str)> {
    e.deductions
        .iter()
        .map(|d| (d.amount, d.description.as_str()))
        .collect()
}

#[test]
fn initial_with_fees_allocates_the_gross_and_pays_the_net() {
    let c = with_fees("1000", &[("service", "50")]);
    let e = entry(&c);
    assert_eq!(c.decide().kind(), DecisionKind::BookedInitial);
    assert_eq!(e.paid_amount, d("950"));
    assert_eq!(e.received_amount, d("950"));
    assert_eq!(e.allocation.as_ref().unwrap().allocated_amount, d("1000"));
    assert_eq!(
        e.deductions,
        vec![Deduction {
            account: "Comisiones - MESA".into(),
            cost_center: "Main - MESA".into(),
            amount: d("50"),
            description: "service".into(),
        }]
    );
    assert_eq!(erpnext_amounts(&e), (d("0"), d("0")));
}

#[test]
fn allocation_with_fees_is_still_capped_by_the_outstanding() {
    let mut c = with_fees("1500.50", &[("service", "30.25")]);
    c.order.as_mut().unwrap().advance_paid = d("300");
    let e = entry(&c);
    assert_eq!(e.paid_amount, d("1470.25"));
    assert_eq!(e.allocation.as_ref().unwrap().allocated_amount, d("700"));
    // The customer is credited the gross: 700 against the order, 800.50 on account.
    assert_eq!(erpnext_amounts(&e), (d("800.50"), d("0")));
}

#[test]
fn additional_with_fees_is_unallocated_with_the_same_deductions() {
    let mut c = with_fees("400", &[("service", "12.40"), ("installment", "7.60")]);
    c.has_entry = true;
    assert_eq!(c.decide().kind(), DecisionKind::BookedAdditional);
    let e = entry(&c);
    assert!(e.allocation.is_none());
    assert_eq!(e.paid_amount, d("380"));
    assert_eq!(e.received_amount, d("380"));
    assert_eq!(
        amounts(&e),
        [(d("12.40"), "service"), (d("7.60"), "installment")]
    );
    // ERPNext's unallocated amount comes out as the gross total.
    assert_eq!(erpnext_amounts(&e), (d("400"), d("0")));
}

#[test]
fn fees_with_three_decimals_are_rounded_half_away_from_zero() {
    let c = with_fees("1000", &[("service", "4.875"), ("source", "1.114")]);
    let e = entry(&c);
    assert_eq!(amounts(&e), [(d("4.88"), "service"), (d("1.11"), "source")]);
    assert_eq!(e.paid_amount, d("994.01"));
    assert_eq!(erpnext_amounts(&e), (d("0"), d("0")));
}

#[test]
fn several_fees_of_one_kind_stay_apart_and_zero_ones_are_dropped() {
    let c = with_fees(
        "200",
        &[
            ("service", "3"),
            ("service", "2"),
            ("installment", "0"),
            ("source", "0.004"),
        ],
    );
    let e = entry(&c);
    assert_eq!(amounts(&e), [(d("3"), "service"), (d("2"), "service")]);
    assert_eq!(e.paid_amount, d("195"));
}

#[test]
fn only_zero_fees_book_the_gross_amount() {
    let e = entry(&with_fees("200", &[("service", "0.00")]));
    assert!(e.deductions.is_empty());
    assert_eq!(e.paid_amount, d("200"));
}

#[test]
fn fees_that_take_the_whole_total_are_not_booked() {
    for fees in [
        &[("service", "100")][..],
        &[("service", "60"), ("source", "50")][..],
        // 99.995 rounds to 100.00, the whole total.
        &[("service", "99.995")][..],
    ] {
        let c = with_fees("100", fees);
        let Decision::Skip(s) = c.decide() else {
            panic!("{fees:?} booked: {:?}", c.decide())
        };
        assert_eq!(s.kind, DecisionKind::Error, "{fees:?}");
        assert!(
            s.reason.contains("not less than the total 100"),
            "{}",
            s.reason
        );
    }
}

#[test]
fn a_negative_fee_is_not_booked() {
    let c = with_fees("100", &[("service", "5"), ("source", "-1.50")]);
    let Decision::Skip(s) = c.decide() else {
        panic!("{:?}", c.decide())
    };
    assert_eq!(s.kind, DecisionKind::Error);
    assert!(s.reason.contains("\"source\" of -1.50"), "{}", s.reason);
}

#[test]
fn fees_are_ignored_when_the_account_does_not_book_them() {
    let mut c = with_fees("1000", &[("service", "50"), ("source", "-3")]);
    c.policy.fees = None;
    let e = entry(&c);
    assert!(e.deductions.is_empty());
    assert_eq!(e.paid_amount, d("1000"));
    assert_eq!(e.received_amount, d("1000"));
    assert_eq!(e.allocation.unwrap().allocated_amount, d("1000"));
    // And the entry is exactly the one of the same operation without fees.
    let mut no_fees = c.op.clone();
    no_fees.fees.clear();
    assert_eq!(c.decide(), Case::new(no_fees).decide());
}

#[test]
fn an_account_booking_fees_books_an_operation_without_fees_as_before() {
    let c = with_fees("1000", &[]);
    let mut plain = Case::new(op(PaymentStatus::Paid, "1000"));
    plain.policy.fees = None;
    assert_eq!(c.decide(), plain.decide());
}
