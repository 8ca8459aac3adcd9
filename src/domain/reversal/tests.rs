//! The reversal rules, case by case.

use std::str::FromStr;

use super::*;
use crate::domain::PaymentStatus;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn refunded(refunds: &[(&str, Option<&str>)]) -> Operation {
    Operation {
        uid: "op-1".into(),
        reference: "SAL-ORD-2026-00001".into(),
        source_status: "refunded".into(),
        status: PaymentStatus::Refunded,
        total: d("300"),
        currency: "ARS".into(),
        created: "2026-10-01T12:00:00Z".parse().unwrap(),
        updated: None,
        is_child: false,
        is_test: false,
        marketplace_order: None,
        fees: Vec::new(),
        refunds: refunds
            .iter()
            .map(|(k, a)| Refund {
                key: k.to_string(),
                amount: a.map(d),
            })
            .collect(),
    }
}

const BOOKED: BookedByUs<'static> = BookedByUs {
    entry: "ACC-PAY-2026-00001",
    amount: Decimal::from_parts(300, 0, 0, false, 0),
};

#[test]
fn a_full_refund_of_what_paysync_booked_is_reversed_once() {
    let op = refunded(&[("1", Some("300"))]);
    let plan = plan_reversals(&op, Some(&BOOKED), &[]);
    assert_eq!(
        plan.create,
        vec![PlannedReversal {
            key: "1".into(),
            amount: d("300"),
            reference_no: "op-1:refund:1".into(),
        }]
    );
    assert!(plan.warnings.is_empty());
    let again = plan_reversals(
        &op,
        Some(&BOOKED),
        &[Reversed {
            key: "1",
            amount: d("300"),
        }],
    );
    assert_eq!(again, ReversalPlan::default(), "never twice");
}

#[test]
fn nothing_is_reversed_that_paysync_did_not_book() {
    let op = refunded(&[("1", Some("300"))]);
    assert_eq!(plan_reversals(&op, None, &[]), ReversalPlan::default());
}

#[test]
fn partial_refunds_are_reversed_each_and_only_the_new_ones() {
    let op = refunded(&[("9001", Some("100")), ("9002", Some("50.25"))]);
    let done = [Reversed {
        key: "9001",
        amount: d("100"),
    }];
    let plan = plan_reversals(&op, Some(&BOOKED), &done);
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.create[0].key, "9002");
    assert_eq!(plan.create[0].amount, d("50.25"));
    assert_eq!(plan.create[0].reference_no, "op-1:refund:9002");
}

#[test]
fn a_refund_of_unstated_amount_is_a_warning_naming_the_entry_and_no_guess() {
    let op = refunded(&[("1", None)]);
    let plan = plan_reversals(&op, Some(&BOOKED), &[]);
    assert!(plan.create.is_empty());
    assert_eq!(plan.warnings.len(), 1);
    assert!(
        plan.warnings[0].contains("ACC-PAY-2026-00001"),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn never_more_is_reversed_than_was_booked() {
    // The gateway's refunds add up past the booked amount (or their keys changed form between
    // reads: a `1` reversed from the total, then the rows with their own ids).
    let op = refunded(&[("9001", Some("200")), ("9002", Some("200"))]);
    let plan = plan_reversals(&op, Some(&BOOKED), &[]);
    assert_eq!(plan.create.len(), 1, "{plan:?}");
    assert_eq!(plan.warnings.len(), 1);
    let done = [Reversed {
        key: "1",
        amount: d("300"),
    }];
    let plan = plan_reversals(&op, Some(&BOOKED), &done);
    assert!(plan.create.is_empty(), "{plan:?}");
    assert_eq!(plan.warnings.len(), 2);
}

#[test]
fn zero_refunds_are_nothing_to_reverse() {
    let op = refunded(&[("1", Some("0"))]);
    assert_eq!(
        plan_reversals(&op, Some(&BOOKED), &[]),
        ReversalPlan::default()
    );
}
