//! Refunds after payment (`Simulator::refund_mp_payment`), seen through get and search.

use rust_decimal::Decimal;
use serde_json::Value;

use super::{Mp, at, start};
use crate::{SimMpPayment, SimOptions};

async fn get(mp: &Mp, id: u64) -> Value {
    let r = mp
        .get(&format!("/v1/payments/{id}"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.expect("JSON")
}

async fn search_ids(mp: &Mp, query: &[(&str, &str)]) -> Vec<u64> {
    let r = mp
        .get("/v1/payments/search")
        .query(query)
        .send()
        .await
        .expect("an answer");
    let body: Value = r.json().await.expect("JSON");
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_partial_then_a_full_refund_update_the_payment_consistently() {
    let mp = start(SimOptions::default()).await;
    let paid = at("2026-11-05T10:00:00Z");
    mp.add_mp_payment(SimMpPayment::approved(1, Decimal::from(100), paid));
    let mut pending = SimMpPayment::approved(2, Decimal::from(50), paid);
    pending.status = "pending".into();
    pending.approved = None;
    mp.add_mp_payment(pending);

    // Partial: stays approved, 30 refunded, one refund, last updated at the refund.
    let first = mp
        .refund_mp_payment(1, Some(Decimal::from(30)), at("2026-11-05T11:00:00Z"))
        .expect("refunded");
    assert_eq!(first.amount, Decimal::from(30));
    let v = get(&mp, 1).await;
    assert_eq!(v["status"], "approved", "{v}");
    assert_eq!(v["status_detail"], "partially_refunded");
    assert_eq!(v["transaction_amount_refunded"], 30);
    assert_eq!(v["date_last_updated"], "2026-11-05T07:00:00.000-04:00");
    assert_eq!(v["date_approved"], "2026-11-05T06:00:00.000-04:00");
    let refunds = v["refunds"].as_array().expect("refunds");
    assert_eq!(refunds.len(), 1, "{v}");
    assert_eq!(refunds[0]["id"], first.id);
    assert_eq!(refunds[0]["payment_id"], 1);
    assert_eq!(refunds[0]["amount"], 30);
    assert_eq!(refunds[0]["date_created"], "2026-11-05T07:00:00.000-04:00");
    // The refund moved it into the updated-window after the payment.
    let updated_after = [
        ("range", "date_last_updated"),
        ("begin_date", "2026-11-05T10:30:00.000Z"),
        ("end_date", "2026-11-05T23:00:00.000Z"),
    ];
    assert_eq!(search_ids(&mp, &updated_after).await, vec![1]);

    // More than is left: refused, nothing changed.
    assert!(
        mp.refund_mp_payment(1, Some(Decimal::from(71)), at("2026-11-05T11:30:00Z"))
            .is_none()
    );
    assert_eq!(get(&mp, 1).await["transaction_amount_refunded"], 30);

    // The rest: refunded in full.
    let second = mp
        .refund_mp_payment(1, None, at("2026-11-05T12:00:00Z"))
        .expect("refunded");
    assert_eq!(second.amount, Decimal::from(70));
    assert_ne!(second.id, first.id);
    let v = get(&mp, 1).await;
    assert_eq!(v["status"], "refunded", "{v}");
    assert_eq!(v["status_detail"], "refunded");
    assert_eq!(v["transaction_amount_refunded"], 100);
    assert_eq!(v["refunds"].as_array().unwrap().len(), 2);
    assert_eq!(v["refunds"][1]["amount"], 70);
    assert_eq!(search_ids(&mp, &[("status", "refunded")]).await, vec![1]);
    let stored = &mp.mp_payments()[0];
    assert_eq!(stored.transaction_amount_refunded, Decimal::from(100));
    assert_eq!(stored.updated, at("2026-11-05T12:00:00Z"));

    // Nothing left to refund, a payment never approved, an unknown one.
    assert!(
        mp.refund_mp_payment(1, None, at("2026-11-05T13:00:00Z"))
            .is_none()
    );
    assert!(
        mp.refund_mp_payment(2, None, at("2026-11-05T13:00:00Z"))
            .is_none()
    );
    assert!(
        mp.refund_mp_payment(9, None, at("2026-11-05T13:00:00Z"))
            .is_none()
    );
    assert_eq!(get(&mp, 2).await["refunds"], serde_json::json!([]));
}
