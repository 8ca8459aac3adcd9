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
        marketplace_order: None,
        refunds: Vec::new(),
        fees: Vec::new(),
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
        reverse_refunds: false,
        order_field: "name".into(),
        fees: None,
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
    ambiguous: Option<Vec<String>>,
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
            ambiguous: None,
        }
    }
    fn decide(&self) -> Decision {
        decide(&DecisionInput {
            op: &self.op,
            policy: &self.policy,
            order_name: self.order_name,
            order: self.order.as_ref(),
            order_ambiguous: self.ambiguous.as_deref(),
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

// ---- orders found by another field (order_field) -------------------------------------------

#[test]
fn by_another_field_the_allocation_names_the_order_found_not_the_key() {
    let mut c = Case::new(op(PaymentStatus::Paid, "1000"));
    c.policy.order_field = "po_no".into();
    c.order_name = Some("2000000123");
    let Decision::BookInitial(e) = c.decide() else {
        panic!("{:?}", c.decide())
    };
    assert_eq!(e.allocation.unwrap().sales_order, "SAL-ORD-2026-00001");
}

#[test]
fn by_another_field_reasons_say_which_field_and_value() {
    let mut c = Case::new(op(PaymentStatus::Paid, "1000"));
    c.policy.order_field = "po_no".into();
    c.order_name = Some("2000000123");
    c.order = None;
    assert_skip(
        &c,
        DecisionKind::OrderMissing,
        "no Sales Order with po_no \"2000000123\"",
    );
    c.order = Some(order());
    c.order.as_mut().unwrap().docstatus = 2;
    assert_skip(
        &c,
        DecisionKind::OrderNotPayable,
        "Sales Order SAL-ORD-2026-00001 (po_no 2000000123) is cancelled",
    );
    c.order_name = None;
    assert_skip(
        &c,
        DecisionKind::OrderMissing,
        "names no order to look up in po_no",
    );
}

#[test]
fn a_key_two_live_orders_hold_is_not_booked() {
    let mut c = Case::new(op(PaymentStatus::Paid, "1000"));
    c.policy.order_field = "po_no".into();
    c.order_name = Some("2000000123");
    c.order = None;
    c.ambiguous = Some(vec![
        "SAL-ORD-2026-00001".into(),
        "SAL-ORD-2026-00007".into(),
    ]);
    assert_skip(
        &c,
        DecisionKind::OrderNotPayable,
        "2 Sales Orders hold po_no \"2000000123\" (SAL-ORD-2026-00001, SAL-ORD-2026-00007)",
    );
}

#[test]
fn pick_order_prefers_the_live_holder_of_a_key() {
    let named = |n: &str, docstatus: i32| SalesOrder {
        name: n.into(),
        docstatus,
        ..order()
    };
    assert_eq!(pick_order(vec![]), Ok(None));
    let amended = pick_order(vec![named("SO-1-1", 1), named("SO-1", 2)]).unwrap();
    assert_eq!(
        amended.unwrap().name,
        "SO-1-1",
        "the amendment, not the cancelled original"
    );
    let only_cancelled = pick_order(vec![named("SO-1-1", 2), named("SO-1", 2)]).unwrap();
    assert_eq!(only_cancelled.unwrap().name, "SO-1-1");
    assert_eq!(
        pick_order(vec![named("SO-2", 1), named("SO-1", 0), named("SO-3", 2)]),
        Err(vec!["SO-1".to_string(), "SO-2".to_string()])
    );
}

/// `c` is skipped as `kind` with a reason containing `words`.
fn assert_skip(c: &Case, kind: DecisionKind, words: &str) {
    let Decision::Skip(s) = c.decide() else {
        panic!("{:?}", c.decide())
    };
    assert_eq!(s.kind, kind, "{}", s.reason);
    assert!(s.reason.contains(words), "{}", s.reason);
}
mod fees;
