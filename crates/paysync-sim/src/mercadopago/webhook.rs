//! The notifications Mercado Pago and MercadoLibre send, built for tests: the simulator is the
//! sender, paysync the receiver, so a test posts these to paysync's webhook listener.
//!
//! Mercado Pago's are signed (`x-signature: ts=<secs>,v1=<hex>`, HMAC-SHA256 of the manifest
//! `id:{data.id};request-id:{x-request-id};ts:{ts};`, a part whose value is absent left out,
//! `data.id` lower-cased when alphanumeric); MercadoLibre's are not (their `_id` is the dedupe key,
//! `attempts` > 1 a redelivery).

use std::sync::atomic::{AtomicU64, Ordering};

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::super::Simulator;
use super::StoredMp;
use super::hmac::{hex, hmac_sha256};
use super::json::{time, utc_time};

/// A Mercado Pago webhook as it would be posted to `<notification_url>?<query>`.
#[derive(Debug, Clone, PartialEq)]
pub struct MpWebhook {
    /// `data.id=<payment id>&type=payment`, to append to the notification URL after `?`.
    pub query: String,
    /// `x-signature`, `x-request-id`, `content-type`.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: String,
}

impl MpWebhook {
    /// The value of a header, by its lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The whole `x-signature` header value, `ts=<ts>,v1=<hex>`, for a notification about `data_id`
/// delivered with `request_id`, signed with `secret`. An empty `data_id` or `request_id` is an
/// absent part, left out of the manifest.
pub fn mp_signature(secret: &str, data_id: &str, request_id: &str, ts: i64) -> String {
    let data_id = if data_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        data_id.to_ascii_lowercase()
    } else {
        data_id.to_string()
    };
    let mut manifest = String::new();
    if !data_id.is_empty() {
        manifest.push_str(&format!("id:{data_id};"));
    }
    if !request_id.is_empty() {
        manifest.push_str(&format!("request-id:{request_id};"));
    }
    manifest.push_str(&format!("ts:{ts};"));
    let v1 = hex(&hmac_sha256(secret.as_bytes(), manifest.as_bytes()));
    format!("ts={ts},v1={v1}")
}

/// splitmix64: spreads a counter into random-looking bits (ids only; not the fault RNG, whose
/// draws must not move when a test builds a webhook).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D049BB133111EB);
    x ^ (x >> 31)
}

/// A fresh id per call in this process (the clock mixed in, so two simulators differ too).
fn fresh(seq: u64) -> (u64, u64) {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let clock = Timestamp::now().as_nanosecond() as u64;
    (mix(seq ^ clock), mix(n.wrapping_add(clock).rotate_left(17)))
}

