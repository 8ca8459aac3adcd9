//! The sample as Mercado Pago payments, with the SAME expected outcomes, so one oracle judges both
//! sources: [`SimMpPayment::from_mobbex`] maps one operation, [`load_mercadopago`] a whole sample.
//!
//! Mobbex status codes (`shared/spec/mobbex-api.md` §4, buckets of `rules.md`) become Mercado Pago
//! statuses so that each status stands for one outcome only:
//!
//! | Mobbex | Mercado Pago status / status_detail | expected |
//! |---|---|---|
//! | 200, 210, 299, 300–303 (paid) | approved / accredited | booked |
//! | 0, 1, unknown codes (4, 777...) | pending / pending_waiting_payment | pending |
//! | 2 (cash coupon) | pending / pending_waiting_transfer | pending |
//! | 3 (authorized) | authorized / pending_capture | pending |
//! | 100, 201 (review, accepted) | in_process / pending_review_manual, pending_contingency | pending |
//! | 600 (cancellation in progress) | in_mediation / pending | pending |
//! | 400–403, 410–415, 500, 604 | rejected / cc_rejected_..., or cancelled / expired (401, 402) | rejected |
//! | 601, 602, 603 | refunded / refunded (all of it refunded) | refunded |
//! | 605 (partial refund) | refunded / partially_refunded (half refunded) | refunded |
//! | 610 | charged_back / reimbursed | refunded |
//!
//! So the oracle assumes a sync treats `cancelled` like `rejected` (an expired or abandoned
//! payment never paid) and `charged_back` like `refunded`. Mobbex has no chargeback code; 610,
//! undocumented and grouped with refunds by the plugins, stands in for one so the status appears.
//!
//! Test-mode operations (currency `TEST`) become `live_mode: false` ARS payments (ignored_test).
//! The reference becomes `external_reference`. Child operations (`CHD-...`) map to nothing:
//! Mercado Pago has no children, the parent is one payment of the whole total. A payment "booked
//! by hand" (already_loaded) gets a copy of its hand-booked entry with `reference_no` = the
//! payment id, Mode of Payment "Mercado Pago". Paid payments carry a collector fee (4.99%).

use std::collections::HashMap;

mod demo;
pub use demo::demo_mercadopago;

use jiff::SignedDuration;
use rust_decimal::Decimal;

use super::{Expected, ExpectedOutcome};
use crate::fixtures::{MP_MODE_OF_PAYMENT, MP_PAID_TO};
use crate::{DEFAULT_MP_SELLER_ID, SimMpFee, SimMpPayment, SimOperation, Simulator};

/// One Mercado Pago payment of a loaded sample and what a correct sync does with it.
#[derive(Debug, Clone, PartialEq)]
pub struct MpExpected {
    /// The payment id (what the entry's `reference_no` is).
    pub id: u64,
    /// The Mobbex operation it was made from.
    pub uid: String,
    pub outcome: ExpectedOutcome,
}

/// The status and status_detail a Mobbex code becomes (the table above).
fn status_of(code: u16) -> (&'static str, &'static str) {
    match code {
        200 | 210 | 299 | 300..=303 => ("approved", "accredited"),
        2 => ("pending", "pending_waiting_transfer"),
        3 => ("authorized", "pending_capture"),
        100 => ("in_process", "pending_review_manual"),
        201 => ("in_process", "pending_contingency"),
        600 => ("in_mediation", "pending"),
        400 => ("rejected", "cc_rejected_other_reason"),
        401 => ("cancelled", "expired"),
        402 => ("cancelled", "by_payer"),
        403 | 500 => ("rejected", "cc_rejected_card_error"),
        410 => ("rejected", "cc_rejected_insufficient_amount"),
        411 => ("rejected", "cc_rejected_call_for_authorize"),
        413 => ("rejected", "cc_rejected_bad_filled_card_number"),
        412 | 414 | 415 => ("rejected", "cc_rejected_other_reason"),
        604 => ("rejected", "cc_rejected_high_risk"),
        601..=603 => ("refunded", "refunded"),
        605 => ("refunded", "partially_refunded"),
        610 => ("charged_back", "reimbursed"),
        _ => ("pending", "pending_waiting_payment"),
    }
}

