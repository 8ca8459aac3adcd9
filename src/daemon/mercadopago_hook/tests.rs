//! Each kind of notification against each check, signed by the simulator's own HMAC (written
//! apart from paysync's: a shared mistake would not pass both).

use super::*;
use axum::http::HeaderValue;

const SECRET: &str = "whsec-test";
const APP: &str = "6245733745812345";

fn account(auth: &str, secret: bool) -> AccountSettings {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sync.toml");
    let secret = if secret {
        format!("webhook_secret = \"{SECRET}\"")
    } else {
        String::new()
    };
    std::fs::write(
        &path,
        format!(
            "[erp]\nkind = \"erpnext\"\nurl = \"http://127.0.0.1:9\"\napi_key = \"k\"\napi_secret = \"s\"\n\
             [[accounts]]\nname = \"mp\"\nsource = \"mercadopago\"\ncompany = \"c\"\nmode_of_payment = \"m\"\n{auth}\n{secret}\n"
        ),
    )
    .unwrap();
    crate::config::load_with_env(&path, &Default::default())
        .unwrap()
        .accounts
        .remove(0)
}

fn oauth() -> AccountSettings {
    account(
        &format!("client_id = \"{APP}\"\nclient_secret = \"cs\"\nrefresh_token = \"TG-1\""),
        true,
    )
}

/// What a notification of `acc` is checked against, its seller not known yet.
/// (With the URL token: MercadoLibre's notifications are unsigned.)
fn expect(acc: &AccountSettings) -> Expect<'_> {
    Expect {
        account: acc,
        seller: None,
        url_token: true,
    }
}

fn headers(signature: &str, request_id: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-signature", HeaderValue::from_str(signature).unwrap());
    h.insert("x-request-id", HeaderValue::from_str(request_id).unwrap());
    h
}

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"id":1,"live_mode":true,"type":"payment","action":"payment.updated","data":{{"id":"{id}"}}}}"#)
        .into_bytes()
}

fn now() -> Timestamp {
    "2026-12-04T12:00:00Z".parse().unwrap()
}

/// A webhook as Mercado Pago signs it at `ts`.
fn signed(id: &str, ts: i64) -> (String, HeaderMap) {
    let sig = paysync_sim::mp_signature(SECRET, id, "req-1", ts);
    (format!("data.id={id}&type=payment"), headers(&sig, "req-1"))
}

#[test]
fn a_signed_webhook_is_a_trigger_for_its_payment() {
    let (q, h) = signed("999", now().as_second());
    let t = trigger(&expect(&oauth()), Some(&q), &h, &body("999"), now()).unwrap();
    assert_eq!(
        t,
        Trigger::Operation {
            uid: "999".into(),
            kind: "payment.updated".into(),
            reference: None
        }
    );
}

#[test]
fn a_webhook_that_does_not_verify_is_refused_as_unauthorized() {
    let acc = oauth();
    let ts = now().as_second();
    let refused =
        |q: &str, h: &HeaderMap, b: &[u8]| match trigger(&expect(&acc), Some(q), h, b, now()) {
            Err(Refusal::Unauthorized(m)) => m,
            other => panic!("{other:?}"),
        };
    // Signed for another payment than the query names.
    let (_, h) = signed("998", ts);
    assert!(refused("data.id=999&type=payment", &h, &body("999")).contains("x-signature"));
    // Another secret.
    let other = paysync_sim::mp_signature("another-secret", "999", "req-1", ts);
    refused(
        "data.id=999&type=payment",
        &headers(&other, "req-1"),
        &body("999"),
    );
    // Another request id than the one signed.
    let (q, mut h) = signed("999", ts);
    h.insert("x-request-id", HeaderValue::from_static("req-2"));
    refused(&q, &h, &body("999"));
    // No signature at all.
    refused("data.id=999&type=payment", &HeaderMap::new(), &body("999"));
    // Signed too long ago, and too far ahead.
    for skew in [-(SIGNATURE_TOLERANCE.as_secs() as i64) - 60, 3 * 3600] {
        let (q, h) = signed("999", ts + skew);
        assert!(refused(&q, &h, &body("999")).contains("x-signature"));
    }
    // Within the tolerance it verifies.
    let (q, h) = signed("999", ts - 600);
    assert!(trigger(&expect(&acc), Some(&q), &h, &body("999"), now()).is_ok());
}

