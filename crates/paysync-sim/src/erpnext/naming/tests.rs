//! Naming series seen from a real HTTP client: the recorded answers (32b–32d, 32l, 32m), one
//! counter per series, numbers not used up by refusals.

use serde_json::{Value, json};

use crate::Faults;
use crate::testing::{assert_created_like, assert_error_like, recorded_site, recording};

/// A submitted, unallocated entry of 1.00 as the recordings post it, in `series` (`None`: the
/// key left out).
fn body(reference_no: &str, series: Option<Value>) -> Value {
    let mut b = json!({
        "docstatus": 1, "payment_type": "Receive", "party_type": "Customer",
        "party": "Cliente Demo", "company": "Test Co AR", "mode_of_payment": "Mobbex",
        "posting_date": "2026-12-01", "paid_from": "Debtors - TCA",
        "paid_to": "Bank Account - TCA", "reference_date": "2026-12-01",
        "paid_amount": 1.0, "received_amount": 1.0, "reference_no": reference_no,
    });
    if let Some(s) = series {
        b["naming_series"] = s;
    }
    b
}

fn name(answer: &(u16, String, Value)) -> &str {
    assert_eq!(answer.0, 200, "{}", answer.2);
    answer.2["data"]["name"].as_str().expect("a name")
}

#[tokio::test]
async fn the_recorded_naming_series_answers_are_reproduced() {
    let site = recorded_site(Faults::default()).await;
    // 32b: a series that is not among the options, numbered from 1 in its own counter.
    let rec = recording("32b-post-payment-unlisted-naming-series.json");
    let got = site.post(&rec["request_body"]).await;
    assert_created_like(&rec, &got);
    assert_eq!(got.2["data"]["name"], rec["response_body"]["data"]["name"]);
    // 32c: a character Frappe does not take: 417 with the exact body, nothing created.
    let rec = recording("32c-post-payment-invalid-naming-series.json");
    let got = site.post(&rec["request_body"]).await;
    assert_error_like(&rec, &got);
    assert!(got.2.get("_exc_source").is_none());
    // 32d: no dot: `.#####` appended, the number right after the text.
    let rec = recording("32d-post-payment-naming-series-without-dot.json");
    let got = site.post(&rec["request_body"]).await;
    assert_created_like(&rec, &got);
    assert_eq!(got.2["data"]["name"], "ACC-PAY-MBX00001");
    // 32m: a listed series: also from 1.
    let rec = recording("32m-post-payment-listed-naming-series.json");
    let got = site.post(&rec["request_body"]).await;
    assert_created_like(&rec, &got);
    assert_eq!(got.2["data"]["name"], "ACC-PAY-MBX2-2026-00001");
    // 32l: none sent: the default series (the recorded site had 5,557 before it).
    let rec = recording("32l-post-payment-default-series-after-options.json");
    let got = site.post(&rec["request_body"]).await;
    assert_created_like(&rec, &got);
    assert_eq!(name(&got), "ACC-PAY-2026-00001");
    // What was created carries its series, read back as ERPNext stores it.
    let series: Vec<(String, String)> = site
        .payment_entries()
        .into_iter()
        .map(|e| (e.name, e.naming_series))
        .collect();
    assert_eq!(
        series,
        [
            ("ACC-PAY-MBX-2026-00001", "ACC-PAY-MBX-.YYYY.-"),
            ("ACC-PAY-MBX00001", "ACC-PAY-MBX"),
            ("ACC-PAY-MBX2-2026-00001", "ACC-PAY-MBX2-.YYYY.-"),
            ("ACC-PAY-2026-00001", "ACC-PAY-.YYYY.-"),
        ]
        .map(|(n, s)| (n.to_string(), s.to_string()))
    );
}

#[tokio::test]
async fn each_series_counts_on_its_own_and_a_refusal_uses_no_number() {
    let site = recorded_site(Faults::default()).await;
    site.add_order("SAL-ORD-2026-00001", 10);
    let a = || Some(json!("A-.YYYY.-"));
    let b = || Some(json!("B-.YYYY.-"));
    let mut names = Vec::new();
    for (i, series) in [a(), a(), b(), None, Some(json!("")), a()]
        .into_iter()
        .enumerate()
    {
        let got = site.post(&body(&format!("mbx-{i}"), series)).await;
        names.push(name(&got).to_string());
    }
    assert_eq!(
        names,
        [
            "A-2026-00001",
            "A-2026-00002",
            "B-2026-00001",
            "ACC-PAY-2026-00001",
            "ACC-PAY-2026-00002",
            "A-2026-00003",
        ]
    );
    // Refused after it was named (over-allocation, in validate): the number is not used up.
    let mut over = body("mbx-over", a());
    over["paid_amount"] = json!(50.0);
    over["received_amount"] = json!(50.0);
    over["references"] = json!([{"reference_doctype": "Sales Order",
        "reference_name": "SAL-ORD-2026-00001", "allocated_amount": 50.0}]);
    let (status, _, refused) = site.post(&over).await;
    assert_eq!(status, 417, "{refused}");
    assert_eq!(
        name(&site.post(&body("mbx-next", a())).await),
        "A-2026-00004"
    );
    // Another year is another prefix, so another counter.
    let mut next_year = body("mbx-2027", a());
    next_year["posting_date"] = json!("2027-01-02");
    assert_eq!(name(&site.post(&next_year).await), "A-2027-00001");
    // GET shows the series the entry was named in.
    let doc: Value = site
        .http
        .get(format!(
            "{}/api/resource/Payment%20Entry/B-2026-00001",
            site.erpnext_url
        ))
        .header("Authorization", "token sim-erp-key:sim-erp-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["data"]["naming_series"], "B-.YYYY.-");
}

#[tokio::test]
async fn series_parts_are_expanded_as_frappe_does() {
    let site = recorded_site(Faults::default()).await;
    for (series, want) in [
        // Date parts, by the posting date.
        ("X-.YY.MM.DD.-", "X-261201-00001"),
        // Its own hashes: that many digits, the parts after them kept, the appended ones unused.
        ("INV/.####./B", "INV/0001/B"),
        // A space is one of the characters Frappe takes.
        ("ACC PAY-.YYYY.-", "ACC PAY-2026-00001"),
        ("Ñandú_1-.YYYY.-", "Ñandú_1-2026-00001"),
    ] {
        let got = site.post(&body(series, Some(json!(series)))).await;
        assert_eq!(name(&got), want, "{series}");
    }
    for bad in ["ACC*PAY", "ACC-PAY-.YYYY.-\t", "ACC:PAY"] {
        let (status, _, answer) = site.post(&body(bad, Some(json!(bad)))).await;
        assert_eq!(status, 417, "{bad}: {answer}");
        assert_eq!(answer["exc_type"], "InvalidNamingSeriesError");
        assert!(
            answer["exception"]
                .as_str()
                .unwrap()
                .ends_with(&format!("<strong>{bad}.#####</strong>")),
            "{answer}"
        );
    }
    // Not text: Python's own TypeError (a 500 without `_server_messages`); a falsy value is the
    // default series.
    let (status, _, answer) = site.post(&body("num", Some(json!(5)))).await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["exc_type"], "TypeError");
    assert!(answer.get("_server_messages").is_none(), "{answer}");
    let got = site.post(&body("zero", Some(json!(0)))).await;
    assert_eq!(name(&got), "ACC-PAY-2026-00001");
    let created = site.payment_entries().len();
    assert_eq!(created, 5, "the refused ones created nothing");
}
