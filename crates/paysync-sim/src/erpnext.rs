//! The simulated ERPNext (Frappe REST v1), answering like the recordings in
//! `shared/spec/erpnext-real/`: same status codes, `exc_type`s, message texts and JSON shapes.
//!
//! Payment Entry validation follows the real order: amounts sent as strings crash (500 TypeError,
//! 24a); Frappe's link checks (missing → `LinkValidationError` "Could not find Row #1: Name: X", 09;
//! cancelled → `CancelledLinkError`, 22b); then ERPNext's `validate()`: mandatory fields (03a–c),
//! reference documents (draft order 17b, other customer 20b), the orders-to-be-billed check
//! ("has already been fully paid.", 18b/19c), over-allocation (08), and at submit the difference
//! amount (21). `reference_no` is not unique (07b). Submitting adds allocations to `advance_paid` (04).

// Handlers return `Result<_, Response>` to short-circuit with an HTTP answer; size is irrelevant here.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::str::FromStr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::civil::Date;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{Shared, SimPaymentEntry, SimReference, SimSalesOrder, State, faults, frappe_number};

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/api/resource/{doctype}", get(list).post(insert))
        .route(
            "/api/resource/{doctype}/{name}",
            get(get_doc).put(update_doc).delete(delete_doc),
        )
        .route("/api/method/{method}", get(method).post(method))
        .with_state(state)
}

pub(crate) fn json_body(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// A Frappe error body like the recordings: `exception`, `exc_type`, `exc` (a JSON string holding
/// a traceback list), and `_server_messages` (a JSON string of a list of JSON strings).
pub(crate) fn frappe_error(
    status: StatusCode,
    exc_type: &str,
    message: Option<&str>,
    exc_source: bool,
) -> Response {
    let module = "frappe.exceptions";
    let exception = match message {
        Some(m) => format!("{module}.{exc_type}: {m}"),
        None => format!("{module}.{exc_type}"),
    };
    let traceback = format!(
        "Traceback (most recent call last):\n  File \"apps/frappe/frappe/app.py\", line 115, in application\n    response = frappe.api.handle(request)\n{exception}\n"
    );
    let mut body = json!({
        "exception": exception,
        "exc_type": exc_type,
        "exc": serde_json::to_string(&vec![traceback]).expect("strings"),
    });
    if exc_source {
        body["_exc_source"] = json!("erpnext (app)");
    }
    if let Some(m) = message {
        let inner = json!({
            "message": m,
            "title": "Message",
            "indicator": "red",
            "raise_exception": 1,
            "__frappe_exc_id": format!("{:056x}", m.len() as u128 * 0x9e3779b97f4a7c15u128),
        })
        .to_string();
        body["_server_messages"] = json!(serde_json::to_string(&vec![inner]).expect("strings"));
    }
    json_body(status, body)
}

fn validation(message: &str) -> Response {
    frappe_error(
        StatusCode::EXPECTATION_FAILED,
        "ValidationError",
        Some(message),
        true,
    )
}

enum Kind {
    Read,
    Write,
    /// `POST /api/resource/Payment Entry` (its drops are decided by `faults::before_commit`).
    Create,
}

/// Auth, latency and faults. `Err` is the response to send.
async fn gate(
    state: &Shared,
    headers: &HeaderMap,
    endpoint: &str,
    kind: Kind,
) -> Result<(), Response> {
    let (latency, key, secret) = {
        let mut s = state.lock().expect("poisoned");
        s.count(endpoint);
        let f = &s.opts.faults;
        let lat = match kind {
            Kind::Read => f.erp_read_latency,
            Kind::Write | Kind::Create => f.erp_write_latency,
        };
        (
            lat,
            s.opts.erp_api_key.clone(),
            s.opts.erp_api_secret.clone(),
        )
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth.is_empty() {
        // Guest (recording 11c).
        let path = endpoint.split_once(' ').map(|(_, p)| p).unwrap_or(endpoint);
        let doctype = path
            .trim_start_matches("/api/resource/")
            .split('/')
            .next()
            .unwrap_or("");
        let mut r = frappe_error(
            StatusCode::FORBIDDEN,
            "PermissionError",
            Some(&format!(
                "User <strong>Guest</strong> does not have doctype access via role permission for document <strong>{doctype}</strong>"
            )),
            false,
        );
        // Recording 11c also carries `_error_message`.
        if let Ok(bytes) = axum::body::to_bytes(std::mem::take(r.body_mut()), 1 << 20).await
            && let Ok(mut v) = serde_json::from_slice::<Value>(&bytes)
        {
            v["_error_message"] = json!(format!("No permission for {doctype}"));
            return Err(json_body(StatusCode::FORBIDDEN, v));
        }
        return Err(r);
    }
    if auth != format!("token {key}:{secret}") {
        return Err(frappe_error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationError",
            None,
            false,
        ));
    }
    let mut s = state.lock().expect("poisoned");
    let f = s.opts.faults.clone();
    if s.hit(f.erp_429_rate) {
        if s.hit(f.erp_429_no_retry_after_rate) {
            s.note_fault("erp 429 no retry-after");
            return Err(faults::too_many_requests(None));
        }
        s.note_fault("erp 429");
        return Err(faults::too_many_requests(Some(
            f.erp_retry_after_secs.max(1),
        )));
    }
    if s.hit(f.erp_500_rate) {
        s.note_fault("erp 500 deadlock");
        return Err(frappe_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "OperationalError",
            Some("(1213, 'Deadlock found when trying to get lock; try restarting transaction')"),
            false,
        ));
    }
    faults::erp_gate(
        &mut s,
        matches!(kind, Kind::Read),
        matches!(kind, Kind::Create),
    )
}

