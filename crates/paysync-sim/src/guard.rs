//! The server-side duplicate guard, as a real ERPNext 15 has it once `paysync erp-setup` ran
//! (recordings `shared/spec/erpnext-real/U*`, README "Server-side duplicate guard"): a Custom Field
//! `paysync_operation` on Payment Entry with `unique: 1`, which MariaDB enforces with a UNIQUE
//! index — case-insensitive, trailing blanks ignored, empty stored as NULL (never colliding),
//! 140 characters at most, cancelled entries keeping their value for ever.

// Handlers return `Result<_, Response>` to short-circuit with an HTTP answer.
#![allow(clippy::result_large_err)]

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::State;
use super::erpnext::{frappe_error, json_body};

/// The field's name (also the MariaDB key name in the duplicate error). The same text as paysync's
/// own constant, written again on purpose: it is ERPNext's field as recorded, and the simulator
/// does not import the code it judges.
pub const FIELD: &str = "paysync_operation";
/// The Custom Field document's name.
pub const DOC: &str = "Payment Entry-paysync_operation";

/// `POST /api/resource/Custom Field` (U1a). Only this field can be created in the simulator.
pub(crate) fn create_custom_field(s: &mut State, body: &Value) -> Response {
    let is_guard = body["dt"] == "Payment Entry"
        && body["fieldname"] == FIELD
        && body["unique"].as_i64() == Some(1);
    if !is_guard {
        return frappe_error(
            StatusCode::FORBIDDEN,
            "PermissionError",
            Some(
                "Not permitted to insert Custom Field through the simulator (only the paysync guard)",
            ),
            false,
        );
    }
    if s.guard_installed {
        // What a real ERPNext 15 answers (seen against one; the shape of recording U7d).
        return frappe_error(
            StatusCode::EXPECTATION_FAILED,
            "ValidationError",
            Some(&format!(
                "A field with the name {FIELD} already exists in Payment Entry"
            )),
            false,
        );
    }
    s.guard_installed = true;
    json_body(StatusCode::OK, json!({"data": field_doc(body)}))
}

fn field_doc(body: &Value) -> Value {
    json!({
        "name": DOC, "doctype": "Custom Field", "docstatus": 0, "dt": "Payment Entry",
        "fieldname": FIELD, "label": body["label"], "fieldtype": "Data", "unique": 1,
        "read_only": body["read_only"], "no_copy": body["no_copy"],
        "insert_after": body["insert_after"],
    })
}

/// `GET /api/resource/Custom Field/{name}`.
pub(crate) fn custom_field(s: &State, name: &str) -> Option<Value> {
    (s.guard_installed && name == DOC).then(|| field_doc(&json!({"label": "Gateway operation"})))
}

/// The value MariaDB compares (utf8mb4_unicode_ci, PAD SPACE).
fn collated(v: &str) -> String {
    v.trim_end_matches(' ').to_lowercase()
}

/// At `db_insert` (after `validate()`, before `on_submit`): the value to store, or the refusal.
/// Without the field installed the key is ignored, as Frappe ignores unknown keys (25a/25b).
pub(crate) fn check(
    s: &State,
    body: &Value,
    tentative_name: &str,
) -> Result<Option<String>, Response> {
    if !s.guard_installed {
        return Ok(None);
    }
    let Some(v) = body.get(FIELD).and_then(|v| v.as_str()) else {
        return Ok(None);
    };
    if v.is_empty() {
        return Ok(None);
    }
    if v.chars().count() > 140 {
        return Err(frappe_error(
            StatusCode::EXPECTATION_FAILED,
            "CharacterLengthExceededError",
            Some(&format!(
                "Value too big for Gateway operation: {} characters, max characters allowed is 140",
                v.chars().count()
            )),
            false,
        ));
    }
    let key = collated(v);
    let taken = s
        .entries
        .iter()
        .any(|e| e.paysync_operation.as_deref().map(collated).as_deref() == Some(key.as_str()));
    if taken {
        return Err(unique_violation(v, tentative_name));
    }
    Ok(Some(v.to_string()))
}

/// U2b's answer: 417, `UniqueValidationError`, the key named in `exception`, a bare message.
fn unique_violation(value: &str, tentative_name: &str) -> Response {
    let exception = format!(
        "frappe.exceptions.UniqueValidationError: ('Payment Entry', '{tentative_name}', IntegrityError(1062, \"Duplicate entry '{value}' for key '{FIELD}'\"))"
    );
    let inner =
        json!({"message": "Gateway operation must be unique", "title": "Message"}).to_string();
    json_body(
        StatusCode::EXPECTATION_FAILED,
        json!({
            "exception": exception,
            "exc_type": "UniqueValidationError",
            "exc": serde_json::to_string(&vec![format!("Traceback (most recent call last):\n{exception}\n")]).expect("strings"),
            "_server_messages": serde_json::to_string(&vec![inner]).expect("strings"),
        }),
    )
}
