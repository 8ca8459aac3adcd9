//! Listing in the simulated ERPNext: `GET /api/resource/{doctype}` and the whitelisted
//! `frappe.client.get_list` (`/api/method/frappe.client.get_list`, GET or a POST with a JSON body),
//! which a real Frappe 15 serves with the same code (its REST v1 listing calls `get_list`), so both
//! go through [`query`]: the same filters, projection, page and errors (recordings 05, 06, 06b, 10,
//! 16, 23, 26).
//!
//! Filters are Frappe's: a dict (`{"field": value}`, all `=`) or a list of `[field, op, value]` /
//! `[doctype, field, op, value]`, a child doctype's filter selecting the parent's rows through that
//! child (one row per matching child, as the SQL join gives). Strings compare as MariaDB does,
//! case-insensitively. Rows keep insertion order (the simulator has no `order_by`).

// Returns `Result<_, Response>` to short-circuit with an HTTP answer, as the handlers do.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};

use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::payment_entry::pe_json;
use super::{
    Kind, frappe_error, gate, json_body, maybe_hang, parse_json_param, so_json, validation,
};
use crate::{Shared, State};

/// Frappe's default page, of the REST listing and of `frappe.client.get_list` alike.
const DEFAULT_PAGE: usize = 20;

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
    // Numbers as numbers; anything else (dates `YYYY-MM-DD`, datetimes) as text, as MariaDB
    // compares a DATE column with a date string.
    let cmp = |ord: fn(std::cmp::Ordering) -> bool| match (as_num(&v), as_num(&f.value)) {
        (Some(x), Some(y)) => x.partial_cmp(&y).is_some_and(ord),
        _ => match (v.as_str(), f.value.as_str()) {
            (Some(x), Some(y)) => ord(x.cmp(y)),
            _ => false,
        },
    };
    match f.op.as_str() {
        "=" => eq(&v, &f.value),
        "!=" => !eq(&v, &f.value),
        "in" => list().iter().any(|x| eq(&v, x)),
        "not in" => !list().iter().any(|x| eq(&v, x)),
        "<" => cmp(|o| o.is_lt()),
        ">" => cmp(|o| o.is_gt()),
        "<=" => cmp(|o| o.is_le()),
        ">=" => cmp(|o| o.is_ge()),
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
fn key_set(filters: &[&Filter], field: &str) -> Option<HashSet<String>> {
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

/// The rows of `doctype` matching `filters` (a parsed filter value, see the module comment),
/// projected on `fields`, from `start`, at most `limit` of them (`0`: all). `Err` is the answer
/// to send: a ValidationError for malformed filters, DoesNotExistError for an unknown DocType.
pub(super) fn query(
    s: &mut State,
    doctype: &str,
    filters: Option<Value>,
    fields: &[String],
    start: usize,
    limit: usize,
) -> Result<Vec<Value>, Response> {
    let filters = parse_filters(filters, doctype).map_err(|e| validation(&e))?;
    let (parent_f, child_f): (Vec<&Filter>, Vec<&Filter>) = filters.iter().partition(|f| !f.child);
    let wants_child = !child_f.is_empty() || fields.iter().any(|f| column(f).1);
    let mut rows = Vec::new();
    match doctype {
        "Sales Order" => {
            let names = key_set(&parent_f, "name");
            for so in s.orders.values() {
                if !names
                    .as_ref()
                    .is_none_or(|k| k.contains(&so.name.to_lowercase()))
                {
                    continue;
                }
                let d = so_json(so, s.order_fields.get(&so.name));
                if parent_f.iter().all(|f| matches(&d, f)) {
                    rows.push(project(&d, None, fields));
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
                let d = pe_json(pe, s);
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
                        rows.push(project(&d, None, fields));
                    }
                    for c in matching {
                        rows.push(project(&d, Some(c), fields));
                    }
                } else {
                    rows.push(project(&d, None, fields));
                }
            }
        }
        "Customer" => {
            for c in &s.customers {
                let d = json!({"name": c, "customer_name": c});
                if parent_f.iter().all(|f| matches(&d, f)) {
                    rows.push(project(&d, None, fields));
                }
            }
        }
        other => {
            return Err(frappe_error(
                StatusCode::NOT_FOUND,
                "DoesNotExistError",
                Some(&format!("DocType {other} not found")),
                false,
            ));
        }
    }
    Ok(rows
        .into_iter()
        .skip(start)
        .take(if limit == 0 { usize::MAX } else { limit })
        .collect())
}

/// `GET /api/resource/{doctype}?filters=…&fields=…&limit_page_length=…&limit_start=…`, every
/// parameter JSON text in the query string; answers `{"data": rows}`.
pub(super) async fn list(
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
        .unwrap_or(DEFAULT_PAGE);
    let start: usize = q
        .get("limit_start")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut s = state.lock().expect("poisoned");
    s.stats.erp_reads += 1;
    match query(&mut s, &doctype, filters, &fields, start, limit) {
        Ok(rows) => json_body(StatusCode::OK, json!({ "data": rows })),
        Err(r) => r,
    }
}

/// `frappe.client.get_list(doctype, fields=None, filters=None, …, limit_start=None,
/// limit_page_length=20, …)` with the method's arguments (a POST's JSON body, or the query
/// string); answers `{"message": rows}`, the rows the REST listing gives as `data`.
///
/// As Frappe's `DatabaseQuery.parse_args` does, `fields` and `filters` may each be a JSON value
/// or a string holding one (and `fields` a comma-separated list); page numbers go through
/// `cint` (a number or its text, anything else 0). An explicit `limit_page_length` of 0 or null
/// means all rows. `or_filters`, `order_by` and `group_by` are ignored, as by the REST listing.
pub(super) fn get_list(s: &mut State, args: &Map<String, Value>) -> Response {
    let Some(doctype) = args.get("doctype").and_then(Value::as_str) else {
        // Python refuses the call before any of Frappe's code runs.
        return super::python_error(
            "TypeError: get_list() missing 1 required positional argument: 'doctype'",
            "File \"apps/frappe/frappe/__init__.py\", in call",
        );
    };
    let fields = match args.get("fields") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Some(Value::String(t)) => text_fields(t),
        _ => Vec::new(),
    };
    let fields = if fields.is_empty() {
        vec!["name".into()]
    } else {
        fields
    };
    let filters = match args.get("filters") {
        Some(Value::String(t)) if t.trim().is_empty() => None,
        Some(Value::String(t)) => match serde_json::from_str(t) {
            Ok(v) => Some(v),
            Err(e) => return validation(&format!("Invalid filters: {e}")),
        },
        other => other.cloned(),
    };
    let start = args.get("limit_start").map(cint).unwrap_or(0);
    let limit = args
        .get("limit_page_length")
        .map(cint)
        .unwrap_or(DEFAULT_PAGE);
    match query(s, doctype, filters, &fields, start, limit) {
        Ok(rows) => json_body(StatusCode::OK, json!({ "message": rows })),
        Err(r) => r,
    }
}

/// `fields` sent as text: `"*"`, a JSON list, or names separated by commas.
fn text_fields(t: &str) -> Vec<String> {
    if t.trim() == "*" {
        return vec!["*".into()];
    }
    match serde_json::from_str::<Value>(t) {
        Ok(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => t
            .split(',')
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect(),
    }
}

/// Frappe's `cint` for a page number: an integer, a float truncated, or their text; anything
/// else (null included) is 0. Negative numbers count as 0 here (no page starts before the first).
fn cint(v: &Value) -> usize {
    let n = match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.trunc() as i64)),
        Value::String(t) => t
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| t.trim().parse::<f64>().ok().map(|f| f.trunc() as i64)),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    };
    usize::try_from(n.unwrap_or(0)).unwrap_or(0)
}
