//! A Mercado Pago account against a **real ERPNext 15** (opt-in: `#[ignore]`): MercadoLibre
//! sales found by their order id in `po_no`, fees deducted, an OAuth token rotating. Mercado Pago
//! is the simulator. What is checked is what ERPNext itself stored: the entries, their deduction
//! rows, their GL, and the orders' `advance_paid`.
//!
//! Run (a server as in `../shared/spec/erpnext-real/BRINGUP.md`, with an expense account for the
//! fees and the company's main cost center):
//!
//! ```sh
//! PAYSYNC_REAL_ERP_URL=http://127.0.0.1:8000 PAYSYNC_REAL_ERP_KEY_FILE=/path/api_key \
//! PAYSYNC_REAL_ERP_SECRET_FILE=/path/api_secret PAYSYNC_REAL_COMPANY="Test Co AR" \
//! PAYSYNC_REAL_ITEM=SERV-MBX PAYSYNC_REAL_CUSTOMER="Cliente Demo" \
//! PAYSYNC_REAL_MODE_OF_PAYMENT=Mobbex PAYSYNC_REAL_FEES_ACCOUNT="Mobbex Fees - TCA" \
//! PAYSYNC_REAL_COST_CENTER="Main - TCA" \
//! cargo test --test it real_erpnext_mercadopago -- --ignored --nocapture
//! ```