/// Sleep `erp_hang` with probability `erp_timeout_rate` (after a write committed, or before a read).
async fn maybe_hang(state: &Shared) {
    let hang = {
        let mut s = state.lock().expect("poisoned");
        let f = s.opts.faults.clone();
        let hang = s.hit(f.erp_timeout_rate).then_some(f.erp_hang);
        if hang.is_some() {
            s.note_fault("erp hang");
        }
        hang
    };
    if let Some(h) = hang {
        tokio::time::sleep(h).await;
    }
}

fn parse_json_param(q: &HashMap<String, String>, key: &str) -> Result<Option<Value>, Response> {
    match q.get(key) {
        None => Ok(None),
        Some(s) => serde_json::from_str(s).map(Some).map_err(|e| {
            frappe_error(
                StatusCode::EXPECTATION_FAILED,
                "ValidationError",
                Some(&format!("Invalid {key}: {e}")),
                false,
            )
        }),
    }
}

// ---- documents as JSON ------------------------------------------------------------------

fn so_json(so: &SimSalesOrder) -> Value {
    json!({
        "name": so.name,
        "doctype": "Sales Order",
        "customer": so.customer,
        "customer_name": so.customer,
        "company": so.company,
        "currency": so.currency,
        "conversion_rate": 1.0,
        "docstatus": so.docstatus,
        "status": so.status,
        "transaction_date": so.transaction_date.to_string(),
        "grand_total": frappe_number(so.grand_total),
        "base_grand_total": frappe_number(so.grand_total),
        "rounded_total": frappe_number(so.effective_rounded_total()),
        "base_rounded_total": frappe_number(so.effective_rounded_total()),
        "advance_paid": frappe_number(so.advance_paid),
        "per_billed": frappe_number(so.per_billed),
        "per_delivered": 0.0,
        "billing_status": "Not Billed",
        "party_account_currency": so.currency,
    })
}

fn pe_status(docstatus: i32) -> &'static str {
    match docstatus {
        0 => "Draft",
        1 => "Submitted",
        _ => "Cancelled",
    }
}

