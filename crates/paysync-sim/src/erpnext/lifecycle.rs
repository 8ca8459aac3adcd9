//! A Payment Entry after its create: updates (`PUT`, where `{"docstatus": 2}` cancels), deletes,
//! `frappe.client.cancel`, and amendments, as the recorded server answers them (section 28 of
//! `shared/spec/erpnext-real/README.md`):
//!
//! - a cancel takes the entry's allocations off the orders' `advance_paid` in the same request
//!   (28e), and answers the cancelled document, under `data` for a PUT (28d) and under `message`
//!   for `frappe.client.cancel` (28h); its reference rows show the orders' outstanding as it was
//!   just before the cancel (28d: 150 of 400, with 250 allocated);
//! - any change to a cancelled entry, cancelling it again included, is refused by Frappe itself
//!   (`check_docstatus_transition`): 417 `Cannot edit cancelled document`, with no
//!   `_server_messages` and no `_exc_source` (28j, 28k, 28n);
//! - an amendment (a create with `amended_from`) must amend a cancelled entry (28q: 417
//!   "… cannot be amended because it is not cancelled…", the entry linked with the site's URL, a
//!   message titled "Amendment Not Allowed"); it is named after it (`X-1`, then `X-2` for an
//!   amendment of `X-1`: Frappe's `_get_amended_name`, 28l) and uses up no series number; a name
//!   taken already is the primary key's 409 `DuplicateEntryError` (U4h).

// Handlers return `Result<_, Response>` to short-circuit with an HTTP answer; size is irrelevant here.
#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::payment_entry::pe_json;
use super::{Kind, frappe_error, gate, json_body, validation};
use crate::{Shared, State};

/// A Frappe error body for an exception raised without `frappe.throw` (no `_server_messages`, no
/// `_exc_source`), or thrown with a server message of its own shape (`inner`).
fn error_body(status: StatusCode, exc_type: &str, message: &str, inner: Option<Value>) -> Response {
    let exception = format!("frappe.exceptions.{exc_type}: {message}");
    let traceback = format!(
        "Traceback (most recent call last):\n  File \"apps/frappe/frappe/model/document.py\", in _save\n{exception}\n"
    );
    let mut body = json!({
        "exception": exception,
        "exc_type": exc_type,
        "exc": serde_json::to_string(&vec![traceback]).expect("strings"),
    });
    if let Some(inner) = inner {
        body["_server_messages"] =
            json!(serde_json::to_string(&vec![inner.to_string()]).expect("strings"));
    }
    json_body(status, body)
}

/// 28j, 28k, 28n.
fn cannot_edit_cancelled() -> Response {
    error_body(
        StatusCode::EXPECTATION_FAILED,
        "ValidationError",
        "Cannot edit cancelled document",
        None,
    )
}

fn not_found(name: &str) -> Response {
    frappe_error(
        StatusCode::NOT_FOUND,
        "DoesNotExistError",
        Some(&format!("Payment Entry {name} not found")),
        false,
    )
}

/// The primary key's duplicate (U4h): the name inside `exception`, a server message titled
/// "Duplicate Name" without `raise_exception`.
pub(super) fn duplicate_name(name: &str) -> Response {
    let exception = format!(
        "('Payment Entry', '{name}', IntegrityError(1062, \"Duplicate entry '{name}' for key 'PRIMARY'\"))"
    );
    error_body(
        StatusCode::CONFLICT,
        "DuplicateEntryError",
        &exception,
        Some(json!({
            "message": format!("Payment Entry <strong>{name}</strong> already exists"),
            "title": "Duplicate Name",
            "indicator": "red",
        })),
    )
}

/// Frappe's `get_link_to_form("Payment Entry", name)`, with the site's URL (`get_url`).
fn link_to_form(s: &State, name: &str) -> String {
    let quoted = name.replace(' ', "%20");
    format!(
        "<a href=\"{}/app/payment-entry/{quoted}\">{name}</a>",
        s.site_url.trim_end_matches('/')
    )
}

