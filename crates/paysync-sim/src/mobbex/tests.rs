//! A paid operation refunded later (`Simulator::set_mobbex_status`), seen through both endpoints.

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::{SimOperation, SimOptions, Simulator};

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

async fn get(sim: &Simulator, path: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", sim.mobbex_url))
        .header("x-api-key", "sim-mbx-key")
        .header("x-access-token", "sim-mbx-token")
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.expect("JSON")
}

#[tokio::test]
async fn a_later_status_is_served_with_its_update_time_and_the_paid_total() {
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    sim.add_operation(SimOperation {
        uid: "op-1".into(),
        reference: "SAL-ORD-2026-00001".into(),
        status: 200,
        total: Decimal::new(150_050, 2),
        currency: "ARS".into(),
        created: at("2026-11-05T10:00:00Z"),
        updated: at("2026-11-05T10:00:00Z"),
        description: "Compra".into(),
        payer_name: "Juan".into(),
        parent_uid: None,
        operation_type: "payment.v2".into(),
        entity_charges: Vec::new(),
    });
    let window = format!(
        "/p/entity/operations?page=0&updated_from={}",
        at("2026-11-05T11:00:00Z").as_millisecond()
    );
    let window = window.as_str();
    assert_eq!(
        get(&sim, window).await["data"]["docs"],
        serde_json::json!([])
    );

    assert!(sim.set_mobbex_status("op-1", 605, at("2026-11-06T09:30:00Z")));
    let one = get(&sim, "/p/operations/op-1").await;
    let payment = &one["data"]["transaction"]["payment"];
    assert_eq!(payment["status"]["code"], "605", "{one}");
    assert_eq!(payment["status"]["text"], "Parcialmente Devuelta");
    assert_eq!(payment["updated"], "2026-11-06T09:30:00.000Z");
    // No refunded amount anywhere: the total is still what was paid.
    assert_eq!(payment["total"], 1500.5);
    let docs = get(&sim, window).await["data"]["docs"].clone();
    assert_eq!(docs.as_array().map(Vec::len), Some(1), "{docs}");
    assert_eq!(docs[0]["status"], "605");
    assert_eq!(docs[0]["total"], 1500.5);

    // A full refund later; an unknown operation changes nothing.
    assert!(sim.set_mobbex_status("op-1", 602, at("2026-11-07T09:30:00Z")));
    assert_eq!(sim.operations()[0].status, 602);
    assert_eq!(sim.operations()[0].updated, at("2026-11-07T09:30:00Z"));
    assert!(!sim.set_mobbex_status("op-9", 602, at("2026-11-07T09:30:00Z")));
}
