//! The ERPNext (Frappe REST v1) client and its wire format.
//!
//! Facts: `shared/spec/erpnext-api.md` and the recordings in `shared/spec/erpnext-real/`:
//! - auth header `Authorization: token KEY:SECRET` (marked sensitive), `Accept: application/json`;
//! - lists: `GET /api/resource/{DocType}?filters=[...]&fields=[...]&limit_page_length=0`, answer
//!   `{"data":[...]}`; names that do not exist are simply absent (recordings 10, 16, 23);
//! - child-table filters are 4-element (`["Payment Entry Reference","reference_name","in",[..]]`) and
//!   child columns come back without the table prefix (23);
//! - lists include cancelled documents unless `docstatus` is filtered (26);
//! - create: `POST /api/resource/Payment Entry` with `docstatus: 1`; amounts as JSON **numbers**
//!   (strings crash the server, 24a), rounded to 2 decimals (24c); answer `{"data":{...}}`;
//! - `paid_to` and `received_amount` must be sent (03a, 03b); `reference_no`/`reference_date` too (03c);
//! - fees go in `deductions` rows `{account, cost_center, amount}` with `paid_amount` =
//!   `received_amount` = the net (29f); sent only when there are some.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;
use url::Url;

use super::frappe_error;
use super::{CreatedEntry, Erp, ErpError};
use crate::domain::reversal::ReversalEntry;
use crate::domain::{ExistingEntry, OperationEntry, PaymentEntry, SalesOrder};
use crate::retry::{RetryPolicy, retrying};

/// Names per batched lookup. Lookups go in a POST body (`frappe.client.get_list`), so no URL
/// limit applies (gunicorn refuses a request line past 4 KB: 100 names in a GET was the most);
/// 500 names make a body of ~15 KB and one indexed `IN` query on the server.
const BATCH: usize = 500;

mod audit;
mod guard;
mod reversal;

pub struct ErpNextClient {
    http: reqwest::Client,
    base: Url,
    retry: RetryPolicy,
    /// Whether the server-side duplicate guard is installed (see `guard.rs`), once known.
    guard: tokio::sync::OnceCell<bool>,
}

