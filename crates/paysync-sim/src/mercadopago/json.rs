//! The JSON documents the Mercado Pago side serves: payments (search results, get) and
//! MercadoLibre orders.
//!
//! Amounts are JSON numbers written from the Decimal's exact text (`1500.10` → `1500.1`, `0.1`
//! stays `0.1`), never through f64: serde_json without `arbitrary_precision` would round-trip
//! them through f64, so [`num`] puts a marked string in the tree and [`render`] replaces it by the
//! bare number text. Times are in the site's offset (`-04:00`, as the spec's examples) with
//! milliseconds.

use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{SimMlOrder, SimMpPayment};

/// The mark of a number placeholder; serde_json escapes the control character, so the rendered
/// text holds `"\u0001num:<digits>"`.
const MARK: &str = "\u{1}num:";
const RENDERED_MARK: &str = "\"\\u0001num:";

/// A placeholder for `d` as a JSON number; only [`render`] turns it into one.
pub(crate) fn num(d: Decimal) -> Value {
    Value::String(format!("{MARK}{}", d.normalize()))
}

/// `v` as JSON text, with every [`num`] placeholder written as a bare number.
pub(crate) fn render(v: &Value) -> String {
    let text = v.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find(RENDERED_MARK) {
        out.push_str(&rest[..i]);
        let after = &rest[i + RENDERED_MARK.len()..];
        match after.find('"') {
            Some(end)
                if end > 0
                    && after[..end]
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') =>
            {
                out.push_str(&after[..end]);
                rest = &after[end + 1..];
            }
            // Not one of ours (a string that happens to start like the mark): left as it is.
            _ => {
                out.push_str(RENDERED_MARK);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `2026-11-05T10:01:50.000-04:00`.
pub(crate) fn time(t: Timestamp) -> String {
    t.to_zoned(TimeZone::fixed(Offset::constant(-4)))
        .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

/// `2019-11-05T22:13:22.377Z` (MercadoLibre notifications are in UTC).
pub(crate) fn utc_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The `date_approved` served: only approved, refunded or charged-back payments have one.
pub(crate) fn served_approved(p: &SimMpPayment) -> Option<Timestamp> {
    match p.status.as_str() {
        "approved" | "refunded" | "charged_back" => p.approved,
        _ => None,
    }
}

/// When the money is released to the seller: 14 days after the approval (a card's usual term).
pub(crate) fn money_release(p: &SimMpPayment) -> Option<Timestamp> {
    served_approved(p).map(|a| a + SignedDuration::from_hours(24 * 14))
}

fn opt_time(t: Option<Timestamp>) -> Value {
    t.map(|t| Value::String(time(t))).unwrap_or(Value::Null)
}

/// Fees the seller pays (deducted) and fees the buyer pays on top.
fn fee_sums(p: &SimMpPayment) -> (Decimal, Decimal) {
    p.fees
        .iter()
        .fold((Decimal::ZERO, Decimal::ZERO), |(c, b), f| {
            if f.payer == "payer" {
                (c, b + f.amount)
            } else {
                (c + f.amount, b)
            }
        })
}

/// One payment as `GET /v1/payments/{id}` and the search's `results[]` serve it.
pub(crate) fn payment(p: &SimMpPayment) -> Value {
    let (by_collector, by_payer) = fee_sums(p);
    let total_paid = p.transaction_amount + by_payer;
    let mut doc = json!({
        "id": p.id,
        "date_created": time(p.created),
        "date_approved": opt_time(served_approved(p)),
        "date_last_updated": time(p.updated),
        "money_release_date": opt_time(money_release(p)),
        "operation_type": "regular_payment",
        "payment_method_id": "visa",
        "payment_type_id": "credit_card",
        "status": p.status,
        "status_detail": p.status_detail,
        "currency_id": p.currency_id,
        "description": p.description,
        "live_mode": p.live_mode,
        "collector_id": p.collector_id,
        "payer": {"id": "987", "email": "buyer@example.com"},
        "external_reference": p.external_reference,
        "transaction_amount": num(p.transaction_amount),
        "transaction_amount_refunded": num(p.transaction_amount_refunded),
        "transaction_details": {
            "net_received_amount": num(p.transaction_amount - by_collector - p.unlisted_charges),
            "total_paid_amount": num(total_paid),
            "installment_amount": num(total_paid),
        },
        "fee_details": p.fees.iter().map(|f| json!({
            "type": f.kind, "amount": num(f.amount), "fee_payer": f.payer,
        })).collect::<Vec<_>>(),
        "installments": 1,
        "refunds": refunds(p),
        "captured": true,
        "metadata": {},
    });
    if let Some(order) = p.ml_order_id {
        // The real API's type for this id is uncertain (the contract accepts both): every other
        // payment, by id parity, serves it as a string.
        let id = if p.id % 2 == 1 {
            Value::String(order.to_string())
        } else {
            json!(order)
        };
        doc["order"] = json!({"id": id, "type": "mercadolibre"});
    }
    doc
}

/// The payment's refunds (the fields of the SDKs' `PaymentRefund`: mercadopago/sdk-php
/// `src/MercadoPago/Resources/PaymentRefund.php`, sdk-nodejs
/// `src/clients/paymentsRefunds/commonTypes.ts`); without stored ones, one approved refund of the
/// whole refunded amount when there is one.
fn refunds(p: &SimMpPayment) -> Value {
    if !p.refunds.is_empty() {
        return p
            .refunds
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "payment_id": p.id,
                    "amount": num(r.amount),
                    "adjustment_amount": num(Decimal::ZERO),
                    "status": "approved",
                    "date_created": time(r.created),
                    "unique_sequence_number": null,
                })
            })
            .collect();
    }
    if p.transaction_amount_refunded.is_zero() {
        return json!([]);
    }
    json!([{
        "id": p.id.wrapping_mul(10).wrapping_add(1),
        "payment_id": p.id,
        "amount": num(p.transaction_amount_refunded),
        "status": "approved",
        "date_created": time(p.updated),
    }])
}

/// `GET /orders/{id}`: the order and its payments as MercadoLibre lists them.
pub(crate) fn ml_order(o: &SimMlOrder, payments: &[SimMpPayment]) -> Value {
    let paid: Decimal = payments
        .iter()
        .filter(|p| p.status == "approved")
        .map(|p| p.transaction_amount - p.transaction_amount_refunded)
        .sum();
    json!({
        "id": o.id,
        "status": o.status,
        "status_detail": null,
        "date_created": time(o.created),
        "date_closed": time(o.updated),
        "date_last_updated": time(o.updated),
        "total_amount": num(o.total_amount),
        "paid_amount": num(paid),
        "currency_id": o.currency_id,
        "seller": {"id": o.seller_id},
        "buyer": {"id": o.buyer_id, "nickname": o.buyer_nickname},
        "tags": o.tags,
        "order_items": [],
        "payments": payments.iter().map(|p| {
            let (_, by_payer) = fee_sums(p);
            json!({
                "id": p.id,
                "order_id": o.id,
                "payer_id": o.buyer_id,
                "collector": {"id": p.collector_id},
                "currency_id": p.currency_id,
                "status": p.status,
                "status_detail": p.status_detail,
                "transaction_amount": num(p.transaction_amount),
                "transaction_amount_refunded": num(p.transaction_amount_refunded),
                "total_paid_amount": num(p.transaction_amount + by_payer),
                "date_approved": opt_time(served_approved(p)),
                "date_created": time(p.created),
                "date_last_modified": time(p.updated),
                "operation_type": "regular_payment",
                "payment_method_id": "visa",
                "payment_type": "credit_card",
                "installments": 1,
                "reason": p.description,
            })
        }).collect::<Vec<_>>(),
    })
}
