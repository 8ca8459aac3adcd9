//! Refund reversals (`reverse_refunds = true`) and `paysync audit` against a **real ERPNext 15**
//! (opt-in: `#[ignore]`). Mobbex is the simulator. A fresh Sales Order is paid twice (initial,
//! allocated; additional, unallocated), the first payment is refunded in Mobbex (602) and synced
//! again: what is checked is what ERPNext itself stored — the one new "Pay" entry, its GL, the
//! order's `advance_paid`, the other entries untouched. Then the audit over today, before and
//! after a duplicate Receive entry is typed in by hand over REST.
//!
//! Run (a server as in `../shared/spec/erpnext-real/BRINGUP.md`: the mode of payment with the
//! company's bank account as its default, the customer, the item):
//!
//! ```sh
//! PAYSYNC_REAL_ERP_URL=http://127.0.0.1:8000 PAYSYNC_REAL_ERP_KEY_FILE=/path/api_key \
//! PAYSYNC_REAL_ERP_SECRET_FILE=/path/api_secret PAYSYNC_REAL_COMPANY="Test Co AR" \
//! PAYSYNC_REAL_ITEM=SERV-MBX PAYSYNC_REAL_CUSTOMER="Cliente Demo" \
//! cargo test --test it real_erpnext_reversal -- --ignored --nocapture
//! ```
//!
//! Optional: `PAYSYNC_REAL_MODE_OF_PAYMENT` (default `Mobbex`).

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use paysync::domain::DecisionKind;
use paysync::domain::audit::Finding;
use paysync_sim::fixtures::{AccountConfig, ConfigBuilder, ErpAuth};
use paysync_sim::{SimOptions, Simulator};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::helpers::{paid_op, sync_with};
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
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "POST {path} {body}: {status} {text}");
        serde_json::from_str(&text).unwrap()
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
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "GET {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn list(&self, doctype: &str, filters: Value, fields: Value) -> Vec<Value> {
        self.get(
            &format!("/api/resource/{doctype}"),
            &[
                ("filters", filters.to_string()),
                ("fields", fields.to_string()),
                ("limit_page_length", "0".into()),
            ],
        )
        .await["data"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The names of every Payment Entry of the company, any state.
    async fn all_entries(&self, company: &str) -> BTreeSet<String> {
        self.list(
            "Payment Entry",
            json!([["company", "=", company]]),
            json!(["name"]),
        )
        .await
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
    }

    /// The one Payment Entry with this reference_no (any state), in full.
    async fn only_entry(&self, reference_no: &str) -> Value {
        let rows = self
            .list(
                "Payment Entry",
                json!([["reference_no", "=", reference_no]]),
                json!(["name"]),
            )
            .await;
        assert_eq!(
            rows.len(),
            1,
            "entries with reference_no {reference_no}: {rows:?}"
        );
        self.doc("Payment Entry", rows[0]["name"].as_str().unwrap())
            .await
    }

    async fn doc(&self, doctype: &str, name: &str) -> Value {
        self.get(&format!("/api/resource/{doctype}/{name}"), &[])
            .await["data"]
            .clone()
    }
}

fn dec(v: &Value) -> Decimal {
    v.to_string()
        .parse()
        .unwrap_or_else(|e| panic!("{v} is not a number: {e}"))
}

fn show(e: &Value) -> String {
    format!(
        "{} {} docstatus {} party {} paid_from {} paid_to {} paid_amount {} unallocated {} reference_no {} references {}",
        e["name"].as_str().unwrap_or("?"),
        e["payment_type"].as_str().unwrap_or("?"),
        e["docstatus"],
        e["party"].as_str().unwrap_or("?"),
        e["paid_from"].as_str().unwrap_or("?"),
        e["paid_to"].as_str().unwrap_or("?"),
        e["paid_amount"],
        e["unallocated_amount"],
        e["reference_no"].as_str().unwrap_or("?"),
        e["references"]
            .as_array()
            .map(|r| r
                .iter()
                .map(|x| format!(
                    "{}:{}={}",
                    x["reference_doctype"].as_str().unwrap_or("?"),
                    x["reference_name"].as_str().unwrap_or("?"),
                    x["allocated_amount"]
                ))
                .collect::<Vec<_>>()
                .join(","))
            .unwrap_or_default(),
    )
}