fn pe_json(
    pe: &SimPaymentEntry,
    orders: &std::collections::BTreeMap<String, SimSalesOrder>,
) -> Value {
    let total_allocated: Decimal = pe.references.iter().map(|r| r.allocated_amount).sum();
    let refs: Vec<Value> = pe
        .references
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let so = orders.get(&r.reference_name);
            json!({
                "idx": i + 1,
                "doctype": "Payment Entry Reference",
                "parent": pe.name,
                "parentfield": "references",
                "parenttype": "Payment Entry",
                "reference_doctype": r.reference_doctype,
                "reference_name": r.reference_name,
                "allocated_amount": frappe_number(r.allocated_amount),
                "total_amount": so.map(|o| frappe_number(o.grand_total)).unwrap_or(json!(0.0)),
                "outstanding_amount": so.map(|o| frappe_number(o.outstanding())).unwrap_or(json!(0.0)),
                "exchange_rate": 1.0,
            })
        })
        .collect();
    let mut doc = json!({
        "name": pe.name,
        "doctype": "Payment Entry",
        "naming_series": "ACC-PAY-.YYYY.-",
        "docstatus": pe.docstatus,
        "status": pe_status(pe.docstatus),
        "payment_type": pe.payment_type,
        "company": pe.company,
        "party_type": pe.party_type,
        "party": pe.party,
        "party_name": pe.party,
        "title": pe.party,
        "paid_from": pe.paid_from,
        "paid_to": pe.paid_to,
        "mode_of_payment": pe.mode_of_payment,
        "paid_amount": frappe_number(pe.paid_amount),
        "received_amount": frappe_number(pe.received_amount),
        "base_paid_amount": frappe_number(pe.paid_amount.round_dp(2)),
        "base_received_amount": frappe_number(pe.received_amount.round_dp(2)),
        "source_exchange_rate": 1.0,
        "target_exchange_rate": 1.0,
        "total_allocated_amount": frappe_number(total_allocated),
        "unallocated_amount": frappe_number(pe.unallocated_amount.round_dp(2)),
        "difference_amount": 0.0,
        "reference_no": pe.reference_no,
        "reference_date": pe.reference_date.map(|d| d.to_string()),
        "posting_date": pe.posting_date.to_string(),
        "references": refs,
    });
    // Absent when NULL, as Frappe leaves out an unset custom field (U1a).
    if let Some(v) = &pe.paysync_operation {
        doc[super::guard::FIELD] = json!(v);
    }
    doc
}

// ---- filters ----------------------------------------------------------------------------

struct Filter {
    child: bool,
    field: String,
    op: String,
    value: Value,
}

fn parse_filters(v: Option<Value>, doctype: &str) -> Result<Vec<Filter>, String> {
    let mut out = Vec::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                out.push(Filter {
                    child: false,
                    field: k,
                    op: "=".into(),
                    value: v,
                });
            }
        }
        Some(Value::Array(list)) => {
            for f in list {
                let a = f.as_array().ok_or("each filter must be a list")?;
                let (dt, field, op, value) = match a.len() {
                    3 => (doctype.to_string(), &a[0], &a[1], a[2].clone()),
                    4 => (
                        a[0].as_str().unwrap_or(doctype).to_string(),
                        &a[1],
                        &a[2],
                        a[3].clone(),
                    ),
                    _ => return Err("a filter has 3 or 4 elements".into()),
                };
                out.push(Filter {
                    child: dt != doctype,
                    field: field.as_str().ok_or("field must be a string")?.to_string(),
                    op: op
                        .as_str()
                        .ok_or("operator must be a string")?
                        .to_lowercase(),
                    value,
                });
            }
        }
        Some(_) => return Err("filters must be a list or a dict".into()),
    }
    Ok(out)
}

fn as_num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// MariaDB compares strings case-insensitively.
fn eq(a: &Value, b: &Value) -> bool {
    match (as_num(a), as_num(b)) {
        (Some(x), Some(y)) if !matches!((a, b), (Value::String(_), Value::String(_))) => x == y,
        _ => match (a, b) {
            (Value::String(x), Value::String(y)) => x.eq_ignore_ascii_case(y),
            (Value::Null, Value::Null) => true,
            _ => a == b,
        },
    }
}

fn matches(doc: &Value, f: &Filter) -> bool {
    let v = doc.get(&f.field).cloned().unwrap_or(Value::Null);
    let list = || -> Vec<Value> {
        match &f.value {
            Value::Array(a) => a.clone(),
            Value::String(s) => s
                .split(',')
                .map(|x| Value::String(x.trim().into()))
                .collect(),
            other => vec![other.clone()],
        }
    };
    let cmp = |ord: fn(f64, f64) -> bool| match (as_num(&v), as_num(&f.value)) {
        (Some(x), Some(y)) => ord(x, y),
        _ => false,
    };
    match f.op.as_str() {
        "=" => eq(&v, &f.value),
        "!=" => !eq(&v, &f.value),
        "in" => list().iter().any(|x| eq(&v, x)),
        "not in" => !list().iter().any(|x| eq(&v, x)),
        "<" => cmp(|x, y| x < y),
        ">" => cmp(|x, y| x > y),
        "<=" => cmp(|x, y| x <= y),
        ">=" => cmp(|x, y| x >= y),
        "like" => {
            let pat = f
                .value
                .as_str()
                .unwrap_or("")
                .to_lowercase()
                .replace('%', "");
            v.as_str().is_some_and(|s| s.to_lowercase().contains(&pat))
        }
        _ => false,
    }
}

