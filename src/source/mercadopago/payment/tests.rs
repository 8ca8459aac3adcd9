use super::*;
use crate::domain::PaymentStatus;

/// A payment as the contract serves it, every field present.
pub(crate) const GOOD: &str = r#"{"id": 1234567890,
 "date_created": "2026-11-05T10:01:50.000-04:00",
 "date_approved": "2026-11-05T10:01:52.000-04:00",
 "date_last_updated": "2026-11-05T10:01:52.000-04:00",
 "money_release_date": null,
 "operation_type": "regular_payment", "payment_method_id": "visa", "payment_type_id": "credit_card",
 "status": "approved", "status_detail": "accredited",
 "currency_id": "ARS", "description": "x",
 "live_mode": true,
 "collector_id": 123456789,
 "payer": {"id": "987", "email": "buyer@example.com"},
 "external_reference": "SAL-ORD-2026-00001",
 "order": {"id": 2000000123, "type": "mercadolibre"},
 "transaction_amount": 1500.5,
 "transaction_amount_refunded": 0,
 "transaction_details": {"net_received_amount": 1425.48, "total_paid_amount": 1500.5, "installment_amount": 1500.5},
 "fee_details": [{"type": "mercadopago_fee", "amount": 75.02, "fee_payer": "collector"},
                 {"type": "financing_fee", "amount": 10, "fee_payer": "payer"}],
 "refunds": [], "captured": true, "metadata": {}}"#;

