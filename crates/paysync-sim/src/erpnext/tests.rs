//! The simulated ERPNext seen from a real HTTP client: `frappe.client.get_list` answers what the
//! REST listing answers (and recording 26), and customers' own receivable accounts reach both
//! `get_party_account` and the entries created without `paid_from`.

use jiff::civil::date;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::{SimOptions, SimPaymentEntry, SimReference, SimSalesOrder, Simulator};

const GET_LIST: &str = "/api/method/frappe.client.get_list";

/// A simulator and one HTTP client (building a client per request is slow).
struct Env {
    sim: Simulator,
    http: reqwest::Client,
}

async fn start() -> Env {
    let sim = Simulator::start(SimOptions::default())
        .await
        .expect("simulator starts");
    sim.add_customer("Cliente Demo");
    sim.add_customer("Cliente Dos");
    Env {
        sim,
        http: reqwest::Client::new(),
    }
}

impl Env {
    fn erp(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.sim.erpnext_url))
            .header("Authorization", "token sim-erp-key:sim-erp-secret")
    }

    /// `GET /api/resource/{doctype}` with these query parameters: (status, body).
    async fn list(&self, doctype: &str, params: &[(&str, String)]) -> (u16, Value) {
        let r = self
            .erp(reqwest::Method::GET, &format!("/api/resource/{doctype}"))
            .query(params)
            .send()
            .await
            .expect("an answer");
        (r.status().as_u16(), r.json().await.expect("JSON"))
    }

    /// `POST /api/method/frappe.client.get_list` with this JSON body: (status, body).
    async fn get_list(&self, body: Value) -> (u16, Value) {
        let r = self
            .erp(reqwest::Method::POST, GET_LIST)
            .json(&body)
            .send()
            .await
            .expect("an answer");
        (r.status().as_u16(), r.json().await.expect("JSON"))
    }

    /// The same lookup both ways; both must succeed with the same rows, which are returned.
    async fn both(&self, doctype: &str, fields: Value, filters: Value) -> Vec<Value> {
        let (status, listed) = self
            .list(
                doctype,
                &[
                    ("fields", fields.to_string()),
                    ("filters", filters.to_string()),
                    ("limit_page_length", "0".into()),
                ],
            )
            .await;
        assert_eq!(status, 200, "{listed}");
        let (status, got) = self
            .get_list(json!({
                "doctype": doctype, "fields": fields, "filters": filters, "limit_page_length": 0,
            }))
            .await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["message"], listed["data"], "{doctype} {filters}");
        got["message"].as_array().expect("a list").clone()
    }

    async fn party_account(&self, party: &str, company: &str) -> Value {
        let r = self
            .erp(
                reqwest::Method::GET,
                "/api/method/erpnext.accounts.party.get_party_account",
            )
            .query(&[
                ("party_type", "Customer"),
                ("party", party),
                ("company", company),
            ])
            .send()
            .await
            .expect("an answer");
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.expect("JSON")["message"].clone()
    }

    /// Creates a submitted, unallocated Receive entry for `party` without `paid_from`.
    async fn receive_without_paid_from(&self, party: &str, reference_no: &str) -> Value {
        let r = self
            .erp(reqwest::Method::POST, "/api/resource/Payment Entry")
            .json(&json!({
                "docstatus": 1, "payment_type": "Receive", "party_type": "Customer",
                "party": party, "company": "Mi Empresa SA", "paid_amount": 10.5,
                "received_amount": 10.5, "paid_to": "Mobbex - MESA",
                "reference_no": reference_no, "reference_date": "2026-10-01",
            }))
            .send()
            .await
            .expect("an answer");
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.expect("JSON")["data"].clone()
    }
}

fn d(s: &str) -> Decimal {
    s.parse().expect("a decimal")
}

fn order(name: &str, customer: &str) -> SimSalesOrder {
    SimSalesOrder {
        name: name.into(),
        customer: customer.into(),
        company: "Mi Empresa SA".into(),
        currency: "ARS".into(),
        grand_total: d("1000"),
        rounded_total: None,
        advance_paid: d("0"),
        docstatus: 1,
        status: "To Deliver and Bill".into(),
        per_billed: d("0"),
        transaction_date: date(2026, 11, 22),
    }
}