impl SimMpPayment {
    /// The Mercado Pago payment `op` stands for, with this id, collected by
    /// [`DEFAULT_MP_SELLER_ID`]; `None` for a child operation (see the module's table).
    pub fn from_mobbex(op: &SimOperation, id: u64) -> Option<SimMpPayment> {
        if op.parent_uid.is_some() || op.uid.starts_with("CHD-") {
            return None;
        }
        let (status, detail) = status_of(op.status);
        let refunded = match op.status {
            601..=603 => op.total,
            605 => (op.total / Decimal::TWO).round_dp(2),
            _ => Decimal::ZERO,
        };
        let settled = matches!(status, "approved" | "refunded" | "charged_back");
        let approved = settled.then(|| (op.created + SignedDuration::from_secs(2)).min(op.updated));
        let fee = (op.total * Decimal::new(499, 4)).round_dp(2);
        let fees = if settled && !fee.is_zero() {
            vec![SimMpFee {
                kind: "mercadopago_fee".into(),
                amount: fee,
                payer: "collector".into(),
            }]
        } else {
            Vec::new()
        };
        let test = op.currency.eq_ignore_ascii_case("TEST");
        Some(SimMpPayment {
            id,
            status: status.into(),
            status_detail: detail.into(),
            transaction_amount: op.total,
            transaction_amount_refunded: refunded,
            currency_id: if test {
                "ARS".into()
            } else {
                op.currency.clone()
            },
            external_reference: (!op.reference.is_empty()).then(|| op.reference.clone()),
            ml_order_id: None,
            live_mode: !test,
            collector_id: DEFAULT_MP_SELLER_ID,
            created: op.created,
            updated: op.updated,
            approved,
            fees,
            unlisted_charges: rust_decimal::Decimal::ZERO,
            description: op.description.clone(),
            refunds: Vec::new(),
        })
    }
}