/// A UUID v4-looking text.
fn uuid(a: u64, b: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

impl Simulator {
    /// The webhook Mercado Pago would send about `payment_id` (`action`: "payment.created" or
    /// "payment.updated"), signed with `secret`, with a fresh `x-request-id` and `ts` = now. Its
    /// `live_mode` is the stored payment's (true if there is none), `user_id` the seller.
    pub fn mp_webhook(&self, payment_id: u64, action: &str, secret: &str) -> MpWebhook {
        let (seq, seller, live) = self.with(|s| {
            s.mp.webhooks += 1;
            let live = s.mp.payments.iter().find_map(|p| match p {
                StoredMp::Typed(t) if t.id == payment_id => Some(t.live_mode),
                _ => None,
            });
            (s.mp.webhooks, s.opts.mp_seller_id, live.unwrap_or(true))
        });
        let (a, b) = fresh(seq);
        let request_id = uuid(a, b);
        let now = Timestamp::now();
        let data_id = payment_id.to_string();
        let body = json!({
            "id": 100_000_000_000u64 + (a % 1_000_000_000),
            "live_mode": live,
            "type": "payment",
            "date_created": time(now),
            "user_id": seller,
            "api_version": "v1",
            "action": action,
            "data": {"id": data_id},
        });
        MpWebhook {
            query: format!("data.id={data_id}&type=payment"),
            headers: vec![
                (
                    "x-signature".into(),
                    mp_signature(secret, &data_id, &request_id, now.as_second()),
                ),
                ("x-request-id".into(), request_id),
                ("content-type".into(), "application/json".into()),
            ],
            body: body.to_string(),
        }
    }
}

/// The body of a MercadoLibre notification (`topic`: "orders_v2", "payments", ...; `resource`:
/// e.g. "/orders/2000000123"), with a fresh `_id`, `attempts` 1, `sent` now and `received` a
/// little earlier (as the spec's example), in UTC.
pub fn ml_notification(topic: &str, resource: &str, user_id: u64, application_id: u64) -> String {
    let (a, b) = fresh(user_id);
    let now = Timestamp::now();
    json!({
        "_id": format!("{:08x}{:016x}", a >> 32, b),
        "resource": resource,
        "user_id": user_id,
        "topic": topic,
        "application_id": application_id,
        "attempts": 1,
        "sent": utc_time(now),
        "received": utc_time(now - SignedDuration::from_millis(23)),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The expected values were computed apart, with Python's `hmac` module:
    // hmac.new(b"sim-webhook-secret", manifest.encode(), hashlib.sha256).hexdigest()
    #[test]
    fn the_signature_signs_the_manifest() {
        assert_eq!(
            mp_signature(
                "sim-webhook-secret",
                "123456",
                "bb56a2f1-6aae-46ac-982e-9dcd3581d08e",
                1704908010
            ),
            "ts=1704908010,v1=7f16a1cd90488282af3252b97009a1f07ebbee2419b12372d54d41c0b3909779"
        );
        // An alphanumeric id is lower-cased.
        assert_eq!(
            mp_signature("sim-webhook-secret", "ABC123DEF", "r-1", 1704908010),
            "ts=1704908010,v1=02f331a48f4dcce759ff4dc55417a090384964ad75bfc6f872d2f2a7d2fcdf60"
        );
        // An absent id is left out of the manifest.
        assert_eq!(
            mp_signature("sim-webhook-secret", "", "r-1", 1704908010),
            "ts=1704908010,v1=3799c442a3f6136a4bb942524215a389b038fd46517933341f1f7a18ad964b98"
        );
    }

    #[test]
    fn ids_look_like_uuids_and_differ() {
        let (a, b) = fresh(1);
        let (c, d) = fresh(1);
        let (u, v) = (uuid(a, b), uuid(c, d));
        assert_ne!(u, v);
        let parts: Vec<usize> = u.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{u}");
    }

    #[tokio::test]
    async fn a_built_webhook_is_signed_over_its_own_query_and_request_id() {
        let sim = Simulator::start(crate::SimOptions::default())
            .await
            .unwrap();
        let mut p = crate::SimMpPayment::approved(
            555,
            rust_decimal::Decimal::ONE,
            "2026-11-05T10:00:00Z".parse().unwrap(),
        );
        p.live_mode = false;
        sim.add_mp_payment(p);
        let (a, b) = (
            sim.mp_webhook(555, "payment.updated", "s3cret"),
            sim.mp_webhook(555, "payment.updated", "s3cret"),
        );
        assert_eq!(a.query, "data.id=555&type=payment");
        let rid = a.header("x-request-id").unwrap();
        assert_ne!(rid, b.header("x-request-id").unwrap(), "a fresh request id");
        let sig = a.header("x-signature").unwrap();
        let ts: i64 = sig
            .strip_prefix("ts=")
            .and_then(|s| s.split(',').next())
            .and_then(|t| t.parse().ok())
            .unwrap();
        assert!((Timestamp::now().as_second() - ts).abs() < 5);
        assert_eq!(sig, mp_signature("s3cret", "555", rid, ts));
        assert_eq!(a.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(body["data"]["id"], "555");
        assert_eq!(body["action"], "payment.updated");
        assert_eq!(body["live_mode"], false);
        assert_eq!(body["user_id"], 123456789);

        let n: serde_json::Value = serde_json::from_str(&ml_notification(
            "orders_v2",
            "/orders/2000000123",
            123456789,
            3219083410743656,
        ))
        .unwrap();
        assert_eq!(n["resource"], "/orders/2000000123");
        assert_eq!(n["topic"], "orders_v2");
        assert_eq!(
            (n["attempts"].clone(), n["application_id"].clone()),
            (1.into(), 3219083410743656u64.into())
        );
        assert_eq!(n["_id"].as_str().unwrap().len(), 24);
        assert!(n["sent"].as_str().unwrap().ends_with('Z'));
        assert!(n["received"].as_str().unwrap() < n["sent"].as_str().unwrap());
    }
}