fn entry(name: &str, reference_no: &str, docstatus: i32, orders: &[&str]) -> SimPaymentEntry {
    SimPaymentEntry {
        name: name.into(),
        naming_series: crate::DEFAULT_NAMING_SERIES.into(),
        docstatus,
        payment_type: "Receive".into(),
        company: "Mi Empresa SA".into(),
        party_type: "Customer".into(),
        party: "Cliente Demo".into(),
        paid_from: "Deudores - MESA".into(),
        paid_to: "Mobbex - MESA".into(),
        mode_of_payment: Some("Mobbex".into()),
        paid_amount: d("100"),
        received_amount: d("100"),
        reference_no: Some(reference_no.into()),
        reference_date: Some(date(2026, 11, 22)),
        posting_date: date(2026, 11, 22),
        references: orders
            .iter()
            .map(|o| SimReference {
                reference_doctype: "Sales Order".into(),
                reference_name: o.to_string(),
                allocated_amount: d("50"),
            })
            .collect(),
        deductions: Vec::new(),
        unallocated_amount: d("100") - d("50") * Decimal::from(orders.len()),
        paysync_operation: None,
        amended_from: None,
    }
}

/// Four orders and four entries: two for mbx-op-002 (one cancelled), one paying two orders.
async fn site() -> Env {
    let env = start().await;
    for i in 1..=4 {
        env.sim
            .add_sales_order(order(&format!("SAL-ORD-2026-0000{i}"), "Cliente Demo"));
    }
    for (name, reference_no, docstatus, orders) in [
        (
            "ACC-PAY-2026-00001",
            "mbx-op-001",
            1,
            vec!["SAL-ORD-2026-00001"],
        ),
        (
            "ACC-PAY-2026-00002",
            "mbx-op-002",
            1,
            vec!["SAL-ORD-2026-00002"],
        ),
        (
            "ACC-PAY-2026-00003",
            "mbx-op-002",
            2,
            vec!["SAL-ORD-2026-00002"],
        ),
        (
            "ACC-PAY-2026-00004",
            "mbx-op-004",
            1,
            vec!["SAL-ORD-2026-00003", "SAL-ORD-2026-00004"],
        ),
    ] {
        env.sim
            .insert_payment_entry_directly(entry(name, reference_no, docstatus, &orders));
    }
    env
}

fn names(rows: &[Value]) -> Vec<&str> {
    rows.iter()
        .map(|r| r["name"].as_str().expect("a name"))
        .collect()
}

#[tokio::test]
async fn get_list_answers_the_rows_of_the_rest_listing() {
    let env = site().await;
    let rows = env
        .both(
            "Sales Order",
            json!(["name", "status", "advance_paid", "grand_total"]),
            json!([[
                "name",
                "in",
                ["SAL-ORD-2026-00001", "sal-ord-2026-00003", "SAL-ORD-X"]
            ]]),
        )
        .await;
    assert_eq!(names(&rows), ["SAL-ORD-2026-00001", "SAL-ORD-2026-00003"]);
    assert_eq!(rows[0]["advance_paid"], json!(50.0));

    let rows = env
        .both(
            "Payment Entry",
            json!(["name", "reference_no", "docstatus"]),
            json!([["reference_no", "in", ["mbx-op-002", "mbx-op-004"]]]),
        )
        .await;
    assert_eq!(
        names(&rows),
        [
            "ACC-PAY-2026-00002",
            "ACC-PAY-2026-00003",
            "ACC-PAY-2026-00004"
        ]
    );

    // The child-table filter: one row per matching reference, child columns projected.
    let rows = env
        .both(
            "Payment Entry",
            json!([
                "name",
                "reference_no",
                "`tabPayment Entry Reference`.reference_name",
                "`tabPayment Entry Reference`.allocated_amount"
            ]),
            json!([
                [
                    "Payment Entry Reference",
                    "reference_name",
                    "in",
                    [
                        "SAL-ORD-2026-00002",
                        "SAL-ORD-2026-00003",
                        "SAL-ORD-2026-00004"
                    ]
                ],
                ["docstatus", "=", 1]
            ]),
        )
        .await;
    let pairs: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["reference_name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("ACC-PAY-2026-00002", "SAL-ORD-2026-00002"),
            ("ACC-PAY-2026-00004", "SAL-ORD-2026-00003"),
            ("ACC-PAY-2026-00004", "SAL-ORD-2026-00004"),
        ]
    );
    assert_eq!(rows[0]["allocated_amount"], json!(50.0));
}

/// Recording 26, request and answer as ERPNext 15 gave them (the cancelled duplicate included).
#[tokio::test]
async fn get_list_answers_recording_26() {
    let recording: Value = serde_json::from_str(include_str!(
        "../../../../tests/fixtures/erpnext-real/26-post-frappe-client-get_list.json"
    ))
    .expect("the recording is JSON");
    let env = site().await;
    let (status, body) = env.get_list(recording["request_body"].clone()).await;
    assert_eq!(status, recording["status"]);
    assert_eq!(body, recording["response_body"]);
}

