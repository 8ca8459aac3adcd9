use super::*;
use crate::domain::Allocation;
use std::str::FromStr;

#[test]
fn body_matches_the_recorded_shape() {
    let e = PaymentEntry {
        company: "Test Co AR".into(),
        party: "Cliente Demo".into(),
        paid_amount: Decimal::from_str("600.00").unwrap(),
        received_amount: Decimal::from_str("600.00").unwrap(),
        mode_of_payment: "Mobbex".into(),
        paid_to: "Bank Account - TCA".into(),
        paid_from: None,
        reference_no: "mbx-op-001".into(),
        reference_date: jiff::civil::date(2026, 11, 22),
        posting_date: jiff::civil::date(2026, 11, 22),
        allocation: Some(Allocation {
            sales_order: "SAL-ORD-2026-00001".into(),
            allocated_amount: Decimal::from_str("600").unwrap(),
        }),
        guard_value: None,
        naming_series: None,
        deductions: Vec::new(),
    };
    let v: serde_json::Value = serde_json::from_str(&entry_body(&e)).unwrap();
    // The fields of recording 03d, the smallest body that submitted.
    for k in [
        "docstatus",
        "payment_type",
        "party_type",
        "party",
        "company",
        "mode_of_payment",
        "paid_amount",
        "received_amount",
        "paid_to",
        "reference_no",
        "reference_date",
        "references",
    ] {
        assert!(v.get(k).is_some(), "{k} missing");
    }
    assert!(
        v["paid_amount"].is_number(),
        "amounts must be numbers (24a)"
    );
    assert_eq!(v["docstatus"], 1);
    assert_eq!(v["references"][0]["reference_doctype"], "Sales Order");
    assert!(v.get("paid_from").is_none());
}

#[test]
fn amounts_are_exact_numbers() {
    for (d, want) in [
        ("2871.74", "2871.74"),
        ("0.30", "0.3"),
        ("1000000000.01", "1000000000.01"),
        ("10", "10"),
        ("0.125", "0.13"),
    ] {
        assert_eq!(json_amount(Decimal::from_str(d).unwrap()).get(), want);
    }
}

#[test]
fn deductions_are_sent_only_when_there_are_some() {
    let mut e = PaymentEntry {
        company: "Test Co AR".into(),
        party: "Cliente Demo".into(),
        paid_amount: Decimal::from_str("950.00").unwrap(),
        received_amount: Decimal::from_str("950.00").unwrap(),
        mode_of_payment: "Mobbex".into(),
        paid_to: "Bank Account - TCA".into(),
        paid_from: None,
        reference_no: "mbx-rx27-fee-02".into(),
        reference_date: jiff::civil::date(2026, 12, 1),
        posting_date: jiff::civil::date(2026, 12, 1),
        allocation: Some(Allocation {
            sales_order: "SAL-ORD-2026-03484".into(),
            allocated_amount: Decimal::from_str("1000").unwrap(),
        }),
        guard_value: None,
        naming_series: None,
        deductions: Vec::new(),
    };
    let v: serde_json::Value = serde_json::from_str(&entry_body(&e)).unwrap();
    assert!(v.get("deductions").is_none(), "no fees, no key: {v}");

    e.deductions = vec![crate::domain::Deduction {
        account: "Mobbex Fees - TCA".into(),
        cost_center: "Main - TCA".into(),
        amount: Decimal::from_str("50.00").unwrap(),
        description: "service".into(),
    }];
    let v: serde_json::Value = serde_json::from_str(&entry_body(&e)).unwrap();
    // Recording 29f's request, plus the row's description.
    assert_eq!(
        v["deductions"],
        serde_json::json!([{"account": "Mobbex Fees - TCA", "cost_center": "Main - TCA",
            "amount": 50, "description": "service"}])
    );
    assert!(v["deductions"][0]["amount"].is_number());
    assert_eq!(v["paid_amount"], serde_json::json!(950));
    assert_eq!(v["received_amount"], serde_json::json!(950));
    assert_eq!(
        v["references"][0]["allocated_amount"],
        serde_json::json!(1000)
    );
}
