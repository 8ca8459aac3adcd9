//! The simulated Mobbex API (facts: `shared/spec/mobbex-api.md`).
//!
//! `GET /p/entity/operations` (page from 0, limit default 15 max 50, date filters as ms epoch or
//! `YYYY-MM-DD`, newest first, no total count) and `GET /p/operations/{uid}`. Status codes are
//! strings, totals JSON numbers written from their exact decimal text, errors `{result:false,...}`.
//! The merchant's charges (`totals.entity_charges`) are in list documents only: the spec shows no
//! `totals` in the single-operation answer (mobbex-api.md §3a).
//!
//! The `Simulator`'s Mobbex side (operations added, changed, read back) is here too.
//!
//! Refunds and chargebacks (§4, §6) are a later status of the paid operation itself, set by a
//! test with [`crate::Simulator::set_mobbex_status`]: 601/602/603/610 full, 605 partial. The
//! operation states no refunded amount (its `total` stays what was paid): the spec knows the
//! amount only from the refund request's `total` and, by inference, a refund webhook's
//! `payment.total`, neither of which this simulator serves.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use serde_json::{Value, json};

use super::{Shared, SimOperation, Simulator, StoredOp, faults};

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/p/entity/operations", get(list))
        .route("/p/operations/{uid}", get(one))
        .with_state(state)
}

fn body(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    body(
        status,
        json!({"result": false, "code": code, "error": message}).to_string(),
    )
}

/// Auth, latency and faults shared by both endpoints. `Err` is the response to send.
async fn gate(state: &Shared, headers: &HeaderMap, endpoint: &str) -> Result<(), Response> {
    let (latency, key, token) = {
        let mut s = state.lock().expect("poisoned");
        s.count(endpoint);
        (
            s.opts.faults.mobbex_latency,
            s.opts.mobbex_api_key.clone(),
            s.opts.mobbex_access_token.clone(),
        )
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    if h("x-api-key") != key || h("x-access-token") != token {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "Invalid credentials: x-api-key / x-access-token",
        ));
    }
    let mut s = state.lock().expect("poisoned");
    let f = s.opts.faults.clone();
    if s.hit(f.mobbex_429_rate) {
        if s.hit(f.mobbex_429_no_retry_after_rate) {
            s.note_fault("mobbex 429 no retry-after");
            return Err(faults::too_many_requests(None));
        }
        s.note_fault("mobbex 429");
        return Err(faults::too_many_requests(Some(1)));
    }
    if s.hit(f.mobbex_garbage_rate) {
        s.note_fault("mobbex 200 garbage");
        return Err((
            StatusCode::OK,
            "<html><body>Gateway says hello</body></html>",
        )
            .into_response());
    }
    if s.hit(f.mobbex_5xx_rate) {
        let status = if s.draw() < 0.5 {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        s.note_fault(&format!("mobbex {} html", status.as_u16()));
        return Err((status, "<html><body>upstream unavailable</body></html>").into_response());
    }
    faults::mobbex_gate(&mut s)
}

/// A filter bound: milliseconds since the epoch, or a `YYYY-MM-DD` day (UTC; an upper bound
/// covers the whole day).
fn parse_bound(v: &str, upper: bool) -> Option<Timestamp> {
    if let Ok(ms) = v.trim().parse::<i64>() {
        return Timestamp::from_millisecond(ms).ok();
    }
    let d: jiff::civil::Date = v.trim().parse().ok()?;
    let start = d.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    if upper {
        Some(start + jiff::SignedDuration::from_millis(86_400_000 - 1))
    } else {
        Some(start)
    }
}