/// The values an `=` or `in` filter on `field` allows (lower-cased), if there is such a filter.
fn key_set(filters: &[&Filter], field: &str) -> Option<std::collections::HashSet<String>> {
    let f = filters
        .iter()
        .find(|f| f.field == field && (f.op == "=" || f.op == "in"))?;
    let values = match &f.value {
        Value::Array(a) => a.clone(),
        Value::String(s) if f.op == "in" => s
            .split(',')
            .map(|x| Value::String(x.trim().into()))
            .collect(),
        other => vec![other.clone()],
    };
    Some(
        values
            .iter()
            .filter_map(|v| v.as_str().map(|s| s.to_lowercase()))
            .collect(),
    )
}

/// `` `tabPayment Entry Reference`.allocated_amount `` → ("allocated_amount", child).
fn column(f: &str) -> (String, bool) {
    if let Some((table, field)) = f.split_once('.') {
        (
            field.trim_matches('`').to_string(),
            table.contains("Reference"),
        )
    } else {
        (f.trim_matches('`').to_string(), false)
    }
}

fn project(parent: &Value, child: Option<&Value>, fields: &[String]) -> Value {
    let mut row = serde_json::Map::new();
    for f in fields {
        if f == "*" {
            if let Some(o) = parent.as_object() {
                for (k, v) in o {
                    if !v.is_array() {
                        row.insert(k.clone(), v.clone());
                    }
                }
            }
            continue;
        }
        let (name, is_child) = column(f);
        let src = if is_child { child } else { Some(parent) };
        row.insert(
            name.clone(),
            src.and_then(|d| d.get(&name))
                .cloned()
                .unwrap_or(Value::Null),
        );
    }
    Value::Object(row)
}

async fn list(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Path(doctype): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = gate(
        &state,
        &headers,
        &format!("GET /api/resource/{doctype}"),
        Kind::Read,
    )
    .await
    {
        return r;
    }
    maybe_hang(&state).await;
    let filters = match parse_json_param(&q, "filters") {
        Ok(f) => f,
        Err(r) => return r,
    };
    let fields: Vec<String> = match parse_json_param(&q, "fields") {
        Ok(Some(Value::Array(a))) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Ok(_) => vec!["name".into()],
        Err(r) => return r,
    };
    let limit: usize = q
        .get("limit_page_length")
        .or_else(|| q.get("limit"))
        .and_then(|l| l.parse().ok())
        .unwrap_or(20);
    let start: usize = q
        .get("limit_start")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let filters = match parse_filters(filters, &doctype) {
        Ok(f) => f,
        Err(e) => return validation(&e),
    };
    let mut s = state.lock().expect("poisoned");
    s.stats.erp_reads += 1;
    let (parent_f, child_f): (Vec<&Filter>, Vec<&Filter>) = filters.iter().partition(|f| !f.child);
    let wants_child = !child_f.is_empty() || fields.iter().any(|f| column(f).1);
    let mut rows = Vec::new();
    match doctype.as_str() {
        "Sales Order" => {
            let names = key_set(&parent_f, "name");
            for so in s.orders.values() {
                if !names
                    .as_ref()
                    .is_none_or(|k| k.contains(&so.name.to_lowercase()))
                {
                    continue;
                }
                let d = so_json(so);
                if parent_f.iter().all(|f| matches(&d, f)) {
                    rows.push(project(&d, None, &fields));
                }
            }
        }
        "Payment Entry" => {
            // Cheap pre-checks on the indexed-like keys before building each document's JSON
            // (the full filters still decide): keeps the simulator fast with thousands of entries.
            let refs = key_set(&parent_f, "reference_no");
            let orders = key_set(&child_f, "reference_name");
            for pe in &s.entries {
                if let Some(k) = &refs
                    && !pe
                        .reference_no
                        .as_ref()
                        .is_some_and(|r| k.contains(&r.to_lowercase()))
                {
                    continue;
                }
                if let Some(k) = &orders
                    && !pe
                        .references
                        .iter()
                        .any(|r| k.contains(&r.reference_name.to_lowercase()))
                {
                    continue;
                }
                let d = pe_json(pe, &s.orders);
                if !parent_f.iter().all(|f| matches(&d, f)) {
                    continue;
                }
                if wants_child {
                    let children = d["references"].as_array().cloned().unwrap_or_default();
                    let matching: Vec<&Value> = children
                        .iter()
                        .filter(|c| child_f.iter().all(|f| matches(c, f)))
                        .collect();
                    if matching.is_empty() && child_f.is_empty() {
                        rows.push(project(&d, None, &fields));
                    }
                    for c in matching {
                        rows.push(project(&d, Some(c), &fields));
                    }
                } else {
                    rows.push(project(&d, None, &fields));
                }
            }
        }
        "Customer" => {
            for c in &s.customers {
                let d = json!({"name": c, "customer_name": c});
                if parent_f.iter().all(|f| matches(&d, f)) {
                    rows.push(project(&d, None, &fields));
                }
            }
        }
        other => {
            return frappe_error(
                StatusCode::NOT_FOUND,
                "DoesNotExistError",
                Some(&format!("DocType {other} not found")),
                false,
            );
        }
    }
    let rows: Vec<Value> = rows
        .into_iter()
        .skip(start)
        .take(if limit == 0 { usize::MAX } else { limit })
        .collect();
    json_body(StatusCode::OK, json!({ "data": rows }))
}