fn op(text: &str) -> Operation {
    parse_payment(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn refused(text: &str) -> String {
    match parse_payment(text) {
        Ok(op) => panic!("accepted: {op:?}"),
        Err(reason) => reason,
    }
}

#[test]
fn a_good_payment_is_read_exactly() {
    let o = op(GOOD);
    assert_eq!(o.uid, "1234567890");
    assert_eq!(o.reference, "SAL-ORD-2026-00001");
    assert_eq!(o.status, PaymentStatus::Paid);
    assert_eq!(o.source_status, "approved");
    assert_eq!(o.total.to_string(), "1500.5");
    assert_eq!(o.currency, "ARS");
    assert_eq!(o.created.to_string(), "2026-11-05T14:01:50Z");
    assert_eq!(o.updated.unwrap().to_string(), "2026-11-05T14:01:52Z");
    assert!(!o.is_child && !o.is_test);
    assert_eq!(o.marketplace_order.as_deref(), Some("2000000123"));
    assert_eq!(
        o.fees,
        vec![Fee {
            kind: "mercadopago_fee".into(),
            amount: "75.02".parse().unwrap()
        }],
        "only the collector's fees"
    );
}

#[test]
fn ids_are_digits_from_numbers_or_strings() {
    let s = GOOD.replace("\"id\": 1234567890", "\"id\": \"1234567890\"");
    assert_eq!(op(&s).uid, "1234567890");
    let order = GOOD.replace("\"id\": 2000000123", "\"id\": \"2000000123\"");
    assert_eq!(op(&order).marketplace_order.as_deref(), Some("2000000123"));
    for bad in ["\"abc\"", "-5", "1.5", "1e3", "true", "\"\"", "{}"] {
        let s = GOOD.replace("\"id\": 1234567890", &format!("\"id\": {bad}"));
        let r = refused(&s);
        assert!(r.contains("not a payment id"), "{bad}: {r}");
    }
    assert_eq!(
        refused(&GOOD.replace("\"id\": 1234567890,", "")),
        "missing id"
    );
}

#[test]
fn amounts_keep_their_text_and_only_numbers_are_amounts() {
    for (t, want) in [
        ("0.10", "0.10"),
        ("1000000000.00", "1000000000.00"),
        ("2871.7400000000001", "2871.7400000000001"),
        ("1e3", "1000"),
        ("15", "15"),
    ] {
        let s = GOOD.replace(
            "\"transaction_amount\": 1500.5",
            &format!("\"transaction_amount\": {t}"),
        );
        assert_eq!(op(&s).total.to_string(), want, "{t}");
    }
    for t in ["\"1500.5\"", "null", "true", "-1", "{}"] {
        let s = GOOD.replace(
            "\"transaction_amount\": 1500.5",
            &format!("\"transaction_amount\": {t}"),
        );
        let r = refused(&s);
        assert!(r.contains("transaction_amount"), "{t}: {r}");
    }
    let none = GOOD.replace("\"transaction_amount\": 1500.5,", "");
    assert_eq!(refused(&none), "missing transaction_amount");
}

#[test]
fn references_orders_and_test_mode() {
    for no_ref in [
        GOOD.replace("\"SAL-ORD-2026-00001\"", "null"),
        GOOD.replace("\"external_reference\": \"SAL-ORD-2026-00001\",", ""),
    ] {
        assert_eq!(op(&no_ref).reference, "");
    }
    assert!(refused(&GOOD.replace("\"SAL-ORD-2026-00001\"", "7")).contains("external_reference"));
    // Only a MercadoLibre order is a marketplace order.
    for other in [
        r#""order": {"id": 55, "type": "mercadopago"}"#,
        r#""order": {}"#,
        r#""order": null"#,
        "\"other\": 1",
    ] {
        let s = GOOD.replace(
            r#""order": {"id": 2000000123, "type": "mercadolibre"}"#,
            other,
        );
        assert_ne!(s, GOOD);
        assert_eq!(op(&s).marketplace_order, None, "{other}");
    }
    let no_id = GOOD.replace(r#""id": 2000000123, "#, "");
    assert!(refused(&no_id).contains("order"));
    let test = GOOD.replace("\"live_mode\": true", "\"live_mode\": false");
    assert!(op(&test).is_test);
    assert!(
        !op(&GOOD.replace("\"live_mode\": true,", "")).is_test,
        "absent: live"
    );
    assert!(
        refused(&GOOD.replace("\"live_mode\": true", "\"live_mode\": \"no\""))
            .contains("live_mode")
    );
}

#[test]
fn statuses_and_dates() {
    let refunded = GOOD.replace("\"approved\"", "\"refunded\"");
    let o = op(&refunded);
    assert_eq!(
        (o.status, o.source_status.as_str()),
        (PaymentStatus::Refunded, "refunded")
    );
    // A partial refund leaves the status as it says (approved): it is still booked.
    let partial = GOOD.replace(
        "\"transaction_amount_refunded\": 0",
        "\"transaction_amount_refunded\": 100",
    );
    assert_eq!(op(&partial).status, PaymentStatus::Paid);
    let unknown = GOOD.replace("\"approved\"", "\"brand_new\"");
    assert_eq!(op(&unknown).status, PaymentStatus::Pending);
    assert_eq!(
        refused(&GOOD.replace("\"status\": \"approved\",", "")),
        "missing status"
    );

    let utc = GOOD.replace("2026-11-05T10:01:50.000-04:00", "2026-11-05T14:01:50Z");
    assert_eq!(op(&utc).created, op(GOOD).created);
    for bad in [
        "\"2026-11-05\"",
        "\"05/11/2026 10:01\"",
        "\"2026-11-05T10:01:50\"",
        "1762351310",
    ] {
        let s = GOOD.replace("\"2026-11-05T10:01:50.000-04:00\"", bad);
        assert!(refused(&s).contains("date_created"), "{bad}");
    }
    let no_update = GOOD.replace(
        "\"date_last_updated\": \"2026-11-05T10:01:52.000-04:00\",",
        "",
    );
    assert_eq!(op(&no_update).updated, None);
    let bad_update = GOOD.replace(
        "\"date_last_updated\": \"2026-11-05T10:01:52.000-04:00\"",
        "\"date_last_updated\": \"soon\"",
    );
    assert!(refused(&bad_update).contains("date_last_updated"));
}

#[test]
fn fees_are_the_collectors_and_exact() {
    // Without a stated net (that reconciling is the next test's).
    let fees = |rows: &str| {
        let s = GOOD.replace(
            r#""transaction_details": {"net_received_amount": 1425.48, "total_paid_amount": 1500.5, "installment_amount": 1500.5},"#,
            "",
        );
        let s = s.replace(
            r#"[{"type": "mercadopago_fee", "amount": 75.02, "fee_payer": "collector"},
                 {"type": "financing_fee", "amount": 10, "fee_payer": "payer"}]"#,
            rows,
        );
        assert_ne!(s, GOOD);
        assert!(!s.contains("net_received_amount"));
        parse_payment(&s)
    };
    assert_eq!(fees("[]").unwrap().fees, vec![]);
    assert_eq!(fees("null").unwrap().fees, vec![]);
    let two = fees(r#"[{"type":"mercadopago_fee","amount":0.10,"fee_payer":"collector"},{"type":"shipping","amount":12.300,"fee_payer":"collector"},{"type":"x","amount":0,"fee_payer":"collector"}]"#).unwrap();
    let got: Vec<(String, String)> = two
        .fees
        .iter()
        .map(|f| (f.kind.clone(), f.amount.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            ("mercadopago_fee".into(), "0.10".into()),
            ("shipping".into(), "12.300".into())
        ]
    );
    for bad in [
        r#"[{"type":"mercadopago_fee","amount":"1.5","fee_payer":"collector"}]"#,
        r#"[{"type":"mercadopago_fee","fee_payer":"collector"}]"#,
        r#"[{"amount":1,"fee_payer":"collector"}]"#,
        r#"[{"type":"mercadopago_fee","amount":-1,"fee_payer":"collector"}]"#,
        r#"{"type":"mercadopago_fee"}"#,
        "[1]",
    ] {
        let r = fees(bad).unwrap_err();
        assert!(r.contains("fee"), "{bad}: {r}");
    }
    // A buyer's bad row is not ours to judge.
    assert!(fees(r#"[{"type":"financing_fee","amount":"x","fee_payer":"payer"}]"#).is_ok());
}

fn search(results: &[&str], total: u64) -> String {
    format!(
        "{{\"paging\":{{\"total\":{total},\"limit\":50,\"offset\":0}},\"results\":[{}]}}",
        results.join(",")
    )
}

#[test]
fn one_bad_payment_does_not_spoil_the_page() {
    let string_amount = GOOD.replace("1234567890", "11").replace(
        "\"transaction_amount\": 1500.5",
        "\"transaction_amount\": \"1500.5\"",
    );
    let bad_date = GOOD
        .replace("1234567890", "\"12\"")
        .replace("\"2026-11-05T10:01:50.000-04:00\"", "\"yesterday\"");
    let no_id = GOOD.replace("\"id\": 1234567890,", "");
    let dup = GOOD.replace("\"id\": 1234567890,", "\"id\": 13, \"id\": 13,");
    let text = search(
        &[
            GOOD,
            &string_amount,
            &bad_date,
            &no_id,
            "42",
            "null",
            "[1]",
            &dup,
        ],
        8,
    );
    let page = parse_search(&text).unwrap();
    assert!(page.is_last);
    assert_eq!(page.items.len(), 8);
    assert!(matches!(&page.items[0], Fetched::Op(o) if o.uid == "1234567890"));
    assert!(
        matches!(&page.items[1], Fetched::Bad { uid: Some(u), reason } if u == "11" && reason.contains("transaction_amount")),
        "{:?}",
        page.items[1]
    );
    assert!(
        matches!(&page.items[2], Fetched::Bad { uid: Some(u), reason } if u == "12" && reason.contains("date_created")),
        "{:?}",
        page.items[2]
    );
    assert!(matches!(&page.items[3], Fetched::Bad { uid: None, reason } if reason == "missing id"));
    for item in &page.items[4..7] {
        assert!(
            matches!(item, Fetched::Bad { uid: None, reason } if reason.contains("not an object")),
            "{item:?}"
        );
    }
    assert!(
        matches!(&page.items[7], Fetched::Bad { .. }),
        "{:?}",
        page.items[7]
    );
}

#[test]
fn a_page_is_last_only_when_short_and_carries_the_total() {
    let fifty: Vec<String> = (0..PAGE_SIZE)
        .map(|i| GOOD.replace("1234567890", &(i + 1).to_string()))
        .collect();
    let refs: Vec<&str> = fifty.iter().map(String::as_str).collect();
    let full = parse_search(&search(&refs, 120)).unwrap();
    assert!(!full.is_last);
    assert_eq!(full.total, Some(120));
    assert!(
        !parse_search(&search(&refs, 100)).unwrap().is_last,
        "full and reaching the total: totals vary between pages, one more page is read"
    );
    assert!(
        parse_search(&search(&refs[..20], 120)).unwrap().is_last,
        "short"
    );
    // A server that pages by fewer than asked: its short first page is no last page.
    let capped = format!(
        "{{\"paging\":{{\"total\":120,\"limit\":30,\"offset\":0}},\"results\":[{}]}}",
        refs[..30].join(",")
    );
    assert!(
        matches!(parse_search(&capped), Err(SourceError::Malformed { message, .. }) if message.contains("paged by 30")),
        "a capped page is refused"
    );
    let no_paging = format!("{{\"results\":[{}]}}", refs.join(","));
    assert!(!parse_search(&no_paging).unwrap().is_last);
    assert!(parse_search("{\"results\":[]}").unwrap().is_last);
    for broken in [
        "{\"paging\":{\"total\":1}}",
        "{\"results\":{}}",
        "[]",
        "<html></html>",
        "{\"results\":[1,",
    ] {
        assert!(
            matches!(parse_search(broken), Err(SourceError::Malformed { .. })),
            "{broken}"
        );
    }
}

/// The fees add up to what Mercado Pago kept when the payment states the net: an unlisted
/// charge (a sale's shipping) becomes `other_charges`; listed fees past what was kept (a
/// net-neutral financing fee) become one `charges` row; no net stated, the listed rows.
#[test]
fn fees_add_up_to_what_reached_the_seller() {
    let with = |fees: &str, details: &str| {
        let doc = format!(
            r#"{{"id":1,"status":"approved","currency_id":"ARS","transaction_amount":260.20,"date_created":"2026-11-05T10:01:50.000-04:00","live_mode":true,"fee_details":{fees}{details}}}"#
        );
        parse_payment(&doc)
            .unwrap()
            .fees
            .into_iter()
            .map(|f| (f.kind, f.amount.to_string()))
            .collect::<Vec<_>>()
    };
    let fee = r#"[{"type":"mercadopago_fee","amount":44.23,"fee_payer":"collector"}]"#;
    assert_eq!(
        with(
            fee,
            r#","transaction_details":{"net_received_amount":192.52}"#
        ),
        [
            ("mercadopago_fee".to_string(), "44.23".to_string()),
            ("other_charges".to_string(), "23.45".to_string())
        ]
    );
    assert_eq!(
        with(
            fee,
            r#","transaction_details":{"net_received_amount":215.97}"#
        ),
        [("mercadopago_fee".to_string(), "44.23".to_string())],
        "listed fees that add up are kept as they are"
    );
    assert_eq!(
        with(
            fee,
            r#","transaction_details":{"net_received_amount":230.20}"#
        ),
        [("charges".to_string(), "30.00".to_string())],
        "listed past what was kept: one row of what was kept"
    );
    assert_eq!(
        with(fee, ""),
        [("mercadopago_fee".to_string(), "44.23".to_string())],
        "no net stated"
    );
    assert_eq!(
        with(
            "[]",
            r#","transaction_details":{"net_received_amount":260.20}"#
        ),
        Vec::<(String, String)>::new(),
        "nothing kept, nothing deducted"
    );
    assert_eq!(
        with(
            fee,
            r#","transaction_details":{"net_received_amount":null}"#
        ),
        [("mercadopago_fee".to_string(), "44.23".to_string())]
    );
}

/// Refunds as Mercado Pago states them: one per `refunds[]` row by its id (exact amounts);
/// without rows, a `refunded`/`charged_back` status gives back all (or the stated refunded
/// amount), an `approved` one with `transaction_amount_refunded` that amount; an unreadable row
/// makes the payment a bad document.
#[test]
fn refunds_are_read_from_the_rows_else_from_the_status_and_the_refunded_amount() {
    assert!(op(GOOD).refunds.is_empty(), "nothing refunded");
    let rows = GOOD.replace(
        "\"refunds\": []",
        "\"refunds\": [{\"id\": 9001, \"amount\": 100.1}, {\"id\": \"9002\", \"amount\": 0.35}]",
    );
    let r = op(&rows).refunds;
    assert_eq!(
        r,
        vec![
            Refund {
                key: "9001".into(),
                amount: Some(Decimal::from_str("100.1").unwrap())
            },
            Refund {
                key: "9002".into(),
                amount: Some(Decimal::from_str("0.35").unwrap())
            },
        ]
    );
    let full = GOOD.replace("\"status\": \"approved\"", "\"status\": \"refunded\"");
    assert_eq!(
        op(&full).refunds,
        vec![Refund {
            key: "1".into(),
            amount: Some(Decimal::from_str("1500.5").unwrap())
        }]
    );
    let charged_back = GOOD.replace("\"status\": \"approved\"", "\"status\": \"charged_back\"");
    assert_eq!(op(&charged_back).refunds.len(), 1);
    let partial = GOOD.replace(
        "\"transaction_amount_refunded\": 0",
        "\"transaction_amount_refunded\": 200.2",
    );
    assert_eq!(
        op(&partial).refunds,
        vec![Refund {
            key: "1".into(),
            amount: Some(Decimal::from_str("200.2").unwrap())
        }]
    );
    for bad in [
        "\"refunds\": {}",
        "\"refunds\": [1]",
        "\"refunds\": [{\"amount\": 1}]",
        "\"refunds\": [{\"id\": 1, \"amount\": \"x\"}]",
    ] {
        let text = GOOD.replace("\"refunds\": []", bad);
        assert!(parse_payment(&text).is_err(), "{bad}");
    }
}