async fn list(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = gate(&state, &headers, "GET /p/entity/operations").await {
        return r;
    }
    let page: usize = match q.get("page").map(|p| p.trim().parse()) {
        Some(Ok(p)) => p,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "PARAMS_ERROR",
                "page is required (a number from 0)",
            );
        }
    };
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(15)
        .clamp(1, 50);
    let mut bounds = Vec::new();
    for (key, upper) in [
        ("created_from", false),
        ("created_to", true),
        ("updated_from", false),
        ("updated_to", true),
    ] {
        if let Some(v) = q.get(key) {
            match parse_bound(v, upper) {
                Some(t) => bounds.push((key, t)),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "PARAMS_ERROR",
                        &format!("{key} must be a date or a timestamp in ms"),
                    );
                }
            }
        }
    }
    let status_filter = q.get("status").cloned();
    let currency_filter = q.get("currency").cloned();
    let reference_filter = q.get("reference").cloned();

    let docs: Vec<String> = {
        let mut s = state.lock().expect("poisoned");
        s.stats.mobbex_list_calls += 1;
        if let Some(hook) = s.list_hook.clone() {
            for op in hook(s.stats.mobbex_list_calls) {
                match s
                    .ops
                    .iter_mut()
                    .find(|o| matches!(o, StoredOp::Typed(t) if t.uid == op.uid))
                {
                    Some(existing) => *existing = StoredOp::Typed(op),
                    None => s.ops.push(StoredOp::Typed(op)),
                }
            }
        }
        let mut ops: Vec<&StoredOp> = s
            .ops
            .iter()
            .filter(|o| {
                bounds.iter().all(|(k, t)| match *k {
                    "created_from" => o.created() >= *t,
                    "created_to" => o.created() <= *t,
                    "updated_from" => o.updated() >= *t,
                    _ => o.updated() <= *t,
                })
            })
            .filter(|o| match o {
                StoredOp::Typed(t) => {
                    status_filter
                        .as_ref()
                        .is_none_or(|f| *f == t.status.to_string())
                        && currency_filter
                            .as_ref()
                            .is_none_or(|f| f.eq_ignore_ascii_case(&t.currency))
                        && reference_filter.as_ref().is_none_or(|f| *f == t.reference)
                }
                StoredOp::Raw { .. } => true,
            })
            .collect();
        ops.sort_by(|a, b| {
            b.created()
                .cmp(&a.created())
                .then_with(|| a.uid().cmp(&b.uid()))
        });
        ops.into_iter()
            .skip(page * limit)
            .take(limit)
            .map(|o| match o {
                StoredOp::Typed(t) => list_doc(t),
                StoredOp::Raw { doc, .. } => doc.to_string(),
            })
            .collect()
    };
    let next = if docs.len() == limit {
        json!(page + 1)
    } else {
        Value::Null
    };
    let prev = if page > 0 {
        json!(page - 1)
    } else {
        Value::Null
    };
    body(
        StatusCode::OK,
        format!(
            "{{\"result\":true,\"data\":{{\"docs\":[{}],\"page\":{},\"nextPage\":{next},\"prevPage\":{prev},\"limit\":{limit}}}}}",
            docs.join(","),
            page + 1
        ),
    )
}

fn iso(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A listing document; `total` and the charges are written from their exact decimal text. The
/// merchant's charges are `totals.entity_charges` (mobbex-api.md §2: `entity_charges{source,
/// installment,service}`), present only when the operation has some.
fn list_doc(o: &SimOperation) -> String {
    let mut doc = json!({
        "_id": format!("6{:023x}", fxhash(&o.uid)),
        "uid": o.uid,
        "operation": o.operation_type,
        "status": o.status.to_string(),
        "total": "__TOTAL__",
        "currency": o.currency,
        "reference": o.reference,
        "description": o.description,
        "created": iso(o.created),
        "updated": iso(o.updated),
        "entity": {"_id": "ent1", "name": "Mi Empresa SA", "uid": "ent-uid-1", "tax_id": "30712345678"},
        "user": {"name": o.payer_name},
        "context": {"value": "plugin.value.checkout:web", "name": "Checkout"},
        "intent": {"value": "payment.v2", "name": "Pago"},
        "totals": {"total": "__TOTAL__", "currency": o.currency},
        "sign": "+",
        "card_number": "4507 99** **** 0010",
        "parent": o.parent_uid,
    });
    let charges = (!o.entity_charges.is_empty()).then(|| {
        doc["totals"]["entity_charges"] = json!("__CHARGES__");
        let items: Vec<String> = o
            .entity_charges
            .iter()
            .map(|(name, amount)| format!("{}:{amount}", json!(name)))
            .collect();
        format!("{{{}}}", items.join(","))
    });
    let text = doc
        .to_string()
        .replace("\"__TOTAL__\"", &o.total.to_string());
    match charges {
        Some(c) => text.replace("\"__CHARGES__\"", &c),
        None => text,
    }
}

fn fxhash(s: &str) -> u128 {
    s.bytes().fold(0xcbf29ce484222325u128, |h, b| {
        (h ^ b as u128).wrapping_mul(0x100000001b3)
    })
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "Aprobado",
        2 => "En Espera",
        400 => "Rechazado",
        401 => "Expirado",
        // mobbex-api.md §4 (php-sdk's labels); 604 and 610 have none.
        600 => "Cancelación en proceso",
        601 => "Cancelada",
        602 => "Devuelto",
        603 => "Desconocida",
        605 => "Parcialmente Devuelta",
        _ => "Estado",
    }
}

