//! The ordering rule against a **real ERPNext 15** (opt-in: `#[ignore]`), behind a fault-injecting
//! reverse proxy that does to chosen creates what a real proxy in front of ERPNext does: refuse
//! them (429), fail before forwarding (a 502 page), lose the answer after ERPNext committed (504),
//! or answer 504 at once and forward the request later (a commit that lands after the client
//! stopped looking). Mobbex is the simulator.
//!
//! Run (a server as in `../shared/spec/erpnext-real/BRINGUP.md`):
//!
//! ```sh
//! PAYSYNC_REAL_ERP_URL=http://127.0.0.1:8000 PAYSYNC_REAL_ERP_KEY_FILE=/path/api_key \
//! PAYSYNC_REAL_ERP_SECRET_FILE=/path/api_secret PAYSYNC_REAL_COMPANY="Mi Empresa SA" \
//! PAYSYNC_REAL_ITEM=SERVICIO PAYSYNC_REAL_CUSTOMER_PREFIX="Cliente " \
//! cargo test --test it real_erpnext -- --ignored --nocapture
//! ```
//!
//! Optional: `PAYSYNC_REAL_MODE_OF_PAYMENT` (default `Mobbex`), `PAYSYNC_REAL_ORDERS` (default 12),
//! `PAYSYNC_REAL_GUARD=1` (install ERPNext's duplicate guard first: `paysync erp-setup`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jiff::civil::date;
use jiff::{SignedDuration, Timestamp};
use paysync::domain::DecisionKind;
use paysync_sim::fixtures::{AccountConfig, ConfigBuilder, ErpAuth};
use paysync_sim::{SimOperation, SimOptions, Simulator};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::helpers::sync_with;

/// What the proxy does to the next create of one `reference_no`.
#[derive(Debug, Clone, Copy)]
enum ProxyFault {
    /// 429 with `Retry-After: 1`, not forwarded.
    Refuse,
    /// An nginx 502 page, not forwarded.
    BadGatewayBeforeCommit,
    /// Forwarded; ERPNext's answer replaced by an empty 504.
    LostAfterCommit,
    /// An empty 504 at once; the request is forwarded this much later.
    CommitLater(Duration),
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    /// Faults still to apply, per reference_no, in order.
    faults: Arc<Mutex<HashMap<String, Vec<ProxyFault>>>>,
}

impl Proxy {
    async fn forward(
        &self,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let url = format!(
            "{}{}",
            self.upstream,
            uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
        );
        let mut req = self.http.request(method, url).body(body.to_vec());
        for name in ["authorization", "content-type", "accept"] {
            if let Some(v) = headers.get(name) {
                req = req.header(name, v);
            }
        }
        match req.send().await {
            Ok(r) => {
                let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
                let ct = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/json")
                    .to_string();
                let bytes = r.bytes().await.unwrap_or_default();
                (status, [("content-type", ct)], bytes).into_response()
            }
            Err(e) => (StatusCode::BAD_GATEWAY, format!("proxy: {e}")).into_response(),
        }
    }

    async fn handle(self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let is_create = method == Method::POST
            && (uri.path().ends_with("/Payment%20Entry") || uri.path().ends_with("/Payment Entry"));
        let fault = if is_create {
            serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|b| b["reference_no"].as_str().map(str::to_string))
                .and_then(|r| {
                    let mut f = self.faults.lock().unwrap();
                    let list = f.get_mut(&r)?;
                    (!list.is_empty()).then(|| list.remove(0))
                })
        } else {
            None
        };
        match fault {
            None => self.forward(method, &uri, &headers, body).await,
            Some(ProxyFault::Refuse) => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "Too Many Requests",
            )
                .into_response(),
            Some(ProxyFault::BadGatewayBeforeCommit) => (
                StatusCode::BAD_GATEWAY,
                [("content-type", "text/html")],
                "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
            )
                .into_response(),
            Some(ProxyFault::LostAfterCommit) => {
                let _ = self.forward(method, &uri, &headers, body).await;
                StatusCode::GATEWAY_TIMEOUT.into_response()
            }
            Some(ProxyFault::CommitLater(after)) => {
                let me = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = me.forward(method, &uri, &headers, body).await;
                });
                StatusCode::GATEWAY_TIMEOUT.into_response()
            }
        }
    }
}

pub(crate) fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("set {name} (see the module comment)"))
}

