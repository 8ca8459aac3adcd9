//! The audit's verdicts, one case each.

use std::str::FromStr;

use super::*;
use crate::domain::Refund;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn op(uid: &str, status: PaymentStatus, total: &str) -> Operation {
    Operation {
        uid: uid.into(),
        reference: "SAL-ORD-2026-00001".into(),
        source_status: format!("{status:?}"),
        status,
        total: d(total),
        currency: "ARS".into(),
        created: "2026-10-05T15:00:00Z".parse().unwrap(),
        updated: None,
        is_child: false,
        is_test: false,
        marketplace_order: None,
        fees: Vec::new(),
        refunds: Vec::new(),
    }
}

fn entry(name: &str, reference: &str, kind: &str, docstatus: i32, amount: &str) -> AuditEntry {
    AuditEntry {
        name: name.into(),
        docstatus,
        payment_type: kind.into(),
        party: "Cliente Demo".into(),
        paid_amount: d(amount),
        reference_no: Some(reference.into()),
        posting_date: "2026-10-06".parse().unwrap(),
        in_period: true,
    }
}

struct Case {
    ops: Vec<Operation>,
    entries: Vec<AuditEntry>,
    booked_by_us: HashMap<String, String>,
    customer_of: HashMap<String, String>,
}

impl Case {
    fn new(ops: Vec<Operation>, entries: Vec<AuditEntry>) -> Case {
        let customer_of = ops
            .iter()
            .map(|o| (o.uid.clone(), "Cliente Demo".to_string()))
            .collect();
        Case {
            ops,
            entries,
            booked_by_us: HashMap::new(),
            customer_of,
        }
    }

    fn run(&self) -> Vec<Finding> {
        let known: HashSet<String> = self.ops.iter().map(|o| o.uid.clone()).collect();
        audit(&AuditInput {
            ops: &self.ops,
            known_uids: &known,
            customer_of: &self.customer_of,
            booked_by_us: &self.booked_by_us,
            entries: &self.entries,
            fees: None,
            include_test: false,
            tz: &TimeZone::get("America/Argentina/Buenos_Aires").unwrap(),
        })
    }

    fn verdicts(&self) -> Vec<AuditVerdict> {
        self.run().iter().map(|f| f.verdict).collect()
    }
}

use AuditVerdict as V;
use PaymentStatus as S;

#[test]
fn a_booked_payment_that_matches_is_ok() {
    let c = Case::new(
        vec![op("p1", S::Paid, "300")],
        vec![entry("E1", "p1", "Receive", 1, "300")],
    );
    let f = c.run();
    assert_eq!(f[0].verdict, V::Ok);
    assert_eq!(f[0].entry.as_deref(), Some("E1"));
    assert_eq!(
        f[0].day,
        "2026-10-05".parse().unwrap(),
        "its day in the account's zone"
    );
}

#[test]
fn a_paid_payment_without_a_live_entry_is_missing_and_a_draft_does_not_count() {
    let c = Case::new(
        vec![op("p1", S::Paid, "300")],
        vec![entry("E1", "p1", "Receive", 0, "300")],
    );
    assert_eq!(c.verdicts(), vec![V::Missing]);
}

#[test]
fn two_live_entries_are_a_duplicate_whoever_made_them() {
    let c = Case::new(
        vec![op("p1", S::Paid, "300")],
        vec![
            entry("E1", "p1", "Receive", 1, "300"),
            entry("E2", "p1", "Receive", 1, "300"),
        ],
    );
    let f = c.run();
    assert_eq!(f[0].verdict, V::Duplicate);
    assert_eq!(f[0].entry.as_deref(), Some("E1, E2"));
}

#[test]
fn an_edited_amount_and_another_customer_are_mismatches() {
    let c = Case::new(
        vec![op("p1", S::Paid, "300"), op("p2", S::Paid, "200")],
        vec![
            entry("E1", "p1", "Receive", 1, "299.99"),
            AuditEntry {
                party: "Otro Cliente".into(),
                ..entry("E2", "p2", "Receive", 1, "200")
            },
        ],
    );
    let f = c.run();
    assert_eq!(f[0].verdict, V::AmountMismatch);
    assert_eq!(
        (f[0].source_amount, f[0].erp_amount),
        (Some(d("300")), Some(d("299.99")))
    );
    assert_eq!(f[1].verdict, V::PartyMismatch);
}