async fn one(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Path(uid): Path<String>,
) -> Response {
    if let Err(r) = gate(&state, &headers, "GET /p/operations/{uid}").await {
        return r;
    }
    let found = {
        let mut s = state.lock().expect("poisoned");
        s.stats.mobbex_get_calls += 1;
        s.ops.iter().find(|o| o.uid() == uid).cloned()
    };
    let payment = match found {
        None => return error(StatusCode::NOT_FOUND, "NOT_FOUND", "Operation not found"),
        Some(StoredOp::Typed(o)) => json!({
            "id": o.uid,
            "description": o.description,
            "operation": {"type": o.operation_type},
            "status": {"code": o.status.to_string(), "text": status_text(o.status), "message": status_text(o.status)},
            "total": "__TOTAL__",
            "currency": {"code": o.currency, "text": o.currency, "symbol": "$"},
            "riskAnalysis": {"band": 1, "level": 0},
            "created": iso(o.created),
            "updated": iso(o.updated),
            "reference": o.reference,
            "source": {"name": "Visa", "type": "card", "reference": "visa", "number": "4507 99** **** 0010"},
        })
        .to_string()
        .replace("\"__TOTAL__\"", &o.total.to_string()),
        Some(StoredOp::Raw { doc, .. }) => json!({
            "id": doc.get("uid"),
            "status": {"code": doc.get("status")},
            "total": doc.get("total"),
            "currency": {"code": doc.get("currency")},
            "created": doc.get("created"),
            "updated": doc.get("updated"),
            "reference": doc.get("reference"),
        })
        .to_string(),
    };
    body(
        StatusCode::OK,
        format!(
            "{{\"result\":true,\"data\":{{\"transactions\":[],\"transaction\":{{\"result\":true,\"view\":{{\"type\":\"card\"}},\"payment\":{payment},\"user\":{{\"name\":\"Comprador\",\"email\":\"comprador@example.com\"}}}}}}}}"
        ),
    )
}

impl Simulator {
    // ---- Mobbex side

    pub fn add_operation(&self, op: SimOperation) {
        self.with(|s| s.ops.push(StoredOp::Typed(op)));
    }

    /// Change an operation in place (set `updated` yourself to make it show in updated-windows).
    pub fn update_operation(&self, uid: &str, f: impl FnOnce(&mut SimOperation)) {
        self.with(|s| {
            if let Some(StoredOp::Typed(o)) = s
                .ops
                .iter_mut()
                .find(|o| matches!(o, StoredOp::Typed(t) if t.uid == uid))
            {
                f(o);
            }
        });
    }

    /// Give operation `uid` a later status, as Mobbex does on a refund or chargeback (601, 602,
    /// 603, 610: the whole operation; 605: part of it) or any other change, `updated` at `at` so
    /// that it shows in updated-windows (`updated_from`/`updated_to`). Its `total` stays what was
    /// paid: Mobbex states no refunded amount on the operation (mobbex-api.md §6). `false`: no
    /// such (well-formed) operation.
    pub fn set_mobbex_status(&self, uid: &str, status: u16, at: Timestamp) -> bool {
        self.with(|s| {
            match s
                .ops
                .iter_mut()
                .find(|o| matches!(o, StoredOp::Typed(t) if t.uid == uid))
            {
                Some(StoredOp::Typed(o)) => {
                    o.status = status;
                    o.updated = at;
                    true
                }
                _ => false,
            }
        })
    }

    /// A document served verbatim in listings (malformed input for tests).
    pub fn add_raw_operation(&self, doc: serde_json::Value, created: Timestamp) {
        self.with(|s| s.ops.push(StoredOp::Raw { doc, created }));
    }

    pub fn operations(&self) -> Vec<SimOperation> {
        self.with(|s| {
            s.ops
                .iter()
                .filter_map(|o| match o {
                    StoredOp::Typed(t) => Some(t.clone()),
                    StoredOp::Raw { .. } => None,
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests;
