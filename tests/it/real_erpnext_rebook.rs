//! `paysync rebook` against a **real ERPNext 15** (opt-in: `#[ignore]`; run as the module comment
//! of `real_erpnext.rs` says, the duplicate guard is installed first). Mobbex is the simulator.
//! A payment is booked, its entry cancelled over REST, then re-booked — once, and twice at once by
//! two processes — and ERPNext's own records are read back.

use jiff::Timestamp;
use paysync_sim::fixtures::{AccountConfig, ConfigBuilder, ErpAuth};
use paysync_sim::{SimOptions, Simulator};
use serde_json::{Value, json};

use crate::helpers::{paid_op, paysync_cmd};
use crate::real_erpnext::{env, read_secret};

struct Real {
    url: String,
    auth: String,
    http: reqwest::Client,
}

impl Real {
    async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("Authorization", &self.auth)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {v}");
        v
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .header("Authorization", &self.auth)
            .query(query)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "GET {path}: {status} {v}");
        v
    }

    /// Every Payment Entry with this reference_no, any docstatus.
    async fn entries(&self, uid: &str) -> Vec<Value> {
        let v = self
            .get(
                "/api/resource/Payment Entry",
                &[
                    ("filters", json!([["reference_no", "=", uid]]).to_string()),
                    (
                        "fields",
                        json!([
                            "name",
                            "docstatus",
                            "paysync_operation",
                            "unallocated_amount"
                        ])
                        .to_string(),
                    ),
                    ("limit_page_length", "0".into()),
                ],
            )
            .await;
        v["data"].as_array().unwrap().clone()
    }

    async fn advance_paid(&self, order: &str) -> f64 {
        let v = self
            .get(&format!("/api/resource/Sales Order/{order}"), &[])
            .await;
        v["data"]["advance_paid"].as_f64().unwrap()
    }

    async fn cancel(&self, name: &str) {
        self.post(
            "/api/method/frappe.client.cancel",
            json!({"doctype": "Payment Entry", "name": name}),
        )
        .await;
    }
}

fn live(entries: &[Value]) -> Vec<&Value> {
    entries.iter().filter(|e| e["docstatus"] != 2).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real ERPNext 15: see the module comment of real_erpnext.rs"]
async fn real_erpnext_rebooks_a_cancelled_payment_exactly_once() {
    let erp = Real {
        url: env("PAYSYNC_REAL_ERP_URL"),
        auth: format!(
            "token {}:{}",
            read_secret("PAYSYNC_REAL_ERP_KEY_FILE"),
            read_secret("PAYSYNC_REAL_ERP_SECRET_FILE")
        ),
        http: reqwest::Client::new(),
    };
    let company = env("PAYSYNC_REAL_COMPANY");
    let customer = format!("{}001", env("PAYSYNC_REAL_CUSTOMER_PREFIX"));
    let so = erp
        .post(
            "/api/resource/Sales Order",
            json!({
                "docstatus": 1, "company": company, "customer": customer, "currency": "ARS",
                "transaction_date": "2026-10-01", "delivery_date": "2026-12-31",
                "items": [{"item_code": env("PAYSYNC_REAL_ITEM"), "qty": 1, "rate": 1000, "delivery_date": "2026-12-31"}],
            }),
        )
        .await["data"]["name"]
        .as_str()
        .unwrap()
        .to_string();

    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    let uid = format!("rebook-{:x}", Timestamp::now().as_millisecond());
    sim.add_operation(paid_op(
        &uid,
        &so,
        400,
        "2026-10-05T15:00:00Z".parse().unwrap(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("sync.toml");
    ConfigBuilder::new(
        dir.path().join("ledger.db"),
        &erp.url,
        ErpAuth::Files {
            key_file: env("PAYSYNC_REAL_ERP_KEY_FILE").into(),
            secret_file: env("PAYSYNC_REAL_ERP_SECRET_FILE").into(),
        },
    )
    .erp("timeout = \"20s\"")
    .account(AccountConfig::for_simulator("main", &sim).company(&company))
    .write(&config_path)
    .unwrap();
    let test_env = crate::helpers::TestEnv {
        sim,
        dir,
        config_path,
        _db: None,
    };
    let run = |args: &[&str]| {
        let out = paysync_cmd(&test_env, args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("$ paysync {}\n{text}", args.join(" "));
        (out.status.code(), text)
    };
    assert_eq!(run(&["erp-setup"]).0, Some(0));
    let (code, _) = run(&["sync", "--since", "2026-10-01", "--until", "2026-10-31"]);
    assert_eq!(code, Some(0));
    let first = erp.entries(&uid).await;
    assert_eq!(first.len(), 1, "{first:?}");
    let first_name = first[0]["name"].as_str().unwrap().to_string();
    assert_eq!(first[0]["paysync_operation"], json!(uid));
    assert_eq!(erp.advance_paid(&so).await, 400.0);

    erp.cancel(&first_name).await;
    assert_eq!(erp.advance_paid(&so).await, 0.0);
    // Not re-booked on its own.
    let (code, _) = run(&["sync", "--since", "2026-10-01", "--until", "2026-10-31"]);
    assert_eq!(code, Some(0));
    assert!(live(&erp.entries(&uid).await).is_empty());

    let (code, text) = run(&["rebook", &uid]);
    assert_eq!(code, Some(0), "{text}");
    let entries = erp.entries(&uid).await;
    let now = live(&entries);
    assert_eq!(now.len(), 1, "{entries:?}");
    assert_eq!(now[0]["paysync_operation"], json!(format!("{uid}#2")));
    assert_eq!(
        now[0]["unallocated_amount"].as_f64(),
        Some(0.0),
        "allocated"
    );
    assert_eq!(erp.advance_paid(&so).await, 400.0);
    let (code, text) = run(&["rebook", &uid]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("still booked"), "{text}");

    // Cancelled again; two re-bookings at once: one entry, `#3`.
    erp.cancel(now[0]["name"].as_str().unwrap()).await;
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_paysync"))
            .arg("--config")
            .arg(&test_env.config_path)
            .args(["rebook", &uid])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    eprintln!(
        "two at once:\n{}\n{}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
    let entries = erp.entries(&uid).await;
    let now = live(&entries);
    assert_eq!(now.len(), 1, "{entries:?}");
    assert_eq!(now[0]["paysync_operation"], json!(format!("{uid}#3")));
    assert_eq!(entries.len(), 3);
    assert_eq!(erp.advance_paid(&so).await, 400.0);
}