fn show_finding(f: &Finding) -> String {
    format!(
        "{} op {:?} entry {:?} source {:?} erp {:?} day {} — {}",
        f.verdict.as_str(),
        f.operation,
        f.entry,
        f.source_amount,
        f.erp_amount,
        f.day,
        f.detail
    )
}

/// The findings about `uids` (by operation) or naming any of `entries`, by operation id (or
/// entry name); every finding is printed.
fn mine(
    findings: &[Finding],
    uids: &[&str],
    entries: &BTreeSet<String>,
) -> BTreeMap<String, Vec<Finding>> {
    let mut out: BTreeMap<String, Vec<Finding>> = BTreeMap::new();
    for f in findings {
        eprintln!("  finding: {}", show_finding(f));
        let by_op = f.operation.as_deref().filter(|o| uids.contains(o));
        let names_mine = f
            .entry
            .as_deref()
            .is_some_and(|e| e.split(',').any(|n| entries.contains(n.trim())));
        if let Some(op) = by_op {
            out.entry(op.to_string()).or_default().push(f.clone());
        } else if names_mine {
            out.entry(f.entry.clone().unwrap())
                .or_default()
                .push(f.clone());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real ERPNext 15 (see the module comment)"]
async fn real_erpnext_reverses_a_refund_and_the_audit_agrees() {
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
    let customer = env("PAYSYNC_REAL_CUSTOMER");
    let mode = std::env::var("PAYSYNC_REAL_MODE_OF_PAYMENT").unwrap_or_else(|_| "Mobbex".into());

    // What ERPNext itself says the accounts are: the customer's receivable, and the mode of
    // payment's default account for the company (the account's paid_to: none configured).
    let receivable = erp
        .get(
            "/api/method/erpnext.accounts.party.get_party_account",
            &[
                ("party_type", "Customer".into()),
                ("party", customer.clone()),
                ("company", company.clone()),
            ],
        )
        .await["message"]
        .as_str()
        .unwrap()
        .to_string();
    let mop = erp.doc("Mode of Payment", &mode).await;
    let bank = mop["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["company"] == company.as_str())
        .and_then(|a| a["default_account"].as_str())
        .expect("the mode of payment has a default account for the company")
        .to_string();
    eprintln!("customer {customer}: receivable {receivable}; {mode}: bank {bank}");

    // Mobbex: the simulator; paysync wired to it and to the real ERPNext.
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
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
    .account(
        AccountConfig::for_simulator("main", &sim)
            .company(&company)
            .mode_of_payment(&mode)
            .line("reverse_refunds = true"),
    )
    .write(&config_path)
    .unwrap();
    let settings = paysync::config::load_with_env(&config_path, &Default::default()).unwrap();
    assert!(settings.accounts[0].reverse_refunds);
    let today = Timestamp::now()
        .to_zoned(settings.daemon.timezone.clone())
        .date();
    let app = paysync::app::App::build(settings).await.unwrap();

    // A fresh order of 1000, paid 600 (initial, allocated) then 300 (additional).
    let so = erp
        .post(
            "/api/resource/Sales Order",
            json!({
                "docstatus": 1, "company": company, "customer": customer, "currency": "ARS",
                "transaction_date": today.to_string(), "delivery_date": "2026-12-31",
                "items": [{"item_code": env("PAYSYNC_REAL_ITEM"), "qty": 1, "rate": 1000, "delivery_date": "2026-12-31"}],
            }),
        )
        .await["data"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let tag = format!("{:x}", Timestamp::now().as_millisecond());
    let (first, second) = (format!("rev-{tag}-1"), format!("rev-{tag}-2"));
    let now = Timestamp::now();
    sim.add_operation(paid_op(
        &first,
        &so,
        600,
        now - SignedDuration::from_mins(10),
    ));
    sim.add_operation(paid_op(
        &second,
        &so,
        300,
        now - SignedDuration::from_mins(5),
    ));
    eprintln!("order {so}; operations {first} (600), {second} (300)");

    let s = sync_with(&app, today, today, false).await;
    eprintln!("sync 1: {s}");
    assert_eq!(s.errors(), 0, "{s}");
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    assert_eq!(s.get(DecisionKind::BookedAdditional), 1, "{s}");
    let initial = erp.only_entry(&first).await;
    let additional = erp.only_entry(&second).await;
    eprintln!("initial:    {}", show(&initial));
    eprintln!("additional: {}", show(&additional));
    for e in [&initial, &additional] {
        assert_eq!(e["docstatus"], 1);
        assert_eq!(e["payment_type"], "Receive");
        assert_eq!(e["party"], customer.as_str());
        assert_eq!(e["paid_to"], bank.as_str(), "booked to the bank");
        assert_eq!(e["paid_from"], receivable.as_str());
    }
    assert_eq!(dec(&initial["paid_amount"]), Decimal::from(600));
    assert_eq!(dec(&additional["paid_amount"]), Decimal::from(300));
    let refs = initial["references"].as_array().unwrap();
    assert_eq!(refs.len(), 1, "initial: allocated to the order");
    assert_eq!(refs[0]["reference_name"], so.as_str());
    assert_eq!(dec(&refs[0]["allocated_amount"]), Decimal::from(600));
    assert!(additional["references"].as_array().unwrap().is_empty());
    let order_before = erp.doc("Sales Order", &so).await;
    eprintln!("order {so}: advance_paid {}", order_before["advance_paid"]);
    assert_eq!(dec(&order_before["advance_paid"]), Decimal::from(600));

    // The first payment refunded in Mobbex; synced again.
    let before = erp.all_entries(&company).await;
    assert!(sim.set_mobbex_status(&first, 602, Timestamp::now()));
    let s = sync_with(&app, today, today, false).await;
    eprintln!("sync 2 (refunded): {s}");
    for u in &s.unresolved {
        eprintln!("  {} {}: {}", u.uid, u.kind, u.reason);
    }
    assert_eq!(s.errors(), 0, "{s}");
    assert_eq!(s.unresolved(), 0, "{s}");
    let after = erp.all_entries(&company).await;
    let new: Vec<&String> = after.difference(&before).collect();
    assert_eq!(new.len(), 1, "exactly one new entry: {new:?}");
    let reversal = erp.doc("Payment Entry", new[0]).await;
    eprintln!("reversal:   {}", show(&reversal));
    let name = reversal["name"].as_str().unwrap().to_string();
    assert_eq!(reversal["payment_type"], "Pay");
    assert_eq!(reversal["docstatus"], 1, "submitted");
    assert_eq!(reversal["party_type"], "Customer");
    assert_eq!(reversal["party"], customer.as_str());
    assert_eq!(reversal["company"], company.as_str());
    assert_eq!(reversal["mode_of_payment"], mode.as_str());
    assert_eq!(reversal["paid_from"], bank.as_str(), "from the bank");
    assert_eq!(reversal["paid_from"], initial["paid_to"]);
    assert_eq!(
        reversal["paid_to"],
        receivable.as_str(),
        "to the receivable"
    );
    assert_eq!(dec(&reversal["paid_amount"]), Decimal::from(600));
    assert_eq!(dec(&reversal["received_amount"]), Decimal::from(600));
    assert_eq!(dec(&reversal["unallocated_amount"]), Decimal::from(600));
    assert!(
        reversal["references"].as_array().unwrap().is_empty(),
        "unallocated: {}",
        reversal["references"]
    );
    assert_eq!(
        reversal["reference_no"],
        format!("{first}:refund:1").as_str()
    );
    assert_eq!(reversal["posting_date"], today.to_string().as_str());
    assert_eq!(reversal["reference_date"], today.to_string().as_str());

    let row = &app
        .ledger
        .rows("main", std::slice::from_ref(&first))
        .await
        .unwrap()[&first];
    eprintln!("ledger {first}: {} — {}", row.decision, row.reason);
    assert!(
        row.reason.contains(&name),
        "the ledger names the reversal: {}",
        row.reason
    );

    // Its GL: the receivable debited, the bank credited, by the amount.
    let gl = erp
        .list(
            "GL Entry",
            json!([
                ["voucher_type", "=", "Payment Entry"],
                ["voucher_no", "=", name],
                ["is_cancelled", "=", 0]
            ]),
            json!([
                "account",
                "debit",
                "credit",
                "party_type",
                "party",
                "against_voucher"
            ]),
        )
        .await;
    for g in &gl {
        eprintln!(
            "  GL {name}: {} debit {} credit {} party {} against {}",
            g["account"], g["debit"], g["credit"], g["party"], g["against_voucher"]
        );
    }
    let mut rows: Vec<(String, Decimal, Decimal)> = gl
        .iter()
        .map(|g| {
            (
                g["account"].as_str().unwrap().to_string(),
                dec(&g["debit"]),
                dec(&g["credit"]),
            )
        })
        .collect();
    rows.sort();
    let mut want = vec![
        (receivable.clone(), Decimal::from(600), Decimal::ZERO),
        (bank.clone(), Decimal::ZERO, Decimal::from(600)),
    ];
    want.sort();
    assert_eq!(rows, want, "GL of {name}");
    let debtor_row = gl
        .iter()
        .find(|g| g["account"] == receivable.as_str())
        .unwrap();
    assert_eq!(debtor_row["party"], customer.as_str());

    // Nothing else changed: the order's advance, both booked entries.
    let order_after = erp.doc("Sales Order", &so).await;
    eprintln!(
        "order {so}: advance_paid {} after the reversal",
        order_after["advance_paid"]
    );
    assert_eq!(order_after["advance_paid"], order_before["advance_paid"]);
    assert_eq!(
        erp.doc("Payment Entry", additional["name"].as_str().unwrap())
            .await,
        additional,
        "the additional payment's entry is unchanged"
    );
    assert_eq!(
        erp.doc("Payment Entry", initial["name"].as_str().unwrap())
            .await,
        initial,
        "the refunded payment's entry is unchanged"
    );

    // Again: nothing more.
    let s = sync_with(&app, today, today, false).await;
    eprintln!("sync 3: {s}");
    assert_eq!(s.errors(), 0, "{s}");
    assert_eq!(
        erp.all_entries(&company).await,
        after,
        "a rerun creates nothing"
    );

    // The audit of today: both operations ok, nothing about their entries.
    let ours: BTreeSet<String> = [
        initial["name"].as_str().unwrap().to_string(),
        additional["name"].as_str().unwrap().to_string(),
        name.clone(),
    ]
    .into();
    let uids = [first.as_str(), second.as_str()];
    let report = paysync::audit::audit_account(&app, &app.accounts[0], today, today, None)
        .await
        .unwrap();
    eprintln!(
        "audit {today}: {} finding(s), {} unreadable",
        report.findings.len(),
        report.unreadable
    );
    assert_eq!(report.unreadable, 0);
    let found = mine(&report.findings, &uids, &ours);
    let verdicts: BTreeMap<&str, Vec<&str>> = found
        .iter()
        .map(|(k, v)| (k.as_str(), v.iter().map(|f| f.verdict.as_str()).collect()))
        .collect();
    assert_eq!(
        verdicts,
        BTreeMap::from([(first.as_str(), vec!["ok"]), (second.as_str(), vec!["ok"])]),
        "{found:?}"
    );
    assert_eq!(
        found[&first][0].entry.as_deref(),
        initial["name"].as_str(),
        "{found:?}"
    );
    assert_eq!(
        found[&second][0].entry.as_deref(),
        additional["name"].as_str(),
        "{found:?}"
    );

    // A duplicate of the additional payment typed in by hand, submitted.
    let dup = erp
        .post(
            "/api/resource/Payment Entry",
            json!({
                "docstatus": 1, "payment_type": "Receive", "party_type": "Customer",
                "party": customer, "company": company, "mode_of_payment": mode,
                "posting_date": today.to_string(), "paid_to": bank,
                "paid_amount": 300, "received_amount": 300,
                "reference_no": second, "reference_date": today.to_string(),
            }),
        )
        .await["data"]
        .clone();
    eprintln!("planted:    {}", show(&dup));
    assert_eq!(dup["docstatus"], 1);
    let dup_name = dup["name"].as_str().unwrap().to_string();
    let mut ours = ours;
    ours.insert(dup_name.clone());
    let report = paysync::audit::audit_account(&app, &app.accounts[0], today, today, None)
        .await
        .unwrap();
    eprintln!(
        "audit {today} after the duplicate: {} finding(s)",
        report.findings.len()
    );
    let found = mine(&report.findings, &uids, &ours);
    let verdicts: BTreeMap<&str, Vec<&str>> = found
        .iter()
        .map(|(k, v)| (k.as_str(), v.iter().map(|f| f.verdict.as_str()).collect()))
        .collect();
    assert_eq!(
        verdicts,
        BTreeMap::from([
            (first.as_str(), vec!["ok"]),
            (second.as_str(), vec!["duplicate"])
        ]),
        "{found:?}"
    );
    let named = found[&second][0].entry.clone().unwrap_or_default();
    assert!(
        named.contains(&dup_name) && named.contains(additional["name"].as_str().unwrap()),
        "the duplicate names both entries: {named}"
    );
}
