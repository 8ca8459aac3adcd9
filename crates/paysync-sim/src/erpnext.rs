//! The simulated ERPNext (Frappe REST v1), answering like the recordings in
//! `shared/spec/erpnext-real/`: same status codes, `exc_type`s, message texts and JSON shapes.
//!
//! Payment Entry validation follows the real order: Frappe's link checks (missing →
//! `LinkValidationError` "Could not find Row #1: Name: X", 09; cancelled → `CancelledLinkError`,
//! 22b); the name (an invalid naming series → `InvalidNamingSeriesError`, 32c); then ERPNext's
//! `validate()`: amounts sent as strings crash it (500 TypeError, 24a), mandatory fields (03a–c),
//! reference documents (draft order 17b, other customer 20b), the orders-to-be-billed check
//! ("has already been fully paid.", 18b/19c), over-allocation (08), and at submit the difference
//! amount (21; with `deductions`, ERPNext's unallocated/difference rule, 29b–29n, in
//! `deductions`). One currency: `received_amount` is overwritten with `paid_amount` (29b).
//! `reference_no` is not unique (07b). Submitting adds allocations to `advance_paid` (04), a
//! Pay's too (27g). Pay entries (refunds to a customer, 27d–27q) swap the accounts' sides.
//! That validation, the commit and the Payment Entry's JSON live in `payment_entry`, the create
//! request around them (faults, the series lock) in `create`, the entry's name from its
//! `naming_series` (32b–32d) in `naming`; updates, cancels (PUT and `frappe.client.cancel`),
//! deletes and amendments (28) in `lifecycle`; listing (the REST list and
//! `frappe.client.get_list`, one query) in `list`.
//!
//! Whitelisted methods take their arguments as Frappe's `make_form_dict` does: a JSON body when
//! the request says `application/json`, else the query string.

// Handlers return `Result<_, Response>` to short-circuit with an HTTP answer; size is irrelevant here.
#![allow(clippy::result_large_err)]

mod create;
mod deductions;
mod lifecycle;
mod list;
mod naming;
mod payment_entry;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

pub use naming::DEFAULT_NAMING_SERIES;
pub(crate) use payment_entry::create_payment_entry;
use payment_entry::pe_json;

use super::{Shared, SimSalesOrder, faults, frappe_number};

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/api/resource/{doctype}", get(list::list).post(insert))
        .route(
            "/api/resource/{doctype}/{name}",
            get(get_doc)
                .put(lifecycle::update_doc)
                .delete(lifecycle::delete_doc),
        )
        .route("/api/method/{method}", get(method).post(method))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            faults::contention::worker,
        ))
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
    frappe_error_in(status, "frappe.exceptions", exc_type, message, exc_source)
}