impl ErpNextClient {
    pub fn new(
        base: Url,
        api_key: &SecretString,
        api_secret: &SecretString,
        timeout: Duration,
    ) -> Result<ErpNextClient, ErpError> {
        let mut auth = HeaderValue::from_str(&format!(
            "token {}:{}",
            api_key.expose_secret(),
            api_secret.expose_secret()
        ))
        .map_err(|_| {
            ErpError::Malformed(
                "erp.api_key or erp.api_secret holds characters not allowed in a header".into(),
            )
        })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("authorization", auth);
        headers.insert("accept", HeaderValue::from_static("application/json"));
        let http = crate::http_client::client_builder_for(&base)
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .user_agent(concat!("paysync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ErpError::Transport(e.to_string()))?;
        Ok(ErpNextClient {
            http,
            base,
            retry: RetryPolicy::default(),
            guard: tokio::sync::OnceCell::new(),
        })
    }

    /// Use this retry policy for reads (writes are never retried here).
    pub fn with_retry(mut self, retry: RetryPolicy) -> ErpNextClient {
        self.retry = retry;
        self
    }

    /// A read, retried on passing failures (reads are idempotent).
    async fn read<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ErpError> {
        retrying(&self.retry, "erpnext", endpoint, || async {
            let r = req
                .try_clone()
                .ok_or_else(|| ErpError::Malformed("request cannot be repeated".into()))?;
            self.send(endpoint, r).await
        })
        .await
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty();
            for s in segments {
                p.push(s);
            }
        }
        u
    }

    /// Send a create; its answer must be a submitted entry.
    async fn created(
        &self,
        endpoint: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<CreatedEntry, ErpError> {
        let created: DataOne<WireCreated> = self.send(endpoint, req).await?;
        if created.data.docstatus.unwrap_or(1) != 1 {
            return Err(ErpError::Malformed(format!(
                "entry {} was saved but not submitted (docstatus {:?})",
                created.data.name, created.data.docstatus
            )));
        }
        Ok(CreatedEntry {
            name: created.data.name,
        })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ErpError> {
        let started = std::time::Instant::now();
        let sent = req.send().await;
        let status_label = match &sent {
            Ok(r) => r.status().as_u16().to_string(),
            Err(e) if e.is_timeout() => "timeout".to_string(),
            Err(_) => "error".to_string(),
        };
        crate::metrics::api_request("erpnext", endpoint, &status_label, started.elapsed());
        let resp = sent.map_err(transport)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::retry::parse_retry_after);
        let body = resp.bytes().await.map_err(transport)?;
        if !(200..300).contains(&status) {
            return Err(frappe_error::from_response(
                status,
                retry_after,
                &String::from_utf8_lossy(&body),
            ));
        }
        serde_json::from_slice(&body).map_err(|e| {
            ErpError::Malformed(format!(
                "{e}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))
        })
    }

    async fn list<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        doctype: &str,
        filters: serde_json::Value,
        fields: &[&str],
    ) -> Result<Vec<T>, ErpError> {
        // `GET /api/resource/{doctype}` is this same method (Frappe's `api/v1.py`
        // `document_list` calls `frappe.client.get_list`); as a POST its filters travel in the
        // body, whatever their length (recording 26). A read: safe to send again.
        let req = self
            .http
            .post(self.url(&["api", "method", "frappe.client.get_list"]))
            .json(&json!({
                "doctype": doctype,
                "filters": filters,
                "fields": fields,
                "limit_page_length": 0,
            }));
        let list: Message<Vec<T>> = self.read(endpoint, req).await?;
        Ok(list.message)
    }
}

fn transport(e: reqwest::Error) -> ErpError {
    let text = crate::http_client::describe_reqwest(&e);
    if e.is_timeout() {
        ErpError::Timeout(text)
    } else if e.is_connect() {
        ErpError::Connect(text)
    } else {
        ErpError::Transport(text)
    }
}

#[derive(Deserialize)]
struct DataOne<T> {
    data: T,
}
#[derive(Deserialize)]
struct Message<T> {
    message: T,
}

/// Frappe sends numbers as JSON floats (`600.0`); read their text so no `f64` rounding sneaks in.
mod dec {
    use super::*;
    use serde::Deserializer;
    use std::str::FromStr;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let raw = Option::<Box<RawValue>>::deserialize(d)?;
        let Some(raw) = raw else {
            return Ok(Decimal::ZERO);
        };
        let t = raw.get().trim().trim_matches('"');
        if t == "null" || t.is_empty() {
            return Ok(Decimal::ZERO);
        }
        Decimal::from_str(t)
            .or_else(|_| Decimal::from_scientific(t))
            .map_err(|_| serde::de::Error::custom(format!("{t} is not a number")))
    }
}

#[derive(Deserialize)]
struct WireSalesOrder {
    name: String,
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    company: Option<String>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    docstatus: Option<i32>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default, with = "dec")]
    grand_total: Decimal,
    #[serde(default, with = "dec")]
    rounded_total: Decimal,
    #[serde(default, with = "dec")]
    advance_paid: Decimal,
    #[serde(default, with = "dec")]
    per_billed: Decimal,
    /// The order-key field when it is not `name` (`po_no`, a custom field).
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// A field's value as the text an order key is compared with: a Data field's string, an Int
/// field's number; empty and null hold no key.
fn field_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[derive(Deserialize)]
struct WireEntryRef {
    name: String,
    reference_no: Option<String>,
    docstatus: Option<i32>,
}

#[derive(Deserialize)]
struct WireOrderRef {
    reference_name: Option<String>,
}

#[derive(Deserialize)]
struct WireModeOfPayment {
    #[serde(default)]
    accounts: Vec<WireModeAccount>,
}
#[derive(Deserialize)]
struct WireModeAccount {
    company: Option<String>,
    default_account: Option<String>,
}

#[derive(Deserialize)]
struct WireCreated {
    name: String,
    docstatus: Option<i32>,
}

/// The POST body. Amounts are emitted as JSON numbers from their exact decimal text.
#[derive(Serialize)]
struct WireNewEntry<'a> {
    /// Absent: the DocType's default series.
    #[serde(skip_serializing_if = "Option::is_none")]
    naming_series: Option<&'a str>,
    docstatus: u8,
    payment_type: &'static str,
    party_type: &'static str,
    party: &'a str,
    company: &'a str,
    mode_of_payment: &'a str,
    posting_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    paid_from: Option<&'a str>,
    paid_to: &'a str,
    paid_amount: Box<RawValue>,
    received_amount: Box<RawValue>,
    reference_no: &'a str,
    reference_date: String,
    references: Vec<WireNewRef<'a>>,
    /// The gateway's fees (recording 29f's shape); absent when there are none, so an entry
    /// without fees is the body it always was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    deductions: Vec<WireDeduction<'a>>,
    /// The duplicate guard's value, when the guard is installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    paysync_operation: Option<&'a str>,
}