#[tokio::test]
async fn get_list_pages_like_frappe_20_by_default_0_for_all() {
    let env = start().await;
    for i in 1..=25 {
        env.sim
            .add_sales_order(order(&format!("SAL-ORD-2026-{i:05}"), "Cliente Demo"));
    }
    let count = |body: &Value| body["message"].as_array().expect("a list").len();
    let (_, body) = env.get_list(json!({"doctype": "Sales Order"})).await;
    assert_eq!(count(&body), 20, "the default page");
    // No fields: only the name, as Frappe's default field list.
    assert_eq!(body["message"][0], json!({"name": "SAL-ORD-2026-00001"}));
    for all in [json!(0), json!("0"), Value::Null] {
        let (_, body) = env
            .get_list(json!({"doctype": "Sales Order", "limit_page_length": all}))
            .await;
        assert_eq!(count(&body), 25, "limit_page_length {all}");
    }
    let (_, body) = env
        .get_list(json!({"doctype": "Sales Order", "limit_page_length": "7", "limit_start": 20}))
        .await;
    assert_eq!(count(&body), 5);
    assert_eq!(body["message"][0]["name"], "SAL-ORD-2026-00021");
    let (_, body) = env
        .get_list(json!({"doctype": "Sales Order", "limit_page_length": 3}))
        .await;
    assert_eq!(count(&body), 3);
}

