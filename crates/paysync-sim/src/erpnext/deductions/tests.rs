//! Deductions rows through the simulated ERPNext's HTTP API: links, the additional payment's
//! unallocated amount, the description kept.

use serde_json::{Value, json};

use crate::{SimOptions, Simulator};

async fn post(sim: &Simulator, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/resource/Payment Entry", sim.erpnext_url))
        .header("Authorization", "token sim-erp-key:sim-erp-secret")
        .json(body)
        .send()
        .await
        .expect("an answer");
    (r.status().as_u16(), r.json().await.expect("JSON"))
}

/// An additional (unallocated) payment of 400 gross with 20 of fees: paid 380.
fn additional(deduction: Value) -> Value {
    json!({
        "docstatus": 1, "payment_type": "Receive", "party_type": "Customer",
        "party": "Cliente Demo", "company": "Mi Empresa SA", "mode_of_payment": "Mobbex",
        "paid_amount": 380.0, "received_amount": 380.0, "paid_to": "Mobbex - MESA",
        "reference_no": "mbx-fee", "reference_date": "2026-10-01", "references": [],
        "deductions": [deduction],
    })
}

fn message(body: &Value) -> String {
    let sm: Vec<String> = serde_json::from_str(body["_server_messages"].as_str().unwrap()).unwrap();
    let m: Value = serde_json::from_str(&sm[0]).unwrap();
    m["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_additional_payment_with_fees_credits_the_gross_amount() {
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    sim.add_customer("Cliente Demo");
    let (status, body) = post(
        &sim,
        &additional(
            json!({"account": "Comisiones - MESA", "cost_center": "Main - MESA",
            "amount": 20.0, "description": "service"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let doc = &body["data"];
    assert_eq!(doc["unallocated_amount"], 400.0);
    assert_eq!(doc["difference_amount"], 0.0);
    assert_eq!(doc["deductions"][0]["description"], "service");
    let stored = &sim.payment_entries()[0];
    assert_eq!(stored.deductions[0].description.as_deref(), Some("service"));
    assert_eq!(stored.unallocated_amount, "400".parse().unwrap());
}

#[tokio::test]
async fn unknown_accounts_and_cost_centers_are_link_errors() {
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    sim.add_customer("Cliente Demo");
    let cases = [
        (
            json!({"account": "Nope - MESA", "cost_center": "Main - MESA", "amount": 20.0}),
            "Could not find Row #1: Account: Nope - MESA",
        ),
        (
            json!({"account": "Comisiones - MESA", "cost_center": "Otro - MESA", "amount": 20.0}),
            "Could not find Row #1: Cost Center: Otro - MESA",
        ),
    ];
    for (row, want) in cases {
        let (status, body) = post(&sim, &additional(row)).await;
        assert_eq!(status, 417, "{body}");
        assert_eq!(body["exc_type"], "LinkValidationError");
        assert_eq!(message(&body), want);
    }
    // A cost center added later is known.
    sim.add_cost_center("Otro - MESA");
    let (status, body) = post(
        &sim,
        &additional(
            json!({"account": "Comisiones - MESA", "cost_center": "Otro - MESA", "amount": 20.0}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sim.payment_entries().len(), 1);
}