/// Load the Mobbex operations of `expected` (a sample already populated in `sim`) into `sim`'s
/// Mercado Pago side as payments `first_id`, `first_id + 1`, ... in `expected`'s order, children
/// left out, collected by the simulator's seller; the hand-booked entries of already_loaded ones
/// are copied under the payment ids. Returns the payments' expected outcomes.
pub fn load_mercadopago(sim: &Simulator, expected: &[Expected], first_id: u64) -> Vec<MpExpected> {
    let ops: HashMap<String, SimOperation> = sim
        .operations()
        .into_iter()
        .map(|o| (o.uid.clone(), o))
        .collect();
    let seller = sim.options().mp_seller_id;
    let hand_booked = sim.payment_entries();
    let mut next = first_id;
    let mut out = Vec::new();
    for e in expected {
        let Some(mut p) = ops
            .get(&e.uid)
            .and_then(|op| SimMpPayment::from_mobbex(op, next))
        else {
            continue;
        };
        next += 1;
        p.collector_id = seller;
        if e.outcome == ExpectedOutcome::AlreadyLoaded
            && let Some(pe) = hand_booked
                .iter()
                .find(|pe| pe.reference_no.as_deref() == Some(e.uid.as_str()))
        {
            let mut copy = pe.clone();
            // Past every name given so far, as the sample names its hand-booked entries.
            copy.name = format!("ACC-PAY-2026-{:05}", sim.payment_entries().len() + 90_000);
            copy.reference_no = Some(p.id.to_string());
            copy.mode_of_payment = Some(MP_MODE_OF_PAYMENT.into());
            copy.paid_to = MP_PAID_TO.into();
            sim.insert_payment_entry_directly(copy);
        }
        out.push(MpExpected {
            id: p.id,
            uid: e.uid.clone(),
            outcome: e.outcome.clone(),
        });
        sim.add_mp_payment(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{SampleSpec, populate};
    use super::*;

    /// The outcome class each Mercado Pago status stands for (the module's table).
    fn class(status: &str) -> &'static str {
        match status {
            "approved" => "booked",
            "pending" | "in_process" | "authorized" | "in_mediation" => "pending",
            "rejected" | "cancelled" => "rejected",
            "refunded" | "charged_back" => "refunded",
            other => panic!("unexpected status {other}"),
        }
    }

    #[tokio::test]
    async fn a_loaded_sample_keeps_every_outcome_and_one_meaning_per_status() {
        let sim = Simulator::start(crate::SimOptions::default())
            .await
            .unwrap();
        let expected = populate(
            &sim,
            &SampleSpec {
                operations: 120,
                ..SampleSpec::default()
            },
        );
        let mp = load_mercadopago(&sim, &expected, 90_000_000_001);
        let children = expected
            .iter()
            .filter(|e| e.outcome == ExpectedOutcome::IgnoredChild)
            .count();
        assert!(children > 0);
        assert_eq!(mp.len(), expected.len() - children);
        assert!(
            mp.iter()
                .all(|m| m.outcome != ExpectedOutcome::IgnoredChild)
        );
        let payments: HashMap<u64, SimMpPayment> =
            sim.mp_payments().into_iter().map(|p| (p.id, p)).collect();
        let mut seen = std::collections::BTreeSet::new();
        for m in &mp {
            let p = &payments[&m.id];
            seen.insert(p.status.clone());
            let want = match &m.outcome {
                o if o.is_booked() => "booked",
                ExpectedOutcome::Pending => "pending",
                ExpectedOutcome::Rejected => "rejected",
                ExpectedOutcome::Refunded => "refunded",
                // Decided by the order or the ledger, on a paid payment.
                _ => "booked",
            };
            if m.outcome == ExpectedOutcome::IgnoredTest {
                assert!(!p.live_mode && p.currency_id == "ARS");
            } else {
                assert!(p.live_mode, "{p:?}");
            }
            assert_eq!(class(&p.status), want, "{m:?} {p:?}");
            assert_eq!(p.approved.is_some(), want == "booked" || want == "refunded");
            if m.outcome == ExpectedOutcome::AlreadyLoaded {
                let id = m.id.to_string();
                let entries = sim.payment_entries();
                let pe = entries
                    .iter()
                    .find(|e| e.reference_no.as_deref() == Some(id.as_str()))
                    .expect("a hand-booked entry under the payment id");
                assert_eq!(pe.paid_to, "Mercado Pago - MESA");
            }
        }
        assert!(seen.len() >= 5, "{seen:?}");
        let ids: Vec<u64> = mp.iter().map(|m| m.id).collect();
        assert_eq!(ids[0], 90_000_000_001);
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[test]
    fn codes_map_to_their_bucket() {
        let op = |status: u16, currency: &str| SimOperation {
            uid: "u1".into(),
            reference: "SAL-ORD-2026-00001".into(),
            status,
            total: Decimal::new(10_000, 2),
            currency: currency.into(),
            created: "2026-10-01T12:00:00Z".parse().unwrap(),
            updated: "2026-10-01T13:00:00Z".parse().unwrap(),
            description: "Compra".into(),
            payer_name: "Juan".into(),
            parent_uid: None,
            operation_type: "payment.v2".into(),
            entity_charges: Vec::new(),
        };
        let p = SimMpPayment::from_mobbex(&op(200, "ARS"), 7).unwrap();
        assert_eq!(
            (p.status.as_str(), p.status_detail.as_str()),
            ("approved", "accredited")
        );
        assert_eq!(p.external_reference.as_deref(), Some("SAL-ORD-2026-00001"));
        assert_eq!(p.fees[0].amount, Decimal::new(4_99, 2));
        assert_eq!(p.approved, Some("2026-10-01T12:00:02Z".parse().unwrap()));
        let p = SimMpPayment::from_mobbex(&op(605, "ARS"), 7).unwrap();
        assert_eq!(p.transaction_amount_refunded, Decimal::new(50_00, 2));
        let p = SimMpPayment::from_mobbex(&op(401, "ARS"), 7).unwrap();
        assert_eq!((p.status.as_str(), p.approved), ("cancelled", None));
        let p = SimMpPayment::from_mobbex(&op(2, "TEST"), 7).unwrap();
        assert_eq!((p.status.as_str(), p.live_mode), ("pending", false));
        assert_eq!(p.currency_id, "ARS");
        let mut child = op(200, "ARS");
        child.uid = "CHD-1".into();
        assert_eq!(SimMpPayment::from_mobbex(&child, 7), None);
    }
}