#[tokio::test]
async fn get_list_takes_fields_and_filters_as_json_text() {
    let env = site().await;
    let filters = json!([
        ["reference_no", "in", ["mbx-op-001", "mbx-op-002"]],
        ["docstatus", "=", 1]
    ]);
    let (_, as_values) = env
        .get_list(json!({
            "doctype": "Payment Entry", "fields": ["name", "reference_no"], "filters": filters,
            "limit_page_length": 0,
        }))
        .await;
    let (status, as_text) = env
        .get_list(json!({
            "doctype": "Payment Entry", "fields": "[\"name\", \"reference_no\"]",
            "filters": filters.to_string(), "limit_page_length": "0",
        }))
        .await;
    assert_eq!(status, 200, "{as_text}");
    assert_eq!(as_text, as_values);
    assert_eq!(
        names(as_text["message"].as_array().unwrap()),
        ["ACC-PAY-2026-00001", "ACC-PAY-2026-00002"]
    );
    // Frappe also splits a plain text field list on commas, and takes a dict of `=` filters.
    let (_, comma) = env
        .get_list(json!({
            "doctype": "Payment Entry", "fields": "name, reference_no",
            "filters": {"reference_no": "mbx-op-001"},
        }))
        .await;
    assert_eq!(
        comma["message"],
        json!([{"name": "ACC-PAY-2026-00001", "reference_no": "mbx-op-001"}])
    );
    // The same arguments in a GET's query string work too (Frappe's form dict).
    let r = env
        .erp(reqwest::Method::GET, GET_LIST)
        .query(&[
            ("doctype", "Payment Entry"),
            ("fields", "[\"name\",\"reference_no\"]"),
            ("filters", &filters.to_string()),
            ("limit_page_length", "0"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), as_values);
    // Filters text that is not JSON is refused as the REST listing refuses it.
    let (status, bad) = env
        .get_list(json!({"doctype": "Payment Entry", "filters": "[[\"reference_no\""}))
        .await;
    assert_eq!(
        (status, bad["exc_type"].as_str()),
        (417, Some("ValidationError"))
    );
}

#[tokio::test]
async fn get_list_errors_are_those_of_the_rest_listing() {
    let env = site().await;
    let (status, listed) = env
        .list("Not A Doctype", &[("fields", "[\"name\"]".into())])
        .await;
    let (status2, got) = env
        .get_list(json!({"doctype": "Not A Doctype", "fields": ["name"]}))
        .await;
    assert_eq!((status, status2), (404, 404));
    assert_eq!(got, listed);
    assert_eq!(got["exc_type"], "DoesNotExistError");
    assert!(
        got["exception"]
            .as_str()
            .unwrap()
            .ends_with("DocType Not A Doctype not found")
    );
    // Malformed filters: the same ValidationError both ways.
    let (_, listed) = env
        .list("Payment Entry", &[("filters", "[[\"name\"]]".into())])
        .await;
    let (status, got) = env
        .get_list(json!({"doctype": "Payment Entry", "filters": [["name"]]}))
        .await;
    assert_eq!(status, 417);
    assert_eq!(got, listed);
    // No doctype: Python refuses the call itself.
    let (status, got) = env.get_list(json!({"fields": ["name"]})).await;
    assert_eq!((status, got["exc_type"].as_str()), (500, Some("TypeError")));
    // Without credentials: refused before anything is read, as every request.
    let r = env
        .http
        .post(format!("{}{GET_LIST}", env.sim.erpnext_url))
        .json(&json!({"doctype": "Payment Entry"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn get_list_is_counted_as_a_read_by_verb() {
    let env = site().await;
    env.sim.reset_stats();
    for _ in 0..2 {
        env.get_list(json!({"doctype": "Customer"})).await;
    }
    let r = env
        .erp(
            reqwest::Method::GET,
            "/api/method/frappe.auth.get_logged_user",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "paysync@example.com"})
    );
    let stats = env.sim.stats();
    assert_eq!(stats.erp_reads, 3);
    assert_eq!(stats.by_endpoint[&format!("POST {GET_LIST}")], 2);
    assert_eq!(
        stats.by_endpoint["GET /api/method/frappe.auth.get_logged_user"],
        1
    );
}

#[tokio::test]
async fn a_customers_own_receivable_is_its_party_account_and_its_paid_from() {
    let env = start().await;
    env.sim
        .set_customer_receivable("Cliente Dos", "Mi Empresa SA", "Deudores Dos - MESA");

    assert_eq!(
        env.party_account("Cliente Dos", "Mi Empresa SA").await,
        "Deudores Dos - MESA"
    );
    // The same method with a JSON body (POST).
    let r = env
        .erp(
            reqwest::Method::POST,
            "/api/method/erpnext.accounts.party.get_party_account",
        )
        .json(
            &json!({"party_type": "Customer", "party": "Cliente Dos", "company": "Mi Empresa SA"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "Deudores Dos - MESA"
    );
    // A customer without one, and the same customer in a company it has none for: the default.
    assert_eq!(
        env.party_account("Cliente Demo", "Mi Empresa SA").await,
        "Deudores - MESA"
    );
    env.sim.add_company("Otra SA");
    assert_eq!(
        env.party_account("Cliente Dos", "Otra SA").await,
        "Deudores - MESA"
    );

    // An entry without paid_from gets the customer's account, as set_missing_values fills it.
    let doc = env
        .receive_without_paid_from("Cliente Dos", "mbx-dos")
        .await;
    assert_eq!(doc["paid_from"], "Deudores Dos - MESA");
    let doc = env
        .receive_without_paid_from("Cliente Demo", "mbx-demo")
        .await;
    assert_eq!(doc["paid_from"], "Deudores - MESA");
    let stored: Vec<(String, String)> = env
        .sim
        .payment_entries()
        .into_iter()
        .map(|e| (e.party, e.paid_from))
        .collect();
    assert_eq!(
        stored,
        [
            ("Cliente Dos".into(), "Deudores Dos - MESA".into()),
            ("Cliente Demo".into(), "Deudores - MESA".into()),
        ]
    );

    // The Customer document carries it in its `accounts` table.
    let r = env
        .erp(reqwest::Method::GET, "/api/resource/Customer/Cliente Dos")
        .send()
        .await
        .unwrap();
    let accounts = r.json::<Value>().await.unwrap()["data"]["accounts"].clone();
    assert_eq!(accounts[0]["company"], "Mi Empresa SA");
    assert_eq!(accounts[0]["account"], "Deudores Dos - MESA");
    assert_eq!(accounts[0]["doctype"], "Party Account");
}

#[tokio::test]
async fn the_companys_default_receivable_can_be_set_and_a_customers_own_still_wins() {
    let env = start().await;
    env.sim.set_default_receivable("Debtors - MESA");
    env.sim
        .set_customer_receivable("Cliente Dos", "Mi Empresa SA", "Deudores Dos - MESA");
    assert_eq!(
        env.party_account("Cliente Demo", "Mi Empresa SA").await,
        "Debtors - MESA"
    );
    assert_eq!(
        env.party_account("Cliente Dos", "Mi Empresa SA").await,
        "Deudores Dos - MESA"
    );
    // An entry without paid_from books to it (recording 29p: `Debtors - TCA`).
    let doc = env
        .receive_without_paid_from("Cliente Demo", "mbx-debtors")
        .await;
    assert_eq!(doc["paid_from"], "Debtors - MESA");
}
