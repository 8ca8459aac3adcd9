//! Cancels and amendments (recordings 28b–28q) through the simulated ERPNext's HTTP API.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::Faults;
use crate::testing::{Site, assert_error_like, recorded_site, recording};

const SO: &str = "SAL-ORD-2026-03481";

/// The recorded site with SO-03481 (400) and 28b's Receive of 250 allocated to it: the entry's name.
async fn booked() -> (Site, String) {
    let site = recorded_site(Faults::default()).await;
    site.set_site_url("http://127.0.0.1:8000");
    site.add_order(SO, 400);
    let (status, _, body) = site
        .post(&recording("28b-post-receive-allocated.json")["request_body"])
        .await;
    assert_eq!(status, 200, "{body}");
    (site, body["data"]["name"].as_str().unwrap().to_string())
}

fn advance(site: &Site) -> Decimal {
    site.sales_order(SO).unwrap().advance_paid
}

async fn put_cancel(site: &Site, name: &str) -> (u16, String, Value) {
    let r = site
        .http
        .put(format!(
            "{}/api/resource/Payment%20Entry/{name}",
            site.erpnext_url
        ))
        .header("Authorization", "token sim-erp-key:sim-erp-secret")
        .json(&json!({"docstatus": 2}))
        .send()
        .await
        .unwrap();
    answer(r).await
}

async fn client_cancel(site: &Site, name: &str) -> (u16, String, Value) {
    let r = site
        .http
        .post(format!(
            "{}/api/method/frappe.client.cancel",
            site.erpnext_url
        ))
        .header("Authorization", "token sim-erp-key:sim-erp-secret")
        .json(&json!({"doctype": "Payment Entry", "name": name}))
        .send()
        .await
        .unwrap();
    answer(r).await
}

async fn answer(r: reqwest::Response) -> (u16, String, Value) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, ct, r.json().await.unwrap())
}

#[tokio::test]
async fn a_put_cancel_answers_the_cancelled_entry_and_frees_the_order() {
    let (site, name) = booked().await;
    assert_eq!(advance(&site), Decimal::from(250));
    let (status, _, body) = put_cancel(&site, &name).await;
    assert_eq!(status, 200, "{body}");
    let want = &recording("28d-put-cancel-allocated-payment.json")["response_body"]["data"];
    assert_eq!(body["data"]["status"], "Cancelled");
    assert_eq!(body["data"]["docstatus"], 2);
    // The row's outstanding as just before the cancel (28d: 150).
    assert_eq!(
        body["data"]["references"][0]["outstanding_amount"],
        want["references"][0]["outstanding_amount"]
    );
    assert_eq!(advance(&site), Decimal::ZERO, "28e");
    // 28j: again → refused by Frappe itself, the order untouched.
    let again = put_cancel(&site, &name).await;
    assert_error_like(&recording("28j-put-cancel-already-cancelled.json"), &again);
    assert_eq!(advance(&site), Decimal::ZERO);
}

#[tokio::test]
async fn frappe_client_cancel_answers_under_message() {
    let (site, name) = booked().await;
    let reads = site.stats().erp_reads;
    let (status, _, body) = client_cancel(&site, &name).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("data").is_none(), "{body}");
    assert_eq!(body["message"]["name"], name.as_str());
    assert_eq!(body["message"]["status"], "Cancelled");
    assert_eq!(advance(&site), Decimal::ZERO, "28i");
    assert_eq!(site.stats().erp_reads, reads, "a cancel is no read");
    let again = client_cancel(&site, &name).await;
    assert_error_like(
        &recording("28k-post-frappe-client-cancel-already-cancelled.json"),
        &again,
    );
}

#[tokio::test]
async fn an_amendment_of_a_cancelled_entry_is_named_after_it() {
    let (site, name) = booked().await;
    put_cancel(&site, &name).await;
    let mut body = recording("28l-post-amendment.json")["request_body"].clone();
    body["amended_from"] = json!(name);
    let (status, _, doc) = site.post(&body).await;
    assert_eq!(status, 200, "{doc}");
    let amended = format!("{name}-1");
    assert_eq!(doc["data"]["name"], amended.as_str());
    assert_eq!(doc["data"]["amended_from"], name.as_str());
    assert_eq!(advance(&site), Decimal::from(250), "28m");
    // 28n: the original stays cancelled.
    let original = put_cancel(&site, &name).await;
    assert_error_like(
        &recording("28n-put-cancel-original-after-amendment.json"),
        &original,
    );
    // U4h: a second amendment of the same original (unallocated, so it validates) takes a name
    // already there.
    let mut unallocated = body.clone();
    unallocated["references"] = json!([]);
    let (status, _, dup) = site.post(&unallocated).await;
    assert_eq!(status, 409, "{dup}");
    assert_eq!(dup["exc_type"], "DuplicateEntryError");
    // 28o: the amendment cancels, the order is back at 0; amending it counts on (`-2`).
    assert_eq!(put_cancel(&site, &amended).await.0, 200);
    assert_eq!(advance(&site), Decimal::ZERO, "28p");
    body["amended_from"] = json!(amended);
    let (status, _, second) = site.post(&body).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["data"]["name"], format!("{name}-2").as_str());
    // Amendments used up no series number: the next entry follows the original.
    let mut next = recording("28b-post-receive-allocated.json")["request_body"].clone();
    next["references"] = json!([]);
    let (_, _, fresh) = site.post(&next).await;
    let n: u64 = name.rsplit('-').next().unwrap().parse().unwrap();
    assert_eq!(
        fresh["data"]["name"],
        format!("ACC-PAY-2026-{:05}", n + 1).as_str()
    );
}

#[tokio::test]
async fn an_amendment_of_a_submitted_entry_is_refused_as_recorded() {
    let (site, name) = booked().await;
    assert_eq!(name, "ACC-PAY-2026-00001");
    let rec = recording("28q-post-amendment-of-submitted.json");
    let mut body = rec["request_body"].clone();
    body["amended_from"] = json!(name);
    let got = site.post(&body).await;
    // The recorded answer, with this site's entry name.
    let text = rec.to_string().replace("ACC-PAY-2026-05543", &name);
    let rec: Value = serde_json::from_str(&text).unwrap();
    assert_error_like(&rec, &got);
    let inner: Vec<String> =
        serde_json::from_str(got.2["_server_messages"].as_str().unwrap()).unwrap();
    let inner: Value = serde_json::from_str(&inner[0]).unwrap();
    assert_eq!(inner["title"], "Amendment Not Allowed");
    assert_eq!(site.payment_entries().len(), 1);
    // An unknown original is a link error.
    body["amended_from"] = json!("ACC-PAY-2026-99999");
    let (status, _, missing) = site.post(&body).await;
    assert_eq!(status, 417);
    assert_eq!(missing["exc_type"], "LinkValidationError");
}
