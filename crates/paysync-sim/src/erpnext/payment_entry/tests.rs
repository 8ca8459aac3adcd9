//! Pay entries (refunds to a customer, recordings 27d–27q) through the simulated ERPNext's HTTP
//! API, replayed from the recordings' own request bodies on the recorded site.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::Faults;
use crate::testing::{Site, assert_created_like, assert_error_like, recorded_site, recording};

/// The recorded site with its default receivable, which a Pay without `paid_to` books to (27p).
async fn site() -> Site {
    let site = recorded_site(Faults::default()).await;
    site.set_default_receivable("Debtors - TCA");
    site
}

async fn replay(site: &Site, file: &str) -> (Value, (u16, String, Value)) {
    let rec = recording(file);
    let got = site.post(&rec["request_body"]).await;
    (rec, got)
}

#[tokio::test]
async fn an_unallocated_pay_books_from_the_bank_to_the_receivable_as_recorded() {
    let site = site().await;
    let (rec, got) = replay(&site, "27d-post-pay-refund-unallocated.json").await;
    assert_created_like(&rec, &got);
    let (doc, want) = (&got.2["data"], &rec["response_body"]["data"]);
    for k in [
        "payment_type",
        "status",
        "paid_from",
        "paid_from_account_type",
        "paid_to",
        "paid_to_account_type",
        "paid_amount",
        "unallocated_amount",
        "total_allocated_amount",
        "difference_amount",
        "remarks",
        "references",
    ] {
        assert_eq!(doc[k], want[k], "{k}: {doc}");
    }
    let stored = site.payment_entries();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].payment_type, "Pay");
    assert_eq!(stored[0].unallocated_amount, Decimal::from(50));
}

#[tokio::test]
async fn a_pay_without_paid_to_books_to_the_party_account() {
    let site = site().await;
    // 27p was sent without paid_to and posting_date: the server filled both in.
    let (rec, got) = replay(&site, "27p-post-pay-plus-reference_date.json").await;
    assert_created_like(&rec, &got);
    let doc = &got.2["data"];
    assert_eq!(doc["paid_to"], "Debtors - TCA", "{doc}");
    assert_eq!(doc["paid_to_account_type"], "Receivable");
    assert_eq!(doc["unallocated_amount"], 10.0);
    assert_eq!(
        doc["posting_date"],
        jiff::Zoned::now().date().to_string(),
        "today"
    );
    assert_eq!(doc["remarks"], rec["response_body"]["data"]["remarks"]);
    // A customer's own receivable wins over the company's default, as for a Receive.
    site.set_customer_receivable("Cliente Demo", "Test Co AR", "Debtors Demo - TCA");
    let (_, again) = replay(&site, "27p-post-pay-plus-reference_date.json").await;
    assert_eq!(again.0, 200, "{}", again.2);
    assert_eq!(again.2["data"]["paid_to"], "Debtors Demo - TCA");
}

#[tokio::test]
async fn a_pay_allocated_to_an_order_raises_its_advance_paid_as_recorded() {
    let site = site().await;
    site.add_order("SAL-ORD-2026-03479", 300);
    // 27b: a Receive of 200 allocated to it, then 27f: a Pay of 50 allocated to it.
    let (_, receive) = replay(&site, "27b-post-receive-allocated.json").await;
    assert_eq!(receive.0, 200, "{}", receive.2);
    let (rec, got) = replay(&site, "27f-post-pay-refund-allocated-to-so.json").await;
    assert_created_like(&rec, &got);
    let (row, want) = (
        &got.2["data"]["references"][0],
        &rec["response_body"]["data"]["references"][0],
    );
    for k in ["total_amount", "outstanding_amount", "allocated_amount"] {
        assert_eq!(row[k], want[k], "{k}: {row}");
    }
    assert_eq!(
        got.2["data"]["remarks"],
        rec["response_body"]["data"]["remarks"]
    );
    // 27g: added, not subtracted.
    let so = site.sales_order("SAL-ORD-2026-03479").unwrap();
    assert_eq!(so.advance_paid, Decimal::from(250));
    // 27i: a negative allocation is refused while the order still owes something.
    let (rec, got) = replay(&site, "27i-post-pay-refund-negative-allocation.json").await;
    assert_error_like(&rec, &got);
    assert_eq!(site.payment_entries().len(), 2);
    assert_eq!(
        site.sales_order("SAL-ORD-2026-03479").unwrap().advance_paid,
        Decimal::from(250)
    );
}

#[tokio::test]
async fn a_pay_against_a_fully_paid_order_is_refused_as_recorded() {
    let site = site().await;
    site.add_order("SAL-ORD-2026-03480", 150);
    let mut receive = recording("27b-post-receive-allocated.json")["request_body"].clone();
    receive["paid_amount"] = json!(150.0);
    receive["received_amount"] = json!(150.0);
    receive["references"] = json!([{"reference_doctype": "Sales Order",
        "reference_name": "SAL-ORD-2026-03480", "allocated_amount": 150.0}]);
    assert_eq!(site.post(&receive).await.0, 200);
    let (rec, got) = replay(&site, "27k-post-pay-refund-against-fully-paid-so.json").await;
    assert_error_like(&rec, &got);
    assert_eq!(site.payment_entries().len(), 1);
}

#[tokio::test]
async fn the_mandatory_fields_of_a_pay_are_refused_in_the_recorded_order() {
    let site = site().await;
    for file in [
        "27m-post-pay-minimal.json",
        "27n-post-pay-plus-received_amount.json",
        "27o-post-pay-plus-paid_from.json",
        "27q-post-pay-accounts-swapped.json",
    ] {
        let (rec, got) = replay(&site, file).await;
        assert_error_like(&rec, &got);
    }
    assert!(site.payment_entries().is_empty());
    // As a draft, the swapped accounts pass: the party's GL row is checked at submit only.
    let mut draft = recording("27q-post-pay-accounts-swapped.json")["request_body"].clone();
    draft["docstatus"] = json!(0);
    assert_eq!(site.post(&draft).await.0, 200);
}

#[tokio::test]
async fn a_pay_with_deductions_takes_them_from_the_amount() {
    let site = site().await;
    site.add_account("Mobbex Fees - TCA", false);
    let mut body = recording("27d-post-pay-refund-unallocated.json")["request_body"].clone();
    body["deductions"] = json!([{"account": "Mobbex Fees - TCA", "cost_center": "Main - TCA",
        "amount": 5.0}]);
    let (status, _, doc) = site.post(&body).await;
    assert_eq!(status, 200, "{doc}");
    // unallocated = paid − Σ deductions (a Receive would add them: 29p).
    assert_eq!(doc["data"]["unallocated_amount"], 45.0, "{doc}");
    assert_eq!(
        site.payment_entries()[0].unallocated_amount,
        Decimal::from(45)
    );
}