async fn get_doc(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Path((doctype, name)): Path<(String, String)>,
) -> Response {
    if let Err(r) = gate(
        &state,
        &headers,
        &format!("GET /api/resource/{doctype}/{{name}}"),
        Kind::Read,
    )
    .await
    {
        return r;
    }
    maybe_hang(&state).await;
    let mut s = state.lock().expect("poisoned");
    s.stats.erp_reads += 1;
    let found = match doctype.as_str() {
        "Sales Order" => s.orders.get(&name).map(so_json),
        "Custom Field" => super::guard::custom_field(&s, &name),
        "Payment Entry" => s
            .entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| pe_json(e, &s.orders)),
        "Mode of Payment" => s.modes.get(&name).map(|m| {
            json!({
                "name": name, "mode_of_payment": name, "enabled": 1, "docstatus": 0,
                "type": if m.bank { "Bank" } else { "Cash" },
                "doctype": "Mode of Payment",
                "accounts": m.accounts.iter().enumerate().map(|(i, (c, a))| json!({
                    "idx": i + 1, "company": c, "default_account": a, "parent": name,
                    "parentfield": "accounts", "parenttype": "Mode of Payment", "doctype": "Mode of Payment Account"
                })).collect::<Vec<_>>(),
            })
        }),
        "Customer" => s
            .customers
            .iter()
            .find(|c| **c == name)
            .map(|c| json!({"name": c, "customer_name": c, "doctype": "Customer"})),
        _ => None,
    };
    match found {
        Some(d) => json_body(StatusCode::OK, json!({ "data": d })),
        None => frappe_error(
            StatusCode::NOT_FOUND,
            "DoesNotExistError",
            Some(&format!("{doctype} {name} not found")),
            false,
        ),
    }
}

async fn method(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Path(method): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = gate(
        &state,
        &headers,
        &format!("/api/method/{method}"),
        Kind::Read,
    )
    .await
    {
        return r;
    }
    maybe_hang(&state).await;
    let mut s = state.lock().expect("poisoned");
    s.stats.erp_reads += 1;
    match method.as_str() {
        "frappe.auth.get_logged_user" => {
            json_body(StatusCode::OK, json!({"message": "paysync@example.com"}))
        }
        "erpnext.accounts.party.get_party_account" => {
            let party = q.get("party").cloned().unwrap_or_default();
            if !s.customers.contains(&party) {
                return frappe_error(
                    StatusCode::NOT_FOUND,
                    "DoesNotExistError",
                    Some(&format!("Customer {party} not found")),
                    false,
                );
            }
            json_body(StatusCode::OK, json!({"message": s.receivable()}))
        }
        other => frappe_error(
            StatusCode::NOT_FOUND,
            "DoesNotExistError",
            Some(&format!("Method {other} not found")),
            false,
        ),
    }
}

// ---- writes ------------------------------------------------------------------------------

/// A JSON amount as Decimal from its exact text. `Err(true)` when it is a string (the real
/// server crashes on those, recording 24a).
fn amount(v: Option<&Value>) -> Result<Option<Decimal>, bool> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(_)) => Err(true),
        Some(Value::Number(n)) => Decimal::from_str(&n.to_string())
            .or_else(|_| Decimal::from_scientific(&n.to_string()))
            .map(Some)
            .map_err(|_| false),
        Some(_) => Err(false),
    }
}

