//! Helpers of the crate's own tests: a simulator set up like the site the recordings were made
//! on, the recordings themselves (the repository's copy in `tests/fixtures/erpnext-real/`), and
//! the comparison of an answer's shape with a recorded one.

use std::collections::BTreeSet;

use jiff::civil::date;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::{Faults, SimOptions, SimSalesOrder, Simulator};

/// A simulator and one HTTP client (building a client per request is slow).
pub(crate) struct Site {
    pub sim: Simulator,
    pub http: reqwest::Client,
}

impl std::ops::Deref for Site {
    type Target = Simulator;
    fn deref(&self) -> &Simulator {
        &self.sim
    }
}

/// The site of recordings 27–33: company Test Co AR (TCA), its bank and receivable accounts,
/// Mode of Payment Mobbex on the bank, customer Cliente Demo.
pub(crate) async fn recorded_site(faults: Faults) -> Site {
    let sim = Simulator::start(SimOptions {
        faults,
        seed: 3,
        ..Default::default()
    })
    .await
    .expect("simulator starts");
    sim.set_company("Test Co AR", "TCA");
    sim.add_account("Bank Account - TCA", true);
    sim.add_account("Debtors - TCA", false);
    sim.add_mode_of_payment("Mobbex", true, &[("Test Co AR", "Bank Account - TCA")]);
    sim.add_customer("Cliente Demo");
    Site {
        sim,
        http: reqwest::Client::new(),
    }
}

impl Site {
    /// A submitted order of Cliente Demo for `total`, nothing paid.
    pub fn add_order(&self, name: &str, total: i64) {
        self.sim.add_sales_order(SimSalesOrder {
            name: name.into(),
            customer: "Cliente Demo".into(),
            company: "Test Co AR".into(),
            currency: "ARS".into(),
            grand_total: Decimal::from(total),
            rounded_total: None,
            advance_paid: Decimal::ZERO,
            docstatus: 1,
            status: "To Deliver and Bill".into(),
            per_billed: Decimal::ZERO,
            transaction_date: date(2026, 12, 1),
        });
    }

    /// `POST /api/resource/Payment Entry` with `body`: (status, content-type, body).
    pub async fn post(&self, body: &Value) -> (u16, String, Value) {
        let r = self
            .http
            .post(format!("{}/api/resource/Payment%20Entry", self.erpnext_url))
            .header("Authorization", "token sim-erp-key:sim-erp-secret")
            .header("Accept", "application/json")
            .json(body)
            .send()
            .await
            .expect("an answer");
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, ct, r.json().await.expect("a JSON body"))
    }

    /// The entries with this `reference_no`, as recording 33b looks them up.
    pub async fn by_reference(&self, reference_no: &str) -> Vec<Value> {
        let r: Value = self
            .http
            .get(format!("{}/api/resource/Payment%20Entry", self.erpnext_url))
            .header("Authorization", "token sim-erp-key:sim-erp-secret")
            .query(&[
                (
                    "filters",
                    json!([["reference_no", "=", reference_no]]).to_string(),
                ),
                (
                    "fields",
                    json!(["name", "reference_no", "docstatus"]).to_string(),
                ),
                ("limit_page_length", "0".into()),
            ])
            .send()
            .await
            .expect("an answer")
            .json()
            .await
            .expect("JSON");
        r["data"].as_array().expect("a list").clone()
    }
}

/// A recording of `shared/spec/erpnext-real/` by its file name.
pub(crate) fn recording(file: &str) -> Value {
    let path = format!(
        "{}/../../tests/fixtures/erpnext-real/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("a recording is JSON")
}

/// The messages of a Frappe error body's `_server_messages` (none when absent).
pub(crate) fn messages(body: &Value) -> Vec<String> {
    let Some(sm) = body.get("_server_messages").and_then(Value::as_str) else {
        return Vec::new();
    };
    let list: Vec<String> = serde_json::from_str(sm).expect("a JSON list of strings");
    list.iter()
        .map(|m| {
            let v: Value = serde_json::from_str(m).expect("a JSON message");
            v["message"].as_str().expect("a message").to_string()
        })
        .collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// An error answer has the recorded shape: status, content type, the same keys, `exc_type`,
/// `exception` and `_server_messages`' messages, `exc` a JSON list of tracebacks.
pub(crate) fn assert_error_like(rec: &Value, (status, ct, body): &(u16, String, Value)) {
    let want = &rec["response_body"];
    assert_eq!(u64::from(*status), rec["status"], "{body}");
    assert_eq!(ct, &rec["response_content_type"], "{body}");
    assert_eq!(keys(body), keys(want), "{body}");
    assert_eq!(body["exc_type"], want["exc_type"], "{body}");
    assert_eq!(body["exception"], want["exception"], "{body}");
    assert_eq!(messages(body), messages(want), "{body}");
    let exc: Vec<String> =
        serde_json::from_str(body["exc"].as_str().expect("exc is text")).expect("a JSON list");
    assert!(
        exc.len() == 1 && exc[0].starts_with("Traceback (most recent call last):"),
        "{body}"
    );
}

/// A successful create has the recorded shape: status, content type, `data` holding only keys
/// the recorded document has, the recorded `naming_series`.
pub(crate) fn assert_created_like(rec: &Value, (status, ct, body): &(u16, String, Value)) {
    let want = &rec["response_body"]["data"];
    assert_eq!(u64::from(*status), rec["status"], "{body}");
    assert_eq!(ct, &rec["response_content_type"], "{body}");
    assert_eq!(keys(body), BTreeSet::from(["data".to_string()]), "{body}");
    let extra: Vec<_> = keys(&body["data"])
        .difference(&keys(want))
        .cloned()
        .collect();
    assert!(extra.is_empty(), "keys the server does not send: {extra:?}");
    assert_eq!(body["data"]["naming_series"], want["naming_series"]);
}
