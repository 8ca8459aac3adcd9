//! Reading what Mercado Pago and MercadoLibre post to paysync: pure functions, no I/O.
//!
//! Owns: the Mercado Pago signature check ([`verify_signature`]: `x-signature: ts=..,v1=..`, an
//! HMAC-SHA256 of the manifest `id:{data.id};request-id:{x-request-id};ts:{ts};`) and the
//! notification shapes ([`parse_notification`]): Mercado Pago webhooks (`type=payment`, the id
//! in `data.id`), the older IPN (`?topic=payment&id=N`), and MercadoLibre's unsigned pointers
//! (`{"topic": "orders_v2", "resource": "/orders/N", ...}`). Facts: `mercadolibre-api.md` §2.2,
//! §3.4; `docs/mercadopago-contract.md`, "Webhooks".
//!
//! Nothing in a notification is trusted for status or amount: it only says which payment (or
//! order) to read again from the API. Must not: decide what to do with an order (the caller
//! reads its payments), or check `user_id`/`application_id` against an account (the caller does).

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::id_digits;
use crate::source::WebhookError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no x-signature header")]
    MissingSignature,
    #[error("x-signature is malformed: {0}")]
    Malformed(&'static str),
    #[error("x-signature is not Mercado Pago's signature of this notification")]
    Mismatch,
    #[error("x-signature's ts is {skew_secs} s from now, past the {tolerance_secs} s tolerated")]
    Stale { skew_secs: i64, tolerance_secs: u64 },
}

/// Check a Mercado Pago webhook's `x-signature` against the application's `secret`. `data_id`
/// is the query string's `data.id` (the body's when the query has none); a part that is absent
/// is left out of the manifest, as Mercado Pago does. The signature is checked first (a forged
/// notification is a `Mismatch`), then its age (a genuine one replayed late is `Stale`).
pub fn verify_signature(
    secret: &[u8],
    x_signature: Option<&str>,
    x_request_id: Option<&str>,
    data_id: Option<&str>,
    now: jiff::Timestamp,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let header = x_signature
        .filter(|h| !h.trim().is_empty())
        .ok_or(SignatureError::MissingSignature)?;
    let (ts, v1) = parse_signature_header(header)?;
    let given = decode_hex(v1).ok_or(SignatureError::Malformed("v1 is not 64 hex digits"))?;
    let mut mac = hmac_of(secret);
    mac.update(manifest(data_id, x_request_id, ts).as_bytes());
    // `verify_slice` compares in constant time.
    mac.verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)?;

    let n: i64 = ts
        .parse()
        .map_err(|_| SignatureError::Malformed("ts is not a number"))?;
    // The doc calls it milliseconds, its example is seconds: a value past 10^12 is milliseconds.
    let at_ms = if n > 1_000_000_000_000 {
        n
    } else {
        n.saturating_mul(1000)
    };
    let skew_ms = now.as_millisecond().saturating_sub(at_ms);
    let tolerance_ms = i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX);
    if skew_ms.saturating_abs() > tolerance_ms {
        return Err(SignatureError::Stale {
            skew_secs: skew_ms / 1000,
            tolerance_secs: tolerance.as_secs(),
        });
    }
    Ok(())
}

/// The signed text: `id:{data.id};request-id:{x-request-id};ts:{ts};`, absent (or empty) parts
/// left out; an alphanumeric `data.id` is lowercased (Mercado Pago signs it so).
pub fn manifest(data_id: Option<&str>, request_id: Option<&str>, ts: &str) -> String {
    let mut m = String::new();
    if let Some(id) = data_id.filter(|i| !i.is_empty()) {
        let id = if id.chars().all(|c| c.is_ascii_alphanumeric()) {
            id.to_ascii_lowercase()
        } else {
            id.to_string()
        };
        m.push_str(&format!("id:{id};"));
    }
    if let Some(r) = request_id.filter(|r| !r.is_empty()) {
        m.push_str(&format!("request-id:{r};"));
    }
    if !ts.is_empty() {
        m.push_str(&format!("ts:{ts};"));
    }
    m
}

/// HMAC-SHA256 of `message` under `secret`, in lowercase hex (what `v1` carries).
pub fn sign(secret: &[u8], message: &[u8]) -> String {
    let mut mac = hmac_of(secret);
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hmac_of(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts any key length")
}

/// `ts=..,v1=..` in any order, spaces around parts tolerated, other parts (a future `v2`)
/// ignored; each of `ts` and `v1` exactly once.
fn parse_signature_header(h: &str) -> Result<(&str, &str), SignatureError> {
    let (mut ts, mut v1) = (None, None);
    for part in h.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or(SignatureError::Malformed("a part is not key=value"))?;
        let slot = match k.trim() {
            "ts" => &mut ts,
            "v1" => &mut v1,
            _ => continue,
        };
        if slot.replace(v.trim()).is_some() {
            return Err(SignatureError::Malformed("ts or v1 given twice"));
        }
    }
    let ts = ts
        .filter(|t| !t.is_empty())
        .ok_or(SignatureError::Malformed("no ts"))?;
    if !ts.bytes().all(|b| b.is_ascii_digit()) || ts.len() > 16 {
        return Err(SignatureError::Malformed("ts is not a number"));
    }
    let v1 = v1
        .filter(|v| !v.is_empty())
        .ok_or(SignatureError::Malformed("no v1"))?;
    Ok((ts, v1))
}