fn type_error() -> Response {
    frappe_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "TypeError",
        None,
        false,
    )
    .map(|_| {
        axum::body::Body::from(
            json!({
                "exception": "TypeError: bad operand type for abs(): 'str'",
                "exc_type": "TypeError",
                "exc": serde_json::to_string(&vec!["Traceback (most recent call last):\n  File \"apps/frappe/frappe/utils/data.py\", in money_in_words\nTypeError: bad operand type for abs(): 'str'\n"]).unwrap(),
            })
            .to_string(),
        )
    })
}

/// Counts a write as in progress from arrival to answer (for `max_concurrent_writes`).
struct InFlight(Shared);

impl InFlight {
    fn enter(state: &Shared) -> InFlight {
        let mut s = state.lock().expect("poisoned");
        s.writes_in_flight += 1;
        s.stats.max_concurrent_writes = s.stats.max_concurrent_writes.max(s.writes_in_flight);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.lock() {
            s.writes_in_flight -= 1;
        }
    }
}

/// A write goes on when its client goes away (as under gunicorn: the worker finishes the request
/// and commits whether or not anyone is still listening), so it runs in a task of its own.
async fn insert(
    state: AxState<Shared>,
    headers: HeaderMap,
    doctype: Path<String>,
    raw: Bytes,
) -> Response {
    tokio::spawn(insert_detached(state, headers, doctype, raw))
        .await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn insert_detached(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Path(doctype): Path<String>,
    raw: Bytes,
) -> Response {
    let _in_flight = InFlight::enter(&state);
    let kind = if doctype == "Payment Entry" {
        Kind::Create
    } else {
        Kind::Write
    };
    if let Err(r) = gate(
        &state,
        &headers,
        &format!("POST /api/resource/{doctype}"),
        kind,
    )
    .await
    {
        if doctype == "Payment Entry" {
            state.lock().expect("poisoned").stats.erp_writes += 1;
        }
        return r;
    }
    if doctype == "Custom Field" {
        let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        let mut s = state.lock().expect("poisoned");
        return super::guard::create_custom_field(&mut s, &body);
    }
    if doctype != "Payment Entry" {
        return frappe_error(
            StatusCode::FORBIDDEN,
            "PermissionError",
            Some(&format!(
                "Not permitted to insert {doctype} through the simulator"
            )),
            false,
        );
    }
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => return validation(&format!("Invalid JSON: {e}")),
    };
    let after = match faults::before_commit(&state, &body) {
        Ok(after) => after,
        Err(r) => return r,
    };
    let (resp, committed) = {
        let mut s = state.lock().expect("poisoned");
        s.stats.erp_writes += 1;
        faults::commit_create(&mut s, &body)
    };
    if committed && !after.is_targeted() {
        let lost = {
            let mut s = state.lock().expect("poisoned");
            let f = s.opts.faults.clone();
            let lost = s.hit(f.erp_lost_response_rate);
            if lost {
                s.note_fault("erp lost after commit 504 empty");
            }
            lost
        };
        maybe_hang(&state).await;
        if lost {
            // Committed, but the answer never reaches the client (as behind a proxy that gave up).
            return (StatusCode::GATEWAY_TIMEOUT, "").into_response();
        }
    }
    faults::after_commit(&state, resp, committed, after).await
}

