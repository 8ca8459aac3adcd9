use super::*;
use crate::source::Fetched;

fn page_of(docs: &[&str]) -> Page {
    parse_list(&format!("{{\"docs\":[{}],\"page\":0}}", docs.join(","))).unwrap()
}

const GOOD: &str = r#"{"uid":"u1","status":"200","total":2871.74,"currency":"ARS","reference":"SAL-ORD-2026-00001","created":"2026-10-01T12:00:00.000Z","updated":"2026-10-01T12:01:00.000Z"}"#;

/// Every body shape a server or a proxy in front of it sends with an error status.
const BODIES: [(&str, &str); 5] = [
    (
        "json envelope",
        r#"{"result": false, "code": "INTERNAL_ERROR", "error": "Internal Server Error"}"#,
    ),
    (
        "html",
        "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
    ),
    (
        "text",
        "upstream connect error or disconnect/reset before headers",
    ),
    ("empty", ""),
    ("json without envelope", r#"{"message": "oops"}"#),
];

#[test]
fn every_5xx_and_408_is_transient_whatever_the_body() {
    for status in [500u16, 501, 502, 503, 504, 507, 520, 524, 599, 408] {
        for (shape, body) in BODIES {
            let e = classify(status, None, body).unwrap_err();
            assert!(
                matches!(e, SourceError::Http { status: s, .. } if s == status),
                "{status} {shape}: {e:?}"
            );
            assert!(e.is_transient(), "{status} {shape} must be retried");
        }
    }
    // The envelope's own message is kept.
    let e = classify(500, None, BODIES[0].1).unwrap_err();
    assert!(e.to_string().contains("Internal Server Error"), "{e}");
}

#[test]
fn a_429_waits_for_retry_after_when_given() {
    for (shape, body) in BODIES {
        for ra in [Some(Duration::from_secs(3)), None] {
            let e = classify(429, ra, body).unwrap_err();
            assert!(e.is_transient(), "{shape}");
            assert_eq!(e.retry_after(), ra, "{shape}");
        }
    }
}

#[test]
fn credentials_not_found_and_business_answers_are_not_retried() {
    for (shape, body) in BODIES {
        for status in [401u16, 403] {
            let e = classify(status, None, body).unwrap_err();
            assert!(
                matches!(e, SourceError::Unauthorized { .. }),
                "{status} {shape}: {e:?}"
            );
            assert!(!e.is_transient());
        }
        let e = classify(404, None, body).unwrap_err();
        assert!(
            matches!(e, SourceError::Http { status: 404, .. }),
            "{shape}: {e:?}"
        );
        assert!(!e.is_transient());
        for status in [400u16, 409, 422] {
            let e = classify(status, None, body).unwrap_err();
            assert!(!e.is_transient(), "{status} {shape}");
        }
    }
    // A 4xx with an envelope is Mobbex's business answer, with its code.
    let e = classify(
        400,
        None,
        r#"{"result":false,"code":"INVALID_FILTER","error":"bad"}"#,
    )
    .unwrap_err();
    assert!(
        matches!(&e, SourceError::Api { code, .. } if code == "INVALID_FILTER"),
        "{e:?}"
    );
}

#[test]
fn a_2xx_is_data_a_business_answer_or_malformed() {
    assert_eq!(
        classify(200, None, r#"{"result":true,"data":{"docs":[]}}"#).unwrap(),
        r#"{"docs":[]}"#
    );
    let e = classify(
        200,
        None,
        r#"{"result":false,"code":"NOT_FOUND","error":"no"}"#,
    )
    .unwrap_err();
    assert!(
        matches!(&e, SourceError::Api { code, .. } if code == "NOT_FOUND"),
        "{e:?}"
    );
    assert!(!e.is_transient());
    for (shape, body) in &BODIES[1..] {
        let e = classify(200, None, body).unwrap_err();
        assert!(matches!(e, SourceError::Malformed { .. }), "{shape}: {e:?}");
        assert!(!e.is_transient(), "{shape}");
    }
}

#[test]
fn good_doc_is_exact() {
    let p = page_of(&[GOOD]);
    assert!(p.is_last);
    let Fetched::Op(op) = &p.items[0] else {
        panic!("{:?}", p.items[0])
    };
    assert_eq!(op.total.to_string(), "2871.74");
    assert_eq!(op.status, crate::domain::PaymentStatus::Paid);
    assert_eq!(op.source_status, "200");
    assert_eq!(op.currency, "ARS");
    assert!(!op.is_child && !op.is_test);
}

#[test]
fn totals_keep_their_text() {
    for (t, want) in [
        ("0.10", "0.10"),
        ("1000000000.00", "1000000000.00"),
        ("2871.7400000000001", "2871.7400000000001"),
        ("\"15.5\"", "15.5"),
        ("1e3", "1000"),
    ] {
        let raw = RawValue::from_string(t.to_string()).unwrap();
        assert_eq!(parse_amount(&raw).unwrap().to_string(), want, "{t}");
    }
    for t in ["\"1.234,56\"", "\"abc\"", "null", "true"] {
        let raw = RawValue::from_string(t.to_string()).unwrap();
        assert!(parse_amount(&raw).is_err(), "{t}");
    }
}

#[test]
fn one_bad_doc_does_not_spoil_the_page() {
    let bad_status = GOOD.replace("\"200\"", "\"abc\"").replace("u1", "u2");
    let comma = GOOD.replace("2871.74", "\"2871,74\"").replace("u1", "u3");
    let no_uid = GOOD.replace("\"uid\":\"u1\",", "");
    let p = page_of(&[GOOD, &bad_status, &comma, &no_uid, "42"]);
    assert!(matches!(p.items[0], Fetched::Op(_)));
    match &p.items[1] {
        Fetched::Bad { uid, reason } => {
            assert_eq!(uid.as_deref(), Some("u2"));
            assert!(reason.contains("abc"), "{reason}");
        }
        x => panic!("{x:?}"),
    }
    assert!(
        matches!(&p.items[2], Fetched::Bad { uid: Some(u), reason } if u == "u3" && reason.contains("comma"))
    );
    assert!(matches!(&p.items[3], Fetched::Bad { uid: None, .. }));
    assert!(matches!(&p.items[4], Fetched::Bad { uid: None, .. }));
}

/// Every shape a document can take inside a well-formed page is one item of that page: an array,
/// `null`, a string, a field of the wrong type (the id still found, from `uid` or else `id`).
#[test]
fn every_odd_document_is_its_own_bad_item() {
    let uid_number = GOOD.replace("\"uid\":\"u1\"", "\"uid\":5,\"id\":\"i5\"");
    let reference_object = GOOD
        .replace("\"SAL-ORD-2026-00001\"", "{\"a\":1}")
        .replace("u1", "u6");
    let escaped_key = GOOD.replace("\"uid\"", "\"u\\u0069d\"");
    let p = page_of(&[
        "[1,{\"uid\":\"x\"}]",
        "null",
        "\"u7\"",
        &uid_number,
        &reference_object,
        &escaped_key,
        GOOD,
    ]);
    assert_eq!(p.items.len(), 7);
    for item in &p.items[..3] {
        assert!(
            matches!(item, Fetched::Bad { uid: None, reason } if reason.contains("not an object")),
            "{item:?}"
        );
    }
    assert!(
        matches!(&p.items[3], Fetched::Bad { uid: Some(u), reason } if u == "i5" && reason.contains("uid 5")),
        "{:?}",
        p.items[3]
    );
    assert!(
        matches!(&p.items[4], Fetched::Bad { uid: Some(u), reason } if u == "u6" && reason.contains("reference")),
        "{:?}",
        p.items[4]
    );
    // A key written with an escape is still that key.
    assert!(
        matches!(&p.items[5], Fetched::Op(op) if op.uid == "u1"),
        "{:?}",
        p.items[5]
    );
    assert!(matches!(&p.items[6], Fetched::Op(_)));
}

/// The one-pass read of a listing answer agrees with the table of answers for every shape:
/// a good page, a business refusal at 200, a 200 without a list, a 5xx with an envelope.
#[test]
fn a_listing_answer_is_read_as_the_table_says() {
    let good = format!("{{\"result\":true,\"data\":{{\"docs\":[{GOOD}],\"page\":0}}}}");
    let page = read_list(200, None, good.as_bytes()).unwrap();
    assert!(matches!(&page.items[..], [Fetched::Op(op)] if op.uid == "u1") && page.is_last);
    let refused = r#"{"result":false,"code":"INVALID_ENTITY","error":"no such entity"}"#;
    assert!(matches!(
        read_list(200, None, refused.as_bytes()),
        Err(SourceError::Api { code, .. }) if code == "INVALID_ENTITY"
    ));
    let no_list = r#"{"result":true,"data":{"page":0}}"#;
    assert!(matches!(
        read_list(200, None, no_list.as_bytes()),
        Err(SourceError::Malformed { message, .. }) if message.contains("docs")
    ));
    let broken = format!("{{\"result\":true,\"data\":{{\"docs\":[{GOOD}");
    assert!(matches!(
        read_list(200, None, broken.as_bytes()),
        Err(SourceError::Malformed { .. })
    ));
    let busy = r#"{"result":false,"code":"SERVER_ERROR","error":"try later"}"#;
    assert!(matches!(
        read_list(503, None, busy.as_bytes()),
        Err(SourceError::Http { status: 503, message, .. }) if message == "try later"
    ));
    assert!(matches!(
        read_list(429, Some(Duration::from_secs(3)), good.as_bytes()),
        Err(SourceError::RateLimited { retry_after: Some(d), .. }) if d == Duration::from_secs(3)
    ));
}

#[test]
fn full_page_is_not_last() {
    let docs: Vec<String> = (0..PAGE_SIZE)
        .map(|i| GOOD.replace("u1", &format!("u{i}")))
        .collect();
    let refs: Vec<&str> = docs.iter().map(|s| s.as_str()).collect();
    assert!(!page_of(&refs).is_last);
}

/// Mobbex's conventions become the domain's flags here and nowhere else.
#[test]
fn children_and_test_operations_are_flagged_by_the_adapter() {
    let child = GOOD.replacen(r#""uid":""#, r#""uid":"CHD-"#, 1);
    let test = GOOD.replacen(r#""currency":"ARS""#, r#""currency":"TEST""#, 1);
    assert_ne!(child, GOOD);
    assert_ne!(test, GOOD);
    let p = page_of(&[&child, &test]);
    let [Fetched::Op(c), Fetched::Op(t)] = &p.items[..] else {
        panic!("{:?}", p.items)
    };
    assert!(c.is_child && !c.is_test, "{c:?}");
    assert!(t.is_test && !t.is_child, "{t:?}");
}

#[test]
fn single_operation_shape() {
    let data = r#"{"transactions":[],"transaction":{"result":true,"payment":{"id":"u9","status":{"code":"602","text":"Devuelta"},"total":100.5,"currency":{"code":"ARS","symbol":"$"},"reference":"R","created":"2026-10-01T12:00:00.000Z","updated":"2026-10-02T12:00:00.000Z"}}}"#;
    let op = parse_one(data).unwrap();
    assert_eq!(
        (
            op.uid.as_str(),
            op.status,
            op.source_status.as_str(),
            op.total.to_string().as_str()
        ),
        ("u9", crate::domain::PaymentStatus::Refunded, "602", "100.5")
    );
    assert!(op.updated.is_some());
}

/// The merchant's charges, `totals.entity_charges`, become the operation's fees, exactly and in
/// the document's order; the buyer's charges (`user_charges`, `financial`) are not fees.
#[test]
fn entity_charges_are_the_fees() {
    let doc = GOOD.replace(
        "\"currency\":\"ARS\",",
        r#""currency":"ARS","totals":{"total":2871.74,"currency":"ARS","user_charges":150.25,"financial":{"percentage":5.5,"amount":150.25},"entity_charges":{"source":57.4348,"installment":0,"service":12.10,"extra":null}},"#,
    );
    let p = page_of(&[&doc]);
    let Fetched::Op(op) = &p.items[0] else {
        panic!("{:?}", p.items[0])
    };
    let fees: Vec<(&str, String)> = op
        .fees
        .iter()
        .map(|f| (f.kind.as_str(), f.amount.to_string()))
        .collect();
    assert_eq!(
        fees,
        [
            ("source", "57.4348".to_string()),
            ("installment", "0".to_string()),
            ("service", "12.10".to_string())
        ]
    );
    assert_eq!(op.total.to_string(), "2871.74");
}

#[test]
fn no_entity_charges_no_fees() {
    for totals in [
        "",
        r#""totals":null,"#,
        r#""totals":{"total":1,"currency":"ARS"},"#,
        r#""totals":{"entity_charges":null},"#,
        r#""totals":{"entity_charges":{}},"#,
    ] {
        let doc = GOOD.replace(
            "\"currency\":\"ARS\",",
            &format!("\"currency\":\"ARS\",{totals}"),
        );
        let p = page_of(&[&doc]);
        let Fetched::Op(op) = &p.items[0] else {
            panic!("{totals}: {:?}", p.items[0])
        };
        assert!(op.fees.is_empty(), "{totals}: {:?}", op.fees);
    }
}

/// A charge that cannot be read is the document's fault (booking without it would book gross).
#[test]
fn an_unreadable_charge_is_a_bad_document() {
    for (totals, needle) in [
        (
            r#""totals":{"entity_charges":{"service":"12,10"}},"#,
            "entity_charges.service",
        ),
        (
            r#""totals":{"entity_charges":{"service":{"amount":3}}},"#,
            "entity_charges.service",
        ),
        (
            r#""totals":{"entity_charges":[1,2]},"#,
            "entity_charges [1,2]",
        ),
        (r#""totals":"x","#, "totals \"x\""),
    ] {
        let doc = GOOD.replace(
            "\"currency\":\"ARS\",",
            &format!("\"currency\":\"ARS\",{totals}"),
        );
        match &page_of(&[&doc]).items[0] {
            Fetched::Bad { uid, reason } => {
                assert_eq!(uid.as_deref(), Some("u1"));
                assert!(reason.contains(needle), "{totals}: {reason}");
            }
            x => panic!("{totals}: {x:?}"),
        }
    }
}