use jiff::civil::date;
use jiff::{SignedDuration, Timestamp};
use paysync::domain::DecisionKind;
use paysync_sim::fixtures::{AccountConfig, ConfigBuilder, ErpAuth, MpAuth};
use paysync_sim::{SimMpFee, SimMpPayment, SimOptions, Simulator};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::real_erpnext::{env, read_secret};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real ERPNext 15 (see the module comment)"]
async fn real_erpnext_books_mercadolibre_sales_net_of_fees() {
    let erp = env("PAYSYNC_REAL_ERP_URL");
    let key = read_secret("PAYSYNC_REAL_ERP_KEY_FILE");
    let secret = read_secret("PAYSYNC_REAL_ERP_SECRET_FILE");
    let company = env("PAYSYNC_REAL_COMPANY");
    let item = env("PAYSYNC_REAL_ITEM");
    let customer = env("PAYSYNC_REAL_CUSTOMER");
    let mode = env("PAYSYNC_REAL_MODE_OF_PAYMENT");
    let fees_account = env("PAYSYNC_REAL_FEES_ACCOUNT");
    let cost_center = env("PAYSYNC_REAL_COST_CENTER");
    let auth = format!("token {key}:{secret}");
    let http = reqwest::Client::new();
    let d = |s: &str| s.parse::<Decimal>().unwrap();

    // Two orders, each a MercadoLibre sale whose id the ERP integration put in po_no.
    let tag = (Timestamp::now().as_millisecond() % 1_000_000_000) as u64;
    let ml = [2_000_000_000_000_000 + tag, 2_000_000_000_000_001 + tag];
    let mut orders = Vec::new();
    for (ml_id, total) in ml.iter().zip(["1000", "260.2"]) {
        let body = json!({
            "docstatus": 1, "company": company, "customer": customer, "currency": "ARS",
            "transaction_date": "2026-12-01", "delivery_date": "2026-12-31", "po_no": ml_id.to_string(),
            "items": [{"item_code": item, "qty": 1, "rate": serde_json::from_str::<Value>(total).unwrap(), "delivery_date": "2026-12-31"}],
        });
        let r = http
            .post(format!("{erp}/api/resource/Sales%20Order"))
            .header("Authorization", &auth)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "creating a sales order: {status} {v}");
        orders.push(v["data"]["name"].as_str().unwrap().to_string());
    }

    // Mercado Pago: order 1 paid in two parts (initial 700, additional 300), order 2 at once
    // with a charge fee_details does not list (shipping).
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    let base: Timestamp = "2026-12-02T15:00:00Z".parse().unwrap();
    let pay = |id: u64, ml_id: u64, amount: &str, fee: &str, unlisted: &str, minute: i64| {
        let mut p = SimMpPayment::approved(id, d(amount), base + SignedDuration::from_mins(minute));
        p.ml_order_id = Some(ml_id);
        p.fees = vec![SimMpFee {
            kind: "mercadopago_fee".into(),
            amount: d(fee),
            payer: "collector".into(),
        }];
        p.unlisted_charges = d(unlisted);
        p
    };
    let ids = [tag * 10 + 1, tag * 10 + 2, tag * 10 + 3];
    sim.add_mp_payment(pay(ids[0], ml[0], "700", "34.93", "0", 0));
    sim.add_mp_payment(pay(ids[1], ml[0], "300", "14.97", "0", 5));
    sim.add_mp_payment(pay(ids[2], ml[1], "260.2", "44.23", "23.45", 10));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sync.toml");
    ConfigBuilder::new(
        dir.path().join("ledger.db"),
        &erp,
        ErpAuth::Inline { key, secret },
    )
    .account(
        AccountConfig::mercadopago_for_simulator("meli", &sim, MpAuth::oauth_for(&sim))
            .company(&company)
            .mode_of_payment(&mode)
            .order_source("order_id")
            .order_field("po_no")
            .fees_account(&fees_account)
            .fees_cost_center(&cost_center),
    )
    .write(&config)
    .unwrap();
    let mut settings = paysync::config::load_with_env(&config, &Default::default()).unwrap();
    // The server's mode of payment says where money goes.
    settings.accounts[0].paid_to = None;
    let app = paysync::app::App::build(settings)
        .await
        .unwrap()
        .with_today(date(2026, 12, 4));
    let window = paysync::app::created_window(
        &app.settings.daemon.timezone,
        date(2026, 12, 1),
        date(2026, 12, 4),
    );
    let summary = app
        .engine
        .sync_window(&app.accounts[0], window, &Default::default())
        .await
        .unwrap_or_else(|(s, e)| panic!("{e} after {s}"));
    println!("{summary}");
    assert_eq!(summary.get(DecisionKind::BookedInitial), 2, "{summary}");
    assert_eq!(summary.get(DecisionKind::BookedAdditional), 1, "{summary}");
    assert!(sim.mp_token_grants() >= 1);

    // What ERPNext stored.
    let entry = |id: u64| {
        let (http, auth, erp) = (http.clone(), auth.clone(), erp.clone());
        async move {
            let filters = json!([["reference_no", "=", id.to_string()]]).to_string();
            let r: Value = http
                .get(format!("{erp}/api/resource/Payment%20Entry"))
                .header("Authorization", &auth)
                .query(&[("filters", filters.as_str()), ("fields", "[\"name\"]")])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let rows = r["data"].as_array().unwrap().clone();
            assert_eq!(rows.len(), 1, "one entry for {id}: {r}");
            let name = rows[0]["name"].as_str().unwrap().to_string();
            let doc: Value = http
                .get(format!("{erp}/api/resource/Payment%20Entry/{name}"))
                .header("Authorization", &auth)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            doc["data"].clone()
        }
    };
    let num = |v: &Value| Decimal::from_str_exact(&v.to_string()).unwrap().normalize();
    let initial = entry(ids[0]).await;
    println!("{initial:#}");
    assert_eq!(initial["docstatus"], 1);
    assert_eq!(num(&initial["paid_amount"]), d("665.07"));
    assert_eq!(num(&initial["references"][0]["allocated_amount"]), d("700"));
    assert_eq!(
        initial["references"][0]["reference_name"],
        orders[0].as_str()
    );
    assert_eq!(num(&initial["deductions"][0]["amount"]), d("34.93"));
    assert_eq!(num(&initial["difference_amount"]), Decimal::ZERO);
    assert_eq!(num(&initial["unallocated_amount"]), Decimal::ZERO);
    let additional = entry(ids[1]).await;
    assert_eq!(num(&additional["paid_amount"]), d("285.03"));
    assert_eq!(additional["references"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        num(&additional["unallocated_amount"]),
        d("300"),
        "credited gross"
    );
    let shipped = entry(ids[2]).await;
    assert_eq!(
        num(&shipped["paid_amount"]),
        d("192.52"),
        "what reached the seller"
    );
    // The site rounds totals to whole pesos: the order's outstanding is its rounded total, 260;
    // the 0.20 over it stays unallocated on the customer's account.
    assert_eq!(num(&shipped["references"][0]["allocated_amount"]), d("260"));
    assert_eq!(num(&shipped["unallocated_amount"]), d("0.2"));
    assert_eq!(shipped["deductions"].as_array().map(Vec::len), Some(2));
    assert_eq!(num(&shipped["difference_amount"]), Decimal::ZERO);
    for (name, want) in orders.iter().zip(["700", "260"]) {
        let so: Value = http
            .get(format!("{erp}/api/resource/Sales%20Order/{name}"))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(num(&so["data"]["advance_paid"]), d(want), "{name}");
    }
    // A second run books nothing.
    let again = app
        .engine
        .sync_window(&app.accounts[0], window, &Default::default())
        .await
        .unwrap_or_else(|(s, e)| panic!("{e} after {s}"));
    assert_eq!(again.get(DecisionKind::AlreadyLoaded), 3, "{again}");
}