pub(super) fn create_payment_entry(s: &mut State, b: &Value) -> Result<Response, Response> {
    let text = |k: &str| b.get(k).and_then(|v| v.as_str()).map(String::from);
    // 24a: string amounts crash before validation.
    let paid_amount = amount(b.get("paid_amount")).map_err(|is_str| {
        if is_str {
            type_error()
        } else {
            validation("Paid Amount must be a number")
        }
    })?;
    let received_amount = amount(b.get("received_amount")).map_err(|is_str| {
        if is_str {
            type_error()
        } else {
            validation("Received Amount must be a number")
        }
    })?;
    let refs_json = b
        .get("references")
        .and_then(|r| r.as_array())
        .cloned()
        .unwrap_or_default();
    let mut refs = Vec::new();
    for r in &refs_json {
        let alloc = amount(r.get("allocated_amount")).map_err(|is_str| {
            if is_str {
                type_error()
            } else {
                validation("Allocated Amount must be a number")
            }
        })?;
        refs.push((
            r.get("reference_doctype")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
            r.get("reference_name")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
            alloc.unwrap_or_default(),
        ));
    }
    let docstatus = b.get("docstatus").and_then(|v| v.as_i64()).unwrap_or(0) as i32;
    let company = text("company").unwrap_or_else(|| s.company.clone());
    let party = text("party").unwrap_or_default();
    let party_type = text("party_type").unwrap_or_default();
    let payment_type = text("payment_type").unwrap_or_else(|| "Receive".into());
    let mode = text("mode_of_payment");
    let paid_to = text("paid_to");
    let paid_from = text("paid_from");

    // Frappe's link validation (before the controller's validate).
    let link = |label: &str, value: &str| {
        frappe_error(
            StatusCode::EXPECTATION_FAILED,
            "LinkValidationError",
            Some(&format!("Could not find {label}: {value}")),
            false,
        )
    };
    if !s.companies.contains(&company) {
        return Err(link("Company", &company));
    }
    if party_type.is_empty() {
        return Err(validation("Party Type is mandatory"));
    }
    if party.is_empty() {
        return Err(validation("Party is mandatory"));
    }
    if !s.customers.contains(&party) {
        return Err(link("Party", &party));
    }
    if let Some(m) = &mode
        && !s.modes.contains_key(m)
    {
        return Err(link("Mode of Payment", m));
    }
    if let Some(a) = &paid_to
        && !s.accounts.contains_key(a)
    {
        return Err(link("Account Paid To", a));
    }
    if let Some(a) = &paid_from
        && !s.accounts.contains_key(a)
    {
        return Err(link("Account Paid From", a));
    }
    for (i, (dt, name, _)) in refs.iter().enumerate() {
        if dt == "Sales Order" {
            match s.orders.get(name) {
                None => return Err(link(&format!("Row #{}: Name", i + 1), name)),
                Some(o) if o.docstatus == 2 => {
                    return Err(frappe_error(
                        StatusCode::EXPECTATION_FAILED,
                        "CancelledLinkError",
                        Some(&format!(
                            "Cannot link cancelled document: Row #{}: Name: {name}",
                            i + 1
                        )),
                        false,
                    ));
                }
                Some(_) => {}
            }
        }
    }

    // ERPNext's validate().
    if received_amount.is_none() {
        return Err(validation("Received Amount is mandatory"));
    }
    let Some(paid_to) = paid_to else {
        return Err(validation("Target Exchange Rate is mandatory"));
    };
    let Some(paid_amount) = paid_amount else {
        return Err(validation("Paid Amount is mandatory"));
    };
    let received_amount = received_amount.unwrap_or_default();
    let reference_no = text("reference_no").filter(|r| !r.is_empty());
    let reference_date = text("reference_date").and_then(|d| d.parse::<Date>().ok());
    let is_bank = s.accounts.get(&paid_to).copied().unwrap_or(false);
    if is_bank && (reference_no.is_none() || reference_date.is_none()) {
        return Err(validation(
            "Reference No and Reference Date is mandatory for Bank transaction",
        ));
    }
    for (dt, name, _) in &refs {
        if dt != "Sales Order" {
            continue;
        }
        let o = &s.orders[name];
        if o.docstatus == 0 {
            return Err(validation(&format!("Sales Order {name} must be submitted")));
        }
        if o.customer != party {
            return Err(validation(&format!(
                "Sales Order {name} is not associated with Customer {party}"
            )));
        }
    }
    if received_amount > paid_amount {
        return Err(validation(
            "Received Amount cannot be greater than Paid Amount",
        ));
    }
    for (i, (dt, name, alloc)) in refs.iter().enumerate() {
        if dt != "Sales Order" || alloc.is_zero() {
            continue;
        }
        let o = &s.orders[name];
        // get_orders_to_be_billed: submitted, same company, not Closed, total > advance_paid,
        // abs(100 - per_billed) > 0.01.
        let to_be_billed = o.docstatus == 1
            && o.company == company
            && o.status != "Closed"
            && o.outstanding() > Decimal::ZERO
            && (Decimal::ONE_HUNDRED - o.per_billed).abs() > Decimal::new(1, 2);
        if !to_be_billed {
            return Err(validation(&format!(
                "Sales Order {name} has already been fully paid."
            )));
        }
        if *alloc > o.outstanding() {
            return Err(validation(&format!(
                "Row #{}: Allocated Amount cannot be greater than outstanding amount.",
                i + 1
            )));
        }
    }
    let total_allocated: Decimal = refs.iter().map(|r| r.2).sum();
    if docstatus == 1 && total_allocated > paid_amount {
        return Err(validation("Difference Amount must be zero"));
    }

    // Commit.
    let posting_date = text("posting_date")
        .and_then(|d| d.parse::<Date>().ok())
        .unwrap_or_else(|| jiff::Zoned::now().date());
    let name = format!("ACC-PAY-{}-{:05}", posting_date.year(), s.next_entry);
    // The unique index refuses at db_insert; the series number is not used up (U2b, U2g).
    let guard_value = super::guard::check(s, b, &name)?;
    s.next_entry += 1;
    let mut pe = SimPaymentEntry {
        name,
        docstatus,
        payment_type,
        company,
        party_type,
        paid_from: paid_from.unwrap_or_else(|| s.receivable()),
        party,
        paid_to,
        mode_of_payment: mode,
        paid_amount,
        received_amount,
        reference_no,
        reference_date,
        posting_date,
        references: refs
            .iter()
            .filter(|r| !r.2.is_zero())
            .map(|(dt, name, alloc)| SimReference {
                reference_doctype: dt.clone(),
                reference_name: name.clone(),
                allocated_amount: *alloc,
            })
            .collect(),
        unallocated_amount: paid_amount - total_allocated,
        paysync_operation: None,
    };
    pe.paysync_operation = guard_value;
    if docstatus == 1 {
        for r in &pe.references {
            if let Some(o) = s.orders.get_mut(&r.reference_name) {
                o.advance_paid += r.allocated_amount;
            }
        }
    }
    let doc = pe_json(&pe, &s.orders);
    if let Some(r) = &pe.reference_no {
        s.commit_times
            .entry(r.clone())
            .or_insert_with(std::time::Instant::now);
    }
    s.entries.push(pe);
    Ok(json_body(StatusCode::OK, json!({ "data": doc })))
}