#[test]
fn without_a_webhook_secret_no_mercadopago_webhook_is_taken() {
    let acc = account("access_token = \"APP_USR-1\"", false);
    let (q, h) = signed("999", now().as_second());
    match trigger(&expect(&acc), Some(&q), &h, &body("999"), now()) {
        Err(Refusal::Unauthorized(m)) => assert!(m.contains("no webhook_secret"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn mercadolibre_notifications_name_a_payment_or_an_order_of_this_application() {
    let acc = oauth();
    let ml = |topic: &str, resource: &str, app: u64| {
        paysync_sim::ml_notification(topic, resource, 123456789, app).into_bytes()
    };
    let app: u64 = APP.parse().unwrap();
    let t = trigger(
        &expect(&acc),
        None,
        &HeaderMap::new(),
        &ml("orders_v2", "/orders/2000000123", app),
        now(),
    );
    assert!(
        matches!(&t, Ok(Trigger::Operation { uid, .. }) if uid == "ml-order:2000000123"),
        "{t:?}"
    );
    let t = trigger(
        &expect(&acc),
        None,
        &HeaderMap::new(),
        &ml("payments", "/collections/55501", app),
        now(),
    );
    assert!(
        matches!(&t, Ok(Trigger::Operation { uid, .. }) if uid == "55501"),
        "{t:?}"
    );
    let other_app = ml("orders_v2", "/orders/2000000123", app + 1);
    assert!(matches!(
        trigger(&expect(&acc), None, &HeaderMap::new(), &other_app, now()),
        Err(Refusal::Unauthorized(_))
    ));
    // A seller's own token names no application: the notification is taken (re-read anyway).
    let own = account("access_token = \"APP_USR-1\"", false);
    assert!(trigger(&expect(&own), None, &HeaderMap::new(), &other_app, now()).is_ok());
    let t = trigger(
        &expect(&acc),
        None,
        &HeaderMap::new(),
        &ml("created_orders", "/orders/1", app),
        now(),
    );
    assert!(matches!(t, Ok(Trigger::Ignored { .. })), "{t:?}");
}

#[test]
fn an_unreadable_notification_is_a_bad_request() {
    for b in [&b"not json"[..], b"[]", b"{}"] {
        assert!(
            matches!(
                trigger(&expect(&oauth()), None, &HeaderMap::new(), b, now()),
                Err(Refusal::BadRequest(_))
            ),
            "{}",
            String::from_utf8_lossy(b)
        );
    }
}

#[test]
fn once_the_seller_is_known_notifications_for_another_are_refused() {
    let acc = oauth();
    let app: u64 = APP.parse().unwrap();
    let known = Expect {
        account: &acc,
        seller: Some("123456789".into()),
        url_token: true,
    };
    let ours = paysync_sim::ml_notification("orders_v2", "/orders/1", 123456789, app).into_bytes();
    let theirs =
        paysync_sim::ml_notification("orders_v2", "/orders/1", 987654321, app).into_bytes();
    assert!(trigger(&known, None, &HeaderMap::new(), &ours, now()).is_ok());
    assert!(matches!(
        trigger(&known, None, &HeaderMap::new(), &theirs, now()),
        Err(Refusal::Unauthorized(m)) if m.contains("another seller")
    ));
    // Not known yet: taken (the payment is re-read with the account's own token anyway).
    assert!(trigger(&expect(&acc), None, &HeaderMap::new(), &theirs, now()).is_ok());
    // A signed Mercado Pago webhook for another seller, too.
    let (q, h) = signed("999", now().as_second());
    let other = String::from_utf8(body("999"))
        .unwrap()
        .replace(r#""type""#, r#""user_id":987654321,"type""#);
    assert!(matches!(
        trigger(&known, Some(&q), &h, other.as_bytes(), now()),
        Err(Refusal::Unauthorized(_))
    ));
}

/// Unsigned notifications need the URL token; a signed Mercado Pago webhook does not.
#[test]
fn without_the_url_token_only_signed_webhooks_are_taken() {
    let acc = oauth();
    let bare = Expect {
        account: &acc,
        seller: None,
        url_token: false,
    };
    let app: u64 = APP.parse().unwrap();
    for (topic, resource) in [
        ("orders_v2", "/orders/1"),
        ("payments", "/collections/1"),
        ("created_orders", "/orders/1"),
    ] {
        let b = paysync_sim::ml_notification(topic, resource, 123456789, app).into_bytes();
        assert!(
            matches!(trigger(&bare, None, &HeaderMap::new(), &b, now()), Err(Refusal::Unauthorized(m)) if m.contains("webhook_token")),
            "{topic}"
        );
    }
    let (q, h) = signed("999", now().as_second());
    assert!(trigger(&bare, Some(&q), &h, &body("999"), now()).is_ok());
}