pub(crate) fn read_secret(var: &str) -> String {
    std::fs::read_to_string(env(var))
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real ERPNext 15: see the module comment"]
async fn real_erpnext_books_every_order_oldest_first_under_proxy_faults() {
    let erp = env("PAYSYNC_REAL_ERP_URL");
    let key = read_secret("PAYSYNC_REAL_ERP_KEY_FILE");
    let secret = read_secret("PAYSYNC_REAL_ERP_SECRET_FILE");
    let company = env("PAYSYNC_REAL_COMPANY");
    let item = env("PAYSYNC_REAL_ITEM");
    let prefix = env("PAYSYNC_REAL_CUSTOMER_PREFIX");
    let mode = std::env::var("PAYSYNC_REAL_MODE_OF_PAYMENT").unwrap_or_else(|_| "Mobbex".into());
    let orders: usize = std::env::var("PAYSYNC_REAL_ORDERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(12);
    let auth = format!("token {key}:{secret}");
    let http = reqwest::Client::new();

    // Sales orders in the real ERPNext, each to be paid in 2 or 3 payments.
    let run_tag = format!("{:x}", Timestamp::now().as_millisecond());
    let mut plan: Vec<(String, String, Vec<Decimal>)> = Vec::new(); // (order, customer, payments)
    for i in 0..orders {
        let customer = format!("{prefix}{:03}", 1 + i % 30);
        let total = Decimal::from(1000 + 10 * i as i64);
        let body = json!({
            "docstatus": 1,
            "company": company,
            "customer": customer,
            "currency": "ARS",
            "transaction_date": "2026-10-01",
            "delivery_date": "2026-12-31",
            "items": [{"item_code": item, "qty": 1, "rate": serde_json::from_str::<Value>(&total.to_string()).unwrap(), "delivery_date": "2026-12-31"}],
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
        let name = v["data"]["name"].as_str().unwrap().to_string();
        let payments = if i % 2 == 0 {
            vec![Decimal::from(400), Decimal::from(300), Decimal::from(500)]
        } else {
            vec![Decimal::from(600), Decimal::from(700)]
        };
        plan.push((name, customer, payments));
    }

    // Mobbex: the simulator, one operation per payment, a day apart, oldest first per order.
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    let proxy = Proxy {
        upstream: erp.clone(),
        http: reqwest::Client::new(),
        faults: Arc::new(Mutex::new(HashMap::new())),
    };
    let mut expected: Vec<(String, String, Decimal, bool)> = Vec::new(); // (uid, order, amount, initial)
    for (i, (order, _, payments)) in plan.iter().enumerate() {
        for (j, amount) in payments.iter().enumerate() {
            let uid = format!("real-{run_tag}-{i:02}-{j}");
            let created: Timestamp = "2026-10-02T15:00:00Z".parse::<Timestamp>().unwrap()
                + SignedDuration::from_hours(24 * j as i64 + i as i64);
            sim.add_operation(SimOperation {
                uid: uid.clone(),
                reference: order.clone(),
                status: 200,
                total: *amount,
                currency: "ARS".into(),
                created,
                updated: created,
                description: "Compra".into(),
                payer_name: "Comprador".into(),
                parent_uid: None,
                operation_type: "payment.v2".into(),
                entity_charges: Vec::new(),
            });
            expected.push((uid.clone(), order.clone(), *amount, j == 0));
            if j == 0 {
                let fault = match i % 4 {
                    0 => vec![ProxyFault::Refuse; 6],
                    1 => vec![ProxyFault::BadGatewayBeforeCommit],
                    2 => vec![ProxyFault::LostAfterCommit],
                    _ => vec![ProxyFault::CommitLater(Duration::from_millis(3500))],
                };
                proxy.faults.lock().unwrap().insert(uid, fault);
            }
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let app_router = axum::Router::new().fallback({
        let proxy = proxy.clone();
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            proxy.clone().handle(method, uri, headers, body)
        }
    });
    tokio::spawn(async move { axum::serve(listener, app_router).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sync.toml");
    ConfigBuilder::new(
        dir.path().join("ledger.db"),
        &proxy_url,
        ErpAuth::Inline { key, secret },
    )
    .daemon("retry_budget = \"2s\"")
    .erp("max_in_flight = 4")
    .erp("timeout = \"20s\"")
    .erp("commit_horizon = \"6s\"")
    .account(
        AccountConfig::for_simulator("main", &sim)
            .company(&company)
            .mode_of_payment(&mode),
    )
    .write(&cfg)
    .unwrap();
    let settings = paysync::config::load_with_env(&cfg, &Default::default()).unwrap();
    let today = Timestamp::now()
        .to_zoned(settings.daemon.timezone.clone())
        .date();
    let app = paysync::app::App::build(settings).await.unwrap();
    // PAYSYNC_REAL_GUARD=1: install ERPNext's duplicate guard first (needs a System Manager key).
    if std::env::var("PAYSYNC_REAL_GUARD").as_deref() == Ok("1") {
        let created = app.erp.install_guard().await.unwrap();
        eprintln!(
            "duplicate guard: {}",
            if created {
                "installed"
            } else {
                "already there"
            }
        );
        assert!(app.erp.guard_installed().await.unwrap());
    }
    let mut runs = 0;
    for run in 1..=3 {
        runs = run;
        let s = sync_with(&app, date(2026, 10, 1), date(2026, 11, 30), false).await;
        eprintln!("run {run}: {s}");
        for u in &s.unresolved {
            eprintln!("  {} {}: {}", u.uid, u.kind, u.reason);
        }
        if s.unresolved() == 0 {
            break;
        }
    }

    // The real ERPNext's state, entry by entry.
    let uids: Vec<&str> = expected.iter().map(|e| e.0.as_str()).collect();
    let r = http
        .get(format!("{erp}/api/resource/Payment%20Entry"))
        .header("Authorization", &auth)
        .query(&[
            (
                "filters",
                json!([["reference_no", "in", uids], ["docstatus", "<", 2]]).to_string(),
            ),
            (
                "fields",
                json!([
                    "name",
                    "reference_no",
                    "party",
                    "paid_amount",
                    "unallocated_amount",
                    "docstatus",
                    "posting_date"
                ])
                .to_string(),
            ),
            ("limit_page_length", "0".to_string()),
        ])
        .send()
        .await
        .unwrap();
    let listed: Value = r.json().await.unwrap();
    let mut by_ref: HashMap<String, Vec<Value>> = HashMap::new();
    for e in listed["data"].as_array().unwrap() {
        by_ref
            .entry(e["reference_no"].as_str().unwrap().to_string())
            .or_default()
            .push(e.clone());
    }
    let mut wrong = Vec::new();
    for (uid, order, amount, initial) in &expected {
        let found = by_ref.get(uid).cloned().unwrap_or_default();
        if found.len() != 1 {
            wrong.push(format!("{uid}: {} entries", found.len()));
            continue;
        }
        let name = found[0]["name"].as_str().unwrap();
        let doc: Value = http
            .get(format!("{erp}/api/resource/Payment%20Entry/{name}"))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let d = &doc["data"];
        let refs = d["references"].as_array().cloned().unwrap_or_default();
        let paid: Decimal = d["paid_amount"].to_string().parse().unwrap();
        if d["docstatus"] != 1 || paid != *amount || d["posting_date"] != today.to_string() {
            wrong.push(format!("{uid}: {d}"));
        }
        let ok = if *initial {
            refs.len() == 1
                && refs[0]["reference_name"] == order.as_str()
                && refs[0]["allocated_amount"]
                    .to_string()
                    .parse::<Decimal>()
                    .unwrap()
                    == *amount
        } else {
            refs.is_empty()
        };
        if !ok {
            wrong.push(format!(
                "{uid} ({order}, initial {initial}): references {refs:?}"
            ));
        }
    }
    // Each order's advance is its first payment.
    for (i, (order, _, payments)) in plan.iter().enumerate() {
        let so: Value = http
            .get(format!("{erp}/api/resource/Sales%20Order/{order}"))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let advance: Decimal = so["data"]["advance_paid"].to_string().parse().unwrap();
        if advance != payments[0] {
            wrong.push(format!(
                "order {i} {order}: advance_paid {advance}, expected {}",
                payments[0]
            ));
        }
    }
    eprintln!(
        "real ERPNext: {} orders, {} payments, {runs} run(s); {} wrong",
        plan.len(),
        expected.len(),
        wrong.len()
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(runs <= 3);
    let s = sync_with(&app, date(2026, 10, 1), date(2026, 11, 30), false).await;
    assert_eq!(s.unresolved(), 0);
    assert_eq!(
        s.get(DecisionKind::BookedInitial) + s.get(DecisionKind::BookedAdditional),
        0,
        "a rerun books nothing: {s}"
    );
}