async fn update_doc(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Path((doctype, name)): Path<(String, String)>,
    raw: Bytes,
) -> Response {
    if let Err(r) = gate(
        &state,
        &headers,
        &format!("PUT /api/resource/{doctype}/{{name}}"),
        Kind::Write,
    )
    .await
    {
        return r;
    }
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let mut s = state.lock().expect("poisoned");
    if doctype != "Payment Entry" {
        return validation("only Payment Entry can be updated in the simulator");
    }
    let Some(idx) = s.entries.iter().position(|e| e.name == name) else {
        return frappe_error(
            StatusCode::NOT_FOUND,
            "DoesNotExistError",
            Some(&format!("Payment Entry {name} not found")),
            false,
        );
    };
    let new_status = body
        .get("docstatus")
        .and_then(|v| v.as_i64())
        .map(|d| d as i32);
    let old = s.entries[idx].docstatus;
    match new_status {
        Some(2) if old == 1 => {
            let refs = s.entries[idx].references.clone();
            for r in refs {
                if let Some(o) = s.orders.get_mut(&r.reference_name) {
                    o.advance_paid -= r.allocated_amount;
                }
            }
            s.entries[idx].docstatus = 2;
        }
        Some(1) if old == 0 => {
            let refs = s.entries[idx].references.clone();
            for r in refs {
                if let Some(o) = s.orders.get_mut(&r.reference_name) {
                    o.advance_paid += r.allocated_amount;
                }
            }
            s.entries[idx].docstatus = 1;
        }
        Some(d) if d != old => {
            return frappe_error(
                StatusCode::EXPECTATION_FAILED,
                "DocstatusTransitionError",
                Some(&format!("Cannot change docstatus from {old} to {d}")),
                false,
            );
        }
        _ => {}
    }
    let doc = pe_json(&s.entries[idx], &s.orders);
    json_body(StatusCode::OK, json!({ "data": doc }))
}

async fn delete_doc(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Path((doctype, name)): Path<(String, String)>,
) -> Response {
    if let Err(r) = gate(
        &state,
        &headers,
        &format!("DELETE /api/resource/{doctype}/{{name}}"),
        Kind::Write,
    )
    .await
    {
        return r;
    }
    let mut s = state.lock().expect("poisoned");
    match s
        .entries
        .iter()
        .position(|e| e.name == name && e.docstatus == 0)
    {
        Some(i) if doctype == "Payment Entry" => {
            s.entries.remove(i);
            json_body(StatusCode::ACCEPTED, json!({"data": "ok"}))
        }
        _ => frappe_error(
            StatusCode::EXPECTATION_FAILED,
            "ValidationError",
            Some("Only drafts can be deleted"),
            false,
        ),
    }
}
