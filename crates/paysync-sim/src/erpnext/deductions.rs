//! A Payment Entry's `deductions` rows (Payment Entry Deduction), checked as the recorded ERPNext
//! 15 checks them (recordings 29b–29n, `shared/spec/erpnext-real/README.md` section 29):
//!
//! - links first, with the other links (an unknown account or cost center is a
//!   `LinkValidationError` "Could not find Row #1: Account: X", as Frappe words child-row links);
//! - then Frappe's mandatory check: a row without `cost_center` is a `MandatoryError` whose
//!   message names the row (29n), raised after the entry was named;
//! - amounts are stored as sent, a third decimal included (29l);
//! - the unallocated and difference amounts follow ERPNext's `set_unallocated_amount` and
//!   `set_difference_amount` for Receive: `unallocated = base_received + Σ − allocated` when
//!   positive (unrounded), `difference = round2(allocated + unallocated − base_received − Σ)`,
//!   and a non-zero difference refuses the submit (29h, 29k). With no references (29p, 29r,
//!   29s) the whole `received + Σ` is unallocated and the difference is 0 whatever the amounts:
//!   900 + 50 books 950 unallocated (29s).

// Returns `Result<_, Response>` to short-circuit with an HTTP answer, as the handlers do.
#![allow(clippy::result_large_err)]

use axum::http::StatusCode;
use axum::response::Response;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::payment_entry::Sides;
use super::{frappe_error, json_body};
use crate::{SimDeduction, State};

fn rows(b: &Value) -> &[Value] {
    b.get("deductions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn text<'a>(r: &'a Value, k: &str) -> Option<&'a str> {
    r.get(k).and_then(Value::as_str).filter(|v| !v.is_empty())
}

/// Frappe's link check of the rows' `account` and `cost_center` (part of `_validate_links`,
/// before the entry is named).
pub(super) fn check_links(s: &State, b: &Value) -> Result<(), Response> {
    let link = |what: String| {
        frappe_error(
            StatusCode::EXPECTATION_FAILED,
            "LinkValidationError",
            Some(&format!("Could not find {what}")),
            false,
        )
    };
    for (i, r) in rows(b).iter().enumerate() {
        if let Some(a) = text(r, "account")
            && !s.accounts.contains_key(a)
        {
            return Err(link(format!("Row #{}: Account: {a}", i + 1)));
        }
        if let Some(c) = text(r, "cost_center")
            && !s.cost_centers.iter().any(|cc| cc == c)
        {
            return Err(link(format!("Row #{}: Cost Center: {c}", i + 1)));
        }
    }
    Ok(())
}

/// Frappe's `_validate_mandatory` for the rows, after naming (`name` is the name the entry was
/// given, which the refusal gives back: 29n). Recorded exactly: no `_exc_source`, and a server
/// message with only `message` and `title`.
fn mandatory(name: &str, row: usize, field: &str, label: &str) -> Response {
    let exception = format!("frappe.exceptions.MandatoryError: [Payment Entry, {name}]: {field}");
    let traceback = format!(
        "Traceback (most recent call last):\n  File \"apps/frappe/frappe/model/document.py\", line 956, in _validate_mandatory\n    raise frappe.MandatoryError(\n{exception}\n"
    );
    let message = json!({
        "message": format!(
            "Error: <strong>Payment Entry Deduction</strong> Row #{row}: Value missing for: {label}"
        ),
        "title": "Message",
    })
    .to_string();
    json_body(
        StatusCode::EXPECTATION_FAILED,
        json!({
            "exception": exception,
            "exc_type": "MandatoryError",
            "exc": serde_json::to_string(&vec![traceback]).expect("strings"),
            "_server_messages": serde_json::to_string(&vec![message]).expect("strings"),
        }),
    )
}

/// The rows of `b`, read after the mandatory check. `amount` reads one JSON amount (the caller's
/// reader: strings crash the server as in 24a); `Err` is the refusal to send.
pub(super) fn read(
    b: &Value,
    name: &str,
    amount: impl Fn(Option<&Value>) -> Result<Option<Decimal>, Response>,
) -> Result<Vec<SimDeduction>, Response> {
    let mut out = Vec::new();
    for (i, r) in rows(b).iter().enumerate() {
        let Some(account) = text(r, "account") else {
            return Err(mandatory(name, i + 1, "account", "Account"));
        };
        let Some(cost_center) = text(r, "cost_center") else {
            return Err(mandatory(name, i + 1, "cost_center", "Cost Center"));
        };
        let Some(amount) = amount(r.get("amount"))? else {
            return Err(mandatory(name, i + 1, "amount", "Amount"));
        };
        out.push(SimDeduction {
            account: account.to_string(),
            cost_center: cost_center.to_string(),
            amount,
            description: text(r, "description").map(String::from),
        });
    }
    Ok(out)
}

/// ERPNext's unallocated and difference amounts (one currency, so the base amounts are the
/// amounts rounded to 2 places and paid = received; the deductions count unrounded). A Pay's
/// deductions are taken from the amount instead of added to it: `unallocated = base_paid − Σ −
/// allocated` when positive, `difference = round2(base_paid − allocated − unallocated − Σ)`.
pub(super) fn unallocated_and_difference(
    sides: Sides,
    amount: Decimal,
    allocated: Decimal,
    deductions: &[SimDeduction],
) -> (Decimal, Decimal) {
    let base = amount.round_dp(2);
    let base_allocated = allocated.round_dp(2);
    let total: Decimal = deductions.iter().map(|d| d.amount).sum();
    match sides {
        Sides::Receive => {
            let unallocated = (base + total - base_allocated).max(Decimal::ZERO);
            let difference = (base_allocated + unallocated - base - total).round_dp(2);
            (unallocated, difference)
        }
        Sides::Pay => {
            let unallocated = (base - total - base_allocated).max(Decimal::ZERO);
            let difference = (base - base_allocated - unallocated - total).round_dp(2);
            (unallocated, difference)
        }
    }
}

/// The rows as the document's JSON shows them.
pub(super) fn to_json(parent: &str, deductions: &[SimDeduction]) -> Vec<Value> {
    deductions
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut row = json!({
                "idx": i + 1,
                "doctype": "Payment Entry Deduction",
                "parent": parent,
                "parentfield": "deductions",
                "parenttype": "Payment Entry",
                "account": d.account,
                "cost_center": d.cost_center,
                "amount": crate::frappe_number(d.amount),
                "is_exchange_gain_loss": 0,
            });
            // Absent when NULL, as Frappe leaves unset fields out of its answers.
            if let Some(desc) = &d.description {
                row["description"] = json!(desc);
            }
            row
        })
        .collect()
}

#[cfg(test)]
mod tests;