/// [`frappe_error`] for an exception class defined in `module` (e.g. `frappe.model.naming`).
pub(crate) fn frappe_error_in(
    status: StatusCode,
    module: &str,
    exc_type: &str,
    message: Option<&str>,
    exc_source: bool,
) -> Response {
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

/// A Python exception Frappe did not raise itself (500, no `_server_messages`): `exception` is
/// Python's last line ("TypeError: …"), `frame` the traceback's innermost `File …` line.
fn python_error(exception: &str, frame: &str) -> Response {
    let exc_type = exception.split(':').next().unwrap_or(exception);
    let traceback = format!("Traceback (most recent call last):\n  {frame}\n{exception}\n");
    json_body(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({
            "exception": exception,
            "exc_type": exc_type,
            "exc": serde_json::to_string(&vec![traceback]).expect("strings"),
        }),
    )
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
    /// `POST /api/resource/Payment Entry` (its drops are decided by `faults::before_commit`),
    /// with the latency to spend here (zero when it is spent under its series' lock).
    Create(std::time::Duration),
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
            Kind::Write => f.erp_write_latency,
            Kind::Create(latency) => latency,
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
        matches!(kind, Kind::Create(_)),
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

/// An order's document: its own fields, `po_no` (null when empty, as Frappe gives it) and the
/// other fields set on it (`Simulator::set_sales_order_field`).
fn so_json(so: &SimSalesOrder, fields: Option<&BTreeMap<String, String>>) -> Value {
    let mut doc = json!({
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
        "po_no": null,
    });
    for (k, v) in fields.into_iter().flatten() {
        doc[k.as_str()] = Value::String(v.clone());
    }
    doc
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
        "Sales Order" => s
            .orders
            .get(&name)
            .map(|so| so_json(so, s.order_fields.get(&so.name))),
        "Custom Field" => super::guard::custom_field(&s, &name),
        "Payment Entry" => s
            .entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| pe_json(e, &s)),
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
        "Customer" => s.customers.iter().find(|c| **c == name).map(|c| {
            // The `accounts` child table (Party Account): the customer's own receivables.
            let accounts: Vec<Value> = s
                .customer_receivables
                .iter()
                .filter(|((customer, _), _)| customer.as_str() == c.as_str())
                .enumerate()
                .map(|(i, ((_, company), account))| {
                    json!({
                        "idx": i + 1, "company": company, "account": account, "parent": c,
                        "parentfield": "accounts", "parenttype": "Customer", "doctype": "Party Account"
                    })
                })
                .collect();
            json!({"name": c, "customer_name": c, "doctype": "Customer", "accounts": accounts})
        }),
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

/// A whitelisted method's arguments, as Frappe's `make_form_dict` builds them: the JSON body when
/// the request is JSON (then the query string is not read), else the query string's parameters
/// as text.
fn method_args(
    headers: &HeaderMap,
    q: HashMap<String, String>,
    body: &Bytes,
) -> Result<Map<String, Value>, Response> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
    if is_json && !body.is_empty() {
        return match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(m),
            // Frappe keeps only a dict as the form dict.
            Ok(_) => Ok(Map::new()),
            Err(e) => Err(validation(&format!("Invalid JSON: {e}"))),
        };
    }
    Ok(q.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

/// `GET|POST /api/method/{method}`: every method but `frappe.client.cancel` (a write: write
/// latency and faults, not counted in `erp_reads`) is a read (counted in `erp_reads`, read
/// latency and faults), by "METHOD /api/method/name" in `by_endpoint`.
async fn method(
    AxState(state): AxState<Shared>,
    verb: Method,
    headers: HeaderMap,
    Path(method): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let is_write = method == "frappe.client.cancel";
    let kind = if is_write { Kind::Write } else { Kind::Read };
    if let Err(r) = gate(
        &state,
        &headers,
        &format!("{verb} /api/method/{method}"),
        kind,
    )
    .await
    {
        return r;
    }
    maybe_hang(&state).await;
    let args = match method_args(&headers, q, &body) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let text = |k: &str| args.get(k).and_then(Value::as_str).map(str::to_string);
    let mut s = state.lock().expect("poisoned");
    if !is_write {
        s.stats.erp_reads += 1;
    }
    match method.as_str() {
        "frappe.client.get_list" => list::get_list(&mut s, &args),
        "frappe.client.cancel" => lifecycle::client_cancel(&mut s, &args),
        "frappe.auth.get_logged_user" => {
            json_body(StatusCode::OK, json!({"message": "paysync@example.com"}))
        }
        "erpnext.accounts.party.get_party_account" => {
            let party = text("party").unwrap_or_default();
            if !s.customers.contains(&party) {
                return frappe_error(
                    StatusCode::NOT_FOUND,
                    "DoesNotExistError",
                    Some(&format!("Customer {party} not found")),
                    false,
                );
            }
            let company = text("company").unwrap_or_else(|| s.company.clone());
            json_body(
                StatusCode::OK,
                json!({"message": s.party_account(&party, &company)}),
            )
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
    if doctype == "Payment Entry" {
        return create::create(&state, &headers, &raw).await;
    }
    if let Err(r) = gate(
        &state,
        &headers,
        &format!("POST /api/resource/{doctype}"),
        Kind::Write,
    )
    .await
    {
        return r;
    }
    if doctype == "Custom Field" {
        let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        let mut s = state.lock().expect("poisoned");
        return super::guard::create_custom_field(&mut s, &body);
    }
    frappe_error(
        StatusCode::FORBIDDEN,
        "PermissionError",
        Some(&format!(
            "Not permitted to insert {doctype} through the simulator"
        )),
        false,
    )
}
