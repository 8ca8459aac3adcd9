use super::*;
use jiff::Timestamp;

const SECRET: &[u8] = b"your-secret";
const REQ: &str = "bb56a2f1-6aae-46ac-982e-9dcd3581d08e";
/// HMAC-SHA256("your-secret", "id:123456;request-id:bb56a2f1-...;ts:1704908010;"), computed
/// outside this code (Python's `hmac`).
const V1: &str = "897e4529674d28e1327c0753aebd6f38d6792b0727d93ffe3fcfcc2181ff03ca";
const TS: i64 = 1704908010;
const MINUTE: Duration = Duration::from_secs(60);

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn verify(
    sig: Option<&str>,
    req: Option<&str>,
    id: Option<&str>,
    now: Timestamp,
) -> Result<(), SignatureError> {
    verify_signature(SECRET, sig, req, id, now, MINUTE)
}

/// RFC 4231 test cases 1 and 2 for HMAC-SHA256.
#[test]
fn hmac_sha256_matches_rfc_4231() {
    assert_eq!(
        sign(&[0x0b; 20], b"Hi There"),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    assert_eq!(
        sign(b"Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn the_manifest_is_written_as_mercado_pago_does() {
    assert_eq!(
        manifest(Some("123456"), Some(REQ), "1704908010"),
        format!("id:123456;request-id:{REQ};ts:1704908010;")
    );
    assert_eq!(
        manifest(Some("ABC123def"), Some("r"), "1"),
        "id:abc123def;request-id:r;ts:1;"
    );
    // Not alphanumeric: as given.
    assert_eq!(manifest(Some("AB-1"), None, "1"), "id:AB-1;ts:1;");
    assert_eq!(manifest(None, Some("r"), "1"), "request-id:r;ts:1;");
    assert_eq!(manifest(Some(""), Some(""), "1"), "ts:1;");
}

#[test]
fn a_good_signature_passes_in_any_spelling_of_the_header() {
    for header in [
        format!("ts={TS},v1={V1}"),
        format!("v1={V1},ts={TS}"),
        format!(" ts = {TS} , v1 = {V1} "),
        format!("ts={TS},v1={}", V1.to_uppercase()),
        format!("ts={TS},v2=whatever,v1={V1}"),
    ] {
        assert_eq!(
            verify(Some(&header), Some(REQ), Some("123456"), at(TS + 5)),
            Ok(()),
            "{header}"
        );
    }
    // An alphanumeric id is lowercased before signing.
    let v1 = "29584d02abc4a53acebeadd51da5d87e021f718240caab45bc0e70c892a3d4b1";
    let h = format!("ts={TS},v1={v1}");
    assert_eq!(
        verify(Some(&h), Some("req-1"), Some("ABC123DEF"), at(TS)),
        Ok(())
    );
    // Without a data.id the part is left out.
    let v1 = "e653be7bc9c001dec2c5cc33cc629ca6f78ff09c78be1d86a2f416f9503ac676";
    let h = format!("ts={TS},v1={v1}");
    assert_eq!(verify(Some(&h), Some("req-1"), None, at(TS)), Ok(()));
}

#[test]
fn anything_else_is_refused_and_says_why() {
    let good = format!("ts={TS},v1={V1}");
    let now = at(TS);
    assert_eq!(
        verify(None, Some(REQ), Some("123456"), now),
        Err(SignatureError::MissingSignature)
    );
    assert_eq!(
        verify(Some(" "), Some(REQ), Some("123456"), now),
        Err(SignatureError::MissingSignature)
    );
    // Another id, request id, secret or ts: not this notification's signature.
    assert_eq!(
        verify(Some(&good), Some(REQ), Some("123457"), now),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify(Some(&good), Some("other"), Some("123456"), now),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify(Some(&good), None, Some("123456"), now),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_signature(
            b"other",
            Some(&good),
            Some(REQ),
            Some("123456"),
            now,
            MINUTE
        ),
        Err(SignatureError::Mismatch)
    );
    let moved = format!("ts={},v1={V1}", TS + 1);
    assert_eq!(
        verify(Some(&moved), Some(REQ), Some("123456"), now),
        Err(SignatureError::Mismatch)
    );
    for bad in [
        format!("v1={V1}"),
        format!("ts={TS}"),
        format!("ts=,v1={V1}"),
        format!("ts=abc,v1={V1}"),
        format!("ts={TS},v1=zz"),
        format!("ts={TS},v1={}", &V1[..62]),
        format!("ts={TS},v1={V1},ts={TS}"),
        format!("ts={TS};v1={V1}"),
        "garbage".to_string(),
    ] {
        assert!(
            matches!(
                verify(Some(&bad), Some(REQ), Some("123456"), now),
                Err(SignatureError::Malformed(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn an_old_or_future_signature_is_stale() {
    let good = format!("ts={TS},v1={V1}");
    assert_eq!(
        verify(Some(&good), Some(REQ), Some("123456"), at(TS + 60)),
        Ok(())
    );
    assert_eq!(
        verify(Some(&good), Some(REQ), Some("123456"), at(TS - 60)),
        Ok(())
    );
    assert_eq!(
        verify(Some(&good), Some(REQ), Some("123456"), at(TS + 61)),
        Err(SignatureError::Stale {
            skew_secs: 61,
            tolerance_secs: 60
        })
    );
    assert!(matches!(
        verify(Some(&good), Some(REQ), Some("123456"), at(TS - 3600)),
        Err(SignatureError::Stale {
            skew_secs: -3600,
            ..
        })
    ));
    // A ts in milliseconds (past 10^12) is read as such.
    let ms = format!("{TS}500");
    let m = manifest(Some("123456"), Some(REQ), &ms);
    let h = format!("ts={ms},v1={}", sign(SECRET, m.as_bytes()));
    assert_eq!(
        verify(Some(&h), Some(REQ), Some("123456"), at(TS + 30)),
        Ok(())
    );
    assert!(matches!(
        verify(Some(&h), Some(REQ), Some("123456"), at(TS + 120)),
        Err(SignatureError::Stale { .. })
    ));
}

fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(pairs: &[(&str, &str)], body: &str) -> Result<Notification, WebhookError> {
    parse_notification(&query(pairs), body.as_bytes())
}

const MP_BODY: &str = r#"{"id": 12345, "live_mode": true, "type": "payment", "date_created": "2026-11-05T10:01:50.000-04:00", "user_id": 123456789, "api_version": "v1", "action": "payment.created", "data": {"id": "999999999"}}"#;

#[test]
fn mercado_pago_webhooks() {
    let want = Notification::Payment {
        id: "999999999".into(),
        action: Some("payment.created".into()),
        user_id: Some(123456789),
        live_mode: Some(true),
    };
    assert_eq!(
        parse(&[("data.id", "999999999"), ("type", "payment")], MP_BODY),
        Ok(want.clone())
    );
    // The id from the body when the query has none; numbers as ids too.
    assert_eq!(parse(&[], MP_BODY), Ok(want.clone()));
    let numeric = MP_BODY.replace("\"999999999\"", "999999999");
    assert_eq!(parse(&[], &numeric), Ok(want));
    // The query's id wins over the body's (it is the one that was signed).
    assert!(matches!(
        parse(&[("data.id", "5"), ("type", "payment")], MP_BODY),
        Ok(Notification::Payment { id, .. }) if id == "5"
    ));
    // Query only, empty body.
    assert_eq!(
        parse(&[("data.id", "7"), ("type", "payment")], ""),
        Ok(Notification::Payment {
            id: "7".into(),
            action: None,
            user_id: None,
            live_mode: None
        })
    );
    // Another type is understood and ignored.
    assert!(matches!(
        parse(&[("data.id", "7"), ("type", "merchant_order")], ""),
        Ok(Notification::Ignored { reason }) if reason.contains("merchant_order")
    ));
    assert_eq!(
        parse(&[("type", "payment")], r#"{"type":"payment","data":{}}"#),
        Err(WebhookError::NoOperationId)
    );
    assert!(matches!(
        parse(&[("data.id", "abc"), ("type", "payment")], ""),
        Err(WebhookError::Unparseable(_))
    ));
}

#[test]
fn the_older_ipn() {
    assert_eq!(
        parse(&[("topic", "payment"), ("id", "123")], ""),
        Ok(Notification::Payment {
            id: "123".into(),
            action: None,
            user_id: None,
            live_mode: None
        })
    );
    assert!(matches!(
        parse(&[], r#"{"resource":"https://api.mercadopago.com/v1/payments/456","topic":"payment"}"#),
        Ok(Notification::Payment { id, .. }) if id == "456"
    ));
    assert!(matches!(
        parse(&[("topic", "merchant_order"), ("id", "9")], ""),
        Ok(Notification::Ignored { reason }) if reason.contains("merchant_order")
    ));
    assert_eq!(
        parse(&[("topic", "payment")], ""),
        Err(WebhookError::NoOperationId)
    );
}

#[test]
fn mercadolibre_notifications() {
    let order = r#"{"_id":"5dc1f402b5365146406663c0","resource":"/orders/2000000123","user_id":123456789,"topic":"orders_v2","application_id":3219083410743656,"attempts":2,"sent":"2019-11-05T22:13:22.377Z","received":"2019-11-05T22:13:22.354Z"}"#;
    assert_eq!(
        parse(&[], order),
        Ok(Notification::MlOrder {
            order_id: "2000000123".into(),
            user_id: Some(123456789),
            application_id: Some(3219083410743656),
            notification_id: Some("5dc1f402b5365146406663c0".into()),
            attempts: Some(2),
        })
    );
    let legacy = order.replace("orders_v2", "orders");
    assert!(
        matches!(parse(&[], &legacy), Ok(Notification::MlOrder { order_id, .. }) if order_id == "2000000123")
    );
    for resource in [
        "/collections/notifications/777",
        "/payments/777",
        "/v1/payments/777",
        "/v1/payments/777/",
    ] {
        let body = order
            .replace("/orders/2000000123", resource)
            .replace("orders_v2", "payments");
        assert_eq!(
            parse(&[], &body),
            Ok(Notification::MlPayment {
                id: "777".into(),
                user_id: Some(123456789),
                application_id: Some(3219083410743656),
                notification_id: Some("5dc1f402b5365146406663c0".into()),
                attempts: Some(2),
            }),
            "{resource}"
        );
    }
    let created = order.replace("orders_v2", "created_orders");
    assert!(
        matches!(parse(&[], &created), Ok(Notification::Ignored { reason }) if reason.contains("created_orders"))
    );
    let questions = order.replace("orders_v2", "questions");
    assert!(
        matches!(parse(&[], &questions), Ok(Notification::Ignored { reason }) if reason.contains("questions"))
    );
    // Ids must be digits.
    let odd = order.replace("/orders/2000000123", "/orders/abc");
    assert!(matches!(
        parse(&[], &odd),
        Err(WebhookError::Unparseable(_))
    ));
    let odd = order
        .replace("/orders/2000000123", "/payments/abc")
        .replace("orders_v2", "payments");
    assert!(matches!(
        parse(&[], &odd),
        Err(WebhookError::Unparseable(_))
    ));
    let none = r#"{"topic":"payments","user_id":1}"#;
    assert_eq!(parse(&[], none), Err(WebhookError::NoOperationId));
    assert_eq!(
        parse(&[], r#"{"topic":"orders_v2"}"#),
        Err(WebhookError::NoOperationId)
    );
}

#[test]
fn bodies_that_are_not_notifications_are_refused() {
    for body in ["{not json", "<html></html>", "type=payment&data.id=1"] {
        assert!(
            matches!(parse(&[], body), Err(WebhookError::Unparseable(_))),
            "{body}"
        );
    }
    for body in ["[]", "\"payment\"", "12", "null"] {
        assert!(
            matches!(parse(&[], body), Err(WebhookError::Unparseable(_))),
            "{body}"
        );
    }
    assert!(matches!(parse(&[], ""), Err(WebhookError::Unparseable(_))));
    assert!(matches!(
        parse(&[], "{}"),
        Err(WebhookError::Unparseable(_))
    ));
}