#[derive(Serialize)]
struct WireNewRef<'a> {
    reference_doctype: &'static str,
    reference_name: &'a str,
    allocated_amount: Box<RawValue>,
}

/// A Payment Entry Deduction row. `description` is a field of that child table in v15 (next to
/// `is_exchange_gain_loss`, which 29f's answer shows); Frappe ignores keys a DocType lacks (25a).
#[derive(Serialize)]
struct WireDeduction<'a> {
    account: &'a str,
    cost_center: &'a str,
    amount: Box<RawValue>,
    description: &'a str,
}

/// A decimal as a JSON number, rounded half away from zero to 2 places (ERPNext's precision).
pub fn json_amount(d: Decimal) -> Box<RawValue> {
    let r = d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    RawValue::from_string(r.normalize().to_string()).expect("a decimal is a JSON number")
}

/// The exact body paysync posts for an entry (also shown by `--dry-run`).
pub fn entry_body(e: &PaymentEntry) -> String {
    entry_body_guarded(e, false)
}

/// [`entry_body`], with the operation id in the duplicate guard's field when it is installed.
pub fn entry_body_guarded(e: &PaymentEntry, guard: bool) -> String {
    let body = WireNewEntry {
        paysync_operation: guard.then_some(e.guard_key()),
        naming_series: e.naming_series.as_deref(),
        docstatus: 1,
        payment_type: "Receive",
        party_type: "Customer",
        party: &e.party,
        company: &e.company,
        mode_of_payment: &e.mode_of_payment,
        posting_date: e.posting_date.to_string(),
        paid_from: e.paid_from.as_deref(),
        paid_to: &e.paid_to,
        paid_amount: json_amount(e.paid_amount),
        received_amount: json_amount(e.received_amount),
        reference_no: &e.reference_no,
        reference_date: e.reference_date.to_string(),
        references: e
            .allocation
            .iter()
            .map(|a| WireNewRef {
                reference_doctype: "Sales Order",
                reference_name: &a.sales_order,
                allocated_amount: json_amount(a.allocated_amount),
            })
            .collect(),
        deductions: e
            .deductions
            .iter()
            .map(|d| WireDeduction {
                account: &d.account,
                cost_center: &d.cost_center,
                amount: json_amount(d.amount),
                description: &d.description,
            })
            .collect(),
    };
    serde_json::to_string(&body).expect("serializable")
}