/// 32 bytes from 64 hex digits (either case), or `None`.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// What a notification points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// A Mercado Pago webhook (or IPN) about payment `id`.
    Payment {
        id: String,
        /// `payment.created` / `payment.updated`; `None` from an IPN.
        action: Option<String>,
        user_id: Option<u64>,
        live_mode: Option<bool>,
    },
    /// MercadoLibre topic `payments`: payment `id` (the resource's last segment).
    MlPayment {
        id: String,
        user_id: Option<u64>,
        application_id: Option<u64>,
        /// `_id`: the notification's own id (a redelivery has the same one).
        notification_id: Option<String>,
        attempts: Option<u32>,
    },
    /// MercadoLibre topic `orders_v2` (or legacy `orders`): order `order_id`; the caller reads
    /// its payments.
    MlOrder {
        order_id: String,
        user_id: Option<u64>,
        application_id: Option<u64>,
        notification_id: Option<String>,
        attempts: Option<u32>,
    },
    /// Understood and of no use (another type or topic): acknowledged, recorded, not acted on.
    Ignored { reason: String },
}

/// Read a notification from its query string and body. Mercado Pago webhooks say `type` (in
/// the query or the body); the IPN and MercadoLibre say `topic`. A body that is not JSON is
/// refused; an empty body is allowed when the query says it all (the IPN).
pub fn parse_notification(
    query: &[(String, String)],
    body: &[u8],
) -> Result<Notification, WebhookError> {
    let q = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body).map_err(|e| WebhookError::Unparseable(e.to_string()))?
    };
    if !body.is_object() {
        return Err(WebhookError::Unparseable(
            "body is not a JSON object".into(),
        ));
    }
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };

    if let Some(kind) = q("type").or_else(|| text("type")) {
        if kind != "payment" {
            return Ok(Notification::Ignored {
                reason: format!("Mercado Pago notification of type {}", clip(kind)),
            });
        }
        let body_id = body.get("data").and_then(|d| d.get("id")).and_then(id_text);
        let id = q("data.id").map(str::to_string).or(body_id);
        return Ok(Notification::Payment {
            id: payment_id(id)?,
            action: text("action").map(str::to_string),
            user_id: body.get("user_id").and_then(number),
            live_mode: body.get("live_mode").and_then(Value::as_bool),
        });
    }

    let Some(topic) = q("topic").or_else(|| text("topic")) else {
        return Err(WebhookError::Unparseable(
            "neither a type nor a topic: not a Mercado Pago or MercadoLibre notification".into(),
        ));
    };
    let resource = text("resource");
    let user_id = body.get("user_id").and_then(number);
    let application_id = body.get("application_id").and_then(number);
    let notification_id = text("_id").map(str::to_string);
    let attempts = body
        .get("attempts")
        .and_then(number)
        .and_then(|n| u32::try_from(n).ok());
    match topic {
        // The IPN: `?topic=payment&id=N` (its body, when it has one, points at the payment).
        "payment" => {
            let id = q("id")
                .or_else(|| q("data.id"))
                .map(str::to_string)
                .or_else(|| resource.and_then(last_segment).map(str::to_string));
            Ok(Notification::Payment {
                id: payment_id(id)?,
                action: None,
                user_id,
                live_mode: None,
            })
        }
        "payments" => Ok(Notification::MlPayment {
            id: payment_id(resource.and_then(last_segment).map(str::to_string))?,
            user_id,
            application_id,
            notification_id,
            attempts,
        }),
        "orders_v2" | "orders" => {
            let resource = resource.ok_or(WebhookError::NoOperationId)?;
            let order = resource
                .trim_end_matches('/')
                .strip_prefix("/orders/")
                .and_then(id_digits)
                .ok_or_else(|| {
                    WebhookError::Unparseable(format!(
                        "resource {:?} is not /orders/{{id}}",
                        clip(resource)
                    ))
                })?;
            Ok(Notification::MlOrder {
                order_id: order,
                user_id,
                application_id,
                notification_id,
                attempts,
            })
        }
        "created_orders" => Ok(Notification::Ignored {
            reason: "MercadoLibre topic created_orders: fires before payment, orders_v2 follows"
                .into(),
        }),
        "merchant_order" => Ok(Notification::Ignored {
            reason: "Mercado Pago IPN topic merchant_order: its payments notify on their own"
                .into(),
        }),
        other => Ok(Notification::Ignored {
            reason: format!("notification topic {}", clip(other)),
        }),
    }
}

/// A payment id: digits, or the notification is refused (absent: `NoOperationId`).
fn payment_id(id: Option<String>) -> Result<String, WebhookError> {
    let id = id
        .filter(|i| !i.trim().is_empty())
        .ok_or(WebhookError::NoOperationId)?;
    id_digits(id.trim()).ok_or_else(|| {
        WebhookError::Unparseable(format!("payment id {:?} is not a number", clip(&id)))
    })
}

/// The last path segment of a resource (`/collections/notifications/123`, a full URL too).
fn last_segment(resource: &str) -> Option<&str> {
    let path = resource.split(['?', '#']).next()?;
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
}

/// An id written as a string or a number.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A number, or a string of digits.
fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => id_digits(s).and_then(|d| d.parse().ok()),
        _ => None,
    }
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests;