/// The name a create with `amended_from` gets (`None`: not an amendment), after Frappe's link
/// check of `amended_from` and `validate_amended_from`. `Err` is the refusal (nothing named).
pub(super) fn amended_name(s: &State, b: &Value) -> Result<Option<String>, Response> {
    let Some(from) = b
        .get("amended_from")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    else {
        return Ok(None);
    };
    let Some(original) = s.entries.iter().find(|e| e.name == from) else {
        return Err(frappe_error(
            StatusCode::EXPECTATION_FAILED,
            "LinkValidationError",
            Some(&format!("Could not find Amended From: {from}")),
            false,
        ));
    };
    if original.docstatus != 2 {
        let message = format!(
            "{} cannot be amended because it is not cancelled. Please cancel the document before creating an amendment.",
            link_to_form(s, from)
        );
        let id = format!("{:056x}", message.len() as u128 * 0x9e3779b97f4a7c15u128);
        return Err(error_body(
            StatusCode::EXPECTATION_FAILED,
            "ValidationError",
            &message,
            Some(json!({
                "message": message,
                "title": "Amendment Not Allowed",
                "indicator": "red",
                "raise_exception": 1,
                "__frappe_exc_id": id,
            })),
        ));
    }
    // _get_amended_name: an amendment of an amendment counts on from its number.
    let name = match (&original.amended_from, from.rsplit_once('-')) {
        (Some(_), Some((prefix, n))) => {
            let n: u64 = n.parse().unwrap_or(0);
            format!("{prefix}-{}", n + 1)
        }
        _ => format!("{from}-1"),
    };
    Ok(Some(name))
}

/// Cancel entry `idx` (submitted): the answer's document, then its allocations off the orders.
fn cancel(s: &mut State, idx: usize) -> Value {
    s.entries[idx].docstatus = 2;
    let doc = pe_json(&s.entries[idx], s);
    let refs = s.entries[idx].references.clone();
    for r in refs {
        if let Some(o) = s.orders.get_mut(&r.reference_name) {
            o.advance_paid -= r.allocated_amount;
        }
    }
    doc
}

/// Frappe's `check_docstatus_transition` from `old` to `new`, then the transition itself.
/// `Ok`: the entry's document as answered.
fn transition(s: &mut State, idx: usize, new: Option<i32>) -> Result<Value, Response> {
    let old = s.entries[idx].docstatus;
    match new {
        _ if old == 2 => Err(cannot_edit_cancelled()),
        Some(2) if old == 1 => Ok(cancel(s, idx)),
        Some(1) if old == 0 => {
            let refs = s.entries[idx].references.clone();
            for r in refs {
                if let Some(o) = s.orders.get_mut(&r.reference_name) {
                    o.advance_paid += r.allocated_amount;
                }
            }
            s.entries[idx].docstatus = 1;
            Ok(pe_json(&s.entries[idx], s))
        }
        Some(d) if d != old => Err(frappe_error(
            StatusCode::EXPECTATION_FAILED,
            "DocstatusTransitionError",
            Some(&format!("Cannot change docstatus from {old} to {d}")),
            false,
        )),
        _ => Ok(pe_json(&s.entries[idx], s)),
    }
}

/// `POST /api/method/frappe.client.cancel` `{doctype, name}`: the cancelled document under
/// `message` (28h).
pub(super) fn client_cancel(s: &mut State, args: &Map<String, Value>) -> Response {
    let text = |k: &str| {
        args.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (doctype, name) = (text("doctype"), text("name"));
    if doctype != "Payment Entry" {
        return validation("only Payment Entry can be cancelled in the simulator");
    }
    let Some(idx) = s.entries.iter().position(|e| e.name == name) else {
        return not_found(&name);
    };
    match transition(s, idx, Some(2)) {
        Ok(doc) => json_body(StatusCode::OK, json!({ "message": doc })),
        Err(r) => r,
    }
}

pub(super) async fn update_doc(
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
        return not_found(&name);
    };
    let new_status = body
        .get("docstatus")
        .and_then(|v| v.as_i64())
        .map(|d| d as i32);
    match transition(&mut s, idx, new_status) {
        Ok(doc) => json_body(StatusCode::OK, json!({ "data": doc })),
        Err(r) => r,
    }
}

pub(super) async fn delete_doc(
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

#[cfg(test)]
mod tests;