#[test]
fn an_entry_paysync_booked_and_someone_cancelled_is_cancelled_in_erp() {
    let mut c = Case::new(
        vec![op("p1", S::Paid, "300"), op("p2", S::Paid, "300")],
        vec![
            entry("E1", "p1", "Receive", 2, "300"),
            entry("E2", "p2", "Receive", 2, "300"),
        ],
    );
    c.booked_by_us.insert("p1".into(), "E1".into());
    // p2's cancelled entry is not paysync's: simply missing.
    assert_eq!(c.verdicts(), vec![V::CancelledInErp, V::Missing]);
}

#[test]
fn a_booked_refund_without_its_reversal_is_not_reversed() {
    let mut full = op("p1", S::Refunded, "300");
    full.refunds = vec![Refund {
        key: "1".into(),
        amount: Some(d("300")),
    }];
    let mut partial = op("p2", S::Paid, "300");
    partial.refunds = vec![Refund {
        key: "9".into(),
        amount: Some(d("100")),
    }];
    let mut reversed = op("p3", S::Refunded, "300");
    reversed.refunds = full.refunds.clone();
    let c = Case::new(
        vec![full, partial, reversed, op("p4", S::Refunded, "50")],
        vec![
            entry("E1", "p1", "Receive", 1, "300"),
            entry("E2", "p2", "Receive", 1, "300"),
            entry("R2", "p2:refund:9", "Pay", 2, "100"),
            entry("E3", "p3", "Receive", 1, "300"),
            entry("R3", "p3:refund:1", "Pay", 1, "300"),
        ],
    );
    let f = c.run();
    assert_eq!(
        f.iter().map(|f| f.verdict).collect::<Vec<_>>(),
        vec![V::NotReversed, V::NotReversed, V::Ok, V::Ok],
        "a cancelled reversal is none; a refund never booked is fine"
    );
    assert!(f[2].detail.contains("reversed by R3"), "{}", f[2].detail);
}

#[test]
fn entries_of_the_period_naming_no_operation_are_unknown() {
    let mut late = entry("E9", "p-from-september", "Receive", 1, "10");
    late.in_period = true;
    let c = Case {
        ops: vec![op("p1", S::Paid, "300")],
        entries: vec![
            entry("E1", "p1", "Receive", 1, "300"),
            entry("R1", "p1:refund:1", "Pay", 1, "300"),
            entry("X1", "typed-by-hand", "Receive", 1, "55"),
            AuditEntry {
                reference_no: None,
                ..entry("X2", "", "Receive", 1, "5")
            },
            entry("X3", "gone", "Receive", 2, "5"),
            late,
        ],
        booked_by_us: HashMap::new(),
        customer_of: HashMap::new(),
    };
    let known: HashSet<String> = ["p1".to_string(), "p-from-september".to_string()].into();
    let f = audit(&AuditInput {
        ops: &c.ops,
        known_uids: &known,
        customer_of: &c.customer_of,
        booked_by_us: &c.booked_by_us,
        entries: &c.entries,
        fees: None,
        include_test: false,
        tz: &TimeZone::UTC,
    });
    let unknown: Vec<&str> = f
        .iter()
        .filter(|f| f.verdict == V::UnknownEntry)
        .map(|f| f.entry.as_deref().unwrap())
        .collect();
    assert_eq!(
        unknown,
        ["X1", "X2"],
        "cancelled ones and known operations' are not"
    );
}

#[test]
fn pending_operations_are_pending_in_source_and_rejected_ones_ok_unless_booked() {
    let c = Case::new(
        vec![
            op("p1", S::Pending, "300"),
            op("p2", S::Rejected, "300"),
            op("p3", S::Rejected, "300"),
        ],
        vec![entry("E3", "p3", "Receive", 1, "300")],
    );
    assert_eq!(
        c.verdicts(),
        vec![V::PendingInSource, V::Ok, V::AmountMismatch]
    );
    assert!(V::PendingInSource.is_clean() && V::Ok.is_clean());
    assert!(V::ALL.iter().filter(|v| v.is_clean()).count() == 2);
}