#[async_trait]
impl Erp for ErpNextClient {
    fn api_name(&self) -> &'static str {
        "erpnext"
    }

    async fn sales_orders(
        &self,
        field: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Vec<SalesOrder>>, ErpError> {
        // MariaDB compares with the column's collation: case and trailing spaces do not count,
        // so a row is matched back to every key asked that is equal that way.
        let fold = |s: &str| s.trim_end().to_lowercase();
        let mut asked: HashMap<String, Vec<&String>> = HashMap::new();
        for k in keys {
            asked.entry(fold(k)).or_default().push(k);
        }
        let mut fields = vec![
            "name",
            "customer",
            "company",
            "currency",
            "docstatus",
            "status",
            "grand_total",
            "rounded_total",
            "advance_paid",
            "per_billed",
        ];
        if field != "name" {
            fields.push(field);
        }
        let mut out: HashMap<String, Vec<SalesOrder>> = HashMap::new();
        for chunk in keys.chunks(BATCH) {
            let rows: Vec<WireSalesOrder> = self
                .list(
                    "list_sales_orders",
                    "Sales Order",
                    json!([[field, "in", chunk]]),
                    &fields,
                )
                .await?;
            for r in rows {
                let held = match field {
                    "name" => Some(r.name.clone()),
                    _ => r.other.get(field).and_then(field_text),
                };
                let Some(held) = held else { continue };
                let order = SalesOrder {
                    name: r.name,
                    customer: r.customer.unwrap_or_default(),
                    company: r.company.unwrap_or_default(),
                    currency: r.currency.unwrap_or_default(),
                    docstatus: r.docstatus.unwrap_or(0),
                    status: r.status.unwrap_or_default(),
                    grand_total: r.grand_total,
                    rounded_total: r.rounded_total,
                    advance_paid: r.advance_paid,
                    per_billed: r.per_billed,
                };
                for key in asked.get(&fold(&held)).into_iter().flatten() {
                    let holders = out.entry((*key).clone()).or_default();
                    if !holders.iter().any(|o| o.name == order.name) {
                        holders.push(order.clone());
                    }
                }
            }
        }
        Ok(out)
    }

    async fn orders_with_entries(&self, names: &[String]) -> Result<HashSet<String>, ErpError> {
        let mut out = HashSet::new();
        for chunk in names.chunks(BATCH) {
            let rows: Vec<WireOrderRef> = self
                .list(
                    "list_entries_by_order",
                    "Payment Entry",
                    json!([
                        [
                            "Payment Entry Reference",
                            "reference_doctype",
                            "=",
                            "Sales Order"
                        ],
                        ["Payment Entry Reference", "reference_name", "in", chunk],
                        ["docstatus", "=", 1]
                    ]),
                    &["name", "`tabPayment Entry Reference`.reference_name"],
                )
                .await?;
            out.extend(rows.into_iter().filter_map(|r| r.reference_name));
        }
        Ok(out)
    }

    async fn entries_by_reference(
        &self,
        refs: &[String],
    ) -> Result<HashMap<String, ExistingEntry>, ErpError> {
        let mut out = HashMap::new();
        for chunk in refs.chunks(BATCH) {
            let rows: Vec<WireEntryRef> = self
                .list(
                    "list_entries_by_reference",
                    "Payment Entry",
                    json!([["reference_no", "in", chunk], ["docstatus", "<", 2]]),
                    &["name", "reference_no", "docstatus"],
                )
                .await?;
            for r in rows {
                let Some(no) = r.reference_no else { continue };
                // MariaDB compares case-insensitively: map the answer back to the id we asked for.
                let key = chunk
                    .iter()
                    .find(|c| **c == no)
                    .or_else(|| chunk.iter().find(|c| c.eq_ignore_ascii_case(&no)))
                    .cloned()
                    .unwrap_or(no.clone());
                let docstatus = r.docstatus.unwrap_or(0);
                // Prefer a submitted entry over a draft when both exist.
                let keep = out
                    .get(&key)
                    .is_none_or(|e: &ExistingEntry| e.docstatus < docstatus);
                if keep {
                    out.insert(
                        key,
                        ExistingEntry {
                            name: r.name,
                            reference_no: no,
                            docstatus,
                        },
                    );
                }
            }
        }
        Ok(out)
    }

    async fn mode_of_payment_account(&self, mode: &str, company: &str) -> Result<String, ErpError> {
        let req = self
            .http
            .get(self.url(&["api", "resource", "Mode of Payment", mode]));
        let m: DataOne<WireModeOfPayment> = self.read("get_mode_of_payment", req).await?;
        m.data
            .accounts
            .into_iter()
            .find(|a| a.company.as_deref() == Some(company))
            .and_then(|a| a.default_account)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| ErpError::Rejected {
                status: 200,
                exc_type: "Configuration".into(),
                about_order: false,
                message: format!(
                    "Mode of Payment {mode:?} has no default account for company {company:?}: set one in ERPNext or set paid_to in sync.toml"
                ),
            })
    }

    async fn create_entry(&self, entry: &PaymentEntry) -> Result<CreatedEntry, ErpError> {
        // Unknown (the lookup failed): send without it; the check-then-insert still holds.
        let guard = self.guard_detect().await.unwrap_or(false);
        let req = self
            .http
            .post(self.url(&["api", "resource", "Payment Entry"]))
            .header("content-type", "application/json")
            .body(entry_body_guarded(entry, guard));
        self.created("create_payment_entry", req).await
    }

    async fn create_reversal(&self, entry: &ReversalEntry) -> Result<CreatedEntry, ErpError> {
        self.post_reversal(entry).await
    }

    async fn audit_entries(
        &self,
        q: &crate::erp::AuditQuery<'_>,
    ) -> Result<Vec<crate::domain::audit::AuditEntry>, ErpError> {
        self.read_audit_entries(q).await
    }

    async fn guard_installed(&self) -> Result<bool, ErpError> {
        self.guard_detect().await
    }

    async fn install_guard(&self) -> Result<bool, ErpError> {
        let created = self.guard_install().await?;
        let _ = self.guard.set(true);
        Ok(created)
    }

    async fn entry_by_guard(&self, guard_value: &str) -> Result<Option<ExistingEntry>, ErpError> {
        self.guard_holder(guard_value).await
    }

    async fn entries_of_operation(
        &self,
        reference_no: &str,
    ) -> Result<Vec<OperationEntry>, ErpError> {
        self.operation_entries(reference_no).await
    }

    async fn whoami(&self) -> Result<String, ErpError> {
        let req = self
            .http
            .get(self.url(&["api", "method", "frappe.auth.get_logged_user"]));
        let m: Message<String> = self.read("get_logged_user", req).await?;
        Ok(m.message)
    }
}

#[cfg(test)]
mod tests;
